"""`main.py bench live`: per-block compute at 40/80/160 ms blocks and the true end-to-end latency on JACK.

1. Compute: a session converts the bundled sung phrase block by block (1 torch thread, as live);
   p50/p90/p99 per block, p99 as a share of the block, dropouts on the live schedule (realtime/tune.py)
   and the median time of each stage (what dominates the cost).
2. Audio loop: a private JACK dummy server (48 kHz, 256-frame periods), the live loop on its
   PortAudio device, and a JACK client that injects tone bursts into the loop's input ports and
   records its output port (realtime/jack_probe.py): measured latency vs declared, dropouts counted
   by the loop and gaps seen in the recording. The default block runs 6 x `seconds` (60 s by
   default), the others 2 x `seconds`.
Nothing is asserted; tables go to stdout and everything to JSON with --json.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from realtime.meters import percentiles_ms
from realtime.tune import format_budget, measure_block, schedule_dropouts, sung_phrase

BLOCKS_MS = (40.0, 80.0, 160.0)
LOW_LATENCY_BLOCK_MS, LOW_LATENCY_VOCODER = 40.0, "hn-causal"  # also measured through JACK
RATE = 48000


def compute_row(scfg, block_ms: float, seconds: float) -> dict:
    from realtime.live import open_session

    session = open_session(replace(scfg, block_ms=block_ms), RATE)
    audio = sung_phrase(RATE, seconds)
    stages: dict[str, list[float]] = {}
    orig = session.process

    def timed(x):
        y = orig(x)
        for k, v in getattr(getattr(session, "stats", None), "stage_ms", {}).items():
            stages.setdefault(k, []).append(v)
        return y

    session.process = timed
    cpu: list[float] = []
    t0 = os.times()
    t = measure_block(session, audio, cpu_times=cpu)
    t1 = os.times()
    b = session.block_size / RATE
    p, c = percentiles_ms(t), percentiles_ms(cpu)
    return {"block_ms": 1000 * b, "vocoder": session.vocoder_name, "blocks": int(len(t)),
            "compute_ms_p50": float(p[0]), "compute_ms_p90": float(p[1]),
            "compute_ms_p99": float(p[2]), "p99_share_of_block": float(p[2] / (1000 * b)),
            "cpu_ms_p50": float(c[0]), "cpu_ms_p90": float(c[1]), "cpu_ms_p99": float(c[2]),
            "load_average": os.getloadavg()[0], "process_cpu_s": (t1.user + t1.system) - (t0.user + t0.system),
            "schedule_dropouts": schedule_dropouts(t, b, b), "device": str(session.device),
            "stage_ms_median": {k: float(np.median(v)) for k, v in stages.items()},
            "session_latency_ms": 1000 * session.latency_samples / RATE}


def jack_row(scfg, block_ms: float, seconds: float, server, bypass: bool = False) -> dict:
    from realtime.jack_probe import probe_loop
    from realtime.live import LiveConfig, LiveLoop

    loop = LiveLoop(LiveConfig(session=replace(scfg, block_ms=block_ms), hostapi="JACK", sample_rate=RATE,
                               bypass=bypass))
    loop.start()
    try:
        res = probe_loop(loop, seconds=seconds, servername=server.name)
    finally:
        loop.stop()
    st = loop.stats()
    return {"block_ms": st.block_ms, "vocoder": loop.session.vocoder_name, "seconds": seconds, "bypass": bypass,
            "declared_ms": st.latency_ms,
            "measured_ms": res.latency_ms, "measured_spread_ms": res.spread_ms,
            "difference_ms": None if res.latency_ms is None else res.latency_ms - st.latency_ms,
            "jack_period_ms": server.period_ms, "bursts_measured": len(res.latencies_ms),
            "bursts_missing": res.missing_bursts, "dropouts": st.dropouts, "late_blocks": st.overruns,
            "gaps_in_recording": res.gaps, "compute_ms_p50": st.compute_ms_p50, "compute_ms_p99": st.compute_ms_p99,
            "latency_parts": st.latency_parts, "error": st.error}


def model_onset_row(scfg, block_ms: float, seconds: float) -> dict:
    """Burst-onset offset of the converted output against the input in the file-device loop (no dropouts
    possible), with the declared latency removed: what the model itself adds to an onset measurement."""
    from realtime.file_device import stream_file
    from realtime.jack_probe import measure, tone_bursts

    x, onsets = tone_bursts(RATE, seconds, lead_s=0.6)
    y, _ = stream_file(x, RATE, replace(scfg, block_ms=block_ms), fast=True)
    pad = int(0.05 * RATE)  # delay the output by 50 ms for the search: the converted onset may lead the input's
    lat, _, _ = measure(x, np.concatenate([np.zeros(pad, np.float32), y]), onsets, RATE, 0.4)
    offs = [v - 1000.0 * pad / RATE for v in lat]
    return {"block_ms": block_ms, "offsets_ms": offs, "median_ms": float(np.median(offs)) if offs else None,
            "min_ms": float(min(offs)) if offs else None, "max_ms": float(max(offs)) if offs else None}


def _fmt(v, spec: str = "7.1f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) else f"{'-':>7}"


def run_live_bench(json_path: str | None = None, model: str | None = None, seconds: float = 10.0) -> dict:
    import torch

    from engine.session_config import SessionConfig
    from realtime.jackd import JackServer

    torch.set_num_threads(1)
    scfg = SessionConfig(model=model, sample_rate=RATE) if model else SessionConfig(sample_rate=RATE)
    default_ms = float(scfg.block_ms)
    print(f"per-block compute (1 torch thread, {seconds:g} s of sung audio per block size, {RATE} Hz in)")
    rows = []
    for ms in BLOCKS_MS:
        r = compute_row(scfg, ms, seconds)
        rows.append(r)
    print(f"{'block ms':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99/block':>10} {'dropouts*':>10} "
          f"{'cpu p50':>8} {'cpu p99':>8} {'load':>5}  stages (median wall ms)")
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r["stage_ms_median"].items(), key=lambda kv: -kv[1]))
        print(f"{r['block_ms']:>9.1f} {r['compute_ms_p50']:>8.1f} {r['compute_ms_p90']:>8.1f} "
              f"{r['compute_ms_p99']:>8.1f} "
              f"{r['p99_share_of_block']:>9.0%} {r['schedule_dropouts']:>10d} {r['cpu_ms_p50']:>8.1f} "
              f"{r['cpu_ms_p99']:>8.1f} {r['load_average']:>5.1f}  {stages}")
    print("* on the live schedule (output margin = one block), replaying the measured wall times;")
    print("  cpu = the worker thread's own CPU time per block (the cost without waiting for a core); load = 1-min load")

    jack_rows = []
    with JackServer(rate=RATE, period=256) as server:
        for ms in (default_ms,) + tuple(b for b in BLOCKS_MS if abs(b - default_ms) > 1):
            secs = 6 * seconds if ms == default_ms else 2 * seconds
            print(f"JACK loop: block {ms:g} ms, {secs:g} s of tone bursts...", flush=True)
            jack_rows.append(jack_row(scfg, ms, secs, server))
        print(f"JACK loop: block {default_ms:g} ms, bypass (dry signal, same latency), {2 * seconds:g} s...", flush=True)
        jack_rows.append(jack_row(scfg, default_ms, 2 * seconds, server, bypass=True))
        low = replace(scfg, vocoder=LOW_LATENCY_VOCODER)
        print(f"JACK loop: block {LOW_LATENCY_BLOCK_MS:g} ms with {LOW_LATENCY_VOCODER} (the lowest-latency setting), "
              f"{2 * seconds:g} s...", flush=True)
        jack_rows.append(jack_row(low, LOW_LATENCY_BLOCK_MS, 2 * seconds, server))
    file_row = model_onset_row(scfg, default_ms, 2 * seconds)
    print(f"end-to-end through JACK (dummy driver, {RATE} Hz, period 256 = {1000 * 256 / RATE:.2f} ms)")
    print(f"{'block ms':>9} {'vocoder':>10} {'declared':>9} {'measured':>9} {'diff':>7} {'bursts':>7} {'dropouts':>9} "
          f"{'gaps':>5} {'seconds':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for r in jack_rows:
        print(f"{r['block_ms']:>9.1f}{'b' if r['bypass'] else ' '}{r['vocoder']:>10} {r['declared_ms']:>9.1f} "
              f"{_fmt(r['measured_ms'], '9.1f')} "
              f"{_fmt(r['difference_ms'], '7.2f')} "
              f"{r['bursts_measured']:>3d}/{r['bursts_measured'] + r['bursts_missing']:<3d} "
              f"{r['dropouts']:>9d} {r['gaps_in_recording']:>5d} {r['seconds']:>8.0f}"
              f" {r['compute_ms_p50']:>7.1f} {r['compute_ms_p99']:>7.1f}"
              + (f"  error: {r['error']}" if r["error"] else ""))
    print("b = bypass (the dry input through the same loop and latency);")
    print("measured = median burst-onset delay of the bursts that came out, diff = measured - declared;")
    print("bursts = measured / sent; dropouts = the loop's count; gaps = silences inside bursts in the recording")
    if jack_rows:
        print(f"latency budget at the default block ({default_ms:g} ms):")
        print(format_budget(jack_rows[0]["latency_parts"]))
    doc = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                       "torch_threads": 1}, "rate": RATE, "default_block_ms": default_ms,
           "compute": rows, "jack": jack_rows, "model_onset": file_row}
    print(f"converted-onset offset in a dropout-free file run (block {default_ms:g} ms; the decoder sees ahead, so the "
          f"converted onset may lead): median {_fmt(file_row['median_ms'], '.1f')} ms, "
          f"range {_fmt(file_row['min_ms'], '.1f')} .. {_fmt(file_row['max_ms'], '.1f')} ms")
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        print(f"wrote {json_path}")
    return doc
