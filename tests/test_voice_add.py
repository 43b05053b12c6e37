"""voice add: a folder of one singer's recordings -> a saved model with the new voice; bad folders refused early."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from training.voice_add import add_voice, check_one_singer, speaker_similarities, summary
from models.errors import ComoliveError
from training.finetune import FinetuneConfig, heldout_indices, lr_at
from models.voice_model import VoiceModel
from tests.helpers import harmonic

PITCHES = (196, 220, 247, 262, 294)  # one "singer": tones of one spectral shape, vibrato, a few notes


def _sing(f0: float, seconds: float, sr: int) -> np.ndarray:
    return harmonic(f0, seconds, sr, n_harm=20, vibrato_cents=50)


@pytest.fixture(scope="module")
def singer(tmp_path_factory):
    """~25 s of synthetic singing: FLAC at 44.1 kHz and WAV at 22.05 kHz, some in a sub-folder, one stray file."""
    root = tmp_path_factory.mktemp("singer")
    (root / "takes").mkdir()
    for i, f0 in enumerate(PITCHES):
        folder = root if i < 3 else root / "takes"
        if i % 2 == 0:
            sf.write(folder / f"note{i}.flac", _sing(f0, 5.0, 44100), 44100)
        else:
            sf.write(folder / f"note{i}.wav", _sing(f0, 5.0, 22050), 22050)
    (root / "lyrics.txt").write_text("la la la")
    return root


@pytest.mark.slow
def test_folder_becomes_a_voice_next_to_the_old_ones(singer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stem, report = add_voice("my-voice_1", singer, steps=3, progress=False, work_dir=tmp_path / "work",
                             vocoder_steps=2)
    assert stem == Path("voices") / "my-voice_1"
    assert (tmp_path / "voices" / "my-voice_1.safetensors").is_file()
    assert report["utterances"] == 5 and report["heldout_utterances"] == 1 and report["steps"] == 3
    assert report["seconds"] == pytest.approx(25.0, abs=1.0)
    assert report["rejected"] == [("lyrics.txt", "not an audio file extension (.txt)")]
    assert np.isfinite(report["loss_before"]) and np.isfinite(report["loss_after"])
    assert "my-voice_1" in summary(report)

    base = VoiceModel.load()
    vm = VoiceModel.load(tmp_path / stem)
    assert set(vm.voices) == set(base.voices) | {"my-voice_1"}
    emb = vm.speaker("my-voice_1")
    assert emb.shape == (256,) and abs(np.linalg.norm(emb) - 1) < 1e-3
    assert np.allclose(vm.speaker("us1"), base.speaker("us1"))
    meta = json.loads((tmp_path / "voices" / "my-voice_1.json").read_text())
    assert "my-voice_1" in meta["voices"] and meta["default_voice"] == "my-voice_1"
    record = meta["finetuned"][-1]
    assert record["voice"] == "my-voice_1" and record["base"] == "default" and record["steps"] == 3
    assert vm.student is not None and vm.teacher is None

    from engine.converter import Converter

    clip, sr = _sing(233, 1.5, 22050), 22050
    conv = Converter(model=tmp_path / stem, device="cpu", vocoder="hn")
    out = conv.convert(clip, sr, voice="my-voice_1")
    assert np.isfinite(out.audio).all() and len(out.audio) > 0

    # its own hn vocoder, fine-tuned on the folder, is what convert and the live session use with "hn"
    from engine.session_config import SessionConfig
    from engine.stream_session import StreamSession
    from models.vocoders import load_vocoder

    assert report["vocoder_steps"] == 2 and vm.own_vocoder("hn") == tmp_path / "voices" / "my-voice_1_hn"
    assert "its own hn vocoder" in summary(report)
    live = StreamSession(SessionConfig(model=str(tmp_path / stem), vocoder="hn", sample_rate=sr)).vocoder
    shared = load_vocoder("hn")
    own_w, live_w, shared_w = (dict(v.model.state_dict()) for v in (conv.vocoder, live, shared))
    assert all(torch.equal(own_w[k], live_w[k]) for k in own_w)
    assert not all(torch.equal(own_w[k], shared_w[k]) for k in own_w)
    assert base.own_vocoder("hn") is None  # the shipped model runs with the shared one
    assert VoiceModel.load(tmp_path / "voices" / "my-voice_1.safetensors").own_vocoder("hn") == vm.own_vocoder("hn")

    with pytest.raises(ComoliveError, match="already exists"):
        add_voice("my-voice_1", singer, steps=1, progress=False)

    # overwriting the model in place (relative --out) without vocoder steps keeps its own hn, and says so
    own = (tmp_path / "voices" / "my-voice_1_hn.safetensors").read_bytes()
    _, again = add_voice("my-voice_1", singer, model=stem, out=stem, force=True, steps=1, progress=False,
                         work_dir=tmp_path / "work", vocoder_steps=0)
    assert (tmp_path / "voices" / "my-voice_1_hn.safetensors").read_bytes() == own
    assert again["vocoder"] == str(Path("voices") / "my-voice_1_hn") and "as it was" in summary(again)


def test_silent_folder_is_refused(tmp_path):
    (tmp_path / "quiet" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "quiet" / "a.wav", np.zeros(3 * 44100, np.float32), 44100)
    sf.write(tmp_path / "quiet" / "sub" / "b.flac", np.zeros(4 * 22050, np.float32), 22050)
    with pytest.raises(ComoliveError, match="only silence") as e:
        add_voice("quiet", tmp_path / "quiet", out=tmp_path / "q", progress=False)
    assert "a.wav: silent" in str(e.value) and "sub/b.flac: silent" in str(e.value)


def test_too_little_voice_is_refused(tmp_path):
    (tmp_path / "short").mkdir()
    for i, f0 in enumerate(PITCHES[:2]):
        sf.write(tmp_path / "short" / f"n{i}.wav", _sing(f0, 4.0, 22050), 22050)
    with pytest.raises(ComoliveError, match=r"too little voice — 8\.\d s"):
        add_voice("short", tmp_path / "short", out=tmp_path / "s", progress=False)


def test_bad_folders_names_and_clashes_are_refused_before_any_work(tmp_path):
    with pytest.raises(ComoliveError, match="folder not found"):
        add_voice("x", tmp_path / "nope", out=tmp_path / "x", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ComoliveError, match="empty"):
        add_voice("x", tmp_path / "empty", out=tmp_path / "x", progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    (tmp_path / "junk" / "b.wav").write_text("not audio")
    with pytest.raises(ComoliveError, match="no readable audio file") as e:
        add_voice("x", tmp_path / "junk", out=tmp_path / "x", progress=False)
    assert "b.wav: not a readable audio file" in str(e.value)
    for bad in ("my voice", "../up", "", "a.b"):
        with pytest.raises(ComoliveError, match="letters, digits"):
            add_voice(bad, tmp_path / "junk", out=tmp_path / "x", progress=False)
    with pytest.raises(ComoliveError, match="voice 'us1' already exists"):
        add_voice("us1", tmp_path / "junk", out=tmp_path / "x", progress=False)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ComoliveError, match="already exists"):
        add_voice("x", tmp_path / "junk", out=tmp_path / "x", progress=False)


def test_mixed_singers_are_refused_and_a_stray_file_is_named():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(256), rng.standard_normal(256)

    def utts(centres):
        embs = np.stack([c + 0.3 * rng.standard_normal(256) for c in centres])
        return [{"source": f"f{i}.wav", "frames": 500} for i in range(len(centres))], embs

    one, embs = utts([a] * 6)
    assert (speaker_similarities(embs) > 0.8).all()
    assert check_one_singer(one, embs, 86.0) == []
    few, embs = utts([a] * 5 + [b])
    warnings = check_one_singer(few, embs, 86.0)
    assert len(warnings) == 1 and "f5.wav" in warnings[0]
    mixed, embs = utts([a] * 3 + [b] * 3)
    with pytest.raises(ComoliveError, match="more than one singer"):
        check_one_singer(mixed, embs, 86.0)


def test_heldout_split_and_schedule():
    assert heldout_indices(4) == [] and heldout_indices(5) == [2]
    assert len(heldout_indices(25)) == 2 and len(heldout_indices(100)) == 10
    cfg = FinetuneConfig(steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(99, cfg) == pytest.approx(1e-5)
