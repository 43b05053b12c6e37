"""Deterministic sampler noise: a pure function of (seed, sampler step, absolute frame index, mel bin).

Converting a file whole, in pieces, or as a live stream therefore draws the very same noise for
every frame, so the one-step decoder's output does not depend on how the audio was cut.
A counter-based hash (splitmix64) followed by Box-Muller gives independent N(0, 1) values.
"""
from __future__ import annotations

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def frame_noise(seed: int, step: int, frame_start: int, n_frames: int, n_bins: int) -> np.ndarray:
    """Standard normal noise [n_bins, n_frames] for frames frame_start .. frame_start+n_frames-1."""
    with np.errstate(over="ignore"):
        frames = np.arange(frame_start, frame_start + n_frames, dtype=np.uint64)[None, :]
        bins = np.arange(n_bins, dtype=np.uint64)[:, None]
        key = _splitmix64(np.uint64(seed & 0xFFFFFFFF) * np.uint64(1 << 20) + np.uint64(step & 0xFFFFF))
        base = _splitmix64(key ^ (frames * np.uint64(1 << 12) + bins) * np.uint64(2))
        u1 = (_splitmix64(base) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
        u2 = (_splitmix64(base ^ _GOLDEN) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    r = np.sqrt(-2.0 * np.log1p(-u1))  # 1-u1 in (0, 1]: no log(0)
    return (r * np.cos(2.0 * np.pi * u2)).astype(np.float32)
