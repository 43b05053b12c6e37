"""`main.py bench soak --minutes M [--faults]`: the live loop for a long time through a JACK dummy server.

The parent runs a private jackd (48 kHz, 256-frame periods) and the show in a child process
(`python -m realtime.soak --child`), which runs the live loop at the default settings on the JACK
devices and prints one JSON line of readings per second: blocks, dropouts, failed blocks, the
offset between the input and output timelines (its drift is latency drift), resident memory and
thread count. The input is the JACK dummy driver's silence with the noise gate off, so every block
runs the whole model.

With --faults, on a fixed schedule: a slow block (the session sleeps 3 blocks long: one dropout), a
raising block (a failed block, played as a dropout), and the audio server quitting and coming back:
the child must notice (within 2 s) and exit with one line, and the parent restarts the server and the
show (a recovery). A separate process for the show because after its server dies PortAudio stays
blocked in the process that used it (realtime/devices.py: mark_stuck).
Nothing is asserted: a table and, with --json, every reading.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

FAULT_EVERY_S = 60.0  # with --faults: a slow block, a raising block and a server restart in each minute
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------- the child
class FaultySession:
    """The real session, with a slow or a raising block when the parent's schedule says so."""

    def __init__(self, inner, schedule: list[tuple[float, str]], block_s: float):
        self.inner, self.schedule, self.block_s = inner, sorted(schedule), block_s
        self.t0 = time.monotonic()
        self.injected: dict[str, int] = {"slow": 0, "raise": 0}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def process(self, x):
        if self.schedule and time.monotonic() - self.t0 >= self.schedule[0][0]:
            _, kind = self.schedule.pop(0)
            self.injected[kind] += 1
            if kind == "slow":
                time.sleep(3 * self.block_s)
            else:
                raise RuntimeError("injected fault")
        return self.inner.process(x)


def _proc_status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def _timeline_offset(out_ring, in_ring) -> int | None:
    """Output read position minus input write position, from two identical snapshots 1 ms apart: the audio
    thread moves both in one callback, and a reading taken between its two moves would be one period off."""
    prev = None
    for _ in range(50):
        cur = (out_ring.read_pos, in_ring.written)
        if cur == prev:
            return cur[0] - cur[1]
        prev = cur
        time.sleep(0.001)
    return None


def run_child(seconds: float, faults: bool) -> int:
    import torch

    from engine.session_config import SessionConfig
    from realtime.live import LiveConfig, LiveLoop, open_session

    torch.set_num_threads(1)
    session = open_session(SessionConfig(gate_db=float("-inf")), 48000)
    block_s = session.block_size / 48000
    schedule = []
    if faults:
        for m in range(int(seconds // FAULT_EVERY_S) + 1):
            schedule += [(m * FAULT_EVERY_S + 15.0, "slow"), (m * FAULT_EVERY_S + 30.0, "raise")]
    faulty = FaultySession(session, schedule, block_s)
    loop = LiveLoop(LiveConfig(session=None, hostapi="JACK", sample_rate=48000), session=faulty)
    loop.start()
    t0 = last = time.monotonic()
    try:
        while loop.running and time.monotonic() - t0 < seconds:
            time.sleep(0.05)
            if time.monotonic() - last < 1.0:
                continue
            last = time.monotonic()
            st = loop.stats()
            sink = loop.sinks[0] if loop.sinks else None
            offset = None if sink is None else _timeline_offset(sink.ring, loop.ring)
            print(json.dumps({"t": round(last - t0, 2), "blocks": st.blocks, "dropouts": st.dropouts,
                              "late_blocks": st.overruns, "failed_blocks": st.failed_blocks,
                              "timeline_offset": offset, "latency_ms": st.latency_ms,
                              "rss_mb": _proc_status("VmRSS") / 1024.0, "threads": threading.active_count(),
                              "injected": dict(faulty.injected), "compute_ms_p99": st.compute_ms_p99}),
                  flush=True)
    finally:
        stopped = time.monotonic()
        loop.stop()
    st = loop.stats()
    if st.error:
        print(json.dumps({"error": st.error, "stopped_at": stopped}), flush=True)  # same clock as the parent's
        print(f"error: {st.error}", file=sys.stderr, flush=True)
        return 2
    return 0


# ------------------------------------------------------------------------------------------- the parent
def _start_child(server: str, seconds: float, faults: bool) -> subprocess.Popen:
    env = dict(os.environ, JACK_DEFAULT_SERVER=server, JACK_NO_AUDIO_RESERVATION="1")
    return subprocess.Popen([sys.executable, "-m", "realtime.soak", "--child", "--seconds", str(seconds)]
                            + (["--faults"] if faults else []), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _readings(child: subprocess.Popen, on_line) -> None:
    for line in child.stdout:
        if line.startswith("{"):
            on_line(json.loads(line))


def run_soak(minutes: float, faults: bool, json_path: str | None = None) -> dict:
    total = 60.0 * minutes
    name = f"comolive_soak{os.getpid()}"
    server = _start_jackd(name)
    t_start = time.monotonic()
    runs, kills = [], []
    try:
        while time.monotonic() - t_start < total:
            left = total - (time.monotonic() - t_start)
            child = _start_child(name, left, faults)
            run = {"started_s": round(time.monotonic() - t_start, 1), "readings": []}
            runs.append(run)
            kill_at = time.monotonic() + min(FAULT_EVERY_S - 5.0, left) if faults else float("inf")
            reader = threading.Thread(target=_readings, args=(child, run["readings"].append), daemon=True)
            reader.start()
            while child.poll() is None and time.monotonic() < kill_at:
                time.sleep(0.2)
            if child.poll() is None and faults and time.monotonic() - t_start < total - 10:
                t_kill = time.monotonic()
                server.terminate()  # the audio server quits mid-show
                server.wait(30)
                try:
                    child.wait(30)
                    exited = time.monotonic() - t_kill
                except subprocess.TimeoutExpired:
                    child.kill()
                    exited = None
                reader.join(5)
                stop = [r["stopped_at"] for r in run["readings"] if "stopped_at" in r]
                kills.append({"at_s": round(t_kill - t_start, 1), "noticed_s": stop[0] - t_kill if stop else None,
                              "child_exit_s": exited, "child_rc": child.returncode})
                server = _start_jackd(name)  # it comes back; the next loop iteration restarts the show
            else:
                child.wait()
            reader.join(5)
            run["rc"] = child.returncode
            run["stderr_tail"] = child.stderr.read().strip().splitlines()[-2:]
    finally:
        server.terminate()
        server.wait(30)
    report = summarise(runs, kills, minutes, faults)
    print_soak(report)
    if json_path:
        Path(json_path).write_text(json.dumps({**report, "runs": runs, "server_restarts": kills}, indent=2) + "\n")
        print(f"wrote {json_path}")
    return report


def _start_jackd(name: str) -> subprocess.Popen:
    """jackd (dummy driver) awaited with jack_wait: no JACK client in this process, which would go down with
    the server when it quits."""
    import shutil

    from realtime.devices import DeviceError

    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        raise DeviceError("jackd is not installed (Debian package jackd2; scripts/setup.sh installs it)")
    proc = subprocess.Popen([shutil.which("jackd"), "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if subprocess.run([shutil.which("jack_wait"), "-s", name, "-w", "-t", "30"], capture_output=True,
                      timeout=60).returncode != 0:
        proc.terminate()
        raise DeviceError(f"jackd ({name}) did not come up within 30 s")
    return proc


def summarise(runs: list[dict], kills: list[dict], minutes: float, faults: bool) -> dict:
    rows = []
    for r in runs:
        rd = [x for x in r["readings"] if "t" in x]
        if not rd:
            rows.append({"started_s": r["started_s"], "seconds": 0, "rc": r.get("rc")})
            continue
        first, last = rd[min(2, len(rd) - 1)], rd[-1]  # after 2 s of warm-up
        offsets = [x["timeline_offset"] for x in rd[2:] if x["timeline_offset"] is not None] or [0]
        rows.append({"started_s": r["started_s"], "seconds": last["t"], "blocks": last["blocks"],
                     "dropouts": last["dropouts"], "failed_blocks": last["failed_blocks"],
                     "injected_slow": last["injected"]["slow"], "injected_raise": last["injected"]["raise"],
                     "timeline_drift_samples": max(offsets) - min(offsets), "latency_ms": last["latency_ms"],
                     "rss_start_mb": first["rss_mb"], "rss_end_mb": last["rss_mb"],
                     "threads_start": first["threads"], "threads_end": last["threads"],
                     "compute_ms_p99": last["compute_ms_p99"], "rc": r.get("rc"), "stderr": r.get("stderr_tail")})
    recovered = sum(1 for k, nxt in zip(kills, runs[1:]) if nxt["readings"])
    return {"minutes": minutes, "faults": faults, "load_average": os.getloadavg(), "runs": rows,
            "server_restarts": len(kills), "recoveries": recovered,
            "device_loss_noticed_s": [k["noticed_s"] for k in kills],
            "device_loss_exit_s": [k["child_exit_s"] for k in kills]}


def print_soak(rep: dict) -> None:
    print(f"soak: {rep['minutes']:g} min through a JACK dummy server, default settings, "
          f"{'faults injected' if rep['faults'] else 'no faults'}; load average {rep['load_average'][0]:.2f}")
    head = ("start s", "seconds", "blocks", "dropouts", "failed", "slow inj", "raise inj", "drift smp", "rss MB",
            "threads", "p99 ms", "rc")
    print("  ".join(f"{h:>9}" for h in head))
    for r in rep["runs"]:
        if "blocks" not in r:
            print(f"{r['started_s']:>9}  (no readings; rc {r['rc']})")
            continue
        vals = (r["started_s"], r["seconds"], r["blocks"], r["dropouts"], r["failed_blocks"], r["injected_slow"],
                r["injected_raise"], r["timeline_drift_samples"], f"{r['rss_start_mb']:.0f}->{r['rss_end_mb']:.0f}",
                f"{r['threads_start']}->{r['threads_end']}", f"{r['compute_ms_p99']:.1f}", r["rc"])
        print("  ".join(f"{v!s:>9}" for v in vals))
    if rep["server_restarts"]:
        secs = lambda xs: ", ".join("-" if s is None else f"{s:.1f} s" for s in xs)  # noqa: E731
        print(f"server quit and came back {rep['server_restarts']} time(s); the show stopped "
              f"{secs(rep['device_loss_noticed_s'])} after it quit (process gone after "
              f"{secs(rep['device_loss_exit_s'])}) and was restarted {rep['recoveries']} time(s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--faults", action="store_true")
    a = ap.parse_args(argv)
    return run_child(a.seconds, a.faults)


if __name__ == "__main__":
    sys.exit(main())
