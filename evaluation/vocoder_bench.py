"""`main.py bench vocoder`: speed and copy-synthesis quality of every vocoder (models/vocoders.py).

Speed: seconds of compute per second of audio at 1 torch thread, for the whole-file call and for a
stream fed blocks of ~45 ms (4 frames) and ~90 ms (8 frames); per-block p50/p99 as well. Wall time
and the thread's CPU time are both reported: on a shared machine the wall time also counts the
time other processes held the core, the CPU time does not.
Quality (copy synthesis on the corpus's held-out split, and with `--real DIR` on the held-out real
singing of a MANIFEST.tsv folder, never trained on): each clip's own log-mel and f0 go in (the corpus's
exact f0; for real singing FCPE's, what conversion feeds the vocoder), and the output is compared with
the original and with the HiFi-GAN V1's output:
log-mel distance (mean |difference| of natural-log mel, nats), f0 error (FCPE on the output against
the corpus f0, median cents over frames voiced in both), DNSMOS overall (speechmos's ONNX models,
run offline; a speech-trained proxy for singing). Nothing here asserts a figure.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from engine.frames import MODEL_FRAME_RATE, MODEL_SAMPLE_RATE, align_frames
from engine.manifest import read_manifest
from evaluation.metrics import cents_error
from models.audio_io import load_audio, resample
from models.errors import ComoliveError
from models.mel import MelAnalyzer
from models.vocoders import VOCODERS, load_vocoder

BLOCKS = {"45ms": 4, "90ms": 8}  # frames per pushed block (hop 256 at 22 050 Hz: 11.6 ms a frame)


def _test_input(seconds: float, mel: MelAnalyzer) -> tuple[torch.Tensor, torch.Tensor]:
    """A sung-like tone (melody + vibrato) with its exact f0 on the mel frame grid."""
    sr, hop = mel.sample_rate, mel.hop_length
    t = np.arange(int(seconds * sr)) / sr
    f = 220 * 2 ** (np.floor(t * 2) % 5 / 12) * 2 ** (0.3 / 12 * np.sin(2 * np.pi * 5.5 * t))
    x = sum(np.sin(k * 2 * np.pi * np.cumsum(f) / sr) / k for k in range(1, 12))
    wav = torch.from_numpy((0.2 * x / np.max(np.abs(x))).astype(np.float32))
    m = mel(wav[None])[0]
    f0 = torch.from_numpy(f[hop // 2::hop][: m.shape[-1]].astype(np.float32))
    return m, f0


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _stream_times(voc, mel: torch.Tensor, f0: torch.Tensor, block: int, device: str = "cpu"
                  ) -> tuple[float, float, list[float]]:
    """(wall s, CPU s of this thread, wall s of each push) for one streamed pass."""
    st = voc.stream()
    ts = []
    c_all, t_all = time.thread_time(), time.perf_counter()
    for i in range(0, mel.shape[-1], block):
        t0 = time.perf_counter()
        st.push(mel[:, i:i + block], f0[i:i + block])
        _sync(device)
        ts.append(time.perf_counter() - t0)
    st.flush()
    _sync(device)
    return time.perf_counter() - t_all, time.thread_time() - c_all, ts


def bench_speed(names: tuple[str, ...], seconds: float, repeats: int = 3, device: str = "cpu") -> list[dict]:
    mel_an = MelAnalyzer()
    mel, f0 = _test_input(seconds, mel_an)
    mel = mel.to(device)
    audio_s = mel.shape[-1] * mel_an.hop_length / mel_an.sample_rate
    rows = []
    for name in names:
        voc = load_vocoder(name, device)
        reps = repeats if name != "hifigan" else max(1, repeats - 1)
        row = {"vocoder": name, "params": sum(p.numel() for p in _module(voc).parameters())}
        voc(mel, f0)  # warm-up
        whole, whole_cpu = [], []
        for _ in range(reps):
            c0, t0 = time.thread_time(), time.perf_counter()
            voc(mel, f0)
            _sync(device)
            whole.append(time.perf_counter() - t0)
            whole_cpu.append(time.thread_time() - c0)
        row["whole_s_per_s"] = float(np.median(whole)) / audio_s
        row["whole_cpu_s_per_s"] = float(np.median(whole_cpu)) / audio_s
        for label, block in BLOCKS.items():
            _stream_times(voc, mel[:, : 4 * block], f0[: 4 * block], block, device)  # warm-up
            totals, cpus, blocks = [], [], []
            for _ in range(reps):
                total, cpu, ts = _stream_times(voc, mel, f0, block, device)
                totals.append(total)
                cpus.append(cpu)
                blocks += ts
            block_s = block * mel_an.hop_length / mel_an.sample_rate
            row[f"stream{label}_s_per_s"] = float(np.median(totals)) / audio_s
            row[f"stream{label}_cpu_s_per_s"] = float(np.median(cpus)) / audio_s
            row[f"stream{label}_block_p50_ms"] = 1e3 * float(np.median(blocks))
            row[f"stream{label}_block_p99_ms"] = 1e3 * float(np.percentile(blocks, 99))
            row[f"stream{label}_block_ms"] = 1e3 * block_s
        st = voc.stream()
        row["lookahead_ms"] = 1e3 * st.delay_samples / mel_an.sample_rate
        rows.append(row)
    return rows


def print_block_table(speed: list[dict], title: str = "per pushed block (wall ms)") -> None:
    _table(title, speed, ["vocoder"] + [f"stream{b}_block_{m}" for b in BLOCKS for m in ("ms", "p50_ms", "p99_ms")])


def _module(voc) -> torch.nn.Module:
    return voc.model


def heldout_clips(corpus: Path, n: int) -> list[Path]:
    """n held-out renditions: voices spread evenly over the sorted list, melodies taken in turn (deterministic)."""
    by_voice: dict[str, list[Path]] = {}
    for w in sorted((corpus / "heldout").glob("*/*.wav")):
        by_voice.setdefault(w.parent.name, []).append(w)
    if not by_voice:
        raise ComoliveError(f"{corpus}: no held-out renditions (expected {corpus}/heldout/<voice>/*.wav)")
    voices = sorted(by_voice)
    n = min(n, sum(len(v) for v in by_voice.values()))
    picks = []
    for i in range(n):
        files = by_voice[voices[(i * len(voices)) // n if n <= len(voices) else i % len(voices)]]
        picks.append(files[(i if n <= len(voices) else i // len(voices)) % len(files)])
    return picks


def _dnsmos():
    from speechmos import dnsmos

    def score(wav: np.ndarray, sr: int) -> float:
        x = np.clip(resample(wav, sr, 16000), -1.0, 1.0).astype(np.float32)
        return float(dnsmos.run(x, 16000)["ovrl_mos"])

    return score


def real_singing_clips(real: Path, n: int = 0) -> list[Path]:
    """Held-out singing of a MANIFEST.tsv folder (rows: path, split, kind, ...), all of it when n is 0."""
    rows = read_manifest(real, "heldout", ("path", "split", "kind"))
    paths = [Path(real) / r["path"] for r in rows if r["kind"] == "singing"]
    return paths[:n] if n else paths


def _clip_f0(path: Path, wav: np.ndarray, t: int, pitch) -> np.ndarray:
    """The f0 a vocoder gets for this clip: the corpus's exact f0 when it has one, else FCPE's (octaves repaired)."""
    from engine.pitch import fix_octave_jumps
    from training.vocoder_train import f0_on_mel_grid

    exact = path.with_suffix(".f0.npy")
    if exact.exists():
        return f0_on_mel_grid(np.load(exact).astype(np.float64), t)
    f0 = align_frames(pitch.extract_from(wav, MODEL_SAMPLE_RATE), pitch.frame_rate, MODEL_FRAME_RATE, t, mode="nearest")
    return fix_octave_jumps(f0).astype(np.float32)


def bench_quality(names: tuple[str, ...], paths: list[Path]) -> dict:
    from engine.pitch import make_pitch_extractor

    mel_an = MelAnalyzer()
    sr = mel_an.sample_rate
    pitch = make_pitch_extractor("fcpe", device="cpu")
    dnsmos = _dnsmos()
    vocs = {n: load_vocoder(n, "cpu") for n in names}
    per_clip = []
    for path in paths:
        wav, _ = load_audio(path, sr)
        gt = torch.from_numpy(wav)
        mel = mel_an(gt[None])[0]
        t = mel.shape[-1]
        f0 = _clip_f0(path, wav, t, pitch)
        outs = {"ground_truth": wav[: t * mel_an.hop_length]}
        for n, v in vocs.items():
            outs[n] = v(mel, torch.from_numpy(f0)).float().numpy()
        mels = {k: mel_an(torch.from_numpy(np.ascontiguousarray(w))[None])[0] for k, w in outs.items()}
        rec = {"clip": f"{path.parent.name}/{path.stem}", "seconds": len(wav) / sr}
        for k, w in outs.items():
            f0_out = align_frames(pitch.extract_from(w, sr), pitch.frame_rate, MODEL_FRAME_RATE, t, mode="nearest")
            rec[k] = {"f0_cents_median": cents_error(f0_out, f0)["f0_cents_median"], "dnsmos_ovrl": dnsmos(w, sr)}
            if k != "ground_truth":
                n = min(mels[k].shape[-1], t)
                rec[k]["logmel_dist_gt"] = float((mels[k][:, :n] - mel[:, :n]).abs().mean())
                if "hifigan" in mels and k != "hifigan":
                    rec[k]["logmel_dist_v1"] = float((mels[k][:, :n] - mels["hifigan"][:, :n]).abs().mean())
        per_clip.append(rec)
    summary = []
    for k in ("ground_truth", *names):
        vals = [c[k] for c in per_clip]
        row = {"system": k, "clips": len(vals)}
        for m in ("logmel_dist_gt", "logmel_dist_v1", "f0_cents_median", "dnsmos_ovrl"):
            xs = [v[m] for v in vals if m in v and np.isfinite(v[m])]
            if xs:
                row[m] = float(np.median(xs)) if m == "f0_cents_median" else float(np.mean(xs))
        summary.append(row)
    return {"summary": summary, "clips": per_clip}


def _table(title: str, rows: list[dict], cols: list[str]) -> None:
    cols = [c for c in cols if any(c in r for r in rows)]
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols]
    print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))


def run_vocoder_bench(seconds: float = 10.0, corpus: str | Path | None = "data/corpus", clips: int = 8,
                      names: tuple[str, ...] = VOCODERS, real: str | Path | None = None) -> dict:
    """Speed table always; quality tables for the corpus's held-out split when it is there, and for the
    held-out real singing of `real` when given."""
    torch.set_num_threads(1)
    report: dict = {"speed": bench_speed(names, seconds)}
    _table(f"vocoders, {seconds:g} s input, 1 thread: seconds of compute per second of audio (median) and "
           "per-block latency", report["speed"],
           ["vocoder", "params", "lookahead_ms", "whole_s_per_s", "stream45ms_s_per_s", "stream90ms_s_per_s",
            "whole_cpu_s_per_s", "stream45ms_cpu_s_per_s", "stream90ms_cpu_s_per_s"])
    print_block_table(report["speed"])
    if corpus is not None and (Path(corpus) / "heldout").is_dir():
        report["quality"] = bench_quality(names, heldout_clips(Path(corpus), clips))
        _quality_table(f"copy synthesis on {len(report['quality']['clips'])} held-out clips of {corpus}",
                       report["quality"])
    else:
        print(f"\n(no held-out split at {corpus}: quality table skipped; build it with `main.py corpus`)")
    if real is not None:
        report["quality_real"] = bench_quality(names, real_singing_clips(Path(real)))
        _quality_table(f"copy synthesis of the held-out real singing of {real} "
                       f"({len(report['quality_real']['clips'])} clips, FCPE f0 in)", report["quality_real"])
    return report


def _quality_table(title: str, quality: dict) -> None:
    _table(title + " (log-mel distance: nats; f0: median cents, FCPE; DNSMOS overall, mean)", quality["summary"],
           ["system", "clips", "logmel_dist_gt", "logmel_dist_v1", "f0_cents_median", "dnsmos_ovrl"])


def write_json(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2))
