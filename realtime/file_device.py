"""A wav file as the audio device: the live loop, unchanged, with a file in and a file out.

A driver thread plays the role of a duplex sound card: every `period` frames it hands the input to
the loop's `audio_in` and takes `audio_out`, at real-time pace or, in fast mode, as soon as the
worker has produced what the next period needs (then no dropout can happen and the result is
deterministic). After the file, the driver feeds silence until the loop's latency has passed, so the
output covers the whole input; `result()` returns it with the loop latency removed.
"""
from __future__ import annotations

import threading
import time

import numpy as np


class FileBackend:
    kind = "file"

    def __init__(self, wav: np.ndarray, rate: int, fast: bool = False, period: int = 256,
                 out_rate: int | None = None):
        self.wav = np.asarray(wav, np.float32)
        self.rate_in = int(rate)
        self.rates_out = [int(out_rate or rate)]  # another rate: the loop resamples, as for a second sound card
        self.fast = fast
        self.period = int(period)
        self.played: list[np.ndarray] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self.error: str | None = None
        self.prefer_rate: int | None = None  # the file's rate is the device's: nothing to prefer
        self._thread: threading.Thread | None = None

    def resolve(self) -> dict:
        return {"input": None, "outputs": [None], "rate_in": self.rate_in, "rates_out": self.rates_out}

    def open(self, loop) -> dict[str, float]:
        self.loop = loop
        return {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="comolive-file-device", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=30)

    def check(self) -> str | None:
        return self.error

    def _run(self) -> None:
        loop, n = self.loop, self.period
        ro = self.rates_out[0]
        tail = int(loop.internal_latency_samples() * self.rate_in / ro) + 2 * n
        total = len(self.wav) + tail
        src = np.concatenate([self.wav, np.zeros(tail, np.float32)])
        t0 = time.monotonic()
        try:
            for i in range(0, total - total % n + (n if total % n else 0), n):
                if self._stop.is_set():
                    return
                x = src[i:i + n]
                if len(x) < n:
                    x = np.pad(x, (0, n - len(x)))
                m = (i + n) * ro // self.rate_in - i * ro // self.rate_in  # output frames for this period
                if self.fast:
                    loop.audio_in(x, None)
                    sink = loop.sinks[0]
                    while sink.ring.available() < m and not self._stop.is_set():
                        if loop.worker.idle() and loop.worker.ring.available() < loop.worker.block \
                                and sink.ring.available() < m:
                            break  # nothing more can come: the callback will count a dropout
                        time.sleep(0.0005)
                else:
                    wait = t0 + i / self.rate_in - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    loop.audio_in(x, None)
                self.played.append(loop.audio_out(0, m, None).copy())  # the loop reuses its buffer
        except Exception as e:
            self.error = f"file device failed: {type(e).__name__}: {e}"
        finally:
            self.done.set()

    def result(self, latency: int) -> np.ndarray:
        """What was played, shifted back by `latency` output samples and cut to the input's duration."""
        n = len(self.wav) * self.rates_out[0] // self.rate_in
        y = np.concatenate(self.played) if self.played else np.zeros(0, np.float32)
        y = y[latency:latency + n]
        return np.pad(y, (0, n - len(y))).astype(np.float32)


def stream_file(wav: np.ndarray, sr: int, session_cfg, fast: bool, session=None, period: int = 256):
    """The live loop with a recording as its device (`main.py stream`, `bench live`) -> (output aligned to the
    input, final LiveStats); a loop that fails raises DeviceError with its message."""
    from realtime.devices import DeviceError
    from realtime.live import LiveConfig, LiveLoop

    backend = FileBackend(wav, sr, fast=fast, period=period)
    loop = LiveLoop(LiveConfig(session=session_cfg, sample_rate=sr), session=session, backend=backend)
    loop.start()
    try:
        while not backend.done.wait(0.2):
            if not loop.running:
                break
    finally:
        loop.stop()
    st = loop.stats()
    if st.error or backend.error:
        raise DeviceError(st.error or backend.error)
    return backend.result(loop.internal_latency_samples()), st
