"""`main.py bench`: compute cost per second of audio of every stage, as tables and JSON.

Timings are medians (and p90) over repeats on the same input, with 1 torch thread as in the live
path (DESIGN §5). Nothing here asserts a speed: the figures are for reading and comparing.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from models.dataset import collate
from models.voice_model import VoiceModel


def _time(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": float(np.median(ts)), "p90_s": float(np.percentile(ts, 90)), "repeats": repeats}


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
    if vm.teacher is not None:
        configs += [("teacher", 50, "heun"), ("teacher", 10, "heun"), ("teacher", 50, "euler")]
    if vm.student is not None:
        configs += [("student", 1, ""), ("student", 2, ""), ("student", 4, "")]
    for sampler, steps, solver in configs:
        nfe = steps if sampler == "student" or solver == "euler" else 2 * steps - 1
        r = _time(lambda: vm.decode(batch, steps=steps, sampler=sampler, solver=solver or "heun"),
                  1 if nfe > 20 else repeats)
        rows.append({"stage": f"decoder {sampler} {steps} step{'s' if steps > 1 else ''}"
                     + (f" ({solver})" if solver else ""), "nfe": nfe, **r})
    voc = load_universal_hifigan("cpu")
    mel = torch.randn(1, vm.cfg.n_mels, frames) - 5
    with torch.no_grad():
        rows.append({"stage": "vocoder hifigan-universal", "nfe": 1, **_time(lambda: voc(mel), repeats)})
    for r in rows:
        r["s_per_audio_s"] = r["median_s"] / seconds
        r["p90_s_per_audio_s"] = r["p90_s"] / seconds
    students = [r for r in rows if r["stage"].startswith("decoder student 1 ")]
    teachers = [r for r in rows if r["stage"] == "decoder teacher 50 steps (heun)"]
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
    from engine.speaker import SpeakerEncoder
    from models.audio_io import resample
    from models.mel import MelAnalyzer

    sr = 22050
    wav = test_signal(seconds, sr)
    wav16 = resample(wav, sr, 16000)
    rows = []
    for name in ("fcpe", "dio", "harvest"):
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
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    cols = [c for c in ("stage", "nfe", "s_per_audio_s", "p90_s_per_audio_s", "speedup_vs_teacher50") if any(c in r for r in rows)]
    widths = [max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(_fmt(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def run_bench(what: str, json_path: str | None = None, model: str | None = None, seconds: float = 10.0,
              corpus: str | None = "data/corpus", clips: int = 8) -> dict:
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
        from engine.vocoder_bench import run_vocoder_bench

        report["vocoder"] = run_vocoder_bench(seconds, corpus, clips)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {json_path}")
    return report
