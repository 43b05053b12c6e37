"""Frame grids and moving features between them.

Convention used by every extractor in engine/ (and by the HiFi-GAN mel in models/mel.py):

    frame i of a grid at rate r summarises the interval [i/r, (i+1)/r) and is centred at (i + 0.5) / r;
    a signal of T seconds has floor(T * r) frames (for a hop of h samples: len(wav) // h).

This is exactly what the HiFi-GAN mel gives (reflect pad (n_fft - hop)/2 each side, center=False:
frame i covers samples [i*hop - (n_fft-hop)/2, i*hop + (n_fft+hop)/2), centred at i*hop + hop/2), so
features that follow it line up with the mel without any extra offset. Extractors whose native framing
differs (pyworld, FCPE, Whisper) are shifted to this convention inside their own classes.

The model's frame grid is MODEL_FRAME_RATE = 22050 / 256 ≈ 86.13 Hz.
"""
from __future__ import annotations

import numpy as np

from models.errors import ComoliveError

MODEL_SAMPLE_RATE = 22050
MODEL_HOP_LENGTH = 256
MODEL_FRAME_RATE = MODEL_SAMPLE_RATE / MODEL_HOP_LENGTH


def n_frames(n_samples: int, hop_length: int) -> int:
    """Number of whole frames in a signal under the convention above."""
    return int(n_samples) // int(hop_length)


def frame_times(n: int, rate_hz: float) -> np.ndarray:
    """Centre times (s) of frames 0..n-1 of a grid at `rate_hz`."""
    return (np.arange(n, dtype=np.float64) + 0.5) / float(rate_hz)


def align_frames(x: np.ndarray, src_rate_hz: float, dst_rate_hz: float, n_dst: int,
                 mode: str = "nearest") -> np.ndarray:
    """Resample a feature sequence [n_src, ...] at `src_rate_hz` onto `n_dst` frames at `dst_rate_hz`.

    Each destination frame takes the value at its centre time: "nearest" picks the source frame whose
    interval contains that time (right for content units and voiced/unvoiced flags), "linear"
    interpolates between the two nearest source centres (right for smooth curves such as loudness).
    Times outside the source hold the first/last frame, so n_dst may exceed the source's span by a
    frame or two (rounding between grids) without special cases.
    """
    x = np.asarray(x)
    if mode not in ("nearest", "linear"):
        raise ComoliveError(f"align_frames: unknown mode {mode!r} (use 'nearest' or 'linear')")
    if src_rate_hz <= 0 or dst_rate_hz <= 0:
        raise ComoliveError("align_frames: frame rates must be positive")
    n_dst = int(n_dst)
    if n_dst < 0:
        raise ComoliveError("align_frames: n_dst must be >= 0")
    n_src = x.shape[0]
    if n_dst == 0:
        return x[:0].copy()
    if n_src == 0:
        raise ComoliveError("align_frames: the source sequence has no frames")
    # source position (in frames, centre convention) of each destination centre
    pos = frame_times(n_dst, dst_rate_hz) * float(src_rate_hz) - 0.5
    if mode == "nearest":
        idx = np.clip(np.floor(pos + 0.5).astype(np.int64), 0, n_src - 1)
        return x[idx]
    pos = np.clip(pos, 0.0, n_src - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n_src - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    out = x[lo] * (1.0 - w) + x[hi] * w
    return out.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32, copy=False)
