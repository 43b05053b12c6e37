"""The real CLI (`python main.py ...` in a subprocess): conversion works, bad input gets one clear line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import harmonic

pytestmark = pytest.mark.slow  # every test starts main.py in a process of its own

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def assert_clean_error(r: subprocess.CompletedProcess, needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(("error:", "main.py")), r.stderr


@pytest.fixture(scope="module")
def sung(tmp_path_factory) -> Path:
    """A stereo 44.1 kHz, 2.5 s harmonic 'sung' tone: the converter must take any rate and channel count."""
    p = tmp_path_factory.mktemp("in") / "sung.wav"
    x = harmonic(196.0, 2.5, 44100, vibrato_cents=30)
    sf.write(p, np.stack([x, 0.8 * x], axis=1), 44100, subtype="PCM_24")
    return p


def test_convert_uses_embedded_model_and_keeps_rate_and_duration(sung, tmp_path):
    out = tmp_path / "out.wav"
    r = cli("convert", str(sung), str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "converted" in r.stdout and "voice" in r.stdout
    info = sf.info(out)
    assert info.samplerate == 44100 and info.channels == 1
    assert abs(info.frames - int(2.5 * 44100)) == 0
    y, _ = sf.read(out)
    assert np.isfinite(y).all() and np.abs(y).max() > 0.01


def test_voices_lists_the_embedded_voices():
    r = cli("voices")
    assert r.returncode == 0, r.stderr
    assert "(default)" in r.stdout


@pytest.mark.parametrize("case,needle", [
    ("missing", "file not found"),
    ("empty", "file is empty"),
    ("text", "not a readable audio file"),
    ("nan", "NaN"),
    ("folder", "is a folder"),
])
def test_bad_input_files(case, needle, tmp_path):
    p = tmp_path / "in.wav"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "text":
        p.write_text("this is not audio\n" * 20)
    elif case == "nan":
        x = np.zeros(22050, np.float32)
        x[100] = np.nan
        sf.write(p, x, 22050, subtype="FLOAT")
    elif case == "folder":
        p.mkdir()
    assert_clean_error(cli("convert", str(p), str(tmp_path / "o.wav")), needle)
    assert not (tmp_path / "o.wav").exists()


def test_unknown_voice(sung, tmp_path):
    assert_clean_error(cli("convert", str(sung), str(tmp_path / "o.wav"), "--voice", "nobody"), "unknown voice")


def test_key_out_of_range(sung, tmp_path):
    r = cli("convert", str(sung), str(tmp_path / "o.wav"), "--key", "40")
    assert_clean_error(r, "out of range")
    r = cli("convert", str(sung), str(tmp_path / "o.wav"), "--key", "high")
    assert_clean_error(r, "semitones")


def test_output_not_writable(sung, tmp_path):
    assert_clean_error(cli("convert", str(sung), str(tmp_path / "no" / "such" / "o.wav")), "does not exist")


def test_nothing_overwritten_without_force(sung, tmp_path):
    out = tmp_path / "o.wav"
    out.write_bytes(b"precious")
    assert_clean_error(cli("convert", str(sung), str(out)), "already exists")
    assert out.read_bytes() == b"precious"


def test_missing_model_file(sung, tmp_path):
    assert_clean_error(cli("convert", str(sung), str(tmp_path / "o.wav"), "--model", str(tmp_path / "nomodel")),
                       "model file not found")


def test_silent_input(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(44100, np.float32), 44100)
    assert_clean_error(cli("convert", str(p), str(tmp_path / "o.wav")), "silent")


def test_nothing_is_overwritten_and_counts_are_checked(tmp_path) -> None:
    """export/export-vocoder refuse an existing OUT without --force; --steps below 1 is refused at the command
    line; a recording folder that already holds a take is refused without --force; a failed write leaves no
    partial file."""
    import main
    from models.audio_io import save_audio
    from models.errors import ComoliveError
    from realtime.devices import DeviceError
    from realtime.recorder import Recorder, next_take

    out = tmp_path / "model"
    assert main.main(["export", "models/pretrained/default", str(out), "--half"]) == 0
    assert main.main(["export", "models/pretrained/default", str(out), "--half"]) == 2
    assert main.main(["export", "models/pretrained/default", str(out), "--half", "--force"]) == 0
    assert main.main(["export-vocoder", "models/pretrained/vocoder_hn", str(out)]) == 2
    for argv in (["train", "f", "r", "--steps", "0"], ["distill", "f", "r", "--steps", "-1", "--teacher", "t"],
                 ["train-vocoder", "c", "r", "--steps", "0"]):
        with pytest.raises(SystemExit) as e:
            main.main(argv)
        assert e.value.code == 2
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "output.wav").write_bytes(b"take one")
    with pytest.raises(DeviceError, match="already exists"):
        Recorder(tmp_path / "rec", 48000, 48000)
    assert (tmp_path / "rec" / "output.wav").read_bytes() == b"take one"
    assert next_take(tmp_path / "rec") == tmp_path / "rec" / "take-001"
    with pytest.raises(ComoliveError, match="cannot write|not writable"):
        save_audio("/proc/comolive.wav", np.zeros(100, np.float32), 16000)
    assert not Path("/proc/comolive.wav.partial").exists()
