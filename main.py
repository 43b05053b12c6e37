#!/usr/bin/env python3
"""comolive: real-time singing voice conversion. One CLI for every job; `python main.py -h` lists them.

Each command is a thin handler: argument parsing here, the work in engine/, models/, realtime/ or
gui/. A ComoliveError (bad input, missing model, unwritable path...) is printed as one line and
exits with status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from engine.registry import PITCH_EXTRACTORS

KEY_RANGE = 24  # semitones either way


def _key(value: str) -> float:
    try:
        k = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"key must be a number of semitones, got '{value}'") from None
    if not -KEY_RANGE <= k <= KEY_RANGE:
        raise argparse.ArgumentTypeError(f"key {k:g} is out of range (-{KEY_RANGE}..{KEY_RANGE} semitones)")
    return k


def _formant(text: str) -> float:
    v = float(text)
    if not -12.0 <= v <= 12.0:
        raise argparse.ArgumentTypeError(f"formant shift {v:g} is outside -12..12 semitones")
    return v


def _whole(what: str, lo: int, hi: int | None = None):
    """An argparse type: a whole number in lo..hi (hi None: no upper bound), one clear line otherwise."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got '{value}'") from None
        if n < lo or (hi is not None and n > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {n}")
        return n
    return parse


_steps = _whole("steps", 1, 200)  # decoder sampling steps
_count = _whole("the number of steps", 1)  # training steps


# ---------------------------------------------------------------------------------------- handlers
def cmd_convert(a: argparse.Namespace) -> None:
    from engine.converter import MAX_SECONDS, Converter
    from models.audio_io import audio_seconds, check_writable, load_audio, save_audio
    from models.vocoders import pitch_note

    out = check_writable(a.output, a.force)
    if a.live or audio_seconds(a.input) > MAX_SECONDS:
        return _convert_live(a, out)
    wav, sr = load_audio(a.input, max_seconds=MAX_SECONDS)
    from engine.reference import reference_for

    reference = reference_for(a.voice, a.ref)
    conv = Converter(model=a.model, device=a.device, pitch=a.pitch, vocoder=a.vocoder)
    if pitch_note(a.vocoder):
        print(pitch_note(a.vocoder))
    result = conv.convert(wav, sr, voice=a.voice, key=a.key, steps=a.steps, sampler=a.sampler,
                          formant=a.formant, reference=reference)
    save_audio(out, result.audio, result.sample_rate, force=True)
    print(result.summary(a.input, out))
    if a.check_pitch:
        _print_melody_error(wav, sr, result.audio, result.sample_rate, a.key, conv.vocoder.name)


def _print_melody_error(wav, sr, out, out_sr, key: float, vocoder: str) -> None:
    from evaluation.metrics import melody_error

    err = melody_error(wav, sr, out, out_sr, key)
    print(f"melody: output f0 {err['f0_cents_median']:.1f} cents (median) from the input's x key, "
          f"{err['f0_gross_error_rate']:.1%} of frames > 50 cents off, voicing agreement "
          f"{err['vuv_agreement']:.1%} (Harvest f0, vocoder {vocoder})")


def _convert_live(a: argparse.Namespace, out) -> None:
    """convert through the live pipeline, block by block (engine/file_convert.py)."""
    from engine.file_convert import convert_file
    from engine.reference import reference_for
    from engine.session_config import SessionConfig
    from models.audio_io import load_audio
    from models.errors import ComoliveError
    from models.vocoders import pitch_note

    if a.sampler != "student":
        raise ComoliveError("--live runs the one-step (or multistep) student; the teacher runs without --live "
                            "(files up to 30 min)")
    cfg = SessionConfig(voice=a.voice, reference=reference_for(a.voice, a.ref), key=a.key, formant=a.formant,
                        steps=a.steps, pitch=a.pitch, vocoder=a.vocoder, model=a.model, device=a.device,
                        gate_db=float("-inf"))  # a file is converted whole: no noise gate
    if pitch_note(a.vocoder):
        print(pitch_note(a.vocoder))
    shown = 0.0

    def progress(done: float, whole: float) -> None:  # a line a minute of audio
        nonlocal shown
        if done - shown >= 60.0:
            shown = done
            print(f"  {done / 60:.0f} of {whole / 60:.0f} min", flush=True)

    res = convert_file(cfg, a.input, out, force=True, progress=progress)
    print(res.summary(a.input, out))
    print(f"the same samples live: `stream IN OUT --input-gain-db {res.input_gain_db:.17g} --gate-db=-inf` "
          "with the same voice, key and vocoder")
    if a.check_pitch:
        wav, sr = load_audio(a.input)
        y, ysr = load_audio(out)
        _print_melody_error(wav, sr, y, ysr, a.key, res.vocoder)


def cmd_voice_add(a: argparse.Namespace) -> None:
    from training.voice_add import add_voice, summary

    _, report = add_voice(a.name, a.folder, model=a.model, out=a.out, steps=a.steps, force=a.force,
                          progress=not a.quiet, work_dir=a.work_dir, device=a.device)
    print(summary(report))


def cmd_voices(a: argparse.Namespace) -> None:
    from models.voice_model import VoiceModel

    vm = VoiceModel.load(a.model)
    default = vm.meta.get("default_voice")
    print(f"model: {a.model or 'embedded default'}  ({'student 1-step' if vm.student else 'teacher only'})")
    for name in sorted(vm.voices):
        print(f"  {name}{'  (default)' if name == default else ''}")
    for name, why in sorted(vm.broken.items()):
        print(f"  {name}  BROKEN: {why}")


def cmd_corpus(a: argparse.Namespace) -> None:
    from training.corpus import build

    build.run(a)


def cmd_preprocess(a: argparse.Namespace) -> None:
    from training.preprocess import preprocess_dataset

    report = preprocess_dataset(a.dataset, a.out, pitch=a.pitch, device=a.device, heldout=a.heldout,
                                progress=not a.quiet)
    print(report.summary())


def cmd_timbres(a: argparse.Namespace) -> None:
    from training.timbres import DEFAULT_SHIFTS, build_timbres

    shifts = [float(x) for x in a.shifts.split(",") if x.strip()] if a.shifts else DEFAULT_SHIFTS
    path = build_timbres(a.features, shifts, progress=not a.quiet)
    print(f"virtual voices at formant shifts {shifts} written to {path}")


def cmd_gta_mels(a: argparse.Namespace) -> None:
    from training.gta_mels import write_gta_mels

    for feats in a.features.split(","):
        n = write_gta_mels(feats, a.model, progress=not a.quiet)
        print(f"{feats}: the decoder's mel written beside {n} train utterances (*.gta.npy)")


def cmd_train(a: argparse.Namespace) -> None:
    from models.config import RunConfig
    from training.train import TrainingRun

    cfg = RunConfig.load(a.config)
    if a.steps:
        cfg.train.steps = a.steps
    path = TrainingRun(a.features, a.run, cfg, resume=a.resume, init=a.init).run()
    print(f"teacher written to {path}.safetensors")


def cmd_distill(a: argparse.Namespace) -> None:
    from models.config import RunConfig
    from training.train import DistillationRun

    cfg = RunConfig.load(a.config)
    if a.steps and a.method == "consistency":
        cfg.train.distill_steps = a.steps
    if a.method == "progressive":
        from training.train import ProgressiveRun

        if a.steps:
            cfg.train.progressive_round_steps = a.steps
        run = ProgressiveRun(a.features, a.run, cfg, teacher=a.teacher, resume=a.resume)
        run.run()
        print(f"progressive students written to {a.run}/progressive_<k>step_model.safetensors "
              f"(k = {', '.join(str(cfg.train.progressive_base_steps >> r) for r in range(1, run.rounds + 1))})")
        return
    path = DistillationRun(a.features, a.run, cfg, teacher=a.teacher, resume=a.resume).run()
    print(f"one-step student written to {path}.safetensors")


def _refuse_overwrite(stem: str, force: bool) -> None:
    """A model stem's files are never replaced without --force."""
    existing = [p for p in (Path(stem + ".safetensors"), Path(stem + ".json")) if p.exists()]
    if existing and not force:
        raise _error(f"{existing[0]}: already exists (use --force to overwrite)")


def cmd_export(a: argparse.Namespace) -> None:
    from models.voice_model import VoiceModel

    _refuse_overwrite(a.out, a.force)
    if a.teacher_file:
        from models.voice_model import teacher_stem

        _refuse_overwrite(str(teacher_stem(a.out)), a.force)
    vm = VoiceModel.load(a.model)
    if a.default_voice:
        vm.speaker(a.default_voice)
        vm.meta["default_voice"] = a.default_voice
    teacher = vm.decoder_or_none("teacher") if a.teacher_file else None
    if a.student_only or a.teacher_file:
        vm.teacher = None
    out = vm.save(a.out, half=a.half)
    size = sum(p.stat().st_size for p in out.parent.glob(out.name + ".*"))
    print(f"exported {a.model} -> {out}.safetensors ({size / 1e6:.1f} MB)")
    if a.teacher_file:
        if teacher is None:
            raise _error(f"{a.model}: has no teacher to write beside the student")
        t_out = VoiceModel(vm.cfg, vm.voices, teacher=teacher, meta=vm.meta).save(teacher_stem(a.out), half=a.half)
        print(f"its teacher -> {t_out}.safetensors (read only for --sampler teacher)")


def cmd_train_vocoder(a: argparse.Namespace) -> None:
    if a.vocoder == "nsf":
        from training.nsf_train import NSFTrainingRun, load_nsf_config

        model_cfg, cfg = load_nsf_config(a.config)
        if a.steps:
            cfg.steps = a.steps
        path = NSFTrainingRun(a.corpus.split(","), a.run, model_cfg, cfg, resume=a.resume, init=a.init).run()
    else:
        from training.vocoder_train import VocoderTrainingRun, load_config

        model_cfg, cfg = load_config(a.config)
        if a.steps:
            cfg.steps = a.steps
        path = VocoderTrainingRun(a.corpus, a.run, model_cfg, cfg, resume=a.resume, init=a.init).run()
    print(f"{a.vocoder} vocoder written to {path}.safetensors")


def cmd_export_vocoder(a: argparse.Namespace) -> None:
    from models.checkpoint import load_checkpoint
    from training.nsf_train import export_nsf
    from training.vocoder_train import export_vocoder

    _refuse_overwrite(a.out, a.force)
    src = Path(a.run)
    kind = load_checkpoint(src / "vocoder" if src.is_dir() else src)[1].get("kind")
    out = (export_nsf if kind == "nsf_hifigan" else export_vocoder)(a.run, a.out, half=not a.float32)
    size = sum(p.stat().st_size for p in out.parent.glob(out.name + ".*"))
    print(f"exported {a.run} -> {out}.safetensors ({size / 1e6:.2f} MB)")


def cmd_bench(a: argparse.Namespace) -> None:
    from models.errors import ComoliveError

    if a.what == "live":
        from realtime.bench_live import run_live_bench

        return run_live_bench(json_path=a.json, model=a.model, seconds=a.seconds)
    if a.what == "soak":
        from realtime.soak import run_soak

        if not a.minutes > 0:
            raise _error(f"--minutes must be above 0, got {a.minutes:g}")
        return run_soak(a.minutes, a.faults, json_path=a.json)
    from evaluation.bench import finish_report, print_overview, run_bench

    if a.what != "all":
        return run_bench(a.what, json_path=a.json, model=a.model, seconds=a.seconds, corpus=a.corpus, clips=a.clips,
                         real=a.real)
    report = run_bench("all", json_path=None, model=a.model, seconds=a.seconds, corpus=a.corpus, clips=a.clips,
                       real=a.real)
    print()
    try:
        from realtime.bench_live import run_live_bench  # engine/ never imports realtime/: collected here

        report["live"] = run_live_bench(json_path=None, model=a.model, seconds=a.seconds)
    except (ComoliveError, ImportError, OSError) as e:  # the other sections' figures still get reported
        report["live_error"] = f"{type(e).__name__}: {e}"
        print(f"live bench not run: {report['live_error']}", file=sys.stderr)
    finish_report(report, a.json)
    print_overview(report)


def cmd_eval(a: argparse.Namespace) -> None:
    import json

    from evaluation.eval_schema import validate
    from evaluation.evaluate import evaluate_folder, evaluate_parallel, parse_systems, print_report

    systems = parse_systems(a.systems or ("student:1" if a.real else "teacher:50,student:1,student:2"))
    skip = tuple(s for s in (a.skip or "").split(",") if s)
    common = dict(model=a.model, systems=systems, device=a.device, skip=skip, plots_dir=a.plots, vocoder=a.vocoder)
    if a.real:
        if a.corpus or a.source_dir:
            raise _error("give --real DIR alone (not with a CORPUS or --source-dir)")
        from evaluation.eval_real import evaluate_real, print_real_report

        if len(systems) != 1:
            raise _error("--real evaluates one system at a time: give one SAMPLER:STEPS with --systems")
        doc = evaluate_real(a.real, model=a.model, vocoder=a.vocoder, device=a.device, pairs=a.pairs,
                            live=not a.no_live, system=systems[0], retrieval=a.retrieval)
        print_real_report(doc)
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            print(f"wrote {a.json}")
        return
    if a.source_dir:
        if a.corpus:
            raise _error("give either a CORPUS or --source-dir, not both")
        if not a.voice:
            raise _error("--source-dir needs --voice (the target voice; see `voices`)")
        doc = evaluate_folder(a.source_dir, a.voice, ref_dir=a.ref_dir, key=a.key, **common)
        print(f"{doc['inputs']['files']} file(s) of {a.source_dir} -> voice '{a.voice}', key {a.key:+g}")
    elif a.corpus and a.zero_shot:
        from evaluation.eval_zero_shot import SUMMARY_COLUMNS, evaluate_zero_shot
        from evaluation.tables import print_table

        doc = evaluate_zero_shot(a.corpus, model=a.model, vocoder=a.vocoder, device=a.device)
        print_table(doc["summary"], SUMMARY_COLUMNS, "zero-shot: trained voices vs voices never trained on")
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
            print(f"wrote {a.json}")
        return
    elif a.corpus:
        if a.voice or a.ref_dir:
            raise _error("--voice and --ref-dir go with --source-dir (the corpus split picks its own voices)")
        doc = evaluate_parallel(a.corpus, max_pairs=a.pairs, max_seconds=a.max_seconds, **common)
        print(f"held-out parallel split of {a.corpus}: {doc['inputs']['pairs']} conversions (voice A -> voice B)")
    else:
        raise _error("eval needs a CORPUS folder, --source-dir DIR --voice V, or --real DIR")
    print_report(doc, per_file=not a.summary_only)
    if a.plots:
        print(f"plots: {', '.join(doc.get('plots', []))}")
    if a.json:
        validate(doc)
        Path(a.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {a.json}")


def cmd_gui(a: argparse.Namespace) -> None:
    from gui.app import run

    run()


def _error(msg: str):
    from models.errors import ComoliveError

    return ComoliveError(msg)


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="comolive: real-time singing voice conversion")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def model_args(sp, device=True):
        sp.add_argument("--model", default=None, help="voice model (path stem); default: the embedded model")
        if device:
            sp.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")

    c = sub.add_parser("convert", help="convert a sung (or spoken) audio file to a target voice")
    c.add_argument("input", help="input audio file (wav/flac/ogg..., any rate, mono or stereo)")
    c.add_argument("output", help="output wav file")
    c.add_argument("--voice", default=None, help="target voice name (see `voices`)")
    c.add_argument("--ref", action="append", default=None, metavar="CLIP",
                   help="zero-shot target voice from a 3-10 s recording (repeat to average several clips)")
    c.add_argument("--key", type=_key, default=0.0, help="key shift in semitones (-24..24)")
    c.add_argument("--formant", type=_formant, default=0.0,
                   help="formant shift in semitones (-12..12; needs an f0-driven vocoder: nsf or hn)")
    c.add_argument("--steps", type=_steps, default=1, help="decoder steps: 1 = one-step student (default)")
    c.add_argument("--sampler", choices=("student", "teacher"), default="student",
                   help="student (consistency, 1..k steps) or teacher (EDM, Heun)")
    c.add_argument("--pitch", default="fcpe", choices=tuple(PITCH_EXTRACTORS), help="pitch extractor")
    c.add_argument("--vocoder", default="nsf",
                   help="nsf (NSF HiFi-GAN, default), hn (compact, fast on a CPU), hn-causal, or hifigan "
                        "(the V1: pitch read from the mel)")
    c.add_argument("--check-pitch", action="store_true",
                   help="also print how far the output's melody is from the input's (Harvest f0, x key)")
    c.add_argument("--live", action="store_true",
                   help="convert through the live pipeline (what `live` plays, sample for sample), block by block "
                        "from disk to disk: any length in bounded memory; files over 30 min always go this way")
    c.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    model_args(c)
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("voices", help="list the voices of a model")
    model_args(v, device=False)
    v.set_defaults(func=cmd_voices)

    co = sub.add_parser("corpus", help="build the synthetic singing corpus (MBROLA voices, music21 melodies)")
    from training.corpus import build as corpus_build
    corpus_build.add_arguments(co)
    co.set_defaults(func=cmd_corpus)

    pp = sub.add_parser("preprocess", help="dataset folder (one sub-folder of wavs per singer) -> cached features")
    pp.add_argument("dataset", help="dataset folder: DATASET/<singer>/*.wav, or a corpus built by `corpus`")
    pp.add_argument("out", help="feature cache folder")
    pp.add_argument("--pitch", default="fcpe", choices=tuple(PITCH_EXTRACTORS))
    pp.add_argument("--heldout", type=float, default=0.1,
                    help="fraction of a singer's files kept for validation (corpus folders keep their own split)")
    pp.add_argument("--device", default=None)
    pp.add_argument("--quiet", action="store_true")
    pp.set_defaults(func=cmd_preprocess)

    tb = sub.add_parser("timbres", help="virtual training voices: each train utterance formant-shifted, "
                        "rendered and embedded (for timbre_prob > 0)")
    tb.add_argument("features", help="feature cache folder from `preprocess`")
    tb.add_argument("--shifts", default=None,
                    help="formant shifts in semitones, comma-separated (default: -3,-2,-1,1,2,3)")
    tb.add_argument("--quiet", action="store_true")
    tb.set_defaults(func=cmd_timbres)

    for name, helptext, fn in (("train", "train the EDM teacher decoder", cmd_train),
                               ("distill", "distil a teacher into the one-step consistency student", cmd_distill)):
        t = sub.add_parser(name, help=helptext)
        t.add_argument("features", help="feature cache folder from `preprocess`")
        t.add_argument("run", help="run folder (checkpoints, log.csv, validation audio)")
        t.add_argument("--config", default=None, help="TOML config ([model] and [train] sections)")
        t.add_argument("--steps", type=_count, default=None, help="override the number of steps (at least 1)")
        t.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
        if name == "distill":
            t.add_argument("--teacher", required=True, help="teacher model stem (RUN/teacher_model)")
            t.add_argument("--method", choices=("consistency", "progressive"), default="consistency",
                           help="consistency distillation to one step (default), or progressive distillation: "
                                "halvings from progressive_base_steps to 1 (--steps: steps per halving)")
        else:
            t.add_argument("--init", default=None, help="start from this voice model's network "
                           "(e.g. models/pretrained/default) instead of random weights")
        t.set_defaults(func=fn)

    e = sub.add_parser("export", help="pack a trained model for shipping (optionally float16, student only)")
    e.add_argument("model", help="model stem, e.g. runs/student/student_model")
    e.add_argument("out", help="output stem, e.g. models/pretrained/default")
    e.add_argument("--half", action="store_true", help="store weights as float16")
    e.add_argument("--student-only", action="store_true")
    e.add_argument("--teacher-file", action="store_true",
                   help="write the teacher to OUT_teacher.* beside the student-only OUT (loaded only when asked for)")
    e.add_argument("--default-voice", default=None)
    e.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    e.set_defaults(func=cmd_export)

    vo = sub.add_parser("voice", help="add a voice to a model")
    vsub = vo.add_subparsers(dest="voice_command", metavar="ACTION", required=True)
    va = vsub.add_parser("add", help="a new voice from a folder of one singer's recordings "
                                     "(fine-tunes the one-step decoder; at least 20 s of voice, minutes are better)")
    va.add_argument("name", help="voice name: letters, digits, '-' and '_'")
    va.add_argument("folder", help="the singer's recordings (any audio format and rate, sub-folders allowed)")
    va.add_argument("--out", default=None, help="model file stem to write (default: voices/NAME)")
    va.add_argument("--steps", type=_count, default=300, help="fine-tuning steps (default 300)")
    va.add_argument("--force", action="store_true", help="overwrite --out and replace a voice of the same name")
    va.add_argument("--work-dir", default=None, help="keep the features here; a rerun reuses unchanged files")
    va.add_argument("--quiet", action="store_true")
    model_args(va)
    va.set_defaults(func=cmd_voice_add)

    gm = sub.add_parser("gta-mels", help="the decoder's mel of every train utterance of feature folders, for "
                                         "vocoder training (train-vocoder --vocoder nsf, gta_prob)")
    gm.add_argument("features", help="feature folders of `preprocess`, comma-separated")
    gm.add_argument("--model", default=None, help="voice model whose decoder draws the mels (default: the embedded one)")
    gm.add_argument("--quiet", action="store_true")
    gm.set_defaults(func=cmd_gta_mels)

    tv = sub.add_parser("train-vocoder", help="train an f0-driven vocoder: hn (compact) or nsf (NSF HiFi-GAN)")
    tv.add_argument("corpus", help="corpus folder built by `corpus` (hn only), or feature folders of `preprocess`, "
                                   "comma-separated")
    tv.add_argument("--vocoder", choices=("hn", "nsf"), default="hn", help="which vocoder to train (default hn)")
    tv.add_argument("--init", default=None, help="start from this saved vocoder of the same kind (e.g. "
                                                 "models/pretrained/vocoder_hn); without it nsf starts as the V1")
    tv.add_argument("run", help="run folder (checkpoints, log.csv)")
    tv.add_argument("--config", default=None, help="TOML config ([model] and [train]), e.g. configs/vocoder_hn.toml")
    tv.add_argument("--steps", type=_count, default=None, help="override the number of steps (at least 1)")
    tv.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    tv.set_defaults(func=cmd_train_vocoder)

    xv = sub.add_parser("export-vocoder", help="pack a trained hn or nsf vocoder for shipping (float16 weights)")
    xv.add_argument("run", help="run folder of train-vocoder (or a checkpoint stem)")
    xv.add_argument("out", help="output stem, e.g. models/pretrained/vocoder_hn")
    xv.add_argument("--float32", action="store_true", help="keep float32 weights")
    xv.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    xv.set_defaults(func=cmd_export_vocoder)


    ev = sub.add_parser("eval", help="objective quality: the corpus's held-out parallel split, or a folder of "
                                     "your recordings converted to a voice")
    ev.add_argument("corpus", nargs="?", default=None, help="corpus folder built by `corpus` (parallel split)")
    ev.add_argument("--source-dir", default=None, help="folder of source recordings to convert and measure")
    ev.add_argument("--voice", default=None, help="target voice for --source-dir")
    ev.add_argument("--ref-dir", default=None, help="reference clips of the target voice (speaker similarity); "
                                                   "default: the model's own d-vector of the voice")
    ev.add_argument("--key", type=_key, default=0.0, help="key shift for --source-dir (semitones)")
    ev.add_argument("--vocoder", default="nsf", help="vocoder of every system: nsf (default), hn, hn-causal or hifigan")
    ev.add_argument("--real", default=None, metavar="DIR",
                    help="held-out real voices of a MANIFEST.tsv folder: fixed sung sources converted zero-shot to "
                         "other held-out singers (singing and speech references, key 0 and register key)")
    ev.add_argument("--no-live", action="store_true", help="with --real: leave out the live-session rows")
    ev.add_argument("--zero-shot", action="store_true",
                    help="with CORPUS: voices from reference clips, trained vs never-trained voices")
    ev.add_argument("--retrieval", type=float, default=0.0,
                    help="with --real: share of each content frame replaced by its nearest frames in the reference "
                         "clip (0..1; measured: it does not help the default model, see docs/results.md)")
    ev.add_argument("--systems", default=None, help="SAMPLER:STEPS list (default teacher:50,student:1,student:2; "
                                                  "with --real one system, default student:1)")
    ev.add_argument("--pairs", type=int, default=12, help="number of A->B conversions (parallel split, --real)")
    ev.add_argument("--max-seconds", type=float, default=None, help="crop each pair to this length (parallel split)")
    ev.add_argument("--skip", default=None, help="metrics to leave out: mcd,dnsmos,cer,stream")
    ev.add_argument("--plots", default=None, help="folder for PNG plots (pitch, spectrograms, metric bars)")
    ev.add_argument("--summary-only", action="store_true", help="print only the per-system table")
    ev.add_argument("--json", default=None, help="write the report as JSON (schema: evaluation/eval_schema.py)")
    model_args(ev)
    ev.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="speed benchmarks (tables on stdout, JSON with --json)")
    b.add_argument("what", nargs="?", default="all",
                   choices=("model", "features", "vocoder", "live", "soak", "all"),
                   help="one section, or all of them with a summary (default; soak is never part of all)")
    b.add_argument("--json", default=None, help="write the results as JSON to this file")
    b.add_argument("--seconds", type=float, default=10.0, help="length of the benchmark input")
    b.add_argument("--corpus", default="data/corpus", help="corpus whose held-out split `bench vocoder` copies")
    b.add_argument("--clips", type=int, default=8, help="held-out clips for the vocoder quality table")
    b.add_argument("--real", default=None, help="real-voice folder with a MANIFEST.tsv: `bench vocoder` also copies "
                                                "its held-out singing")
    b.add_argument("--minutes", type=float, default=60.0, help="soak: how long the live loop runs (default 60)")
    b.add_argument("--faults", action="store_true", help="soak: inject slow and failing blocks and restart the "
                                                         "audio server on a schedule")
    model_args(b, device=False)
    b.set_defaults(func=cmd_bench)

    from realtime.cli import add_commands as add_live_commands
    add_live_commands(sub, _key)  # live, stream, devices, tune

    g = sub.add_parser("gui", help="the control panel (also what `python main.py` alone opens)")
    g.set_defaults(func=cmd_gui)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args.func = cmd_gui  # no command: open the control panel
    from models.errors import AudioInputWarning, ComoliveError

    show = warnings.showwarning

    def one_line(message, category, *rest, **kw):  # our warnings read as one line, like our errors
        if issubclass(category, AudioInputWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            show(message, category, *rest, **kw)

    warnings.showwarning = one_line
    try:
        args.func(args)
    except ComoliveError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = show
    return 0


if __name__ == "__main__":
    sys.exit(main())
