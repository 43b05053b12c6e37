"""Content units: k-means centres the decoder snaps content frames to (models/content_units.py)."""
from __future__ import annotations

import numpy as np
import torch

from engine.decoder_stream import Conditioner, condition
from models.config import RunConfig
from models.content_units import fit_units, nearest_units
from models.edm import EDMDecoder
from training.train import DistillationRun, TrainingRun
from models.voice_model import VoiceModel
from tests.helpers import tiny_model_config, tiny_run_config, write_tiny_cache


def test_kmeans_finds_separated_clusters_and_snaps_to_them():
    rng = np.random.default_rng(0)
    means = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]], np.float32)
    frames = np.concatenate([m + 0.1 * rng.standard_normal((200, 3)).astype(np.float32) for m in means])
    units = fit_units(frames, 3, seed=1)
    order = np.argsort(units.argmax(1))
    assert np.abs(units[order] - means).max() < 0.05
    x = torch.tensor([[4.0, 1.0, 0.0], [0.2, 0.1, 3.9]])
    snapped = nearest_units(x, torch.from_numpy(units)).numpy()
    assert np.allclose(snapped[0], units[units[:, 0].argmax()]) and np.allclose(snapped[1], units[units[:, 2].argmax()])


def test_a_model_with_units_reads_only_the_nearest_unit():
    cfg = tiny_model_config(content_units=4)
    dec = EDMDecoder(cfg).eval()
    enc = dec.net.cond_encoder
    enc.units.copy_(torch.eye(4, cfg.content_dim) * 3.0)
    n = 6
    args = [np.full(n, 200.0, np.float32), np.ones(n, np.float32), np.full(n, -20.0, np.float32),
            np.tile(np.eye(cfg.speaker_dim, dtype=np.float32)[:1], (n, 1)), np.zeros(n, np.float32)]
    near = np.tile(np.eye(1, cfg.content_dim, 1, dtype=np.float32) * 2.9, (n, 1))
    also_near = near + 0.3 * np.eye(1, cfg.content_dim, 0, dtype=np.float32)  # still closest to unit 1
    with torch.no_grad():
        a, b = condition(dec, near, *args), condition(dec, also_near, *args)
        assert torch.equal(a, b)
        far = condition(dec, np.tile(np.eye(1, cfg.content_dim, 2, dtype=np.float32) * 3.0, (n, 1)), *args)
        assert not torch.allclose(a, far)
        assert torch.allclose(Conditioner(dec).push(also_near, *args), a, atol=1e-5)


def test_training_fits_units_keeps_them_through_distillation_and_saving(tmp_path):
    cfg = tiny_model_config()
    feats = write_tiny_cache(tmp_path / "feats", cfg)
    plain = TrainingRun(feats, tmp_path / "plain", tiny_run_config(steps=10), progress=False).run()
    with_units = RunConfig(tiny_model_config(content_units=5), tiny_run_config(steps=10, distill_steps=5).train)
    run = TrainingRun(feats, tmp_path / "units", with_units, progress=False, init=plain)  # warm start + fit
    units = run.model.net.cond_encoder.units.clone()
    assert units.abs().sum() > 0 and len(torch.unique(units, dim=0)) == 5
    teacher = run.run()
    student = DistillationRun(feats, tmp_path / "student", with_units, teacher=teacher, progress=False).run()
    for stem in (teacher, student):
        vm = VoiceModel.load(stem)
        net = (vm.teacher if vm.teacher is not None else vm.student).net
        assert torch.equal(net.cond_encoder.units.float(), units), stem
