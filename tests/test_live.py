"""The live loop without a sound card: rings, overruns, live key change, `stream` == offline, device errors.

The loop is what is under test. Where a test needs a session that answers in microseconds (so that
only the loop decides the timing), `DelaySession` is a complete, tiny session: its conversion is a
fixed delay of its input, declared like the real session declares its latency.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from realtime.file_device import FileBackend
from realtime.live import LiveConfig, LiveLoop
from realtime.meters import estimate_f0
from realtime.ring import InputRing, OutputRing
from tests.helpers import harmonic

SR = 48000


class DelaySession:
    """The StreamSession protocol with a pure-delay conversion: output n = gain * input n - delay."""

    device = "cpu"
    stats = None  # no per-block report: the worker estimates pitch itself

    def __init__(self, sample_rate: int = SR, block: int = 2048, delay: int = 300):
        self.sr, self.block_size, self.latency_samples = sample_rate, block, delay
        self.gain = 1.0
        self.reset()

    def latency_parts(self) -> dict[str, float]:
        return {"delay": 1000.0 * self.latency_samples / self.sr}

    def reset(self) -> None:
        self.buf = np.zeros(self.latency_samples, np.float32)

    def warm_up(self) -> None:
        self.reset()

    def close(self) -> None:
        pass

    def set(self, **changes) -> None:
        if "key" in changes:
            self.gain = 2.0 ** (changes["key"] / 12.0)

    def process(self, x: np.ndarray) -> np.ndarray:
        y = np.concatenate([self.buf, x])
        self.buf = y[len(x):]
        return y[:len(x)] * np.float32(self.gain)


class SlowOnce:
    """Wraps a session; its `at`-th process() call first sleeps `seconds` (longer than the output margin)."""

    def __init__(self, inner, at: int, seconds: float):
        self.inner, self.at, self.seconds, self.calls = inner, at, seconds, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def process(self, x):
        self.calls += 1
        if self.calls == self.at:
            time.sleep(self.seconds)
        return self.inner.process(x)


def lag_of(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """The lag (samples) at which y best matches x (y[n] ~ x[n - lag])."""
    best, arg = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        a = y[max(0, lag):len(y) + min(0, lag)]
        b = x[max(0, -lag):len(x) - max(0, lag)]
        c = float(np.dot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12)
        if c > best:
            best, arg = c, lag
    return arg


# --------------------------------------------------------------------------------- rings
def test_output_ring_drops_late_frames_and_keeps_the_timeline():
    r = OutputRing(capacity=100, channels=2, prefill=10)
    assert r.available() == 10
    r.advance(25)  # the device played 25 frames; only 10 were there
    dropped = r.write_at(10, np.ones((20, 2), np.float32))  # frames for positions 10..29 arrive late
    assert dropped == 15 and r.available() == 5  # 25..29 are still ahead of the reader
    assert np.all(r.peek(5) == 1.0)


def test_input_ring_reports_samples_lost_when_the_reader_stalls():
    r = InputRing(capacity=64)
    r.write(np.arange(200, dtype=np.float32))
    start, x, lost = r.read(8)
    assert lost > 0 and start == lost and np.array_equal(x, np.arange(start, start + 8, dtype=np.float32))


# ------------------------------------------------------------------------- loop on a file
def run_loop(session, x, fast, **cfg):
    backend = FileBackend(x, SR, fast=fast)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR, **cfg), session=session, backend=backend)
    loop.start()
    assert backend.done.wait(60)
    loop.stop()
    return backend.result(loop.internal_latency_samples()), loop.stats(), loop


def test_file_loop_output_is_the_session_output_at_the_declared_latency():
    x = harmonic(220.0, 1.5, SR)
    y, st, loop = run_loop(DelaySession(), x, fast=True)
    assert st.dropouts == 0 and st.error is None
    assert np.array_equal(y, x)  # the delay the session declares is exactly the delay removed
    assert st.latency_parts["block"] == pytest.approx(1000 * 2048 / SR)
    assert st.latency_ms == pytest.approx(sum(st.latency_parts.values()))
    assert loop.internal_latency_samples() == 2048 + 2048 + 300  # block + margin (one block) + session


def test_output_device_at_another_rate_is_resampled_in_the_worker_and_declared():
    """Input at 48 kHz, output at 44.1 kHz (two sound cards): the worker resamples, the delay is declared."""
    from models.audio_io import resample

    x = harmonic(220.0, 1.5, SR, vibrato_cents=50.0)
    backend = FileBackend(x, SR, fast=True, out_rate=44100)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR), session=DelaySession(), backend=backend)
    loop.start()
    assert backend.done.wait(60)
    loop.stop()
    st = loop.stats()
    assert st.dropouts == 0 and st.latency_parts["output resampling"] > 0
    y = backend.result(loop.internal_latency_samples())
    ref = resample(x, SR, 44100)
    mid = slice(4410, len(ref) - 4410)
    assert len(y) == len(ref) and abs(lag_of(y[mid], ref[mid], 50)) <= 1  # declared delay rounded to a frame
    assert st.latency_parts["output resampling"] == pytest.approx(1.5, abs=0.05)


def test_overrun_is_a_counted_crossfaded_dropout_and_the_latency_stays():
    """A block that takes far longer than the output margin: the stream goes on, one dropout is counted,
    the gap fades out and in (no jump larger than the tone's own steepest step) and afterwards the
    output is the input at exactly the declared latency again."""
    x = harmonic(220.0, 4.0, SR, n_harm=1, amp=0.5)
    block = 4800  # 100 ms blocks, 200 ms margin: generous against scheduling noise on a busy machine
    session = SlowOnce(DelaySession(block=block, delay=300), at=12, seconds=0.8)
    y, st, loop = run_loop(session, x, fast=False, margin_ms=200.0)
    assert st.error is None and session.calls > 12 + 10  # it went on converting after the stall
    assert st.dropouts >= 1 and st.overruns >= 1
    ref = x  # aligned by the declared latency
    silent = np.abs(y) < 1e-6
    gap = np.nonzero(silent[SR // 2:])[0]
    assert len(gap) > 0.3 * SR  # the sleep really left a hole
    # no click: the output never steps more than the tone itself does (fades are gentler than the sine)
    assert np.max(np.abs(np.diff(y))) <= 1.05 * np.max(np.abs(np.diff(x)))
    # after the hole, the conversion is back at exactly the declared latency
    tail = slice(len(x) - SR, len(x))
    assert lag_of(y[tail], ref[tail], 400) == 0
    assert np.mean(np.abs(y[tail] - ref[tail]) < 1e-6) > 0.5


def test_live_gain_and_bypass_changes_ramp_without_clicks():
    x = harmonic(220.0, 2.0, SR, n_harm=1, amp=0.5)
    session = DelaySession(delay=300)
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR), session=session, backend=backend)
    loop.start()
    while loop.stats().blocks < 10:
        time.sleep(0.001)
    loop.set(output_gain_db=-6.0, bypass=True)
    assert backend.done.wait(60)
    loop.stop()
    y = backend.result(loop.internal_latency_samples())
    assert loop.stats().dropouts == 0
    assert np.max(np.abs(np.diff(y))) <= 1.05 * np.max(np.abs(np.diff(x)))
    # the end is the dry input (bypass) at -6 dB, delayed like the converted signal
    ref = 10 ** (-6 / 20) * x
    end = slice(len(x) - SR // 4, len(x))
    assert np.max(np.abs(y[end] - ref[end])) < 2e-3


def test_a_running_show_keeps_what_was_loaded_out_of_the_garbage_collector():
    """A full collection over the loaded networks takes longer than a block: objects alive at start are frozen
    for the show (gc.freeze) and handed back when it stops."""
    import gc

    x = harmonic(220.0, 0.5, SR)
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR), session=DelaySession(), backend=backend)
    loop.start()
    try:
        assert gc.get_freeze_count() > 1000
    finally:
        loop.stop()
    assert gc.get_freeze_count() == 0


# ------------------------------------------------------------------- with the real session
@pytest.fixture(scope="module")
def session_cfg():
    from engine.session_config import SessionConfig

    return SessionConfig(sample_rate=SR, block_ms=80.0)


def test_no_thread_outlives_a_show_with_the_real_session(session_cfg):
    import threading

    before = {t.ident for t in threading.enumerate()}
    x = harmonic(196.0, 1.0, SR)
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=session_cfg, sample_rate=SR), backend=backend)
    st = _run_until_done(loop, backend, seconds=120)
    assert st.error is None and st.blocks > 0
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []


def test_stream_command_equals_the_offline_run(tmp_path, session_cfg):
    import soundfile as sf

    import main
    from engine.stream_session import run_offline

    x = harmonic(196.0, 1.5, SR, vibrato_cents=30.0)
    src, out = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(str(src), x, SR, subtype="FLOAT")
    assert main.main(["stream", str(src), str(out), "--fast", "--block-ms", "80"]) == 0
    y, sr = sf.read(str(out), dtype="float32")
    ref = run_offline(session_cfg, x, SR)
    assert sr == SR and len(y) == len(x)
    assert np.sum(ref ** 2) > 1e-3  # the conversion is not silence
    err_db = 10 * np.log10(np.sum((y - ref) ** 2) / np.sum(ref ** 2) + 1e-30)
    assert err_db <= -40.0
    # content and pitch one after the other: the same samples
    one = tmp_path / "one.wav"
    assert main.main(["stream", str(src), str(one), "--fast", "--block-ms", "80", "--no-content-thread"]) == 0
    assert np.array_equal(sf.read(str(one), dtype="float32")[0], y)


def test_live_key_change_shifts_the_output_pitch(session_cfg):
    from realtime.live import open_session

    session = open_session(session_cfg, SR)
    x = harmonic(200.0, 3.6, SR, amp=0.3)
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=session_cfg, sample_rate=SR), session=session, backend=backend)
    loop.start()
    change_at = int(1.4 * SR) // session.block_size
    while loop.stats().blocks < change_at and not backend.done.is_set():
        time.sleep(0.001)
    blocks_then = loop.stats().blocks
    loop.set(key=5.0)
    assert backend.done.wait(120)
    loop.stop()
    assert blocks_then * session.block_size < 2.0 * SR  # the change happened where we meant it
    y = backend.result(loop.internal_latency_samples())

    def f0(seg):
        hop = SR // 20
        vals = [estimate_f0(seg[i:i + hop], SR) for i in range(0, len(seg) - hop, hop)]
        vals = [v for v in vals if v]
        assert len(vals) > 5
        return float(np.median(vals))

    before = f0(y[int(0.4 * SR):int(1.3 * SR)])
    after = f0(y[int(2.4 * SR):int(3.5 * SR)])
    shift = 12 * np.log2(after / before)
    assert abs(shift - 5.0) < 0.3, (before, after, shift)


# --------------------------------------------------------------------------- device errors
def test_unknown_device_is_a_clear_device_error():
    from realtime.devices import DeviceError, resolve

    with pytest.raises(DeviceError, match="no input device matches 'nosuch'"):
        resolve("nosuch", "input")
    with pytest.raises(DeviceError, match="no audio device number 999"):
        resolve(999, "output")


def test_live_command_with_unknown_input_prints_error_and_exits_2(capsys):
    import main

    assert main.main(["live", "--input", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nosuch" in err


# ------------------------------------------------------------------ failures and tuning
class FailsAt(DelaySession):
    """Its process() raises at the calls in `at` (1-based)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = set(at), 0

    def process(self, x):
        self.calls += 1
        if self.calls in self.at:
            raise RuntimeError("model exploded")
        return super().process(x)


def _run_until_done(loop, backend, seconds=30):
    loop.start()
    deadline = time.monotonic() + seconds
    while loop.running and not backend.done.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.stop()
    return loop.stats()


def test_a_failing_block_plays_as_a_dropout_and_the_show_goes_on():
    x = harmonic(220.0, 2.0, SR)
    backend = FileBackend(x, SR, fast=True)
    session = FailsAt({5})
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR), session=session, backend=backend)
    st = _run_until_done(loop, backend)
    assert st.error is None and backend.done.is_set()
    assert st.failed_blocks == 1 and "model exploded" in st.last_failure
    assert st.dropouts >= 1
    assert session.calls == st.blocks + 1 and st.blocks > len(x) // session.block_size - 2  # the rest converted
    y = backend.result(loop.internal_latency_samples())
    fade = int(0.005 * SR)  # the failed block: its first 5 ms fade out, then silence
    assert np.abs(y[4 * session.block_size + fade:5 * session.block_size]).max() == 0.0
    after = slice(6 * session.block_size, len(y))  # the next block fades in; the timeline is unchanged
    assert np.abs(y[after] - x[after]).max() < 1e-5


def test_blocks_failing_again_and_again_stop_the_show_with_one_line():
    from realtime.worker import MAX_FAILED_IN_ROW

    x = harmonic(220.0, 2.0, SR)
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR),
                    session=FailsAt(range(3, 3 + MAX_FAILED_IN_ROW)), backend=backend)
    st = _run_until_done(loop, backend)
    assert not loop.running and st.failed_blocks == MAX_FAILED_IN_ROW
    assert st.error == f"inference failed: {MAX_FAILED_IN_ROW} blocks in a row failed (last: RuntimeError: model exploded)"
    loop.stop()  # idempotent after the loop stopped itself


def test_schedule_replay_counts_one_dropout_per_late_stretch():
    from realtime.tune import schedule_dropouts

    block = 0.05
    assert schedule_dropouts(np.full(100, 0.03), block, block) == 0
    spike = np.full(100, 0.03)
    spike[40] = 0.2  # one slow block makes it and the next few late, then the worker catches up
    assert schedule_dropouts(spike, block, block) == 1
    assert schedule_dropouts(np.full(100, 0.06), block, block) == 1  # falls behind for good: one long gap


def test_tune_reports_each_block_size_and_the_budget_of_its_proposal(session_cfg):
    from realtime.tune import tune

    seen = []
    res = tune(session_cfg, seconds=1.5, candidates_ms=(180.0,), progress=lambda f, what: seen.append(f))
    assert res.device == "cpu" and len(res.rows) == 1 and seen[-1] == 1.0
    row = res.rows[0]
    assert row.block_ms == pytest.approx(180.0) and row.blocks >= 3
    assert row.compute_ms_p50 <= row.compute_ms_p90 <= row.compute_ms_p99
    assert row.ok == (row.ratio_p99 <= 0.7 and row.dropouts == 0)
    if row.ok:  # whether this machine passes is a benchmark figure, not a test outcome
        assert res.block_ms == pytest.approx(180.0)
        assert {"block", "output margin"} <= set(res.latency_parts)
    else:
        assert res.block_ms is None and "no block size" in res.table()


def test_bypass_keeps_playing_the_dry_input_while_the_worker_is_stalled():
    """Bypass is the performer's safety net: the callback reads the dry input itself (same latency), so a
    stalled worker leaves no gap in it."""
    x = harmonic(220.0, 3.0, SR, n_harm=1, amp=0.5)
    session = SlowOnce(DelaySession(block=4800, delay=300), at=8, seconds=0.8)
    y, st, loop = run_loop(session, x, fast=False, margin_ms=200.0, bypass=True)
    assert st.error is None and st.dropouts >= 1  # the converted path did drop out...
    assert np.max(np.abs(y - x)) < 1e-6  # ...and the dry input played on at exactly the declared latency


def test_the_audio_callbacks_allocate_nothing_and_take_no_lock():
    """Steady playing, a dropout and its recovery, gain and bypass ramps: tracemalloc sees no block-sized
    allocation in audio_in/audio_out. Callbacks of 4096 frames, where one float32 array of the period is
    16 KiB; what remains (< 8 KiB) is Python's own small objects (array views), the same for any period."""
    import tracemalloc

    from realtime.worker import Wakeup

    x = harmonic(220.0, 1.0, SR)
    session = DelaySession()
    backend = FileBackend(x, SR, fast=True)
    loop = LiveLoop(LiveConfig(session=None, sample_rate=SR), session=session, backend=backend)
    loop.start()
    try:
        backend.done.wait(30)
        assert isinstance(loop.worker.wake, Wakeup)  # a pipe write, not an Event (which takes a lock)
        loop.worker.stop()  # the callbacks alone from here on: no other thread allocates while they run
        sink, n = loop.sinks[0], 4096
        block = x[:n].copy()

        def feed(blocks):
            for _ in range(blocks):
                sink.push(block, block)

        def peak_of(calls, before=lambda k: None):
            worst = 0
            for k in range(calls):
                before(k)
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                loop.audio_in(block, None)
                loop.audio_out(0, n, None)
                worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
            return worst

        feed(8)
        loop.audio_in(block, None), loop.audio_out(0, n, None)  # buffers sized once, before counting
        tracemalloc.start()
        try:
            steady = peak_of(20)
            loop.set(input_gain_db=-6.0, output_gain_db=-3.0, bypass=True)
            ramps = peak_of(5)
            loop.set(bypass=False)
            sink.ring.read_pos = sink.ring.written - 10  # the worker is late: an overrun, its fade-out ...
            dropout = peak_of(4)
            feed(10)  # ... and the fade-in when blocks arrive again (the first ones arrive too late)
            recovery = peak_of(4)
        finally:
            tracemalloc.stop()
        assert sink.dropouts >= 1 and sink.playing
        assert max(steady, ramps, dropout, recovery) < 8192, (steady, ramps, dropout, recovery)
    finally:
        loop.stop()


def test_the_soak_summary_counts_faults_drift_memory_and_recoveries():
    from realtime.soak import summarise

    def reading(t, blocks, drop, failed, offset, rss, threads, slow=0, err=None):
        return {"t": t, "blocks": blocks, "dropouts": drop, "late_blocks": 0, "failed_blocks": failed,
                "timeline_offset": offset, "latency_ms": 250.0, "rss_mb": rss, "threads": threads,
                "injected": {"slow": slow, "raise": failed}, "compute_ms_p99": 20.0}

    first = {"started_s": 0.0, "rc": 2, "readings": [reading(t, 12 * t, 0, 0, -9000, 900.0, 3) for t in range(1, 4)]
             + [reading(40, 480, 2, 1, -9256, 903.0, 3, slow=1), {"error": "gone", "stopped_at": 101.5}]}
    second = {"started_s": 60.0, "rc": 0, "readings": [reading(t, 12 * t, 0, 0, -9000, 901.0, 3) for t in range(1, 6)]}
    rep = summarise([first, second], [{"noticed_s": 1.5, "child_exit_s": 3.2}], 2.0, True)
    a, b = rep["runs"]
    assert (a["dropouts"], a["failed_blocks"], a["injected_slow"], a["timeline_drift_samples"]) == (2, 1, 1, 256)
    assert (a["rss_start_mb"], a["rss_end_mb"], a["threads_start"], a["threads_end"]) == (900.0, 903.0, 3, 3)
    assert b["timeline_drift_samples"] == 0 and rep["recoveries"] == 1 and rep["device_loss_noticed_s"] == [1.5]
