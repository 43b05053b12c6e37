"""Build the synthetic parallel singing corpus: Bach chorale phrases sung by many MBROLA voices.

    OUT/corpus.json                          stats, voices, splits, seed, licence
    OUT/train/<voice>/<melody>.wav           22 050 Hz mono, 16-bit
    OUT/train/<voice>/<melody>.json          ground truth: notes, phonemes, transposition, tempo, ...
    OUT/train/<voice>/<melody>.f0.npy        float32 f0 (Hz, 0 = unvoiced) on frames centred at i*256
    OUT/heldout/<voice>/...                  the same for melodies (whole chorales) never used in train
    OUT/speech/<voice>/sNN.wav|.txt          a few spoken sentences (flite, festival)

Every voice sings every melody from the same plan, so the renditions of a melody are sample-aligned
and their f0 curves equal up to the stored whole-semitone transposition. The build is deterministic:
the same seed gives the same bytes. CLI: `python main.py corpus OUT [--seed S] [--melodies N]
[--voices v1,v2]` (see `add_arguments` / `run`).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from models.audio_io import resample, save_audio
from training.corpus import mbrola as mb
from training.corpus import pho as pho_text
from training.corpus.melodies import Melody, piece_rng, register_shift, select_melodies, stretch_melody
from models.errors import ComoliveError

SR = 22050
HOP = 256
DEFAULT_MELODIES = 16
TARGET_DBFS = -20.0
SPLITS = ("train", "heldout")
FORMAT_VERSION = 1
MAX_ATTEMPTS = 4        # mbrola occasionally "PANIC"s on a timing corner case: re-plan a little slower
RETRY_STRETCH = 0.004


class _Runner:
    """Runs render jobs in up to 2 worker processes (or inline), with one tqdm bar."""

    def __init__(self, workers: int, progress: bool, total: int):
        self.workers = max(1, min(int(workers), 2))
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc="singing", unit="file")
        self.ex = None

    def __enter__(self):
        if self.workers > 1:
            self.ex = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
        return self

    def __exit__(self, *exc):
        if self.ex is not None:
            self.ex.shutdown()
        if self.bar is not None:
            self.bar.close()

    def add(self, n: int) -> None:
        if self.bar is not None:
            self.bar.total += n
            self.bar.refresh()

    def map(self, jobs: list[dict]):
        it = map(_render_job, jobs) if self.ex is None else self.ex.map(_render_job, jobs, chunksize=4)
        for r in it:
            if self.bar is not None:
                self.bar.update(1)
            yield r


def n_frames(n_samples: int, hop: int = HOP) -> int:
    """Frames centred at i*hop for i = 0 .. n_samples // hop (the centred-STFT convention)."""
    return n_samples // hop + 1


def split_melodies(melodies: list[Melody], heldout_fraction: float, seed: int) -> dict[str, list[Melody]]:
    """Held-out melodies by whole source piece (a chorale never spans both splits), drawn from the seed."""
    if not 0.0 <= heldout_fraction < 1.0:
        raise ComoliveError(f"held-out fraction must be in [0, 1), got {heldout_fraction}")
    pieces = sorted({m.piece for m in melodies})
    want = int(round(len(melodies) * heldout_fraction))
    if heldout_fraction > 0 and len(pieces) > 1:
        want = max(want, 1)
    held: set[str] = set()
    count = 0
    for k in np.random.default_rng([int(seed) & 0xFFFFFFFF, 11]).permutation(len(pieces)):
        if count >= want:
            break
        n = sum(m.piece == pieces[k] for m in melodies)
        if len(held) + 1 >= len(pieces):   # keep at least one piece for training
            break
        held.add(pieces[k])
        count += n
    return {"train": [m for m in melodies if m.piece not in held],
            "heldout": [m for m in melodies if m.piece in held]}


def _level_gain(wav: np.ndarray, phones: list[mb.Phone], sr: int) -> float:
    """Gain that brings the sung (non-silent) part to TARGET_DBFS RMS, peak kept under 0.95."""
    mask = np.zeros(len(wav), dtype=bool)
    for p in phones:
        if p.p != mb.SIL:
            mask[int(p.start * sr / 1000):int(p.end * sr / 1000)] = True
    x = wav[mask].astype(np.float64)
    if len(x) == 0 or not np.any(x):
        return 1.0
    g = 10 ** (TARGET_DBFS / 20) / float(np.sqrt((x ** 2).mean()))
    peak = float(np.abs(wav).max())
    return float(min(g, 0.95 / peak)) if peak > 0 else g


def _r(x: float, nd: int = 6) -> float:
    return float(round(float(x), nd))


def _render_job(job: dict) -> dict:
    """Render one (melody, voice) and write its wav/json/f0 files. Runs in a worker process."""
    melody: Melody = job["melody"]
    phones: list[mb.Phone] = job["phones"]
    voice, transpose, out = job["voice"], job["transpose"], Path(job["dir"])
    total_ms = phones[-1].end
    pho = pho_text.write_pho(phones, job["curve"], voice, transpose, f"{melody.id} seed={job['seed']}")
    try:
        wav, native = mb.render(voice, pho, total_ms)
    except Exception as e:  # one bad rendition must not sink the build: report it
        return {"voice": voice, "melody": melody.id, "split": job["split"], "error": str(e)}
    n = int(round(total_ms * SR / 1000))
    w = resample(wav, native, SR)[:n]
    if len(w) < n:
        w = np.concatenate([w, np.zeros(n - len(w), dtype=np.float32)])
    gain = _level_gain(w, phones, SR)
    w = (w * gain).astype(np.float32)
    nf = n_frames(n)
    f0 = pho_text.f0_ground_truth(pho, [p.voiced for p in phones], native, nf, SR, HOP)

    out.mkdir(parents=True, exist_ok=True)
    save_audio(out / f"{melody.id}.wav", w, SR)
    np.save(out / f"{melody.id}.f0.npy", f0)
    info = mb.voice_info(voice)
    syms = [mb.voice_symbol(voice, p.p, phones[k + 1].p if k + 1 < len(phones) else None)
            for k, p in enumerate(phones)]
    truth = {
        "format": FORMAT_VERSION,
        "melody_id": melody.id, "split": job["split"], "voice": voice, "voice_sex": info.sex,
        "voice_language": info.language, "source_piece": melody.piece, "title": melody.title,
        "measures": [melody.first_measure, melody.last_measure], "lyrics_language": melody.language,
        "tempo_qpm": melody.tempo_qpm, "transposition": transpose, "seed": job["seed"],
        "retry_stretch": _r(1.0 + RETRY_STRETCH * job["attempt"]),
        "sample_rate": SR, "hop": HOP, "n_samples": n, "n_frames": nf,
        "duration": _r(n / SR), "native_sample_rate": native, "gain": _r(gain),
        "expression": {k: _r(v) for k, v in job["expression"].items()},
        "notes": [{"start": _r(x.start), "end": _r(x.end), "midi": None if x.is_rest else x.midi + transpose,
                   "score_midi": x.midi, "text": x.text, "syllabic": x.syllabic, "fermata": x.fermata}
                  for x in melody.notes],
        "phones": [{"p": p.p, "symbol": s, "start": _r(p.start / 1000), "end": _r(p.end / 1000),
                    "voiced": p.voiced, "note": p.note} for p, s in zip(phones, syms)],
        "f0": ("f0.npy: float32 Hz per frame, frame i centred at sample i*hop (22050 Hz), 0 = unvoiced; "
               "exact MBROLA pitch: native_sr / floor(native_sr / f) of the written pitch targets"),
        "licence": mb.LICENCE_NOTE,
    }
    (out / f"{melody.id}.json").write_text(json.dumps(truth, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    voiced = int((f0 > 0).sum())
    return {"voice": voice, "melody": melody.id, "split": job["split"], "seconds": n / SR,
            "voiced_frames": voiced, "frames": nf}


def _clear(out_dir: Path) -> None:
    """Make `out_dir` ready: create it, or clear a previous corpus (only the parts this builder writes)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ComoliveError(f"{out_dir}: exists and is not a folder")
    if out_dir.exists():
        ours = {"corpus.json", *SPLITS, "speech"}
        entries = {p.name for p in out_dir.iterdir()}
        if entries and not (out_dir / "corpus.json").exists():
            raise ComoliveError(f"{out_dir}: folder is not empty and holds no corpus; choose an empty or new folder")
        if entries - ours:
            raise ComoliveError(f"{out_dir}: holds files the corpus builder did not write "
                                f"({', '.join(sorted(entries - ours)[:3])}); choose another folder")
        for name in ours:
            p = out_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ComoliveError(f"{out_dir}: cannot create ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise ComoliveError(f"{out_dir}: folder is not writable")


def _corpus_stats(seed: int, voices: list[str], splits: dict, results: dict, dropped: list[str],
                  retried: dict[str, int]) -> dict:
    """What corpus.json records: format, licence, voices, and per split its melodies, files and minutes."""
    failed_list = [results[k] for k in sorted(results) if "error" in results[k]]
    ok = [r for r in results.values() if "error" not in r and r["melody"] not in dropped]
    stats: dict = {
        "format": FORMAT_VERSION,
        "seed": seed,
        "sample_rate": SR,
        "hop": HOP,
        "licence": mb.LICENCE_NOTE + "; melodies and lyrics: Bach chorales from music21's corpus",
        "source": "music21 corpus, Bach chorales: soprano part, verse 1 lyrics, phrases of 4-12 s",
        "canonical_inventory": {"vowels": list(mb.VOWELS), "consonants": list(mb.CONSONANTS),
                                "silence": mb.SIL, "voiced": sorted(mb.VOICED)},
        "voices": [{"name": v, "sex": mb.voice_info(v).sex, "language": mb.voice_info(v).language,
                    "native_sample_rate": mb.voice_header(v)[0], "mbrola_frame_period": mb.voice_header(v)[1],
                    "symbols": {p: mb.voice_symbol(v, p, "a") for p in mb.INVENTORY
                                if mb.voice_symbol(v, p, "a") != p}}
                   for v in voices],
        "n_melodies": sum(len(splits[s]) for s in SPLITS),
        "splits": {},
        "retried": {mid: {"attempts": n, "stretch": _r(1.0 + RETRY_STRETCH * n)} for mid, n in sorted(retried.items())},
        "dropped": [{"melody": r["melody"], "voice": r["voice"], "error": r["error"]} for r in failed_list],
    }
    for split in SPLITS:
        rs = [r for r in ok if r["split"] == split]
        secs = sum(r["seconds"] for r in rs)
        stats["splits"][split] = {
            "melodies": sorted(m.id for m in splits[split]),
            "pieces": sorted({m.piece for m in splits[split]}),
            "files": len(rs),
            "minutes": _r(secs / 60, 3),
            "minutes_per_voice": _r(secs / 60 / max(len(voices), 1), 3),
            "voiced_fraction": _r(sum(r["voiced_frames"] for r in rs) / max(sum(r["frames"] for r in rs), 1), 4),
        }
    return stats


def build_corpus(out_dir: str | Path, seed: int = 0, n_melodies: int = DEFAULT_MELODIES,
                 voices: list[str] | None = None, heldout_fraction: float = 0.15, progress: bool = True,
                 workers: int = 2, speech: bool = True) -> dict:
    """Build the corpus into `out_dir`; returns the stats written to `out_dir/corpus.json`
    (plus `build_seconds`, which is not written so that the file stays byte-identical across builds)."""
    t0 = time.time()
    out_dir = Path(out_dir)
    voices = list(mb.DEFAULT_VOICES) if voices is None else list(dict.fromkeys(voices))
    if not voices:
        raise ComoliveError("no voices chosen")
    for v in voices:
        mb.voice_path(v)          # known and installed
    mb.check_voices(voices)       # renders the canonical inventory
    melodies = select_melodies(n_melodies, seed, progress=progress)
    splits = split_melodies(melodies, heldout_fraction, seed)
    _clear(out_dir)

    allowed = mb.allowed_diphones(mb.DEFAULT_VOICES)
    split_of = {m.id: split for split in SPLITS for m in splits[split]}

    def jobs_for(m: Melody, attempt: int) -> list[dict]:
        if attempt:
            m = stretch_melody(m, 1.0 + RETRY_STRETCH * attempt)
        phones = mb.plan_phones(m, allowed)
        expr = pho_text.Expression.draw(piece_rng(seed, m.id, 1))
        note_seed = int(piece_rng(seed, m.id, 2).integers(0, 2 ** 31))
        curve = pho_text.pitch_curve_ms(m, expr, note_seed)
        return [{"melody": m, "phones": phones, "curve": curve, "voice": v, "split": split_of[m.id],
                 "transpose": register_shift(m, mb.voice_info(v).sex), "seed": seed, "attempt": attempt,
                 "expression": expr.__dict__, "dir": str(out_dir / split_of[m.id] / v)} for v in voices]

    results: dict[tuple[str, str], dict] = {}
    todo = [j for split in SPLITS for m in splits[split] for j in jobs_for(m, 0)]
    by_id = {m.id: m for m in melodies}
    retried: dict[str, int] = {}
    with _Runner(workers, progress, len(todo)) as runner:
        for attempt in range(MAX_ATTEMPTS):
            for r in runner.map(todo):
                results[(r["melody"], r["voice"])] = r
            # a melody that failed for any voice is re-planned (slightly slower) for *all* voices,
            # so that every melody stays parallel across voices
            bad = sorted({r["melody"] for r in results.values() if "error" in r})
            if not bad or attempt + 1 == MAX_ATTEMPTS:
                break
            for mid in bad:
                retried[mid] = attempt + 1
            todo = [j for mid in bad for j in jobs_for(by_id[mid], attempt + 1)]
            runner.add(len(todo))
    dropped = sorted({r["melody"] for r in results.values() if "error" in r})
    for mid in dropped:   # never leave a melody sung by only some voices
        for v in voices:
            for ext in (".wav", ".json", ".f0.npy"):
                (out_dir / split_of[mid] / v / f"{mid}{ext}").unlink(missing_ok=True)
        for split in SPLITS:
            splits[split] = [m for m in splits[split] if m.id != mid]
    stats = _corpus_stats(seed, voices, splits, results, dropped, retried)
    stats["minutes_singing"] = _r(sum(stats["splits"][s]["minutes"] for s in SPLITS), 3)
    if speech:
        from training.corpus.speech import build_speech
        stats["speech"] = build_speech(out_dir / "speech", progress=progress)
    (out_dir / "corpus.json").write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    stats["build_seconds"] = round(time.time() - t0, 1)
    return stats


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser) -> None:
    """Arguments of `main.py corpus`."""
    parser.add_argument("out_dir", help="folder to build the corpus in (new, empty, or a previous corpus)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus bytes)")
    parser.add_argument("--melodies", type=int, default=DEFAULT_MELODIES,
                        help=f"number of melodies, one per chorale (default {DEFAULT_MELODIES})")
    parser.add_argument("--voices", default=None,
                        help="comma-separated MBROLA voices (default: " + ",".join(mb.DEFAULT_VOICES) + ")")
    parser.add_argument("--heldout", type=float, default=0.15, help="fraction of melodies held out (default 0.15)")
    parser.add_argument("--workers", type=int, default=2, help="rendering processes, 1 or 2 (default 2)")
    parser.add_argument("--no-speech", action="store_true", help="skip the spoken sentences (flite/festival)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args) -> dict:
    """Handler of `main.py corpus`: build, print a short summary, return the stats."""
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    stats = build_corpus(args.out_dir, seed=args.seed, n_melodies=args.melodies, voices=voices,
                         heldout_fraction=args.heldout, progress=not args.quiet, workers=args.workers,
                         speech=not args.no_speech)
    sp = stats["splits"]
    print(f"corpus: {args.out_dir}  seed {stats['seed']}  {len(stats['voices'])} voices  "
          f"{stats['n_melodies']} melodies  {stats['minutes_singing']:.1f} min of singing  "
          f"(train {sp['train']['minutes']:.1f} min / {len(sp['train']['melodies'])} melodies, "
          f"held-out {sp['heldout']['minutes']:.1f} min / {len(sp['heldout']['melodies'])} melodies)  "
          f"in {stats['build_seconds']:.0f} s")
    if stats["dropped"]:
        print(f"warning: {len({d['melody'] for d in stats['dropped']})} melodies could not be sung by every "
              f"voice and were left out (listed in corpus.json)")
    print(mb.LICENCE_NOTE)
    return stats


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="comolive corpus", description="build the synthetic singing corpus")
    add_arguments(p)
    try:
        run(p.parse_args(argv))
    except ComoliveError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
