"""A voice from a folder of recordings (`main.py voice add NAME FOLDER`): what users of other SVC tools do first.

The folder (any audio files, any rates, nested or not) is taken as ONE singer. It is checked before
anything slow runs, so a wrong folder fails in seconds with the reason: no files, nothing readable,
only silence, too little voice. Then it is preprocessed exactly as training data is (training/preprocess.py,
content of a timbre-perturbed copy included), the per-utterance d-vectors are compared to catch a folder
that mixes singers, and the model's one-step student is fine-tuned on it (training/finetune.py). The
result is a complete voice model (the base's voices plus NAME) saved in float16 like the shipped one, with
an hn vocoder of its own beside it (MODEL_hn: the base's hn fine-tuned on the same recordings,
training/vocoder_train.finetune_hn), which the model uses whenever it runs with the hn vocoder.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.loudness_norm import normalize_level, slice_on_silence
from training.preprocess import AUDIO_EXTENSIONS, MIN_SECONDS, check_audio, preprocess_dataset
from models.audio_io import load_audio
from models.errors import ComoliveError
from training.finetune import FinetuneConfig, finetune_voice
from training.vocoder_train import finetune_hn
from training.voice_defaults import DECODER_STEPS, VOCODER_STEPS
from models.hn_vocoder import PRETRAINED as SHARED_HN
from models.voice_model import USER_VOICES_DIR, VoiceModel, own_vocoder_stem

MIN_VOICE_S = 20.0         # usable audio (after slicing off silence) a voice needs in total
SAME_SPEAKER_MIN = 0.6     # an utterance less similar than this to the rest sounds like someone else
ODD_SHARE_MAX = 1.0 / 3.0  # more odd utterances (or audio) than this: the folder mixes singers
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_LISTED = 20            # files named in one message


@dataclass
class FolderScan:
    """What a folder holds, judged the way preprocess will judge it."""
    files: int = 0
    usable: dict[str, float] = field(default_factory=dict)   # relative path -> seconds of usable audio
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return float(sum(self.usable.values()))


def _listing(pairs: list[tuple[str, str]]) -> str:
    lines = [f"  {p}: {why}" for p, why in pairs[:MAX_LISTED]]
    if len(pairs) > MAX_LISTED:
        lines.append(f"  ... and {len(pairs) - MAX_LISTED} more")
    return "\n".join(lines)


def usable_seconds(wav: np.ndarray, sr: int) -> tuple[float, str | None]:
    """(seconds preprocess will keep, why the file is unusable or None): same checks, level and slicing."""
    why = check_audio(wav, sr)
    if why:
        return 0.0, why
    wav, _ = normalize_level(wav, sr)
    pieces = slice_on_silence(wav, sr)
    if not pieces:
        return 0.0, "no segment louder than the silence threshold"
    seconds = sum((b - a) / sr for a, b in pieces if (b - a) / sr >= MIN_SECONDS)
    return seconds, None if seconds > 0 else f"no voiced stretch of at least {MIN_SECONDS:g} s"


def scan_folder(folder: Path, progress: bool = False) -> FolderScan:
    """Read every file once; ComoliveError when the folder cannot make a voice."""
    if not folder.is_dir():
        raise ComoliveError(f"{folder}: folder not found" if not folder.exists() else f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    scan = FolderScan(files=len(files))
    if not files:
        raise ComoliveError(f"{folder}: the folder is empty (put the singer's recordings in it)")
    for p in tqdm(files, desc="checking files", disable=not progress, dynamic_ncols=True):
        rel = str(p.relative_to(folder))
        if p.suffix.lower() not in AUDIO_EXTENSIONS:
            scan.rejected.append((rel, f"not an audio file extension ({p.suffix or 'none'})"))
            continue
        try:
            wav, sr = load_audio(p)
        except ComoliveError as e:
            scan.rejected.append((rel, str(e).split(": ", 1)[-1]))
            continue
        seconds, why = usable_seconds(wav, sr)
        if why:
            scan.rejected.append((rel, why))
        else:
            scan.usable[rel] = seconds
    _refuse_unusable(folder, scan)
    return scan


def _refuse_unusable(folder: Path, scan: FolderScan) -> None:
    reasons = [why for _, why in scan.rejected]
    audio = [why for why in reasons if not why.startswith(("not an audio file", "not a readable", "file is empty",
                                                            "holds no samples", "contains NaN"))]
    if not scan.usable:
        if not audio:
            head = f"{folder}: no readable audio file among its {scan.files} file(s)"
        elif all(w.startswith(("silent", "no segment louder")) for w in audio):
            head = f"{folder}: only silence — no voice to learn (every audio file is silent)"
        else:
            head = f"{folder}: no usable recording"
        raise ComoliveError(head + f" ({len(scan.rejected)} file(s) rejected)\n" + _listing(scan.rejected))
    if scan.seconds < MIN_VOICE_S:
        raise ComoliveError(f"{folder}: too little voice — {scan.seconds:.1f} s of usable audio in "
                            f"{len(scan.usable)} file(s); a voice needs at least {MIN_VOICE_S:g} s "
                            "(a few minutes is better)" + ("\n" + _listing(scan.rejected) if scan.rejected else ""))


def speaker_similarities(embs: np.ndarray) -> np.ndarray:
    """Cosine of each d-vector with the mean of all the others (1.0 for a single utterance)."""
    embs = np.asarray(embs, np.float64)
    n = len(embs)
    if n < 2:
        return np.ones(n)
    others = (embs.sum(axis=0)[None, :] - embs) / (n - 1)
    norms = np.linalg.norm(embs, axis=1) * np.linalg.norm(others, axis=1)
    return (embs * others).sum(axis=1) / np.maximum(norms, 1e-12)


def check_one_singer(utts: list[dict], embs: np.ndarray, frame_rate: float) -> list[str]:
    """Refuse a folder whose utterances sound like several singers; warnings for a few odd files."""
    sims = speaker_similarities(embs)
    odd = sims < SAME_SPEAKER_MIN
    seconds = np.array([u["frames"] / frame_rate for u in utts])
    worst: dict[str, float] = {}
    for u, s, o in zip(utts, sims, odd):
        if o:
            worst[u["source"]] = min(worst.get(u["source"], 1.0), float(s))
    listed = [(p, f"similarity {s:.2f} to the rest") for p, s in sorted(worst.items(), key=lambda kv: kv[1])]
    if odd.sum() > ODD_SHARE_MAX * len(utts) or seconds[odd].sum() > ODD_SHARE_MAX * seconds.sum():
        raise ComoliveError(f"the recordings sound like more than one singer: {int(odd.sum())} of {len(utts)} "
                            f"utterances are unlike the rest (d-vector similarity < {SAME_SPEAKER_MIN}); "
                            "give one singer's recordings only\n" + _listing(listed))
    return [f"{p} sounds unlike the other recordings ({why}); it is used — remove it if it is another singer"
            for p, why in listed]


def check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise ComoliveError(f"voice name {name!r}: use letters, digits, '-' and '_' only (at most 64)")


def output_stem(name: str, out: str | Path | None, force: bool) -> Path:
    """Where the model goes (default voices/NAME); refuses to overwrite unless forced."""
    stem = Path(out) if out is not None else USER_VOICES_DIR / name
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    existing = [p for p in (stem.with_suffix(".safetensors"), stem.with_suffix(".json")) if p.exists()]
    if existing and not force:
        raise ComoliveError(f"{existing[0]}: already exists (use --force to overwrite, or --out)")
    if stem.is_dir():
        raise ComoliveError(f"{stem}: is a folder; give a file stem for the model (e.g. {stem / name})")
    parent = stem.parent if stem.parent != Path("") else Path(".")
    probe = next((p for p in [parent, *parent.parents] if p.exists()), Path("."))
    if not os.access(probe, os.W_OK):
        raise ComoliveError(f"{parent}: not writable")
    return stem


def load_base(model: str | Path | None, name: str, force: bool) -> VoiceModel:
    base = VoiceModel.load(model)
    if base.student is None:
        raise ComoliveError(f"{model}: holds no one-step student decoder to fine-tune (distil it first)")
    if name in base.voices and not force:
        raise ComoliveError(f"voice '{name}' already exists in {model or 'the default model'} "
                            "(choose another name, or --force to replace it)")
    return base


@contextlib.contextmanager
def feature_folder(work_dir: str | Path | None):
    """work_dir when given (kept: a rerun on it reuses unchanged files' features), else a temporary folder."""
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
        yield Path(work_dir)
        return
    tmp = Path(tempfile.mkdtemp(prefix="comolive-voice-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def preprocess_voice(name: str, folder: Path, feats: Path, base: VoiceModel, progress: bool,
                     device: str | None) -> tuple[list[tuple[str, str]], int]:
    """FOLDER as the single singer NAME (a symlink in a throw-away dataset folder) -> feature cache in `feats`.
    Returns (rejected files relative to FOLDER, utterances reused from an earlier run in `feats`)."""
    dataset = Path(tempfile.mkdtemp(prefix="comolive-dataset-"))
    try:
        os.symlink(folder.resolve(), dataset / name, target_is_directory=True)
        report = preprocess_dataset(dataset, feats, device=device, heldout=0.0, cfg=base.cfg, progress=progress)
    except ComoliveError as e:
        raise ComoliveError(str(e).replace(str(dataset / name), str(folder)).replace(str(dataset), str(folder)))
    finally:
        shutil.rmtree(dataset, ignore_errors=True)
    strip = name + os.sep
    return [(p[len(strip):] if p.startswith(strip) else p, why) for p, why in report.rejected], report.reused


def _voice_utterances(feats: Path, name: str) -> tuple[list[dict], np.ndarray]:
    index = json.loads((feats / "index.json").read_text())
    utts = [u for u in index["utterances"] if u["voice"] == name]
    embs = np.stack([np.load(feats / u["path"])["spk"] for u in utts])
    strip = name + "/"
    for u in utts:
        u["source"] = u["source"][len(strip):] if u["source"].startswith(strip) else u["source"]
    return utts, embs


def add_voice(name: str, folder: str | Path, model: str | Path | None = None, out: str | Path | None = None,
              steps: int = DECODER_STEPS, force: bool = False, progress: bool = True,
              work_dir: str | Path | None = None, device: str | None = None,
              vocoder_steps: int = VOCODER_STEPS) -> tuple[Path, dict]:
    """Recordings of one singer -> a saved voice model with the voice NAME added (and its own hn vocoder
    unless vocoder_steps is 0). Returns (model stem, report)."""
    check_name(name)
    if steps < 1:
        raise ComoliveError(f"steps must be at least 1, got {steps}")
    if vocoder_steps < 0:
        raise ComoliveError(f"vocoder steps must be 0 or more, got {vocoder_steps}")
    folder = Path(folder)
    stem = output_stem(name, out, force)
    base = load_base(model, name, force)
    scan = scan_folder(folder, progress)
    say = tqdm.write if progress else (lambda _msg: None)
    say(f"{len(scan.usable)} usable file(s), {scan.seconds:.1f} s of voice; preprocessing...")
    with feature_folder(work_dir) as feats:
        rejected, reused = preprocess_voice(name, folder, feats, base, progress, device)
        utts, embs = _voice_utterances(feats, name)
        seconds = sum(u["frames"] for u in utts) / base.cfg.frame_rate
        if seconds < MIN_VOICE_S:
            raise ComoliveError(f"{folder}: too little voice — {seconds:.1f} s usable after preprocessing; "
                                f"a voice needs at least {MIN_VOICE_S:g} s")
        if reused:
            say(f"reused the features of {reused} unchanged utterance(s) in {feats}")
        warnings = check_one_singer(utts, embs, base.cfg.frame_rate)
        for w in warnings:
            say(f"warning: {w}")
        vm, stats = finetune_voice(base, feats, name, FinetuneConfig(steps=steps), progress=progress,
                                   device=device, half=True, base_label=str(model) if model else "default")
        own, init = own_vocoder_stem(stem), base.own_vocoder("hn")
        kept = init is not None and init.resolve() == own.resolve()  # overwriting a model in place keeps its own
        if not kept:  # one left by an earlier model of that name is not ours
            for suffix in (".safetensors", ".json"):
                own.with_suffix(suffix).unlink(missing_ok=True)
        voc = {"vocoder_steps": 0, "vocoder": str(own) if kept else None}
        if vocoder_steps:
            say(f"fine-tuning the hn vocoder on the same recordings ({vocoder_steps} steps)...")
            voc = finetune_hn(feats, own, init or SHARED_HN, vocoder_steps, progress)
    vm.save(stem, half=True)
    report = {"name": name, "model": str(stem), "base": str(model) if model else "default", "folder": str(folder),
              "files_used": len({u["source"] for u in utts}), "rejected": rejected, "reused": reused,
              "warnings": warnings, "voices": sorted(vm.voices), **stats, **voc}
    return stem, report


def _vocoder_line(report: dict) -> str:
    if report["vocoder_steps"]:
        return (f"its own hn vocoder: {report['vocoder']}.safetensors ({report['vocoder_steps']} steps, "
                f"{report['vocoder_seconds']:.0f} s; used with --vocoder hn and live on a CPU)")
    if report["vocoder"]:  # the model was overwritten in place and keeps the one it had
        return f"its own hn vocoder: {report['vocoder']}.safetensors, as it was (--vocoder-steps 0)"
    return "hn vocoder: the shared one (--vocoder-steps 0)"


def summary(report: dict) -> str:
    """The report of add_voice as the CLI prints it."""
    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    lines = [f"voice '{report['name']}' added: {report['model']}.safetensors "
             f"({report['files_used']} file(s), {report['utterances']} utterances, {report['seconds'] / 60:.1f} min; "
             f"{report['steps']} steps at {report['seconds_per_step']:.2f} s/step)",
             _vocoder_line(report),
             f"held-out loss ({report['heldout_utterances']} utterance(s)): {fmt(report['loss_before'])} before, "
             f"{fmt(report['loss_after'])} after",
             f"use it: python main.py convert IN.wav OUT.wav --model {report['model']} --voice {report['name']}"]
    lines += [f"warning: {w}" for w in report["warnings"]]
    if report["rejected"]:
        lines.append(f"skipped {len(report['rejected'])} file(s):")
        lines.append(_listing(report["rejected"]))
    return "\n".join(lines)
