"""Re-sung copies for voice add: WORLD moves the pitch by the interval asked and keeps the voice's formants."""
from __future__ import annotations

import numpy as np
import soundfile as sf

from engine.pitch import make_pitch_extractor
from training.pitch_augment import WORLD_RATE, shift_keep_formants, write_shifted_copies

SR = WORLD_RATE
FORMANT_HZ = 1000.0


def _vowel(f0: float, seconds: float = 2.0) -> np.ndarray:
    """Harmonics of f0 shaped by one narrow resonance at FORMANT_HZ (a vowel with one strong formant)."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, int(4000 / f0)):
        f = k * f0
        x += np.sin(2 * np.pi * f * t) / (1.0 + ((f - FORMANT_HZ) / 120.0) ** 2)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def _strongest_harmonic_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x[SR // 2: SR // 2 + 8192] * np.hanning(8192)))
    freqs = np.fft.rfftfreq(8192, 1 / SR)
    band = (freqs > 300) & (freqs < 3000)
    return float(freqs[band][np.argmax(spec[band])])


def _median_f0(x: np.ndarray) -> float:
    f0 = make_pitch_extractor("harvest").extract_from(x, SR)
    return float(np.median(f0[f0 > 0]))


def test_shift_moves_the_pitch_keeps_the_length_and_the_formant():
    x = _vowel(200.0)
    for semitones in (6.0, -5.0):
        y = shift_keep_formants(x, SR, semitones)
        assert len(y) == len(x) and np.isfinite(y).all() and np.abs(y).max() <= 0.95
        cents = 1200 * np.log2(_median_f0(y) / _median_f0(x))
        assert abs(cents - 100 * semitones) < 25
        # the strongest harmonic is the one nearest the formant, not the formant moved with the pitch
        moved = FORMANT_HZ * 2 ** (semitones / 12)
        peak = _strongest_harmonic_hz(y)
        assert abs(peak - FORMANT_HZ) < abs(peak - moved)
        assert abs(peak - FORMANT_HZ) <= 0.5 * 200.0 * 2 ** (semitones / 12) + 20


def test_copies_are_written_per_shift(tmp_path):
    sf.write(tmp_path / "a.flac", _vowel(220.0, 1.0), SR)
    out = write_shifted_copies([tmp_path / "a.flac"], tmp_path / "out", [-3.0, 4.5])
    assert [p.relative_to(tmp_path / "out").as_posix() for p in out] == ["-3/a.wav", "+4.5/a.wav"]
    for p in out:
        y, sr = sf.read(p)
        assert sr == WORLD_RATE and abs(len(y) - WORLD_RATE) <= 1
