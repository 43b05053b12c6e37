"""Adapting the decoder to a zero-shot reference (training/reference_adapt.py, `convert`/`stream`/`live --ref
--adapt`): only the decoder moves, the reference becomes a voice of the adapted copy, a silent reference is
refused, and the CLI converts with the adapted copy (or says why it cannot)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from models.errors import ComoliveError
from models.voice_model import VoiceModel
from tests.helpers import harmonic
from tests.test_cli import assert_clean_error, cli
from training.reference_adapt import VOICE, adapt_to_reference

SR = 22050


def _clip(f0: float = 247.0, seconds: float = 4.0) -> np.ndarray:
    """A sung vowel with syllable-rate loudness changes and a little noise (voice to the slicer and VAD)."""
    x = harmonic(f0, seconds, SR, n_harm=20, vibrato_cents=40)
    t = np.arange(len(x)) / SR
    noise = 0.003 * np.random.default_rng(0).standard_normal(len(x))
    return (x * (0.55 - 0.45 * np.cos(2 * np.pi * 4.0 * t)) + noise).astype(np.float32)


def source_and_reference(folder, ref_name: str = "ref.wav"):
    """A 2 s sung source at 196 Hz and a 4 s reference clip at 247 Hz, written in FOLDER: (source, reference)."""
    src, ref = folder / "in.wav", folder / ref_name
    sf.write(src, _clip(196.0, 2.0), SR)
    sf.write(ref, _clip(), SR)
    return src, ref


@pytest.mark.slow
def test_only_the_decoder_moves_and_the_reference_becomes_a_voice():
    base = VoiceModel.load()
    vm = adapt_to_reference([(_clip(), SR)], base, steps=2)
    assert set(vm.voices) == set(base.voices) | {VOICE} and vm.teacher is None
    assert vm.speaker(VOICE).shape == (base.cfg.speaker_dim,)
    assert all(np.allclose(vm.speaker(v), base.speaker(v)) for v in base.voices)
    moved = [not torch.equal(a.float(), b.float()) for a, b in zip(vm.student.state_dict().values(),
                                                                    base.student.state_dict().values())]
    assert any(moved)


def test_silence_and_bad_steps_are_refused():
    base = VoiceModel.load()
    with pytest.raises(ComoliveError, match="no usable voice"):
        adapt_to_reference([(np.zeros(4 * SR, np.float32), SR)], base, steps=1)
    with pytest.raises(ComoliveError, match="at least 1"):
        adapt_to_reference([(_clip(), SR)], base, steps=0)


@pytest.mark.slow
def test_convert_with_an_adapted_decoder(tmp_path):
    (src, ref), out = source_and_reference(tmp_path, "ref.flac"), tmp_path / "out.wav"
    r = cli("convert", str(src), str(out), "--ref", str(ref), "--adapt", "2", "--vocoder", "hn", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "adapting the decoder to the reference (2 steps;" in r.stdout and "converted" in r.stdout
    assert "--adapt 2`" in r.stdout  # the stream flags that give the same samples
    y, sr = sf.read(out)
    assert sr == SR and abs(len(y) - 2 * SR) <= 1 and np.isfinite(y).all() and np.abs(y).max() > 0
    assert_clean_error(cli("convert", str(src), str(tmp_path / "o2.wav"), "--adapt", "2"), "give it with --ref")
    # the live loop over a file takes it too (main.py adapts before any command that has --adapt), here the
    # adaptation convert stored
    r = cli("stream", str(src), str(tmp_path / "s.wav"), "--fast", "--ref", str(ref), "--adapt", "2",
            "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "adapted to this reference earlier (2 steps)" in r.stdout
    assert sf.info(str(tmp_path / "s.wav")).frames == 2 * SR


def test_files_adapt_to_a_reference_by_default_and_live_asks_for_it(tmp_path, monkeypatch):
    """convert and stream adapt to --ref unless --adapt says otherwise; live starts at once (--adapt 0) unless
    asked or an earlier run stored that clip's adaptation; without --ref nothing is adapted."""
    import main
    from training.reference_adapt import ADAPT_STEPS

    def steps(*argv):
        return main._adapt_steps(main.build_parser().parse_args(list(argv)))

    assert steps("convert", "in.wav", "out.wav", "--ref", "r.wav") == ADAPT_STEPS
    assert steps("stream", "in.wav", "out.wav", "--ref", "r.wav") == ADAPT_STEPS
    assert steps("convert", "in.wav", "out.wav", "--ref", "r.wav", "--adapt", "0") == 0
    assert steps("convert", "in.wav", "out.wav", "--ref", "r.wav", "--adapt", "50") == 50
    assert steps("convert", "in.wav", "out.wav") == 0
    assert steps("live", "--ref", "r.wav", "--adapt", "300") == 300
    ref = tmp_path / "ref.wav"
    sf.write(ref, _clip(), SR)
    monkeypatch.setenv("COMOLIVE_CACHE_DIR", str(tmp_path / "cache"))
    assert steps("live", "--ref", str(ref)) == 0  # nothing stored (tests/test_adaptation_cache.py: stored)


def test_live_with_a_clip_says_that_adapting_is_there(capsys, tmp_path):
    """live --ref stays zero-shot by default and says how to adapt (the device error then ends it here)."""
    import main

    ref = tmp_path / "ref.wav"
    sf.write(ref, _clip(), SR)
    assert main.main(["live", "--ref", str(ref), "--input", "nosuch"]) == 2
    out, err = capsys.readouterr()
    assert "`--adapt 300` first fine-tunes the decoder" in out and "nosuch" in err
