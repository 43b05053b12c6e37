"""What the loop shows while it runs: compute-time percentiles, levels in dB, a cheap f0 read-out.

These run in the worker (never in the audio callback) and cost well under a millisecond per block.
"""
from __future__ import annotations

import threading
from collections import deque

import numpy as np


def to_db(x: float) -> float:
    return float(20.0 * np.log10(max(float(x), 1e-6)))


def percentiles_ms(seconds) -> tuple[float, float, float]:
    """p50, p90, p99 of per-block times given in seconds, in ms (zeros when there are none)."""
    t = np.asarray(seconds, float)
    if not t.size:
        return 0.0, 0.0, 0.0
    p = np.percentile(t, [50, 90, 99]) * 1000.0
    return float(p[0]), float(p[1]), float(p[2])


class ComputeTimes:
    """The last `keep` per-block compute times; percentiles on demand (thread-safe snapshot)."""

    def __init__(self, keep: int = 2000):
        self._t: deque[float] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._t.append(seconds)

    def percentiles_ms(self) -> tuple[float, float, float]:
        return percentiles_ms(self.values())

    def values(self) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._t, float)


def estimate_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 1100.0,
                threshold: float = 0.5) -> float | None:
    """f0 (Hz) of a voiced block by normalised autocorrelation, or None when unvoiced or silent.

    A read-out for the status line and panel, not the model's pitch extractor."""
    x = np.asarray(x, np.float64)
    if len(x) < int(2 * sr / fmin) or np.max(np.abs(x)) < 1e-3:
        return None
    x = x - x.mean()
    n = len(x)
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    energy = np.cumsum(x[::-1] ** 2)[::-1]  # energy of x[k:], for normalisation by overlap
    lo, hi = int(sr / fmax), min(int(sr / fmin), n // 2)
    norm = ac[lo:hi] / np.sqrt(energy[0] * energy[lo:hi] + 1e-12)
    if len(norm) == 0:
        return None
    k = int(np.argmax(norm))
    if norm[k] < threshold:
        return None
    # prefer the shortest lag nearly as good as the best (guards against octave-down picks)
    good = np.nonzero(norm >= 0.9 * norm[k])[0]
    k = int(good[0])
    while k + 1 < len(norm) and norm[k + 1] > norm[k]:
        k += 1
    lag = lo + k
    if 0 < k < len(norm) - 1:  # parabolic interpolation of the peak
        a, b, c = norm[k - 1], norm[k], norm[k + 1]
        den = a - 2 * b + c
        if den < 0:
            lag += 0.5 * (a - c) / den
    return float(sr / lag)
