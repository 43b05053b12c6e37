"""The decoder core: EDM teacher training, consistency distillation, deterministic noise, checkpoints."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import RunConfig
from models.consistency import ConsistencyDistiller, student_from_teacher
from models.dataset import FeatureDataset, collate
from models.denoiser import layer_padding, receptive_field
from models.edm import EDMDecoder, mel_to_unit
from models.errors import ComoliveError, ModelFileError
from models.noise import frame_noise
from training.train import DistillationRun, TrainingRun
from models.voice_model import VoiceModel
from tests.helpers import tiny_model_config, tiny_run_config, write_tiny_cache


def test_lookahead_is_explicit_and_exact():
    cfg = tiny_model_config(layers=4, lookahead_frames=2)
    assert sum(r for _, r in layer_padding(cfg)) == 2
    left, right = receptive_field(cfg)
    assert right == 3  # 2 in the WaveNet + 1 in the condition smoothing conv
    net = EDMDecoder(cfg).eval()
    t = 40
    feats = collate([{"mel": np.zeros((cfg.n_mels, t), np.float32),
                      "content": np.random.randn(t, cfg.content_dim).astype(np.float32),
                      "f0": np.full(t, 200, np.float32), "voiced": np.ones(t, np.float32),
                      "loudness": np.full(t, -20, np.float32), "speaker": np.ones(cfg.speaker_dim, np.float32)}])
    x = torch.randn(1, cfg.n_mels, t)
    with torch.no_grad():
        base = net.denoise(x, torch.tensor([1.0]), net.encode_condition(feats))
        for k, v in list(feats.items()):
            if k in ("content",):
                feats[k] = v.clone()
                feats[k][:, 20 + right + 1 :] += 5.0  # change only frames beyond the lookahead of frame 20
        x2 = x.clone()
        x2[:, :, 20 + right + 1 :] += 5.0
        moved = net.denoise(x2, torch.tensor([1.0]), net.encode_condition(feats))
    assert torch.allclose(base[..., : 21], moved[..., : 21], atol=1e-5)
    assert not torch.allclose(base[..., 22:], moved[..., 22:])


def test_frame_noise_is_a_function_of_absolute_frame():
    whole = frame_noise(7, 0, 0, 500, 80)
    parts = np.concatenate([frame_noise(7, 0, s, n, 80) for s, n in ((0, 13), (13, 200), (213, 287))], axis=1)
    assert np.array_equal(whole, parts)
    assert abs(whole.mean()) < 0.02 and abs(whole.std() - 1) < 0.02
    assert not np.allclose(frame_noise(8, 0, 0, 10, 80), whole[:, :10])
    assert not np.allclose(frame_noise(7, 1, 0, 10, 80), whole[:, :10])


def test_teacher_loss_falls_and_distilled_student_tracks_teacher(tmp_path):
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    cfg = tiny_run_config()
    run = TrainingRun(feats, tmp_path / "teacher", cfg, progress=False)
    data = FeatureDataset(feats, "train")
    fixed = run.prepare(data.batch(random.Random(5), 16, 32))

    def fixed_loss(model):
        torch.manual_seed(0)
        with torch.no_grad():
            return float(np.mean([model.loss(fixed["mel"], fixed, fixed["mask"]).item() for _ in range(8)]))

    before = fixed_loss(run.model)
    run.run()
    after = fixed_loss(run.model)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "teacher" / "log.csv").read_text().count("\n") > 5

    teacher = VoiceModel.load(tmp_path / "teacher" / "teacher_model")
    cfg_d = tiny_run_config()
    drun = DistillationRun(feats, tmp_path / "student", cfg_d, teacher=tmp_path / "teacher" / "teacher_model",
                           progress=False)
    drun.run()
    student = VoiceModel.load(tmp_path / "student" / "student_model")
    undistilled = VoiceModel(teacher.cfg, teacher.voices, student=student_from_teacher(teacher.teacher))

    val = FeatureDataset(feats, "heldout")
    src, tgt = val.pair(random.Random(0), target=0)
    batch = collate([val.item(src, tgt, 0, 64)])
    ref = teacher.decode(batch, steps=20, sampler="teacher", seed=3)
    err_student = (student.decode(batch, steps=1, seed=3) - ref).pow(2).mean().item()
    err_copy = (undistilled.decode(batch, steps=1, seed=3) - ref).pow(2).mean().item()
    assert err_student < err_copy, (err_student, err_copy)


def test_decoding_in_pieces_equals_whole(tmp_path):
    cfg = tiny_model_config(lookahead_frames=1)
    vm = VoiceModel(cfg, {"x": np.ones(cfg.speaker_dim, np.float32)}, student=student_from_teacher(EDMDecoder(cfg)))
    torch.manual_seed(0)
    for p in vm.student.parameters():
        p.data.normal_(0, 0.1)
    t = 120
    rng = np.random.default_rng(0)
    item = {"mel": np.zeros((cfg.n_mels, t), np.float32), "content": rng.standard_normal((t, cfg.content_dim)).astype(np.float32),
            "f0": np.full(t, 220, np.float32), "voiced": np.ones(t, np.float32),
            "loudness": np.full(t, -20, np.float32), "speaker": np.ones(cfg.speaker_dim, np.float32)}
    whole = vm.decode(collate([item]), steps=2, seed=11)
    left, right = receptive_field(cfg)
    pieces = []
    for s in range(0, t, 37):
        a, b = max(0, s - 2 * left), min(t, s + 37 + 2 * right)  # two evaluations: context doubles
        sub = {k: (v[:, a:b] if k == "mel" else v[a:b]) if k != "speaker" else v for k, v in item.items()}
        out = vm.decode(collate([sub]), steps=2, seed=11, frame_offset=a)
        pieces.append(out[..., s - a : s - a + min(37, t - s)])
    assert torch.allclose(torch.cat(pieces, -1), whole, atol=1e-5)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    cfg = tiny_model_config()
    vm = VoiceModel(cfg, {"alto": np.ones(cfg.speaker_dim, np.float32)}, student=student_from_teacher(EDMDecoder(cfg)),
                    meta={"default_voice": "alto"})
    stem = vm.save(tmp_path / "m")
    back = VoiceModel.load(stem)
    for (k, a), (_, b) in zip(vm.student.state_dict().items(), back.student.state_dict().items()):
        assert torch.equal(a, b), k
    assert back.meta["default_voice"] == "alto" and back.cfg == cfg

    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "t.json").write_text((tmp_path / "m.json").read_text())
    with pytest.raises(ModelFileError, match="corrupted or truncated"):
        VoiceModel.load(tmp_path / "t")
    (tmp_path / "g.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupted model description"):
        VoiceModel.load(tmp_path / "g")
    with pytest.raises(ModelFileError, match="not found"):
        VoiceModel.load(tmp_path / "absent")
    with pytest.raises(ComoliveError, match="unknown voice"):
        back.speaker("tenor")


def test_resume_continues_from_last_checkpoint(tmp_path):
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    cfg = tiny_run_config(steps=40, checkpoint_every=20)
    TrainingRun(feats, tmp_path / "r", cfg, progress=False).run(max_steps=20)
    with pytest.raises(ComoliveError, match="--resume"):
        TrainingRun(feats, tmp_path / "r", cfg, progress=False)
    run = TrainingRun(feats, tmp_path / "r", cfg, resume=True, progress=False)
    assert run.step == 20 and len(run.opt.state) > 0
    run.run()
    _, meta = load_checkpoint(tmp_path / "r" / "last")
    assert meta["step"] == 40


def test_training_can_start_from_a_saved_model(tmp_path):
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    first = TrainingRun(feats, tmp_path / "a", tiny_run_config(steps=20), progress=False)
    stem = first.run()
    warm = TrainingRun(feats, tmp_path / "b", tiny_run_config(steps=20), progress=False, init=stem)
    for k, v in first.model.state_dict().items():
        assert torch.equal(warm.model.state_dict()[k], v), k
    other = RunConfig(tiny_model_config(channels=16), tiny_run_config().train)
    with pytest.raises(ComoliveError, match="config differs"):
        TrainingRun(feats, tmp_path / "c", other, progress=False, init=stem)


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    """Weights, optimizer, step and random state travel as one unit: 20 + 20 steps end where 40 steps do,
    the log has each row once, and a description torn from its weights (a crash between the two renames)
    does not pair new weights with an old step."""
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    cfg = tiny_run_config(steps=40, checkpoint_every=20, log_every=10)
    straight = TrainingRun(feats, tmp_path / "a", cfg, progress=False)
    straight.run()
    TrainingRun(feats, tmp_path / "b", cfg, progress=False).run(max_steps=20)
    with open(tmp_path / "b" / "log.csv", "a") as log:  # a row written after the checkpoint, then a crash
        log.write("30,0.5,0.5,0.0001,1.0,1.0\n")
    resumed = TrainingRun(feats, tmp_path / "b", cfg, resume=True, progress=False)
    assert resumed.step == 20
    resumed.run()
    for k, v in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k
    steps = [line.split(",")[0] for line in (tmp_path / "b" / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["10", "20", "30", "40"]
    (tmp_path / "b" / "last.json").write_text(json.dumps({"step": 3, "kind": "teacher"}))
    assert load_checkpoint(tmp_path / "b" / "last")[1]["step"] == 40


def test_speaker_drop_trains_the_teacher_without_a_speaker(tmp_path):
    feats = write_tiny_cache(tmp_path / "feats", tiny_model_config())
    batch = None
    losses = {}
    for drop in (0.0, 1.0):
        run = TrainingRun(feats, tmp_path / f"r{drop}", tiny_run_config(speaker_drop=drop), progress=False)
        torch.manual_seed(1)
        torch.nn.init.normal_(run.model.net.final.weight, std=0.1)  # a fresh output layer is zero: no speaker effect
        if batch is None:
            batch = run.prepare(FeatureDataset(feats, "train").batch(random.Random(5), 8, 32))
        other = {**batch, "speaker": torch.roll(batch["speaker"], 1, dims=1)}  # another speaker per item
        with torch.no_grad():
            losses[drop] = []
            for b in (batch, other):
                torch.manual_seed(0)
                losses[drop].append(run.loss(b).item())
    assert losses[1.0][0] == losses[1.0][1]   # every item dropped: the speaker plays no part
    assert losses[0.0][0] != losses[0.0][1]


def test_speaker_guidance_amplifies_what_the_speaker_changes():
    cfg = tiny_model_config()
    torch.manual_seed(0)
    teacher = EDMDecoder(cfg).eval()
    torch.nn.init.normal_(teacher.net.final.weight, std=0.1)  # a fresh output layer is zero: no speaker effect
    t = 24
    feats = collate([{"mel": np.zeros((cfg.n_mels, t), np.float32),
                      "content": np.random.default_rng(0).standard_normal((t, cfg.content_dim)).astype(np.float32),
                      "f0": np.full(t, 200, np.float32), "voiced": np.ones(t, np.float32),
                      "loudness": np.full(t, -20, np.float32), "speaker": np.eye(cfg.speaker_dim, dtype=np.float32)[1]}])
    x, sigma = torch.randn(1, cfg.n_mels, t), torch.tensor([0.7])
    cond = teacher.encode_condition(feats)
    null = teacher.encode_condition({**feats, "speaker": torch.zeros_like(feats["speaker"])})
    with torch.no_grad():
        d, d0 = teacher.denoise(x, sigma, cond), teacher.denoise(x, sigma, null)
        plain = ConsistencyDistiller(teacher).teacher_denoise(x, sigma, cond, None)
        guided = ConsistencyDistiller(teacher, guidance=1.5).teacher_denoise(x, sigma, cond, null)
    assert torch.equal(plain, d)
    assert torch.allclose(guided, d + 1.5 * (d - d0), atol=1e-6) and not torch.allclose(guided, d)
    distiller = ConsistencyDistiller(teacher, guidance=1.0)
    assert torch.isfinite(distiller.loss(torch.randn(1, cfg.n_mels, t), feats))
