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
import tempfile
import warnings
from pathlib import Path

from engine import arg_types
from engine.registry import PITCH_EXTRACTORS


# ---------------------------------------------------------------------------------------- handlers
def cmd_convert(a: argparse.Namespace) -> None:
    """The live pipeline over the file (what `live` and `stream` play, sample for sample), or with --whole
    (and for the teacher) the whole-file converter."""
    from models.audio_io import check_writable, load_audio
    from models.vocoders import pitch_note

    out = check_writable(a.output, a.force)
    if pitch_note(a.vocoder):
        print(pitch_note(a.vocoder))
    whole = a.whole or a.sampler == "teacher"
    if not whole:
        import soundfile as sf

        from engine.session_config import MAX_RATE, MIN_RATE

        try:
            rate = sf.info(str(a.input)).samplerate
        except Exception:  # noqa: BLE001 - a missing or unreadable file is reported by the conversion itself
            rate = MIN_RATE
        if not MIN_RATE <= rate <= MAX_RATE:
            print(f"{a.input}: {rate} Hz is outside the live pipeline's {MIN_RATE}-{MAX_RATE} Hz: converted whole")
            whole = True
    vocoder = (_convert_whole if whole else _convert_pipeline)(a, out)
    if a.check_pitch:
        from evaluation.metrics import melody_error

        (wav, sr), (y, ysr) = load_audio(a.input), load_audio(out)
        err = melody_error(wav, sr, y, ysr, a.key)
        print(f"melody: output f0 {err['f0_cents_median']:.1f} cents (median) from the input's x key, "
              f"{err['f0_gross_error_rate']:.1%} of frames > 50 cents off, voicing agreement "
              f"{err['vuv_agreement']:.1%} (Harvest f0, vocoder {vocoder})")


def _adapt_steps(a: argparse.Namespace) -> int:
    """--adapt as given; left unset, the default adaptation when there is a --ref (docs/results.md: it moves
    the voice towards the reference's singer and is more natural with nsf). `live` adapts only when asked
    (so that a show starts at once) or when an earlier run stored that adaptation."""
    if getattr(a, "adapt", None) is not None:
        return a.adapt
    if not getattr(a, "ref", None):
        return 0
    from training.reference_adapt import ADAPT_STEPS

    if a.command != "live":
        return ADAPT_STEPS
    from models.audio_io import load_audio
    from training.adaptation_cache import cached_adaptation

    if cached_adaptation([load_audio(p) for p in a.ref], a.model, ADAPT_STEPS) is not None:
        return ADAPT_STEPS
    print("zero-shot from the clip; `--adapt 300` first fine-tunes the decoder on it (about 30 s, once: it is "
          "stored), which moves the voice further towards that singer")
    return 0


def _adapted_model(a: argparse.Namespace, tmp: Path) -> str:
    """--adapt (convert, live, stream): the model with its decoder adapted to the --ref clips
    (training/reference_adapt.py), from the adaptation cache when an earlier run made it
    (training/adaptation_cache.py), else made now and stored there."""
    import time

    from engine.reference import reference_for
    from models.audio_io import load_audio
    from models.errors import ComoliveError
    from models.voice_model import VoiceModel
    from training.adaptation_cache import adapt_cached, cached_adaptation, cache_root

    if not a.ref:
        raise ComoliveError("--adapt adapts the decoder to the reference: give it with --ref CLIP")
    reference_for(a.voice, a.ref, warn=lambda _: None)  # a bad clip is said as without adaptation, before it
    clips, base = [load_audio(p) for p in a.ref], VoiceModel.load(a.model)
    found = cached_adaptation(clips, base, a.adapt)
    if found is not None:
        print(f"the decoder adapted to this reference earlier ({a.adapt} steps) is used, from {cache_root()}")
        return found
    print(f"adapting the decoder to the reference ({a.adapt} steps; --adapt 0 converts zero-shot)...")
    t0 = time.perf_counter()
    stem, _ = adapt_cached(clips, base, tmp, a.adapt, device=a.device, progress=True)
    print(f"adapted in {time.perf_counter() - t0:.0f} s (stored: the next run with this reference starts at once)")
    return stem


def _auto_key(a: argparse.Namespace) -> float:
    """--key auto (convert, stream): the whole semitones between the input's and the reference's median
    pitch (engine/register.py), said in one line."""
    from engine.register import auto_key
    from models.audio_io import load_audio
    from models.errors import ComoliveError

    if not getattr(a, "ref", None):
        raise ComoliveError("--key auto moves the input into the reference's register: give it with --ref CLIP")
    key, src, ref = auto_key(load_audio(a.input), [load_audio(p) for p in a.ref], getattr(a, "pitch", None) or "fcpe")
    print(f"key auto: {key:+g} semitones (median pitch: the input {src:.0f} Hz, the reference {ref:.0f} Hz)")
    return key


def _convert_whole(a: argparse.Namespace, out) -> str:
    """The whole-file converter (engine/converter.py): the file, its features and its output in memory."""
    from engine.converter import MAX_SECONDS, Converter
    from engine.reference import reference_for
    from models.audio_io import audio_seconds, load_audio, save_audio
    from models.errors import ComoliveError

    if audio_seconds(a.input) > MAX_SECONDS:
        raise ComoliveError(f"{a.input}: longer than {MAX_SECONDS // 60} min: the whole-file converter "
                            f"(--whole, the teacher) holds it in memory; convert it without --whole")
    if a.gate_db is not None:
        raise ComoliveError("--gate-db is a setting of the live pipeline (convert without --whole)")
    wav, sr = load_audio(a.input, max_seconds=MAX_SECONDS)
    conv = Converter(model=a.model, device=a.device, pitch=a.pitch, vocoder=a.vocoder)
    result = conv.convert(wav, sr, voice=a.voice, key=a.key, steps=a.steps, sampler=a.sampler,
                          formant=a.formant, reference=reference_for(a.voice, a.ref))
    save_audio(out, result.audio, result.sample_rate, force=True)
    print(result.summary(a.input, out))
    return conv.vocoder.name


def _convert_pipeline(a: argparse.Namespace, out) -> str:
    """The live pipeline over the file, block by block from disk to disk (engine/file_convert.py)."""
    from engine.file_convert import convert_file
    from engine.reference import reference_for
    from engine.session_config import SessionConfig

    gate = float("-inf") if a.gate_db is None else a.gate_db  # a file has no room noise to keep out, unless asked
    cfg = SessionConfig(voice=a.voice, reference=reference_for(a.voice, a.ref), key=a.key, formant=a.formant,
                        steps=a.steps, pitch=a.pitch, vocoder=a.vocoder, model=a.model, device=a.device, gate_db=gate)
    shown = 0.0

    def progress(done: float, whole: float) -> None:  # a line a minute of audio
        nonlocal shown
        if done - shown >= 60.0:
            shown = done
            print(f"  {done / 60:.0f} of {whole / 60:.0f} min", flush=True)

    res = convert_file(cfg, a.input, out, force=True, progress=progress)
    print(res.summary(a.input, out))
    flags = f"--input-gain-db {res.input_gain_db:.17g} --gate-db={gate:g}"
    if a.ref:
        flags += f" --adapt {a.adapt}"
    print(f"the same samples live: `stream IN OUT {flags}` with the same voice, key and vocoder")
    return res.vocoder


def cmd_voices(a: argparse.Namespace) -> None:
    from models.voice_model import VoiceModel

    vm = VoiceModel.load(a.model)
    default = vm.meta.get("default_voice")
    print(f"model: {a.model or 'embedded default'}  ({'student 1-step' if vm.student else 'teacher only'})")
    for name in sorted(vm.voices):
        print(f"  {name}{'  (default)' if name == default else ''}")
    for name, why in sorted(vm.broken.items()):
        print(f"  {name}  BROKEN: {why}")


def cmd_bench(a: argparse.Namespace) -> None:
    from models.errors import ComoliveError

    if a.what == "live":
        from realtime.bench_live import run_live_bench

        return run_live_bench(json_path=a.json, model=a.model, seconds=a.seconds)
    if a.what == "soak":
        from realtime.soak import run_soak

        if not a.minutes > 0:
            raise ComoliveError(f"--minutes must be above 0, got {a.minutes:g}")
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


def _adapt_for_panel(clips, model, work_dir, on_step=None) -> str | None:
    """The panel's Adapt button: the stored adaptation to the clip, or one made now and stored
    (training/adaptation_cache.py, imported when first needed). work_dir None: only a stored one (None when
    there is none), which the panel takes when a clip is chosen."""
    from training.adaptation_cache import adapt_cached, cached_adaptation

    if work_dir is None:
        return cached_adaptation(clips, model, say=lambda _: None)
    return adapt_cached(clips, model, work_dir, on_step=on_step)[0]


def cmd_gui(a: argparse.Namespace) -> None:
    from gui.app import run

    run(model=getattr(a, "model", None), adapter=_adapt_for_panel)


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from realtime.cli import adapt_arg

    p = argparse.ArgumentParser(prog="main.py", description="comolive: real-time singing voice conversion")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a sung (or spoken) audio file to a target voice")
    c.add_argument("input", help="input audio file (wav/flac/ogg..., any rate, mono or stereo)")
    c.add_argument("output", help="output wav file")
    c.add_argument("--voice", default=None, help="target voice name (see `voices`)")
    c.add_argument("--ref", action="append", default=None, metavar="CLIP",
                   help="zero-shot target voice from a 3-10 s recording (repeat to average several clips)")
    adapt_arg(c, files=True)
    c.add_argument("--key", type=arg_types.key_or_auto, default=0.0,
                   help="key shift in semitones (-24..24), or auto: the key that moves the input into the --ref "
                        "clip's register (whole semitones between their median pitches)")
    c.add_argument("--formant", type=arg_types.formant, default=0.0,
                   help="formant shift in semitones (-12..12; needs an f0-driven vocoder: nsf or hn)")
    c.add_argument("--steps", type=arg_types.steps, default=1, help="decoder steps: 1 = one-step student (default)")
    c.add_argument("--sampler", choices=("student", "teacher"), default="student",
                   help="student (consistency, 1..k steps) or teacher (EDM, Heun)")
    c.add_argument("--pitch", default="fcpe", choices=tuple(PITCH_EXTRACTORS), help="pitch extractor")
    c.add_argument("--vocoder", default="nsf",
                   help="nsf (NSF HiFi-GAN, default), hn (compact, fast on a CPU), hn-causal, or hifigan "
                        "(the V1: pitch read from the mel)")
    c.add_argument("--check-pitch", action="store_true",
                   help="also print how far the output's melody is from the input's (Harvest f0, x key)")
    c.add_argument("--gate-db", type=float, default=None,
                   help="the live noise gate's threshold (dBFS; default: no gate; live uses -50): hear what `live` "
                        "plays between phrases")
    c.add_argument("--whole", action="store_true",
                   help="the whole-file converter instead of the live pipeline (features over the whole file; up to "
                        "30 min; what --sampler teacher always uses)")
    c.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    arg_types.model_args(c)
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser("voices", help="list the voices of a model")
    arg_types.model_args(v, device=False)
    v.set_defaults(func=cmd_voices)

    from evaluation.cli import add_command as add_eval_command
    from realtime.cli import add_commands as add_live_commands
    from training.cli import add_commands as add_training_commands

    add_live_commands(sub)  # live, stream, devices, tune
    g = sub.add_parser("gui", help="the control panel (also what `python main.py` alone opens)")
    g.add_argument("--model", default=None, help="voice model to open with (path stem, e.g. voices/NAME); "
                                                 "default: the one the panel used last")
    g.set_defaults(func=cmd_gui)

    add_eval_command(sub)

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
    arg_types.model_args(b, device=False)
    b.set_defaults(func=cmd_bench)

    add_training_commands(sub)  # corpus, preprocess, timbres, train, distill, export, voice, gta-mels, ...
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
        with tempfile.TemporaryDirectory(prefix="comolive-adapt-") as tmp:
            if getattr(args, "key", None) == "auto":
                args.key = _auto_key(args)
            if hasattr(args, "adapt"):
                args.adapt = _adapt_steps(args)
            if getattr(args, "adapt", 0):
                args.model = _adapted_model(args, Path(tmp))
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
