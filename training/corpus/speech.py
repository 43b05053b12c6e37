"""A few spoken sentences from flite and festival voices (the `speech/` part of the corpus).

No f0 ground truth: just `speech/<voice>/<id>.wav` (22 050 Hz mono) and `<id>.txt`. Useful as
non-singing input for conversion tests and as extra speakers for speaker-encoder checks.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from models.audio_io import resample, save_audio
from models.errors import ComoliveError

SR = 22050

# Original sentences written for this corpus (no third-party text), phonetically varied.
SENTENCES = [
    "The quiet river carried seven paper boats past the old mill.",
    "Bright lamps were hanging over the market when the rain began.",
    "She packed fresh bread, cheese and a jar of plum jam for the journey.",
    "How many voices can you hear singing in the choir tonight?",
    "A cold wind pushed the yellow leaves across the empty square.",
    "Thick fog hid the harbour, so the ferry waited until noon.",
    "Please measure the length of the wooden beam twice before cutting.",
    "Every morning the baker opens his shop at exactly six o'clock.",
]

# voice name in the corpus → how to make it speak
FLITE_VOICES = {"flite_kal16": "kal16", "flite_awb": "awb", "flite_rms": "rms", "flite_slt": "slt"}
FESTIVAL_VOICES = {"festival_kal": None}   # festival's default voice (festvox-kallpc16k)


def available_speech_voices() -> list[str]:
    out = []
    if shutil.which("flite"):
        r = subprocess.run(["flite", "-lv"], capture_output=True, text=True)
        have = set(r.stdout.replace("Voices available:", "").split())
        out += [k for k, v in FLITE_VOICES.items() if v in have]
    if shutil.which("text2wave"):
        out += list(FESTIVAL_VOICES)
    return out


def speak(voice: str, text: str) -> tuple[np.ndarray, int]:
    """Synthesise `text` with a corpus speech voice: (float32 mono, native rate)."""
    with tempfile.TemporaryDirectory(prefix="comolive-speech-") as tmp:
        wav_path = Path(tmp) / "out.wav"
        if voice in FLITE_VOICES:
            cmd = ["flite", "-voice", FLITE_VOICES[voice], "-t", text, "-o", str(wav_path)]
        elif voice in FESTIVAL_VOICES:
            txt = Path(tmp) / "in.txt"
            txt.write_text(text + "\n", encoding="utf-8")
            cmd = ["text2wave", "-o", str(wav_path), str(txt)]
        else:
            known = ", ".join(list(FLITE_VOICES) + list(FESTIVAL_VOICES))
            raise ComoliveError(f"unknown speech voice '{voice}' (known: {known})")
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=120)
        except FileNotFoundError:
            pkg = "flite" if cmd[0] == "flite" else "festival"
            raise ComoliveError(f"{cmd[0]} is not installed (apt install {pkg})") from None
        if r.returncode != 0 or not wav_path.exists():
            msg = r.stderr.decode("latin-1").strip().splitlines()
            raise ComoliveError(f"{voice} failed to speak: {msg[0] if msg else 'exit status %d' % r.returncode}")
        wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    return wav.mean(axis=1), int(sr)


def level(wav: np.ndarray, target_dbfs: float = -20.0) -> np.ndarray:
    """Scale to `target_dbfs` RMS over the louder half of 20 ms blocks, peak kept under 0.95."""
    n = len(wav) // 441 * 441
    if n == 0 or not np.any(wav):
        return wav
    blocks = np.sqrt((wav[:n].reshape(-1, 441).astype(np.float64) ** 2).mean(axis=1))
    active = blocks[blocks >= np.median(blocks)]
    rms = float(np.sqrt((active ** 2).mean())) if len(active) else 0.0
    if rms <= 0:
        return wav
    g = 10 ** (target_dbfs / 20) / rms
    g = min(g, 0.95 / float(np.abs(wav).max()))
    return (wav * g).astype(np.float32)


def build_speech(out_dir: str | Path, voices: list[str] | None = None, sentences: list[str] | None = None,
                 progress: bool = True) -> dict:
    """Write `out_dir/<voice>/sNN.wav` + `sNN.txt` for every voice and sentence; return stats."""
    out_dir = Path(out_dir)
    voices = available_speech_voices() if voices is None else list(voices)
    sentences = SENTENCES if sentences is None else list(sentences)
    jobs = [(v, k, s) for v in voices for k, s in enumerate(sentences)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="speech", unit="file")
    seconds: dict[str, float] = {}
    for v, k, text in jobs:
        wav, sr = speak(v, text)
        wav = level(resample(wav, sr, SR))
        d = out_dir / v
        d.mkdir(parents=True, exist_ok=True)
        save_audio(d / f"s{k:02d}.wav", wav, SR)
        (d / f"s{k:02d}.txt").write_text(text + "\n", encoding="utf-8")
        seconds[v] = seconds.get(v, 0.0) + len(wav) / SR
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"voices": voices, "sentences": len(sentences), "sample_rate": SR,
            "minutes": round(sum(seconds.values()) / 60, 3),
            "minutes_per_voice": {v: round(s / 60, 3) for v, s in sorted(seconds.items())},
            "note": "flite (CMU, BSD-style licence) and festival voices; no f0 ground truth"}
