"""The swappable feature extractors by name: pitch extractors and content encoders.

Each entry says which class builds it ("module:Class") and with which fixed arguments; nothing is
imported until one is built, so the CLI and the panel list the names without loading torch. Adding an
extractor is its module and one line here (vocoders have their own table in models/vocoders.py).
A voice model records the content encoder and the pitch extractor it was trained with
(ModelConfig.content_encoder, .pitch_extractor).
"""
from __future__ import annotations

from importlib import import_module

from models.errors import ComoliveError

PITCH_EXTRACTORS: dict[str, tuple[str, dict]] = {
    "fcpe": ("engine.pitch:FCPEPitch", {}),
    "dio": ("engine.pitch:WorldPitch", {"method": "dio"}),
    "harvest": ("engine.pitch:WorldPitch", {"method": "harvest"}),
}

CONTENT_ENCODERS: dict[str, tuple[str, dict]] = {
    "whisper": ("engine.content:WhisperContent", {}),  # the bundled Whisper-tiny encoder (runs live)
    "hf": ("engine.content:HFContent", {}),  # a local HuBERT/ContentVec folder (model_dir=...), offline only
    "hubert": ("engine.content:HFContent", {}),
    "contentvec": ("engine.content:HFContent", {}),
}


def build(table: dict[str, tuple[str, dict]], what: str, name: str, **kw):
    """The extractor `name` of `table`, built with kw (one clear error for an unknown name)."""
    key = str(name).strip().lower()
    if key not in table:
        raise ComoliveError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}")
    target, fixed = table[key]
    module, cls = target.split(":")
    return getattr(import_module(module), cls)(**fixed, **kw)
