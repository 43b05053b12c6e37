"""Timbre perturbation of a recording, so that content features taken from it cannot carry the singer's voice.

Real (non-parallel) recordings teach the decoder by reconstruction: it rebuilds the original mel from
content, f0, loudness and the singer's d-vector. If the content features came from the original they
would carry its timbre and the decoder would learn to copy it from there (the leak that keeps a
conversion near its source). So content is taken from a perturbed copy instead, as NANSY and
so-vits-svc do: pitch and formants moved together by a random interval (resampling, then a phase
vocoder back to the original length) and a random equaliser (peaking bands and a tilt). f0 and loudness
still come from the original, so the decoder learns to take pitch and level from them alone.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from models.audio_io import resample


def _peaking(f0: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook peaking-EQ biquad."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / sr
    alpha = np.sin(w) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w), 1 - alpha / a])
    return b / den[0], den / den[0]


def random_eq(wav: np.ndarray, sr: int, rng: np.random.Generator, bands: int = 3, max_db: float = 8.0) -> np.ndarray:
    """A few peaking bands (150 Hz .. 0.35 sr, ±max_db) and a first-order tilt; the level is kept."""
    y = wav.astype(np.float64)
    for _ in range(bands):
        f = float(np.exp(rng.uniform(np.log(150.0), np.log(0.35 * sr))))
        b, a = _peaking(f, float(rng.uniform(-max_db, max_db)), float(rng.uniform(0.7, 2.0)), sr)
        y = lfilter(b, a, y)
    tilt = float(rng.uniform(-0.4, 0.4))  # y[n] + tilt * y[n-1]: brighter (<0) or darker (>0)
    y = lfilter([1.0, tilt], [1.0 + abs(tilt)], y)
    rms_in, rms_out = np.sqrt(np.mean(wav.astype(np.float64) ** 2)), np.sqrt(np.mean(y ** 2))
    return (y * (rms_in / max(rms_out, 1e-9))).astype(np.float32)


def shift_pitch_and_formants(wav: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Move pitch and formants together by `semitones`, keeping the length (resample + phase vocoder)."""
    import librosa

    if abs(semitones) < 1e-3:
        return wav.astype(np.float32)
    ratio = 2.0 ** (semitones / 12.0)
    src_rate = int(round(sr * ratio / 50.0)) * 50  # a rate on a 50 Hz grid keeps the polyphase filter short
    y = resample(wav.astype(np.float32), src_rate, sr)  # read faster: higher and shorter
    y = librosa.effects.time_stretch(y, rate=len(y) / max(1, len(wav)))
    y = y[:len(wav)] if len(y) >= len(wav) else np.pad(y, (0, len(wav) - len(y)))
    return y.astype(np.float32)


def perturb_timbre(wav: np.ndarray, sr: int, rng: np.random.Generator, max_semitones: float = 4.0) -> np.ndarray:
    """The training perturbation: a shift of at least 1 semitone either way, then a random equaliser."""
    st = float(rng.uniform(1.0, max_semitones)) * (1 if rng.random() < 0.5 else -1)
    return random_eq(shift_pitch_and_formants(wav, sr, st), sr, rng)
