"""The JSON document `main.py eval --json F` writes: its fields, their meaning, and a checker.

Version 1:
  {"schema": "comolive-eval", "version": 1,
   "mode": "parallel" | "folder",
   "model": str, "decoders": ["student", ...], "device": str,
   "inputs": {...}            # corpus, or source_dir / voice / ref_dir / key, and how references were made
   "systems": [str],          # requested systems, "SAMPLER:STEPS"
   "notes": [str],            # what was skipped and why (e.g. a student-only model has no teacher)
   "metrics": {key: description},   # every metric key below, explained
   "rows": [{"file": str, "system": str, "target": str, "key": float, <metric>: float | null, ...}],
   "transcripts": {file: {system: str}},   # when CER is measured
   "summary": [{"system": str, "n": int, <metric>: float | null, ...}],
   "plots": [str]}            # PNG paths, when --plots was given
Non-finite numbers are written as null. Reference rows (the unchanged source, the vocoder's
copy-synthesis of the ground truth) are systems too, so every comparison sits in one table.
"""
from __future__ import annotations

import math

from models.errors import ComoliveError

SCHEMA = "comolive-eval"
VERSION = 1

METRICS = {
    "f0_cents_median": "median |cents| between output f0 and expected f0 (source f0 x key shift), frames voiced in both",
    "f0_gross_error_rate": "fraction of those frames more than 50 cents off",
    "vuv_agreement": "fraction of frames where output and expected agree on voiced/unvoiced",
    "mcd_db": "mel-cepstral distortion (dB) against the ground-truth rendition (parallel split only)",
    "sim_target": "cosine of resemblyzer d-vectors: output vs target-voice reference",
    "sim_source": "cosine: output vs source-singer reference",
    "sim_margin": "sim_target - sim_source (> 0: the output sounds more like the target than the source)",
    "dnsmos_sig": "DNSMOS P.835 speech signal quality (1..5)",
    "dnsmos_bak": "DNSMOS P.835 background noise quality (1..5)",
    "dnsmos_ovr": "DNSMOS P.835 overall quality (1..5)",
    "dnsmos_p808": "DNSMOS P.808 overall quality (1..5)",
    "cer": "character error rate of the output's Whisper transcript against the source's transcript",
    "stream_diff_db": "energy of (live session output, 40 ms blocks - offline Converter output) relative to the "
                      "offline output, dB (-200: identical)",
    "stream_lag_ms": "lag of the live output against the offline output at the cross-correlation peak (> 0: later "
                     "than the declared latency), ms",
    "stream_block_diff_db": "the same for the live session at 25 ms vs 40 ms blocks (streaming == offline of the "
                            "same streaming computation)",
    "compute_s": "seconds of compute for the conversion (features + decoder + vocoder)",
    "rtf": "compute_s / seconds of audio",
}

ROW_REQUIRED = ("file", "system")
TOP_REQUIRED = {"schema": str, "version": int, "mode": str, "model": str, "decoders": list, "device": str,
                "inputs": dict, "systems": list, "notes": list, "metrics": dict, "rows": list, "summary": list}


def clean_numbers(obj):
    """Replace NaN/inf by None (JSON has no such numbers) and numpy scalars by Python ones."""
    if isinstance(obj, dict):
        return {k: clean_numbers(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_numbers(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def validate(doc: dict) -> None:
    """Raise ComoliveError naming the first field that breaks the schema."""
    if not isinstance(doc, dict):
        raise ComoliveError("eval report: not a JSON object")
    for key, typ in TOP_REQUIRED.items():
        if key not in doc:
            raise ComoliveError(f"eval report: missing field '{key}'")
        if not isinstance(doc[key], typ):
            raise ComoliveError(f"eval report: '{key}' should be {typ.__name__}, got {type(doc[key]).__name__}")
    if doc["schema"] != SCHEMA or doc["version"] != VERSION:
        raise ComoliveError(f"eval report: schema {doc['schema']!r} v{doc['version']} is not {SCHEMA!r} v{VERSION}")
    if doc["mode"] not in ("parallel", "folder"):
        raise ComoliveError(f"eval report: mode {doc['mode']!r} is not 'parallel' or 'folder'")
    for where, rows, required in (("rows", doc["rows"], ROW_REQUIRED), ("summary", doc["summary"], ("system", "n"))):
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ComoliveError(f"eval report: {where}[{i}] is not an object")
            for k in required:
                if k not in row:
                    raise ComoliveError(f"eval report: {where}[{i}] has no '{k}'")
            for k, v in row.items():
                if k in METRICS and v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                    raise ComoliveError(f"eval report: {where}[{i}].{k} is not a finite number or null")
    unknown = {k for r in doc["rows"] for k in r} - set(METRICS) - {"file", "system", "target", "source", "key",
                                                                     "seconds"}
    if unknown:
        raise ComoliveError(f"eval report: undocumented row fields {sorted(unknown)}")
