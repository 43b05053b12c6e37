"""Consistency distillation (Song et al. 2023, as used by CoMoSpeech/CoMoSVC): teacher -> one-step student.

The student has the teacher's architecture and starts from its weights; its output is forced to
the boundary condition f(x, sigma_min) = x by the consistency scalings. Training pulls
f_theta(x_{n+1}, sigma_{n+1}) towards f_ema(x_hat_n, sigma_n), where x_hat_n is one teacher ODE
step from x_{n+1}. Sampling: one evaluation at sigma_max, or k steps of the multistep sampler.

Speaker guidance (classifier-free guidance on the speaker, distilled): with `guidance` w > 0 the teacher's
ODE steps follow D(x; s) + w (D(x; s) - D(x; no speaker)), a teacher trained to also denoise with no speaker
(TrainConfig.speaker_drop). What the speaker changes in the output is amplified (1 + w) times, so a voice
the decoder renders only faintly from its d-vector moves further towards it, and the one-step student
learns the guided result: no extra cost when converting.
"""
from __future__ import annotations

import copy

import torch

from models.config import ModelConfig
from models.edm import EDMDecoder, NoiseFn, karras_sigmas, masked_mean


class ConsistencyDecoder(EDMDecoder):
    """Student: same network, consistency-model scalings with c_skip(sigma_min) = 1, c_out(sigma_min) = 0."""

    def scalings(self, sigma: torch.Tensor):
        sd, smin = self.cfg.sigma_data, self.cfg.sigma_min
        c_skip = sd**2 / ((sigma - smin) ** 2 + sd**2)
        c_out = (sigma - smin) * sd / (sigma**2 + sd**2).sqrt()
        return c_skip, c_out

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: NoiseFn, steps: int = 1, solver: str = "") -> torch.Tensor:
        """Multistep consistency sampling; steps=1 is the single network evaluation at sigma_max."""
        cfg = self.cfg
        b = cond.shape[0]
        sig = karras_sigmas(max(steps, 1) + 1, cfg.sigma_min, cfg.sigma_max, cfg.rho).to(cond.device)
        x = noise(0).to(cond.device) * cfg.sigma_max
        x0 = self.denoise(x, torch.full((b,), cfg.sigma_max, device=cond.device), cond)
        for k in range(1, steps):
            s = sig[k]
            x = x0 + noise(k).to(cond.device) * (s**2 - cfg.sigma_min**2).sqrt()
            x0 = self.denoise(x, s.expand(b), cond)
        return x0


def student_from_teacher(teacher: EDMDecoder) -> ConsistencyDecoder:
    student = ConsistencyDecoder(teacher.cfg)
    student.load_state_dict(teacher.state_dict())
    return student


class ConsistencyDistiller:
    """Holds teacher (frozen), student (trained) and its EMA target; computes the distillation loss."""

    def __init__(self, teacher: EDMDecoder, n: int = 25, ema_decay: float = 0.95, solver: str = "heun",
                 guidance: float = 0.0):
        self.teacher = teacher.eval().requires_grad_(False)
        self.student = student_from_teacher(teacher)
        self.target = copy.deepcopy(self.student).eval().requires_grad_(False)
        cfg: ModelConfig = teacher.cfg
        # ascending sigmas sigma_1 < ... < sigma_N (Karras discretisation, N points)
        self.sigmas = karras_sigmas(n, cfg.sigma_min, cfg.sigma_max, cfg.rho)[:-1].flip(0)
        self.ema_decay = ema_decay
        self.solver = solver
        self.guidance = float(guidance)

    def teacher_denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                        cond_null: torch.Tensor | None) -> torch.Tensor:
        """The teacher's clean estimate, speaker-guided when guidance > 0 (cond_null: no speaker)."""
        d = self.teacher.denoise(x, sigma, cond)
        if self.guidance:
            d = d + self.guidance * (d - self.teacher.denoise(x, sigma, cond_null))
        return d

    def loss(self, mel: torch.Tensor, feats: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Consistency-distillation L2 loss on normalised mels [B, M, T] with their features."""
        b = mel.shape[0]
        sig = self.sigmas.to(mel.device)
        n = torch.randint(0, len(sig) - 1, (b,), device=mel.device)
        s_hi, s_lo = sig[n + 1], sig[n]
        z = torch.randn_like(mel)
        x_hi = mel + z * s_hi.view(-1, 1, 1)
        with torch.no_grad():
            cond_t = self.teacher.encode_condition(feats)
            cond_0 = (self.teacher.encode_condition({**feats, "speaker": torch.zeros_like(feats["speaker"])})
                      if self.guidance else None)
            d = (x_hi - self.teacher_denoise(x_hi, s_hi, cond_t, cond_0)) / s_hi.view(-1, 1, 1)
            x_lo = x_hi + (s_lo - s_hi).view(-1, 1, 1) * d
            if self.solver == "heun":
                d2 = (x_lo - self.teacher_denoise(x_lo, s_lo, cond_t, cond_0)) / s_lo.view(-1, 1, 1)
                x_lo = x_hi + (s_lo - s_hi).view(-1, 1, 1) * 0.5 * (d + d2)
            target = self.target.denoise(x_lo, s_lo, self.target.encode_condition(feats))
        pred = self.student.denoise(x_hi, s_hi, self.student.encode_condition(feats))
        err = (pred - target) ** 2
        return masked_mean(err, mask)

    @torch.no_grad()
    def update_target(self) -> None:
        for p_t, p_s in zip(self.target.parameters(), self.student.parameters()):
            p_t.mul_(self.ema_decay).add_(p_s.detach(), alpha=1 - self.ema_decay)
