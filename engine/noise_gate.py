"""The live session's noise gate: the output held down while the input is quiet, clean fades at its edges.

The gate attenuates; it does not pause the conversion. While closed it lets the converted signal through
`floor` dB down: -inf (silence) by default, or e.g. -40 dB to keep a trace of room tone, as broadcast gates
can, so that the pauses of a take do not sound switched off (docs/results.md measures both). Every
stream keeps running through a pause, so a phrase after a breath starts with its context (a restart at
every reopening made each phrase begin cold: on real singing that cost about 0.2 DNSMOS). Only a long
pause, `sleep` beyond the hold and the latency, tells the session to pause its streams (`asleep`; no
conversion runs, the output is silent). When the input block level has stayed below the threshold for the
hold plus the latency (so that the output of the last loud input, and `hold` of what follows it, are
played), the output fades to the floor over FADE_MS. The next block at or above the threshold reopens it,
and the output fades in where that onset plays: one block before it plus the latency (an onset that
crosses the threshold mid-block begins in the quiet block before), or at this block's first output sample
when that comes later.
"""
from __future__ import annotations

import numpy as np

FADE_MS = 5.0  # fade out / in


class NoiseGate:
    def __init__(self, sample_rate: int, threshold_db: float, hold_ms: float, latency: int, sleep: int,
                 floor_db: float = float("-inf")):
        self.sr, self.latency, self.sleep = int(sample_rate), int(latency), int(sleep)
        self.fade = max(1, int(round(FADE_MS * self.sr / 1000.0)))
        self.set(threshold_db, hold_ms, floor_db)
        self.reset()

    def set(self, threshold_db: float | None = None, hold_ms: float | None = None,
            floor_db: float | None = None) -> None:
        if threshold_db is not None:
            self.threshold_db = float(threshold_db)
        if hold_ms is not None:
            self.hold = int(round(float(hold_ms) * self.sr / 1000.0))
        if floor_db is not None:
            self.floor = float(10.0 ** (float(floor_db) / 20.0))  # gain while closed (-inf dB: 0, a mute)

    def reset(self) -> None:
        """Closed, as at the start: the first loud block opens it."""
        self.open = False
        self.closing = False
        self.quiet = 0
        self.fade_in_at: int | None = None  # input-timeline sample where the fade-in starts

    @property
    def gated(self) -> bool:
        """No output this block (closed, and not fading out)."""
        return not self.open and not self.closing

    @property
    def asleep(self) -> bool:
        """Closed for `sleep` samples beyond the hold and the latency: a long pause."""
        return not self.open and self.quiet >= self.hold + self.latency + self.sleep

    def step(self, level_db: float, n: int, t: int, preroll: int = 0) -> bool:
        """The decision for the block of n samples that starts at input sample t (level: its dBFS), whose
        onset may have begun up to `preroll` samples before t; True when the gate reopens here."""
        loud = level_db >= self.threshold_db
        self.quiet = 0 if loud else self.quiet + n
        self.closing = False
        if not self.open and loud:
            self.open, self.fade_in_at = True, max(t, t - preroll + self.latency)
            return True
        if self.open and self.quiet > 0 and self.quiet >= self.hold + self.latency:
            self.closing = True
        return False

    def restarted(self, t: int) -> None:
        """The streams resumed or began again at input sample t (a show's start, a long pause, a failed block):
        their first output, `latency` samples later, fades in."""
        self.fade_in_at = t + self.latency

    def apply(self, y: np.ndarray, t: int) -> None:
        """The fade-out over the block's start when the gate closes, silence while it is closed, and the
        fade-in, in place (y: the output block that starts at input-timeline sample t)."""
        n, lo = len(y), self.floor
        if self.closing:
            ramp = np.full(n, lo, np.float32)
            f = min(self.fade, n)
            ramp[:f] = lo + (1.0 - lo) * (0.5 + 0.5 * np.cos(np.pi * (np.arange(f) + 1) / f))
            y *= ramp
            self.open = False
        elif not self.open:
            y *= np.float32(lo)
        if self.fade_in_at is not None and self.open:
            a = self.fade_in_at - t  # fade start inside this block
            if a < n:
                g = np.clip((np.arange(n) - a + 1) / self.fade, 0.0, 1.0)
                y *= (lo + (1.0 - lo) * (0.5 - 0.5 * np.cos(np.pi * g))).astype(np.float32)
                if a + self.fade <= n:
                    self.fade_in_at = None
            else:
                y *= np.float32(lo)
