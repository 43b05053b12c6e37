"""The panel's link to the live loop: builds a LiveConfig from the settings, opens and closes the loop off the
GUI thread, forwards live changes, and keeps a prepared session so that Start is quick.

Everything slow (loading the model, opening streams, tuning) runs in a Job; results and errors come back as
signals. Device and model problems arrive as readable messages; the controller is usable again afterwards.
"""
from __future__ import annotations

import threading
from dataclasses import fields

from PyQt6.QtCore import QObject, pyqtSignal

from gui.presets import LIVE_FIELDS, PanelSettings
from gui.workers import Job, run_job

IDLE, STARTING, RUNNING, STOPPING = "idle", "starting", "running", "stopping"
FALLBACK_RATE = 48000  # for the latency budget when the input device is not known yet
SESSION_LIVE = LIVE_FIELDS + ("reference",)  # what a prepared or running session takes without a restart


def session_config(s: PanelSettings, rate: int | None = None, reference=None, adapted: str | None = None):
    """The engine's SessionConfig for these settings (its defaults where a setting is None), at the loop's rate;
    `reference` (engine.reference.Reference) is a voice from clips that replaces the named voice, and
    `adapted` a model adapted to it (a stored adaptation) that replaces the model."""
    from engine.session_config import SessionConfig

    wanted = dict(block_ms=s.block_ms, model=adapted or s.model, voice=s.voice, key=s.key, formant=s.formant,
                  steps=s.steps, pitch=s.pitch, vocoder=s.vocoder, device=s.device, gate_db=s.gate_db,
                  gate_hold_ms=s.gate_hold_ms, gate_floor_db=s.gate_floor_db, sample_rate=rate, reference=reference)
    return SessionConfig(**{k: v for k, v in wanted.items() if v is not None})


def _device_spec(name: str | None, kind: str, hostapi: str | None, devices: list):
    """A remembered device name -> the index of the one device of that exact name, else the name itself
    (the loop then matches it, or explains what is ambiguous or missing)."""
    if name is None:
        return None
    chans = (lambda d: d.max_input_channels) if kind == "input" else (lambda d: d.max_output_channels)
    hits = [d for d in devices if d.name == name and chans(d) > 0 and (hostapi is None or d.hostapi == hostapi)]
    return hits[0].index if len(hits) == 1 else name


def live_config(s: PanelSettings, devices: list, reference=None, adapted: str | None = None):
    from realtime.live import LiveConfig
    from realtime.recorder import next_take

    return LiveConfig(
        session=session_config(s, input_rate(s, devices), reference, adapted),
        input_device=_device_spec(s.input_device, "input", s.hostapi, devices),
        output_device=_device_spec(s.output_device, "output", s.hostapi, devices),
        monitor_device=_device_spec(s.monitor_device, "output", s.hostapi, devices),
        hostapi=s.hostapi, sample_rate=s.sample_rate, input_gain_db=s.input_gain_db,
        output_gain_db=s.output_gain_db, monitor_gain_db=s.monitor_gain_db, bypass=s.bypass,
        record_dir=(str(next_take(s.record_dir)) if s.record and s.record_dir else None),
        margin_ms=s.margin_ms or None)


def input_rate(s: PanelSettings, devices: list) -> int | None:
    """The rate the loop will run at: the chosen rate, else the input device's own (None if unknown)."""
    if s.sample_rate:
        return int(s.sample_rate)
    spec = _device_spec(s.input_device, "input", s.hostapi, devices)
    known = [d for d in devices if d.index == spec] if isinstance(spec, int) else []
    if known:
        return int(known[0].default_samplerate)
    from realtime.devices import resolve

    try:
        return int(resolve(spec, "input", s.hostapi).default_samplerate)
    except Exception:  # noqa: BLE001 - no such device yet: the budget uses a usual rate, Start will explain
        return None


def _restart_key(cfg) -> tuple:
    """What a prepared session was built for (rate included), apart from the values a live session takes on the
    fly."""
    return tuple((f.name, getattr(cfg, f.name)) for f in fields(cfg) if f.name not in SESSION_LIVE)


def _live_values(cfg) -> dict:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name in SESSION_LIVE}


def _build_session(cfg):
    import torch

    from engine.stream_session import StreamSession

    torch.set_num_threads(1)
    return StreamSession(cfg)


def _close_quietly(loop) -> None:
    try:
        loop.stop()
    except Exception:  # noqa: BLE001 - already broken; the banner says what happened
        pass


def _open_loop(config, session):
    from realtime.live import LiveLoop

    loop = LiveLoop(config, session=session)  # without a session, the loop checks the devices before loading one
    loop.start()
    return loop


class LiveControl(QObject):
    state_changed = pyqtSignal(str)
    message = pyqtSignal(str)            # a problem the performer should read (banner)
    session_ready = pyqtSignal(object)   # a prepared StreamSession (for the latency budget)
    busy = pyqtSignal(str)               # what is loading ('' when nothing)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.loop = None
        self.state = IDLE
        self.session = None
        self._session_key = None
        self.reference = None  # a voice from clips (engine.reference.Reference) in place of the named voice
        self.adapted = None    # a model adapted to that reference (its stem), in place of the settings' model
        self._jobs: set[Job] = set()
        self._preparing = None

    # ------------------------------------------------------------------ jobs
    def _run(self, job: Job, on_done, on_fail) -> Job:
        return run_job(self._jobs, job, on_done, on_fail)

    def wait_idle(self, ms: int = 60_000) -> None:
        for job in list(self._jobs):
            job.wait(ms)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    # --------------------------------------------------------------- session
    def prepare(self, settings: PanelSettings, devices: list) -> None:
        """Load a session for these settings in the background (unless the one we hold already fits)."""
        try:
            cfg = session_config(settings, input_rate(settings, devices) or FALLBACK_RATE, self.reference,
                                 self.adapted)
        except Exception as e:  # noqa: BLE001 - e.g. a value the engine refuses: say so, keep going
            from gui.workers import describe

            self.message.emit(describe(e))
            return
        key = _restart_key(cfg)
        if key == self._session_key and self.session is not None:
            self.session_ready.emit(self.session)
            return
        if self._preparing == key:
            return
        self._preparing = key
        self.busy.emit("loading the voice model…")

        def done(session, key=key):
            if self._preparing != key:
                return  # settings moved on while this one loaded
            self._preparing = None
            self.session, self._session_key = session, key
            self.busy.emit("")
            self.session_ready.emit(session)

        def failed(msg, key=key):
            if self._preparing == key:
                self._preparing = None
                self.busy.emit("")
            self.message.emit(f"could not load the voice: {msg}")

        self._run(Job(_build_session, cfg, parent=self), done, failed)

    # ------------------------------------------------------------ start/stop
    def start(self, settings: PanelSettings, devices: list) -> None:
        if self.state != IDLE:
            return
        try:
            config = live_config(settings, devices, self.reference, self.adapted)
        except Exception as e:  # noqa: BLE001 - a bad setting is a message, not a crash
            from gui.workers import describe

            self.message.emit(describe(e))
            return
        key = _restart_key(config.session)
        session = self.session if key == self._session_key else None
        self.session = self._session_key = None  # a session runs in one loop at a time
        if session is not None:
            session.set(**_live_values(config.session))  # key, voice... may have moved since it was prepared
        self._set_state(STARTING)
        self.busy.emit("opening audio devices…" if session is not None else "loading the voice and opening "
                                                                             "audio devices…")

        def done(loop):
            self.loop = loop
            self.busy.emit("")
            self._set_state(RUNNING)

        def failed(msg):
            self.busy.emit("")
            self._set_state(IDLE)
            self.message.emit(msg)

        self._run(Job(_open_loop, config, session, parent=self), done, failed)

    def stop(self, wait: bool = False) -> None:
        """Close the loop. In the background by default: the worker may be mid-block, which on a slow machine
        takes a while, and the panel must not freeze meanwhile. wait=True (closing the window) blocks."""
        loop, self.loop = self.loop, None
        if loop is None:
            if self.state == RUNNING:
                self._set_state(IDLE)
            return

        def done(_=None, loop=loop):
            self._keep(loop)
            self.busy.emit("")
            self._set_state(IDLE)

        def failed(msg):
            self.busy.emit("")
            self._set_state(IDLE)
            self.message.emit(f"while stopping: {msg}")

        if wait:
            try:
                loop.stop()
            except Exception as e:  # noqa: BLE001
                from gui.workers import describe

                failed(describe(e))
                return
            done()
            return
        self._set_state(STOPPING)
        self.busy.emit("stopping…")
        self._run(Job(loop.stop, parent=self), done, failed)

    def _keep(self, loop) -> None:
        """The stopped loop's session, reset to time 0, serves the next start (no model reload)."""
        session = getattr(loop, "session", None)
        if session is not None and hasattr(session, "reset"):
            session.reset()
            self.session, self._session_key = session, _restart_key(session.config)
            self._preparing = None

    def set_reference(self, reference) -> None:
        """Sing in a voice taken from clips (None: back to the named voice); live when running. A model
        adapted to the previous reference is left (a running loop keeps it until it stops)."""
        self.reference, self.adapted = reference, None
        if reference is not None:
            self.set(reference=reference)

    def set(self, **changes) -> None:
        """Forward live-changeable values to the running loop."""
        if "voice" in changes:
            self.reference = self.adapted = None  # picking a named voice leaves the voice from clips
        live = {k: v for k, v in changes.items() if k in SESSION_LIVE}
        if self.loop is None or not live:
            return
        try:
            self.loop.set(**live)
        except Exception as e:  # noqa: BLE001
            from gui.workers import describe

            self.message.emit(describe(e))

    def stats(self):
        loop = self.loop
        if loop is None:
            return None
        st = loop.stats()
        if not getattr(loop, "running", True) and self.state == RUNNING:
            # The loop ended by itself (device lost): back to idle at once, saying why. Its streams are closed
            # on a side thread: closing a stream whose device or server vanished can hang inside PortAudio, and
            # the window must not hang with it. Its session is not reused (it may be mid-block).
            self.loop = None
            threading.Thread(target=_close_quietly, args=(loop,), name="comolive-close-lost-loop",
                             daemon=True).start()
            self._set_state(IDLE)
            self.message.emit(st.error or "the audio stream stopped")
        return st

    # ------------------------------------------------------------------ tune
    def tune(self, settings: PanelSettings, devices: list, on_done, on_fail, on_progress, seconds: float = 10.0,
             candidates_ms=None) -> Job:
        """Run realtime.tune.tune on the current settings (at the input's rate) in a worker thread."""
        from realtime.tune import tune

        cfg = session_config(settings, input_rate(settings, devices) or FALLBACK_RATE, self.reference,
                             self.adapted)
        extra = {"candidates_ms": tuple(candidates_ms)} if candidates_ms else {}
        job = Job(lambda c, progress: tune(c, seconds=seconds, progress=progress, rate=c.sample_rate, **extra),
                  cfg, wants_progress=True, parent=self)
        job.progress.connect(on_progress)
        return self._run(job, on_done, on_fail)
