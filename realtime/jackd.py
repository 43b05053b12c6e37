"""A private JACK server with the dummy driver: a real audio graph without hardware.

    with JackServer(rate=48000, period=256) as jack_srv:   # jackd -d dummy -r 48000 -p 256
        ... sounddevice now lists the JACK host API; JACK-Client connects to it ...

Each server gets its own name (JACK_DEFAULT_SERVER is set for this process), so parallel test runs do
not share a graph. The two traps handled here: PortAudio only sees JACK if jackd runs before
PortAudio initialises (we re-initialise it after start), and killing jackd while PortAudio still
holds a JACK client aborts the interpreter (we terminate PortAudio before stopping jackd).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections import deque

from realtime.devices import DeviceError


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 256, name: str | None = None, timeout_s: float = 10.0):
        self.rate, self.period = int(rate), int(period)
        self.name = name or f"comolive{os.getpid()}"
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self._saved_env: str | None = None

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.period / self.rate

    def start(self) -> "JackServer":
        exe = shutil.which("jackd")
        if exe is None:
            raise DeviceError("jackd is not installed (Debian package jackd2; scripts/setup.sh installs it)")
        self._saved_env = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ.setdefault("JACK_NO_AUDIO_RESERVATION", "1")
        cmd = [exe, "-n", self.name, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]
        self.proc = subprocess.Popen(cmd,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        # jackd logs every xrun; an unread pipe fills (64 KiB) and jackd blocks: the graph stalls and SIGTERM
        # no longer stops it. A reader keeps the pipe empty and the last lines for error messages.
        self.log: deque[str] = deque(maxlen=50)
        threading.Thread(target=self._drain, args=(self.proc.stdout,), name="jackd-log", daemon=True).start()
        self._wait_ready()
        from realtime.devices import refresh

        refresh()  # PortAudio re-scans and now sees the JACK host API
        return self

    def _wait_ready(self) -> None:
        import jack

        deadline = time.monotonic() + self.timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.1)  # let the reader collect the last words
                out = " | ".join(self.log)
                raise DeviceError(f"jackd exited at start (status {self.proc.returncode}): {out[-300:]}")
            try:
                c = jack.Client("comolive_ready", no_start_server=True, servername=self.name)
                c.close()
                return
            except jack.JackError as e:
                last = e
                time.sleep(0.1)
        self.stop()
        raise DeviceError(f"jackd did not come up within {self.timeout_s:g} s ({last})")

    def _drain(self, stream) -> None:
        try:
            for line in iter(stream.readline, b""):
                self.log.append(line.decode(errors="replace").rstrip())
        except (OSError, ValueError):  # closed when the server stops
            pass

    def stop(self) -> None:
        """Terminate PortAudio's use of JACK first, then jackd (idempotent)."""
        if self.proc is None:
            return
        from realtime.devices import is_stuck

        try:
            import sounddevice as sd

            if not is_stuck():  # else PortAudio is blocked on a client of this server already gone
                sd._terminate()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None
        if self._saved_env is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._saved_env
        try:
            import sounddevice as sd

            if not is_stuck():
                sd._initialize()  # PortAudio back without JACK
        except Exception:
            pass

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
