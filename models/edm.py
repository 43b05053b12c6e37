"""EDM diffusion (Karras et al. 2022) around the denoiser: the teacher, its loss and its samplers.

The decoder works on mels normalised to [-1, 1]. `EDMDecoder.denoise` is D(x; sigma) with EDM
preconditioning; the same network with the consistency parameterisation is the one-step student
(models/consistency.py). Initial noise comes from models.noise (frame-indexed, deterministic).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from models.config import ModelConfig
from models.denoiser import Denoiser

NoiseFn = Callable[[int], torch.Tensor]  # step index -> standard normal tensor shaped like x


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """n noise levels from sigma_max down to sigma_min (Karras schedule), followed by a final 0."""
    if n == 1:
        return torch.tensor([sigma_max, 0.0])
    i = torch.arange(n, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)]).float()


class EDMDecoder(nn.Module):
    """Teacher: D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) with EDM's preconditioning."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.net = Denoiser(cfg)

    # --- preconditioning (overridden by the consistency student) ---
    def scalings(self, sigma: torch.Tensor):
        sd = self.cfg.sigma_data
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        return c_skip, c_out

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, M, T] noisy normalised mel, sigma [B], cond [B, cond_dim, T] -> clean estimate."""
        sd = self.cfg.sigma_data
        s = sigma.view(-1, 1, 1)
        c_skip, c_out = self.scalings(s)
        c_in = 1.0 / (s**2 + sd**2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.log() / 4.0, cond)

    def encode_condition(self, feats: dict) -> torch.Tensor:
        """feats: content [B,T,C], f0 [B,T] (interpolated), voiced [B,T], loudness [B,T] dB, speaker [B,S], shift [B]."""
        return self.net.cond_encoder(
            feats["content"], feats["f0"], feats["voiced"], feats["loudness"], feats["speaker"], feats["shift"]
        )

    # --- training ---
    def loss(self, mel: torch.Tensor, feats: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        """EDM loss: log-normal sigma, weight (sigma^2 + sd^2) / (sigma sd)^2, mean over valid frames."""
        cfg = self.cfg
        b = mel.shape[0]
        sigma = (torch.randn(b, device=mel.device) * cfg.p_std + cfg.p_mean).exp()
        x = mel + torch.randn_like(mel) * sigma.view(-1, 1, 1)
        weight = (sigma**2 + cfg.sigma_data**2) / (sigma * cfg.sigma_data) ** 2
        err = (self.denoise(x, sigma, self.encode_condition(feats)) - mel) ** 2 * weight.view(-1, 1, 1)
        return masked_mean(err, mask)

    # --- sampling ---
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: NoiseFn, steps: int = 50, solver: str = "heun") -> torch.Tensor:
        """Deterministic EDM sampling (Euler or Heun, Karras schedule) from sigma_max to 0."""
        cfg = self.cfg
        sig = karras_sigmas(steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(cond.device)
        x = noise(0).to(cond.device) * sig[0]
        b = x.shape[0]
        for i in range(steps):
            s, s_next = sig[i], sig[i + 1]
            d = (x - self.denoise(x, s.expand(b), cond)) / s
            x_next = x + (s_next - s) * d
            if solver == "heun" and s_next > 0:
                d2 = (x_next - self.denoise(x_next, s_next.expand(b), cond)) / s_next
                x_next = x + (s_next - s) * 0.5 * (d + d2)
            x = x_next
        return x


def masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of err [B, M, T] over the frames mask [B, T] marks as real (padding left out); all when None."""
    if mask is None:
        return err.mean()
    m = mask.unsqueeze(1).expand_as(err)
    return (err * m).sum() / m.sum().clamp(min=1)


def mel_to_unit(mel: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Log-mel -> [-1, 1] (the range the decoder is trained in)."""
    return (mel - cfg.mel_min) / (cfg.mel_max - cfg.mel_min) * 2.0 - 1.0


def unit_to_mel(x: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    return (x.clamp(-1.0, 1.0) + 1.0) * 0.5 * (cfg.mel_max - cfg.mel_min) + cfg.mel_min


def nfe(steps: int, solver: str) -> int:
    """Network evaluations of `sample` (Heun costs 2 per step except the last)."""
    return steps if solver == "euler" else 2 * steps - 1
