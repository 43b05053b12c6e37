"""The consistency decoder on a live stream: one or more network evaluations, frame by frame.

Conditions are computed per frame (speaker embedding and formant shift may differ from frame to
frame, which is how live voice/formant changes ramp without clicks), then pushed through
models.streaming_denoiser.StreamingDenoiser stages. steps = 1 is the one-step student at sigma_max; steps = k
chains k stages exactly as ConsistencyDecoder.sample does (x = x0 + noise(k) * sqrt(s_k^2 - s_min^2),
then denoise at s_k), each stage adding its lookahead. Noise is models.noise.frame_noise indexed by
absolute frame and step, so a stream decodes like VoiceModel.decode of the same features.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import torch

from models.denoiser import loudness_input, pitch_input, shift_input
from models.edm import EDMDecoder, karras_sigmas, unit_to_mel
from models.noise import frame_noise
from models.streaming import Fifo
from models.streaming_denoiser import StreamingDenoiser


def condition(decoder: EDMDecoder, content, f0, voiced, loudness, speaker, shift) -> torch.Tensor:
    """ConditionEncoder.forward before its smoothing conv, per frame: [1, cond_dim, n].

    content [n, C]; f0 (unvoiced filled), voiced, loudness (dB), shift (semitones) [n]; speaker [n, S]."""
    p = next(decoder.parameters())

    def t(a):
        return torch.as_tensor(np.asarray(a, np.float32), device=p.device).unsqueeze(0)

    h = decoder.net.cond_encoder.projections(t(content), t(f0), t(voiced), t(loudness), t(speaker), t(shift))
    return h.transpose(1, 2)


class Conditioner:
    """`condition` for one decoder with its weights packed once (what the live session calls per block).

    The per-frame projections (content, pitch, loudness) are one GEMM over [content, pitch_input(f0),
    voiced, loudness_input(dB)] with their biases summed; the speaker and shift projections are
    computed once and reused while they stay the same (no ramp running). ~25 small ops fewer than
    `condition`; the sums are the same in another order (~1e-7 relative)."""

    name = "conditioner"

    def __init__(self, decoder: EDMDecoder):
        self.rate_in = self.rate_out = Fraction(decoder.cfg.sample_rate, decoder.cfg.hop_length)  # model frames
        enc = decoder.net.cond_encoder
        self.enc = enc
        with torch.no_grad():
            self.w = torch.cat([enc.content.weight, enc.pitch.weight, enc.loudness.weight], 1).t().contiguous()
            self.b = (enc.content.bias + enc.pitch.bias + enc.loudness.bias).detach()
        self.device = self.w.device
        self._key: tuple | None = None  # (speaker bytes, shift) of the cached constant part
        self._const: torch.Tensor | None = None

    def _constant(self, speaker: np.ndarray, shift: np.ndarray) -> torch.Tensor:
        """Biases + speaker and shift projections: [1, cond_dim] when no ramp is running, else [n, cond_dim]."""
        enc = self.enc
        if len(speaker) and (speaker == speaker[:1]).all() and (shift == shift[:1]).all():
            key = (speaker[0].tobytes(), float(shift[0]))
            if key != self._key:
                spk = torch.from_numpy(speaker[:1].copy()).to(self.device)
                sh = torch.from_numpy(shift[:1].copy()).to(self.device)
                self._const = self.b + enc.speaker(spk) + enc.shift(shift_input(sh).unsqueeze(-1))
                self._key = key
            return self._const
        spk = torch.from_numpy(np.ascontiguousarray(speaker)).to(self.device)
        sh = torch.from_numpy(np.ascontiguousarray(shift)).to(self.device)
        return self.b + enc.speaker(spk) + enc.shift(shift_input(sh).unsqueeze(-1))

    @staticmethod
    def ready(n_in):
        return np.asarray(n_in, np.int64)

    def reset(self) -> None:
        """Nothing to clear: the cached speaker part depends on the speaker only."""

    def flush(self) -> torch.Tensor:
        """Frame by frame: nothing is owed."""
        return torch.zeros(1, self.w.shape[1], 0, device=self.device)

    def push(self, content, f0, voiced, loudness, speaker, shift) -> torch.Tensor:
        """The arguments of `condition` (numpy) -> [1, cond_dim, n]."""
        content = np.asarray(content, np.float32)
        if self.enc.units is not None:
            with torch.inference_mode():
                content = self.enc.snap(torch.from_numpy(content).to(self.device)).cpu().numpy()
        n, c = content.shape
        x = np.empty((n, c + 3), np.float32)
        x[:, :c] = content
        x[:, c] = pitch_input(f0)
        x[:, c + 1] = voiced
        x[:, c + 2] = loudness_input(loudness)
        with torch.inference_mode():
            const = self._constant(np.asarray(speaker, np.float32), np.asarray(shift, np.float32))
            h = torch.addmm(const, torch.from_numpy(x).to(self.device), self.w)
        return h.t().unsqueeze(0)


class DecoderStream:
    """push(condition [1, cond_dim, n]) -> log-mel frames [n_mels, k], lagging by lookahead_frames."""

    name = "decoder lookahead"

    def __init__(self, decoder: EDMDecoder, steps: int = 1, seed: int = 0):
        cfg = decoder.cfg
        self.rate_in = self.rate_out = Fraction(cfg.sample_rate, cfg.hop_length)  # model frames
        self.cfg, self.steps, self.seed = cfg, int(steps), int(seed)
        sig = karras_sigmas(max(self.steps, 1) + 1, cfg.sigma_min, cfg.sigma_max, cfg.rho)
        self.sigmas = [float(sig[k]) if k else float(cfg.sigma_max) for k in range(self.steps)]
        self.stages = [StreamingDenoiser(decoder, sigma=s, seed=seed) for s in self.sigmas]
        self.lookahead_frames = sum(s.lookahead_frames for s in self.stages)
        self.reset()

    def reset(self) -> None:
        for s in self.stages:
            s.reset()
        self._pre = [Fifo() for _ in self.stages[1:]]  # conditions waiting for the previous stage's frames
        self._frames = [0] * len(self.stages)  # frames pushed into each stage

    def ready(self, n_in):
        return np.maximum(0, np.asarray(n_in, np.int64) - self.lookahead_frames)

    @staticmethod
    def _push(stage: StreamingDenoiser, pre: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """StreamingDenoiser.push with a precomputed condition and a given noisy input x (= noise * sigma)."""
        stage.frames_in += pre.shape[-1]
        stage._like = pre[..., :0]
        stage._batched = True  # keep [B, M, k]
        return stage._run(pre, x, last=False)

    def _noise(self, step: int, start: int, n: int, like: torch.Tensor) -> torch.Tensor:
        z = torch.from_numpy(frame_noise(self.seed, step, start, n, self.cfg.n_mels))
        return z.to(device=like.device, dtype=like.dtype).unsqueeze(0)

    def push(self, pre: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            n = pre.shape[-1]
            x = self._noise(0, self._frames[0], n, pre) * self.sigmas[0]
            for f in self._pre:
                f.push(pre)
            y = self._push(self.stages[0], pre, x)
            self._frames[0] += n
            for k in range(1, self.steps):
                m = y.shape[-1]
                pk = self._pre[k - 1].pop(m)
                s = self.sigmas[k]
                x = y + self._noise(k, self._frames[k], m, y) * math.sqrt(s * s - self.cfg.sigma_min ** 2)
                self._frames[k] += m
                y = self._push(self.stages[k], pk, x)
            return unit_to_mel(y, self.cfg)[0]

    def flush(self) -> torch.Tensor:
        """End of input: the last lookahead_frames frames, edges as the whole-sequence decode pads them
        (each step's stream flushed in turn, its last frames first pushed through the next step)."""
        if self._frames[0] == 0:
            return torch.zeros(self.cfg.n_mels, 0)
        with torch.inference_mode():
            y = self.stages[0].flush()
            for k in range(1, self.steps):
                m = y.shape[-1]
                s = self.sigmas[k]
                x = y + self._noise(k, self._frames[k], m, y) * math.sqrt(s * s - self.cfg.sigma_min ** 2)
                self._frames[k] += m
                y = torch.cat([self._push(self.stages[k], self._pre[k - 1].pop(m), x), self.stages[k].flush()], -1)
            self.reset()
            return unit_to_mel(y, self.cfg)[0]
