"""Formant/key shift of a log-mel spectrogram by warping its frequency axis (the `aug_shift` augmentation).

Scaling every frequency by a = 2^(semitones/12) is what resampling the audio does to its spectrum
(harmonics and formants move together, timing stays). Training the decoder on targets warped this way,
with f0 scaled by the same factor and the shift value as an input, teaches it what a formant shift
sounds like; at conversion time the shift input alone moves the formants while f0 stays where the
key control puts it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

FORMANT_RANGE = 12.0  # semitones either way offered by the controls


@lru_cache(maxsize=8)
def mel_bin_hz(n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Centre frequency (Hz) of each bin of a Slaney mel filterbank (librosa's and HiFi-GAN's)."""
    import librosa

    return librosa.mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=False)[1:-1].astype(np.float64)


def warp_mel(mel: np.ndarray, semitones: float, fmin: float = 0.0, fmax: float = 8000.0) -> np.ndarray:
    """log-mel [M, T] -> the log-mel of the same sound with every frequency scaled by 2^(semitones/12).

    Bins whose source frequency falls outside the analysed band take the nearest edge bin's value.
    """
    if semitones == 0:
        return mel
    hz = mel_bin_hz(mel.shape[0], float(fmin), float(fmax))
    src = hz / 2.0 ** (float(semitones) / 12.0)           # where each output bin's energy comes from
    pos = np.interp(src, hz, np.arange(len(hz), dtype=np.float64))  # fractional source bin (edges clamped)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(hz) - 1)
    w = (pos - lo)[:, None].astype(mel.dtype)
    return (1 - w) * mel[lo] + w * mel[hi]


def warp_mel_frames(mel: np.ndarray, semitones: np.ndarray, fmin: float = 0.0, fmax: float = 8000.0) -> np.ndarray:
    """warp_mel with one shift per frame ([T]), so a live change can ramp over a few frames."""
    semitones = np.asarray(semitones, np.float64)
    if not semitones.any():
        return mel
    out = np.empty_like(mel)
    for s in np.unique(semitones):
        cols = semitones == s
        out[:, cols] = warp_mel(mel[:, cols], float(s), fmin, fmax)
    return out
