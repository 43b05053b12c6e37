"""Level normalisation and silence slicing shared by preprocess and the offline converter.

Training features are computed on audio normalised to a fixed level of its active (non-silent)
parts; conversion applies the same normalisation so loudness features mean the same thing.
"""
from __future__ import annotations

import numpy as np

TARGET_ACTIVE_DBFS = -20.0
SILENCE_DBFS = -45.0
PEAK_LIMIT = 0.89  # a normalised signal's peak stays below -1 dBFS


def frame_rms_db(wav: np.ndarray, frame: int) -> np.ndarray:
    n = len(wav) // frame
    if n == 0:
        return np.full(1, -120.0)
    x = wav[: n * frame].reshape(n, frame).astype(np.float64)
    return 10.0 * np.log10(np.mean(x * x, axis=1) + 1e-12)


def level_frame(sr: int) -> int:
    """The 20 ms frame the active level is measured on."""
    return max(1, sr // 50)


def active_level_db(wav: np.ndarray, sr: int) -> float:
    """RMS level (dBFS) of the frames within 30 dB of the loudest ones — speech/singing level, not silence."""
    return active_level_of_frames(frame_rms_db(wav, level_frame(sr)))


def active_level_of_frames(db: np.ndarray) -> float:
    """active_level_db from the frames' dB (frame_rms_db), however they were read."""
    active = db[db > max(db.max() - 30.0, SILENCE_DBFS - 30.0)]
    if active.size == 0:
        return float(db.max())
    return float(10.0 * np.log10(np.mean(10.0 ** (active / 10.0))))


def normalize_level(wav: np.ndarray, sr: int, target_db: float = TARGET_ACTIVE_DBFS) -> tuple[np.ndarray, float]:
    """Scale to the target active level, limited so that the peak stays below -1 dBFS. Returns (wav, gain)."""
    level = active_level_db(wav, sr)
    gain = 10.0 ** ((target_db - level) / 20.0)
    peak = float(np.max(np.abs(wav))) * gain
    if peak > PEAK_LIMIT:
        gain *= PEAK_LIMIT / peak
    return (wav * gain).astype(np.float32), float(gain)


def match_level(wav: np.ndarray, reference: np.ndarray, sr: int, peak_limit: float = 0.99) -> np.ndarray:
    """`wav` scaled to the active level of `reference` (a conversion to its input's loudness); the gain is
    lowered only if the peak would pass `peak_limit`."""
    if not np.any(wav) or not np.any(reference):
        return wav
    gain = 10.0 ** ((active_level_db(reference, sr) - active_level_db(wav, sr)) / 20.0)
    peak = float(np.max(np.abs(wav))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (wav * gain).astype(np.float32)


def slice_on_silence(wav: np.ndarray, sr: int, min_len_s: float = 2.0, max_len_s: float = 15.0,
                     min_silence_s: float = 0.3, threshold_db: float = SILENCE_DBFS) -> list[tuple[int, int]]:
    """Cut a long recording at silences into (start, end) sample ranges of at most max_len_s.

    Silences of at least min_silence_s are cut points; leading/trailing silence is trimmed to 0.1 s."""
    hop = max(1, sr // 100)
    db = frame_rms_db(wav, hop)
    loud = db > threshold_db
    if not loud.any():
        return []
    segments, start, silent_run = [], None, 0
    need = int(min_silence_s * 100)
    keep = int(0.1 * 100)
    for i, on in enumerate(loud):
        if on:
            if start is None:
                start = max(0, i - keep)
            silent_run = 0
        elif start is not None:
            silent_run += 1
            if silent_run >= need:
                segments.append((start, i - silent_run + keep))
                start, silent_run = None, 0
    if start is not None:
        segments.append((start, len(loud) - silent_run + min(silent_run, keep)))
    out = []
    max_f = int(max_len_s * 100)
    for s, e in segments:
        while e - s > max_f:  # split over-long segments at their quietest frame in the last third
            lo = s + 2 * max_f // 3
            cut = lo + int(np.argmin(db[lo : s + max_f]))
            out.append((s, cut))
            s = cut
        out.append((s, e))
    return [(s * hop, min(len(wav), e * hop)) for s, e in out if (e - s) / 100 >= min(min_len_s, 0.5)]
