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
  - Paths: "offline" is engine.converter.Converter; "live" (singing reference only) is the streaming
    session fed the whole file block by block (engine.stream_session.run_offline, the computation the
    live loop and `stream` run), at the session's default block and noise gate, with the input gain the
    offline level normalisation computes for the file (a singer whose input level is set right).
  - level_db: active level of the output minus that of the source (0 = the loudness is kept).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from engine.converter import Converter
from engine.dnsmos import DNSMOS
from engine.eval_schema import clean_numbers
from engine.loudness_norm import active_level_db, normalize_level
from engine.metrics import cents_error, cosine, expected_f0
from engine.pitch import make_pitch_extractor
from engine.reference import Reference, reference_from_audio
from engine.speaker import SpeakerEncoder
from engine.tables import print_table
from models.audio_io import load_audio
from models.errors import AudioInputError, ComoliveError

MANIFEST = "MANIFEST.tsv"
NEEDED_COLUMNS = ("path", "split", "kind", "speaker")
REFERENCE_KINDS = ("singing", "speech")
KEY_MODES = ("0", "register")
PATHS = ("offline", "live")
MAX_REGISTER_KEY = 12
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


def heldout_rows(real_dir: str | Path) -> list[dict]:
    """The manifest's split "heldout" rows, sorted by path ("seconds" as a number); other rows are dropped
    as they are read."""
    real_dir = Path(real_dir)
    manifest = real_dir / MANIFEST
    if not manifest.is_file():
        raise ComoliveError(f"{real_dir}: no {MANIFEST} (expected a real-voice folder: one row per clip with "
                            f"{', '.join(NEEDED_COLUMNS)}, ...)")
    lines = manifest.read_text(encoding="utf-8").splitlines()
    head = lines[0].split("\t") if lines else []
    missing = [c for c in NEEDED_COLUMNS if c not in head]
    if missing:
        raise ComoliveError(f"{manifest}: needs the columns {', '.join(NEEDED_COLUMNS)} (missing {', '.join(missing)})")
    rows = []
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        if len(row) == len(head) and row["split"] == "heldout":
            row["seconds"] = _seconds(real_dir, row)
            rows.append(row)
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


def register_key(ref_f0: float, source_f0: float) -> float:
    """Whole semitones from the source's median f0 to the reference's, within +-MAX_REGISTER_KEY."""
    if ref_f0 <= 0 or source_f0 <= 0:
        return 0.0
    key = float(np.round(12.0 * np.log2(ref_f0 / source_f0)))
    return float(np.clip(key, -MAX_REGISTER_KEY, MAX_REGISTER_KEY)) + 0.0  # + 0.0: no -0.0


def _median_f0(f0: np.ndarray) -> float:
    return float(np.median(f0[f0 > 0])) if (f0 > 0).any() else 0.0
