"""The training commands of main.py: corpus, preprocess, timbres, gta-mels, train, distill, export,
voice add, train-vocoder, export-vocoder (argument parsing here, the work in training/ and models/)."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine import arg_types
from engine.registry import PITCH_EXTRACTORS
from models.errors import ComoliveError
from training.voice_defaults import DECODER_STEPS, VOCODER_STEPS


def cmd_voice_add(a: argparse.Namespace) -> None:
    from training.voice_add import add_voice, summary

    _, report = add_voice(a.name, a.folder, model=a.model, out=a.out, steps=a.steps, force=a.force,
                          progress=not a.quiet, work_dir=a.work_dir, device=a.device, vocoder_steps=a.vocoder_steps)
    print(summary(report))


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
        raise ComoliveError(f"{existing[0]}: already exists (use --force to overwrite)")


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
            raise ComoliveError(f"{a.model}: has no teacher to write beside the student")
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


def add_commands(sub) -> None:
    """Register the training commands on main.py's sub-parsers."""
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
        t.add_argument("--steps", type=arg_types.count, default=None, help="override the number of steps (at least 1)")
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
    va.add_argument("--steps", type=arg_types.count, default=DECODER_STEPS,
                    help=f"fine-tuning steps (default {DECODER_STEPS})")
    va.add_argument("--vocoder-steps", type=arg_types.whole("vocoder steps", 0), default=VOCODER_STEPS,
                    help="fine-tuning steps of the model's own hn vocoder on the same recordings "
                         f"(default {VOCODER_STEPS}; 0: the shared hn)")
    va.add_argument("--force", action="store_true", help="overwrite --out and replace a voice of the same name")
    va.add_argument("--work-dir", default=None, help="keep the features here; a rerun reuses unchanged files")
    va.add_argument("--quiet", action="store_true")
    arg_types.model_args(va)
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
    tv.add_argument("--steps", type=arg_types.count, default=None, help="override the number of steps (at least 1)")
    tv.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    tv.set_defaults(func=cmd_train_vocoder)

    xv = sub.add_parser("export-vocoder", help="pack a trained hn or nsf vocoder for shipping (float16 weights)")
    xv.add_argument("run", help="run folder of train-vocoder (or a checkpoint stem)")
    xv.add_argument("out", help="output stem, e.g. models/pretrained/vocoder_hn")
    xv.add_argument("--float32", action="store_true", help="keep float32 weights")
    xv.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    xv.set_defaults(func=cmd_export_vocoder)
