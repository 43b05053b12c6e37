"""Copies of a singer's recordings sung higher and lower, with their voice (formants) kept, for `voice add`.

A folder holds a singer at their own pitches only; converting another singer at key 0 asks the fine-tuned
decoder for this voice at the *source's* pitches, often several semitones away. WORLD re-synthesis
(pyworld: Harvest f0, CheapTrick envelope, D4C aperiodicity) moves the f0 and keeps the spectral envelope,
so the copies show the decoder the same vocal tract over a wider range. They feed the decoder only: the
singer's d-vector and the model's own vocoder come from the original recordings.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from models.audio_io import load_audio, resample

WORLD_RATE = 22050      # re-synthesis rate (the models' rate; the envelope of a 44.1 kHz file costs twice as much)
FRAME_MS = 5.0


def shift_keep_formants(wav: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """`wav` re-synthesised by WORLD with its f0 moved by `semitones` and its spectral envelope unchanged."""
    import pyworld as pw

    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = pw.harvest(x, sr, f0_floor=60.0, f0_ceil=1100.0, frame_period=FRAME_MS)
    sp = pw.cheaptrick(x, f0, t, sr)
    ap = pw.d4c(x, f0, t, sr)
    y = pw.synthesize(f0 * 2.0 ** (semitones / 12.0), sp, ap, sr, FRAME_MS)
    y = y[:len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return (y / peak * 0.95 if peak > 0.95 else y).astype(np.float32)


def write_shifted_copies(files: list[Path], out_dir: Path, semitones: list[float]) -> list[Path]:
    """Each file at each shift as OUT_DIR/<shift>/<name>.wav (WORLD_RATE); returns the files written."""
    written = []
    for f in files:
        wav, sr = load_audio(f)
        wav = resample(wav, sr, WORLD_RATE)
        for st in semitones:
            d = out_dir / f"{st:+g}"
            d.mkdir(parents=True, exist_ok=True)
            path = d / (Path(f).stem + ".wav")
            sf.write(str(path), shift_keep_formants(wav, WORLD_RATE, st), WORLD_RATE)
            written.append(path)
    return written
