"""Offline conversion of a whole recording: features -> one-step (or k-step) decoder -> vocoder.

Long inputs are decoded in chunks with overlap equal to the decoder's receptive field, and the
sampler noise is indexed by absolute frame, so the result does not depend on the chunking.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.feature_pipeline import FeaturePipeline
from engine.loudness_norm import match_level, normalize_level
from models.retrieval import ContentIndex, check_ratio
from models.audio_io import resample
from models.dataset import collate, interpolate_f0
from models.denoiser import receptive_field
from models.device import pick_device
from models.errors import AudioInputError, ComoliveError
from models.formant import warp_mel
from models.voice_model import VoiceModel
from models.vocoders import load_vocoder

MIN_SECONDS = 0.25
MAX_SECONDS = 30 * 60  # a file is converted whole: it, its features and its output are all in memory at once


@dataclass
class ConversionResult:
    audio: np.ndarray
    sample_rate: int
    voice: str
    key: float
    steps: int
    sampler: str
    device: str
    input_seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self, src, dst) -> str:
        t = self.timings
        total = sum(t.values())
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in t.items())
        return (f"converted {src} ({self.input_seconds:.2f} s) -> {dst}: voice '{self.voice}', key {self.key:+g}, "
                f"{self.sampler} {self.steps} step(s) on {self.device}; {total:.2f} s compute "
                f"({total / max(self.input_seconds, 1e-9):.2f}x real time: {parts})")


class Converter:
    """Holds the loaded model, feature extractors and vocoder; convert() may be called many times."""

    def __init__(self, model: str | Path | None = None, device: str | None = None, pitch: str = "fcpe",
                 chunk_frames: int = 1024, vocoder: str = "nsf"):
        self.device = pick_device(device)
        self.model = VoiceModel.load(model, device=self.device)
        self.cfg = self.model.cfg
        self.features = FeaturePipeline(self.cfg, pitch=pitch, device=self.device)
        # models/vocoders.py: "nsf" (default), "hn", "hifigan", ...; the model's own hn when it has one
        self.vocoder = load_vocoder(vocoder, self.device, path=self.model.own_vocoder(vocoder))
        self.chunk_frames = chunk_frames
        self._index = None  # (reference, its ContentIndex)

    def content_index(self, reference) -> ContentIndex:
        """The content frames of a reference's clips (kept for the last reference asked for)."""
        if self._index is None or self._index[0] is not reference:
            frames = [self.features.content_of(w, sr, self.features.n_frames(round(len(w) * self.cfg.sample_rate / sr)))
                      for w, sr in reference.clips]
            self._index = (reference, ContentIndex(np.concatenate(frames)))
        return self._index[1]

    def decode_mel(self, feats: dict[str, np.ndarray], speaker: np.ndarray, key: float, steps: int,
                   sampler: str, seed: int = 0) -> torch.Tensor:
        """Features on the model grid -> log-mel [M, T], decoded in overlapping chunks."""
        f0, voiced = interpolate_f0(feats["f0"] * np.float32(2.0 ** (key / 12.0)))
        t = len(f0)
        left, right = receptive_field(self.cfg)
        hop = self.chunk_frames
        out = []
        for start in range(0, t, hop):
            a, b = max(0, start - left), min(t, start + hop + right)
            item = {"mel": np.zeros((self.cfg.n_mels, b - a), np.float32), "content": feats["content"][a:b],
                    "f0": f0[a:b], "voiced": voiced[a:b], "loudness": feats["loudness"][a:b], "speaker": speaker}
            batch = collate([item])
            batch["shift"] = torch.zeros(1)
            mel = self.model.decode(batch, steps=steps, sampler=sampler, seed=seed, frame_offset=a)
            out.append(mel[0, :, start - a : start - a + min(hop, t - start)])
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def convert(self, wav: np.ndarray, sr: int, voice: str | None = None, key: float = 0.0, steps: int = 1,
                sampler: str = "student", formant: float = 0.0, reference=None, retrieval: float = 0.0
                ) -> ConversionResult:
        """`formant`: semitones of formant shift (mel warp before an f0-driven vocoder keeps the pitch);
        `reference`: an engine.reference.Reference (zero-shot voice from clips) instead of a trained voice;
        `retrieval`: share of each content frame replaced by its nearest frames in the reference clips
        (models/retrieval.py)."""
        seconds = len(wav) / sr
        if seconds < MIN_SECONDS:
            raise AudioInputError(f"input is too short ({seconds:.3f} s; at least {MIN_SECONDS} s needed)")
        if float(np.max(np.abs(wav))) < 1e-4:
            raise AudioInputError("input is silent (peak below -80 dBFS): nothing to convert")
        if formant and not self.vocoder.pitch_from_f0:
            raise ComoliveError(f"a formant shift needs an f0-driven vocoder (use --vocoder nsf or hn): "
                                f"{self.vocoder.name} takes its pitch from the mel, which the shift moves too")
        retrieval = check_ratio(retrieval)
        if retrieval > 0 and (reference is None or not reference.clips):
            raise ComoliveError("--retrieval needs the target's recordings: give reference clips (--ref)")
        if reference is not None:
            speaker, voice = reference.embedding, reference.name
        else:
            speaker = self.model.speaker(voice)
            voice = voice or self.model.meta.get("default_voice") or sorted(self.model.voices)[0]
        timings = {}
        t0 = time.perf_counter()
        wav_n, gain = normalize_level(wav, sr)
        feats = self.features.extract(wav_n, sr)
        if retrieval > 0:
            feats["content"] = self.content_index(reference).blend(feats["content"], retrieval)
        timings["features"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        mel = self.decode_mel(feats, speaker, key, steps, sampler)
        if formant:
            mel = torch.from_numpy(warp_mel(mel.float().cpu().numpy(), formant)).to(mel)
        timings["decoder"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        f0_voc = torch.from_numpy(np.asarray(feats["f0"], np.float32) * np.float32(2.0 ** (key / 12.0)))
        out = self.vocoder(mel[None].to(self.device), f0_voc[None])[0].float().cpu().numpy().reshape(-1)
        timings["vocoder"] = time.perf_counter() - t0
        out = resample(out / gain, self.cfg.sample_rate, sr)  # back to the input's rate
        n = len(wav)
        out = match_level(np.pad(out, (0, max(0, n - len(out))))[:n].astype(np.float32), wav, sr)
        return ConversionResult(out, sr, voice, key, steps, sampler, str(self.device), seconds, timings)

