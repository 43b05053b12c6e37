"""The join of the live path's parallel feature branches on the model's frame grid.

Content (50 frames/s) and pitch (100 frames/s) come from the 16 kHz branch, loudness from the model-rate
branch, each as its own stage finishes frames. Model frame i reads the content and pitch frames under its
centre (`grid_index`, as the offline pipeline's nearest-frame alignment) and its own loudness frame; it is
handed on once all three have arrived, in order, and the buffers keep only what later frames still read.
The same join, as declarations, is what engine/pipeline.py's LatencyPlan composes.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from engine.content import CONTENT_HOP, CONTENT_SAMPLE_RATE
from engine.feature_stream import grid_index
from engine.pitch_stream import PITCH_HOP, PITCH_RATE


class FrameAligner:
    name = "frame grid"

    def __init__(self, sample_rate: int, hop_length: int, content_dim: int):
        self.sr, self.hop, self.dim = int(sample_rate), int(hop_length), int(content_dim)
        self.rate_in = self.rate_out = Fraction(self.sr, self.hop)
        self.reset()

    def reset(self) -> None:
        self._content, self._c0 = np.zeros((0, self.dim), np.float32), 0  # buffer, index of its first frame
        self._f0, self._p0 = np.zeros(0, np.float32), 0
        self._loud, self._l0 = np.zeros(0, np.float32), 0
        self.frames = 0  # model frames handed on

    def _grid(self, i, rate: int, hop: int):
        return grid_index(i, self.sr, self.hop, rate, hop)

    def push(self, content: np.ndarray, f0: np.ndarray, loud: np.ndarray):
        """New frames of each branch -> (model frame indices, content [k, C], raw f0 [k], loudness [k]) of
        the model frames whose features are now all here (k may be 0)."""
        if len(content):
            self._content = np.concatenate([self._content, content])
        if len(f0):
            self._f0 = np.concatenate([self._f0, f0])
        if len(loud):
            self._loud = np.concatenate([self._loud, loud])
        i = np.arange(self.frames, self._l0 + len(self._loud))
        ci = self._grid(i, CONTENT_SAMPLE_RATE, CONTENT_HOP)
        pi = self._grid(i, PITCH_RATE, PITCH_HOP)
        ok = (ci < self._c0 + len(self._content)) & (pi < self._p0 + len(self._f0))
        k = len(ok) if ok.all() else int(np.argmin(ok))
        i, ci, pi = i[:k], ci[:k], pi[:k]
        out = (i, self._content[ci - self._c0], self._f0[pi - self._p0], self._loud[i - self._l0])
        if k:
            self.frames = int(i[-1]) + 1
            self._trim()
        return out

    def _trim(self) -> None:
        """Drop what no later model frame reads (never past what has arrived)."""
        nxt = self.frames
        c = min(int(self._grid(nxt, CONTENT_SAMPLE_RATE, CONTENT_HOP)), self._c0 + len(self._content))
        p = min(int(self._grid(nxt, PITCH_RATE, PITCH_HOP)), self._p0 + len(self._f0))
        lo = min(nxt, self._l0 + len(self._loud))
        self._content, self._c0 = self._content[c - self._c0:], c
        self._f0, self._p0 = self._f0[p - self._p0:], p
        self._loud, self._l0 = self._loud[lo - self._l0:], lo
