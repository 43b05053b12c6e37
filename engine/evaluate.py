"""Quality evaluation on the held-out parallel split of the synthetic corpus.

Voice A's rendition of a held-out melody is converted to voice B (key shift = B's register minus
A's); B's own rendition of the same melody is the ground truth (sample-aligned, exact f0 known).
Systems are (sampler, steps) pairs of one model, plus two reference rows: the unchanged source
and the vocoder's copy-synthesis of B (the ceiling the decoder can reach).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.converter import Converter
from engine.frames import align_frames
from engine.metrics import cents_error, cosine, mel_cepstral_distortion
from models.audio_io import load_audio
from models.errors import ComoliveError
from models.mel import MelAnalyzer

DEFAULT_SYSTEMS = (("teacher", 50), ("student", 1), ("student", 2))


@dataclass
class Rendition:
    wav_path: Path
    voice: str
    melody: str
    transpose: float

    @property
    def f0_path(self) -> Path:
        return self.wav_path.with_suffix(".f0.npy")


def ground_truth_on_model_grid(f0: np.ndarray, n: int) -> np.ndarray:
    """The corpus stores f0 at frame starts (sample i*hop); our frames are centred at i*hop + hop/2."""
    a, b = f0[:n], f0[1 : n + 1] if len(f0) > n else np.append(f0[1:n], 0.0)
    mid = np.where((a > 0) & (b > 0), np.sqrt(a * np.maximum(b, 1e-9)), 0.0)
    return np.pad(mid, (0, max(0, n - len(mid))))[:n]


def heldout_pairs(corpus: Path, voices: list[str], max_pairs: int) -> list[tuple[Rendition, Rendition]]:
    """Deterministic (source, target) pairs: every held-out melody, target voices rotated over melodies."""
    by_melody: dict[str, dict[str, Rendition]] = {}
    for wav in sorted((corpus / "heldout").glob("*/*.wav")):
        meta = json.loads(wav.with_suffix(".json").read_text())
        r = Rendition(wav, wav.parent.name, str(meta["melody_id"]), float(meta.get("transposition", 0.0)))
        by_melody.setdefault(r.melody, {})[r.voice] = r
    if not by_melody:
        raise ComoliveError(f"{corpus}: no held-out renditions (expected {corpus}/heldout/<voice>/*.wav)")
    pairs = []
    k = 0
    while len(pairs) < max_pairs and k < max_pairs * 4:
        for melody in sorted(by_melody):
            rs = by_melody[melody]
            avail = [v for v in voices if v in rs]
            if len(avail) < 2 or len(pairs) >= max_pairs:
                continue
            tgt = avail[k % len(avail)]
            src = avail[(k * 7 + 3) % len(avail)]
            if src == tgt:
                src = avail[(avail.index(tgt) + 1) % len(avail)]
            pairs.append((rs[src], rs[tgt]))
            k += 1
        k += 1
    return pairs


def evaluate_parallel(corpus: str | Path, model: str | Path | None = None, systems=DEFAULT_SYSTEMS,
                      max_pairs: int = 12, device: str | None = None, progress: bool = True) -> dict:
    corpus = Path(corpus)
    conv = Converter(model=model, device=device)
    from engine.speaker import SpeakerEncoder

    spk = SpeakerEncoder(device=conv.device)
    pitch = conv.features.pitch
    sr_model = conv.cfg.sample_rate
    frame_rate = conv.cfg.frame_rate
    pairs = heldout_pairs(corpus, sorted(conv.model.voices), max_pairs)
    if not pairs:
        raise ComoliveError("no held-out melody is sung by two voices the model knows")
    rows: list[dict] = []

    def measure(system: str, out: np.ndarray, src: Rendition, tgt: Rendition, ref: np.ndarray, src_wav: np.ndarray,
                seconds: float | None) -> dict:
        f0_true = ground_truth_on_model_grid(np.load(tgt.f0_path), len(out) // conv.cfg.hop_length)
        f0_out = pitch.extract_from(out, sr_model)
        f0_out = align_frames(f0_out, pitch.frame_rate, frame_rate, len(f0_true), mode="nearest")
        e_out = spk.embed(out, sr_model)
        row = {"system": system, "source": f"{src.voice}/{src.melody}", "target": tgt.voice,
               "key": tgt.transpose - src.transpose, "mcd_db": mel_cepstral_distortion(out, ref, sr_model),
               **cents_error(f0_out, f0_true),
               "sim_target": cosine(e_out, spk.embed(ref, sr_model)),
               "sim_source": cosine(e_out, spk.embed(src_wav, sr_model))}
        row["sim_margin"] = row["sim_target"] - row["sim_source"]
        if seconds is not None:
            row["compute_s"] = seconds
        return row

    work = [(s, t) for s, t in pairs]
    bar = tqdm(total=len(work) * (len(systems) + 2), desc="eval", disable=not progress, dynamic_ncols=True)
    for src, tgt in work:
        src_wav, _ = load_audio(src.wav_path, sr_model)
        ref, _ = load_audio(tgt.wav_path, sr_model)
        n = min(len(src_wav), len(ref))
        src_wav, ref = src_wav[:n], ref[:n]
        rows.append(measure("source (unchanged)", src_wav, src, tgt, ref, src_wav, None))
        bar.update()
        with torch.no_grad():


            copy = conv.vocoder(MelAnalyzer()(torch.from_numpy(ref)[None]).to(conv.device))[0].cpu().numpy().reshape(-1)
        rows.append(measure("vocoder copy-synthesis of target", np.pad(copy, (0, max(0, n - len(copy))))[:n],
                            src, tgt, ref, src_wav, None))
        bar.update()
        for sampler, steps in systems:
            if conv.model.decoder_or_none(sampler) is None:
                bar.update()
                continue
            t0 = time.perf_counter()
            res = conv.convert(src_wav, sr_model, voice=tgt.voice, key=tgt.transpose - src.transpose, steps=steps,
                               sampler=sampler)
            rows.append(measure(f"{sampler} {steps}-step", res.audio, src, tgt, ref, src_wav,
                                time.perf_counter() - t0))
            bar.update()
    bar.close()
    return {"corpus": str(corpus), "model": str(model or "embedded default"), "pairs": len(work),
            "rows": rows, "summary": summarise(rows)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        rs = [r for r in rows if r["system"] == system]
        s = {"system": system, "n": len(rs)}
        for k in ("mcd_db", "f0_cents_median", "f0_gross_error_rate", "vuv_agreement", "sim_target", "sim_source",
                  "sim_margin", "compute_s"):
            vals = [r[k] for r in rs if k in r and np.isfinite(r[k])]
            if vals:
                s[k] = float(np.median(vals)) if k == "f0_cents_median" else float(np.mean(vals))
        out.append(s)
    return out


def print_summary(summary: list[dict]) -> None:
    cols = ["system", "n", "mcd_db", "f0_cents_median", "f0_gross_error_rate", "vuv_agreement", "sim_target",
            "sim_source", "sim_margin", "compute_s"]
    cols = [c for c in cols if any(c in r for r in summary)]
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    widths = [max(len(c), *(len(fmt(r.get(c, ""))) for r in summary)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for r in summary:
        print("  ".join(fmt(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))
