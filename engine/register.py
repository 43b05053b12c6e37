"""The key that moves a singer into a target voice's register (`--key auto`; `eval --real`'s "register" key).

A target voice sung in a register far from the source's (a bass's reference for a soprano's song) sounds
like neither: the decoder is asked for that timbre at pitches it never carries. The usual remedy is the key
shift a user picks by ear ("+12 for a man to a woman"); `--key auto` picks it from the two recordings: the
whole semitones between the median f0 of the source and of the reference, within +-MAX_REGISTER_KEY. It
needs the whole input (convert, stream); live, the panel's Match button takes the singer's median from the
last seconds sung (gui/sung_pitch.py). A spoken reference places the register lower than that person sings
(docs/results.md: a median 7.5 semitones on the train speakers; moving the key there was measured and not
kept).
"""
from __future__ import annotations

import numpy as np

from models.errors import ComoliveError

MAX_REGISTER_KEY = 12


def median_f0(f0: np.ndarray) -> float:
    """Median of the voiced frames (0 when none is voiced)."""
    f0 = np.asarray(f0)
    return float(np.median(f0[f0 > 0])) if (f0 > 0).any() else 0.0


def register_key(target_f0: float, source_f0: float, limit: float = MAX_REGISTER_KEY) -> float:
    """Whole semitones from the source's median f0 to the target's, within +-limit (0 when either is 0)."""
    if target_f0 <= 0 or source_f0 <= 0:
        return 0.0
    key = float(np.round(12.0 * np.log2(target_f0 / source_f0)))
    return float(np.clip(key, -limit, limit)) + 0.0  # + 0.0: no -0.0


def clips_median_f0(clips: list[tuple[np.ndarray, int]], pitch: str = "fcpe") -> float:
    """Median f0 over the voiced frames of all the (audio, rate) clips, with the named pitch extractor."""
    from engine.pitch import make_pitch_extractor

    extractor = make_pitch_extractor(pitch)
    return median_f0(np.concatenate([extractor.extract_from(np.asarray(w, np.float32), sr) for w, sr in clips]))


def auto_key(source: tuple[np.ndarray, int], references: list[tuple[np.ndarray, int]], pitch: str = "fcpe",
             ) -> tuple[float, float, float]:
    """(key, the source's median f0, the references' median f0) with the named pitch extractor."""
    src, ref = clips_median_f0([source], pitch), clips_median_f0(references, pitch)
    if src <= 0:
        raise ComoliveError("--key auto: no pitch found in the input")
    if ref <= 0:
        raise ComoliveError("--key auto: no pitch found in the reference")
    return register_key(ref, src), src, ref
