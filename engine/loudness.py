"""Frame loudness (RMS in dB) on the mel's frame grid, so it follows the singer's dynamics frame by frame.

Framing is the HiFi-GAN mel's: reflect-pad (win_length - hop_length) / 2 samples each side, frames
without centring, so frame i covers samples [i*hop - (win-hop)/2, i*hop + (win+hop)/2), is centred at
(i + 0.5) * hop, and a signal of n samples gives n // hop frames (engine/frames.py convention).
"""
from __future__ import annotations

import numpy as np
import torch

from models.audio_io import resample
from models.errors import AudioInputError, ComoliveError


def frames_db(frames: np.ndarray, floor_db: float) -> np.ndarray:
    """[n, win] float64 frames -> mean-square level in dB, floored: float32 [n] (offline and streamed alike)."""
    ms = np.einsum("ij,ij->i", frames, frames) / frames.shape[1]
    return np.maximum(10.0 * np.log10(np.maximum(ms, 1e-20)), floor_db).astype(np.float32)


class Loudness:
    """Frame RMS in dB re full scale (a full-scale sine reads -3 dB), floored at `floor_db`.

    Computed in float64 numpy on the CPU (~1 ms per second of audio, cheaper than a transfer to a GPU),
    so `device` is accepted for a uniform API but not used.
    """

    def __init__(self, sample_rate: int = 22050, hop_length: int = 256, win_length: int = 1024,
                 floor_db: float = -80.0, device: str | torch.device | None = None):
        if hop_length < 1 or win_length < hop_length:
            raise ComoliveError("Loudness: need 1 <= hop_length <= win_length")
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)
        self.win_length = int(win_length)
        self.floor_db = float(floor_db)
        self.device = torch.device("cpu")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def extract(self, wav: np.ndarray) -> np.ndarray:
        """[len(wav) // hop_length] float32 dB."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioInputError(f"expected mono audio as a 1-D array, got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise AudioInputError("audio contains NaN or infinite samples")
        hop, win = self.hop_length, self.win_length
        n = len(wav) // hop
        if n == 0:
            return np.zeros(0, np.float32)
        pad = (win - hop) // 2
        # numpy reflects repeatedly when the pad exceeds the signal, where torch would refuse
        x = np.pad(wav.astype(np.float64), (pad, win - hop - pad), mode="reflect")
        return frames_db(np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n], self.floor_db)

    def extract_from(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """extract() for audio at any rate."""
        return self.extract(resample(np.asarray(wav, dtype=np.float32), int(sr), self.sample_rate))

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        return self.extract(wav)
