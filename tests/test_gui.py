"""Control panel: settings and presets persist, shortcuts switch presets, device errors become messages, and the
panel drives the real live loop on JACK dummy devices (meters move, converted audio arrives, key moves f0).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PyQt6.QtCore import Qt

from gui.presets import PanelSettings, SettingsStore, settings_to_toml

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "gui"  # screenshots of the running panel


@pytest.fixture
def store(tmp_path) -> SettingsStore:
    return SettingsStore(tmp_path / "config" / "panel.toml")


def test_settings_and_presets_round_trip(store):
    s = PanelSettings(hostapi="JACK Audio Connection Kit", input_device="system", output_device="system",
                      monitor_device='odd "name" \\ ü', sample_rate=48000, input_gain_db=3.0, key=-5.0,
                      formant=1.5, pitch="dio", steps=2, gate_db=-42.0, block_ms=60.0, record=True,
                      record_dir="/tmp/rec", voice="us2", model="voices/alto")
    s.save_preset("verse")
    s.key, s.voice, s.model = 7.0, "de4", None
    s.save_preset("chorus")
    store.save(s)
    back = store.load()
    assert store.problem is None
    assert back == s
    assert back.preset == "chorus" and list(back.presets) == ["verse", "chorus"]
    changed = back.apply_preset("verse")
    assert changed == {"key": -5.0, "voice": "us2", "model": "voices/alto"} and back.preset == "verse"
    assert back.apply_preset("chorus") == {"key": 7.0, "voice": "de4", "model": None}  # back to the embedded one
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
    from PyQt6.QtWidgets import QApplication

    from gui.app import dark_palette
    from gui.main_window import MainWindow

    QApplication.instance().setStyle("Fusion")  # the look `python main.py` gives (for the screenshots)
    QApplication.instance().setPalette(dark_palette())
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
    w.voice_panel.gate_floor_db.setValue(-60.0)
    assert w.settings.key == -3.0 and w.settings.gate_db == -40.0 and w.settings.gate_floor_db == -60.0
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
    assert again.voice_panel.gate_floor_db.value() == -60.0
    assert again.bypass_button.isChecked() is False
    again.delete_preset("low")
    assert [b.text() for b in again.presets.buttons] == ["1 high"]
    assert "low" not in SettingsStore(store.path).load().presets


def test_unknown_device_shows_a_message_and_the_panel_stays_usable(make_window, qtbot, store):
    from gui.live_control import IDLE

    w = make_window(store, load_model=False)
    w.settings.input_device = "no such microphone"
    qtbot.mouseClick(w.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=30_000)
    assert "no input device matches 'no such microphone'" in w.banner.text.text()
    assert w.control.state == IDLE and w.control.loop is None
    assert w.start_button.isEnabled() and "Start" in w.start_button.text()
    qtbot.keyClick(w, Qt.Key.Key_Escape)  # dismiss; the panel goes on working
    assert not w.banner.isVisible()
    w.voice_panel.key.setValue(2.0)
    assert w.settings.key == 2.0


def test_voice_from_clip(make_window, qtbot, store):
    """A clip becomes the target voice (checked and embedded in the background); picking a voice in the list
    goes back to it; a bad clip is a banner message."""
    from pathlib import Path

    from gui.live_control import live_config

    demo = str(Path(__file__).resolve().parents[1] / "assets" / "demo_phrase.wav")
    w = make_window(store, load_model=False)
    w.use_reference_clips([demo])
    qtbot.waitUntil(lambda: w.control.reference is not None, timeout=120_000)
    ref = w.control.reference
    assert ref.name == "ref:demo_phrase" and ref.embedding.shape == (256,)
    assert "ref:demo_phrase" in w.voice_panel.clip_label.text() and w.voice_panel.from_clip.isEnabled()
    assert live_config(w.settings, [], w.control.reference).session.reference is ref
    w.on_change("voice", w.settings.voice)  # the voice the list shows: back to it
    assert w.control.reference is None and w.voice_panel.clip_label.text() == ""
    w.use_reference_clips([str(Path(store.path).parent / "missing.wav")])
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=60_000)
    assert "voice from clip" in w.banner.text.text() and w.control.reference is None
    assert w.voice_panel.from_clip.isEnabled()


def _voice_model_file(folder: Path, name: str) -> Path:
    """The embedded model with one more voice, saved as a user's model (what `voice add` writes)."""
    import numpy as np

    from models.voice_model import VoiceModel

    vm = VoiceModel.load()
    vm.voices[name] = np.roll(vm.speaker(vm.meta["default_voice"]), 1)
    vm.save(folder / name, half=True)
    return folder / name


def test_voice_model_files_are_found_in_a_folder(tmp_path):
    """A folder's voice models are offered; the teacher and own-vocoder files beside them, and other JSON, are
    not."""
    import shutil

    from models.voice_model import find_voice_models

    stem = _voice_model_file(tmp_path, "alto")
    for other in ("alto_teacher", "alto_hn"):
        for suffix in (".safetensors", ".json"):
            shutil.copy(stem.with_suffix(suffix), tmp_path / f"{other}{suffix}")
    (tmp_path / "alto_hn.json").write_text('{"format": 1, "kind": "hn_vocoder"}')
    (tmp_path / "notes.json").write_text("[1, 2]")
    (tmp_path / "lonely.json").write_text('{"format": "comolive-voice-model"}')  # no weights beside it
    assert find_voice_models(tmp_path) == [stem]
    assert find_voice_models(tmp_path / "missing") == []


def test_voice_model_from_a_file(make_window, qtbot, store, tmp_path):
    """A model made by `voice add` is opened from the panel: its voices fill the list, the session loads it, a
    preset remembers it; a damaged file is a banner message and the model in use stays."""
    from gui.live_control import live_config

    stem = _voice_model_file(tmp_path, "alto")
    w = make_window(store, load_model=False)
    assert w.voice_panel.model.currentData() is None  # the embedded default
    w.use_model(str(stem.with_suffix(".safetensors")))
    qtbot.waitUntil(lambda: w.settings.model == str(stem), timeout=60_000)
    voices = [w.voice_panel.voice.itemData(i) for i in range(w.voice_panel.voice.count())]
    assert "alto" in voices and w.voice_panel.model.currentData() == str(stem)
    assert live_config(w.settings, []).session.model == str(stem)
    w.on_change("voice", "alto")
    w.save_preset("alto")
    w.use_model(None)
    qtbot.waitUntil(lambda: w.settings.model is None, timeout=60_000)
    assert w.settings.voice is None  # alto is not a voice of the embedded model: its default instead
    w.switch_preset("alto")
    assert (w.settings.model, w.settings.voice) == (str(stem), "alto")

    bad = tmp_path / "bad"
    bad.with_suffix(".safetensors").write_bytes(b"not weights")
    bad.with_suffix(".json").write_text('{"format": "comolive-voice-model"}')
    w.use_model(str(bad))
    qtbot.waitUntil(lambda: w.banner.isVisible(), timeout=60_000)
    assert "could not open the voice model" in w.banner.text.text() and w.settings.model == str(stem)
    assert w.voice_panel.model.currentData() == str(stem)


def test_a_model_that_is_gone_opens_the_embedded_one_and_says_so(make_window, qtbot, store, tmp_path):
    """`main.py gui --model` (or the remembered model) naming a file that is not there: one message, and the panel
    loads the embedded model instead."""
    w = make_window(store, model=str(tmp_path / "gone"))
    qtbot.waitUntil(lambda: w.control.session is not None, timeout=120_000)
    assert w.settings.model is None and w.voice_panel.voice.count() > 1
    assert "could not open the voice model" in w.banner.text.text()
    assert "using the embedded default" in w.banner.text.text()


@pytest.mark.slow
def test_adapting_to_a_clip_from_the_panel(make_window, qtbot, store):
    """Adapt fine-tunes the decoder on the clip in use (training.adaptation_cache, here 2 steps) and the session
    then loads the adapted model; choosing a named voice leaves it."""
    from gui.live_control import live_config
    from training.adaptation_cache import adapt_cached, cached_adaptation

    def adapter(clips, model, work_dir, on_step=None):  # main.py's, with 2 steps
        if work_dir is None:
            return cached_adaptation(clips, model, steps=2)
        return adapt_cached(clips, model, work_dir, steps=2, on_step=on_step)[0]

    demo = str(Path(__file__).resolve().parents[1] / "assets" / "demo_phrase.wav")
    w = make_window(store, load_model=False, adapter=adapter)
    assert w.voice_panel.adapt.isVisible() and not w.voice_panel.adapt.isEnabled()  # no clip yet
    w.use_reference_clips([demo])
    qtbot.waitUntil(lambda: w.control.reference is not None, timeout=120_000)
    assert w.voice_panel.adapt.isEnabled()
    qtbot.mouseClick(w.voice_panel.adapt, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.control.adapted is not None, timeout=180_000)
    adapted = Path(w.control.adapted)
    assert adapted.with_suffix(".safetensors").exists() and "decoder adapted" in w.voice_panel.clip_label.text()
    cfg = live_config(w.settings, [], w.control.reference, w.control.adapted).session
    assert cfg.model == str(adapted) and cfg.reference is w.control.reference
    assert not w.voice_panel.adapt.isEnabled() and not w.banner.isVisible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(ARTIFACTS / "panel_adapted.png"))
    w.on_change("voice", w.settings.voice)  # a named voice: neither the clip nor its adaptation
    assert w.control.reference is None and w.control.adapted is None
    w.use_reference_clips([demo])  # the same clip again: its stored adaptation is taken without adapting
    qtbot.waitUntil(lambda: w.control.adapted == str(adapted), timeout=120_000)
    assert "decoder adapted" in w.voice_panel.clip_label.text() and not w.voice_panel.adapt.isEnabled()


def test_live_config_from_the_panel_settings():
    """Remembered device names become the loop's devices: the one device of that name (by index), else the name
    (the loop then explains); recording only when switched on; margin 0 = the loop's default."""
    from gui.live_control import live_config
    from realtime.devices import DeviceInfo

    devices = [DeviceInfo(0, "system", "ALSA", 2, 2, 44100.0), DeviceInfo(1, "system", "JACK Audio Connection Kit",
                                                                              2, 2, 32000.0),
               DeviceInfo(2, "USB mic", "ALSA", 1, 0, 48000.0), DeviceInfo(3, "Phones", "ALSA", 0, 2, 48000.0)]
    s = PanelSettings(hostapi="JACK Audio Connection Kit", input_device="system", output_device="system",
                      monitor_device=None, key=3.0, voice="de4", block_ms=60.0, record_dir="/tmp/x")
    c = live_config(s, devices)
    assert (c.input_device, c.output_device, c.monitor_device, c.hostapi) == (1, 1, None, s.hostapi)
    assert c.session.sample_rate == 32000  # the input device's own rate
    assert (c.session.key, c.session.voice, c.session.block_ms) == (3.0, "de4", 60.0)
    assert c.record_dir is None and c.margin_ms is None
    s = PanelSettings(input_device="USB mic", output_device="system", monitor_device="Phones", record=True,
                      record_dir="/tmp/x", margin_ms=250.0, sample_rate=44100)
    c = live_config(s, devices)
    assert (c.input_device, c.output_device, c.monitor_device) == (2, "system", 3)  # two "system": by name
    assert c.session.sample_rate == 44100 and c.margin_ms == 250.0
    assert c.record_dir.startswith("/tmp/x/take-")  # each Start records a new take: nothing is overwritten


# ------------------------------------------------------------------------------- live, on JACK dummy devices
class JackProbe:
    """A JACK client that plays a looping test signal into the loop's input port and records its output port."""

    def __init__(self, server: str, signal, name: str = "comolive_probe"):
        import jack
        import numpy as np

        self.np = np
        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.rate = self.client.samplerate
        self.signal = np.asarray(signal, np.float32)
        self.pos = 0
        self.chunks: list = []
        self.play = self.client.outports.register("play")
        self.rec = self.client.inports.register("rec")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        idx = (self.pos + self.np.arange(frames)) % len(self.signal)
        self.play.get_array()[:] = self.signal[idx]
        self.pos += frames
        self.chunks.append(self.rec.get_array().copy())

    def connect_to_loop(self) -> list[str]:
        """Wire our output into every port of the loop's JACK client, and its outputs into our recorder."""
        mine = (self.client.name + ":", "system:")
        ins = [p for p in self.client.get_ports(is_audio=True, is_input=True) if not p.name.startswith(mine)]
        outs = [p for p in self.client.get_ports(is_audio=True, is_output=True) if not p.name.startswith(mine)]
        for p in ins:
            self.client.connect(self.play, p)
        for p in outs:
            self.client.connect(p, self.rec)
        return [p.name for p in ins + outs]

    def take(self):
        """Everything recorded since the last take()."""
        chunks, self.chunks = self.chunks, []
        return self.np.concatenate(chunks) if chunks else self.np.zeros(0, self.np.float32)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def median_f0(audio, rate: int) -> float:
    """Median f0 of the voiced frames of recorded output (WORLD DIO, independent of the loop's own read-out)."""
    import numpy as np

    from engine.pitch import make_pitch_extractor

    f0 = make_pitch_extractor("dio").extract_from(audio.astype(np.float32), rate)
    voiced = f0[f0 > 0]
    assert len(voiced) > 10, "no voiced output to measure"
    return float(np.median(voiced))


def pick(combo, data) -> None:
    """Choose an item the way a click does (activated fires, the window hears it)."""
    i = combo.findData(data)
    assert i >= 0, f"{data!r} not offered: {[combo.itemData(k) for k in range(combo.count())]}"
    combo.setCurrentIndex(i)
    combo.activated.emit(i)


@pytest.mark.slow
def test_live_on_jack_dummy_devices(make_window, qtbot, store, jack_server, tmp_path):
    import math

    import numpy as np

    from gui.live_control import IDLE, RUNNING
    from tests.helpers import harmonic

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w = make_window(store)
    jack_api = next(h for h in (w.audio_panel.hostapi.itemData(i) for i in range(w.audio_panel.hostapi.count()))
                    if h and "JACK" in h)
    pick(w.audio_panel.hostapi, jack_api)
    pick(w.audio_panel.input_device, "system")
    pick(w.audio_panel.output_device, "system")
    assert (w.settings.hostapi, w.settings.input_device, w.settings.output_device) == (jack_api, "system", "system")
    w.audio_panel.record.setChecked(True)
    w.audio_panel.record_dir.setText(str(tmp_path / "show"))
    w.audio_panel.record_dir.editingFinished.emit()
    # A generous safety margin: on a busy 2-core machine a slow block still plays (late, not dropped), so
    # this test checks the wiring, not the speed (that is `main.py bench live`).
    margin_ms = 6000.0
    w.tabs.setCurrentWidget(w.tune_panel)
    w.tune_panel.block_ms.setValue(180.0)
    w.tune_panel.margin_ms.setValue(margin_ms)

    # an unsupported rate is a message, then the panel goes live once it is fixed
    pick(w.audio_panel.sample_rate, 22050)
    qtbot.mouseClick(w.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.banner.isVisible() and w.control.state == IDLE, timeout=120_000)
    assert "22050" in w.banner.text.text() and "support" in w.banner.text.text()
    pick(w.audio_panel.sample_rate, None)

    # budget before starting: block, the session's parts, the output margin
    qtbot.waitUntil(lambda: w.latency.parts.get("output margin") == margin_ms and
                    w.control.session is not None and w.control.session.sr == 48000, timeout=180_000)
    parts = dict(w.latency.parts)
    assert parts["block"] == pytest.approx(180.0, abs=1.0) and len(parts) > 3
    assert w.latency.total.text() == f"{sum(parts.values()):.0f} ms"

    probe = JackProbe(jack_server.name, harmonic(220.0, 2.0, jack_server.rate, amp=0.3))
    try:
        qtbot.keyClick(w, Qt.Key.Key_Space)  # start
        qtbot.waitUntil(lambda: w.control.state == RUNNING, timeout=180_000)
        assert not w.banner.isVisible(), w.banner.text.text()
        assert w.rec_label.isVisible()
        assert probe.connect_to_loop()
        qtbot.waitUntil(lambda: w.in_meter.level_db > -30, timeout=30_000)
        qtbot.waitUntil(lambda: w.out_meter.level_db > -60, timeout=120_000)  # converted audio came out
        assert "device output buffer" in w.latency.parts and w.latency.parts["output margin"] == margin_ms

        def record(seconds: float):
            probe.take()
            qtbot.wait(int(seconds * 1000))
            return probe.take()

        before = record(8.0)
        assert np.max(np.abs(before)) > 0.02, "no converted audio at the output port"
        f0_before = median_f0(before, probe.rate)
        assert w.sung.median() == pytest.approx(220.0, rel=0.03)  # what Match takes as the singer's register

        w.voice_panel.key.setValue(7.0)  # live, no restart
        pick(w.voice_panel.voice, "us2")
        w.audio_panel.output_gain_db.setValue(-3.0)
        cfg = w.control.loop.config
        assert w.control.state == RUNNING
        assert (cfg.session.key, cfg.session.voice, cfg.output_gain_db) == (7.0, "us2", -3.0)
        qtbot.wait(int(margin_ms) + 1000)  # what is already converted plays out first
        after = record(8.0)
        f0_after = median_f0(after, probe.rate)
        shift = 12 * math.log2(f0_after / f0_before)
        print(f"output f0 {f0_before:.1f} Hz -> {f0_after:.1f} Hz after key +7 ({shift:+.2f} semitones)")
        assert 5.0 < shift < 9.0
        assert w.pitch_view.key == 7.0 and any(v is not None for v in w.pitch_view.outputs)
        assert w.latency.compute.text().startswith("p50 ")
        w.grab().save(str(ARTIFACTS / "panel_running.png"))

        qtbot.keyClick(w, Qt.Key.Key_B)  # bypass: the dry voice, live
        assert w.settings.bypass and w.control.loop.config.bypass
        qtbot.keyClick(w, Qt.Key.Key_Space)  # stop
        qtbot.waitUntil(lambda: w.control.state == IDLE, timeout=30_000)
        assert w.control.loop is None and "Start" in w.start_button.text()
        assert w.control.session is not None  # kept for the next start
        import soundfile as sf

        take = sorted((tmp_path / "show").glob("take-*"))[-1]  # each Start records a new take, nothing is overwritten
        for name in ("input.wav", "output.wav"):
            info = sf.info(str(take / name))
            assert info.samplerate == 48000 and info.duration > 20.0, (name, info.duration)
    finally:
        probe.close()


@pytest.mark.slow
def test_tune_button_runs_the_tuner_in_the_background_and_applies_its_block(make_window, qtbot, store):
    w = make_window(store, load_model=False)
    w.tune_seconds, w.tune_candidates_ms = 2.0, (232.0, 464.0)
    pick(w.voice_panel.vocoder, "hifigan")
    w.tabs.setCurrentWidget(w.tune_panel)
    qtbot.mouseClick(w.tune_panel.tune, Qt.MouseButton.LeftButton)
    assert not w.tune_panel.tune.isEnabled() and w.tune_panel.progress.isVisible()
    assert w.start_button.isEnabled()  # the GUI thread is free while the tuner measures
    qtbot.waitUntil(lambda: w.tune_panel.tune.isEnabled(), timeout=300_000)
    assert not w.banner.isVisible(), w.banner.text.text()
    text = w.tune_panel.result.text()
    lines = text.splitlines()
    assert lines[1].startswith("232 ms: compute p50")
    if text.startswith("proposed block"):
        proposed = float(lines[0].split(": ")[1].split(" ms")[0])
        assert w.settings.block_ms == w.tune_panel.block_ms.value() == proposed
        assert "output margin" in w.latency.parts
    else:
        assert text.startswith("no block size kept up") and w.settings.block_ms == 80.0


UNPLUG_CHILD = r"""
import faulthandler, os, sys, time
faulthandler.dump_traceback_later(240, exit=True)  # a hang shows where, instead of a silent timeout
sys.path.insert(0, sys.argv[1])
from realtime.jackd import JackServer
server = JackServer(rate=48000, period=256, name=f"comolive_unplug{os.getpid()}").start()
from PyQt6.QtTest import QTest
from gui.app import make_app
from gui.main_window import MainWindow
from gui.presets import PanelSettings, SettingsStore
store = SettingsStore(sys.argv[2])
store.save(PanelSettings(hostapi="JACK Audio Connection Kit", input_device="system", output_device="system",
                         block_ms=180.0))
app = make_app([])
w = MainWindow(store=store, load_model=False)
w.show()

def wait(cond, seconds):
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        QTest.qWait(100)
    return cond()

w.start()
print("RUNNING", wait(lambda: w.control.state == "running", 300), w.banner.text.text(), flush=True)
server.proc.terminate()  # the audio server goes away mid-show, as an unplugged interface does
print("JACKD", server.proc.wait(30), flush=True)
print("STOPPED", wait(lambda: w.control.state == "idle" and w.banner.isVisible(), 30), flush=True)
print("BANNER", w.banner.text.text(), flush=True)
print("USABLE", w.start_button.isEnabled(), "Start" in w.start_button.text(), flush=True)
w.voice_panel.key.setValue(4.0)
print("KEY", w.settings.key, flush=True)
w.refresh_devices(rescan=True)  # PortAudio is stuck on the dead server's client: said, not hung
print("RESCAN", w.banner.text.text(), flush=True)
w.close()
app.quit()
server.stop()
print("QUIT", flush=True)  # then a normal interpreter exit (PortAudio's exit handler must not block)
"""


@pytest.mark.slow
def test_audio_server_lost_mid_show_is_a_message_and_the_panel_stays_usable(tmp_path):
    """The JACK server quits while the panel is live (what an unplugged interface looks like to the loop): the
    window says so in words and goes back to stopped, usable; a re-scan says audio needs a restart (PortAudio
    stays blocked on the dead server's client) and quitting ends the process normally. In a child process."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", COMOLIVE_CONFIG_DIR=str(tmp_path))
    env.pop("JACK_DEFAULT_SERVER", None)
    out = subprocess.run([sys.executable, "-c", UNPLUG_CHILD, str(root), str(tmp_path / "panel.toml")],
                         capture_output=True, text=True, timeout=400, env=env, cwd=root)
    lines = {ln.split(" ", 1)[0]: ln.split(" ", 1)[1] if " " in ln else "" for ln in out.stdout.splitlines()}
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert lines["RUNNING"].startswith("True"), out.stdout
    assert lines["STOPPED"] == "True", out.stdout
    banner = lines["BANNER"].lower()
    assert "stopped" in banner or "unplugged" in banner or "no audio callback" in banner, banner
    assert lines["USABLE"] == "True True" and lines["KEY"] == "4.0"
    assert "restart" in lines["RESCAN"], out.stdout
    assert "QUIT" in lines


def test_sung_pitch_keeps_the_voiced_readings_of_the_last_seconds():
    from gui.sung_pitch import MIN_VOICED_S, WINDOW_S, SungPitch

    s = SungPitch(0.04)
    for f0 in [0.0, None, float("nan")] * 10 + [200.0] * int(MIN_VOICED_S / 0.04 - 1):
        s.push(f0)
    assert s.median() is None  # unvoiced readings do not count, and 2 s are not there yet
    s.push(200.0)
    assert s.median() == 200.0
    for _ in range(int(WINDOW_S / 0.04)):
        s.push(300.0)
    assert s.median() == 300.0  # only the last WINDOW_S


@pytest.mark.slow
def test_match_key_moves_the_singing_into_the_clips_register(make_window, qtbot, store):
    """Match sets the key between the median of the singer's last seconds and the clip's (engine/register.py),
    and says so; before any singing it says to sing first and leaves the key alone."""
    from engine.register import clips_median_f0, register_key
    from models.audio_io import load_audio

    demo = str(Path(__file__).resolve().parents[1] / "assets" / "demo_phrase.wav")
    w = make_window(store, load_model=False)
    assert not w.voice_panel.match_key.isEnabled()  # no clip yet
    w.use_reference_clips([demo])
    qtbot.waitUntil(lambda: w.control.reference is not None, timeout=120_000)
    assert w.voice_panel.match_key.isEnabled()
    key_before = w.settings.key
    qtbot.mouseClick(w.voice_panel.match_key, Qt.MouseButton.LeftButton)
    assert w.settings.key == key_before and "sing a few seconds first" in w.statusBar().currentMessage()
    for _ in range(100):  # 4 s of readings at 110 Hz, as refresh() pushes them from the loop's stats
        w.sung.push(110.0)
    expected = register_key(clips_median_f0([load_audio(demo)]), 110.0)
    assert expected != key_before
    qtbot.mouseClick(w.voice_panel.match_key, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.settings.key == expected, timeout=60_000)
    assert f"key {expected:+g}: your singing (median 110 Hz)" in w.statusBar().currentMessage()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(ARTIFACTS / "panel_match_key.png"))
