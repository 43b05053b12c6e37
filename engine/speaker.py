"""Speaker embedding (256-d d-vector) from resemblyzer's bundled encoder.

One path serves trained voices (mean d-vector of their clips, `embed_many`) and zero-shot voices (one
reference clip, `embed`). Embeddings are per clip, not per frame.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import torch

from models.audio_io import resample
from models.device import pick_device
from models.errors import AudioInputError, ModelFileError


def unit_vector(x: np.ndarray) -> np.ndarray:
    """A d-vector (or a mean of d-vectors) scaled to unit length, float32."""
    return (x / max(float(np.linalg.norm(x)), 1e-12)).astype(np.float32)


class SpeakerEncoder:
    """resemblyzer VoiceEncoder (GE2E LSTM, `pretrained.pt` shipped in its package), 16 kHz input.

    Clips go through resemblyzer's own preprocess_wav (volume normalisation, webrtcvad trimming of long
    silences) because the encoder was trained on that; what survives must hold `min_speech_s` of voice.
    """

    sample_rate = 16000
    dim = 256

    def __init__(self, device: str | torch.device | None = None, min_speech_s: float = 0.5):
        self.device = pick_device(device if device is None else str(device))
        self.min_speech_s = float(min_speech_s)
        try:
            with warnings.catch_warnings():  # resemblyzer imports a deprecated scipy namespace
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder
            with contextlib.redirect_stdout(io.StringIO()):
                self.encoder = VoiceEncoder(device=self.device, verbose=False)
        except ImportError:
            raise ModelFileError("the speaker encoder needs the package resemblyzer (pip install resemblyzer)") from None
        except Exception as e:  # resemblyzer raises a bare Exception for a missing pretrained.pt
            raise ModelFileError(f"cannot load resemblyzer's speaker encoder ({e})") from None
        self.encoder.eval()

    def preprocess(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Mono audio at any rate -> resemblyzer-ready 16 kHz voice, or AudioInputError if too little voice."""
        from resemblyzer import preprocess_wav

        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise AudioInputError(f"speaker clip: expected mono audio as a 1-D array, got shape {wav.shape}")
        if not np.isfinite(wav).all():
            raise AudioInputError("speaker clip: contains NaN or infinite samples")
        wav = resample(wav, int(sr), self.sample_rate)
        # preprocess_wav's volume normalisation divides by the RMS: a silent clip would become NaN
        if len(wav) == 0 or float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) < 1e-5:
            raise AudioInputError("speaker clip: silent (no voice to take a speaker embedding from)")
        wav = preprocess_wav(np.clip(wav, -1.0, 1.0))
        got = len(wav) / self.sample_rate
        if got < self.min_speech_s:
            raise AudioInputError(f"speaker clip: only {got:.2f} s of voice after trimming silence; "
                                  f"need at least {self.min_speech_s:.1f} s (use a longer or cleaner clip)")
        return wav.astype(np.float32)

    @torch.no_grad()
    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """One clip -> unit-norm float32 [256]."""
        return self.embed_voice(self.preprocess(wav, sr))

    @torch.no_grad()
    def embed_voice(self, voice: np.ndarray) -> np.ndarray:
        """Audio that preprocess() already returned -> unit-norm float32 [256]."""
        return unit_vector(self.encoder.embed_utterance(voice))

    def embed_many(self, clips: list[tuple[np.ndarray, int]] | list[np.ndarray], sr: int | None = None) -> np.ndarray:
        """Several clips of one voice -> mean of their embeddings, renormalised to unit length.

        `clips` is a list of (wav, sr) pairs, or of arrays that all share `sr`.
        """
        if len(clips) == 0:
            raise AudioInputError("speaker embedding: no clips given")
        embs = []
        for c in clips:
            if isinstance(c, tuple):
                embs.append(self.embed(c[0], c[1]))
            else:
                if sr is None:
                    raise AudioInputError("embed_many: give (wav, sr) pairs or the shared sr")
                embs.append(self.embed(c, sr))
        return unit_vector(np.mean(embs, axis=0))
