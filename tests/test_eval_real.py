"""The held-out real-voice evaluation (evaluation/eval_real.py) on a tiny MANIFEST.tsv folder of synthetic
voices: a pair list fixed by the manifest alone, the expected conversions and summary rows, strict JSON,
and one clear error for a folder that cannot be evaluated.

Real parts: the embedded default model, the hn vocoder, Harvest, resemblyzer and DNSMOS.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation.eval_real import SUMMARY_COLUMNS, evaluate_real, manifest_rows, plan_pairs, print_real_report
from models.errors import ComoliveError
from tests.helpers import harmonic

SR = 44100
HEADER = ("path", "split", "kind", "speaker", "language", "sample_rate", "seconds", "source", "licence")


def voice(f0: float, n_harm: int, seconds: float = 3.2, seed: int = 0) -> np.ndarray:
    """A sung vowel at f0 with syllable-rate loudness changes (a steady tone is not voice to webrtcvad);
    fewer harmonics = a darker spectral tilt."""
    x = harmonic(f0, seconds, SR, n_harm=n_harm, vibrato_cents=40)
    t = np.arange(len(x)) / SR
    noise = 0.003 * np.random.default_rng(seed).standard_normal(len(x))
    return (x * (0.55 - 0.45 * np.cos(2 * np.pi * 4.0 * t)) + noise).astype(np.float32)


def write_real(root: Path, clips: list[tuple[str, str, str, str, np.ndarray | None]]) -> Path:
    """A real-voice folder: (path, split, kind, speaker, audio) rows; None audio = a row without a file."""
    lines = ["\t".join(HEADER)]
    for path, split, kind, speaker, wav in clips:
        if wav is not None:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(root / path), wav, SR, format="FLAC")
        seconds = 0.0 if wav is None else len(wav) / SR
        lines.append("\t".join((path, split, kind, speaker, "en", str(SR), f"{seconds:.2f}", "test", "CC0")))
    (root / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    """Two singers (a: low and dark, b: high and bright), two sung clips each, one spoken clip of b, and a
    train row whose file does not exist (the evaluation must never touch it)."""
    return write_real(tmp_path_factory.mktemp("real"), [
        ("heldout/a/a1.flac", "heldout", "singing", "a", voice(220.0, 6, seed=1)),
        ("heldout/a/a2.flac", "heldout", "singing", "a", voice(233.0, 6, seed=2)),
        ("heldout/b/b1.flac", "heldout", "singing", "b", voice(330.0, 30, seed=3)),
        ("heldout/b/b2.flac", "heldout", "singing", "b", voice(311.0, 30, seed=4)),
        ("heldout/b/b_speech.flac", "heldout", "speech", "b", voice(180.0, 30, seed=5)),
        ("train/c/c1.flac", "train", "singing", "c", None),
    ])


def test_pairs_are_fixed_by_the_heldout_rows(real_dir):
    rows = manifest_rows(real_dir)
    assert {r["split"] for r in rows} == {"heldout"} and "c" not in {r["speaker"] for r in rows}
    plan = plan_pairs(rows, 2)
    assert plan == plan_pairs(manifest_rows(real_dir), 2)
    assert [(p["source"], p["target_speaker"]) for p in plan] == [("heldout/a/a1.flac", "b"),
                                                                  ("heldout/b/b1.flac", "a")]
    assert plan[0]["references"] == {"singing": "heldout/b/b1.flac", "speech": "heldout/b/b_speech.flac"}
    assert plan[0]["measure"] == ["heldout/b/b2.flac"] and plan[1]["references"] == {"singing": "heldout/a/a1.flac"}
    assert plan_pairs(rows, 5) == plan  # two singers give two ordered pairs, no more


def test_pair_rules_short_references_and_round_robin():
    def row(path, speaker, seconds, kind="singing"):
        return {"path": path, "speaker": speaker, "seconds": seconds, "kind": kind}

    rows = [row("x1", "x", 2.0), row("x2", "x", 5.0), row("x3", "x", 6.0), row("xs", "x", 2.5, "speech"),
            row("y1", "y", 4.0), row("z1", "z", 4.0), row("z2", "z", 4.0)]
    plan = plan_pairs(rows, 6)
    # y has one clip: never a target; x's 2 s clip is no reference (measured against instead), nor its 2.5 s speech
    # shift 1 (x->y skipped, y->z, z->x), then shift 2 (x->z, y->x, z->y skipped); 4 pairs exist, not 6
    assert [(p["source"], p["target_speaker"]) for p in plan] == [("y1", "z"), ("z1", "x"), ("x1", "z"), ("y1", "x")]
    x = next(p for p in plan if p["target_speaker"] == "x")
    assert x["references"] == {"singing": "x2"} and x["measure"] == ["x1", "x3"]


@pytest.mark.slow
def test_evaluate_real_rows_keys_and_report(real_dir, capsys):
    doc = evaluate_real(real_dir, vocoder="hn", device="cpu", pairs=2, live=False, progress=False)
    json.dumps(doc, allow_nan=False)
    assert doc["mode"] == "real" and doc["inputs"]["pairs"] == plan_pairs(manifest_rows(real_dir), 2)
    got = {(r["pair"], r["path"], r["reference"], r["key"]): r["semitones"] for r in doc["conversions"]}
    # a 220 -> 330 Hz singer is 7 semitones up, the 180 Hz speech 3 down; the way back 7 down
    assert got == {(0, "offline", "singing", "0"): 0.0, (0, "offline", "singing", "register"): 7.0,
                   (0, "offline", "speech", "0"): 0.0, (0, "offline", "speech", "register"): -3.0,
                   (1, "offline", "singing", "0"): 0.0, (1, "offline", "singing", "register"): -7.0}
    for r in doc["conversions"]:
        assert 0.0 < r["dnsmos_ovrl"] <= 5.0 and 0.0 < r["source_dnsmos_ovrl"] <= 5.0
        assert -1.0 <= r["sim_target"] <= 1.0 and -1.0 <= r["sim_source"] <= 1.0
        assert 0.0 <= r["vuv_agreement"] <= 1.0 and 0.0 <= r["f0_cents_median"] < 50.0 and abs(r["level_db"]) < 20.0
    # the gain is measured from the unconverted source's own similarity to the target: one value per pair
    for pair in (0, 1):
        base = {round(r["sim_target"] - r["target_gain"], 6) for r in doc["conversions"] if r["pair"] == pair}
        assert len(base) == 1
    summary = {(s["path"], s["reference"], s["key"]): s for s in doc["summary"]}
    assert {k: s["n"] for k, s in summary.items()} == {
        ("offline", "singing", "0"): 2, ("offline", "singing", "register"): 2,
        ("offline", "speech", "0"): 1, ("offline", "speech", "register"): 1}
    assert all(set(SUMMARY_COLUMNS) <= set(s) for s in doc["summary"])
    print_real_report(doc)
    out = capsys.readouterr().out
    assert "2 pairs" in out and "tgt_gain" in out and "register" in out and "b_speech" in out


@pytest.mark.slow
def test_adapted_decoder_rows_offline_and_live(real_dir, tmp_path):
    """`eval --real DIR --adapt N`: each reference clip gets its adapted model; offline and live rows use it."""
    import main

    out = tmp_path / "adapted.json"
    assert main.main(["eval", "--real", str(real_dir), "--pairs", "1", "--adapt", "1", "--vocoder", "hn",
                      "--device", "cpu", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["adapt_steps"] == 1
    paths = {(r["path"], r["reference"]) for r in doc["conversions"]}
    assert paths == {("offline", "singing"), ("live", "singing"), ("offline", "speech")}
    assert all(np.isfinite(r["target_gain"]) and 0.0 < r["dnsmos_ovrl"] <= 5.0 for r in doc["conversions"])


def test_bad_folders_are_one_clear_error(tmp_path):
    with pytest.raises(ComoliveError, match="no MANIFEST.tsv"):
        evaluate_real(tmp_path, vocoder="hn", live=False, progress=False)
    one = write_real(tmp_path / "one", [("h/a1.flac", "heldout", "singing", "a", voice(220.0, 6)),
                                        ("h/b1.flac", "train", "singing", "b", voice(330.0, 30)),
                                        ("h/c1.flac", "heldout", "speech", "c", voice(180.0, 30))])
    with pytest.raises(ComoliveError, match="at least two singers"):
        evaluate_real(one, vocoder="hn", live=False, progress=False)
    (tmp_path / "one" / "MANIFEST.tsv").write_text("path\tsplit\nx\theldout\n")
    with pytest.raises(ComoliveError, match="needs the columns"):
        evaluate_real(tmp_path / "one", vocoder="hn", live=False, progress=False)
