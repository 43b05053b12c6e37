"""Measuring the true end-to-end latency of the running loop on a JACK graph.

A JACK client injects a test signal into the engine's input ports and records the engine's output
ports in the same process cycle, so a captured sample and an injected one share a frame counter.
The signal is a train of voiced harmonic tone bursts (a sung vowel is what the model converts, so
its output has a clear onset at each burst); the latency is the offset of each burst's onset in the
recording from its onset in the signal (both taken at the same fraction of their own peak level).
Gaps inside a burst (the envelope falling to silence while the input is sustained) count as dropouts
seen from outside the engine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.devices import DeviceError


def tone_bursts(rate: int, seconds: float, f0: float = 220.0, on_s: float = 0.4, period_s: float = 1.0,
                amp: float = 0.3, attack_s: float = 0.003, n_harm: int = 12,
                lead_s: float = 0.5) -> tuple[np.ndarray, list[int]]:
    """Harmonic vowel-like bursts (f0, 1/k harmonics) -> (signal, onset sample of each burst)."""
    n = int(seconds * rate)
    x = np.zeros(n, np.float32)
    on = int(on_s * rate)
    t = np.arange(on) / rate
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, n_harm + 1))
    tone = tone / np.max(np.abs(tone)) * amp
    env = np.ones(on)
    a = max(1, int(attack_s * rate))
    env[:a] = np.sin(np.linspace(0, np.pi / 2, a)) ** 2
    env[-a:] = env[:a][::-1]
    burst = (tone * env).astype(np.float32)
    onsets = []
    start = int(lead_s * rate)
    while start + on <= n:
        x[start:start + on] = burst
        onsets.append(start)
        start += int(period_s * rate)
    return x, onsets


def envelope(x: np.ndarray, win: int) -> np.ndarray:
    """Running peak of |x| over `win` samples centred on each sample."""
    from scipy.ndimage import maximum_filter1d

    return maximum_filter1d(np.abs(np.asarray(x, np.float32)), size=max(1, win), mode="constant")


def onset_after(env: np.ndarray, start: int, stop: int, level: float) -> int | None:
    idx = np.nonzero(env[start:stop] >= level)[0]
    return int(start + idx[0]) if len(idx) else None


@dataclass
class ProbeResult:
    rate: int
    period: int
    latencies_ms: list[float] = field(default_factory=list)
    missing_bursts: int = 0
    gaps: int = 0  # dropouts seen in the recording: silence inside sustained bursts

    @property
    def latency_ms(self) -> float | None:
        return float(np.median(self.latencies_ms)) if self.latencies_ms else None

    @property
    def spread_ms(self) -> float:
        return float(np.ptp(self.latencies_ms)) if self.latencies_ms else 0.0


def measure(injected: np.ndarray, captured: np.ndarray, onsets: list[int], rate: int, on_s: float,
            max_latency_s: float = 1.0, level: float = 0.25) -> tuple[list[float], int, int]:
    """Burst-onset latencies (ms), bursts with no output, and gaps inside bursts."""
    win = max(1, int(0.004 * rate))  # longer than a period of the lowest partial
    ei, ec = envelope(injected, win), envelope(captured, win)
    ref_i = float(np.median([ei[o:o + int(on_s * rate)].max() for o in onsets]))
    lat, missing, gaps = [], 0, 0
    on = int(on_s * rate)
    for o in onsets:
        a = onset_after(ei, max(0, o - win), o + on, level * ref_i)
        if a is None:
            continue
        seg = ec[a:min(len(ec), a + int(max_latency_s * rate) + on)]
        if len(seg) < on:
            continue  # the recording ended before this burst could come out
        peak = float(seg.max())
        if peak < 1e-3:
            missing += 1
            continue
        b = onset_after(ec, a, a + len(seg), level * peak)
        lat.append(1000.0 * (b - a) / rate)
        body = ec[b + int(0.05 * rate):b + on - int(0.05 * rate)]  # sustained part of the output burst
        if len(body) and body.min() < 0.02 * peak:
            gaps += 1
    return lat, missing, gaps


class JackProbe:
    """Injects `signal` into the engine's input ports and records its first output port, cycle-locked.

    Run it in a process of its own (`capture`): libjack stops a client's process thread with
    pthread_cancel when the client is deactivated or closed, and a thread cancelled while it waits for
    Python's GIL (likely while the engine's worker keeps the GIL busy) leaves the GIL locked forever.
    The probe process never deactivates: it saves what it recorded and exits, and jackd drops the client.
    """

    def __init__(self, signal: np.ndarray, servername: str | None = None, name: str = "comolive_probe"):
        import jack

        try:
            self.client = jack.Client(name, no_start_server=True, servername=servername)
        except jack.JackError as e:
            raise DeviceError(f"cannot reach the JACK server ({e})") from None
        self.rate = int(self.client.samplerate)
        self.period = int(self.client.blocksize)
        self.signal = np.asarray(signal, np.float32)
        self.captured = np.zeros(len(self.signal), np.float32)
        self.pos = 0
        self.done = threading.Event()
        self.out = self.client.outports.register("out")
        self.inp = self.client.inports.register("in")
        self.client.set_process_callback(self._process)

    def _process(self, frames: int) -> None:
        i = self.pos
        out = self.out.get_array()
        inp = self.inp.get_array()
        k = max(0, min(frames, len(self.signal) - i))
        out[:k] = self.signal[i:i + k]
        out[k:] = 0.0
        self.captured[i:i + k] = inp[:k]
        self.pos = i + frames
        if self.pos >= len(self.signal):
            self.done.set()

    def engine_ports(self) -> tuple[list[str], list[str]]:
        """The engine's (PortAudio's) input and output ports: every audio port not of system or the probe."""
        me = self.client.name
        ins = [p.name for p in self.client.get_ports(is_audio=True, is_input=True)
               if not p.name.startswith(("system:", me + ":"))]
        outs = [p.name for p in self.client.get_ports(is_audio=True, is_output=True)
                if not p.name.startswith(("system:", me + ":"))]
        return ins, outs

    def run(self, timeout_s: float | None = None) -> np.ndarray:
        """Connect to the engine, play the whole signal, return what came back (the client stays active)."""
        ins, outs = self.engine_ports()
        if not ins or not outs:
            raise DeviceError(f"no engine ports on the JACK graph (inputs {ins}, outputs {outs})")
        self.client.activate()
        for p in ins:
            for q in self.client.get_all_connections(p):  # the engine hears the probe only
                self.client.disconnect(q, p)
            self.client.connect(self.out, p)
        self.client.connect(outs[0], self.inp)
        wait = timeout_s if timeout_s is not None else 2.0 * len(self.signal) / self.rate + 10.0
        if not self.done.wait(wait):
            raise DeviceError("the JACK probe timed out: is the JACK server running?")
        return self.captured.copy()


def _probe_process(argv: list[str]) -> int:
    """`python -m realtime.jack_probe SERVER SIGNAL.npy OUT.npz TIMEOUT_S`: play, record, save, exit without
    deactivating."""
    server, sig_path, out_path, timeout_s = argv
    try:
        probe = JackProbe(np.load(sig_path), servername=server or None)
        y = probe.run(float(timeout_s))
        np.savez(out_path, captured=y, rate=probe.rate, period=probe.period)
        code = 0
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no jack_deactivate/jack_client_close in a process that runs Python callbacks


def capture(signal: np.ndarray, servername: str | None = None,
            timeout_s: float | None = None) -> tuple[np.ndarray, int, int]:
    """Play `signal` into the engine's JACK input ports and record its output (a probe process) ->
    (captured, rate, period)."""
    with tempfile.TemporaryDirectory(prefix="comolive-probe-") as tmp:
        sig, out = Path(tmp) / "signal.npy", Path(tmp) / "captured.npz"
        np.save(sig, np.asarray(signal, np.float32))
        rate = _server_rate(servername)
        limit = timeout_s if timeout_s is not None else 2.0 * len(signal) / rate + 30.0
        try:
            r = subprocess.run([sys.executable, "-m", "realtime.jack_probe", servername or "", str(sig), str(out),
                                str(limit - 5.0)],
                               cwd=str(Path(__file__).resolve().parent.parent), capture_output=True, text=True,
                               timeout=limit)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"the JACK probe did not finish within {limit:.0f} s") from None
        if r.returncode != 0 or not out.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()
            raise DeviceError(f"the JACK probe failed: {tail[-1] if tail else f'exit status {r.returncode}'}")
        with np.load(out) as z:
            return z["captured"].astype(np.float32), int(z["rate"]), int(z["period"])


def _server_rate(servername: str | None) -> int:
    import jack

    try:
        c = jack.Client("comolive_rate", no_start_server=True, servername=servername)
    except jack.JackError as e:
        raise DeviceError(f"cannot reach the JACK server ({e})") from None
    rate = int(c.samplerate)
    c.close()  # never activated: no process thread to stop
    return rate


def probe_loop(loop, seconds: float = 10.0, servername: str | None = None, **burst) -> ProbeResult:
    """Measure a running LiveLoop on JACK: tone bursts in, its output back, latency and gaps out."""
    sr = _server_rate(servername)
    on_s = burst.get("on_s", 0.4)
    x, onsets = tone_bursts(sr, seconds, **burst)
    y, rate, period = capture(x, servername, timeout_s=2.0 * seconds + 30.0)
    res = ProbeResult(rate, period)
    res.latencies_ms, res.missing_bursts, res.gaps = measure(x, y, onsets, sr, on_s)
    if res.latency_ms is not None:
        loop.note_measured_latency(res.latency_ms)
    return res


if __name__ == "__main__":
    _probe_process(sys.argv[1:])
