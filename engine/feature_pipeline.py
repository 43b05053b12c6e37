"""All decoder inputs of a recording on the model's frame grid, computed the way training saw them.

FeaturePipeline turns (wav, sample_rate) into content [T, C], f0 [T] (Hz, 0 = unvoiced, octave
jumps repaired), loudness [T] (dB) with T = len(wav at the model rate) // hop. Preprocessing for
training and offline conversion both call it, so the decoder never sees features made another way.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from engine.content import make_content_extractor
from engine.frames import align_frames
from engine.loudness import Loudness
from engine.pitch import fix_octave_jumps, make_pitch_extractor
from models.audio_io import resample
from models.config import ModelConfig
from models.device import pick_device


class FeaturePipeline:
    def __init__(self, cfg: ModelConfig, pitch: str = "fcpe", content: str | None = None,
                 device: str | torch.device | None = None):
        """content: the content encoder (default: the one the model was trained with, cfg.content_encoder)."""
        self.cfg = cfg
        content = content or cfg.content_encoder
        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.pitch = make_pitch_extractor(pitch, device=self.device)
        # Whisper runs fastest on one thread (CTranslate2, small calls); it then runs beside the pitch
        # extractor on the other core (see extract)
        kw = {"threads": 1} if content == "whisper" else {}
        self.content = make_content_extractor(content, device=self.device, **kw)
        self.loudness = Loudness(cfg.sample_rate, cfg.hop_length, 1024)

    def n_frames(self, n_samples_model_rate: int) -> int:
        return n_samples_model_rate // self.cfg.hop_length

    def f0(self, wav: np.ndarray, sr: int, t: int) -> np.ndarray:
        """f0 of a recording on t model frames (Hz, 0 = unvoiced, octave jumps repaired)."""
        f0 = self.pitch.extract(resample(wav, sr, self.pitch.sample_rate))
        f0 = align_frames(f0, self.pitch.frame_rate, self.cfg.frame_rate, t, mode="nearest")
        return fix_octave_jumps(f0).astype(np.float32)

    def content_of(self, wav: np.ndarray, sr: int, t: int) -> np.ndarray:
        """Content features of a recording on t model frames (as `extract` computes them, in a worker thread:
        with 2 torch threads in the calling thread, Whisper's small torch ops were 4x slower on a busy machine)."""
        with ThreadPoolExecutor(1) as pool:
            units = pool.submit(self.content.extract, resample(wav, sr, self.content.sample_rate)).result()
        return align_frames(units, self.content.frame_rate, self.cfg.frame_rate, t, mode="nearest").astype(np.float32)

    def extract(self, wav: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """wav: mono float32 at any rate -> dict(content, f0, loudness, wav_model) on the model grid."""
        cfg = self.cfg
        wav_m = resample(wav, sr, cfg.sample_rate)
        t = self.n_frames(len(wav_m))
        with ThreadPoolExecutor(1) as pool:  # content and pitch side by side: both release the GIL
            units = pool.submit(self.content.extract, resample(wav, sr, self.content.sample_rate))
            f0 = self.f0(wav, sr, t)
            units = units.result()
        units = align_frames(units, self.content.frame_rate, cfg.frame_rate, t, mode="nearest")
        loud = self.loudness(wav_m)[:t]
        return {"content": units.astype(np.float32), "f0": f0, "loudness": loud.astype(np.float32),
                "wav_model": wav_m}
