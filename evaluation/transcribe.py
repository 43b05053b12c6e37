"""Speech-to-text with the bundled Whisper-tiny (CTranslate2), for the content-preservation metric.

The model that gives content features (engine/content.py) also transcribes: CTranslate2's Whisper
`generate` runs the decoder on 30 s log-mel windows; greedy decoding, no timestamps, fixed language,
so a transcript is a deterministic function of the audio (see REPETITION_PENALTY). Token strings
are byte-level BPE (GPT-2 alphabet) and are turned back into text here, which is all a tokenizer
package (or faster-whisper, which wraps this same CTranslate2 call) would add.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from engine.content import CONTENT_SAMPLE_RATE, WhisperLogMel, bundled_whisper_dir
from models.audio_io import as_mono, resample
from models.device import pick_device
from models.errors import ModelFileError

WINDOW_S = 30          # Whisper's fixed input length
MEL_FRAMES = 3000      # 30 s at 100 mel frames/s
MAX_TOKENS = 224       # Whisper's limit per window (half its 448-token context)
# Greedy Whisper-tiny loops on sung vowels ("rah-h-h-h-..."), which would swamp a character error
# rate; a mild penalty on repeated tokens stops the loops and keeps the decoding deterministic.
REPETITION_PENALTY = 1.2


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's reversible map of bytes onto printable characters, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tokens_to_text(tokens: list[str]) -> str:
    """Byte-level BPE token strings -> text; special tokens (<|...|>) are dropped."""
    dec = _byte_decoder()
    data = bytearray()
    for tok in tokens:
        if tok.startswith("<|") and tok.endswith("|>"):
            continue
        data.extend(dec[c] for c in tok if c in dec)
    return data.decode("utf-8", errors="replace").strip()


class Transcriber:
    """Whisper-tiny transcripts of audio at any rate (long audio is cut into 30 s windows)."""

    def __init__(self, model_dir: str | Path | None = None, language: str = "en", device: str | None = None,
                 compute_type: str = "int8", threads: int = 1):
        import ctranslate2

        self.device = pick_device(device)
        model_dir = Path(model_dir) if model_dir is not None else bundled_whisper_dir()
        if not (model_dir / "model.bin").is_file():
            raise ModelFileError(f"{model_dir}: no CTranslate2 Whisper model (model.bin) there")
        try:
            self.model = ctranslate2.models.Whisper(str(model_dir), device=self.device.type,
                                                    device_index=self.device.index or 0,
                                                    compute_type=compute_type, intra_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise ModelFileError(f"{model_dir}: cannot load the Whisper model ({e})") from None
        self.prompt = ["<|startoftranscript|>"]
        if self.model.is_multilingual:
            self.prompt += [f"<|{language}|>", "<|transcribe|>"]
        self.prompt += ["<|notimestamps|>"]
        self.logmel = WhisperLogMel()

    @torch.no_grad()
    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        import ctranslate2

        x = resample(as_mono(wav), int(sr), CONTENT_SAMPLE_RATE)
        win = WINDOW_S * CONTENT_SAMPLE_RATE
        texts = []
        for start in range(0, max(len(x), 1), win):
            seg = x[start:start + win]
            if len(seg) < CONTENT_SAMPLE_RATE // 10:  # under 0.1 s: nothing to read
                continue
            padded = np.zeros(win, np.float32)
            padded[: len(seg)] = seg
            mel = np.ascontiguousarray(self.logmel(padded)[None, :, :MEL_FRAMES])
            res = self.model.generate(ctranslate2.StorageView.from_array(mel), [self.prompt], beam_size=1,
                                      max_length=MAX_TOKENS, repetition_penalty=REPETITION_PENALTY,
                                      suppress_blank=True, return_scores=False)
            texts.append(tokens_to_text(res[0].sequences[0]))
        return " ".join(t for t in texts if t)
