"""Real recordings in training: a MANIFEST.tsv folder (FLAC, several rates) becomes features with audio and
perturbed content, held-out rows are never read, the perturbation keeps length and moves pitch and
formants while the stored f0 stays the original's, corpus and real caches mix, and the speaker probe runs."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import soundfile as sf

from training.perturb import perturb_timbre, shift_pitch_and_formants
from engine.pitch import make_pitch_extractor
from training.preprocess import preprocess_dataset
from evaluation.speaker_probe import speaker_probe
from models.dataset import FeatureDataset, MixedDataset
from models.formant import warp_mel
from training.timbres import build_timbres
from tests.helpers import harmonic

HEAD = "path\tsplit\tkind\tspeaker\tlanguage\tsample_rate\tseconds\tsource\tlicence\n"


def _voice(f0: float, seconds: float, sr: int, tilt: int, seed: int) -> np.ndarray:
    """A sung-like tone: harmonics with a speaker-specific tilt, syllable-rate loudness and a little breath."""
    x = harmonic(f0, seconds, sr, n_harm=tilt, vibrato_cents=30.0, amp=0.3)
    t = np.arange(len(x)) / sr
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t) ** 2
    breath = 0.01 * np.random.default_rng(seed).standard_normal(len(x))
    return (x * env + breath).astype(np.float32)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    rows = []
    for i, (spk, f0, sr, tilt) in enumerate((("ann", 262.0, 44100, 8), ("ann", 294.0, 24000, 8),
                                            ("bob", 131.0, 16000, 20), ("bob", 147.0, 44100, 20))):
        rel = f"train/{spk}_{i}.flac"
        (root / "train").mkdir(exist_ok=True)
        sf.write(root / rel, _voice(f0, 2.5, sr, tilt, i), sr)
        rows.append(f"{rel}\ttrain\tsinging\t{spk}\ten\t{sr}\t2.5\ttest\tCC0\n")
    rows.append("heldout/missing.flac\theldout\tsinging\tcid\ten\t44100\t3.0\ttest\tCC0\n")  # never read
    (root / "MANIFEST.tsv").write_text(HEAD + "".join(rows))
    return root


@pytest.fixture(scope="module")
def real_feats(real_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("feats_real")
    report = preprocess_dataset(real_dir, out, device="cpu", progress=False)
    assert report.written == 4 and not report.rejected, report.summary()
    return out


def test_manifest_rows_become_real_features_with_perturbed_content(real_feats) -> None:
    index = json.loads((real_feats / "index.json").read_text())
    assert {u["voice"] for u in index["utterances"]} == {"ann", "bob"}
    assert all(u["real"] and u["split"] == "train" and u["kind"] == "singing" for u in index["utterances"])
    for u in index["utterances"]:
        z = np.load(real_feats / u["path"])
        t = u["frames"]
        assert z["content_pert"].shape == z["content"].shape == (t, 384)
        assert z["audio"].dtype == np.int16 and len(z["audio"]) == t * 256
        assert not np.allclose(z["content_pert"], z["content"])


def test_perturbation_keeps_length_and_moves_the_pitch() -> None:
    sr = 22050
    wav = _voice(220.0, 2.0, sr, 12, 0)
    moved = shift_pitch_and_formants(wav, sr, 3.0)
    assert len(moved) == len(wav) and len(perturb_timbre(wav, sr, np.random.default_rng(0))) == len(wav)
    fcpe = make_pitch_extractor("fcpe", device="cpu")
    a, b = fcpe.extract_from(wav, sr), fcpe.extract_from(moved, sr)
    both = (a > 0) & (b > 0)
    assert abs(np.median(1200 * np.log2(b[both] / a[both])) - 300.0) < 30.0


def test_real_items_reconstruct_from_perturbed_content_beside_the_corpus(real_feats) -> None:
    real = FeatureDataset(real_feats, "train", pert_prob=1.0)
    assert all(u.real and u.content_pert is not None for u in real.utts)
    src, tgt = real.pair(random.Random(0))
    assert src is tgt  # no parallel renditions: reconstruction
    spk, shift = real.speaker(random.Random(0), tgt)
    assert shift == 0.0 and np.array_equal(spk, tgt.spk)  # always its own d-vector
    item = real.item(src, tgt, 0, 32, perturbed=True)
    assert np.allclose(item["content"], src.content_pert[:32].astype(np.float32))
    mixed = MixedDataset([real, FeatureDataset(real_feats, "train", pert_prob=0.0)], [0.5, 0.5])
    batch = mixed.batch(random.Random(0), 6, 32)
    assert batch["content"].shape == (6, 32, 384) and mixed.voices == real.voices


def test_retrieval_items_blend_content_with_other_recordings_of_the_voice(real_feats) -> None:
    real = FeatureDataset(real_feats, "train", retrieval_prob=1.0)
    for i, u in enumerate(real.utts):  # ann_0 pools ann_1 (and not itself), never bob's recordings
        pool = real.pools[i]
        assert pool and all(real.utts[j].voice == u.voice and real.utts[j].group != u.group for j in pool)
    index = real.retrieval_index(random.Random(0), 0)
    other = real.utts[real.pools[0][0]]
    assert index is not None and np.array_equal(index.frames, other.content[: len(index.frames)])
    items = [real.draw(random.Random(seed), 32) for seed in range(8)]
    plain = [FeatureDataset(real_feats, "train").draw(random.Random(seed), 32) for seed in range(8)]
    assert any(not np.allclose(a["content"], b["content"]) for a, b in zip(items, plain))
    assert all(np.array_equal(a["mel"], b["mel"]) for a, b in zip(items, plain))  # the target is untouched


@pytest.mark.slow
def test_real_cache_gets_virtual_voices_of_its_own_utterances(real_feats) -> None:
    build_timbres(real_feats, [-2.0, 2.0], progress=False)
    real = FeatureDataset(real_feats, "train", timbre_prob=1.0)
    u = real.utts[0]
    spk, k = real.speaker(random.Random(0), u)
    assert k in (-2.0, 2.0) and np.array_equal(spk, u.timbres[list(real.timbre_shifts).index(k)])
    assert np.allclose(real.item(u, u, 0, 32, speaker=spk, timbre=k)["mel"], warp_mel(u.mel[:, :32], k))


def test_speaker_probe_scores_original_and_perturbed_content(real_feats, tmp_path) -> None:
    index = json.loads((real_feats / "index.json").read_text())
    index["utterances"] = index["utterances"] * 2  # four utterances a speaker: the probe's minimum
    (tmp_path / "index.json").write_text(json.dumps(index))
    for u in index["utterances"]:
        dst = tmp_path / u["path"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((real_feats / u["path"]).read_bytes())
    r = speaker_probe(tmp_path, speakers=2, frames_per_utt=50)
    assert r["speakers"] == 2 and r["chance"] == 0.5
    assert 0.0 <= r["content"] <= 1.0 and 0.0 <= r["content_pert"] <= 1.0
