"""Zero-shot evaluation: how well a voice taken from a few seconds of recording is reached, compared with
the voices the model was trained on.

Sources are held-out sung renditions by trained voices, one sex after the other (source_renditions).
Targets come in four groups, all converted with the same sources,
each conversion moved into the target's register (key = whole semitones between the median f0 of the
target's reference clips and of the source; f0 fidelity compares with the source f0 x key):
  - "trained, by name": a trained voice through its stored mean d-vector (the usual path);
  - "trained, from clip": the same voices, but conditioned on reference clips (the zero-shot path);
  - "unseen, from clip": sung corpus voices the decoder never saw (left out of training entirely);
  - "unseen spoken, from clip": the corpus's spoken voices (festival/flite), never trained either.
Similarity to the target is measured against OTHER clips of the target voice than those used as
reference, so a clip cannot score by resembling itself; for sung voices those are their held-out
renditions, as for the trained ones.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.converter import Converter
from evaluation.dnsmos import DNSMOS
from evaluation.evaluate import heldout_renditions
from evaluation.metrics import cents_error, cosine, expected_f0
from engine.reference import reference_from_audio
from engine.speaker import SpeakerEncoder
from models.audio_io import load_audio
from models.errors import ComoliveError

GROUPS = ("trained, by name", "trained, from clip", "unseen, from clip", "unseen spoken, from clip")
SUMMARY_COLUMNS = ("group", "voices", "n", "sim_target", "sim_source", "sim_margin", "f0_cents_median", "dnsmos_ovr")


@dataclass
class Target:
    name: str
    group: str
    ref_clips: list[Path]     # conditioning (from-clip groups)
    eval_clips: list[Path]    # similarity is measured against these


def corpus_targets(corpus: Path, trained: list[str], n_trained: int = 5, n_ref: int = 2) -> list[Target]:
    """Trained voices and the sung voices left out of training (train-split clips as references, held-out
    renditions for measuring), and the spoken voices of corpus/speech (first clips as references, the
    rest for measuring). Trained voices are spread over the sorted list (languages and sexes vary)."""
    def sung(v: str, group: str) -> Target:
        refs = sorted((corpus / "train" / v).glob("*.wav"))[:n_ref]
        return Target(v, group, refs, sorted((corpus / "heldout" / v).glob("*.wav")))

    singers = sorted(p.name for p in (corpus / "train").glob("*") if p.is_dir())
    seen = [v for v in singers if v in trained]
    pick = [seen[round(i * len(seen) / n_trained)] for i in range(n_trained)] if len(seen) > n_trained else seen
    targets = [sung(v, g) for v in pick for g in GROUPS[:2]]
    targets += [sung(v, GROUPS[2]) for v in singers if v not in trained]
    for d in sorted(p for p in (corpus / "speech").glob("*") if p.is_dir()):
        clips = sorted(d.glob("*.wav"))
        if d.name not in trained and len(clips) > n_ref:
            targets.append(Target(d.name, GROUPS[3], clips[:n_ref], clips[n_ref:]))
    targets = [t for t in targets if t.ref_clips and t.eval_clips]
    if not any(t.group in GROUPS[2:] for t in targets):
        raise ComoliveError(f"{corpus}: no voice the model was not trained on (sung or in speech/) to test")
    return targets


def source_renditions(corpus: Path, trained: list[str], n: int) -> list[tuple[str, Path]]:
    """n held-out renditions by different trained voices, alternating the voices' sexes (corpus.json), so
    that no target group is measured only against sources of its own sex (a cross-sex conversion moves
    the d-vector much further than a same-sex one)."""
    try:
        sex = {v["name"]: v.get("sex", "") for v in json.loads((corpus / "corpus.json").read_text())["voices"]}
    except (OSError, ValueError, KeyError):
        sex = {}
    first: dict[str, Path] = {}   # each trained voice's first held-out rendition
    for _, rs in sorted(heldout_renditions(corpus).items()):
        for v, r in sorted(rs.items()):
            if v in trained:
                first.setdefault(v, r.wav_path)
    by_sex: dict[str, list[tuple[str, Path]]] = {}
    for v, p in first.items():
        by_sex.setdefault(sex.get(v, ""), []).append((v, p))
    rounds = itertools.zip_longest(*(by_sex[k] for k in sorted(by_sex)))
    return [x for r in rounds for x in r if x is not None][:n]


def evaluate_zero_shot(corpus: str | Path, model: str | Path | None = None, vocoder: str = "hn",
                       n_sources: int = 2, seconds: float = 6.0, device: str | None = None,
                       progress: bool = True) -> dict:
    corpus = Path(corpus)
    conv = Converter(model=model, device=device, vocoder=vocoder)
    spk, mos = SpeakerEncoder(device=conv.device), DNSMOS()
    pitch, sr = conv.features.pitch, conv.cfg.sample_rate
    trained = sorted(conv.model.voices)
    targets = corpus_targets(corpus, trained)
    sources = []
    for v, path in source_renditions(corpus, trained, n_sources):
        wav, _ = load_audio(path, sr)
        sources.append((v, wav[: int(seconds * sr)]))
    clip_emb = {}

    def median_f0(f0: np.ndarray) -> float:
        return float(np.median(f0[f0 > 0])) if (f0 > 0).any() else 0.0

    src_f0 = {v: pitch.extract_from(w, sr) for v, w in sources}     # per source, once
    src_emb = {v: spk.embed(w, sr) for v, w in sources}

    def embed_files(paths: list[Path]) -> np.ndarray:
        key = tuple(paths)
        if key not in clip_emb:
            clip_emb[key] = spk.embed_many([load_audio(p, sr) for p in paths])
        return clip_emb[key]

    rows = []
    bar = tqdm(total=len(targets) * len(sources), desc="zero-shot eval", disable=not progress, dynamic_ncols=True)
    for t in targets:
        clips = [load_audio(p, sr)[0] for p in t.ref_clips]
        ref = None
        if t.group != GROUPS[0]:
            ref = reference_from_audio(spk, [(c, sr, str(p)) for c, p in zip(clips, t.ref_clips)])
        target_emb = embed_files(t.eval_clips)
        tgt_f0 = median_f0(pitch.extract_from(np.concatenate(clips), sr))
        for src_voice, wav in sources:
            if src_voice == t.name:
                bar.update()
                continue
            f0_med = median_f0(src_f0[src_voice])
            key = float(np.round(12 * np.log2(tgt_f0 / f0_med))) if tgt_f0 and f0_med else 0.0
            res = conv.convert(wav, sr, voice=t.name if ref is None else None, reference=ref, key=key)
            out = res.audio
            f0_src = expected_f0(src_f0[src_voice], key)
            f0_out = pitch.extract_from(out, sr)
            n = min(len(f0_src), len(f0_out))
            e_out = spk.embed(out, sr)
            row = {"group": t.group, "target": t.name, "source": src_voice, "key": key,
                   "sim_target": cosine(e_out, target_emb), "sim_source": cosine(e_out, src_emb[src_voice]),
                   **cents_error(f0_out[:n], f0_src[:n]), **mos.score(out, sr)}
            row["sim_margin"] = row["sim_target"] - row["sim_source"]
            rows.append(row)
            bar.update()
    bar.close()
    summary = []
    for g in GROUPS:
        rs = [r for r in rows if r["group"] == g]
        if rs:
            s = {"group": g, "voices": len({r["target"] for r in rs}), "n": len(rs)}
            for k in ("sim_target", "sim_source", "sim_margin", "dnsmos_ovr"):
                s[k] = float(np.mean([r[k] for r in rs]))
            s["f0_cents_median"] = float(np.median([r["f0_cents_median"] for r in rs]))
            summary.append(s)
    return {"kind": "zero-shot", "corpus": str(corpus), "model": str(model or "embedded default"),
            "vocoder": vocoder, "sources": [s[0] for s in sources], "seconds": seconds, "rows": rows,
            "summary": summary}
