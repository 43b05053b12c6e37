"""Zero-shot voice from reference clips: stable embeddings, clear refusals, and `convert --ref` end to end."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from engine.reference import reference_from_audio
from engine.speaker import SpeakerEncoder
from models.audio_io import load_audio
from models.errors import AudioInputError
from tests.test_cli import ROOT, assert_clean_error, cli

DEMO = ROOT / "assets" / "demo_phrase.wav"


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    return SpeakerEncoder(device="cpu")


@pytest.fixture(scope="module")
def demo():
    return load_audio(DEMO)


def test_embedding_is_stable_across_clip_lengths(encoder, demo):
    wav, sr = demo
    embs = [reference_from_audio(encoder, [(wav[: int(s * sr)], sr, f"{s}s")]).embedding for s in (4.0, 6.0, 8.0)]
    for e in embs:
        assert abs(np.linalg.norm(e) - 1) < 1e-4
    sims = [float(a @ b) for i, a in enumerate(embs) for b in embs[i + 1:]]
    assert min(sims) > 0.9, sims


def test_bad_clips_are_refused_or_flagged(encoder, demo):
    wav, sr = demo
    with pytest.raises(AudioInputError, match="at least"):
        reference_from_audio(encoder, [(wav[: int(1.0 * sr)], sr, "short.wav")])
    with pytest.raises(AudioInputError, match="silent"):
        reference_from_audio(encoder, [(np.zeros(5 * sr, np.float32), sr, "silent.wav")])
    with pytest.raises(AudioInputError, match="NaN"):
        reference_from_audio(encoder, [(np.full(5 * sr, np.nan, np.float32), sr, "nan.wav")])
    with pytest.raises(AudioInputError, match="no reference"):
        reference_from_audio(encoder, [])
    loud = np.clip(wav * 8.0, -1.0, 1.0)
    ref = reference_from_audio(encoder, [(loud, sr, "loud.wav")])
    assert any("clipped" in w for w in ref.warnings), ref.warnings
    short = reference_from_audio(encoder, [(wav[: int(2.5 * sr)], sr, "brief.wav")])
    assert any("3-10 s" in w for w in short.warnings), short.warnings
    clean = reference_from_audio(encoder, [(wav, sr, "demo.wav")])
    assert clean.warnings == [] and clean.name == "ref:demo"


@pytest.mark.slow
def test_convert_with_ref_end_to_end(tmp_path, demo):
    wav, sr = demo
    src = tmp_path / "src.wav"
    sf.write(src, wav[: int(2.0 * sr)], sr)
    out = tmp_path / "out.wav"
    r = cli("convert", str(src), str(out), "--ref", str(DEMO), "--ref", str(DEMO), "--vocoder", "hn",
            "--device", "cpu", "--adapt", "0")  # zero-shot (adapting is tests/test_reference_adapt.py's)
    assert r.returncode == 0, r.stderr
    assert "voice 'ref:demo_phrase+demo_phrase'" in r.stdout and "adapting" not in r.stdout
    y, ysr = sf.read(out)
    assert ysr == sr and len(y) == int(2.0 * sr) and np.sqrt(np.mean(y**2)) > 1e-3
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4 * sr, np.float32), sr)
    assert_clean_error(cli("convert", str(src), str(tmp_path / "o2.wav"), "--ref", str(silent)), "silent")
    assert_clean_error(cli("convert", str(src), str(tmp_path / "o3.wav"), "--ref", str(DEMO), "--voice", "us1"),
                       "either --voice or --ref")


def test_zero_shot_targets_measure_against_clips_not_used_as_reference(tmp_path):
    from evaluation.eval_zero_shot import GROUPS, corpus_targets

    for d, names in {"train/us1": ["a", "b", "c"], "heldout/us1": ["h"], "train/cz2": ["a", "b"],
                     "heldout/cz2": ["h"], "speech/flite_x": ["s0", "s1", "s2", "s3"],
                     "speech/short": ["s0", "s1"]}.items():
        (tmp_path / d).mkdir(parents=True)
        for n in names:
            (tmp_path / d / f"{n}.wav").touch()
    targets = corpus_targets(tmp_path, ["us1", "de2"])
    assert [(t.name, t.group) for t in targets] == [("us1", GROUPS[0]), ("us1", GROUPS[1]), ("cz2", GROUPS[2]),
                                                    ("flite_x", GROUPS[3])]
    for t in targets:
        assert not set(t.ref_clips) & set(t.eval_clips) and t.eval_clips


def test_live_session_takes_a_reference_voice(encoder, demo):
    from types import SimpleNamespace

    from engine.session_config import SessionConfig
    from engine.stream_session import StreamSession
    from models.errors import ComoliveError

    wav, sr = demo
    ref = reference_from_audio(encoder, [(wav, sr, "demo.wav")])
    s = StreamSession(SessionConfig(sample_rate=sr, reference=ref, gate_db=float("-inf")))
    assert s.voice == "ref:demo"
    y = np.concatenate([s.process(wav[i:i + s.block_size]) for i in range(0, 20 * s.block_size, s.block_size)])
    assert np.sqrt(np.mean(y[s.latency_samples:] ** 2)) > 1e-3
    s.set(voice="us2")
    s.process(wav[: s.block_size])
    assert s.voice == "us2" and s.config.reference is None
    s.set(reference=ref)
    s.process(wav[: s.block_size])
    assert s.voice == "ref:demo"
    with pytest.raises(ComoliveError, match="speaker embedding"):
        s.set(reference=SimpleNamespace(embedding=np.zeros(3), name="ref:bad"))


@pytest.mark.slow
def test_stream_command_with_ref(tmp_path, demo):
    wav, sr = demo
    src = tmp_path / "src.wav"
    sf.write(src, wav[: int(1.5 * sr)], sr)
    out = tmp_path / "out.wav"
    r = cli("stream", str(src), str(out), "--ref", str(DEMO), "--fast", "--adapt", "0")
    assert r.returncode == 0, r.stderr
    y, _ = sf.read(out)
    assert np.sqrt(np.mean(y**2)) > 1e-3
    assert_clean_error(cli("stream", str(src), str(tmp_path / "o.wav"), "--ref", str(tmp_path / "none.wav")),
                       "not found")


def test_zero_shot_sources_alternate_sexes(tmp_path):
    import json

    from evaluation.eval_zero_shot import source_renditions

    sexes = {"a1": "male", "a2": "male", "b1": "female", "b2": "female", "x": "female"}
    for v in sexes:
        (tmp_path / "heldout" / v).mkdir(parents=True)
        (tmp_path / "heldout" / v / "m.wav").touch()
        (tmp_path / "heldout" / v / "m.json").write_text(json.dumps({"melody_id": "m"}))
    (tmp_path / "corpus.json").write_text(json.dumps({"voices": [{"name": v, "sex": s} for v, s in sexes.items()]}))
    picked = [v for v, _ in source_renditions(tmp_path, ["a1", "a2", "b1", "b2"], 3)]
    assert picked == ["b1", "a1", "b2"]     # untrained "x" is never a source
