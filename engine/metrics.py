"""Objective quality metrics for converted singing.

- f0 fidelity: median absolute error in cents on frames voiced in both, and voiced/unvoiced agreement.
- MCD: mel-cepstral distortion (dB) between time-aligned renditions: WORLD spectral envelopes
  (CheapTrick, 16 kHz) warped to the mel scale (all-pass, alpha 0.42) and turned into 25
  cepstral coefficients of the log amplitude; c0 (energy) is excluded, as is usual.
- speaker similarity: cosine of resemblyzer d-vectors.
"""
from __future__ import annotations

import numpy as np
import pyworld

from models.audio_io import resample

MCD_SR = 16000
MCD_DIMS = 25
ALPHA = 0.42  # all-pass constant that approximates the mel scale at 16 kHz
FRAME_S = 0.005


def cents_error(f0_out: np.ndarray, f0_ref: np.ndarray) -> dict[str, float]:
    """Compare two f0 tracks on the same frame grid (0 = unvoiced)."""
    n = min(len(f0_out), len(f0_ref))
    a, b = np.asarray(f0_out[:n], float), np.asarray(f0_ref[:n], float)
    va, vb = a > 0, b > 0
    both = va & vb
    cents = np.abs(1200.0 * np.log2(a[both] / b[both])) if both.any() else np.array([np.nan])
    return {
        "f0_cents_median": float(np.median(cents)),
        "f0_gross_error_rate": float(np.mean(cents > 50.0)) if both.any() else float("nan"),
        "vuv_agreement": float(np.mean(va == vb)) if n else float("nan"),
    }


def _world_mcep(wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    x = resample(wav, sr, MCD_SR).astype(np.float64)
    f0, t = pyworld.dio(x, MCD_SR, frame_period=FRAME_S * 1000)
    f0 = pyworld.stonemask(x, f0, t, MCD_SR)
    sp = pyworld.cheaptrick(x, f0, t, MCD_SR)
    return mel_cepstrum(sp), f0


def mel_cepstrum(power_spec: np.ndarray, dims: int = MCD_DIMS, alpha: float = ALPHA) -> np.ndarray:
    """[T, F] power spectral envelope -> [T, dims] mel-cepstrum of the log amplitude."""
    n_bins = power_spec.shape[1]
    warped = np.linspace(0.0, np.pi, n_bins)
    # inverse all-pass warping: the linear frequency that lands on each uniformly spaced mel frequency
    linear = warped - 2.0 * np.arctan(alpha * np.sin(warped) / (1.0 + alpha * np.cos(warped)))
    grid = np.linspace(0.0, np.pi, n_bins)
    log_amp = 0.5 * np.log(np.maximum(power_spec, 1e-20))
    resampled = np.stack([np.interp(linear, grid, row) for row in log_amp])
    return np.fft.irfft(resampled, axis=1)[:, :dims]


def mel_cepstral_distortion(wav_out: np.ndarray, wav_ref: np.ndarray, sr: int, voiced_only: bool = True) -> float:
    """MCD in dB between two time-aligned signals (frames voiced in both when voiced_only)."""
    c_out, f_out = _world_mcep(wav_out, sr)
    c_ref, f_ref = _world_mcep(wav_ref, sr)
    n = min(len(c_out), len(c_ref))
    c_out, c_ref = c_out[:n, 1:], c_ref[:n, 1:]
    mask = (f_out[:n] > 0) & (f_ref[:n] > 0) if voiced_only else np.ones(n, bool)
    if not mask.any():
        return float("nan")
    diff = c_out[mask] - c_ref[mask]
    return float(np.mean(10.0 / np.log(10.0) * np.sqrt(2.0 * np.sum(diff**2, axis=1))))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
