"""`convert`: a file through the live pipeline, block by block, equals what `stream` plays with the same
settings, and its memory does not grow with the file's length."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf

import main
from engine.file_convert import convert_file, file_input_gain_db
from engine.loudness_norm import normalize_level
from engine.session_config import SessionConfig
from models.errors import AudioInputError
from tests.helpers import harmonic

SR = 44100


def _rel_db(a: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum((a - ref) ** 2) / np.sum(ref ** 2) + 1e-30))


def _write(path, x: np.ndarray, sr: int = SR) -> None:
    sf.write(str(path), x, sr, subtype="FLOAT")


def test_the_file_gain_is_the_whole_file_normalisation(tmp_path):
    x = harmonic(196.0, 3.0, SR, amp=0.05)
    x[: SR // 2] *= 0.01  # a quiet start does not count as the voice's level
    _write(tmp_path / "x.wav", x)
    gain = normalize_level(x, SR)[1]
    assert file_input_gain_db(tmp_path / "x.wav") == pytest.approx(20 * np.log10(gain), abs=1e-3)
    _write(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    with pytest.raises(AudioInputError, match="silent"):
        file_input_gain_db(tmp_path / "silent.wav")


@pytest.mark.parametrize("gate", [[], ["--gate-db", "-50"]])
def test_convert_equals_stream_with_the_flags_it_prints(tmp_path, capsys, gate):
    x = harmonic(220.0, 2.0, SR, amp=0.2, vibrato_cents=30.0)
    x[int(0.8 * SR): int(1.3 * SR)] = 0.0  # a rest long enough for the live gate to close and reopen
    src, conv, streamed = tmp_path / "in.wav", tmp_path / "conv.wav", tmp_path / "stream.wav"
    _write(src, x)
    assert main.main(["convert", str(src), str(conv), "--vocoder", "hn", "--key", "3", *gate]) == 0
    said = capsys.readouterr().out
    assert "through the live pipeline" in said
    flags = said.split("`stream IN OUT ")[1].split("`")[0].split()
    assert main.main(["stream", str(src), str(streamed), "--fast", "--vocoder", "hn", "--key", "3", *flags]) == 0
    y, sr = sf.read(str(conv), dtype="float32")
    ref, _ = sf.read(str(streamed), dtype="float32")
    assert sr == SR and len(y) == len(ref) == len(x)
    assert np.sum(ref ** 2) > 1e-3  # the conversion is not silence
    assert _rel_db(y, ref) <= -60.0  # the same samples (both written as 16-bit PCM)
    rest = np.sqrt(np.mean(y[int(1.08 * SR): int(1.18 * SR)] ** 2))  # where the gate is closed, latency removed
    # the converted rest is near -70 dBFS; the gate, when asked for, mutes it
    assert (rest < 1e-4) == bool(gate), rest


def test_convert_live_memory_does_not_grow_with_the_length(tmp_path):
    cfg = SessionConfig(vocoder="hn", gate_db=float("-inf"))
    peaks = []
    for seconds in (1.0, 4.0):
        src = tmp_path / f"in{seconds:g}.wav"
        _write(src, harmonic(200.0, seconds, SR, amp=0.2))
        tracemalloc.start()
        res = convert_file(cfg, src, tmp_path / f"out{seconds:g}.wav")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert res.seconds == pytest.approx(seconds, abs=1e-3)
        assert sf.info(str(tmp_path / f"out{seconds:g}.wav")).frames == int(seconds * SR)
    # a whole-file conversion would hold ~4x more audio for the longer file; the streamed one holds blocks
    assert peaks[1] < 1.3 * peaks[0] + 2**20, peaks


def test_a_failed_write_leaves_nothing(tmp_path):
    src = tmp_path / "in.wav"
    _write(src, harmonic(200.0, 1.0, SR, amp=0.2))
    with pytest.raises(Exception):
        convert_file(SessionConfig(vocoder="hn"), src, tmp_path / "missing" / "out.wav")
    assert list(tmp_path.rglob("*.partial")) == []
