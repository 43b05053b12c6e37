"""`main.py bench`: compute cost per second of audio of every stage, as tables and JSON.

Timings are medians (and p90) over repeats on the same input, with 1 torch thread as in the live
path (README, "Live"). Nothing here asserts a speed: the figures are for reading and comparing.
"""
from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.dataset import collate
from models.voice_model import VoiceModel


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakRSS:
    """Samples the RSS every few ms while a stage runs: tracemalloc cannot see torch's allocations and
    getrusage only knows the whole process's high-water mark."""

    def __enter__(self):
        self.before = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def _time(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    with PeakRSS() as mem:
        fn()  # warm-up
        ts, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            ts.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # CPU time: what a shared, busy machine does not inflate
    return {"median_s": float(np.median(ts)), "p90_s": float(np.percentile(ts, 90)), "repeats": repeats,
            "cpu_median_s": float(np.median(cpu)),
            "peak_rss_mb": round(mem.peak, 1), "rss_growth_mb": round(mem.peak - mem.before, 1)}


def _feature_batch(vm: VoiceModel, frames: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    cfg = vm.cfg
    f0 = 220 * 2 ** (np.sin(np.linspace(0, 20, frames)) / 6)
    item = {"mel": np.zeros((cfg.n_mels, frames), np.float32),
            "content": rng.standard_normal((frames, cfg.content_dim)).astype(np.float32),
            "f0": f0.astype(np.float32), "voiced": np.ones(frames, np.float32),
            "loudness": np.full(frames, -20.0, np.float32), "speaker": vm.speaker(None)}
    return collate([item])


def bench_model(model: str | None, seconds: float, repeats: int = 3) -> list[dict]:
    from models.hifigan import load_universal_hifigan

    vm = VoiceModel.load(model)
    frames = int(seconds * vm.cfg.frame_rate)
    batch = _feature_batch(vm, frames)
    rows = []
    configs = []
    untrained_teacher = vm.decoder_or_none("teacher") is None  # reads the teacher file beside the model
    if untrained_teacher:  # a student-only model: time the teacher's architecture (cost does not depend on weights)
        from models.edm import EDMDecoder

        vm.teacher = EDMDecoder(vm.cfg).eval().requires_grad_(False)
    configs += [("teacher", 50, "heun"), ("teacher", 10, "heun"), ("teacher", 50, "euler")]
    if vm.student is not None:
        configs += [("student", 1, ""), ("student", 2, ""), ("student", 4, "")]
    for sampler, steps, solver in configs:
        nfe = steps if sampler == "student" or solver == "euler" else 2 * steps - 1
        r = _time(lambda: vm.decode(batch, steps=steps, sampler=sampler, solver=solver or "heun"),
                  1 if nfe > 20 else repeats)
        rows.append({"stage": f"decoder {sampler} {steps} step{'s' if steps > 1 else ''}"
                     + (f" ({solver})" if solver else "")
                     + (" *" if sampler == "teacher" and untrained_teacher else ""), "nfe": nfe, **r})
    voc = load_universal_hifigan("cpu")
    mel = torch.randn(1, vm.cfg.n_mels, frames) - 5
    with torch.no_grad():
        rows.append({"stage": "vocoder hifigan-universal", "nfe": 1, **_time(lambda: voc(mel), repeats)})
    for r in rows:
        r["s_per_audio_s"] = r["median_s"] / seconds
        r["p90_s_per_audio_s"] = r["p90_s"] / seconds
        r["cpu_s_per_audio_s"] = r["cpu_median_s"] / seconds
    students = [r for r in rows if r["stage"].startswith("decoder student 1 ")]
    teachers = [r for r in rows if r["stage"].startswith("decoder teacher 50 steps (heun)")]
    if students and teachers:
        for r in rows:
            r["speedup_vs_teacher50"] = teachers[0]["median_s"] / r["median_s"]
    return rows


def test_signal(seconds: float, sr: int) -> np.ndarray:
    """A sung-like harmonic tone with vibrato and a melody (the content of the signal does not change costs)."""
    t = np.arange(int(seconds * sr)) / sr
    f = 220 * 2 ** (np.floor(t * 2) % 5 / 12) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.2 * x / np.max(np.abs(x))).astype(np.float32)


def bench_features(seconds: float, repeats: int = 3) -> list[dict]:
    from engine.content import make_content_extractor
    from engine.loudness import Loudness
    from engine.pitch import make_pitch_extractor
    from engine.registry import PITCH_EXTRACTORS
    from engine.speaker import SpeakerEncoder
    from models.audio_io import resample
    from models.mel import MelAnalyzer

    sr = 22050
    wav = test_signal(seconds, sr)
    wav16 = resample(wav, sr, 16000)
    rows = []
    for name in PITCH_EXTRACTORS:
        ex = make_pitch_extractor(name, device="cpu")
        x = resample(wav, sr, ex.sample_rate)
        rows.append({"stage": f"pitch {name}", **_time(lambda: ex.extract(x), 1 if name == "harvest" else repeats)})
    content = make_content_extractor("whisper", device="cpu")
    rows.append({"stage": f"content whisper-tiny (window {content.window_s:g} s, chunk {content.chunk_frames} frames)",
                 **_time(lambda: content.extract(wav16), repeats)})
    loud = Loudness(sr, 256, 1024)
    rows.append({"stage": "loudness rms", **_time(lambda: loud.extract(wav), repeats)})
    mel = MelAnalyzer()
    w = torch.from_numpy(wav)[None]
    rows.append({"stage": "mel analysis", **_time(lambda: mel(w), repeats)})
    spk = SpeakerEncoder(device="cpu")
    rows.append({"stage": "speaker d-vector (resemblyzer)", **_time(lambda: spk.embed(wav, sr), repeats)})
    for r in rows:
        r["s_per_audio_s"] = r["median_s"] / seconds
        r["p90_s_per_audio_s"] = r["p90_s"] / seconds
        r["cpu_s_per_audio_s"] = r["cpu_median_s"] / seconds
    return rows


BENCH_COLS = ("stage", "nfe", "s_per_audio_s", "p90_s_per_audio_s", "cpu_s_per_audio_s", "speedup_vs_teacher50",
              "peak_rss_mb", "rss_growth_mb")


def print_table(title: str, rows: list[dict]) -> None:
    from evaluation.tables import print_table as table

    table(rows, BENCH_COLS, title, digits=4)
    if any(r["stage"].endswith(" *") for r in rows):
        print("* the model ships no teacher: its architecture with untrained weights, timed for cost only")


def run_bench(what: str, json_path: str | None = None, model: str | None = None, seconds: float = 10.0,
              corpus: str | None = "data/corpus", clips: int = 8, real: str | None = None) -> dict:
    torch.set_num_threads(1)
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": 1,
                          "torch": torch.__version__, "cuda": torch.cuda.is_available()},
              "input_seconds": seconds}
    if what in ("features", "all"):
        report["features"] = bench_features(seconds)
        print_table(f"feature extractors, {seconds:g} s input, seconds of compute per second of audio", report["features"])
    if what in ("model", "all"):
        report["model"] = bench_model(model, seconds)
        print_table(f"decoder and vocoder, {seconds:g} s input, seconds of compute per second of audio", report["model"])
    if what in ("vocoder", "all"):  # speed and held-out copy-synthesis quality of every vocoder
        from evaluation.vocoder_bench import run_vocoder_bench

        report["vocoder"] = run_vocoder_bench(seconds, corpus, clips, real=real)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {json_path}")
    return report


def overview_rows(report: dict) -> list[dict]:
    """Every section's per-stage cost in one list: stage, s of compute per s of audio (median, p90), memory."""
    keep = ("stage", "nfe", "s_per_audio_s", "p90_s_per_audio_s", "cpu_s_per_audio_s", "peak_rss_mb")
    rows = [{k: r[k] for k in keep if k in r} for sec in ("features", "model") for r in report.get(sec, [])]
    for r in report.get("vocoder", {}).get("speed", []):
        for mode in ("whole", "stream45ms", "stream90ms"):
            if f"{mode}_s_per_s" in r:
                rows.append({"stage": f"vocoder {r['vocoder']} ({mode})", "s_per_audio_s": r[f"{mode}_s_per_s"],
                             **({"cpu_s_per_audio_s": r[f"{mode}_cpu_s_per_s"]} if f"{mode}_cpu_s_per_s" in r else {})})
    return rows


def live_rows(live: dict) -> list[dict]:
    """The live bench's per-block compute and measured end-to-end latency, one row per block size
    (rows of the dry-signal bypass check are left out)."""
    def key(r: dict) -> tuple[float, str]:
        return round(r["block_ms"], 1), r.get("vocoder", "")

    jack = {key(r): r for r in live.get("jack", []) if not r.get("bypass")}
    compute = {key(r): r for r in live.get("compute", [])}
    default = {k[1] for k in compute} | {""}
    rows = []
    for k in sorted(set(jack) | set(compute)):
        c, j = compute.get(k, {}), jack.get(k, {})
        row = {"block_ms": k[0], **({"vocoder": k[1]} if k[1] not in default else {})}
        for out, key in (("p50_ms", "compute_ms_p50"), ("p90_ms", "compute_ms_p90"), ("p99_ms", "compute_ms_p99"),
                         ("p99_share", "p99_share_of_block"), ("cpu_p50_ms", "cpu_ms_p50"),
                         ("cpu_p99_ms", "cpu_ms_p99")):
            if key in c:
                row[out] = c[key]
        if not c and "compute_ms_p50" in j:  # block size timed only inside the JACK loop
            row["p50_ms"], row["p99_ms"] = j["compute_ms_p50"], j["compute_ms_p99"]
        for out, key in (("declared_latency_ms", "declared_ms"), ("measured_latency_ms", "measured_ms"),
                         ("dropouts", "dropouts")):
            if key in j:
                row[out] = j[key]
        rows.append(row)
    return rows


def print_overview(report: dict) -> None:
    """`bench all`: one summary of every stage and of the live path."""
    from evaluation.tables import print_table as table

    table(overview_rows(report), ("stage", "nfe", "s_per_audio_s", "p90_s_per_audio_s", "cpu_s_per_audio_s",
                                  "peak_rss_mb"),
          f"summary: seconds of compute per second of audio, {report.get('input_seconds', 0):g} s input, 1 thread",
          digits=4)
    if report.get("live"):
        table(live_rows(report["live"]), ("block_ms", "vocoder", "p50_ms", "p90_ms", "p99_ms", "p99_share",
                                          "cpu_p50_ms", "cpu_p99_ms", "declared_latency_ms", "measured_latency_ms",
                                          "dropouts"),
              "summary: live path, compute per block (ms) and end-to-end latency through JACK (ms)", digits=1)
    m = report["machine"]
    print(f"process peak RSS: {m['peak_rss_mb']:.0f} MB"
          + (f"; load average at the end: {m['load_average_1min']:.1f} on {m['cpus']} CPUs"
             if m.get("load_average_1min") is not None else ""))


def finish_report(report: dict, json_path: str | None) -> dict:
    import resource

    report["machine"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # other processes on the machine inflate the wall-clock figures: record how busy it was
    report["machine"]["cpus"] = os.cpu_count()
    report["machine"]["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {json_path}")
    return report
