"""Progressive distillation: each student step lands where two teacher steps land; rounds halve to 1 step."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from models.dataset import FeatureDataset, collate
from models.edm import EDMDecoder, mel_to_unit
from models.errors import ComoliveError
from models.progressive import ProgressiveDecoder, ProgressiveDistiller
from models.voice_model import VoiceModel
from training.train import ProgressiveRun, TrainingRun
from tests.helpers import tiny_model_config, tiny_run_config, write_tiny_cache


def _toy(tmp_path):
    cfg = tiny_model_config()
    feats = write_tiny_cache(tmp_path / "feats", cfg)
    batch = collate([FeatureDataset(feats, "train").draw(random.Random(k), 32) for k in range(8)])
    batch["mel"] = mel_to_unit(batch["mel"], cfg)
    return cfg, feats, batch


def test_the_target_is_what_one_euler_step_needs_to_land_on_two_teacher_steps(tmp_path):
    cfg, _, batch = _toy(tmp_path)
    torch.manual_seed(0)
    teacher = ProgressiveDecoder(cfg, 8, 4)  # an Euler teacher of 4 steps (a later round's)
    d = ProgressiveDistiller(teacher, 8, 4)
    sig = d.t_sig
    x = batch["mel"] + torch.randn_like(batch["mel"]) * sig[2]
    b = x.shape[0]
    with torch.no_grad():
        cond = teacher.encode_condition(batch)
        x2 = d._teacher_step(d._teacher_step(x, sig[2].expand(b), sig[3].expand(b), cond), sig[3].expand(b),
                             sig[4].expand(b), cond)
        s, s_next = sig[2], sig[4]
        target = x - s * (x2 - x) / (s_next - s)
        assert torch.allclose(x + (s_next - s) * (x - target) / s, x2, atol=1e-5)


@pytest.mark.slow
def test_a_halving_learns_two_teacher_steps_in_one_on_a_toy_set(tmp_path):
    cfg, _, batch = _toy(tmp_path)
    torch.manual_seed(0)
    teacher = EDMDecoder(cfg)
    d = ProgressiveDistiller(teacher, 4, 4)  # Heun teacher of 4 steps -> a student of 2
    opt = torch.optim.Adam(d.student.parameters(), lr=3e-3)

    def fixed_loss():
        torch.manual_seed(1)
        with torch.no_grad():
            return float(np.mean([d.loss(batch["mel"], batch, batch["mask"]).item() for _ in range(4)]))

    before = fixed_loss()
    for _ in range(100):
        loss = d.loss(batch["mel"], batch, batch["mask"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = fixed_loss()
    assert after < 0.85 * before, (before, after)  # a student that learns nothing stays at 1.0x


def test_rounds_write_a_student_per_halving_that_samples_deterministically(tmp_path):
    cfg, feats, batch = _toy(tmp_path)
    TrainingRun(feats, tmp_path / "teacher", tiny_run_config(steps=2), progress=False).run()
    guided = tiny_run_config(progressive_base_steps=4, speaker_guidance=1.0)
    with pytest.raises(ComoliveError, match="consistency distillation only"):
        ProgressiveRun(feats, tmp_path / "pg", guided, teacher=tmp_path / "teacher" / "teacher_model", progress=False)
    rc = tiny_run_config(progressive_base_steps=4, progressive_round_steps=3)
    ProgressiveRun(feats, tmp_path / "pd", rc, teacher=tmp_path / "teacher" / "teacher_model", progress=False).run()
    for k in (2, 1):
        vm = VoiceModel.load(tmp_path / "pd" / f"progressive_{k}step_model")
        assert isinstance(vm.student, ProgressiveDecoder) and vm.student.steps == k
        a, b = (vm.decode(batch, steps=k, seed=5) for _ in range(2))
        assert torch.equal(a, b) and torch.isfinite(a).all()
