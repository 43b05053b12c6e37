"""The live level follower: an output that comes out quieter than its input is brought to the input's level
within a few seconds, whatever the block cutting, and silence never pumps the gain."""
from __future__ import annotations

import numpy as np

from engine.level_follow import LevelFollower
from tests.helpers import harmonic

SR = 22050


def _run(x: np.ndarray, y: np.ndarray, cuts: list[int]) -> np.ndarray:
    lf, out, i = LevelFollower(256, SR), [], 0
    for n in cuts:
        lf.feed_input(x[i:i + n])
        out.append(lf.apply(y[i:i + n]))
        i += n
    return np.concatenate(out)


def test_output_level_reaches_the_input_level_whatever_the_blocks() -> None:
    x = harmonic(220.0, 8.0, SR, vibrato_cents=40.0)
    y = 0.35 * x  # a conversion 9 dB quieter than its input
    rng = np.random.default_rng(0)
    a = _run(x, y, [1764] * (len(x) // 1764 + 1))
    b = _run(x, y, list(rng.integers(1, 3000, size=len(x) // 500)) + [len(x)])
    assert np.array_equal(a, b)
    tail = slice(len(x) - 2 * SR, len(x))
    level = 20 * np.log10(np.sqrt(np.mean(a[tail] ** 2)) / np.sqrt(np.mean(x[tail] ** 2)))
    assert abs(level) < 1.0, level


def test_silence_keeps_the_gain() -> None:
    lf = LevelFollower(256, SR)
    x = harmonic(220.0, 3.0, SR)
    lf.feed_input(x)
    lf.apply(0.5 * x)
    g = lf.gain
    lf.feed_input(np.zeros(SR, np.float32))
    lf.apply(np.full(SR, 1e-4, np.float32))  # decoder hiss during a pause must not pull the gain around
    assert abs(lf.gain - g) < 1e-3 and 1.5 < g < 2.1
