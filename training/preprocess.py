"""Dataset folder -> feature cache for training (`main.py preprocess`).

Accepts the layout users know from so-vits-svc/RVC (DATASET/<singer>/*.wav, any format and
rate, mono or stereo), a folder with a MANIFEST.tsv (columns path, split, kind, speaker, ...: one row
per file; rows of split "heldout" are left out, they are for evaluation only) and the synthetic corpus
layout (CORPUS/{train,heldout}/<voice>/*.wav with ground-truth JSON beside each file, parallel across
voices).

Each utterance is stored with its mel, f0, loudness, content, its own speaker embedding and its audio
at the model rate (int16, for vocoder training). Real recordings (everything but the corpus) also get
`content_pert`: content taken from a timbre-perturbed copy (training/perturb.py), which the decoder
trains on so that it cannot copy the singer's timbre out of the content features. Every file is resampled, downmixed,
level-normalised and (user data only: corpus files must stay sample-aligned) sliced on silence;
nothing is skipped silently — each rejected file is reported with its reason.

Run again on the same output folder, a source file whose bytes (SHA-1) are unchanged keeps the
features already written for it (same pitch extractor and model config), so adding voices to a
dataset costs only the new files.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.feature_pipeline import FeaturePipeline
from engine.loudness_norm import active_level_db, normalize_level, slice_on_silence
from engine.manifest import MANIFEST, read_manifest
from training.perturb import perturb_timbre
from engine.speaker import SpeakerEncoder
from models.audio_io import load_audio
from models.config import ModelConfig, recorded_features
from models.dataset import unit
from models.errors import ComoliveError
from models.mel import MelAnalyzer

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3", ".opus"}
MIN_SECONDS = 1.0


@dataclass
class PreprocessReport:
    out_dir: Path
    written: int = 0
    reused: int = 0
    seconds: float = 0.0
    voices: dict[str, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"wrote {self.written} utterances ({self.seconds / 60:.1f} min) from {len(self.voices)} "
                 f"singer(s) to {self.out_dir}" + (f"; kept {self.reused} unchanged from the last run"
                                                   if self.reused else "")]
        lines += [f"  {v}: {n} utterances" for v, n in sorted(self.voices.items())]
        if self.rejected:
            lines.append(f"rejected {len(self.rejected)} file(s):")
            lines += [f"  {p}: {why}" for p, why in self.rejected]
        return "\n".join(lines)


@dataclass
class Source:
    path: Path
    voice: str
    split: str
    group: str
    transpose: float
    slice: bool
    kind: str = "singing"
    real: bool = True


def discover_manifest(dataset: Path) -> list[Source]:
    """Rows of DATASET/MANIFEST.tsv with split "train" (held-out rows are never preprocessed)."""
    rows = read_manifest(dataset, "train")
    if not rows:
        raise ComoliveError(f"{dataset / MANIFEST}: no rows of split 'train'")
    return [Source(dataset / r["path"], r["speaker"], "train", str(Path(r["path"]).with_suffix("")), 0.0, True,
                   r.get("kind", "singing")) for r in rows]


def discover(dataset: Path, heldout: float, seed: int = 0) -> list[Source]:
    """List the audio files of a dataset folder with their singer, split and parallel group."""
    if not dataset.is_dir():
        raise ComoliveError(f"{dataset}: dataset folder not found")
    if (dataset / MANIFEST).exists():
        return discover_manifest(dataset)
    sources: list[Source] = []
    if (dataset / "corpus.json").exists():
        for split in ("train", "heldout"):
            for wav in sorted((dataset / split).glob("*/*.wav")):
                meta_path = wav.with_suffix(".json")
                meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
                group = str(meta.get("melody_id", wav.stem))
                sources.append(Source(wav, wav.parent.name, split, group, float(meta.get("transposition", 0.0)), False,
                                      real=False))
        return sources
    singers = sorted(d for d in dataset.iterdir() if d.is_dir())
    if not singers:
        raise ComoliveError(f"{dataset}: expected one sub-folder of recordings per singer (DATASET/<singer>/*.wav)")
    rng = random.Random(seed)
    for d in singers:
        files = sorted(p for p in d.rglob("*") if p.is_file())
        n_held = int(round(len(files) * heldout)) if len(files) > 2 else 0
        held = set(rng.sample(range(len(files)), n_held))
        for i, p in enumerate(files):
            sources.append(Source(p, d.name, "heldout" if i in held else "train", f"{d.name}/{p.stem}", 0.0, True))
    return sources


def check_audio(wav: np.ndarray, sr: int) -> str | None:
    """Why a file is unusable for training, or None."""
    if len(wav) / sr < MIN_SECONDS:
        return f"too short ({len(wav) / sr:.2f} s < {MIN_SECONDS} s)"
    if active_level_db(wav, sr) < -60.0:
        return "silent (active level below -60 dBFS)"
    clipped = np.mean(np.abs(wav) > 0.999)
    if clipped > 0.01:
        return f"heavily clipped ({clipped:.1%} of samples at full scale)"
    return None


def file_sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def reusable_entries(out: Path, pitch: str, cfg: ModelConfig) -> dict[str, list[dict]]:
    """Index entries of a previous run in `out` (same pitch extractor and config, files present), by source."""
    try:
        old = json.loads((out / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    settings = {**cfg.feature_settings(), "pitch_extractor": pitch}
    if recorded_features(old.get("config", {}), old.get("pitch")) != settings:
        return {}
    by_source: dict[str, list[dict]] = {}
    for e in old.get("utterances", []):
        if e.get("source_sha1") and (out / e["path"]).is_file():
            by_source.setdefault(e["source"], []).append(e)
    return by_source


class _FeatureWriter:
    """Writes one source file's pieces to the cache and keeps the index, the speaker vectors and the report."""

    def __init__(self, out: Path, pitch: str, device, cfg: ModelConfig):
        self.out, self.cfg = out, cfg
        self.pipe = FeaturePipeline(cfg, pitch=pitch, device=device)
        self.mel_fn = MelAnalyzer()
        self.spk = SpeakerEncoder(device=self.pipe.device)
        self.report = PreprocessReport(out)
        self.index: list[dict] = []
        self.spk_sum: dict[str, list[np.ndarray]] = {}

    def _count(self, voice: str, emb: np.ndarray) -> None:
        self.spk_sum.setdefault(voice, []).append(emb)
        self.report.voices[voice] = self.report.voices.get(voice, 0) + 1

    def reuse(self, src, kept: list[dict]) -> None:
        for e in kept:
            self.index.append({**e, "transpose": src.transpose})
            self._count(src.voice, np.load(self.out / e["path"])["spk"])
            self.report.reused += 1

    def source(self, src, rel: Path, sha1: str) -> None:
        """Load, check and normalise the file, cut it on silences, write each piece (or say why not)."""
        try:
            wav, sr = load_audio(src.path)
        except ComoliveError as e:
            self.report.rejected.append((str(rel), str(e).split(": ", 1)[-1]))
            return
        why = check_audio(wav, sr)
        if why:
            self.report.rejected.append((str(rel), why))
            return
        wav, _ = normalize_level(wav, sr)
        pieces = slice_on_silence(wav, sr) if src.slice else [(0, len(wav))]
        if not pieces:
            self.report.rejected.append((str(rel), "no segment louder than the silence threshold"))
        for k, (a, b) in enumerate(pieces):
            if (b - a) / sr >= MIN_SECONDS:
                self.piece(src, rel, sha1, wav[a:b], sr, k, len(pieces) > 1)

    def piece(self, src, rel: Path, sha1: str, seg: np.ndarray, sr: int, k: int, several: bool) -> None:
        feats = self.pipe.extract(seg, sr)
        t = len(feats["f0"])
        mel = self.mel_fn(torch.from_numpy(feats["wav_model"])[None])[0, :, :t].numpy()
        try:
            emb = self.spk.embed(seg, sr)
        except ComoliveError as e:  # e.g. too little voice left once the encoder trims silence
            self.report.rejected.append((f"{rel}" + (f" (piece {k})" if several else ""), str(e)))
            return
        extra = {}
        if src.real:  # content from a timbre-perturbed copy (fixed per utterance: reruns reproduce it)
            rng = np.random.default_rng(int(sha1[:8], 16) + k)
            extra["content_pert"] = self.pipe.content_of(perturb_timbre(seg, sr, rng), sr, t).astype(np.float16)
        audio = np.clip(np.round(feats["wav_model"][:t * self.cfg.hop_length] * 32767), -32768, 32767)
        name = f"{src.split}/{src.voice}/{src.path.stem}" + (f"_{k:03d}" if several else "")
        path = self.out / f"{name}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, mel=mel.astype(np.float32), content=feats["content"].astype(np.float16),
                 f0=feats["f0"], loudness=feats["loudness"], spk=emb.astype(np.float32),
                 audio=audio.astype(np.int16), **extra)
        self.index.append({"path": f"{name}.npz", "voice": src.voice, "split": src.split, "group": src.group
                           + (f"#{k}" if several else ""), "transpose": src.transpose, "frames": t,
                           "kind": src.kind, "real": src.real, "source": str(rel), "source_sha1": sha1})
        self._count(src.voice, emb)
        self.report.written += 1
        self.report.seconds += len(seg) / sr


def preprocess_dataset(dataset: str | Path, out_dir: str | Path, pitch: str = "fcpe", device=None,
                       heldout: float = 0.1, cfg: ModelConfig | None = None, progress: bool = True) -> PreprocessReport:
    dataset, out = Path(dataset), Path(out_dir)
    cfg = cfg or ModelConfig()
    sources = discover(dataset, heldout)
    out.mkdir(parents=True, exist_ok=True)
    previous = reusable_entries(out, pitch, cfg)
    torch.set_num_threads(2)
    w = _FeatureWriter(out, pitch, device, cfg)
    for src in tqdm(sources, desc="preprocess", disable=not progress, dynamic_ncols=True):
        rel = src.path.relative_to(dataset)
        if src.path.suffix.lower() not in AUDIO_EXTENSIONS:
            w.report.rejected.append((str(rel), f"not an audio file extension ({src.path.suffix or 'none'})"))
            continue
        sha1 = file_sha1(src.path)
        kept = [e for e in previous.get(str(rel), []) if e["source_sha1"] == sha1 and e["split"] == src.split]
        if kept:
            w.reuse(src, kept)
        else:
            w.source(src, rel, sha1)
    if not w.index:
        raise ComoliveError(f"{dataset}: no usable audio found ({len(w.report.rejected)} file(s) rejected)\n"
                            + "\n".join(f"  {p}: {why}" for p, why in w.report.rejected))
    voices = {v: unit(np.mean(embs, axis=0)).tolist() for v, embs in w.spk_sum.items()}
    cache_config = {**cfg.to_dict(), "pitch_extractor": pitch}
    (out / "index.json").write_text(json.dumps({"config": cache_config, "pitch": pitch, "voices": voices,
                                                "utterances": w.index, "rejected": w.report.rejected}, indent=1))
    return w.report
