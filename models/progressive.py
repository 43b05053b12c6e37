"""Progressive distillation (Salimans & Ho 2022, the route ProDiff takes): halve the sampler's steps, again and again.

The base is the EDM teacher sampled with `base_steps` Heun steps on the Karras schedule. A student with k
steps walks the same schedule with stride base_steps / k, one Euler step per stride, and is trained so that
each of its steps lands where two steps of its teacher land (the first round's teacher is the EDM teacher
with Heun steps, later rounds' teachers are the previous students with Euler steps). The student keeps EDM's
preconditioning, so its one step from sigma_max is D(x; sigma_max), as the consistency student's is: a
1-step progressive student runs live like the consistency student.

The target: the x0 estimate that one Euler step from (x, s) needs to reach the teacher's two-step result
x'' at s_next: D* = x - s (x'' - x) / (s_next - s), and D* = x'' on the last step (s_next = 0). The loss is
the masked mean square between D_student(x; s) and D*, with x the training mel noised to s.
"""
from __future__ import annotations

import copy

import torch

from models.config import ModelConfig
from models.edm import EDMDecoder, NoiseFn, karras_sigmas, masked_mean

KIND = "progressive"


def base_schedule(cfg: ModelConfig, base_steps: int) -> torch.Tensor:
    """The teacher's base_steps noise levels, sigma_max .. sigma_min, then 0."""
    return karras_sigmas(base_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)


class ProgressiveDecoder(EDMDecoder):
    """A student of `steps` Euler steps on its base schedule (stride base_steps / steps)."""

    def __init__(self, cfg: ModelConfig, base_steps: int, steps: int):
        super().__init__(cfg)
        if steps < 1 or base_steps % steps:
            raise ValueError(f"a progressive student's steps ({steps}) must divide its base steps ({base_steps})")
        self.base_steps, self.steps = int(base_steps), int(steps)

    def schedule(self, steps: int | None = None) -> torch.Tensor:
        steps = self.steps if steps is None else steps
        full = base_schedule(self.cfg, self.base_steps)
        if self.base_steps % steps:  # not a stride of the base schedule: its own Karras schedule
            return karras_sigmas(steps, self.cfg.sigma_min, self.cfg.sigma_max, self.cfg.rho)
        return torch.cat([full[:-1][:: self.base_steps // steps], full[-1:]])

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: NoiseFn, steps: int | None = None, solver: str = "") -> torch.Tensor:
        """Deterministic Euler steps along schedule(steps); noise(0) is the only noise drawn."""
        sig = self.schedule(steps).to(cond.device)
        x = noise(0).to(cond.device) * sig[0]
        b = x.shape[0]
        for i in range(len(sig) - 1):
            s, s_next = sig[i], sig[i + 1]
            d = self.denoise(x, s.expand(b), cond)
            x = d if s_next == 0 else x + (s_next - s) * (x - d) / s
        return x


def student_meta(student: ProgressiveDecoder) -> dict:
    return {"student_kind": KIND, "base_steps": student.base_steps, "student_steps": student.steps}


def student_from_meta(cfg: ModelConfig, meta: dict) -> ProgressiveDecoder:
    return ProgressiveDecoder(cfg, int(meta["base_steps"]), int(meta["student_steps"]))


class ProgressiveDistiller:
    """One halving: a frozen teacher of 2k steps (Heun for the EDM base teacher, else Euler) -> a student of k."""

    def __init__(self, teacher: EDMDecoder, base_steps: int, teacher_steps: int):
        self.teacher = teacher.eval().requires_grad_(False)
        self.teacher_heun = not isinstance(teacher, ProgressiveDecoder)
        self.student = ProgressiveDecoder(teacher.cfg, base_steps, teacher_steps // 2)
        self.student.load_state_dict(copy.deepcopy(teacher.state_dict()))
        full = base_schedule(teacher.cfg, base_steps)
        stride = base_steps // teacher_steps
        self.t_sig = torch.cat([full[:-1][::stride], full[-1:]])  # the teacher's 2k levels + 0

    def _teacher_step(self, x, s, s_next, cond):
        """One teacher step from sigma s to s_next (per item [B]); s_next may be 0."""
        sv, nv = s.view(-1, 1, 1), s_next.view(-1, 1, 1)
        d = (x - self.teacher.denoise(x, s, cond)) / sv
        x_next = x + (nv - sv) * d
        if self.teacher_heun:
            last = s_next == 0
            safe = torch.where(last, s, s_next)  # Heun's correction is skipped on the step to 0
            d2 = (x_next - self.teacher.denoise(x_next, safe, cond)) / safe.view(-1, 1, 1)
            heun = x + (nv - sv) * 0.5 * (d + d2)
            x_next = torch.where(last.view(-1, 1, 1), x_next, heun)
        return x_next

    def loss(self, mel: torch.Tensor, feats: dict, mask: torch.Tensor | None = None) -> torch.Tensor:
        b = mel.shape[0]
        sig = self.t_sig.to(mel.device)
        k = (len(sig) - 1) // 2  # student steps
        i = torch.randint(0, k, (b,), device=mel.device)
        s, s_mid, s_next = sig[2 * i], sig[2 * i + 1], sig[2 * i + 2]
        x = mel + torch.randn_like(mel) * s.view(-1, 1, 1)
        with torch.no_grad():
            cond_t = self.teacher.encode_condition(feats)
            x1 = self._teacher_step(x, s, s_mid, cond_t)
            x2 = self._teacher_step(x1, s_mid, s_next, cond_t)
            sv, nv = s.view(-1, 1, 1), s_next.view(-1, 1, 1)
            target = x - sv * (x2 - x) / (nv - sv)  # = x2 on the last step (s_next = 0)
        pred = self.student.denoise(x, s, self.student.encode_condition(feats))
        err = (pred - target) ** 2
        return masked_mean(err, mask)
