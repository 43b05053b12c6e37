"""Objective quality metrics for converted singing.

- f0 fidelity: median absolute error in cents on frames voiced in both, and voiced/unvoiced agreement.
- MCD: mel-cepstral distortion (dB) between time-aligned renditions: WORLD spectral envelopes
  (CheapTrick, 16 kHz) warped to the mel scale (all-pass, alpha 0.42) and turned into 25
  cepstral coefficients of the log amplitude; c0 (energy) is excluded, as is usual.
- speaker similarity: cosine of resemblyzer d-vectors.
- content preservation: character error rate between two transcripts (Levenshtein on normalised text).
- streamed vs offline: energy of the difference relative to the reference signal, in dB.
"""
from __future__ import annotations

import numpy as np
import pyworld

from models.audio_io import resample

MCD_SR = 16000
MCD_DIMS = 25
ALPHA = 0.42  # all-pass constant that approximates the mel scale at 16 kHz
FRAME_S = 0.005


def expected_f0(f0_source: np.ndarray, key: float) -> np.ndarray:
    """What a conversion should sing: the source f0 moved by the key shift (0 stays unvoiced)."""
    return np.asarray(f0_source, float) * 2.0 ** (float(key) / 12.0)


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


def normalise_text(text: str) -> str:
    """Lower case, letters/digits/apostrophes only, single spaces: transcripts differ in casing and punctuation."""
    kept = "".join(c if c.isalnum() or c == "'" else " " for c in text.lower())
    return " ".join(kept.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edits needed to turn the reference transcript into the hypothesis, per reference character.

    Both are normalised first. NaN when the reference is empty (nothing to preserve)."""
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return float("nan")
    return edit_distance(ref, hyp) / len(ref)


DIFF_FLOOR_DB = -200.0


def difference_db(signal: np.ndarray, reference: np.ndarray) -> float:
    """10 log10(energy(signal - reference) / energy(reference)) over the common length; floored at -200 dB
    (identical signals) so that the figure stays a finite JSON number."""
    n = min(len(signal), len(reference))
    a, b = np.asarray(signal[:n], np.float64), np.asarray(reference[:n], np.float64)
    err, ref = float(np.sum((a - b) ** 2)), float(np.sum(b**2))
    if ref == 0.0:
        return DIFF_FLOOR_DB if err == 0.0 else float("inf")
    return float(max(DIFF_FLOOR_DB, 10.0 * np.log10(max(err / ref, 1e-300))))


def best_lag(signal: np.ndarray, reference: np.ndarray, max_lag: int) -> int:
    """The shift d (|d| <= max_lag samples) for which signal[n] best matches reference[n - d]
    (cross-correlation peak): > 0 means the signal comes late."""
    n = min(len(signal), len(reference))
    a, b = np.asarray(signal[:n], np.float64), np.asarray(reference[:n], np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n + 1)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(xc[lags])])


def melody_error(wav_in: np.ndarray, sr_in: int, wav_out: np.ndarray, sr_out: int, key: float = 0.0) -> dict[str, float]:
    """How far a conversion sings from its input's melody moved by `key`: Harvest f0 of both, in cents."""
    from engine.pitch import make_pitch_extractor

    pitch = make_pitch_extractor("harvest")
    f_in = pitch.extract(resample(wav_in, sr_in, pitch.sample_rate))
    f_out = pitch.extract(resample(wav_out, sr_out, pitch.sample_rate))
    return cents_error(f_out, expected_f0(f_in, key))
