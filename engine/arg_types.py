"""argparse value types and arguments shared by the command modules (main.py, training/cli.py,
evaluation/cli.py, realtime/cli.py): a bad value is one clear line."""
from __future__ import annotations

import argparse

from engine.session_config import KEY_RANGE


def key(value: str) -> float:
    try:
        k = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"key must be a number of semitones, got '{value}'") from None
    if not -KEY_RANGE <= k <= KEY_RANGE:
        raise argparse.ArgumentTypeError(f"key {k:g} is out of range (-{KEY_RANGE}..{KEY_RANGE} semitones)")
    return k


def key_or_auto(value: str) -> float | str:
    """A key in semitones, or "auto" (the key that moves the input into the reference's register: engine/register.py)."""
    return "auto" if value.strip().lower() == "auto" else key(value)


def formant(text: str) -> float:
    v = float(text)
    if not -12.0 <= v <= 12.0:
        raise argparse.ArgumentTypeError(f"formant shift {v:g} is outside -12..12 semitones")
    return v


def whole(what: str, lo: int, hi: int | None = None):
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


steps = whole("steps", 1, 200)  # decoder sampling steps
count = whole("the number of steps", 1)  # training steps


def model_args(sp, device=True):
    sp.add_argument("--model", default=None, help="voice model (path stem); default: the embedded model")
    if device:
        sp.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
