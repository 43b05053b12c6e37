"""The singer's register as the panel has heard it: the pitch readings of the last seconds sung.

The panel's Match button sets the key that moves this register into the reference clip's
(engine/register.py), as `--key auto` does for a file; live, only what was sung so far is known, so the
median of the last WINDOW_S of voiced readings stands for the whole song, and fewer than MIN_VOICED_S of
them are not enough to trust.
"""
from __future__ import annotations

from collections import deque

import numpy as np

WINDOW_S = 20.0
MIN_VOICED_S = 2.0


class SungPitch:
    """Voiced input f0 readings (Hz), one per refresh of `period_s`; unvoiced readings (0, None) are skipped."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.readings: deque[float] = deque(maxlen=max(1, int(WINDOW_S / period_s)))

    def push(self, f0_hz: float | None) -> None:
        if f0_hz is not None and np.isfinite(f0_hz) and f0_hz > 0:
            self.readings.append(float(f0_hz))

    def median(self) -> float | None:
        """The median of the readings kept, or None while they cover less than MIN_VOICED_S."""
        if len(self.readings) * self.period_s < MIN_VOICED_S:
            return None
        return float(np.median(self.readings))
