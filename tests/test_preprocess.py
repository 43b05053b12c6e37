"""preprocess: any rate/channels in, aligned cached features out, every rejected file reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from engine.loudness_norm import active_level_db, normalize_level, slice_on_silence
from training.preprocess import preprocess_dataset
from models.dataset import FeatureDataset
from models.errors import ComoliveError
from tests.helpers import harmonic


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    alto, bass = root / "alto", root / "bass"
    alto.mkdir(), bass.mkdir()
    sf.write(alto / "stereo44k.wav", np.stack([harmonic(330, 3.0, 44100)] * 2, 1), 44100)
    gap = np.zeros(int(0.6 * 48000), np.float32)
    long = np.concatenate([harmonic(300, 2.5, 48000), gap, harmonic(350, 3.0, 48000, amp=0.05), gap])
    sf.write(alto / "phrases48k.flac", long, 48000)
    sf.write(bass / "low16k.wav", harmonic(110, 2.5, 16000, vibrato_cents=40), 16000, subtype="PCM_16")
    sf.write(bass / "short.wav", harmonic(110, 0.3, 22050), 22050)
    sf.write(bass / "silent.wav", np.zeros(44100, np.float32), 44100)
    clipped = np.clip(harmonic(110, 2.0, 22050, amp=3.0), -1, 1)
    sf.write(bass / "clipped.wav", clipped, 22050)
    (bass / "notes.txt").write_text("lyrics")
    (bass / "fake.wav").write_text("not audio at all")
    return root


def test_preprocess_writes_features_and_reports_rejections(dataset, tmp_path):
    out = tmp_path / "feats"
    report = preprocess_dataset(dataset, out, heldout=0.0, device="cpu", progress=False)
    rejected = dict(report.rejected)
    assert set(rejected) == {"bass/short.wav", "bass/silent.wav", "bass/clipped.wav", "bass/notes.txt",
                             "bass/fake.wav"}, rejected
    assert "too short" in rejected["bass/short.wav"]
    assert "silent" in rejected["bass/silent.wav"]
    assert "clipped" in rejected["bass/clipped.wav"]
    assert "not an audio file" in rejected["bass/notes.txt"]
    assert "not a readable audio file" in rejected["bass/fake.wav"]
    summary = report.summary()
    assert "rejected 5 file(s)" in summary and "bass/fake.wav" in summary

    index = json.loads((out / "index.json").read_text())
    assert set(index["voices"]) == {"alto", "bass"}
    sources = [u["source"] for u in index["utterances"]]
    assert sources.count("alto/phrases48k.flac") == 2  # sliced at the silence
    for u in index["utterances"]:
        z = np.load(out / u["path"])
        t = u["frames"]
        assert z["mel"].shape == (80, t) and z["content"].shape == (t, 384)
        assert z["f0"].shape == (t,) and z["loudness"].shape == (t,) and z["spk"].shape == (256,)
    bass = next(u for u in index["utterances"] if u["voice"] == "bass")
    f0 = np.load(out / bass["path"])["f0"]
    assert abs(1200 * np.log2(np.median(f0[f0 > 0]) / 110)) < 30
    data = FeatureDataset(out, "train")
    assert len(data) == 4  # stereo44k, two phrases, low16k


def test_preprocess_of_an_unusable_folder_says_why(tmp_path):
    with pytest.raises(ComoliveError, match="not found"):
        preprocess_dataset(tmp_path / "nope", tmp_path / "o", progress=False)
    (tmp_path / "flat").mkdir()
    sf.write(tmp_path / "flat" / "a.wav", harmonic(200, 2, 22050), 22050)
    with pytest.raises(ComoliveError, match="one sub-folder"):
        preprocess_dataset(tmp_path / "flat", tmp_path / "o", progress=False)


def test_level_normalisation_and_slicing():
    x = harmonic(220, 2.0, 22050, amp=0.01)
    y, gain = normalize_level(x, 22050)
    assert abs(active_level_db(y, 22050) + 20.0) < 0.5 and gain > 1
    sr = 16000
    sig = np.concatenate([np.zeros(sr // 2), harmonic(220, 1.5, sr), np.zeros(sr), harmonic(220, 2.0, sr)])
    cuts = slice_on_silence(sig.astype(np.float32), sr)
    assert len(cuts) == 2
    assert cuts[0][0] < sr // 2 < cuts[0][1] and cuts[1][0] > 2 * sr


def test_preprocess_again_keeps_unchanged_files(dataset, tmp_path):
    import shutil

    src = tmp_path / "ds"
    shutil.copytree(dataset, src)
    out = tmp_path / "feats"
    first = preprocess_dataset(src, out, heldout=0.0, device="cpu", progress=False)
    assert first.written == 4 and first.reused == 0
    sf.write(src / "bass" / "low16k.wav", harmonic(120, 2.5, 16000), 16000, subtype="PCM_16")
    again = preprocess_dataset(src, out, heldout=0.0, device="cpu", progress=False)
    assert again.written == 1 and again.reused == 3 and "kept 3 unchanged" in again.summary()
    index = json.loads((out / "index.json").read_text())
    assert len(index["utterances"]) == 4 and len(index["voices"]) == 2
    bass = next(u for u in index["utterances"] if u["voice"] == "bass")
    f0 = np.load(out / bass["path"])["f0"]
    assert abs(1200 * np.log2(np.median(f0[f0 > 0]) / 120)) < 30   # the new file's features, not the old
