"""Shared pytest set-up."""
import atexit
import os
import shutil
import tempfile

# Qt without a screen: the control-panel tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Adapted decoders are stored between runs (training/adaptation_cache.py): the tests' go to a folder of their own.
os.environ["COMOLIVE_CACHE_DIR"] = tempfile.mkdtemp(prefix="comolive-test-cache-")
atexit.register(shutil.rmtree, os.environ["COMOLIVE_CACHE_DIR"], True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server with the dummy driver: real PortAudio/JACK devices without hardware.
    PortAudio is re-initialised after it starts and terminated before it stops, and jackd's log pipe is kept
    drained (realtime/jackd.py)."""
    from realtime.jackd import JackServer

    with JackServer(rate=48000, period=256) as server:
        yield server
