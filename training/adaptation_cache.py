"""Decoders adapted to a reference clip, kept between runs (`convert`/`stream`/`live --ref`, the panel's Adapt).

Adapting to a clip costs about half a minute of a 2-core CPU and gives the same weights every time for the
same clip, base model and steps (the fine-tuning is seeded). So the adapted model is stored under a key made
of exactly those (the clip's samples and rate, the base decoder's weights, its own hn vocoder, the fine-tuning
settings, the recipe's version) and used again when the same reference comes back: the second `convert
--ref CLIP` starts at once, and `live --ref CLIP` starts with the adapted voice when an earlier command made it.

Where: $COMOLIVE_CACHE_DIR, else $XDG_CACHE_HOME/comolive, else ~/.cache/comolive; each entry a folder
`adapted/<key>/` (written beside, then renamed into place, so a half-written entry is never read). The
newest MAX_ENTRIES are kept. An entry that cannot be read is said in one line, removed and made again; a
cache that cannot be written is said in one line and the adaptation is made for this run only.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from models.errors import ComoliveError
from models.voice_model import VoiceModel
from training.finetune import FinetuneConfig
from training.reference_adapt import ADAPT_STEPS, adapt_and_save

RECIPE = 1          # raise when training/reference_adapt.py or training/finetune.py would adapt differently
MAX_ENTRIES = 16    # a few MB each
MODEL = "adapted"   # the entry's model stem inside its folder


def cache_root() -> Path:
    """The comolive cache folder (see the module doc)."""
    if os.environ.get("COMOLIVE_CACHE_DIR"):
        return Path(os.environ["COMOLIVE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "comolive"


def adaptation_key(clips: list[tuple[np.ndarray, int]], base: VoiceModel, steps: int) -> str:
    """What decides the adapted weights, hashed: the clips, the base decoder and its own hn, the settings."""
    h = hashlib.sha256()
    settings = {"recipe": RECIPE, "finetune": asdict(FinetuneConfig(steps=steps)), "config": base.cfg.to_dict()}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(base.student.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    own = base.own_vocoder("hn")
    if own is not None:
        h.update(own.with_suffix(".safetensors").read_bytes())
    for wav, sr in clips:
        h.update(str(int(sr)).encode())
        h.update(np.ascontiguousarray(wav, np.float32).tobytes())
    return h.hexdigest()[:24]


def _load_base(model: VoiceModel | str | Path | None) -> VoiceModel:
    return model if isinstance(model, VoiceModel) else VoiceModel.load(model)


def _entry(clips: list[tuple[np.ndarray, int]], base: VoiceModel, steps: int) -> Path:
    return cache_root() / "adapted" / adaptation_key(clips, base, steps)


def _usable(entry: Path, say) -> str | None:
    """The entry's model stem when it loads; an unreadable entry is said with `say` and removed."""
    if not entry.is_dir():
        return None
    stem = entry / MODEL
    try:
        VoiceModel.load(stem)
    except ComoliveError as e:
        say(f"the stored adaptation {entry} cannot be read ({e}): adapting again")
        shutil.rmtree(entry, ignore_errors=True)
        return None
    os.utime(entry)  # recently used: kept longest
    return str(stem)


def cached_adaptation(clips: list[tuple[np.ndarray, int]], model: VoiceModel | str | Path | None,
                      steps: int = ADAPT_STEPS, say=print) -> str | None:
    """The stem of MODEL adapted to CLIPS for STEPS when the cache holds it and it loads, else None."""
    base = _load_base(model)
    return None if base.student is None else _usable(_entry(clips, base, steps), say)


def _prune(folder: Path, keep: int) -> None:
    entries = sorted((p for p in folder.iterdir() if p.is_dir() and "." not in p.name),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def adapt_cached(clips: list[tuple[np.ndarray, int]], model: VoiceModel | str | Path | None, work_dir: str | Path,
                 steps: int = ADAPT_STEPS, device: str | None = None, progress: bool = False, on_step=None,
                 say=print) -> tuple[str, bool]:
    """(stem of MODEL adapted to CLIPS, whether it came from the cache). Adapts when the cache has no usable
    entry and stores the result; when the cache cannot be written, the model is saved in WORK_DIR instead
    (for this run only)."""
    base = _load_base(model)

    def adapt(stem: Path) -> str:
        return adapt_and_save(clips, base, stem, steps, device, progress, on_step)

    if base.student is None:  # nothing to adapt: adapt_and_save says so
        return adapt(Path(work_dir) / MODEL), False
    entry = _entry(clips, base, steps)
    found = _usable(entry, say)
    if found is not None:
        return found, True
    folder = entry.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
    except OSError as e:
        say(f"the adaptation cache {folder} cannot be written ({e.strerror or e}): adapting for this run only")
        return adapt(Path(work_dir) / MODEL), False
    try:
        adapt(partial / MODEL)
        shutil.rmtree(entry, ignore_errors=True)
        try:
            os.replace(partial, entry)
        except OSError:  # another run stored the same adaptation meanwhile: it is the same
            pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _prune(folder, MAX_ENTRIES)
    return str(entry / MODEL), False
