"""Live settings that change without clicks: a value moves to its new target over a few model frames."""
from __future__ import annotations

import numpy as np

RAMP_FRAMES = 4  # live key / formant / voice changes ramp over this many model frames (~46 ms)


class Ramp:
    """A value (scalar or vector) that moves linearly to a new target over RAMP_FRAMES frames."""

    def __init__(self, value):
        self.cur = np.asarray(value, np.float64).copy()
        self.target = self.cur.copy()
        self.left = 0

    def set(self, target, jump: bool = False) -> None:
        self.target = np.asarray(target, np.float64).copy()
        self.left = 0 if jump else RAMP_FRAMES
        if jump:
            self.cur = self.target.copy()

    def take(self, n: int) -> np.ndarray:
        """Values for the next n frames [n, ...]."""
        out = np.empty((n,) + self.cur.shape, np.float64)
        for i in range(n):
            if self.left > 0:
                self.cur = self.cur + (self.target - self.cur) / self.left
                self.left -= 1
            out[i] = self.cur
        return out
