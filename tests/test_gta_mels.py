"""The decoder's mels beside the training utterances (`gta-mels`), and the NSF trainer feeding them."""
from __future__ import annotations

import json
import random

import numpy as np
import torch

from training.gta_mels import write_gta_mels
from models.consistency import student_from_teacher
from models.edm import EDMDecoder
from training.nsf_train import NSFBatcher
from training.vocoder_train import FeatureClip, gta_path
from models.voice_model import VoiceModel
from tests.helpers import tiny_model_config, write_tiny_cache


def test_gta_mels_are_written_beside_each_train_utterance_and_fed_with_gta_prob(tmp_path):
    cfg = tiny_model_config()
    feats = write_tiny_cache(tmp_path / "feats", cfg)
    torch.manual_seed(0)
    vm = VoiceModel(cfg, {"a": np.ones(cfg.speaker_dim, np.float32), "b": -np.ones(cfg.speaker_dim, np.float32)},
                    student=student_from_teacher(EDMDecoder(cfg)))
    vm.save(tmp_path / "model")
    n = write_gta_mels(feats, tmp_path / "model", progress=False)
    index = json.loads((feats / "index.json").read_text())
    train = [u for u in index["utterances"] if u["split"] == "train"]
    assert n == len(train)
    for u in train:
        gta = np.load(gta_path(feats / u["path"]))
        with np.load(feats / u["path"]) as z:
            assert gta.dtype == np.float16 and gta.shape == z["mel"].shape and np.isfinite(gta).all()
    # the NSF batcher takes them in place of the analysed mel with probability gta_prob
    clip = FeatureClip.__new__(FeatureClip)
    t = 80
    clip.mel, clip.gta = torch.zeros(cfg.n_mels, t), torch.ones(cfg.n_mels, t)
    clip.f0, clip.audio, clip.frames = torch.full((t,), 200.0), torch.zeros(t * 256), t
    rng = random.Random(0)
    for prob, expect in ((1.0, 1.0), (0.0, 0.0)):
        b = NSFBatcher([clip], 16, 4, 256, prob).batch(rng, 4)
        assert bool(b["gta"].all()) == bool(expect) and float(b["mel"].mean()) == expect
