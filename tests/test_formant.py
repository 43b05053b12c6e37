"""Formant/key shift by mel warping (the aug_shift augmentation) and voices left out of training."""
import random

import numpy as np
import torch

from models.dataset import FeatureDataset
from models.formant import warp_mel
from models.mel import MelAnalyzer
from tests.helpers import harmonic, tiny_model_config, write_tiny_cache


def _mel(wav: np.ndarray) -> np.ndarray:
    return MelAnalyzer()(torch.from_numpy(wav)[None])[0].numpy()


def test_warp_moves_a_tone_like_transposing_it():
    a = _mel(harmonic(220.0, 0.5, 22050, n_harm=20))
    b = _mel(harmonic(220.0 * 2 ** (5 / 12), 0.5, 22050, n_harm=20))
    warped = warp_mel(a, 5.0)
    err_warped = np.abs(warped - b)[:, 5:-5].mean()
    err_plain = np.abs(a - b)[:, 5:-5].mean()
    assert err_warped < 0.5 * err_plain
    np.testing.assert_array_equal(warp_mel(a, 0.0), a)
    there = warp_mel(a, 3.0)
    back = warp_mel(there, -3.0)
    assert np.abs(back - a).mean() < 0.5 * np.abs(there - a).mean()


def test_dataset_shift_augmentation_and_excluded_voices(tmp_path):
    cfg = tiny_model_config()
    root = write_tiny_cache(tmp_path / "feats", cfg, voices=("a", "b", "c"))
    ds = FeatureDataset(root, "train", aug_shift=(1.0, 3.0), exclude_voices=["c"])
    assert set(ds.voices) == {"a", "b"} and all(u.voice != "c" for u in ds.utts)
    batch = ds.batch(random.Random(0), 8, 32)
    assert batch["shift"].abs().max() > 0 and batch["shift"].abs().max() <= 3.0
    plain = FeatureDataset(root, "train").batch(random.Random(0), 8, 32)
    assert torch.all(plain["shift"] == 0)
