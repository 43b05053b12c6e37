"""Evaluation metrics on cases with known answers, the JSON report schema, and `main.py eval` end to end.

Real parts throughout: FCPE pitch, WORLD MCD, resemblyzer, DNSMOS's ONNX models from speechmos, the
bundled Whisper-tiny, MBROLA renditions from a tiny corpus, the embedded default model.
"""
from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from evaluation import eval_schema
from evaluation.metrics import (best_lag, cents_error, character_error_rate, cosine, difference_db, edit_distance, expected_f0,
                            mel_cepstral_distortion, normalise_text)
from evaluation.tables import format_table, markdown_table
from main import main
from models.errors import ComoliveError
from tests.helpers import harmonic

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo_phrase.wav"
SR = 22050
VOICES = ["us1", "de5"]  # two voices of the default model, male and female: a clear speaker swap


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from training.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus") / "c"
    build_corpus(out, seed=3, n_melodies=2, voices=VOICES, heldout_fraction=0.5, progress=False, workers=1,
                 speech=False)
    return out


@pytest.fixture(scope="module")
def pitch():
    from engine.pitch import make_pitch_extractor

    return make_pitch_extractor("fcpe", device="cpu")


def _f0(pitch, wav, sr=SR):
    return pitch.extract_from(wav, sr)


# ------------------------------------------------------------------------------------ f0 fidelity
def test_cents_error_of_a_track_against_itself_is_zero():
    f0 = np.array([0, 0, 220, 230, 240, 0, 250], float)
    r = cents_error(f0, f0)
    assert r["f0_cents_median"] == 0.0 and r["f0_gross_error_rate"] == 0.0 and r["vuv_agreement"] == 1.0


def test_cents_error_known_offset_and_voicing_disagreement():
    ref = np.array([0, 200, 200, 300, 400, 0, 0, 0], float)
    out = ref * 2 ** (37 / 1200)
    out[6] = 150.0  # voiced where the reference is not: 1 of 8 frames disagree
    r = cents_error(out, ref)
    assert r["f0_cents_median"] == pytest.approx(37.0, abs=1e-9)
    assert r["vuv_agreement"] == pytest.approx(7 / 8)
    assert r["f0_gross_error_rate"] == 0.0


def test_expected_f0_applies_the_key_shift():
    f0 = np.array([0.0, 220.0, 440.0])
    assert np.allclose(expected_f0(f0, 12), [0.0, 440.0, 880.0])
    assert np.allclose(expected_f0(f0, -2), f0 * 2 ** (-2 / 12))


def test_measured_tone_against_itself_and_shifted_by_known_cents(pitch):
    tone = harmonic(220.0, 2.0, SR, vibrato_cents=20)
    f0 = _f0(pitch, tone)
    assert cents_error(f0, f0)["f0_cents_median"] == 0.0
    shifted = harmonic(220.0 * 2 ** (37 / 1200), 2.0, SR, vibrato_cents=20)
    r = cents_error(_f0(pitch, shifted), f0)
    assert r["f0_cents_median"] == pytest.approx(37.0, abs=3.0)
    assert r["vuv_agreement"] > 0.95
    # a tone two semitones up is what a +2 key shift expects: near zero error against source x key
    up = harmonic(220.0 * 2 ** (2 / 12), 2.0, SR, vibrato_cents=20)
    assert cents_error(_f0(pitch, up), expected_f0(f0, 2))["f0_cents_median"] < 3.0


# ------------------------------------------------------------------------------------------- MCD
def test_mcd_of_a_signal_against_itself_is_zero_and_grows_with_difference():
    a = harmonic(200.0, 1.5, SR)
    assert mel_cepstral_distortion(a, a, SR) == 0.0
    brighter = harmonic(200.0, 1.5, SR, n_harm=3)  # same f0, different spectral envelope
    assert mel_cepstral_distortion(brighter, a, SR) > 1.0


# --------------------------------------------------------------------------- difference, CER, tables
def test_difference_db_known_values():
    x = harmonic(300.0, 0.5, SR)
    assert difference_db(x, x) == -200.0
    assert difference_db(0.9 * x, x) == pytest.approx(-20.0, abs=1e-4)  # error is 0.1 x: 20 log10 0.1
    assert difference_db(np.zeros(10), np.zeros(10)) == -200.0
    assert math.isinf(difference_db(np.ones(10), np.zeros(10)))
    noise = np.random.default_rng(1).standard_normal(4000)
    assert best_lag(np.r_[np.zeros(33), noise[:-33]], noise, 100) == 33  # 33 samples late
    assert best_lag(noise[7:], noise, 100) == -7


def test_character_error_rate_identical_and_known_edits():
    assert character_error_rate("Hello, world!", "hello world") == 0.0  # case and punctuation do not count
    assert edit_distance("kitten", "sitting") == 3
    assert character_error_rate("hello world", "hello word") == pytest.approx(1 / 11)
    assert character_error_rate("abc", "") == 1.0
    assert math.isnan(character_error_rate("", "anything"))
    assert normalise_text("  It's   A TEST. ") == "it's a test"


def test_table_printer_aligns_and_drops_empty_columns():
    rows = [{"system": "student 1-step", "n": 2, "mcd_db": 4.5}, {"system": "source", "n": 2, "x": float("nan")}]
    text = format_table(rows, ["system", "n", "mcd_db", "x", "never"], title="t")
    lines = text.splitlines()
    assert lines[1] == "t" and "never" not in text
    assert lines[2].split() == ["system", "n", "mcd_db", "x"]
    assert lines[3].startswith("-" * len("student 1-step") + "  ")
    assert lines[5].split() == ["source", "2", "-"]
    md = markdown_table(rows, ["system", "mcd_db"])
    assert md.splitlines()[0] == "| system | mcd_db |" and "| student 1-step | 4.500 |" in md


# ------------------------------------------------------------------------------------------ Whisper
def test_whisper_token_strings_decode_to_text():
    from evaluation.transcribe import tokens_to_text

    assert tokens_to_text(["<|startoftranscript|>", "ĠHello", ",", "Ġworld", "<|endoftext|>"]) == "Hello, world"
    assert tokens_to_text(["Ġcaf", "Ã©"]) == "café"  # multi-byte UTF-8 split over tokens


def test_transcriber_reads_synthetic_speech():
    from evaluation.transcribe import Transcriber
    from models.audio_io import load_audio

    text = "the quick brown fox jumps over the lazy dog"
    tr = Transcriber(device="cpu")
    with _tmp_wav() as path:
        subprocess.run(["flite", "-t", text, "-o", str(path)], check=True)
        wav, sr = load_audio(path)
    got = tr.transcribe(wav, sr)
    assert character_error_rate(text, got) < 0.25, got
    assert tr.transcribe(wav, sr) == got  # deterministic


class _tmp_wav:
    def __enter__(self):
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        return Path(self.dir.name) / "x.wav"

    def __exit__(self, *exc):
        self.dir.cleanup()


# ------------------------------------------------------------------------------------------- DNSMOS
@pytest.mark.slow
def test_dnsmos_range_and_ranks_voice_above_white_noise():
    from evaluation.dnsmos import DNSMOS
    from models.audio_io import load_audio

    d = DNSMOS()
    voice, sr = load_audio(DEMO)
    noise = (0.1 * np.random.default_rng(0).standard_normal(len(voice))).astype(np.float32)
    s_voice, s_noise = d.score(voice, sr), d.score(noise, sr)
    for s in (s_voice, s_noise):
        assert set(s) == {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovr", "dnsmos_p808"}
        assert all(1.0 <= v <= 5.0 for v in s.values()), s
    assert s_voice["dnsmos_ovr"] > s_noise["dnsmos_ovr"] + 0.5
    assert s_voice["dnsmos_p808"] > s_noise["dnsmos_p808"]
    with pytest.raises(ComoliveError, match="too short"):
        d.score(voice[:100], sr)


# ------------------------------------------------------------------------------ speaker similarity
def test_speaker_swap_between_two_corpus_voices(corpus):
    from engine.speaker import SpeakerEncoder
    from models.audio_io import load_audio

    spk = SpeakerEncoder(device="cpu")
    emb = {(split, v): spk.embed(*load_audio(next((corpus / split / v).glob("*.wav"))))
           for split in ("train", "heldout") for v in VOICES}
    a, b = VOICES
    # a held-out clip is closer to its own voice's reference (a train clip) than to the other voice's
    assert cosine(emb["heldout", a], emb["train", a]) > cosine(emb["heldout", a], emb["train", b]) + 0.05
    assert cosine(emb["heldout", b], emb["train", b]) > cosine(emb["heldout", b], emb["train", a]) + 0.05


# ------------------------------------------------------------------------------------- JSON schema
def _minimal_doc() -> dict:
    return {"schema": eval_schema.SCHEMA, "version": eval_schema.VERSION, "mode": "folder", "model": "m",
            "decoders": ["student"], "device": "cpu", "inputs": {}, "systems": ["student:1"], "notes": [],
            "metrics": dict(eval_schema.METRICS),
            "rows": [{"file": "a.wav", "system": "student 1-step", "mcd_db": None, "cer": 0.5}],
            "summary": [{"system": "student 1-step", "n": 1, "cer": 0.5}]}


def test_schema_accepts_a_valid_report_and_names_what_breaks_it():
    doc = _minimal_doc()
    eval_schema.validate(doc)
    json.loads(json.dumps(doc))
    for breaker, message in ((lambda d: d.pop("rows"), "missing field 'rows'"),
                             (lambda d: d.update(version=99), "is not"),
                             (lambda d: d.update(mode="live"), "mode"),
                             (lambda d: d["rows"][0].update(cer=float("nan")), "not a finite number"),
                             (lambda d: d["rows"][0].update(mystery=1.0), "undocumented"),
                             (lambda d: d["summary"][0].pop("n"), "has no 'n'")):
        bad = json.loads(json.dumps(doc))
        breaker(bad)
        with pytest.raises(ComoliveError, match=message):
            eval_schema.validate(bad)


def test_clean_numbers_makes_strict_json():
    out = eval_schema.clean_numbers({"a": [float("nan"), np.float32(1.5), float("-inf")], "b": np.int64(3)})
    assert out == {"a": [None, 1.5, None], "b": 3}
    json.dumps(out, allow_nan=False)


# --------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_eval_parallel_split_on_a_tiny_corpus(corpus):
    from evaluation.evaluate import COPY_ROW, SOURCE_ROW, evaluate_parallel

    doc = evaluate_parallel(corpus, systems=[("student", 1)], max_pairs=1, progress=False,
                            skip=("dnsmos", "cer"), max_seconds=4.0)
    eval_schema.validate(doc)
    rows = {r["system"]: r for r in doc["rows"]}
    assert set(rows) == {SOURCE_ROW, COPY_ROW, "student 1-step"}
    src, copy = rows[SOURCE_ROW], rows[COPY_ROW]
    # known speaker swap: the unchanged source is the other voice, the copy-synthesis is the target's own
    assert src["sim_margin"] < 0 < copy["sim_margin"]
    assert src["sim_source"] > src["sim_target"]
    # the unchanged source sings |key| semitones away from what the target should sing
    assert src["f0_cents_median"] == pytest.approx(100 * abs(src["key"]), abs=15)
    assert copy["f0_cents_median"] < 40 and copy["mcd_db"] < src["mcd_db"]
    conv = rows["student 1-step"]
    assert conv["rtf"] > 0
    # the live session cut into 25 ms or 40 ms blocks computes the same samples (gate off)
    assert conv["stream_block_diff_db"] < -60
    assert abs(conv["stream_lag_ms"]) <= 20 and math.isfinite(conv["stream_diff_db"])


@pytest.mark.slow
def test_main_eval_source_dir_end_to_end(tmp_path, capsys):
    wav, sr = sf.read(str(DEMO), dtype="float32")
    src = tmp_path / "src"
    src.mkdir()
    sf.write(str(src / "one.wav"), wav[: int(2.0 * sr)], sr)
    sf.write(str(src / "two.wav"), wav[int(4.0 * sr): int(6.0 * sr)], sr)
    (src / "broken.wav").write_text("not audio")
    out_json, plots = tmp_path / "r.json", tmp_path / "plots"
    import shutil

    from models.voice_model import DEFAULT_MODEL

    for ext in (".safetensors", ".json"):  # the student without its teacher file beside it
        shutil.copy(DEFAULT_MODEL.with_suffix(ext), (tmp_path / "solo").with_suffix(ext))
    code = main(["eval", "--source-dir", str(src), "--voice", "us1", "--key", "2", "--systems",
                 "teacher:50,student:1", "--skip", "stream", "--json", str(out_json), "--plots", str(plots),
                 "--device", "cpu", "--model", str(tmp_path / "solo")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    doc = json.loads(out_json.read_text())
    eval_schema.validate(doc)
    assert doc["mode"] == "folder" and doc["inputs"]["files"] == 2 and doc["decoders"] == ["student"]
    assert any("teacher 50-step skipped" in n for n in doc["notes"])  # student-only model: a note, no crash
    assert any("broken.wav" in n for n in doc["notes"])
    assert {(r["file"], r["system"]) for r in doc["rows"]} == {
        (f, s) for f in ("one.wav", "two.wav") for s in ("source (unchanged)", "student 1-step")}
    for r in doc["rows"]:
        assert 1.0 <= r["dnsmos_ovr"] <= 5.0 and r["key"] == 2.0
        assert r["sim_source"] == pytest.approx(1.0, abs=1e-5) or r["system"] != "source (unchanged)"
    conv = [r for r in doc["rows"] if r["system"] == "student 1-step"]
    assert all(r["cer"] is not None and r["cer"] >= 0 for r in conv)
    assert set(doc["transcripts"]) == {"one.wav", "two.wav"}
    # the unchanged source misses a +2 key shift by 200 cents
    assert all(r["f0_cents_median"] == pytest.approx(200, abs=10) for r in doc["rows"]
               if r["system"] == "source (unchanged)")
    names = sorted(Path(p).name for p in doc["plots"])
    assert names == ["metrics.png", "pitch_one_wav.png", "pitch_two_wav.png", "spec_one_wav.png",
                     "spec_two_wav.png"]
    assert all((plots / n).stat().st_size > 5000 for n in names)
    assert "per system" in printed.out and "student 1-step" in printed.out


@pytest.mark.parametrize("argv, message", [
    (["eval", "--source-dir", "X"], "needs --voice"),
    (["eval"], "needs a CORPUS"),
    (["eval", "--source-dir", "{src}", "--voice", "nobody", "--skip", "dnsmos,cer,stream"], "unknown voice"),
    (["eval", "--source-dir", "{src}", "--voice", "us1", "--skip", "smell"], "unknown metric"),
    (["eval", "--source-dir", "{src}", "--voice", "us1", "--systems", "student"], "SAMPLER:STEPS"),
    (["eval", "--source-dir", "{empty}", "--voice", "us1"], "no audio files"),
])
def test_eval_bad_input_is_one_clear_error(tmp_path, capsys, argv, message):
    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    wav, sr = sf.read(str(DEMO), dtype="float32")
    sf.write(str(src / "a.wav"), wav[: sr], sr)
    argv = [a.format(src=src, empty=empty) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------- bench report
def test_peak_rss_sees_a_large_allocation():
    from evaluation.bench import PeakRSS

    with PeakRSS() as mem:
        block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
        block += 1.0
        del block
    assert mem.peak - mem.before > 150


def test_bench_overview_collects_every_section_and_the_live_figures(capsys):
    from evaluation.bench import live_rows, overview_rows, print_overview

    report = {"machine": {"peak_rss_mb": 900.0}, "input_seconds": 10.0,
              "features": [{"stage": "pitch fcpe", "s_per_audio_s": 0.03, "p90_s_per_audio_s": 0.04,
                            "peak_rss_mb": 700.0}],
              "model": [{"stage": "decoder student 1 step", "nfe": 1, "s_per_audio_s": 0.006}],
              "vocoder": {"speed": [{"vocoder": "hn", "whole_s_per_s": 0.05, "stream45ms_s_per_s": 0.07,
                                     "whole_cpu_s_per_s": 0.04}]},
              "live": {"compute": [{"block_ms": 80.0, "vocoder": "hn", "compute_ms_p50": 30.0, "compute_ms_p90": 35.0,
                                    "compute_ms_p99": 50.0, "p99_share_of_block": 0.625}],
                       "jack": [{"block_ms": 80.0, "vocoder": "hn", "declared_ms": 150.0, "measured_ms": 150.5,
                                 "dropouts": 0},
                                {"block_ms": 45.0, "vocoder": "hn", "declared_ms": 120.0, "measured_ms": 121.0,
                                 "dropouts": 3, "compute_ms_p50": 20.0, "compute_ms_p99": 40.0},
                                {"block_ms": 80.0, "vocoder": "hn", "bypass": True, "declared_ms": 150.0,
                                 "measured_ms": 150.0, "dropouts": 0},
                                {"block_ms": 45.0, "vocoder": "hn-causal", "declared_ms": 110.0, "measured_ms": 111.0,
                                 "dropouts": 5}]}}
    stages = [r["stage"] for r in overview_rows(report)]
    assert stages == ["pitch fcpe", "decoder student 1 step", "vocoder hn (whole)", "vocoder hn (stream45ms)"]
    # sorted by block; the bypass row is not a block size of its own; another vocoder is a row of its own
    jack_only, other_vocoder, row = live_rows(report["live"])
    assert row["p99_ms"] == 50.0 and row["measured_latency_ms"] == 150.5 and row["dropouts"] == 0
    assert jack_only == {"block_ms": 45.0, "p50_ms": 20.0, "p99_ms": 40.0, "declared_latency_ms": 120.0,
                         "measured_latency_ms": 121.0, "dropouts": 3}
    assert other_vocoder == {"block_ms": 45.0, "vocoder": "hn-causal", "declared_latency_ms": 110.0,
                             "measured_latency_ms": 111.0, "dropouts": 5}
    assert overview_rows(report)[2]["cpu_s_per_audio_s"] == 0.04
    print_overview(report)
    out = capsys.readouterr().out
    assert "vocoder hn (stream45ms)" in out and "150.5" in out and "process peak RSS: 900 MB" in out
