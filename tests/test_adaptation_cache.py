"""The adaptation cache (training/adaptation_cache.py): an adaptation is made once per (clip, base model, steps)
and used again, by convert and by live; a damaged entry is said and made again; a cache that cannot be
written still adapts, for the run only."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from models.audio_io import load_audio
from models.voice_model import VoiceModel
from tests.test_cli import cli
from tests.test_reference_adapt import SR, _clip, source_and_reference
from training.adaptation_cache import adapt_cached, cache_root, cached_adaptation

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMOLIVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_made_once_then_used_again(cache, tmp_path):
    clips, said = [(_clip(), SR)], []
    assert cached_adaptation(clips, None, 2) is None
    stem, reused = adapt_cached(clips, None, tmp_path, steps=2, say=said.append)
    assert not reused and stem.startswith(str(cache_root())) and VoiceModel.load(stem).voices
    assert adapt_cached(clips, None, tmp_path, steps=2, say=said.append) == (stem, True)
    assert cached_adaptation(clips, None, 2) == stem
    assert cached_adaptation(clips, None, 3) is None                        # other steps
    assert cached_adaptation([(_clip(220.0), SR)], None, 2) is None          # another clip
    assert not said


def test_a_damaged_entry_is_said_and_made_again(cache, tmp_path):
    clips, said = [(_clip(), SR)], []
    stem, _ = adapt_cached(clips, None, tmp_path, steps=2)
    with open(stem + ".safetensors", "r+b") as f:
        f.truncate(100)
    again, reused = adapt_cached(clips, None, tmp_path, steps=2, say=said.append)
    assert not reused and again == stem and VoiceModel.load(again).voices
    assert len(said) == 1 and "cannot be read" in said[0] and "adapting again" in said[0]


def test_an_unwritable_cache_adapts_for_the_run_only(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COMOLIVE_CACHE_DIR", str(blocker))  # a file where the folder should be
    said = []
    stem, reused = adapt_cached([(_clip(), SR)], None, tmp_path / "run", steps=2, say=said.append)
    assert not reused and stem.startswith(str(tmp_path / "run")) and VoiceModel.load(stem).voices
    assert len(said) == 1 and "cannot be written" in said[0]


def test_convert_adapts_once_and_live_starts_with_it(cache, tmp_path, monkeypatch):
    """The second convert with the same clip uses the stored adaptation and gives the same samples; live,
    without --adapt, starts with it (the cache folder reaches the commands through the environment)."""
    import main
    from training import reference_adapt

    src, ref = source_and_reference(tmp_path)
    args = ("--ref", str(ref), "--adapt", "2", "--vocoder", "hn", "--device", "cpu")
    first = cli("convert", str(src), str(tmp_path / "a.wav"), *args)
    second = cli("convert", str(src), str(tmp_path / "b.wav"), *args)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "adapting the decoder" in first.stdout and "adapting the decoder" not in second.stdout
    assert "adapted to this reference earlier (2 steps)" in second.stdout
    assert np.array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])
    monkeypatch.setattr(reference_adapt, "ADAPT_STEPS", 2)  # live's stored default, made cheap
    assert cached_adaptation([load_audio(ref)], None, 2) is not None
    assert main._adapt_steps(main.build_parser().parse_args(["live", "--ref", str(ref)])) == 2
