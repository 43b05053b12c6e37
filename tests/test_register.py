"""`--key auto` (engine/register.py): the whole semitones between the input's and the reference's median pitch,
for convert and stream; live keeps a key set by hand; without a reference it is one clear line."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from engine.register import auto_key, median_f0, register_key
from models.errors import ComoliveError
from tests.test_cli import assert_clean_error, cli
from tests.test_reference_adapt import SR, _clip, source_and_reference


def test_the_register_key_is_whole_semitones_within_an_octave():
    assert register_key(440.0, 220.0) == 12 and register_key(1760.0, 110.0) == 12 and register_key(0.0, 220.0) == 0
    assert register_key(210.0, 220.0) == -1 and str(register_key(214.0, 220.0)) == "0.0"  # no "-0.0"
    assert median_f0(np.array([0.0, 100.0, 0.0, 300.0, 200.0])) == 200.0 and median_f0(np.zeros(4)) == 0.0


def test_auto_key_from_the_median_pitches():
    key, src, ref = auto_key((_clip(196.0, 2.0), SR), [(_clip(247.0), SR)])
    assert key == 4.0 and abs(src - 196.0) < 5 and abs(ref - 247.0) < 5  # 12 log2(247/196) = 4.0
    with pytest.raises(ComoliveError, match="no pitch found in the reference"):
        auto_key((_clip(196.0, 2.0), SR), [(np.zeros(2 * SR, np.float32), SR)])


def test_auto_needs_a_reference_and_a_whole_input(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, _clip(196.0, 2.0), SR)
    assert_clean_error(cli("convert", str(src), str(tmp_path / "o.wav"), "--key", "auto"), "give it with --ref")
    r = cli("live", "--key", "auto")
    assert r.returncode == 2 and "key must be a number of semitones" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_convert_with_the_key_auto(tmp_path):
    (src, ref), out = source_and_reference(tmp_path), tmp_path / "out.wav"
    r = cli("convert", str(src), str(out), "--ref", str(ref), "--key", "auto", "--adapt", "0", "--vocoder", "hn")
    assert r.returncode == 0, r.stderr
    assert "key auto: +4 semitones (median pitch: the input 19" in r.stdout
    assert sf.info(str(out)).frames == 2 * SR
