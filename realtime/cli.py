"""The live commands of main.py: `live`, `stream`, `devices`, `tune` (parsers and handlers).

main.py registers them with `add_commands(sub)`; `bench live` lives in realtime/bench_live.py.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine import arg_types
from engine.registry import PITCH_EXTRACTORS


def adapt_arg(sp: argparse.ArgumentParser, files: bool) -> None:
    """--adapt STEPS (main.py adapts the decoder to the --ref clips before the command runs, or takes the
    stored adaptation). Unset: `files` (convert, stream) adapt whenever there is a --ref; live starts at once,
    adapted only when an earlier run stored that clip's adaptation."""
    default = ("default 300 with --ref, about 30 s on a 2-core CPU the first time; 0: zero-shot" if files else
               "default 0, zero-shot, so that the show starts at once, unless an earlier run adapted to the "
               "same clip; 300 takes about 30 s on a 2-core CPU the first time")
    sp.add_argument("--adapt", type=arg_types.whole("adaptation steps", 0), default=None,
                    metavar="STEPS", help="with --ref: first fine-tune the decoder on the reference clips for STEPS, "
                                          f"so that it renders that voice more closely; stored for the next run "
                                          f"({default})")


def _session_args(sp: argparse.ArgumentParser, whole_input: bool = False) -> None:
    """The session's options; `whole_input` (stream: a file) also takes `--key auto`."""
    sp.add_argument("--voice", default=None, help="target voice name (see `voices`)")
    sp.add_argument("--ref", action="append", default=None, metavar="CLIP",
                    help="zero-shot target voice from a 3-10 s recording (repeat to average several clips)")
    if whole_input:
        sp.add_argument("--key", type=arg_types.key_or_auto, default=None,
                        help="key shift in semitones (-24..24), or auto: into the --ref clip's register")
    else:
        sp.add_argument("--key", type=arg_types.key, default=None, help="key shift in semitones (-24..24)")
    sp.add_argument("--formant", type=float, default=None, help="formant shift in semitones")
    sp.add_argument("--pitch", default=None, choices=tuple(PITCH_EXTRACTORS),
                    help="pitch extractor (default: fcpe; dio costs less CPU, harvest more)")
    sp.add_argument("--block-ms", type=float, default=None, help="block size in ms (see `tune`)")
    sp.add_argument("--content-chunk-ms", type=float, default=None,
                    help="content/pitch chunk in ms, a multiple of 20 (default: follows the block, 40-80 ms; "
                         "longer costs less CPU, waits longer)")
    sp.add_argument("--pitch-window-ms", type=float, default=None,
                    help="pitch extractor window in ms (default 160; 320 costs ~2-3 ms more CPU a block, "
                         "see docs/results.md)")
    sp.add_argument("--gate-db", type=float, default=None, help="noise gate threshold (dBFS; -inf: no gate)")
    sp.add_argument("--gate-floor-db", type=float, default=None,
                    help="level of the converted signal while the gate is closed (dB; default -inf: silence; "
                         "-40 keeps a trace of room tone)")
    sp.add_argument("--input-gain-db", type=float, default=None,
                    help="fixed gain before feature extraction, divided out of the output (default 0 dB)")
    sp.add_argument("--model", default=None, help="voice model (path stem); default: the embedded model")
    sp.add_argument("--device", default=None, help="compute device: cpu, cuda or cuda:N (default: CUDA when present)")
    sp.add_argument("--vocoder", default=None, help="vocoder name (default: the session's choice)")
    sp.add_argument("--no-content-thread", dest="content_thread", action="store_false", default=None,
                    help="run content and pitch one after the other (better when no second core is free)")


def session_config(a: argparse.Namespace):
    """A SessionConfig from the options that were given (the session's defaults for the rest)."""
    from engine.session_config import SessionConfig

    from engine.reference import reference_for

    reference = reference_for(a.voice, getattr(a, "ref", None))
    given = dict(voice=a.voice, key=a.key, formant=a.formant, block_ms=a.block_ms, gate_db=a.gate_db,
                 gate_floor_db=getattr(a, "gate_floor_db", None),
                 model=a.model, device=a.device, vocoder=getattr(a, "vocoder", None), reference=reference,
                 content_thread=getattr(a, "content_thread", None), pitch=getattr(a, "pitch", None),
                 content_chunk_ms=getattr(a, "content_chunk_ms", None),
                 pitch_window_s=None if getattr(a, "pitch_window_ms", None) is None else a.pitch_window_ms / 1000.0,
                 input_gain_db=getattr(a, "input_gain_db", None))
    return SessionConfig(**{k: v for k, v in given.items() if v is not None})


def _margin_ms(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got '{text}'") from None
    if not 0.0 <= v <= 2000.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2000 ms, got {v:g}")
    return v


def _live_config(a: argparse.Namespace, **extra):
    from realtime.live import LiveConfig

    return LiveConfig(session=session_config(a), input_device=getattr(a, "input", None),
                      output_device=getattr(a, "output", None), monitor_device=getattr(a, "monitor", None),
                      hostapi=getattr(a, "hostapi", None), sample_rate=getattr(a, "sample_rate", None),
                      record_dir=getattr(a, "record", None), record_overwrite=bool(getattr(a, "force", False)),
                      margin_ms=getattr(a, "margin_ms", None), **extra)


def status_line(st) -> str:
    f0 = lambda v: f"{v:5.0f}" if v else "    -"  # noqa: E731
    return (f"compute p50 {st.compute_ms_p50:5.1f} p99 {st.compute_ms_p99:5.1f} / block {st.block_ms:5.1f} ms"
            f" | dropouts {st.dropouts} (late blocks {st.overruns}"
            + (f", failed blocks {st.failed_blocks}" if st.failed_blocks else "") + f") | in {st.input_level_db:6.1f} dB"
            f" out {st.output_level_db:6.1f} dB | f0 {f0(st.input_f0_hz)} -> {f0(st.output_f0_hz)} Hz")


def dropout_hint(st) -> str:
    """What to do about dropouts: the block is too small for this machine now, or the margin too thin."""
    late = st.compute_ms_p99 > st.block_ms
    return (f"the worker was late {st.dropouts} times (compute p99 {st.compute_ms_p99:.1f} ms for "
            f"{st.block_ms:.0f} ms blocks{'' if late else '; the output margin is what it missed'}): "
            "`main.py tune` measures the smallest block this machine keeps up with; a larger --block-ms "
            "or --margin-ms trades latency for safety")


def _vocoder_note(a: argparse.Namespace) -> None:
    from models.vocoders import pitch_note

    if pitch_note(getattr(a, "vocoder", None)):
        print(pitch_note(a.vocoder))


def cmd_live(a: argparse.Namespace) -> None:
    from realtime.live import LiveLoop
    from realtime.tune import format_budget

    _vocoder_note(a)
    loop = LiveLoop(_live_config(a))
    loop.start()
    try:
        st = loop.stats()
        print(f"live: {st.sample_rate} Hz, block {st.block_ms:.1f} ms, on {st.device}"
              + (f", recording to {a.record}" if a.record else ""))
        print(format_budget(st.latency_parts))
        print("Ctrl-C stops")
        tty = sys.stdout.isatty()
        t0 = last = time.monotonic()
        while loop.running and (a.seconds is None or time.monotonic() - t0 < a.seconds):
            time.sleep(0.1)  # a stopped loop (device gone) is noticed within 0.1 s
            if time.monotonic() - last >= 1.0:
                last = time.monotonic()
                line = status_line(loop.stats())
                print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()
        st = loop.stats()
        print(("\n" if sys.stdout.isatty() else "") + f"stopped: {st.blocks} blocks, {st.dropouts} dropouts")
        if st.failed_blocks:
            print(f"{st.failed_blocks} block(s) could not be converted and played as dropouts; last: {st.last_failure}")
        if st.dropouts and not st.failed_blocks:
            print(dropout_hint(st))
    if st.error:
        from realtime.devices import DeviceError

        raise DeviceError(st.error)


def cmd_stream(a: argparse.Namespace) -> None:
    from models.audio_io import check_writable, load_audio, save_audio
    from realtime.tune import format_budget

    from engine.converter import MAX_SECONDS

    out = check_writable(a.output, a.force)
    wav, sr = load_audio(a.input, max_seconds=MAX_SECONDS)
    _vocoder_note(a)
    t0 = time.perf_counter()
    from realtime.file_device import stream_file

    y, st = stream_file(wav, sr, session_config(a), fast=a.fast)
    wall = time.perf_counter() - t0
    save_audio(out, y, sr, force=True)
    print(f"streamed {a.input} ({len(wav) / sr:.2f} s at {sr} Hz) -> {out} through the live loop "
          f"({'as fast as possible' if a.fast else 'real-time pace'}, {wall:.2f} s) on {st.device}")
    print(format_budget(st.latency_parts))
    print(status_line(st))


def cmd_devices(a: argparse.Namespace) -> None:
    from realtime.devices import describe

    print(describe())


def cmd_tune(a: argparse.Namespace) -> None:
    import json

    import torch

    from realtime.tune import tune

    devices = [a.device] if a.device else (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    results = []
    for dev in devices:
        a.device = dev
        res = tune(session_config(a), seconds=a.seconds, stop_at_first=not a.all,
                   progress=lambda f, what: print(f"  measuring {what}...", flush=True) if f < 1 else None)
        print(res.table())
        results.append(res)
    if a.json:
        from dataclasses import asdict

        Path(a.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
        print(f"wrote {a.json}")


def add_commands(sub) -> None:
    """Register `live`, `stream`, `devices` and `tune` on main.py's sub-parsers."""
    lv = sub.add_parser("live", help="live conversion: input device -> target voice -> output device (headless)")
    lv.add_argument("--input", default=None, help="input device: number or part of its name (default: system's)")
    lv.add_argument("--output", default=None, help="output device: number or part of its name")
    lv.add_argument("--monitor", default=None, help="optional second output device (e.g. headphones)")
    lv.add_argument("--hostapi", default=None, help="look devices up in this host API only (e.g. JACK, ALSA)")
    lv.add_argument("--sample-rate", type=int, default=None, help="device rate (default: the input's own)")
    lv.add_argument("--record", default=None, metavar="DIR", help="write input.wav and output.wav to DIR")
    lv.add_argument("--force", action="store_true", help="overwrite input.wav/output.wav already in --record DIR")
    lv.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    lv.add_argument("--margin-ms", type=_margin_ms, default=None,
                    help="output margin: time a block may take to compute before it is late (default: one block)")
    _session_args(lv)
    adapt_arg(lv, files=False)
    lv.set_defaults(func=cmd_live)

    st = sub.add_parser("stream", help="the live loop with a wav file as the device (try it without a microphone)")
    st.add_argument("input", help="input audio file")
    st.add_argument("output", help="output wav file (same rate and length as the input)")
    st.add_argument("--fast", action="store_true", help="as fast as possible instead of real-time pace")
    st.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    _session_args(st, whole_input=True)
    adapt_arg(st, files=True)
    st.set_defaults(func=cmd_stream)

    dv = sub.add_parser("devices", help="list audio host APIs and devices (channels, default rates)")
    dv.set_defaults(func=cmd_devices)

    tu = sub.add_parser("tune", help="measure this machine and propose the smallest safe block size")
    tu.add_argument("--seconds", type=float, default=10.0, help="audio per block size tried")
    tu.add_argument("--all", action="store_true", help="measure every candidate, not only up to the first that passes")
    tu.add_argument("--json", default=None, help="write the results as JSON")
    _session_args(tu)
    tu.set_defaults(func=cmd_tune)
