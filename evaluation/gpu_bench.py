"""CUDA benchmarks for scripts/gpu_check.sh: vocoders whole-file and streamed on the GPU, and the live
session's per-block compute at 20/40/80 ms blocks on the GPU (a file fed block by block, on the live
schedule). Prints tables and writes JSON; nothing is asserted.

    python -m evaluation.gpu_bench [--json F] [--seconds S]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from engine.session_config import SessionConfig
from engine.stream_session import StreamSession
from evaluation.tables import print_table
from evaluation.vocoder_bench import _table, bench_speed, print_block_table
from models.vocoders import VOCODERS

SESSION_BLOCKS_MS = (20.0, 40.0, 80.0)


def _sung(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    f = 220 * 2 ** (np.floor(t * 2) % 5 / 12) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    x = sum(np.sin(k * 2 * np.pi * np.cumsum(f) / sr) / k for k in range(1, 16))
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def bench_session(block_ms: float, seconds: float, device: str) -> dict:
    """Per-block compute of the live session (default vocoder for the device) on `seconds` of sung audio."""
    sr = 48000
    session = StreamSession(SessionConfig(sample_rate=sr, block_ms=block_ms, device=device))
    wav = _sung(seconds, sr)
    n = session.block_size
    session.process(wav[:n])  # warm-up (kernels, caches)
    times = []
    for k in range(1, len(wav) // n):
        t0 = time.perf_counter()
        session.process(wav[k * n:(k + 1) * n])
        times.append(1e3 * (time.perf_counter() - t0))
    t = np.asarray(times)
    return {"block_ms": block_ms, "vocoder": session.vocoder_name, "p50_ms": float(np.median(t)),
            "p99_ms": float(np.percentile(t, 99)), "p99_of_block": float(np.percentile(t, 99) / block_ms),
            "late_blocks": int(np.sum(t > block_ms)), "blocks": len(t),
            "latency_ms": 1e3 * session.latency_samples / sr}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device")
    torch.set_num_threads(1)
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    report["vocoders"] = bench_speed(VOCODERS, a.seconds, device="cuda")
    _table(f"vocoders on {report['gpu']}: seconds of compute per second of audio", report["vocoders"],
           ["vocoder", "whole_s_per_s", "stream45ms_s_per_s", "stream90ms_s_per_s"])
    print_block_table(report["vocoders"], f"vocoders on {report['gpu']}, per pushed block (wall ms)")
    report["session"] = [bench_session(ms, a.seconds, "cuda") for ms in SESSION_BLOCKS_MS]
    print_table(report["session"], ("block_ms", "vocoder", "p50_ms", "p99_ms", "p99_of_block", "late_blocks",
                                    "blocks", "latency_ms"), f"live session on {report['gpu']} (file device)")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
