"""The decoder network: a non-causal WaveNet denoiser conditioned on singing features.

Conditioning follows CoMoSVC: content units, log(1 + f0/700), voiced flag, loudness, a speaker
embedding and the key-shift value (aug_shift / 5, usable as a formant control) are linearly
projected to `cond_dim` and summed. Receptive field and lookahead are explicit numbers: each
layer pads (kernel-1)*dilation frames in total, of which a fixed share goes to the right, so
the network needs exactly `lookahead` future frames — the figure streaming latency is built on.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from models.config import ModelConfig
from models.content_units import nearest_units


def layer_padding(cfg: ModelConfig) -> list[tuple[int, int]]:
    """(left, right) padding of every residual layer; the rights add up to cfg.lookahead_frames."""
    pads = []
    remaining = cfg.lookahead_frames
    for i in range(cfg.layers):
        d = 2 ** (i % cfg.dilation_cycle)
        total = (cfg.kernel_size - 1) * d
        right = min(remaining, total // 2)
        remaining -= right
        pads.append((total - right, right))
    if remaining:
        raise ValueError(f"lookahead_frames={cfg.lookahead_frames} exceeds what {cfg.layers} layers can hold")
    return pads


def receptive_field(cfg: ModelConfig) -> tuple[int, int]:
    """(left, right) context in frames that one output frame depends on (conditioning convs included)."""
    pads = layer_padding(cfg)
    return sum(p[0] for p in pads) + 1, sum(p[1] for p in pads) + 1  # +1 each side: the 3-tap cond conv


F0_SCALE_HZ = 700.0  # pitch enters as log(1 + f0 / 700): the mel scale's own warp
LOUDNESS_OFFSET_DB, LOUDNESS_SCALE_DB = 40.0, 20.0  # loudness enters as (dB + 40) / 20: about -1..1
SHIFT_SCALE = 5.0  # the key shift (semitones) enters as shift / 5


def pitch_input(f0):
    """f0 (Hz, torch or numpy) -> log(1 + f0 / 700), the network's pitch input."""
    if isinstance(f0, torch.Tensor):
        return torch.log1p(f0.clamp(min=0) / F0_SCALE_HZ)
    f0 = np.asarray(f0, np.float32)
    return np.log1p(np.maximum(f0, np.float32(0)) / np.float32(F0_SCALE_HZ))


def loudness_input(db):
    """Loudness (dB, torch or numpy) -> the network's loudness input."""
    if isinstance(db, torch.Tensor):
        return (db + LOUDNESS_OFFSET_DB) / LOUDNESS_SCALE_DB
    return (np.asarray(db, np.float32) + np.float32(LOUDNESS_OFFSET_DB)) / np.float32(LOUDNESS_SCALE_DB)


def shift_input(semitones: torch.Tensor) -> torch.Tensor:
    return semitones / SHIFT_SCALE


class ConditionEncoder(nn.Module):
    """Sum of linear projections of the per-frame features, then one 3-tap conv to smooth frame-rate steps."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.cond_dim
        self.content = nn.Linear(cfg.content_dim, d)
        self.pitch = nn.Linear(2, d)  # pitch_input(f0), voiced flag
        self.loudness = nn.Linear(1, d)
        self.speaker = nn.Linear(cfg.speaker_dim, d)
        self.shift = nn.Linear(1, d)
        self.smooth = nn.Conv1d(d, d, 3)
        if cfg.content_units:  # fitted when training starts (training/train.py), then saved with the weights
            self.register_buffer("units", torch.zeros(cfg.content_units, cfg.content_dim))
        else:
            self.units = None

    def snap(self, content: torch.Tensor) -> torch.Tensor:
        """Content as the network reads it: each frame's nearest unit, or as is for a model without units."""
        return content if self.units is None else nearest_units(content, self.units)

    def projections(self, content, f0, voiced, loudness_db, speaker, shift) -> torch.Tensor:
        """The summed projections before smoothing: [B, T, cond_dim]. content [B,T,C], f0 [B,T] Hz with
        unvoiced frames interpolated, voiced [B,T] 0/1, loudness [B,T] dB; speaker [B,S] (or per frame
        [B,T,S]), shift [B] semitones (or per frame [B,T])."""
        h = self.content(self.snap(content))
        h = h + self.pitch(torch.stack([pitch_input(f0), voiced], -1))
        h = h + self.loudness(loudness_input(loudness_db).unsqueeze(-1))
        spk = self.speaker(speaker)
        h = h + (spk.unsqueeze(1) if speaker.dim() == 2 else spk)
        sh = shift_input(shift)
        return h + self.shift(sh.view(-1, 1, 1) if sh.dim() == 1 else sh.unsqueeze(-1))

    def forward(self, content, f0, voiced, loudness_db, speaker, shift):
        """The arguments of `projections` -> [B, cond_dim, T] (edges replicate-padded, smoothed)."""
        h = F.pad(self.projections(content, f0, voiced, loudness_db, speaker, shift).transpose(1, 2), (1, 1),
                  mode="replicate")
        return self.smooth(h)


class ResidualLayer(nn.Module):
    def __init__(self, channels: int, cond_dim: int, kernel: int, dilation: int, pad: tuple[int, int]):
        super().__init__()
        self.pad = pad
        self.dilated = nn.Conv1d(channels, 2 * channels, kernel, dilation=dilation)
        self.cond = nn.Conv1d(cond_dim, 2 * channels, 1)
        self.sigma = nn.Linear(channels, channels)
        self.out = nn.Conv1d(channels, 2 * channels, 1)

    def forward(self, x, cond, sigma_emb):
        y = x + self.sigma(sigma_emb).unsqueeze(-1)
        y = self.dilated(F.pad(y, self.pad)) + self.cond(cond)
        gate, filt = y.chunk(2, dim=1)
        y = self.out(torch.sigmoid(gate) * torch.tanh(filt))
        residual, skip = y.chunk(2, dim=1)
        return (x + residual) / math.sqrt(2.0), skip


class Denoiser(nn.Module):
    """F_theta(x, c_noise, cond): the raw network inside the EDM / consistency preconditioning."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.cond_encoder = ConditionEncoder(cfg)
        self.inp = nn.Conv1d(cfg.n_mels, c, 1)
        self.sigma_mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.SiLU(), nn.Linear(4 * c, c))
        self.layers = nn.ModuleList(
            ResidualLayer(c, cfg.cond_dim, cfg.kernel_size, 2 ** (i % cfg.dilation_cycle), pad)
            for i, pad in enumerate(layer_padding(cfg))
        )
        self.skip_out = nn.Conv1d(c, c, 1)
        self.final = nn.Conv1d(c, cfg.n_mels, 1)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def sigma_embedding(self, c_noise: torch.Tensor) -> torch.Tensor:
        half = self.cfg.channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c_noise.device) / half)
        ang = c_noise.float().view(-1, 1) * 1000.0 * freqs.view(1, -1) / 4.0
        return self.sigma_mlp(torch.cat([ang.sin(), ang.cos()], -1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, n_mels, T], c_noise [B], cond [B, cond_dim, T] (from cond_encoder) -> [B, n_mels, T]."""
        h = self.inp(x)
        emb = self.sigma_embedding(c_noise)
        skip = 0.0
        for layer in self.layers:
            h, s = layer(h, cond, emb)
            skip = skip + s
        h = F.relu(self.skip_out(skip / math.sqrt(len(self.layers))))
        return self.final(h)
