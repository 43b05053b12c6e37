"""Held-out real-voice evaluation: recorded singers converted to other recorded singers' voices.

Why: the parallel and zero-shot evaluations run on the synthetic corpus, whose voices are clean and
regular; what users convert is recorded singing. This one uses only the rows of a real-voice folder's
MANIFEST.tsv with split "heldout" (never trained or tuned on), and a pair list that depends on the
manifest alone, so runs of different models, vocoders or devices compare like with like.

  - Pairs: a held-out singing clip (source) goes to a different held-out singer (target). Ordered pairs
    are taken round-robin over the sorted singers (shift 1: each singer to the next one, then shift 2,
    ...), and each singer's clips take turns as its source.
  - References (the zero-shot target, engine.reference): "singing" = the target singer's first held-out
    singing clip of at least ref_seconds[0] s, cut to ref_seconds[1] s; "speech" = the same speaker's
    first long-enough held-out speech clip, where the manifest has one (absent rows otherwise).
  - Similarity to the target is measured against the mean d-vector of the target's OTHER held-out singing
    clips (never the reference), so a conversion cannot score by resembling its own reference; a singer
    with no second clip is never a target. target_gain = sim_target(output) - sim_target(source): how
    far the conversion moved towards the target from where the unconverted source already was.
  - Keys: 0, and the "register" key (whole semitones between the median f0 of the reference and of the
    source, within +-12). f0 fidelity compares the output's Harvest f0 with the source's Harvest f0 x key
    (one extractor for both, so its own bias largely cancels).
  - Paths: "offline" is the whole-file converter (engine.converter.Converter: `convert --whole`); "live"
    (singing reference only) is the streaming session fed the whole file block by block
    (engine.stream_session.run_offline: what `convert`, `stream` and the live loop compute), at the
    session's default block and noise gate, with the input gain the offline level normalisation computes
    for the file (`convert`'s own choice; live, a singer whose input level is set right).
  - level_db: active level of the output minus that of the source (0 = the loudness is kept; offline
    conversion matches its input's level by design, so there it is a check, live it is a measurement).
"""
from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from engine.converter import Converter
from evaluation.dnsmos import DNSMOS
from evaluation.eval_schema import clean_numbers
from engine.loudness_norm import active_level_db, normalize_level
from engine.manifest import read_manifest
from evaluation.metrics import cents_error, cosine, expected_f0
from engine.pitch import make_pitch_extractor
from engine.reference import Reference, reference_from_audio
from engine.register import MAX_REGISTER_KEY, median_f0, register_key
from engine.speaker import SpeakerEncoder
from evaluation.tables import print_table
from models.audio_io import load_audio
from models.errors import AudioInputError, ComoliveError

NEEDED_COLUMNS = ("path", "split", "kind", "speaker")
REFERENCE_KINDS = ("singing", "speech")
KEY_MODES = ("0", "register")
PATHS = ("offline", "live")
MEAN_METRICS = ("vuv_agreement", "sim_target", "sim_source", "target_gain", "dnsmos_ovrl", "source_dnsmos_ovrl",
                "level_db")
SUMMARY_COLUMNS = ("path", "reference", "key", "n", "f0_cents_median") + MEAN_METRICS
HEADERS = {"f0_cents_median": "f0_cents", "vuv_agreement": "vuv_agree", "target_gain": "tgt_gain",
           "dnsmos_ovrl": "dnsmos", "source_dnsmos_ovrl": "src_dnsmos"}


# ------------------------------------------------------------------------------- the fixed pairs
def _seconds(real_dir: Path, row: dict) -> float:
    try:
        return float(row.get("seconds", ""))
    except ValueError:
        try:
            return float(sf.info(str(real_dir / row["path"])).duration)
        except (OSError, RuntimeError):
            return 0.0


def manifest_rows(real_dir: str | Path, split: str = "heldout") -> list[dict]:
    """The manifest's rows of `split` ("heldout" unless a setting is being chosen on "train"), sorted by
    path ("seconds" as a number); other rows are dropped as they are read."""
    real_dir = Path(real_dir)
    rows = read_manifest(real_dir, split, NEEDED_COLUMNS)
    for row in rows:
        row["seconds"] = _seconds(real_dir, row)
    return sorted(rows, key=lambda r: r["path"])


def _by_speaker(rows: list[dict], kind: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["kind"] == kind:
            out.setdefault(r["speaker"], []).append(r)
    return out


def _target_plan(singing: list[dict], speech: list[dict], min_s: float) -> dict | None:
    """A singer's references and the clips its similarity is measured against, or None (not a target)."""
    ref = next((c for c in singing if c["seconds"] >= min_s), None)
    measure = [c["path"] for c in singing if c is not ref]
    if ref is None or not measure:
        return None
    refs = {"singing": ref["path"]}
    spoken = next((c for c in speech if c["seconds"] >= min_s), None)
    if spoken is not None:
        refs["speech"] = spoken["path"]
    return {"references": refs, "measure": measure}


def plan_pairs(rows: list[dict], pairs: int = 12, ref_seconds: tuple[float, float] = (3.0, 10.0)) -> list[dict]:
    """The fixed (source clip, target singer) pairs of held-out rows: a function of the rows alone."""
    singing, speech = _by_speaker(rows, "singing"), _by_speaker(rows, "speech")
    singers = sorted(singing)
    if len(singers) < 2:
        raise ComoliveError(f"held-out singing of at least two singers is needed (found {len(singers)}: "
                            f"{', '.join(singers) or 'none'})")
    targets = {s: _target_plan(singing[s], speech.get(s, []), ref_seconds[0]) for s in singers}
    targets = {s: t for s, t in targets.items() if t is not None}
    if not targets:
        raise ComoliveError(f"no held-out singer has two singing clips (one of at least {ref_seconds[0]:g} s as "
                            "the reference, another to measure similarity against)")
    out, turns = [], {s: 0 for s in singers}
    for shift in range(1, len(singers)):
        for i, s in enumerate(singers):
            t = singers[(i + shift) % len(singers)]
            if t not in targets or len(out) >= pairs:
                continue
            clip = singing[s][turns[s] % len(singing[s])]["path"]
            turns[s] += 1
            out.append({"pair": len(out), "source": clip, "source_speaker": s, "target_speaker": t, **targets[t]})
    return out


# ------------------------------------------------------------------------------- converting and measuring
@dataclass
class SourceClip:
    path: str
    wav: np.ndarray          # at the file's own rate
    sr: int
    f0: np.ndarray           # Harvest
    embedding: np.ndarray
    dnsmos_ovrl: float
    level_db: float


@dataclass
class TargetReference:
    reference: Reference
    f0_median: float         # Harvest, Hz (0 when unvoiced)


class RealMeter:
    """The converter, the metric models, and caches: each clip is loaded, embedded and tracked once."""

    def __init__(self, real_dir: Path, model=None, vocoder: str = "nsf", device: str | None = None,
                 notes: list[str] | None = None, system: tuple[str, int] = ("student", 1), retrieval: float = 0.0,
                 adapt: int = 0):
        self.real_dir = Path(real_dir)
        self.model = None if model is None else str(model)
        self.system, self.retrieval, self.adapt = system, retrieval, int(adapt)
        self.conv = Converter(model=model, device=device, vocoder=vocoder)
        self.spk = SpeakerEncoder(device=self.conv.device)
        self.mos = DNSMOS()
        self.harvest = make_pitch_extractor("harvest")
        self.notes = [] if notes is None else notes
        self._sources: dict[str, SourceClip] = {}
        self._targets: dict[str, np.ndarray | None] = {}
        self._refs: dict[str, TargetReference | None] = {}
        self._ref_audio: dict[str, tuple[np.ndarray, int]] = {}
        self._adapted: dict[str, tuple[object, str]] = {}  # reference clip -> (adapted VoiceModel, its file stem)
        self._adapted_dir = tempfile.TemporaryDirectory(prefix="comolive-eval-adapt-") if self.adapt else None

    def note(self, text: str) -> None:
        self.notes.append(text)
        tqdm.write(f"note: {text}", file=sys.stderr)

    def load(self, rel: str) -> tuple[np.ndarray, int]:
        return load_audio(self.real_dir / rel)

    def dnsmos(self, wav: np.ndarray, sr: int) -> float:
        return self.mos.score(wav, sr)["dnsmos_ovr"]

    def source(self, rel: str) -> SourceClip:
        if rel not in self._sources:
            wav, sr = self.load(rel)
            self._sources[rel] = SourceClip(rel, wav, sr, self.harvest.extract_from(wav, sr), self.spk.embed(wav, sr),
                                            self.dnsmos(wav, sr), active_level_db(wav, sr))
        return self._sources[rel]

    def target(self, speaker: str, clips: list[str]) -> np.ndarray | None:
        """Mean d-vector of the target's measuring clips (None, with a note, when they hold too little voice)."""
        if speaker not in self._targets:
            try:
                self._targets[speaker] = self.spk.embed_many([self.load(c) for c in clips])
            except AudioInputError as e:
                self.note(f"{speaker} is no target: no d-vector from {', '.join(clips)} ({e})")
                self._targets[speaker] = None
        return self._targets[speaker]

    def reference(self, rel: str, max_seconds: float) -> TargetReference | None:
        """The zero-shot target from the clip's first max_seconds (None, with a note, when it is refused)."""
        if rel not in self._refs:
            wav, sr = self.load(rel)
            wav = wav[: int(max_seconds * sr)]
            self._ref_audio[rel] = (wav, sr)
            try:
                ref = reference_from_audio(self.spk, [(wav, sr, rel)])
            except AudioInputError as e:
                self.note(f"reference not used: {e}")
                self._refs[rel] = None
            else:
                for w in ref.warnings:
                    self.note(f"reference warning: {w}")
                self._refs[rel] = TargetReference(ref, median_f0(self.harvest.extract_from(wav, sr)))
        return self._refs[rel]

    def adapted(self, rel: str) -> tuple[object, str]:
        """The model adapted to reference clip `rel` and the stem it is saved under (as `convert --ref` saves
        it, training/reference_adapt.py), made once per clip."""
        if rel not in self._adapted:
            from models.voice_model import VoiceModel
            from training.reference_adapt import adapt_and_save

            stem = adapt_and_save([self._ref_audio[rel]], self.conv.model,
                                  Path(self._adapted_dir.name) / f"adapted{len(self._adapted)}", self.adapt,
                                  device=str(self.conv.device))
            self._adapted[rel] = (VoiceModel.load(stem), stem)
        return self._adapted[rel]

    def live_config(self, src: SourceClip, reference: Reference, key: float, model: str | None = None):
        from engine.session_config import SessionConfig

        gain = normalize_level(src.wav, src.sr)[1]
        return SessionConfig(sample_rate=int(src.sr), model=model or self.model, reference=reference, key=float(key),
                             vocoder=self.conv.vocoder.name, device=str(self.conv.device),
                             input_gain_db=20.0 * math.log10(gain))

    def convert(self, path: str, src: SourceClip, reference: Reference, key: float,
                ref_clip: str | None = None) -> np.ndarray:
        """One conversion; with `adapt`, by the model adapted to `ref_clip` (offline: its decoder swapped into
        the loaded converter for the call; live: its file)."""
        adapted = self.adapted(ref_clip) if self.adapt and ref_clip is not None else None
        if path == "offline":
            sampler, steps = self.system
            base = self.conv.model.student
            if adapted is not None:
                self.conv.model.student = adapted[0].student.to(self.conv.device)
            try:
                return self.conv.convert(src.wav, src.sr, key=key, reference=reference, sampler=sampler,
                                         steps=steps, retrieval=self.retrieval).audio
            finally:
                self.conv.model.student = base
        from engine.stream_session import run_offline

        cfg = self.live_config(src, reference, key, adapted[1] if adapted is not None else None)
        return np.asarray(run_offline(cfg, src.wav, src.sr), np.float32)

    def measure(self, out: np.ndarray, src: SourceClip, key: float, target: np.ndarray) -> dict:
        row = cents_error(self.harvest.extract_from(out, src.sr), expected_f0(src.f0, key))
        try:
            e = self.spk.embed(out, src.sr)
        except AudioInputError as err:  # e.g. an output gated to near silence
            self.note(f"{src.path}, key {key:+g}: no speaker similarity ({err})")
        else:
            row["sim_target"], row["sim_source"] = cosine(e, target), cosine(e, src.embedding)
            row["target_gain"] = row["sim_target"] - cosine(src.embedding, target)
        row["dnsmos_ovrl"] = self.dnsmos(out, src.sr)
        row["source_dnsmos_ovrl"] = src.dnsmos_ovrl
        row["level_db"] = active_level_db(out, src.sr) - src.level_db
        return row


def _pair_rows(meter: RealMeter, pair: dict, live: bool, max_ref_s: float, bar: tqdm) -> list[dict]:
    """Every conversion of one pair: each reference at key 0 and at the register key, offline and
    (singing reference) live; a key that comes out the same twice is converted once."""
    src = meter.source(pair["source"])
    target = meter.target(pair["target_speaker"], pair["measure"])
    if target is None:
        return []
    base = {"pair": pair["pair"], "source": pair["source"], "target": pair["target_speaker"]}
    rows = []
    for kind, rel in pair["references"].items():
        ref = meter.reference(rel, max_ref_s)
        if ref is None:
            continue
        keys = {"0": 0.0, "register": register_key(ref.f0_median, median_f0(src.f0))}
        for path in PATHS[: 2 if live and kind == "singing" else 1]:
            done: dict[float, dict] = {}
            for mode, key in keys.items():
                bar.set_postfix_str(f"pair {pair['pair']}: {path}, {kind} reference, key {key:+g}")
                if key not in done:
                    done[key] = meter.measure(meter.convert(path, src, ref.reference, key, rel), src, key, target)
                rows.append({**base, "path": path, "reference": kind, "reference_clip": rel, "key": mode,
                             "semitones": key, **done[key]})
                bar.update()
    return rows


# ------------------------------------------------------------------------------- the report
def _aggregate(rows: list[dict], key: str, fn) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return float(fn(vals)) if vals else float("nan")


def summarise_real(conversions: list[dict]) -> list[dict]:
    """One row per (path, reference, key): median f0 error over conversions, means of the rest."""
    out = []
    for path in PATHS:
        for kind in REFERENCE_KINDS:
            for mode in KEY_MODES:
                rs = [r for r in conversions if (r["path"], r["reference"], r["key"]) == (path, kind, mode)]
                if not rs:
                    continue
                s = {"path": path, "reference": kind, "key": mode, "n": len(rs),
                     "f0_cents_median": _aggregate(rs, "f0_cents_median", np.median)}
                s.update({k: _aggregate(rs, k, np.mean) for k in MEAN_METRICS})
                out.append(s)
    return out


def _inputs(real_dir: Path, plan: list[dict], ref_seconds: tuple[float, float], live: bool) -> dict:
    inputs = {"real_dir": str(real_dir), "split": "heldout", "pairs": plan, "ref_seconds": list(ref_seconds),
              "live": live,
              "target_similarity": "cosine with the mean d-vector of the target's other held-out singing clips",
              "source_similarity": "cosine with the d-vector of the source clip",
              "target_gain": "sim_target(output) - sim_target(unconverted source)",
              "expected_f0": "Harvest f0 of the source x key shift (Harvest f0 of the output against it)",
              "register_key": f"round(12 log2(median f0 of reference / of source)), within +-{MAX_REGISTER_KEY}",
              "level_db": "active level of the output minus that of the source"}
    if live:
        from engine.session_config import SessionConfig

        d = SessionConfig()
        inputs["live_session"] = {"block_ms": d.block_ms, "gate_db": d.gate_db, "steps": d.steps,
                                  "input_gain": "the offline level normalisation's gain for the file"}
    return inputs


def evaluate_real(real_dir: str | Path, model: str | Path | None = None, vocoder: str = "nsf",
                  device: str | None = None, pairs: int = 12, live: bool = True,
                  ref_seconds: tuple[float, float] = (3, 10), progress: bool = True,
                  system: tuple[str, int] = ("student", 1), retrieval: float = 0.0, adapt: int = 0) -> dict:
    """The fixed held-out real-voice evaluation of a MANIFEST.tsv folder (see the module doc). `system`
    (sampler, steps) and `retrieval` apply to the offline path; the live path runs only for the live
    default (the one-step student, no retrieval). `adapt` > 0: every conversion by the model adapted to its
    reference clip for that many steps (`convert --adapt`)."""
    real_dir = Path(real_dir)
    min_s, max_s = float(ref_seconds[0]), float(ref_seconds[1])
    if pairs < 1:
        raise ComoliveError(f"pairs must be at least 1, got {pairs}")
    if not 0 < min_s <= max_s:
        raise ComoliveError(f"ref_seconds must be (shortest, longest) with 0 < shortest <= longest, got {ref_seconds}")
    plan = plan_pairs(manifest_rows(real_dir), pairs, (min_s, max_s))
    notes = [] if len(plan) == pairs else [f"{pairs} pairs asked for; the held-out rows give {len(plan)}"]
    if live and (tuple(system) != ("student", 1) or retrieval):
        live = False
        notes.append("live rows are for the one-step student without retrieval: offline rows only")
    meter = RealMeter(real_dir, model, vocoder, device, notes, tuple(system), float(retrieval), adapt)
    total = sum(2 * len(p["references"]) + (2 if live else 0) for p in plan)
    bar = tqdm(total=total, desc="real-voice eval", unit="conv", disable=not progress, dynamic_ncols=True,
               file=sys.stderr)
    conversions = []
    for p in plan:
        conversions += _pair_rows(meter, p, live, max_s, bar)
    bar.close()
    doc = {"mode": "real", "model": str(model or "embedded default"), "vocoder": meter.conv.vocoder.name,
           "system": f"{system[0]}:{system[1]}", "retrieval": float(retrieval), "adapt_steps": int(adapt),
           "device": str(meter.conv.device), "inputs": _inputs(real_dir, plan, (min_s, max_s), live),
           "notes": notes, "summary": summarise_real(conversions), "conversions": conversions}
    return clean_numbers(doc)


def print_real_report(doc: dict) -> None:
    pairs = [{"pair": p["pair"], "source": p["source"], "target": p["target_speaker"],
              "singing_ref": p["references"].get("singing", ""), "speech_ref": p["references"].get("speech", "")}
             for p in doc["inputs"]["pairs"]]
    print_table(pairs, ("pair", "source", "target", "singing_ref", "speech_ref"),
                f"held-out real voices of {doc['inputs']['real_dir']}: {len(pairs)} pairs")
    print_table(doc["summary"], SUMMARY_COLUMNS,
                f"{len(doc['conversions'])} conversions (model {doc['model']}, vocoder {doc['vocoder']}, "
                f"{doc['device']}); f0_cents: median over conversions, the rest: means", headers=HEADERS)
    for n in doc["notes"]:
        print(f"note: {n}")
