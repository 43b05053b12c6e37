"""The control panel window: transport (start/stop, bypass), presets, meters and pitch, latency, and the tabs of
settings. Built for someone mid-performance: big start button, keyboard shortcuts, problems in a red banner
that never takes the window down.
"""
from __future__ import annotations

from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (QApplication, QGroupBox, QHBoxLayout, QLabel, QMainWindow, QProgressBar,
                             QPushButton, QTabWidget, QVBoxLayout, QWidget)

from gui.audio_panel import AudioPanel
from gui.banner import Banner
from gui.latency_view import LatencyView
from gui.live_control import IDLE, RUNNING, STARTING, STOPPING, LiveControl
from gui.meters import LevelMeter
from gui.pitch_view import PitchView
from gui.preset_bar import MAX_BUTTONS, PresetBar
from gui.presets import LIVE_FIELDS, PanelSettings, SettingsStore
from gui.sung_pitch import SungPitch
from gui.tune_panel import TunePanel
from gui.voice_panel import VoicePanel
from gui.workers import Job, describe, run_job
from models.errors import ComoliveError

REFRESH_MS = 40            # meters and pitch at 25 Hz
SLOW_AFTER_BLOCKS = 20     # blocks measured before telling the performer the machine is too slow
SAVE_DELAY_MS = 500        # settings are written shortly after the last change
# these change the session and its latency
BUDGET_FIELDS = ("model", "block_ms", "margin_ms", "steps", "pitch", "vocoder", "device")
DEVICE_FIELDS = ("hostapi", "input_device", "sample_rate")  # these change the rate the session runs at


def _load_voices(model: str | None):
    """The voices of a model (None: the embedded default) and its default one; a bad file raises its reason."""
    from models.voice_model import VoiceModel

    vm = VoiceModel.load(model)
    return sorted(vm.voices), vm.meta.get("default_voice")


def _user_models() -> list:
    from models.voice_model import USER_VOICES_DIR, find_voice_models

    return find_voice_models(USER_VOICES_DIR)


class MainWindow(QMainWindow):
    def __init__(self, store: SettingsStore | None = None, load_model: bool = True, model: str | None = None,
                 adapter=None):
        """`model`: a voice model to open with (main.py gui --model) instead of the one remembered.
        `adapter(clips, model, work_dir, on_step=...)`: what adapts a model to a clip and returns the adapted
        model's stem (stored between runs, or in work_dir for this session: training.adaptation_cache, which
        main.py hands in); with work_dir None it only looks for a stored one (the stem or None). None: no
        Adapt button."""
        super().__init__()
        self.setWindowTitle("comolive — live voice conversion")
        self.store = store or SettingsStore()
        self.settings: PanelSettings = self.store.load()
        self.settings.bypass = False
        if model is not None:
            self.settings.model = str(model)
        self.devices: list = []
        self.control = LiveControl(self)
        self._last_error = None
        self._warned_slow = False
        self.default_voice: str | None = None
        self._jobs: set[Job] = set()
        self.adapter = adapter
        self._adapt_dir = None  # a temporary folder for adapted models when they cannot be stored
        self._adapting = False
        self.load_model = load_model  # False: a panel that only edits settings (never loads the model)
        self.tune_seconds = 10.0       # test phrase length per block size tried
        self.tune_candidates_ms = None  # None: the tuner's own list
        self._build()
        self._wire()
        self._shortcuts()
        self.voice_panel.set_models(_user_models())
        self.load_settings_into_widgets()
        if self.store.problem:
            self.banner.show_message(self.store.problem)
        self.refresh_devices()
        if load_model:
            self._reload_voices()  # then prepares the session: a remembered model that is gone is said once
        self.sung = SungPitch(REFRESH_MS / 1000.0)  # the singer's register, for Match
        self._clip_f0: tuple[object, float] | None = None  # (reference, its median f0): measured once
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_settings)

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        self.start_button = QPushButton("▶  Start  (Space)")
        self.start_button.setObjectName("start")
        self.start_button.setMinimumHeight(48)
        f = self.start_button.font()
        f.setPointSizeF(f.pointSizeF() * 1.4)
        f.setBold(True)
        self.start_button.setFont(f)
        self.start_button.setToolTip("Start or stop live conversion (Space)")
        self.bypass_button = QPushButton("Bypass  (B)")
        self.bypass_button.setObjectName("bypass")
        self.bypass_button.setCheckable(True)
        self.bypass_button.setMinimumHeight(48)
        self.bypass_button.setToolTip("Hear your dry voice instead of the converted one (B); same latency, no click")
        self.rec_label = QLabel("● REC")
        self.rec_label.setStyleSheet("color: #e15759; font-weight: bold")
        self.rec_label.setVisible(False)
        self.state_label = QLabel("stopped")
        self.state_label.setObjectName("state")
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(140)
        self.busy_bar.setVisible(False)
        self.busy_label = QLabel("")

        top = QHBoxLayout()
        top.addWidget(self.start_button, 2)
        top.addWidget(self.bypass_button, 1)
        top.addWidget(self.rec_label)
        top.addWidget(self.state_label)
        top.addStretch(1)
        top.addWidget(self.busy_label)
        top.addWidget(self.busy_bar)

        self.presets = PresetBar()
        self.banner = Banner()

        self.in_meter = LevelMeter("in")
        self.out_meter = LevelMeter("out")
        meters = QHBoxLayout()
        meters.addWidget(self.in_meter)
        meters.addWidget(self.out_meter)
        self.pitch_view = PitchView()
        self.latency = LatencyView()
        lat_box = QGroupBox("Latency")
        QVBoxLayout(lat_box).addWidget(self.latency)
        centre = QVBoxLayout()
        centre.addWidget(self.pitch_view, 3)
        centre.addWidget(lat_box, 0)

        self.voice_panel = VoicePanel()
        self.voice_panel.from_clip.clicked.connect(self.pick_reference_clips)
        self.voice_panel.open_model.clicked.connect(self.pick_model)
        self.voice_panel.adapt.clicked.connect(self.adapt_to_reference)
        self.voice_panel.match_key.clicked.connect(self.match_key_to_reference)
        self.voice_panel.adapt.setVisible(self.adapter is not None)
        self.audio_panel = AudioPanel()
        self.tune_panel = TunePanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.voice_panel, "Voice")
        self.tabs.addTab(self.audio_panel, "Audio")
        self.tabs.addTab(self.tune_panel, "Latency")
        self.tabs.setMinimumWidth(360)

        body = QHBoxLayout()
        body.addLayout(meters, 0)
        body.addLayout(centre, 1)
        body.addWidget(self.tabs, 0)

        root = QVBoxLayout()
        root.addLayout(top)
        root.addWidget(self.presets)
        root.addWidget(self.banner)
        root.addLayout(body, 1)
        central = QWidget()
        central.setLayout(root)
        self.setCentralWidget(central)
        self.statusBar().showMessage("ready")
        self.resize(1180, 640)

    def _wire(self) -> None:
        self.start_button.clicked.connect(self.toggle_running)
        self.bypass_button.toggled.connect(lambda on: self.on_change("bypass", on))
        for panel in (self.voice_panel, self.audio_panel, self.tune_panel):
            panel.changed.connect(self.on_change)
        self.audio_panel.refresh_requested.connect(lambda: self.refresh_devices(rescan=True))
        self.tune_panel.tune_requested.connect(self.run_tune)
        self.presets.chosen.connect(self.switch_preset)
        self.presets.save_requested.connect(self.save_preset)
        self.presets.delete_requested.connect(self.delete_preset)
        c = self.control
        c.state_changed.connect(self._on_state)
        c.message.connect(self.banner.show_message)
        c.busy.connect(self._on_busy)
        c.session_ready.connect(self._on_session)

    def _shortcuts(self) -> None:
        def add(keys, fn):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
            return sc

        add("Space", self.toggle_running)
        add("B", self.bypass_button.toggle)
        add("Ctrl+S", self.presets.save.click)
        add("Escape", self._escape)
        for n in range(1, MAX_BUTTONS + 1):
            add(str(n), lambda n=n: self.switch_preset_number(n))

    def _escape(self) -> None:
        self.banner.clear()
        if self.focusWidget() is not None:
            self.focusWidget().clearFocus()

    # ------------------------------------------------------------- settings
    def load_settings_into_widgets(self) -> None:
        s = self.settings
        for panel in (self.voice_panel, self.audio_panel, self.tune_panel):
            panel.load(s)
        self.bypass_button.blockSignals(True)
        self.bypass_button.setChecked(s.bypass)
        self.bypass_button.blockSignals(False)
        self.pitch_view.set_key(s.key)
        if s.voice is None and self.default_voice:
            self.voice_panel.b.show("voice", self.default_voice)
        self.presets.set_presets(list(s.presets), s.preset)
        self.rec_label.setVisible(bool(s.record and s.record_dir and self.control.state == RUNNING))

    def on_change(self, name: str, value) -> None:
        """One control changed: remember it, apply it live where possible, say when it waits for a restart."""
        if name == "model":
            self.use_model(value)  # taken once its voices have been read
            return
        if name == "voice" and self.control.reference is not None:
            self.use_reference(None)  # back to the named voice, even the one the list already shows
            self.control.set(voice=value)
        if getattr(self.settings, name, object()) == value:
            return
        setattr(self.settings, name, value)
        if name == "key":
            self.pitch_view.set_key(value)
        if name == "hostapi":
            self.audio_panel.load(self.settings)
        if self.control.state == RUNNING:
            if name in LIVE_FIELDS:
                self.control.set(**{name: value})
            else:
                self.statusBar().showMessage(f"{name.replace('_', ' ')} applies at the next start", 6000)
        elif name in BUDGET_FIELDS or name in DEVICE_FIELDS:
            self.prepare()
        self._save_soon()

    def prepare(self) -> None:
        """Load the session for the current settings in the background: Start is then quick, and the latency
        budget shows before going live."""
        if self.load_model:
            self.control.prepare(self.settings, self.devices)

    def _save_soon(self) -> None:
        self._save_timer.start()

    def save_settings(self) -> None:
        try:
            self.store.save(self.settings)
        except ComoliveError as e:
            self.banner.show_message(str(e))

    # -------------------------------------------------------------- presets
    def switch_preset(self, name: str) -> None:
        try:
            changed = self.settings.apply_preset(name)
        except ComoliveError as e:
            self.banner.show_message(str(e))
            return
        self.load_settings_into_widgets()
        if "model" in changed:
            self._forget_adaptation()
            self._reload_voices()
        if self.control.state == RUNNING:
            # a voice of another model waits for that model, at the next start
            live = {k: v for k, v in changed.items() if k in LIVE_FIELDS and not (k == "voice" and "model" in changed)}
            if live:
                self.control.set(**live)
            later = [k for k in changed if k not in live]
            if later:
                self.statusBar().showMessage(f"preset '{name}': {', '.join(later)} apply at the next start", 6000)
        elif any(k in BUDGET_FIELDS for k in changed):
            self.prepare()
        self.statusBar().showMessage(f"preset '{name}'", 3000)
        self._save_soon()

    def switch_preset_number(self, n: int) -> None:
        name = self.presets.name_at(n)
        if name is not None:
            self.switch_preset(name)

    def save_preset(self, name: str) -> None:
        try:
            self.settings.save_preset(name)
        except ComoliveError as e:
            self.banner.show_message(str(e))
            return
        self.presets.set_presets(list(self.settings.presets), self.settings.preset)
        self.save_settings()

    def delete_preset(self, name: str) -> None:
        self.settings.presets.pop(name, None)
        if self.settings.preset == name:
            self.settings.preset = None
        self.presets.set_presets(list(self.settings.presets), self.settings.preset)
        self.save_settings()

    # -------------------------------------------------------------- devices
    def refresh_devices(self, rescan: bool = False) -> None:
        if self.control.state != IDLE:
            self.statusBar().showMessage("stop before re-scanning devices", 4000)
            return
        from realtime import devices

        try:
            if rescan:
                devices.refresh()
            hostapis, self.devices = devices.list_hostapis(), devices.list_devices()
        except ComoliveError as e:
            hostapis, self.devices = [], []
            self.banner.show_message(str(e))
        self.audio_panel.set_devices(hostapis, self.devices)
        self.audio_panel.load(self.settings)
        if rescan:
            self.prepare()  # the input device's rate may have changed
        self.statusBar().showMessage(f"{len(self.devices)} audio devices", 3000)

    # ------------------------------------------------------------ transport
    def toggle_running(self) -> None:
        if self.control.state == IDLE:
            self.start()
        elif self.control.state == RUNNING:
            self.stop()

    def start(self) -> None:
        if self._adapting:
            self.statusBar().showMessage("adapting to the clip: Start when it is done", 4000)
            return
        self.banner.clear()
        self._last_error = None
        self._warned_slow = False
        self.pitch_view.clear()
        self.control.start(self.settings, self.devices)

    def stop(self) -> None:
        self.control.stop()

    def _on_state(self, state: str) -> None:
        running = state == RUNNING
        self.start_button.setText({IDLE: "▶  Start  (Space)", STARTING: "…  Starting", STOPPING: "…  Stopping",
                                   RUNNING: "■  Stop  (Space)"}[state])
        self.start_button.setEnabled(state in (IDLE, RUNNING))
        self.start_button.setStyleSheet("background: #2e7d32; color: white" if running else "")
        self.state_label.setText({IDLE: "stopped", STARTING: "starting…", STOPPING: "stopping…",
                                  RUNNING: "LIVE"}[state])
        self.state_label.setStyleSheet("color: #59a14f; font-weight: bold" if running else "")
        self.rec_label.setVisible(bool(running and self.settings.record and self.settings.record_dir))
        self.audio_panel.refresh.setEnabled(state == IDLE)
        self.voice_panel.model.setEnabled(state == IDLE)  # a model is loaded at the start, not mid-show
        self.voice_panel.open_model.setEnabled(state == IDLE)
        self.voice_panel.adapt.setVisible(self.adapter is not None and state == IDLE)  # it takes the whole CPU
        if state == IDLE:
            self.in_meter.set_level(None)
            self.out_meter.set_level(None)
            self.prepare()  # the next Start is quick again

    def _on_busy(self, what: str) -> None:
        self.busy_label.setText(what)
        self.busy_bar.setVisible(bool(what))

    def _on_session(self, session) -> None:
        self.show_budget(session)

    def show_budget(self, session) -> None:
        """Declared latency before starting: the session's parts plus what the loop adds."""
        try:
            from realtime.live import loop_latency_parts

            added = loop_latency_parts(session, self.settings.margin_ms or None)
            parts = {k: v for k, v in added.items() if k == "block"}  # the order the sound goes through
            parts.update(session.latency_parts())
            parts.update({k: v for k, v in added.items() if k != "block"})
            self.latency.set_budget(parts, note="before device buffers" if "device buffers" not in parts else "")
            self.latency.set_device(str(getattr(session, "device", "—")))
        except Exception as e:  # noqa: BLE001 - a missing figure must not stop the panel
            self.latency.set_unknown(f"latency budget unavailable: {describe(e)}")

    # -------------------------------------------------------------- refresh
    def refresh(self) -> None:
        """Timer tick: pull one stats snapshot from the loop into the meters, pitch display and latency view."""
        if self.control.state != RUNNING:
            return
        st = self.control.stats()
        if st is None:
            return
        self.in_meter.set_level(st.input_level_db)
        self.out_meter.set_level(st.output_level_db)
        self.pitch_view.push(st.input_f0_hz, st.output_f0_hz)
        self.sung.push(st.input_f0_hz)
        self.latency.set_stats(st)
        if st.error and st.error != self._last_error:
            self._last_error = st.error
            self.banner.show_message(st.error)
        elif not self._warned_slow and st.blocks >= SLOW_AFTER_BLOCKS and st.compute_ms_p50 > st.block_ms > 0:
            self._warned_slow = True
            self.banner.show_message(
                f"this machine does not keep up: a {st.block_ms:.0f} ms block takes {st.compute_ms_p50:.0f} ms to "
                "convert (median), so most of the output drops out. Stop, then raise the block size, press Tune, "
                "choose a lighter vocoder or fewer steps, or use the GPU.")

    # ------------------------------------------------------------- tuning
    def run_tune(self) -> None:
        if self.control.state != IDLE:
            self.banner.show_message("stop the live loop before tuning: the tuner needs the whole machine")
            return
        self.tune_panel.set_busy(True)

        def done(result):
            self.tune_panel.set_busy(False)
            self.tune_panel.show_result(result)
            if result.block_ms is None:
                return
            self.tune_panel.b.show("block_ms", float(result.block_ms))
            self.on_change("block_ms", float(result.block_ms))
            parts = getattr(result, "latency_parts", None)
            if parts:
                self.latency.set_budget(dict(parts), note="tuner's proposal")

        def failed(msg):
            self.tune_panel.set_busy(False)
            self.tune_panel.result.setText("")
            self.banner.show_message(f"tuning failed: {msg}")

        self.control.tune(self.settings, self.devices, done, failed, self.tune_panel.on_progress,
                          seconds=self.tune_seconds, candidates_ms=self.tune_candidates_ms)

    # -------------------------------------------------------------- voices
    def _start_job(self, job: Job, done, failed) -> None:
        run_job(self._jobs, job, done, failed)

    def pick_reference_clips(self) -> None:
        from PyQt6.QtWidgets import QFileDialog

        paths, _ = QFileDialog.getOpenFileNames(self, "Voice from clip: 3-10 s of one voice", "",
                                                "Audio (*.wav *.flac *.ogg *.mp3 *.aiff *.aif);;All files (*)")
        if paths:
            self.use_reference_clips(paths)

    def use_reference_clips(self, paths: list[str]) -> None:
        """Take the target voice from these clips (checked and embedded in the background)."""
        from engine.reference import load_reference

        self.voice_panel.from_clip.setEnabled(False)
        self.voice_panel.clip_label.setText("reading the clip…")

        def failed(message: str) -> None:
            self.voice_panel.from_clip.setEnabled(True)
            self.voice_panel.show_reference(self.control.reference)
            self.banner.show_message(f"voice from clip: {message}")

        self._start_job(Job(load_reference, list(paths), parent=self), self.use_reference, failed)

    def use_reference(self, reference) -> None:
        """A voice from clips (engine.reference.Reference) replaces the named voice; None goes back to it."""
        self.voice_panel.from_clip.setEnabled(True)
        self.control.set_reference(reference)
        self.voice_panel.show_reference(reference)
        if reference is not None:
            for w in reference.warnings:
                self.banner.show_message(f"voice from clip: {w}")
            if self.adapter is not None:
                self._use_stored_adaptation(reference)  # prepares once the model to load is known
            elif self.control.state != RUNNING:
                self.prepare()

    def _use_stored_adaptation(self, ref) -> None:
        """An adaptation to this clip stored earlier (Adapt, `convert --ref`) is used at once, as `live --ref`
        does; looked up in the background (a failed look-up only means adapting again), then the session is
        prepared."""
        model = self.settings.model

        def done(stem) -> None:
            if self.control.reference is not ref or self.settings.model != model:
                return  # another voice or model was chosen meanwhile: that choice prepares
            if stem is not None:
                self.control.adapted = stem
                self.voice_panel.show_reference(ref, adapted=True)
                self.statusBar().showMessage("the decoder adapted to this clip earlier is used" if
                                             self.control.state != RUNNING else
                                             "this clip's stored adaptation applies at the next start", 6000)
            if self.control.state != RUNNING:
                self.prepare()

        self._start_job(Job(self.adapter, ref.clips, model, None, parent=self), done, lambda _message: done(None))

    def pick_model(self) -> None:
        from PyQt6.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self, "Voice model", "", "comolive voice model (*.safetensors *.json)")
        if path:
            self.use_model(path)

    def use_model(self, model: str | None) -> None:
        """Sing with another voice model (None: the embedded default). Its voices are read in the background
        and it is taken only if that works; a file that cannot be read is a banner message and the model in
        use stays."""
        if self.control.state != IDLE:
            self.voice_panel.b.show("model", self.settings.model)
            self.banner.show_message("stop before changing the voice model: it is loaded at the start")
            return
        if model is not None:
            from models.checkpoint import checkpoint_stem

            model = str(checkpoint_stem(model))

        def done(result) -> None:
            self.settings.model = model
            self._forget_adaptation()
            self.voice_panel.offer_model(model)
            self.voice_panel.b.show("model", model)
            self._voices_loaded(result)
            self.prepare()
            self._save_soon()

        def failed(message: str) -> None:
            self.voice_panel.b.show("model", self.settings.model)
            self.banner.show_message(f"could not open the voice model: {message}")

        self._start_job(Job(_load_voices, model, parent=self), done, failed)

    def _forget_adaptation(self) -> None:
        """A decoder adapted from the previous model does not serve another one: the clip stays, unadapted."""
        self.control.adapted = None
        self.voice_panel.show_reference(self.control.reference)

    def _reload_voices(self) -> None:
        """Fill the voice list from the model in the settings; one that cannot be read (moved, damaged) is a
        message, and the panel goes back to the embedded default."""
        model = self.settings.model

        def failed(message: str) -> None:
            if model is None:
                self.banner.show_message(f"could not read the voices: {message}")
                return
            self.banner.show_message(f"could not open the voice model {model}: {message}; using the embedded "
                                     "default")
            self.settings.model = None
            self.voice_panel.b.show("model", None)
            self._reload_voices()

        def done(result) -> None:
            self._voices_loaded(result)
            if self.control.state == IDLE:
                self.prepare()

        self._start_job(Job(_load_voices, model, parent=self), done, failed)

    def adapt_to_reference(self) -> None:
        """Fine-tune the decoder on the clip in use (in the background, while stopped; at once when an earlier
        run stored that adaptation); the adapted model then replaces the model until another voice, clip or
        model is chosen."""
        ref = self.control.reference
        if self.adapter is None or ref is None or self._adapting:
            return
        if self.control.state != IDLE:
            self.banner.show_message("stop before adapting: it takes the whole CPU for about half a minute")
            return
        import tempfile
        from pathlib import Path

        if self._adapt_dir is None:
            self._adapt_dir = tempfile.TemporaryDirectory(prefix="comolive-panel-adapt-")
        work_dir = Path(self._adapt_dir.name) / f"adapted{len(list(Path(self._adapt_dir.name).iterdir()))}"
        model, adapter = self.settings.model, self.adapter
        self._adapting = True
        self.voice_panel.adapt.setEnabled(False)
        self._on_busy("adapting to the clip: reading it…")

        def finish() -> None:
            self._adapting = False
            self._on_busy("")

        def done(path: str) -> None:
            finish()
            if self.control.reference is not ref or self.settings.model != model:
                return  # another voice or model was chosen meanwhile
            self.control.adapted = path
            self.voice_panel.show_reference(ref, adapted=True)
            self.statusBar().showMessage("the decoder is adapted to the clip", 4000)
            self.prepare()

        def failed(message: str) -> None:
            finish()
            self.voice_panel.show_reference(self.control.reference, self.control.adapted is not None)
            self.banner.show_message(f"adapting to the clip: {message}")

        job = Job(lambda progress: adapter(ref.clips, model, work_dir, on_step=progress), wants_progress=True,
                  parent=self)
        job.progress.connect(lambda a: self._on_busy(f"adapting to the clip: step {a[0]} of {a[1]}"))
        self._start_job(job, done, failed)

    def match_key_to_reference(self) -> None:
        """Set the key that moves the singer's register (the median of their last seconds sung) into the clip's
        (engine/register.py; the clip's median pitch measured once, in the background)."""
        from engine.register import clips_median_f0, register_key

        ref, sung = self.control.reference, self.sung.median()
        if ref is None:
            return
        if sung is None:
            self.statusBar().showMessage("sing a few seconds first: the key comes from the median pitch of your "
                                         "singing", 6000)
            return

        def done(clip_f0: float) -> None:
            self._clip_f0 = (ref, clip_f0)
            if self.control.reference is not ref:
                return  # another voice was chosen meanwhile
            if clip_f0 <= 0:
                self.banner.show_message("match key: the clip has no pitch to match")
                return
            key = register_key(clip_f0, sung)
            self.voice_panel.key.setValue(key)
            self.statusBar().showMessage(f"key {key:+g}: your singing (median {sung:.0f} Hz) into the clip's "
                                         f"register ({clip_f0:.0f} Hz)", 8000)

        if self._clip_f0 is not None and self._clip_f0[0] is ref:
            done(self._clip_f0[1])
            return
        pitch = self.settings.pitch or "fcpe"
        self._start_job(Job(clips_median_f0, ref.clips, pitch, parent=self), done,
                        lambda message: self.banner.show_message(f"match key: {message}"))

    def _voices_loaded(self, result) -> None:
        names, default = result
        self.default_voice = default
        if self.settings.voice is not None and self.settings.voice not in names:
            self.settings.voice = None  # a voice of the previous model: this model's default instead
        self.voice_panel.set_voices(names, default)
        self.voice_panel.b.show("voice", self.settings.voice or default)

    # ---------------------------------------------------------------- close
    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        self.control.stop(wait=True)
        self.save_settings()
        self.control.wait_idle()
        for job in list(self._jobs):
            job.wait(60_000)
        QApplication.processEvents()  # deliver a start that finished while closing...
        self.control.stop(wait=True)  # ...and close it
        if self._adapt_dir is not None:
            self._adapt_dir.cleanup()
        event.accept()
