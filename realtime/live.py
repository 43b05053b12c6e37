"""The live loop: audio device(s) -> input ring -> inference worker (StreamSession) -> output ring(s) -> device(s).

    loop = LiveLoop(LiveConfig(SessionConfig(voice="us2")), session=None)
    loop.start(); ...; loop.set(key=3, bypass=False); print(loop.stats()); loop.stop()

Latency is fixed and declared part by part (`stats().latency_parts`): the session's own parts (the
block, each stage's lookahead, resampling to the model rate...), the output margin (the frames that
stand between the worker and the device, so that compute time never shows as jitter), resampling to
an output device's rate when it differs from the input's, and the device buffers. An overrun
becomes a crossfaded dropout and the timeline stays the same (see realtime/output.py).
"""
from __future__ import annotations

import gc
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from engine.session_config import SessionConfig
from realtime.devices import DeviceError
from realtime.meters import to_db
from realtime.output import OutputSink, db_to_gain
from realtime.ring import InputRing
from realtime.worker import InferenceWorker

FADE_MS = 5.0  # dropout, bypass and gain ramps
SWITCH_INTERVAL_S = 0.001  # the interpreter's GIL hand-over interval while a loop runs


@dataclass
class LiveConfig:
    session: SessionConfig | None  # None: the loop is handed a prepared session (realtime/protocols.Session)
    input_device: int | str | None = None  # None = system default; str = name substring
    output_device: int | str | None = None
    monitor_device: int | str | None = None  # optional second output carrying the same signal
    hostapi: str | None = None  # restrict name lookup to this host API
    sample_rate: int | None = None  # None = the input device's default rate
    input_gain_db: float = 0.0
    output_gain_db: float = 0.0
    monitor_gain_db: float = 0.0
    bypass: bool = False  # output the dry input, delayed by the same latency
    record_dir: str | None = None  # when set, write input.wav and output.wav there
    record_overwrite: bool = False  # replace input.wav/output.wav already in record_dir (else refuse)
    margin_ms: float | None = None  # output margin; None = one block
    blocksize: int = 0  # device callback size in frames; 0 = the host API's choice (JACK: its period)
    duplex: bool = True  # one duplex stream when input and output are the same device (False: separate streams)


@dataclass
class LiveStats:
    running: bool = False
    blocks: int = 0
    dropouts: int = 0
    overruns: int = 0
    block_ms: float = 0.0
    compute_ms_p50: float = 0.0
    compute_ms_p90: float = 0.0
    compute_ms_p99: float = 0.0
    input_level_db: float = -120.0
    output_level_db: float = -120.0
    input_f0_hz: float | None = None
    output_f0_hz: float | None = None
    latency_parts: dict[str, float] = field(default_factory=dict)
    latency_ms: float = 0.0
    measured_latency_ms: float | None = None
    device: str = "cpu"
    error: str | None = None
    sample_rate: int = 0
    monitor_dropouts: int = 0
    failed_blocks: int = 0  # blocks whose conversion raised (each played as a dropout)
    last_failure: str | None = None


def open_session(session_cfg, sample_rate: int):
    """A StreamSession for `session_cfg` fed at `sample_rate` (the input device's rate)."""
    from dataclasses import replace

    from engine.stream_session import StreamSession

    return StreamSession(replace(session_cfg, sample_rate=int(sample_rate)))


def loop_latency_parts(session, margin_ms: float | None = None) -> dict[str, float]:
    """What the loop adds to a session's own latency before any device is open: filling one block, and the
    output margin (ms). The session's latency_samples is its process() delay and excludes the block."""
    block_ms = 1000.0 * session.block_size / session.sr
    return {"block": block_ms, "output margin": float(margin_ms if margin_ms is not None else block_ms)}


class LiveLoop:
    def __init__(self, config: LiveConfig, session=None, backend=None):
        self.config = config
        self.session = session
        self.backend = backend
        self.running = False
        self.error: str | None = None
        self.sinks: list[OutputSink] = []
        self.worker: InferenceWorker | None = None
        self.recorder = None
        self._lock = threading.Lock()
        self._in_gain = db_to_gain(config.input_gain_db)
        self._in_gain_target = self._in_gain
        self._in_level = 0.0
        self._in_buf = self._in_tmp = self._in_steps = np.zeros(0, np.float32)  # audio_in's buffers
        self._measured: float | None = None
        self._out_started: set[int] = set()
        self._device_parts: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.running:
            return
        cfg = self.config
        if self.backend is None:
            from realtime.sd_backend import SoundDeviceBackend

            self.backend = SoundDeviceBackend(cfg.input_device, cfg.output_device, cfg.monitor_device,
                                              cfg.hostapi, cfg.sample_rate, blocksize=cfg.blocksize,
                                              duplex=cfg.duplex)
        if self.session is not None and cfg.sample_rate is None:
            self.backend.prefer_rate = self.session.sr  # spares reloading a prepared session
        info = self.backend.resolve()
        rate = int(info["rate_in"])
        if self.session is not None and self.session.sr != rate:
            if cfg.session is None:
                raise DeviceError(f"the session runs at {self.session.sr} Hz, the device at {rate} Hz")
            self.session = None  # prepared for another rate: build one for this device
        if self.session is None:
            self.session = open_session(cfg.session, rate)
        self.session.warm_up()
        # A full garbage collection walks every object alive (the loaded networks: ~290 000, 100-150 ms on a
        # 2-core CPU), holding the interpreter longer than a block, callbacks included. What is alive now lives
        # for the whole show: it leaves the collector's view until the show ends.
        gc.collect()
        gc.freeze()
        self.rate = rate
        self.block = int(self.session.block_size)
        self.session_delay = int(self.session.latency_samples)  # process(): output n is input n - this
        margin_ms = cfg.margin_ms if cfg.margin_ms is not None else 1000.0 * self.block / rate
        self.margin = int(round(margin_ms * rate / 1000.0))
        fade = lambda r: int(FADE_MS * r / 1000.0)  # noqa: E731
        gains = [cfg.output_gain_db, cfg.monitor_gain_db]
        self.sinks = [OutputSink(r, rate, prefill=int(round((self.block + self.margin) * r / rate)), fade=fade(r),
                                 gain_db=gains[min(k, 1)], bypass=cfg.bypass)
                      for k, r in enumerate(info["rates_out"])]
        self.ring = InputRing(4 * rate)
        for s in self.sinks:
            if s.rate == rate:  # same clock rate: bypass reads the dry input in the callback, worker or not
                s.dry_ring, s.dry_offset = self.ring, s.prefill + self.session_delay
        self.error = None
        self._measured = None
        self._out_started.clear()
        self.worker = InferenceWorker(self.session, self.ring, self.sinks, self.block, rate,
                                      dry_delay=self.session_delay, on_error=self._fail)
        self.worker.checks.append(self.backend.check)
        if cfg.record_dir:
            from realtime.recorder import Recorder

            self.recorder = Recorder(cfg.record_dir, rate, self.sinks[0].rate, overwrite=cfg.record_overwrite)
        try:
            self._device_parts = self.backend.open(self)
            # the callbacks are Python: let them have the GIL within 1 ms of asking (default 5 ms, as long
            # as a whole JACK period) while the worker runs Python code
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL_S))
            self.worker.start()
            self.running = True
            self.backend.start()
        except BaseException:
            self._teardown()
            raise

    def stop(self) -> None:
        """Stop streams, worker and recording (idempotent; safe from any thread but the callback)."""
        with self._lock:
            if not self.running and self.worker is None:
                return
            self._teardown()

    def _teardown(self) -> None:
        self.running = False
        gc.unfreeze()
        if self.backend is not None:
            self.backend.close()
        if self.worker is not None:
            self.worker.stop()
        if self.session is not None:
            self.session.close()  # the session's own threads end with the show
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None
        self.worker_last = self.worker
        self.worker = None
        if getattr(self, "_switch", None) is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None

    def _fail(self, msg: str) -> None:
        """A device or stream problem while running: remember it and stop cleanly (from another thread)."""
        self.error = msg
        threading.Thread(target=self.stop, name="comolive-stop", daemon=True).start()

    def internal_latency_samples(self, k: int = 0) -> int:
        """Input -> output `k` delay inside the loop (block + session + margin + resampling), in that
        output's samples (input-rate samples when the rates agree)."""
        s = self.sinks[k]
        return s.prefill + round(self.session_delay * s.rate / self.rate) + s.resample_delay

    # --------------------------------------------------------------- live changes
    def set(self, **changes) -> None:
        """Change settings while running, without restarting the stream (ramps make it click-free)."""
        loop_keys = {"input_gain_db", "output_gain_db", "monitor_gain_db", "bypass"}
        for k in loop_keys & changes.keys():
            setattr(self.config, k, changes[k])
        if "input_gain_db" in changes:
            self._in_gain_target = db_to_gain(changes["input_gain_db"])
        for k, s in enumerate(self.sinks):
            if "bypass" in changes:
                s.mix_target = 1.0 if changes["bypass"] else 0.0
            key = "output_gain_db" if k == 0 else "monitor_gain_db"
            if key in changes:
                s.gain_target = db_to_gain(changes[key])
        rest = {k: v for k, v in changes.items() if k not in loop_keys}
        if rest:
            if self.session is not None:
                self.session.set(**rest)  # thread-safe, checks the values here, applies at the next block
            for k, v in rest.items():
                if hasattr(self.config.session, k):
                    setattr(self.config.session, k, v)

    # ------------------------------------------------------------ audio callbacks
    def audio_in(self, x: np.ndarray, t_adc: float | None) -> None:
        """Device callback: new input frames (mono view, valid only during the call). Allocates nothing and
        takes no lock (tests/test_live.py counts): gains are applied in buffers made once."""
        n = len(x)
        if n > len(self._in_buf):  # the largest callback so far: grow once
            self._in_buf, self._in_tmp = np.zeros(n, np.float32), np.zeros(n, np.float32)
            self._in_steps = np.arange(1, n + 1, dtype=np.float32)
        y, tmp = self._in_buf[:n], self._in_tmp[:n]
        if self._in_gain != self._in_gain_target:
            np.multiply(self._in_steps[:n], (self._in_gain_target - self._in_gain) / n, out=tmp)
            tmp += self._in_gain
            np.multiply(x, tmp, out=y)
            self._in_gain = self._in_gain_target
        else:
            np.multiply(x, self._in_gain, out=y)
        self.ring.write(y)
        self.worker.wake.set()
        if n:
            np.abs(y, out=tmp)
            self._in_level = max(float(tmp.max()), self._in_level * 0.9)
        if self.recorder is not None:
            self.recorder.feed_input(y)

    def audio_out(self, k: int, n: int, t_dac: float | None) -> np.ndarray:
        """Device callback: the next `n` frames for output `k` (0 = main, 1 = monitor)."""
        sink = self.sinks[k]
        if k not in self._out_started:  # separate streams: start this output on the input's timeline
            self._out_started.add(k)
            if k > 0 or self.backend.kind != "file":
                sink.ring.read_pos = max(sink.ring.read_pos, round(self.ring.written * sink.rate / self.rate)
                                         - (n if self.ring.written else 0))
            if k == 0 and self.recorder is not None and sink.ring.read_pos > 0:
                self.recorder.feed_output(np.zeros(sink.ring.read_pos, np.float32))  # output.wav on the timeline
        y = sink.pull(n)
        if k == 0:
            if self.recorder is not None:
                self.recorder.feed_output(y)
        return y

    # ----------------------------------------------------------------- read-outs
    def note_measured_latency(self, ms: float | None) -> None:
        """Record an end-to-end latency measured outside the loop (a loopback probe, e.g. realtime.jack_probe).

        Device timestamps are not trusted for this (PortAudio's JACK host reports times two periods
        apart from the true round trip), so only a real loopback measurement fills `measured_latency_ms`."""
        self._measured = None if ms is None else float(ms)

    def latency_parts(self) -> dict[str, float]:
        if self.session is None or not self.sinks:
            return {}
        parts = {"block": 1000.0 * self.block / self.rate}
        parts.update({str(k): float(v) for k, v in self.session.latency_parts().items()})
        parts["output margin"] = 1000.0 * self.margin / self.rate
        if self.sinks[0].resample_delay:
            parts["output resampling"] = 1000.0 * self.sinks[0].resample_delay / self.sinks[0].rate
        parts.update(self._device_parts)
        return parts

    def stats(self) -> LiveStats:
        w = self.worker or getattr(self, "worker_last", None)
        parts = self.latency_parts()
        st = LiveStats(running=self.running, latency_parts=parts, latency_ms=float(sum(parts.values())),
                       error=self.error, device=str(self.session.device if self.session is not None else "cpu"))
        if self.sinks:
            st.sample_rate = self.rate
            st.block_ms = 1000.0 * self.block / self.rate
            st.dropouts = self.sinks[0].dropouts
            st.monitor_dropouts = sum(s.dropouts for s in self.sinks[1:])
            st.output_level_db = to_db(self.sinks[0].level)
        st.input_level_db = to_db(self._in_level)
        if w is not None:
            st.blocks, st.overruns = w.blocks, w.overruns
            st.failed_blocks, st.last_failure = w.failed_blocks, w.last_failure
            st.compute_ms_p50, st.compute_ms_p90, st.compute_ms_p99 = w.times.percentiles_ms()
            st.input_f0_hz, st.output_f0_hz = w.input_f0, w.output_f0
        sst = self.session.stats if self.session is not None else None  # its own pitch read-out, if it has one
        if sst is not None:
            st.input_f0_hz = sst.input_f0_hz or None
            st.output_f0_hz = sst.output_f0_hz or None
        st.measured_latency_ms = self._measured
        return st
