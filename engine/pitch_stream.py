"""Live pitch: a 16 kHz pitch extractor run on short sliding windows fixed to an absolute chunk grid.

FCPE (and pyworld) look at the whole signal they are given, so live f0 comes from windows: every
`chunk` samples (aligned to t = 0, like the content chunks), the extractor runs once on the `window`
samples that end at the chunk end (zeros before the stream start) and the frames that end at least
`right` frames before the window end are kept. The result does not depend on how the input was cut
into blocks. Measured on a 220 Hz vibrato tone against whole-file FCPE: a 0.32 s window is within
0.3 cents in the middle; the last frame of a window is off by up to ~9 cents, the one before by ~1,
hence one frame (10 ms) of right context by default.

Post-processing must be causal here (the offline pipeline looks both ways):
* octave guard: a voiced frame 12 ± 2 semitones away from the median of itself and the previous
  8 raw voiced frames is moved by an octave (offline compares with ±5 frames); a real leap stops
  being "corrected" once it has lasted about 5 frames;
* unvoiced frames hold the last voiced f0 (offline interpolates towards the next voiced frame,
  which would need unbounded lookahead); before the first voiced frame f0 is 0, as offline when a
  file has no voiced frame.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from engine.chunk_windows import ChunkWindows
from engine.fcpe_fast import FastFCPE
from engine.pipeline import flush_with_silence
from engine.pitch import FCPEPitch, make_pitch_extractor, octave_factor

PITCH_RATE = 16000
PITCH_HOP = 160


class LiveFCPEPitch(FCPEPitch):
    """FCPE for the live path: on the CPU, extract() runs engine.fcpe_fast.FastFCPE (time-major, int8
    1x1 convs; ~1.8x cheaper per 0.16 s window than torchfcpe's forward with the same int8 convs, f0 the
    same to 0.0004 cents median); on other devices, or for a model FastFCPE does not know, torchfcpe's
    own forward, unchanged."""

    def __init__(self, device=None, **kw):
        super().__init__(device=device, **kw)
        self.fast = None
        if self.device.type == "cpu" and FastFCPE.supports(self.model):
            self.fast = FastFCPE(self.model, self.threshold, self.decoder, self.f0_min)

    def extract(self, wav: np.ndarray) -> np.ndarray:
        return self.fast.extract(wav) if self.fast is not None else super().extract(wav)


def live_pitch_extractor(name: str = "fcpe", device=None):
    """A pitch extractor by name for the live path: FCPE as LiveFCPEPitch (a separate instance: the
    offline extractor stays untouched), the others as make_pitch_extractor builds them."""
    if str(name).strip().lower() == "fcpe":
        return LiveFCPEPitch(device=device)
    return make_pitch_extractor(name, device=device)


class PitchStream:
    """push(16 kHz samples) -> f0 of the newly final frames (Hz, 0 = unvoiced; raw, no guard)."""

    name = "pitch window"
    rate_in, rate_out = PITCH_RATE, PITCH_RATE // PITCH_HOP

    def __init__(self, name: str = "fcpe", device=None, window_s: float = 0.16, chunk_samples: int = 1280,
                 right_frames: int = 1, extractor=None):
        self.ex = extractor if extractor is not None else live_pitch_extractor(name, device)
        if self.ex.sample_rate != PITCH_RATE or self.ex.hop_length != PITCH_HOP:
            raise ValueError("PitchStream expects a 16 kHz, hop 160 extractor")
        self.window = int(round(window_s * PITCH_RATE / PITCH_HOP)) * PITCH_HOP
        self.chunk = int(chunk_samples)
        self.right = int(right_frames)
        if self.chunk % PITCH_HOP or self.chunk > self.window - self.right * PITCH_HOP:
            raise ValueError("pitch chunk must be whole frames and fit in the window with its right context")
        self.reset()

    def reset(self) -> None:
        self.win = ChunkWindows(self.window, self.chunk)
        self.frames_out = 0

    def ready(self, n16):
        """Frames final after n16 samples (vectorised): chunks done, minus the right context."""
        e = (np.asarray(n16, dtype=np.int64) // self.chunk) * self.chunk
        return np.maximum(0, e // PITCH_HOP - self.right)

    def push(self, x: np.ndarray) -> np.ndarray:
        out = []
        for window in self.win.push(x):
            f0 = self.ex.extract(window)  # window frames; frame i ends at window start + (i + 1) * hop
            end_frame = self.win.chunks * self.chunk // PITCH_HOP - self.right  # global frames final now
            first_in_window = self.win.chunks * self.chunk // PITCH_HOP - len(f0)
            out.append(f0[self.frames_out - first_in_window: end_frame - first_in_window])
            self.frames_out = end_frame
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """End of input: f0 of the last frames, with zeros after them."""
        return flush_with_silence(self, self.win.chunks * self.chunk + len(self.win.pending), self.frames_out)


class CausalF0:
    """Causal octave guard and unvoiced hold (see module docstring); one frame at a time or a batch."""

    name = "f0 guard"

    def __init__(self, frame_rate, history: int = 8, tolerance_semitones: float = 2.0):
        self.rate_in = self.rate_out = frame_rate  # frames in, the same frames out
        self.history = int(history)
        self.tol = tolerance_semitones / 12.0
        self.reset()

    def reset(self) -> None:
        self._raw = deque(maxlen=self.history)  # log2 f0 of the previous raw voiced frames
        self._last = 0.0

    @staticmethod
    def ready(n_in):
        return np.asarray(n_in, np.int64)

    def push(self, f0: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """raw f0 [n] -> (guarded f0 with 0 unvoiced, f0 with unvoiced held, voiced mask float32)."""
        guarded = np.zeros(len(f0), np.float32)
        held = np.zeros(len(f0), np.float32)
        for i, v in enumerate(np.asarray(f0, np.float64)):
            if v > 0 and np.isfinite(v):
                lv = float(np.log2(v))
                win = list(self._raw) + [lv]
                g = v * octave_factor(lv - float(np.median(win)), self.tol) if len(win) >= 3 else v
                self._raw.append(lv)
                guarded[i] = g
                self._last = g
            held[i] = self._last if guarded[i] == 0 else guarded[i]
        return guarded, held, (guarded > 0).astype(np.float32)

    def flush(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame by frame: nothing is owed."""
        self.reset()
        return self.push(np.zeros(0, np.float32))
