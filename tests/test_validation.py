"""Every value is checked where it enters: TOML configs, model files, voice vectors, panel settings, CLI values.

Each bad value gives one line that names it (exit 2 from the command line), never a traceback.
"""
from __future__ import annotations

import pytest
import torch

import main
from models.checkpoint import load_checkpoint, save_checkpoint
from models.config import RunConfig
from models.errors import ComoliveError
from models.voice_model import DEFAULT_MODEL, VoiceModel


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("line,named", [('steps = "abc"', "steps"), ("batch_size = 0", "batch_size"),
                                        ("lr = -1", "lr"), ("pert_prob = 1.5", "pert_prob"),
                                        ("bogus = 1", "bogus")])
def test_a_bad_training_config_value_is_one_line_naming_the_key(tmp_path, capsys, line, named):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[train]\n{line}\n")
    with pytest.raises(ComoliveError, match=named):
        RunConfig.load(cfg)
    assert main.main(["train", str(tmp_path / "feats"), str(tmp_path / "run"), "--config", str(cfg)]) == 2
    assert named in _one_error_line(capsys)


@pytest.mark.parametrize("section,line", [("train", "gta_prob = -0.5"), ("model", 'n_harmonics = "eight"')])
def test_a_bad_vocoder_config_value_is_refused(tmp_path, section, line):
    from training.nsf_train import load_nsf_config

    cfg = tmp_path / "voc.toml"
    cfg.write_text(f"[{section}]\n{line}\n")
    with pytest.raises(ComoliveError, match=line.split(" ")[0]):
        load_nsf_config(cfg)


def _crafted_model(tmp_path, config=None, voices=None):
    tensors, meta = load_checkpoint(DEFAULT_MODEL)
    if config is not None:
        meta = {**meta, "config": config}
    tensors = {**tensors, **(voices or {})}
    return save_checkpoint(tmp_path / "crafted", tensors, meta)


@pytest.mark.parametrize("change", [{"layers": "ten"}, {"sample_rate": -5}, "a list"])
def test_a_crafted_model_configuration_is_one_line(tmp_path, capsys, change):
    cfg = dict(load_checkpoint(DEFAULT_MODEL)[1]["config"])
    cfg = ["a", "list"] if change == "a list" else {**cfg, **change}
    stem = _crafted_model(tmp_path, config=cfg)
    assert main.main(["voices", "--model", str(stem)]) == 2
    assert "unreadable model configuration" in _one_error_line(capsys)


def test_a_voice_vector_of_the_wrong_size_is_flagged_and_refused(tmp_path, capsys):
    stem = _crafted_model(tmp_path, voices={"voice.short": torch.ones(100), "voice.nan": torch.full((256,), float("nan"))})
    # a NaN anywhere is refused when the weights are read; the wrong size is kept apart as a broken voice
    with pytest.raises(ComoliveError, match="NaN"):
        VoiceModel.load(stem)
    stem = _crafted_model(tmp_path, voices={"voice.short": torch.ones(100)})
    vm = VoiceModel.load(stem)
    assert "short" not in vm.voices and "shape (100,)" in vm.broken["short"]
    with pytest.raises(ComoliveError, match="voice 'short' is broken"):
        vm.speaker("short")
    assert main.main(["voices", "--model", str(stem)]) == 0
    assert "short  BROKEN: its speaker vector has shape (100,)" in capsys.readouterr().out


def test_out_of_range_panel_settings_are_reset_with_a_note(tmp_path):
    from gui.presets import PanelSettings, SettingsStore

    path = tmp_path / "panel.toml"
    path.write_text("[voice]\nkey = 1e9\nsteps = 3\n[latency]\nblock_ms = -5\nmargin_ms = 40\n")
    store = SettingsStore(path)
    s = store.load()
    default = PanelSettings()
    assert (s.key, s.block_ms) == (default.key, default.block_ms)
    assert (s.steps, s.margin_ms) == (3, 40.0)  # the valid values are kept
    assert "voice.key" in store.problem and "latency.block_ms" in store.problem and "reset" in store.problem


def test_an_unknown_compute_device_is_one_line(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    src = tmp_path / "in.wav"
    sf.write(str(src), np.zeros(16000, np.float32), 16000)
    assert main.main(["convert", str(src), str(tmp_path / "out.wav"), "--device", "tpu"]) == 2
    assert "tpu" in _one_error_line(capsys)


def test_a_wav_cut_short_of_its_header_converts_with_a_warning(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from tests.helpers import harmonic

    full = tmp_path / "full.wav"
    sf.write(str(full), harmonic(220.0, 2.0, 22050), 22050, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 3 // 4])
    assert main.main(["convert", str(cut), str(tmp_path / "out.wav"), "--vocoder", "hn"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "truncated" in err[0], err
    assert sf.info(str(tmp_path / "out.wav")).duration == pytest.approx(1.5, abs=0.01)


def test_a_file_longer_than_stream_takes_is_refused_before_it_is_read_and_convert_streams_it(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from engine.converter import MAX_SECONDS

    long = tmp_path / "long.wav"
    rate = 1000  # a small file that lasts long: the check reads the header only
    sf.write(str(long), np.zeros(int(MAX_SECONDS * rate) + rate, np.int16), rate, subtype="PCM_16")
    assert main.main(["stream", str(long), str(tmp_path / "out.wav")]) == 2
    line = _one_error_line(capsys)
    assert "30:01 long" in line and "at most 30:00" in line and not (tmp_path / "out.wav").exists()
    # convert takes a long file through the live pipeline, block by block (the whole-file converter refuses it)
    long48 = tmp_path / "long48.wav"
    sf.write(str(long48), np.zeros(10 * 48000, np.int16), 48000, subtype="PCM_16")
    assert main.main(["convert", str(long), str(tmp_path / "out.wav")]) == 2
    assert "30 min" in _one_error_line(capsys) and not (tmp_path / "out.wav").exists()
    assert main.main(["convert", str(long48), str(tmp_path / "out.wav")]) == 2  # silent, which it says
    assert "silent" in _one_error_line(capsys) and not (tmp_path / "out.wav").exists()
