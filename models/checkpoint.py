"""Checkpoints: safetensors weights + a JSON of hyper-parameters. Loading never executes code.

A checkpoint is a folder (or a stem) with `<name>.safetensors` and `<name>.json`. Writes are
atomic (temporary file, fsync, rename), so an interrupted run never leaves a half-written file. The
description is also stored inside the safetensors file's own metadata, and that copy is the one read
back: weights and their training step are one unit even if a crash falls between the two renames
(the .json stays as the readable mirror).

Training runs also keep their random state (`rng_tensors`, python's in the description), so a resumed
run draws what an uninterrupted one would, and `trim_log` drops log rows written after the checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from models.errors import ModelFileError


META_KEY = "comolive"


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".partial")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(stem: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write stem.safetensors and stem.json atomically (weights first, so the JSON marks completion)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    text = json.dumps(meta, sort_keys=True)
    _atomic_write(stem.with_suffix(".safetensors"), lambda p: save_file(flat, str(p), metadata={META_KEY: text}))
    _atomic_write(stem.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=2, sort_keys=True)))
    return stem


def checkpoint_stem(path: str | Path) -> Path:
    """The stem of a checkpoint named by its stem or by one of its two files."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def load_checkpoint(stem: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Read stem.safetensors + stem.json; a clear ModelFileError for anything missing or damaged."""
    stem = checkpoint_stem(stem)
    st, js = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st, js):
        if not p.exists():
            raise ModelFileError(f"{p}: model file not found")
    try:
        meta = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{js}: corrupted model description ({e})") from None
    try:
        tensors = load_file(str(st), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{st}: corrupted or truncated weights ({str(e).splitlines()[0]})") from None
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelFileError(f"{st}: weights contain NaN/inf ({k})")
    try:
        with safe_open(str(st), "pt") as f:
            inner = (f.metadata() or {}).get(META_KEY)
        if inner is not None:
            meta = json.loads(inner)
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{st}: corrupted model description ({e})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{js}: not a model description (a JSON object was expected)")
    return tensors, meta


def rng_tensors() -> dict[str, torch.Tensor]:
    """torch's CPU random state as a checkpoint tensor."""
    return {"rng.torch": torch.get_rng_state()}


def restore_rng(tensors: dict[str, torch.Tensor], rng, meta: dict) -> None:
    """Undo rng_tensors() and put python's generator `rng` back to the state kept in meta["rng_python"]."""
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    state = meta.get("rng_python")
    if state is not None:
        rng.setstate((state[0], tuple(state[1]), state[2]))


def python_rng_state(rng) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def trim_log(path: Path, step: int) -> None:
    """Drop the rows of a CSV log (first column: step) written after `step` (a resumed run writes them again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if not ln.split(",", 1)[0].isdigit() or int(ln.split(",", 1)[0]) <= step]
    if len(keep) != len(lines):
        path.write_text("".join(keep))


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strict state-dict load with a readable error when the weights belong to another architecture."""
    try:
        missing, unexpected = module.load_state_dict(tensors, strict=False)
    except RuntimeError as e:  # size mismatch
        raise ModelFileError(f"{source}: weights do not fit this model ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise ModelFileError(
            f"{source}: weights do not fit this model ({len(missing)} missing, {len(unexpected)} unexpected, e.g. {example})"
        )


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """An optimizer's state as flat tensors (`opt.<param>.<name>`), so it travels in a safetensors checkpoint."""
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of optimizer_tensors (other keys are ignored)."""
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
