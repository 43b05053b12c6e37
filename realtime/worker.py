"""The inference worker: whole blocks from the input ring -> session.process() -> the output rings.

It is the only thread that runs the session (live changes go through the session's own
thread-safe `set`, applied at its next block), runs with one torch thread (README, "Live"), times
every block, and keeps the dry signal delayed by the session's own delay so that bypass lines up
with the converted signal.
"""
from __future__ import annotations

import os
import select
import sys
import threading
import time
from typing import Callable

import numpy as np

from realtime.meters import ComputeTimes, estimate_f0, to_db
from realtime.output import OutputSink
from realtime.ring import InputRing

MAX_FAILED_IN_ROW = 8  # blocks in a row whose conversion failed before the show stops


class RepeatedFailure(RuntimeError):
    """Blocks kept failing: the show stops (its message names the count and the last error)."""


class DelayLine:
    """A fixed delay of `n` samples across blocks."""

    def __init__(self, n: int):
        self.buf = np.zeros(max(0, int(n)), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(self.buf) == 0:
            return x
        y = np.concatenate([self.buf, x])
        self.buf = y[len(x):]
        return y[:len(x)]


class Wakeup:
    """The callback's signal to the worker: a byte written to a non-blocking pipe. Unlike threading.Event,
    setting it takes no lock and allocates nothing, so the audio callback can never wait on the worker."""

    _BYTE = b"\x01"

    def __init__(self):
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)

    def set(self) -> None:
        try:
            os.write(self._w, self._BYTE)
        except (BlockingIOError, OSError):  # full (the worker has plenty to do) or closed: nothing to add
            pass

    def wait(self, timeout: float) -> None:
        """Until set (or timeout), then forget every signal so far."""
        try:
            if select.select([self._r], [], [], timeout)[0]:
                os.read(self._r, 65536)
        except (OSError, ValueError):  # closed under us: the worker is stopping
            time.sleep(timeout)

    def close(self) -> None:
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass


class InferenceWorker:
    def __init__(self, session, ring: InputRing, sinks: list[OutputSink], block: int, rate: int,
                 dry_delay: int, on_error: Callable[[str], None], max_backlog: int | None = None):
        self.session = session
        self.ring, self.sinks = ring, sinks
        self.block, self.rate = int(block), int(rate)
        self.dry = DelayLine(dry_delay)
        self.on_error = on_error
        self.max_backlog = max_backlog or max(4 * self.block, self.rate // 2)
        self.wake = Wakeup()
        self.times = ComputeTimes()
        self.blocks = 0
        self.overruns = 0  # blocks whose output came too late for (part of) their slot, or were skipped
        self.lost_input = 0
        self.failed_blocks = 0  # blocks whose conversion raised: each plays as a dropout
        self.failed_in_row = 0
        self.last_failure: str | None = None
        self.input_f0: float | None = None
        self.output_f0: float | None = None
        self.output_level_db = -120.0
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._own_f0 = session.stats is None  # a session that reports no pitch: the worker estimates it
        self.checks: list[Callable[[], str | None]] = []  # stream watchdogs, polled between blocks

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="comolive-inference", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.wake.close()

    def idle(self) -> bool:
        """True while the worker waits for input (used by the file device's fast mode)."""
        return self._idle.is_set()

    def _run(self) -> None:
        torch = sys.modules.get("torch")  # a torch session imported it already; never import it in here
        if torch is not None:
            torch.set_num_threads(1)
        last_check = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() - last_check > 0.25:
                    last_check = time.monotonic()
                    for check in self.checks:
                        msg = check()
                        if msg:
                            self.on_error(msg)
                            return
                if self.ring.available() < self.block:
                    self._idle.set()
                    self.wake.wait(0.05)
                    continue
                self._idle.clear()
                self._step()
        except Exception as e:  # a bug, or blocks failing again and again: report it, stop the loop cleanly
            self.on_error(f"inference failed: {e}" if isinstance(e, RepeatedFailure)
                          else f"inference failed: {type(e).__name__}: {e}")
        finally:
            self._idle.set()

    def _step(self) -> None:
        backlog = self.ring.available()
        if backlog > self.max_backlog:  # far behind: skip whole blocks, keep the newest one
            n = (backlog - self.block) // self.block * self.block
            self.ring.skip(n)
            self._skip(n)
        start, x, lost = self.ring.read(self.block)
        if lost:
            self._skip(lost)
        t0 = time.perf_counter()
        try:
            y = np.asarray(self.session.process(x), np.float32).reshape(-1)
            st = self.session.stats
            failure = st.failed if st is not None else None  # a block the session failed and played as silence
        except Exception as e:  # noqa: BLE001 - counted; the show stops only when it keeps failing
            y, failure = None, f"{type(e).__name__}: {e}"
            self.session.reset()  # its state is unknown now: the next block starts afresh
        self.times.add(time.perf_counter() - t0)
        if failure:
            self._failed(x, failure)
            return
        self.failed_in_row = 0
        if len(y) != len(x):
            raise RuntimeError(f"session returned {len(y)} samples for a block of {len(x)}")
        dry = self.dry(x)
        late = 0
        for s in self.sinks:
            before = s.late_frames
            s.push(y, dry)
            late = max(late, s.late_frames - before)
        if late:
            self.overruns += 1
        self.blocks += 1
        if self._own_f0:
            self.input_f0 = estimate_f0(x, self.rate)
            self.output_f0 = estimate_f0(y, self.rate)
        self.output_level_db = to_db(float(np.max(np.abs(y))) if len(y) else 0.0)

    def _failed(self, x: np.ndarray, failure: str) -> None:
        """A block that could not be converted: a gap in the output (a faded dropout), the timeline kept."""
        self.failed_blocks += 1
        self.failed_in_row += 1
        self.last_failure = failure
        self.dry(x)
        for s in self.sinks:
            s.gap(len(x))
        if self.failed_in_row >= MAX_FAILED_IN_ROW:
            raise RepeatedFailure(f"{self.failed_in_row} blocks in a row failed (last: {failure})")

    def _skip(self, n: int) -> None:
        self.overruns += max(1, n // self.block)
        self.lost_input += n
        for s in self.sinks:
            s.skip(n)
