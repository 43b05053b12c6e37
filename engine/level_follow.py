"""Live output level that follows the input's, the streaming counterpart of loudness_norm.match_level.

The decoder does not reproduce the input's loudness exactly (measured on real singers: about 1.6 dB
quieter on average, up to 5 dB for high voices). Offline, the converter rescales the whole output to the
input's active level. Live, this follower keeps two slow averages of power, one of the input and one
of the (pre-gain) output, over the same stream positions, updated per hop of `hop` samples while the
input is active, and scales each output hop by the square root of their ratio as it stood one hop
earlier (clamped to ±max_db). Hop k of the output is always paired with hop k of the input, and only
whole hops are measured, so the result does not depend on how the stream is cut into blocks.
"""
from __future__ import annotations

import numpy as np


class LevelFollower:
    def __init__(self, hop: int = 256, rate: int = 22050, tau_s: float = 2.0, max_db: float = 10.0,
                 active_db: float = -50.0):
        self.hop = int(hop)
        self.alpha = float(np.exp(-self.hop / (tau_s * rate)))
        self.max_gain = 10.0 ** (max_db / 20.0)
        self.active_power = 10.0 ** (active_db / 10.0)
        self.clear()

    def clear(self) -> None:
        """Forget everything (a session reset to time 0)."""
        self.p_in: float | None = None
        self.p_out: float | None = None
        self.restart()

    def restart(self) -> None:
        """A new stream (the session's gate reopened): positions start at 0, the averages are kept."""
        self._in_hops: list[float] = []  # power of each complete input hop not yet paired with its output
        self._in_tail = np.zeros(0, np.float32)
        self._out_tail = np.zeros(0, np.float32)
        self.gain = 1.0 if self.p_in is None or self.p_out is None else self._ratio()

    def _ratio(self) -> float:
        g = np.sqrt((self.p_in + 1e-12) / (self.p_out + 1e-12))
        return float(np.clip(g, 1.0 / self.max_gain, self.max_gain))

    def feed_input(self, x: np.ndarray) -> None:
        buf = np.concatenate([self._in_tail, x]) if len(self._in_tail) else x
        n = len(buf) // self.hop
        if n:
            self._in_hops += list(np.mean(buf[: n * self.hop].reshape(n, self.hop).astype(np.float64) ** 2, axis=1))
        self._in_tail = buf[n * self.hop:].astype(np.float32)

    def _update(self, p_in: float, p_out: float) -> None:
        if p_in < self.active_power:
            return
        a = self.alpha
        self.p_in = p_in if self.p_in is None else a * self.p_in + (1 - a) * p_in
        self.p_out = p_out if self.p_out is None else a * self.p_out + (1 - a) * p_out
        self.gain = self._ratio()

    def apply(self, y: np.ndarray) -> np.ndarray:
        """Output samples (in stream order, each position after its input) -> the same samples, rescaled."""
        out = np.empty_like(y)
        i = 0
        while i < len(y):
            room = self.hop - len(self._out_tail)
            piece = y[i:i + room]
            out[i:i + len(piece)] = piece * np.float32(self.gain)
            self._out_tail = np.concatenate([self._out_tail, piece])
            i += len(piece)
            if len(self._out_tail) == self.hop:
                p_out = float(np.mean(self._out_tail.astype(np.float64) ** 2))
                p_in = self._in_hops.pop(0) if self._in_hops else 0.0
                self._update(p_in, p_out)
                self._out_tail = np.zeros(0, np.float32)
        return out
