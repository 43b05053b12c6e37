"""Virtual training voices: formant-shifted renderings embedded once, then drawn as training targets."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from training.timbres import build_timbres
from models.dataset import TIMBRES_FILE, FeatureDataset
from models.errors import ComoliveError
from models.formant import warp_mel
from models.mel import MelAnalyzer
from tests.helpers import harmonic


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    """Two 'voices' of harmonic tones (real 80-band mels, f0 on the grid), one train utterance each."""
    root = tmp_path_factory.mktemp("feats")
    mel_fn = MelAnalyzer()
    index, voices = [], {}
    for v, (f0, tilt) in {"low": (170.0, 1.0), "high": (260.0, 0.6)}.items():
        wav = harmonic(f0, 2.0, 22050, n_harm=30) * tilt
        mel = mel_fn(torch.from_numpy(wav)[None])[0].numpy()
        t = mel.shape[1]
        spk = np.random.default_rng(len(v)).standard_normal(256).astype(np.float32)
        spk /= np.linalg.norm(spk)
        (root / "train" / v).mkdir(parents=True)
        np.savez(root / f"train/{v}/u.npz", mel=mel, content=np.zeros((t, 384), np.float16),
                 f0=np.full(t, f0, np.float32), loudness=np.full(t, -20.0, np.float32), spk=spk)
        index.append({"path": f"train/{v}/u.npz", "voice": v, "split": "train", "group": "g", "frames": t})
        voices[v] = spk.tolist()
    (root / "index.json").write_text(json.dumps({"voices": voices, "utterances": index}))
    return root


@pytest.mark.slow
def test_timbres_are_embedded_per_utterance_and_shift(feats):
    with pytest.raises(ComoliveError, match="main.py timbres"):
        FeatureDataset(feats, "train", timbre_prob=0.5)
    with pytest.raises(ComoliveError, match="non-zero"):
        build_timbres(feats, [0.0, 2.0], progress=False)
    path = build_timbres(feats, [-3.0, 3.0], progress=False)
    z = np.load(path)
    assert path.name == TIMBRES_FILE and z["spk"].shape == (2, 2, 256)
    assert np.allclose(np.linalg.norm(z["spk"], axis=-1), 1.0, atol=1e-4)
    down, up = z["spk"][0]
    assert float(down @ up) < 0.99   # a longer and a shorter vocal tract are different voices
    # the vocoder's own mark is taken out: a virtual voice stays near its utterance's d-vector (these
    # random vectors are nowhere near what the encoder gives for the rendered tones)
    for i, v in enumerate(json.loads((feats / "index.json").read_text())["voices"]):
        own = np.load(feats / f"train/{v}/u.npz")["spk"]
        assert min(float(own @ e) for e in z["spk"][i]) > 0.5


def test_dataset_draws_virtual_voices_with_their_warped_mel(feats):
    build_timbres(feats, [-3.0, 3.0], progress=False)
    data = FeatureDataset(feats, "train", parallel_prob=0.0, utt_speaker_prob=1.0, timbre_prob=1.0)
    u = data.utts[0]
    spk, k = data.speaker(random.Random(0), u)
    j = list(data.timbre_shifts).index(k)
    assert k in (-3.0, 3.0) and np.array_equal(spk, u.timbres[j])
    item = data.item(u, u, 0, 40, speaker=spk, timbre=k)
    assert np.allclose(item["mel"], warp_mel(u.mel[:, :40], k))
    assert np.allclose(item["f0"], u.f0[:40]) and item["shift"] == 0.0   # timbre is not the formant control
    # voice means of the virtual voices when the utterance's own vector is not drawn
    means = FeatureDataset(feats, "train", utt_speaker_prob=0.0, timbre_prob=1.0)
    spk, k = means.speaker(random.Random(1), means.utts[0])
    assert np.allclose(np.linalg.norm(spk), 1.0, atol=1e-4)
    # off by default: voice mean, no warp
    plain = FeatureDataset(feats, "train")
    spk, k = plain.speaker(random.Random(0), plain.utts[0])
    assert k == 0.0 and np.array_equal(spk, plain.voices[plain.utts[0].voice])
