"""The live loop on a real audio graph: a private JACK server with the dummy driver.

A JACK client injects tone bursts into the loop's input port and records its output port in the same
cycle; the burst onsets give the true end-to-end latency, which must equal the declared one within
one JACK period. The session is tests.test_live.DelaySession (a declared pure delay), so that the
loop and its latency accounting are what is measured, not the model's speed on a busy machine.
"""
from __future__ import annotations

import pytest
import soundfile as sf

from realtime.devices import DeviceError, list_hostapis
from realtime.jack_probe import probe_loop
from realtime.live import LiveConfig, LiveLoop
from tests.test_live import DelaySession, lag_of

pytestmark = pytest.mark.slow  # a JACK server and the live loop in real time

JACK = "JACK Audio Connection Kit"


def test_devices_lists_the_jack_devices_while_jackd_runs(jack_server, capsys):
    import main

    assert JACK in list_hostapis()
    assert main.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert JACK in out and "system" in out


@pytest.mark.parametrize("duplex", [True, False], ids=["duplex", "separate-streams"])
def test_measured_latency_equals_declared_within_one_period(jack_server, tmp_path, duplex):
    session = DelaySession(sample_rate=48000, block=2048, delay=300)
    loop = LiveLoop(LiveConfig(session=None, hostapi="JACK", duplex=duplex, record_dir=str(tmp_path)),
                    session=session)
    loop.start()
    try:
        res = probe_loop(loop, seconds=4.0, servername=jack_server.name)
    finally:
        loop.stop()
    st = loop.stats()
    assert st.error is None and st.sample_rate == 48000
    assert len(res.latencies_ms) >= 3 and res.missing_bursts == 0
    assert abs(res.latency_ms - st.latency_ms) <= jack_server.period_ms, (res.latencies_ms, st.latency_parts)
    assert st.measured_latency_ms == pytest.approx(res.latency_ms)
    assert {"block", "delay", "output margin", "device input buffer", "device output buffer"} <= set(st.latency_parts)
    # the recordings: what the loop heard and what it played, the latter later by the loop's own delay
    x, sr_in = sf.read(str(tmp_path / "input.wav"), dtype="float32")
    y, sr_out = sf.read(str(tmp_path / "output.wav"), dtype="float32")
    assert sr_in == sr_out == 48000 and len(x) > 3 * 48000 and len(y) > 3 * 48000
    n = min(len(x), len(y))
    inner = loop.internal_latency_samples()
    assert lag_of(y[inner:n], x[:n - inner], 64) == 0


def test_unsupported_rate_is_a_clear_device_error(jack_server):
    loop = LiveLoop(LiveConfig(session=None, hostapi="JACK", sample_rate=44100), session=DelaySession(44100))
    with pytest.raises(DeviceError, match="does not support 44100 Hz"):
        loop.start()
    assert not loop.running


def test_unknown_device_names_what_exists(jack_server):
    loop = LiveLoop(LiveConfig(session=None, input_device="nosuch", hostapi="JACK"), session=DelaySession())
    with pytest.raises(DeviceError, match="no input device matches 'nosuch'.*'system'"):
        loop.start()


def test_monitor_output_carries_the_same_signal(jack_server, tmp_path):
    """A second output stream (monitor) on the same JACK device runs its own ring and clock."""
    loop = LiveLoop(LiveConfig(session=None, hostapi="JACK", monitor_device="system", monitor_gain_db=-6.0),
                    session=DelaySession(sample_rate=48000))
    loop.start()
    try:
        assert len(loop.backend.streams) == 2 and len(loop.sinks) == 2
        res = probe_loop(loop, seconds=3.0, servername=jack_server.name)
    finally:
        loop.stop()
    st = loop.stats()
    assert st.error is None and len(res.latencies_ms) >= 2
    main_out, monitor = loop.sinks
    assert monitor.ring.read_pos > 2 * 48000 and monitor.gain == pytest.approx(10 ** (-6 / 20))
    assert monitor.ring.written == main_out.ring.written  # the worker fed both with every block


def test_live_command_runs_headless_on_jack_and_stops_cleanly(jack_server, capsys, tmp_path):
    """`main.py live` with the real session: budget part by part, status lines, a clean stop, recordings."""
    import main

    rc = main.main(["live", "--hostapi", "JACK", "--seconds", "2.5", "--block-ms", "180", "--record", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "latency budget:" in out and "output margin" in out and "device output buffer" in out
    assert "vocoder lookahead" in out and "compute p50" in out and "stopped:" in out
    assert (tmp_path / "input.wav").stat().st_size > 0 and (tmp_path / "output.wav").stat().st_size > 0


def _private_jackd(name: str):
    """jackd with the dummy driver under its own name, started and awaited without any JACK client in this
    process (libjack here would take this process down with the server when it quits)."""
    import shutil
    import subprocess

    proc = subprocess.Popen([shutil.which("jackd"), "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ready = subprocess.run([shutil.which("jack_wait"), "-s", name, "-w", "-t", "30"], capture_output=True,
                           timeout=60)
    if ready.returncode != 0:
        proc.terminate()
        raise AssertionError(f"jackd did not come up: {ready.stdout!r}")
    return proc


@pytest.mark.parametrize("how", ["server quits", "ctrl-c"])
def test_live_ends_with_one_line_when_the_audio_server_quits_and_at_ctrl_c(tmp_path, how):
    """`live` through JACK: the server quits mid-show -> exit 2 and one line; Ctrl-C -> exit 0; neither hangs."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    name = f"comolive_lost{os.getpid()}{how[0]}"
    # PYTHONFAULTHANDLER: a hang below is reported with every thread's stack (SIGABRT), not a bare timeout
    env = dict(os.environ, JACK_DEFAULT_SERVER=name, JACK_NO_AUDIO_RESERVATION="1", PYTHONFAULTHANDLER="1")
    server = _private_jackd(name)
    out_path = tmp_path / "out.txt"
    try:
        with open(out_path, "w") as out:
            # a shell that runs the suite in the background ignores SIGINT and children inherit that: `live`
            # gets it back, as when started from a terminal
            live = subprocess.Popen([sys.executable, "main.py", "live", "--seconds", "300"], stdout=out,
                                    stderr=subprocess.PIPE, text=True, env=env, cwd=root,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            end = time.monotonic() + 240
            while "compute p50" not in out_path.read_text() and live.poll() is None and time.monotonic() < end:
                time.sleep(0.2)
            assert "compute p50" in out_path.read_text(), out_path.read_text()
            if how == "server quits":
                server.terminate()
            else:
                live.send_signal(signal.SIGINT)
            try:
                _, err = live.communicate(timeout=30)  # a hang fails here, with the threads' stacks
            except subprocess.TimeoutExpired:
                live.send_signal(signal.SIGABRT)
                raise AssertionError(f"{how}: still running 30 s later\n{live.communicate(timeout=20)[1][-6000:]}")
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        if how == "server quits":
            assert live.returncode == 2 and len(errors) == 1, err
            assert "no audio callback" in errors[0] or "stopped unexpectedly" in errors[0]
        else:
            assert live.returncode == 0 and errors == [], err
        assert any(ln.startswith("stopped:") for ln in out_path.read_text().splitlines()[-3:])  # a hint may follow
    finally:
        if live.poll() is None:
            live.kill()
        server.terminate()
        server.wait(10)
