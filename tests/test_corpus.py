"""The synthetic singing corpus: parallel (sample-aligned) renditions, exact f0, determinism, splits.

Uses the real mbrola binary and voices, music21's chorales, flite and festival (installed by the setup
script); a tiny corpus of 2 melodies x 3 voices is built twice.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpus import mbrola as mb
from training.corpus import pho as pho_text
from training.corpus.build import HOP, SR, add_arguments, build_corpus, n_frames, run
from training.corpus.melodies import german_syllable_phones, register_shift, select_melodies
from models.errors import ComoliveError

VOICES = ["de5", "us2", "nl2"]   # female 22.05 kHz, male 16 kHz, male 16 kHz with a long MBROLA frame


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "a"
    build_corpus(out, seed=3, n_melodies=2, voices=VOICES, heldout_fraction=0.5, progress=False,
                 workers=1, speech=False)
    return out


def _renditions(root: Path):
    """{(split, melody): {voice: (wav, f0, truth)}}"""
    out: dict = {}
    for split in ("train", "heldout"):
        for v in VOICES:
            for js in sorted((root / split / v).glob("*.json")):
                mid = js.name[: -len(".json")]
                wav, sr = sf.read(str(js.with_name(mid + ".wav")), dtype="float32")
                assert sr == SR
                f0 = np.load(js.with_name(mid + ".f0.npy"))
                out.setdefault((split, mid), {})[v] = (wav, f0, json.loads(js.read_text()))
    return out


def _envelope_db(w: np.ndarray, hop: int) -> np.ndarray:
    n = len(w) // hop
    e = np.sqrt((w[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1))
    return 20 * np.log10(e + 1e-4)


def test_renditions_are_sample_aligned(corpus):
    groups = _renditions(corpus)
    assert len(groups) == 2
    for (split, mid), by_voice in groups.items():
        assert set(by_voice) == set(VOICES)
        lengths = {len(w) for w, _, _ in by_voice.values()}
        assert len(lengths) == 1, f"{mid}: renditions differ in length {lengths}"
        ref_wav, ref_f0, _ = by_voice[VOICES[0]]
        for v in VOICES[1:]:
            w, f0, _ = by_voice[v]
            for hop in (HOP, 64):   # model frames (11.6 ms) and 2.9 ms blocks
                a, b = _envelope_db(ref_wav, hop), _envelope_db(w, hop)
                a, b = a - a.mean(), b - b.mean()
                lag = int(np.argmax(np.correlate(a, b, "full"))) - (len(b) - 1)
                assert abs(lag) <= (0 if hop == HOP else 1), f"{mid} {v}: envelope lag {lag} at hop {hop}"
            va, vb = (ref_f0 > 0).astype(float), (f0 > 0).astype(float)
            lag = int(np.argmax(np.correlate(va - va.mean(), vb - vb.mean(), "full"))) - (len(vb) - 1)
            assert lag == 0


def test_f0_ground_truth_is_the_same_melody_for_every_voice(corpus):
    for (split, mid), by_voice in _renditions(corpus).items():
        _, ref, tref = by_voice[VOICES[0]]
        for v in VOICES[1:]:
            _, f0, t = by_voice[v]
            assert np.array_equal(ref > 0, f0 > 0)
            v_ = ref > 0
            cents = 1200 * np.log2(f0[v_] / ref[v_]) - 100 * (t["transposition"] - tref["transposition"])
            # the written pitch targets are equal up to the transposition; only MBROLA's whole-sample
            # periods (up to ~25 cents at 300 Hz / 22 kHz) and the half-period timing differ
            assert np.median(np.abs(cents)) < 12 and np.abs(cents).max() < 60
            assert [p["p"] for p in t["phones"]] == [p["p"] for p in tref["phones"]]
            assert [(p["start"], p["end"]) for p in t["phones"]] == [(p["start"], p["end"]) for p in tref["phones"]]
        sexes = {by_voice[v][2]["voice_sex"]: by_voice[v][2]["transposition"] for v in VOICES}
        assert sexes["female"] - sexes["male"] == 12


def test_f0_ground_truth_matches_the_audio(corpus):
    import pyworld
    for (split, mid), by_voice in _renditions(corpus).items():
        for v, (wav, gt, truth) in by_voice.items():
            assert len(gt) == truth["n_frames"] == n_frames(len(wav)) and gt.dtype == np.float32
            x = wav.astype(np.float64)   # an independent estimate: DIO + StoneMask (harvest agrees, slower)
            f0, t = pyworld.dio(x, SR, f0_floor=60.0, f0_ceil=1000.0, frame_period=1000.0 * HOP / SR)
            f0 = pyworld.stonemask(x, f0, t, SR)[: len(gt)]
            both = (gt > 0) & (f0 > 0)
            assert both.sum() > 0.8 * (gt > 0).sum(), f"{mid} {v}: the tracker finds too few voiced frames"
            err = np.abs(1200 * np.log2(f0[both] / gt[both]))
            assert np.median(err) < 30, f"{mid} {v}: median f0 error {np.median(err):.1f} cents"
            assert np.median(err) < 5, f"{mid} {v}: median f0 error {np.median(err):.1f} cents"  # measured: 1-3


def test_ground_truth_json(corpus):
    for (split, mid), by_voice in _renditions(corpus).items():
        for v, (wav, f0, t) in by_voice.items():
            assert t["melody_id"] == mid and t["voice"] == v and t["split"] == split
            assert t["source_piece"].startswith("bach/") and t["tempo_qpm"] > 0
            assert t["n_samples"] == len(wav) and t["sample_rate"] == SR and t["hop"] == HOP
            ph = t["phones"]
            assert ph[0]["start"] == 0 and abs(ph[-1]["end"] - len(wav) / SR) < 1e-3
            assert all(a["end"] == b["start"] for a, b in zip(ph, ph[1:]))
            assert {p["p"] for p in ph} <= set(mb.INVENTORY) | {mb.SIL}
            for n in t["notes"]:
                if n["midi"] is not None:
                    assert n["midi"] == n["score_midi"] + t["transposition"]
            sung = [n for n in t["notes"] if n["midi"] is not None]
            assert sung[0]["text"]
            # frames inside silences and unvoiced consonants are 0
            for p in ph:
                i0, i1 = int(np.ceil(p["start"] * SR / HOP)), int(np.floor(p["end"] * SR / HOP))
                if not p["voiced"] and i1 > i0:
                    assert np.all(f0[i0:i1] == 0)


def test_build_is_deterministic(corpus, tmp_path):
    other = tmp_path / "b"
    build_corpus(other, seed=3, n_melodies=2, voices=VOICES, heldout_fraction=0.5, progress=False,
                 workers=2, speech=False)
    a = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    b = sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    assert a == b and len(a) == 2 * 3 * 3 + 1
    for rel in a:
        assert (corpus / rel).read_bytes() == (other / rel).read_bytes(), f"{rel} differs"


def test_heldout_melodies_never_in_train(corpus):
    stats = json.loads((corpus / "corpus.json").read_text())
    train, held = stats["splits"]["train"], stats["splits"]["heldout"]
    assert train["melodies"] and held["melodies"]
    assert not set(train["melodies"]) & set(held["melodies"])
    assert not set(train["pieces"]) & set(held["pieces"])
    for split, info in (("train", train), ("heldout", held)):
        for v in VOICES:   # the same melodies for every voice
            got = sorted(p.name[: -len(".wav")] for p in (corpus / split / v).glob("*.wav"))
            assert got == info["melodies"]


def test_corpus_json_stats(corpus):
    s = json.loads((corpus / "corpus.json").read_text())
    assert s["seed"] == 3 and s["sample_rate"] == SR and s["hop"] == HOP
    assert [v["name"] for v in s["voices"]] == VOICES
    assert {v["name"]: v["sex"] for v in s["voices"]} == {"de5": "female", "us2": "male", "nl2": "male"}
    assert "non-commercial" in s["licence"] and "research" in s["licence"]
    assert s["n_melodies"] == 2 and s["dropped"] == []
    for split in ("train", "heldout"):
        sp = s["splits"][split]
        assert sp["files"] == 3 and sp["minutes"] > 0.05
        assert abs(sp["minutes_per_voice"] * 3 - sp["minutes"]) < 1e-2
        assert 0.5 < sp["voiced_fraction"] < 0.98
    assert s["canonical_inventory"]["vowels"] == list(mb.VOWELS)


# ------------------------------------------------------------------------------------------ pieces
def test_every_default_voice_renders_the_canonical_inventory():
    allowed = mb.allowed_diphones(mb.DEFAULT_VOICES)
    assert len(mb.DEFAULT_VOICES) >= 8
    mb.check_voices(mb.DEFAULT_VOICES)
    for v in mb.VOWELS:      # every CV (but j-i, which the Italian voices lack) and VC survives
        for c in mb.CONSONANTS:
            assert (c, v) in allowed or (c, v) == ("j", "i")
            assert (v, c) in allowed
    assert all((mb.SIL, p) in allowed for p in mb.INVENTORY)
    with pytest.raises(ComoliveError, match="br3 lacks"):
        mb.check_voices(["br3"])
    with pytest.raises(ComoliveError, match="unknown MBROLA voice"):
        mb.voice_info("xx9")


def test_f0_ground_truth_formula():
    # constant 150 Hz at 16 kHz: period floor(16000/150) = 106 samples -> 150.94 Hz
    pho = "_ 100 50 150 100 150\na: 400 0 150 100 150\ns 100 0 150 100 150\n_ 100 50 150 100 150\n"
    f0 = pho_text.f0_ground_truth(pho, [False, True, False, False], 16000, 60)
    t = np.arange(60) * HOP / SR
    inside = (t >= 0.1) & (t < 0.5)
    assert np.allclose(f0[inside], 16000 / 106) and np.all(f0[~inside] == 0)


def test_german_lyrics_to_canonical_phonemes():
    assert german_syllable_phones("Schön") == ["S", "e", "n"]
    assert german_syllable_phones("Gott,") == ["g", "o", "t"]
    assert german_syllable_phones("Ein'") == ["a", "i", "n"]
    assert german_syllable_phones("und") == ["u", "n", "t"]            # final devoicing
    assert german_syllable_phones("sprach") == ["S", "p", "r", "a", "S"]
    assert german_syllable_phones("ste", word_initial=False) == ["s", "t", "e"]
    assert german_syllable_phones("Herz") == ["e", "r", "t", "s"]      # h silent, z = t s
    assert set(german_syllable_phones("Höh'")) <= set(mb.INVENTORY)


def test_normalise_keeps_only_diphones_every_voice_knows():
    allowed = mb.allowed_diphones(mb.DEFAULT_VOICES)
    seq = ["_", "a", "b", "t", "S", "l", "i", "j", "n", "o", "o", "_"]
    ph = [mb.Phone(p, 100 * k, 100 * (k + 1)) for k, p in enumerate(seq)]
    out = mb.normalise_phones(ph, allowed)
    assert all((a.p, b.p) in allowed for a, b in zip(out, out[1:]))
    assert out[0].start == 0 and out[-1].end == 100 * len(seq)
    assert all(a.end == b.start for a, b in zip(out, out[1:]))


def test_long_notes_stay_within_mbrola_line_limit():
    m = select_melodies(1, seed=0)[0]
    phones = mb.plan_phones(m)
    long = [mb.Phone("a", 0, 5000)] + [mb.Phone(mb.SIL, 5000, 5300)]
    curve = np.full(5301, 60.0)
    pho = pho_text.write_pho(long, curve, "us1", 0)
    assert max(len(line) for line in pho.splitlines()) < pho_text.MAX_PHO_LINE
    wav, sr = mb.render("us1", pho, 5300)
    assert len(wav) == 5300 * sr // 1000 and np.abs(wav).max() > 0.01
    assert phones and register_shift(m, "female") - register_shift(m, "male") == 12


def test_cli_pair_and_errors(tmp_path):
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "cli"
    stats = run(p.parse_args([str(out), "--seed", "1", "--melodies", "2", "--voices", "it4,de2",
                              "--no-speech", "--quiet", "--workers", "1"]))
    assert [v["name"] for v in stats["voices"]] == ["it4", "de2"]
    assert (out / "corpus.json").exists() and stats["n_melodies"] == 2
    # a rebuild into a previous corpus replaces it; a foreign folder is refused
    run(p.parse_args([str(out), "--melodies", "2", "--voices", "it4", "--no-speech", "--quiet", "--workers", "1"]))
    assert not (out / "train" / "de2").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ComoliveError, match="not empty"):
        build_corpus(foreign, n_melodies=2, voices=["it4"], progress=False, speech=False)
    with pytest.raises(ComoliveError, match="unknown MBROLA voice"):
        build_corpus(tmp_path / "x", n_melodies=2, voices=["zz1"], progress=False, speech=False)


def test_speech_sentences(tmp_path):
    from training.corpus.speech import available_speech_voices, build_speech

    voices = available_speech_voices()
    assert {"flite_slt", "flite_rms", "flite_awb", "festival_kal"} <= set(voices)
    stats = build_speech(tmp_path / "speech", voices=["flite_slt", "festival_kal"],
                         sentences=["A short test sentence."], progress=False)
    assert stats["sample_rate"] == SR and stats["minutes"] > 0
    for v in ("flite_slt", "festival_kal"):
        wav, sr = sf.read(str(tmp_path / "speech" / v / "s00.wav"), dtype="float32")
        assert sr == SR and len(wav) > SR // 2 and np.abs(wav).max() > 0.05
        assert (tmp_path / "speech" / v / "s00.txt").read_text().strip() == "A short test sentence."
