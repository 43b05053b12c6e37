"""Shared pytest set-up."""
import os

# Qt without a screen (DESIGN §6): the control-panel tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server with the dummy driver (DESIGN §6): real PortAudio/JACK devices without hardware.
    PortAudio is re-initialised after it starts and terminated before it stops (realtime/jackd.py)."""
    import threading

    from realtime.jackd import JackServer

    with JackServer(rate=48000, period=256) as server:
        # jackd logs every xrun to its stdout pipe; unread, the pipe fills (64 KiB) and jackd blocks: the graph
        # stalls mid-test and SIGTERM no longer stops it (it is killed and its server slot leaks).
        threading.Thread(target=_drain, args=(server.proc.stdout,), name="jackd-log", daemon=True).start()
        yield server


def _drain(stream) -> None:
    try:
        while stream.read1(4096):
            pass
    except (OSError, ValueError):  # closed when the server stops
        pass
