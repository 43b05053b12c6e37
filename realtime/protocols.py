"""What the live loop needs from a session and from an audio backend, written down.

`engine.stream_session.StreamSession` is the session; the tests' pure-delay session and the soak's faulty
wrapper offer the same face. `SoundDeviceBackend` (PortAudio) and `FileBackend` (a recording as the device)
are the backends. The loop calls nothing else on them.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    sr: int                 # the rate process() takes and gives
    block_size: int         # samples per process() call that the declared latency assumes
    latency_samples: int    # output n of process() is the conversion of input n - latency_samples
    device: str             # where it computes ("cpu", "cuda:0")
    stats: object | None    # the last block's report (engine.session_config.SessionStats), or None

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def set(self, **changes) -> None: ...  # live changes, checked in the caller's thread

    def latency_parts(self) -> dict[str, float]: ...

    def warm_up(self) -> None: ...  # before a show: pay for lazy set-up, then reset

    def reset(self) -> None: ...

    def close(self) -> None: ...  # end its own threads (it stays usable)


class Backend(Protocol):
    prefer_rate: int | None  # the session's rate, used when no rate is set and the input device accepts it

    def resolve(self) -> dict: ...  # {"input", "outputs", "rate_in", "rates_out"}

    def open(self, loop) -> dict[str, float]: ...  # streams wired to loop.audio_in/audio_out; device latency parts

    def start(self) -> None: ...

    def close(self) -> None: ...  # bounded: never hangs on a dead device

    def check(self) -> str | None: ...  # a dead or silent device, in words; None while it is fine
