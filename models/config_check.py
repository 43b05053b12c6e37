"""Every value of a configuration checked where it enters: type from the dataclass field, range by name.

Used for TOML configs of training runs ([model] and [train] of models/config.py, training/vocoder_train.py,
training/nsf_train.py) and for the JSON stored beside model and vocoder weights, so that `steps = "abc"`,
`batch_size = 0` or a crafted `layers: "ten"` give one line naming the key, not a traceback later.
"""
from __future__ import annotations

import dataclasses
import math

from models.errors import ComoliveError

AT_LEAST_ONE = {"steps", "batch_size", "segment_frames", "checkpoint_every", "validate_every", "log_every",
                "threads", "distill_steps", "distill_n", "val_every", "sample_rate", "hop_length", "n_mels",
                "content_dim", "speaker_dim", "cond_dim", "layers", "channels", "kernel_size", "dilation_cycle",
                "n_harmonics", "n_noise_bands"}
AT_LEAST_ZERO = {"context_frames", "lookahead_frames", "lookahead", "seed", "inject_from", "mel_weight",
                 "aug_shift_max", "blur_max_bins", "speaker_guidance"}
ABOVE_ZERO = {"lr", "lr_min", "grad_clip", "sigma_data", "sigma_min", "sigma_max", "rho", "p_std",
              "source_lr_scale"}
UNIT = {"ema_decay", "speaker_drop"}  # and every *_prob


def _kind_ok(annotation: str, value) -> bool:
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        return "None" in kinds
    for k in kinds:
        base = k.split("[")[0]
        if base == "bool" and isinstance(value, bool):
            return True
        if base == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return True
        if base == "str" and isinstance(value, str):
            return True
        if base in ("list", "tuple") and isinstance(value, list):
            return True
    return False


def _range_problem(name: str, value) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if name in AT_LEAST_ONE and value < 1:
        return "must be at least 1"
    if name in AT_LEAST_ZERO and value < 0:
        return "must be 0 or more"
    if name in ABOVE_ZERO and value <= 0:
        return "must be above 0"
    if (name in UNIT or name.endswith("_prob")) and not 0 <= value <= 1:
        return "must be within 0..1"
    return None


def check_values(kind: type, values: dict, where: str) -> dict:
    """`values` for dataclass `kind`: unknown keys, wrong types and out-of-range numbers raise ComoliveError
    ("<where>: [key] ..."); returns the values unchanged."""
    if not isinstance(values, dict):
        raise ComoliveError(f"{where}: expected a table of settings, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ComoliveError(f"{where}: unknown keys: {', '.join(unknown)}")
    for name, value in values.items():
        f = fields[name]
        if not _kind_ok(f.type, value):
            raise ComoliveError(f"{where}: {name} = {value!r} is not a valid {f.type}")
        problem = _range_problem(name, value)
        if problem:
            raise ComoliveError(f"{where}: {name} = {value!r} {problem}")
    return values
