"""Latency tuning: the smallest block this machine converts in time, with a safety margin.

For each candidate block size (smallest first) a session converts a sung test phrase block by block
with one torch thread, as the live worker does, and every block is timed. A block size passes when
its p99 compute time is at most `safety` (70 %) of the block and a replay of the measured times on
the live loop's schedule (a block is due one output margin after it is complete) has no dropout.
The proposal is the smallest passing size; no audio device is needed.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from realtime.meters import percentiles_ms

# blocks on the content-chunk grid (engine.session_config.content_chunk_for): all but 20 ms wait for no chunk
CANDIDATES_MS = (20.0, 40.0, 60.0, 80.0, 120.0, 160.0, 200.0, 240.0)
SAFETY = 0.7
TEST_RATE = 48000


@dataclass
class TuneRow:
    block_ms: float
    compute_ms_p50: float
    compute_ms_p90: float
    compute_ms_p99: float
    ratio_p99: float  # p99 compute / block duration
    dropouts: int  # on the live loop's schedule, replaying the measured times
    blocks: int
    ok: bool
    cut_short: bool = False  # stopped early: the median alone was over the block


@dataclass
class TuneResult:
    device: str
    block_ms: float | None  # the proposal (None: no candidate passed)
    rows: list[TuneRow] = field(default_factory=list)
    latency_parts: dict[str, float] = field(default_factory=dict)
    safety: float = SAFETY

    @property
    def latency_ms(self) -> float:
        return float(sum(self.latency_parts.values()))

    def table(self) -> str:
        lines = [f"device {self.device}: block size vs per-block compute (1 torch thread)",
                 f"{'block ms':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99/block':>10} {'dropouts':>9}"
                 "  verdict"]
        for r in self.rows:
            verdict = "ok" if r.ok else (f"too slow (stopped after {r.blocks} blocks)" if r.cut_short else "too slow")
            lines.append(f"{r.block_ms:>9.1f} {r.compute_ms_p50:>8.2f} {r.compute_ms_p90:>8.2f} "
                         f"{r.compute_ms_p99:>8.2f} "
                         f"{r.ratio_p99:>9.0%} {r.dropouts:>9d}  {verdict}")
        if self.block_ms is None:
            lines.append(f"no block size kept p99 compute within {self.safety:.0%} of the block")
        else:
            lines.append(f"proposed block: {self.block_ms:.1f} ms (p99 compute <= {self.safety:.0%} of the block)")
            lines.append(format_budget(self.latency_parts))
        return "\n".join(lines)


def format_budget(parts: dict[str, float]) -> str:
    """The latency budget, part by part."""
    w = max([len(k) for k in parts] + [5])
    lines = ["latency budget:"] + [f"  {k:<{w}} {v:7.1f} ms" for k, v in parts.items()]
    lines.append(f"  {'total':<{w}} {sum(parts.values()):7.1f} ms")
    return "\n".join(lines)


def sung_phrase(rate: int, seconds: float) -> np.ndarray:
    """The bundled sung phrase at `rate`, repeated to `seconds` (a real voice, not a synthetic tone)."""
    from models.audio_io import load_audio

    wav, _ = load_audio(Path(__file__).resolve().parent.parent / "assets" / "demo_phrase.wav", sr=rate)
    reps = int(np.ceil(seconds * rate / len(wav)))
    return np.tile(wav, reps)[:int(seconds * rate)].astype(np.float32)


def schedule_dropouts(compute_s: np.ndarray, block_s: float, margin_s: float, fade_s: float = 0.005) -> int:
    """Dropouts of the live loop for these per-block compute times: block k is complete at (k+1)·block,
    the worker takes blocks in order, and its output is due one margin later (less the fade)."""
    end, gaps, late_prev = 0.0, 0, False
    for k, c in enumerate(compute_s):
        ready = (k + 1) * block_s
        end = max(ready, end) + float(c)
        late = end > ready + margin_s - fade_s
        gaps += int(late and not late_prev)
        late_prev = late
    return gaps


def measure_block(session, audio: np.ndarray, warmup: int = 3, give_up_after: int | None = None,
                  cpu_times: list | None = None) -> np.ndarray:
    """Per-block compute times (s) of `session` over `audio` (the first `warmup` blocks excluded).

    give_up_after=N: stop once N blocks are timed and their median already exceeds the block (a size that
    cannot pass; spares minutes on a slow machine). cpu_times: filled with the thread's CPU time per
    block, which on a busy machine shows the cost apart from waiting for a core."""
    b = int(session.block_size)
    block_s = b / session.sr
    times = []
    for k, i in enumerate(range(0, len(audio) - b + 1, b)):
        t0, c0 = time.perf_counter(), time.thread_time()
        session.process(audio[i:i + b])
        if k >= warmup:
            times.append(time.perf_counter() - t0)
            if cpu_times is not None:
                cpu_times.append(time.thread_time() - c0)
        if give_up_after and len(times) >= give_up_after and np.median(times) > block_s:
            break
    return np.asarray(times)


def _session_config(config):
    return config.session if hasattr(config, "session") else config


def tune(config, seconds: float = 10.0, progress: Callable[[float, str], None] | None = None,
         candidates_ms=CANDIDATES_MS, safety: float = SAFETY, stop_at_first: bool = True,
         rate: int | None = None) -> TuneResult:
    """Measure candidates (smallest first) and propose the smallest block that passes (see module doc)."""
    import torch

    from realtime.live import loop_latency_parts, open_session

    torch.set_num_threads(1)
    scfg = _session_config(config)
    rate = int(rate or getattr(config, "sample_rate", None) or TEST_RATE)
    audio = sung_phrase(rate, seconds)
    result = TuneResult(device="?", block_ms=None, safety=safety)
    for i, ms in enumerate(candidates_ms):
        if progress:
            progress(i / len(candidates_ms), f"block {ms:g} ms")
        session = open_session(dataclasses.replace(scfg, block_ms=float(ms)), rate)
        result.device = str(getattr(session, "device", "cpu"))
        t = measure_block(session, audio, give_up_after=10)
        block_s = session.block_size / rate
        p50, p90, p99 = percentiles_ms(t)
        drop = schedule_dropouts(t, block_s, block_s)
        ok = bool(len(t) and p99 <= safety * 1000 * block_s and drop == 0)
        cut = len(t) < (len(audio) // session.block_size) - 3
        result.rows.append(TuneRow(1000 * block_s, p50, p90, p99, p99 / (1000 * block_s), drop, len(t), ok, cut))
        if ok and result.block_ms is None:
            result.block_ms = 1000 * block_s
            result.latency_parts = {str(k): float(v) for k, v in session.latency_parts().items()}
            result.latency_parts.update(loop_latency_parts(session))
            if stop_at_first:
                break
    if progress:
        progress(1.0, "done")
    return result
