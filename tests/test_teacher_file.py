"""The EDM teacher ships beside the one-step student and is read only when asked for."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

import main
from models.errors import ComoliveError
from models.voice_model import DEFAULT_MODEL, VoiceModel, teacher_stem
from tests.helpers import harmonic


def test_the_teacher_file_is_read_only_when_the_teacher_is_asked_for():
    vm = VoiceModel.load()
    assert vm.teacher is None and vm.student is not None
    teacher = vm.decoder("teacher")
    assert teacher is vm.teacher and not teacher.training
    assert sum(p.numel() for p in teacher.parameters()) == sum(p.numel() for p in vm.student.parameters())


def test_a_model_without_its_teacher_file_says_so(tmp_path):
    for ext in (".safetensors", ".json"):
        shutil.copy(DEFAULT_MODEL.with_suffix(ext), (tmp_path / "solo").with_suffix(ext))
    vm = VoiceModel.load(tmp_path / "solo")
    assert vm.decoder_or_none("teacher") is None
    with pytest.raises(ComoliveError, match=f"no teacher decoder \\(no {teacher_stem(tmp_path / 'solo')}"):
        vm.decoder("teacher")


def test_convert_with_the_teacher_works_out_of_the_box(tmp_path, capsys):
    src = tmp_path / "in.wav"
    sf.write(str(src), harmonic(220.0, 1.0, 22050), 22050)
    out = tmp_path / "out.wav"
    assert main.main(["convert", str(src), str(out), "--sampler", "teacher", "--steps", "4", "--vocoder", "hn"]) == 0
    y, _ = sf.read(str(out))
    assert "teacher 4 step(s)" in capsys.readouterr().out and np.sqrt(np.mean(y ** 2)) > 1e-3
