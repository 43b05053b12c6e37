"""Control panel: settings and presets persist, shortcuts switch presets, device errors become messages, and the
panel drives the real live loop on JACK dummy devices (meters move, converted audio arrives, key moves f0).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PyQt6.QtCore import Qt

from gui.presets import PanelSettings, SettingsStore, settings_to_toml

ARTIFACTS = Path(__file__).resolve().parent / "output" / "gui"


@pytest.fixture
def store(tmp_path) -> SettingsStore:
    return SettingsStore(tmp_path / "config" / "panel.toml")


def test_settings_and_presets_round_trip(store):
    s = PanelSettings(hostapi="JACK Audio Connection Kit", input_device="system", output_device="system",
                      monitor_device='odd "name" \\ ü', sample_rate=48000, input_gain_db=3.0, key=-5.0,
                      formant=1.5, pitch="dio", steps=2, gate_db=-42.0, block_ms=60.0, record=True,
                      record_dir="/tmp/rec", voice="us2")
    s.save_preset("verse")
    s.key, s.voice = 7.0, "de4"
    s.save_preset("chorus")
    store.save(s)
    back = store.load()
    assert store.problem is None
    assert back == s
    assert back.preset == "chorus" and list(back.presets) == ["verse", "chorus"]
    changed = back.apply_preset("verse")
    assert changed == {"key": -5.0, "voice": "us2"} and back.preset == "verse"
    assert back.hostapi == "JACK Audio Connection Kit"  # presets carry the voice, not the sound cards


def test_bad_settings_file_opens_with_defaults_and_says_why(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("[voice\nkey = ")
    assert store.load() == PanelSettings()
    assert "unreadable" in store.problem
    store.path.write_text(settings_to_toml(PanelSettings(key=3.0)).replace("key = 3.0", 'key = "high"'))
    s = store.load()
    assert s.key == 0.0 and "voice.key" in store.problem


def test_unknown_preset_is_a_clear_error():
    from models.errors import ComoliveError

    with pytest.raises(ComoliveError, match="no preset named 'encore'"):
        PanelSettings().apply_preset("encore")
    with pytest.raises(ComoliveError, match="needs a name"):
        PanelSettings().save_preset("  ")


@pytest.fixture
def make_window(qtbot):
    """Opens panels on a given settings store; closes them (stopping any loop) at the end."""
    from gui.main_window import MainWindow

    windows = []

    def make(store, **kw):
        w = MainWindow(store=store, **kw)
        qtbot.addWidget(w)
        with qtbot.waitActive(w):  # in-window shortcuts need the window active
            w.show()
            w.activateWindow()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()


def test_panel_presets_switch_by_shortcut_and_persist(make_window, qtbot, store):
    w = make_window(store, load_model=False)
    key = w.voice_panel.key
    key.setValue(-3.0)
    w.voice_panel.gate_db.setValue(-40.0)
    assert w.settings.key == -3.0 and w.settings.gate_db == -40.0
    w.save_preset("low")
    key.setValue(5.0)
    w.audio_panel.output_gain_db.setValue(-6.0)
    w.save_preset("high")
    assert [b.text() for b in w.presets.buttons] == ["1 low", "2 high"]

    qtbot.keyClick(w, Qt.Key.Key_1)
    assert w.settings.preset == "low"
    assert key.value() == -3.0 and w.settings.key == -3.0 and w.pitch_view.key == -3.0
    assert w.audio_panel.output_gain_db.value() == 0.0
    qtbot.keyClick(w, Qt.Key.Key_2)
    assert key.value() == 5.0 and w.audio_panel.output_gain_db.value() == -6.0
    w.voice_panel.steps.setValue(3)
    w.close()

    again = make_window(SettingsStore(store.path), load_model=False)
    assert again.settings.preset == "high" and list(again.settings.presets) == ["low", "high"]
    assert again.voice_panel.key.value() == 5.0 and again.voice_panel.steps.value() == 3
    assert again.bypass_button.isChecked() is False
    again.delete_preset("low")
    assert [b.text() for b in again.presets.buttons] == ["1 high"]
    assert "low" not in SettingsStore(store.path).load().presets
