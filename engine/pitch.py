"""Pitch (f0) extractors and f0 post-processing.

Every extractor takes mono float32 audio at its `sample_rate` and returns f0 in Hz per frame, 0 for
unvoiced, on the grid of engine/frames.py: frame i is centred at (i + 0.5) * hop_length / sample_rate
and a signal of n samples gives n // hop_length frames. Train with the same extractor that runs live.
"""
from __future__ import annotations

import contextlib
import io
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from models.audio_io import as_mono, resample
from models.device import pick_device
from models.errors import ComoliveError


@runtime_checkable
class PitchExtractor(Protocol):
    """What the engine needs from a pitch tracker."""

    sample_rate: int   # rate the input must be at
    hop_length: int    # samples per output frame
    frame_rate: float  # sample_rate / hop_length

    def extract(self, wav: np.ndarray) -> np.ndarray:
        """f0 [len(wav) // hop_length] in Hz, 0 = unvoiced."""
        ...


class _PitchBase:
    """Shared plumbing: rate bookkeeping and the resample-from-any-rate helper."""

    sample_rate: int
    hop_length: int

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def extract_from(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Like extract() for audio at any rate (resampled to `sample_rate` first)."""
        return self.extract(resample(as_mono(wav), int(sr), self.sample_rate))

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return self.extract(wav)


class FCPEPitch(_PitchBase):
    """FCPE with the weights bundled in torchfcpe: accurate (~1 cent) and fast enough for live use.

    16 kHz input, hop 160 (100 frames/s). FCPE was trained with frame i at time i * hop (measured on a
    vibrato tone: 1 cent error at that offset, 4 cents half a frame away), so, as for pyworld, the first
    hop // 2 samples are dropped to put frame i at (i + 0.5) * hop; extra trailing frames are cut.
    threshold 0.05 (the model's own default), not the 0.006 some SVC tools use: at 0.006 white noise
    came out 94 % voiced, at 0.05 0 %, while voicing of real speech barely moved (41 -> 38 %).
    Low-frequency (brown) noise still fools it (56 % voiced): gate on loudness upstream.
    """

    sample_rate = 16000
    hop_length = 160

    def __init__(self, device: str | torch.device | None = None, threshold: float = 0.05,
                 decoder: str = "local_argmax"):
        import torchfcpe

        self.device = pick_device(device if device is None else str(device))
        self.threshold = float(threshold)
        self.decoder = decoder
        # torchfcpe chats on stdout while loading; library code stays quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            self.model = torchfcpe.spawn_bundled_infer_model(device=str(self.device))
        self.f0_min = float(self.model.get_model_f0_range()["f0_min"])

    @torch.no_grad()
    def extract(self, wav: np.ndarray) -> np.ndarray:
        wav = as_mono(wav)
        n = len(wav) // self.hop_length
        if n == 0:
            return np.zeros(0, np.float32)
        # FCPE prints a complaint for samples outside [-1, 1]; clipping is what a sound card does anyway.
        x = torch.from_numpy(np.clip(wav[self.hop_length // 2:], -1.0, 1.0)).to(self.device)[None, :, None]
        f0 = self.model(x, self.sample_rate, decoder_mode=self.decoder, threshold=self.threshold)
        f0 = f0[0, :n, 0].float().cpu().numpy()
        f0 = np.nan_to_num(f0, nan=0.0, posinf=0.0, neginf=0.0)
        f0[f0 < self.f0_min] = 0.0
        return f0.astype(np.float32)


class WorldPitch(_PitchBase):
    """pyworld DIO (fast; refined by StoneMask) or Harvest (slower, fewer voicing errors).

    pyworld puts frame i at time i * hop; we drop the first hop // 2 samples so that frame i lands at
    (i + 0.5) * hop of the original signal, as the convention requires. sample_rate/hop_length are
    free: with 22050/256 the output sits directly on the model grid.
    """

    def __init__(self, method: str = "dio", sample_rate: int = 16000, hop_length: int = 160,
                 f0_floor: float = 50.0, f0_ceil: float = 1100.0, device: str | torch.device | None = None):
        if method not in ("dio", "harvest"):
            raise ComoliveError(f"WorldPitch: unknown method {method!r} (use 'dio' or 'harvest')")
        self.method = method
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.f0_floor = float(f0_floor)
        self.f0_ceil = float(f0_ceil)
        self.device = torch.device("cpu")  # pyworld is C code on the CPU; the argument keeps the API uniform

    def extract(self, wav: np.ndarray) -> np.ndarray:
        import pyworld

        wav = as_mono(wav)
        n = len(wav) // self.hop_length
        if n == 0:
            return np.zeros(0, np.float32)
        x = wav[self.hop_length // 2:].astype(np.float64)
        period_ms = 1000.0 * self.hop_length / self.sample_rate
        if self.method == "dio":
            f0, t = pyworld.dio(x, self.sample_rate, f0_floor=self.f0_floor, f0_ceil=self.f0_ceil,
                                frame_period=period_ms)
            f0 = pyworld.stonemask(x, f0, t, self.sample_rate)
        else:
            f0, _ = pyworld.harvest(x, self.sample_rate, f0_floor=self.f0_floor, f0_ceil=self.f0_ceil,
                                    frame_period=period_ms)
        f0 = f0[:n]
        if len(f0) < n:  # pyworld rounds the frame count down on some lengths
            f0 = np.pad(f0, (0, n - len(f0)))
        return f0.astype(np.float32)


def make_pitch_extractor(name: str, device: str | torch.device | None = None, **kw) -> PitchExtractor:
    """A pitch extractor of engine/registry.PITCH_EXTRACTORS by name: 'fcpe' (default choice), 'dio' or
    'harvest'."""
    from engine.registry import PITCH_EXTRACTORS, build

    return build(PITCH_EXTRACTORS, "pitch extractor", name, device=device, **kw)


# ---------------------------------------------------------------- f0 post-processing

def interpolate_unvoiced(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced frames so the decoder sees a continuous pitch curve; also return the voiced mask.

    Interpolation is linear in log-frequency (musical steps) between voiced neighbours; the edges hold
    the first/last voiced value. A fully unvoiced input stays all zeros.
    """
    f0 = np.asarray(f0, dtype=np.float32)
    voiced = f0 > 0
    if not voiced.any():
        return np.zeros_like(f0), voiced
    idx = np.arange(len(f0))
    filled = np.exp2(np.interp(idx, idx[voiced], np.log2(f0[voiced].astype(np.float64)))).astype(np.float32)
    filled[voiced] = f0[voiced]
    return filled, voiced


def shift_key(f0: np.ndarray, semitones: float) -> np.ndarray:
    """Transpose by `semitones` (may be fractional); unvoiced zeros stay zero."""
    f0 = np.asarray(f0, dtype=np.float32)
    return (f0 * np.float32(2.0 ** (float(semitones) / 12.0))).astype(np.float32)


def octave_factor(d: float, tol: float) -> float:
    """The octave guard's rule: a frame d octaves from the median of its neighbours (log2) is halved
    when d is 1 +- tol, doubled when -1 +- tol, else kept (factor 1)."""
    if abs(d - 1.0) <= tol:
        return 0.5
    if abs(d + 1.0) <= tol:
        return 2.0
    return 1.0


def fix_octave_jumps(f0: np.ndarray, radius: int = 5, tolerance_semitones: float = 2.0) -> np.ndarray:
    """Undo isolated octave errors (the classic tracker failure on high notes) and keep real leaps.

    A voiced frame is compared with the median (in log-frequency) of the voiced frames within
    ±`radius` frames, itself included. The median preserves steps, so a real leap to a new note keeps
    its place; only runs of at most `radius` frames that sit 12 ± `tolerance_semitones` semitones away
    from their surroundings are moved back by an octave. Medians come from the input, so one pass is
    deterministic and order-free.
    """
    f0 = np.asarray(f0, dtype=np.float32)
    out = f0.copy()
    voiced = f0 > 0
    if voiced.sum() < 3:
        return out
    logf = np.where(voiced, np.log2(np.maximum(f0, 1e-6)), np.nan)
    tol = float(tolerance_semitones) / 12.0
    for i in np.flatnonzero(voiced):
        win = logf[max(0, i - radius): i + radius + 1]
        win = win[~np.isnan(win)]
        if len(win) < 3:
            continue
        out[i] = f0[i] * octave_factor(logf[i] - float(np.median(win)), tol)
    return out
