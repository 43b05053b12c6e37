"""Loaded, stateless parts (models, extractors, vocoders) shared by live sessions: a new session with another
block size or key reuses what an earlier one loaded. The per-stream state lives in each session's stages."""
from __future__ import annotations

import threading
import warnings

import torch

from models.errors import ComoliveError
from models.vocoders import default_live_vocoder, load_vocoder

_LOADED: dict = {}  # loaded, stateless parts shared by sessions (a new block size needs no reload)
_LOADING = threading.Lock()


def loaded(key, make):
    with _LOADING:  # sessions may be prepared in background threads
        if key not in _LOADED:
            _LOADED[key] = make()
        return _LOADED[key]


def load_session_vocoder(name: str, device: torch.device, model=None):
    """A vocoder by name; "auto" is models.vocoders.default_live_vocoder(device) ("hn" on a CPU), falling
    back to "hifigan" when that one cannot be loaded here. `model` (a VoiceModel): its own copy of the
    vocoder is used when it has one."""
    def load(choice: str):
        own = model.own_vocoder(choice) if model is not None else None
        return loaded(("vocoder", choice, str(own), str(device)), lambda: load_vocoder(choice, device=device, path=own))

    if str(name).strip().lower() != "auto":
        return name, load(name)
    choice = default_live_vocoder(device)
    try:
        return choice, load(choice)
    except (ComoliveError, ImportError, OSError) as e:
        if choice == "hifigan":
            raise
        warnings.warn(f"vocoder {choice!r} could not be loaded ({e}); using 'hifigan' (slower on a CPU, "
                      f"no formant shift)", RuntimeWarning, stacklevel=3)
        return "hifigan", loaded(("vocoder", "hifigan", str(device)),
                                  lambda: load_vocoder("hifigan", device=device))
