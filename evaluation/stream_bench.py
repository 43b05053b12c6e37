"""Per-block cost of the streaming session: compute p50/p90/p99 per block size and per stage.

    python -m evaluation.stream_bench [--blocks 40 60 80 160] [--seconds 20] [--pitch-window S] [--json FILE]

Feeds a sung-like tone (tests.helpers-style harmonic tone with vibrato and syllable-like level
changes) through StreamSession.process() at 1 torch thread, as fast as it runs, and reports the
compute time per block against the block duration (the live loop needs p99 well under 100 %) with
the declared latency and its parts. The gate is kept open so every block runs inference.
"""
from __future__ import annotations

import argparse
import json
import math
import platform

import numpy as np
import torch

from engine.session_config import STAGES, SessionConfig
from engine.stream_session import StreamSession


def sung_tone(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """A voiced test signal: 10 harmonics, notes changing every 0.5 s, vibrato, 4 Hz level changes."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    notes = 196.0 * 2 ** (rng.integers(0, 12, size=int(seconds * 2) + 1) / 12)
    f0 = notes[(t * 2).astype(int)] * 2 ** (30 / 1200 * np.sin(2 * np.pi * 5.5 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 11))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.25 * x * env / np.max(np.abs(x))).astype(np.float32)


def _pct(v, q) -> float:
    return float(np.percentile(np.asarray(v, float), q)) if len(v) else float("nan")


def bench_block(block_ms: float, seconds: float, sr: int, vocoder: str = "auto", device: str | None = "cpu",
                warmup_blocks: int = 5, **options) -> dict:
    """options: further SessionConfig fields (pitch, loudness_lookahead_ms, pitch_right_ms, ...)."""
    s = StreamSession(SessionConfig(sample_rate=sr, block_ms=block_ms, vocoder=vocoder, device=device,
                                    gate_db=-math.inf, threads=1, **options))
    x = sung_tone(seconds + warmup_blocks * block_ms / 1000, sr)
    b = s.block_size
    compute, cpu, stages, stages_cpu = [], [], {k: [] for k in STAGES}, {k: [] for k in STAGES}
    for k in range(len(x) // b):
        s.process(x[k * b:(k + 1) * b])
        if k < warmup_blocks:
            continue
        compute.append(s.stats.compute_ms)
        cpu.append(s.stats.cpu_ms)
        for name in STAGES:
            stages[name].append(s.stats.stage_ms.get(name, 0.0))
            stages_cpu[name].append(s.stats.stage_cpu_ms.get(name, 0.0))
    block_real_ms = 1000.0 * b / sr
    row = {
        "block_ms": block_real_ms, "block_size": b, "sample_rate": sr, "vocoder": s.vocoder_name,
        "options": options,
        "device": s.device, "blocks": len(compute), "latency_ms": s.latency_ms,
        "end_to_end_floor_ms": s.end_to_end_floor_ms, "latency_parts_ms": s.latency_parts(),
        "compute_ms": {"p50": _pct(compute, 50), "p90": _pct(compute, 90), "p99": _pct(compute, 99),
                       "max": float(np.max(compute))},
        "cpu_ms": {"p50": _pct(cpu, 50), "p90": _pct(cpu, 90), "p99": _pct(cpu, 99)},
        "stage_ms_p50": {k: _pct(v, 50) for k, v in stages.items()},
        "stage_ms_p99": {k: _pct(v, 99) for k, v in stages.items()},
        "stage_ms_mean": {k: float(np.mean(v)) for k, v in stages.items()},
        "stage_cpu_ms_p50": {k: _pct(v, 50) for k, v in stages_cpu.items()},
        "stage_cpu_ms_mean": {k: float(np.mean(v)) for k, v in stages_cpu.items()},
        "underflows": s.stats.underflows,
    }
    row["p99_of_block"] = row["compute_ms"]["p99"] / block_real_ms
    return row


def format_table(rows: list[dict]) -> str:
    lines = [f"{'block ms':>8} {'latency':>8} {'lat+blk':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
             f"{'p99/blk':>7} {'cpu p50':>7} {'cpu p99':>7} | " + " ".join(f"{k:>8}" for k in STAGES)
             + "   (stage mean ms, process CPU: with the content thread, content work done meanwhile counts in pitch)"]
    for r in rows:
        c, u = r["compute_ms"], r["cpu_ms"]
        lines.append(f"{r['block_ms']:8.1f} {r['latency_ms']:8.1f} {r['end_to_end_floor_ms']:8.1f} {c['p50']:7.1f} "
                     f"{c['p90']:7.1f} {c['p99']:7.1f} {100 * r['p99_of_block']:6.0f}% "
                     f"{u['p50']:7.1f} {u['p99']:7.1f} | "
                     + " ".join(f"{r['stage_cpu_ms_mean'][k]:8.2f}" for k in STAGES))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=float, nargs="+", default=[40.0, 60.0, 80.0, 160.0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--vocoder", default="auto")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pitch", default="fcpe")
    ap.add_argument("--pitch-window", type=float, default=None, metavar="S",
                    help="pitch window in seconds (pitch_window_s; default: the session's)")
    ap.add_argument("--lean", action="store_true",
                    help="loudness_lookahead_ms=0 and pitch_right_ms=0 (lower latency, features differ a little "
                         "from training)")
    ap.add_argument("--no-content-thread", action="store_true",
                    help="run the content extractor in the calling thread after pitch (content_thread=False)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    options = {"pitch": a.pitch}
    if a.pitch_window:
        options["pitch_window_s"] = a.pitch_window
    if a.lean:
        options.update(loudness_lookahead_ms=0.0, pitch_right_ms=0.0)
    if a.no_content_thread:
        options["content_thread"] = False
    rows = [bench_block(b, a.seconds, a.rate, a.vocoder, a.device, **options) for b in a.blocks]
    print(f"streaming session, {rows[0]['vocoder']} vocoder, {rows[0]['device']}, 1 torch thread, "
          f"{a.rate} Hz, {a.seconds:g} s per block size, options {options}")
    print(format_table(rows))
    print("latency parts at the first block size (ms): "
          + ", ".join(f"{k} {v:.1f}" for k, v in rows[0]["latency_parts_ms"].items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": platform.processor() or platform.machine(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
