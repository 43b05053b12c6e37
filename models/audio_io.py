"""Reading and writing audio files with clear errors.

Every entry point (CLI, preprocess, corpus, eval) loads audio through `load_audio`, so odd input
(any rate, stereo, 8/16/24/32-bit, float, NaN, empty, not audio at all) is handled in one place.
"""
from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from models.errors import AudioInputError, AudioInputWarning, ComoliveError


def _wav_shortfall(p: Path) -> tuple[int, int] | None:
    """(bytes the RIFF header declares for its data chunk, bytes the file holds) when a WAV file holds
    less than its header says (a copy cut short), else None. libsndfile reads such a file silently."""
    try:
        with open(p, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"data":
                    held = p.stat().st_size - f.tell()
                    return (size, held) if size not in (0, 0xFFFFFFFF) and size > held else None
                f.seek(size + (size & 1), 1)
    except OSError:
        return None


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def resample(wav: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Band-limited polyphase resampling along the last axis (exact rational ratio)."""
    if sr_from == sr_to:
        return wav.astype(np.float32, copy=False)
    g = np.gcd(int(sr_from), int(sr_to))
    return resample_poly(wav, sr_to // g, sr_from // g, axis=-1).astype(np.float32)


def as_mono(wav: np.ndarray) -> np.ndarray:
    """Validate an in-memory signal handed to an extractor: 1-D, finite, float32."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise AudioInputError(f"expected mono audio as a 1-D array, got shape {wav.shape}")
    if not np.isfinite(wav).all():
        raise AudioInputError("audio contains NaN or infinite samples")
    return wav


def audio_seconds(path: str | os.PathLike) -> float:
    """A file's length from its header; 0 when it cannot be read (the reader then says why)."""
    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        return 0.0


def audio_info(path: str | os.PathLike, max_seconds: float | None = None):
    """soundfile's header info of `path`, checked: AudioInputError with a one-line reason for a missing,
    empty, unreadable or (with max_seconds) too long file; an AudioInputWarning for a WAV cut short of what
    its header declares (libsndfile reads such a file silently, as far as it goes)."""
    p = Path(path)
    if not p.exists():
        raise AudioInputError(f"{p}: file not found")
    if p.is_dir():
        raise AudioInputError(f"{p}: is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioInputError(f"{p}: file is empty")
    try:
        info = sf.info(str(p))
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioInputError(f"{p}: not a readable audio file ({msg})") from None
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioInputError(f"{p}: {_duration(info.duration)} long; this command takes at most "
                              f"{_duration(max_seconds)} at once (split the file into parts)")
    short = _wav_shortfall(p)
    if short is not None:
        warnings.warn(f"{p}: truncated: its header declares {short[0]} bytes of audio, the file holds "
                      f"{short[1]}; converting what is there", AudioInputWarning, stacklevel=3)
    return info


def load_audio(path: str | os.PathLike, sr: int | None = None,
               max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Load `path` as mono float32 in [-1, 1]; resample to `sr` when given.

    Returns (wav, sample_rate). Raises AudioInputError with a one-line reason for a missing,
    unreadable, empty, non-audio or non-finite file, or one longer than `max_seconds` (checked from the
    header, before anything is read). A WAV file cut short of what its header declares is read as far
    as it goes, with an AudioInputWarning.
    """
    p = Path(path)
    audio_info(p, max_seconds)
    try:
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AudioInputError(f"{p}: not a readable audio file ({msg})") from None
    if data.shape[0] == 0:
        raise AudioInputError(f"{p}: holds no samples")
    if not np.isfinite(data).all():
        raise AudioInputError(f"{p}: contains NaN or infinite samples")
    wav = data.mean(axis=1)  # downmix to mono
    if sr is not None and sr != file_sr:
        wav = resample(wav, file_sr, sr)
        file_sr = sr
    return np.ascontiguousarray(wav, dtype=np.float32), int(file_sr)


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any compute) when `path` cannot or must not be written."""
    p = Path(path)
    if p.is_dir():
        raise ComoliveError(f"{p}: is a folder, cannot write audio there")
    if p.exists() and not force:
        raise ComoliveError(f"{p}: already exists (use --force to overwrite)")
    if not p.parent.exists():
        raise ComoliveError(f"{p.parent}: output folder does not exist")
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ComoliveError(f"{p}: not writable")
    return p


def save_audio(path: str | os.PathLike, wav: np.ndarray, sr: int, force: bool = True) -> Path:
    """Write float audio as 16-bit PCM wav (clipped to [-1, 1]). Refuses to overwrite unless forced."""
    p = check_writable(path, force)
    wav = np.clip(np.nan_to_num(np.asarray(wav, dtype=np.float32)), -1.0, 1.0)
    tmp = p.with_name(p.name + ".partial")
    try:
        sf.write(str(tmp), wav, int(sr), subtype="PCM_16", format="WAV")
        os.replace(tmp, p)
    except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError is a RuntimeError (disk full, /proc, ...)
        tmp.unlink(missing_ok=True)
        raise write_failure(p, e) from None
    return p


def write_failure(path: Path, e: Exception) -> ComoliveError:
    """One line for a write that failed (an OSError's reason, or libsndfile's last line)."""
    text = str(e).strip()
    reason = getattr(e, "strerror", None) or (text.splitlines()[-1] if text else type(e).__name__)
    return ComoliveError(f"{path}: cannot write ({reason})")
