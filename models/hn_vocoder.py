"""The "hn" vocoder: a compact harmonic-plus-noise vocoder driven by our f0, for live use on a CPU.

A small convolution network reads [log-mel, log-f0, voiced] per frame (one frame of right context,
the rest causal) and predicts each frame's harmonic amplitudes (a gain times a distribution over
`n_harmonics` harmonics) and a noise magnitude response (`n_noise_bands` bands, linearly spaced);
models/hn_synth.py turns those controls into audio with an additive oscillator bank that follows the
given f0 exactly and deterministic filtered noise. Its pitch is the f0 it is given, to the sample.

    voc = load_vocoder("hn")                 # models/vocoders.py
    audio = voc(mel [80, T], f0 [T])         # [T * 256]
    st = voc.stream(); st.push(mel, f0) ...; st.flush()   # == voc(mel, f0) to ~1e-6

Lookahead: the network's right context (1 frame) plus half a frame of control interpolation:
`delay_samples` = 384 (17 ms), `lookahead_frames` = 2. Computation is on the CPU whatever the device
asked for (the network is tiny; the output is moved to the input's device).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import load_checkpoint, load_into
from models.config_check import check_values
from models.errors import ComoliveError, ModelFileError
from models.hn_synth import HNSynth
from models.streaming import Fifo, conv_taps

PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "vocoder_hn"
PRETRAINED_CAUSAL = Path(__file__).resolve().parent / "pretrained" / "vocoder_hn_causal"  # lookahead 0
MEL_OFFSET, MEL_SCALE = 5.0, 2.5  # log-mel (about -11.5 .. 2) -> about -2.6 .. 2.8
LOG_F0_REF = math.log(220.0)
CHUNK_SEGMENTS = 256  # whole-file rendering works through this many frames at a time (bounded memory)


@dataclass
class HNConfig:
    sample_rate: int = 22050
    hop_length: int = 256
    n_mels: int = 80
    channels: int = 128
    dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    n_harmonics: int = 128
    n_noise_bands: int = 64
    lookahead: int = 1  # frames of right context of the network (0 or 1)

    @classmethod
    def from_dict(cls, d: dict) -> "HNConfig":
        """Stored settings (unknown keys of other versions are skipped; wrong types or ranges refused)."""
        return cls(**check_values(cls, {k: v for k, v in d.items() if k in cls.__dataclass_fields__},
                                  "hn vocoder settings"))


def _scale(x: torch.Tensor) -> torch.Tensor:
    """DDSP's exp-sigmoid: positive, bounded (0 .. 2), gentle gradients at both ends."""
    return 2.0 * torch.sigmoid(x) ** math.log(10.0) + 1e-7


def frame_inputs(mel: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """mel [B, M, T], f0 [B, T] Hz -> network input [B, M + 2, T]."""
    voiced = (f0 > 0).to(mel.dtype)
    lf0 = torch.where(f0 > 0, torch.log(f0.clamp_min(1.0)) - LOG_F0_REF, torch.zeros_like(f0))
    return torch.cat([(mel + MEL_OFFSET) / MEL_SCALE, lf0[:, None], voiced[:, None]], dim=1)


class HNNet(nn.Module):
    """Per-frame controls from [log-mel, log-f0, voiced]: conv_in (k=3, `lookahead` right), causal blocks."""

    def __init__(self, cfg: HNConfig):
        super().__init__()
        if cfg.lookahead not in (0, 1):
            raise ValueError("lookahead must be 0 or 1 frame")
        self.cfg = cfg
        c = cfg.channels
        self.conv_in = nn.Conv1d(cfg.n_mels + 2, c, 3)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, 3, dilation=d) for d in cfg.dilations)
        self.mixes = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in cfg.dilations)
        self.head = nn.Conv1d(c, cfg.n_harmonics + 1 + cfg.n_noise_bands, 1)
        with torch.no_grad():  # start quiet: little noise, moderate harmonics
            self.head.bias[cfg.n_harmonics] = -1.0
            self.head.bias[cfg.n_harmonics + 1:] = -3.0
        bands = cfg.n_noise_bands
        bins = cfg.hop_length + 1
        pos = np.linspace(0, bands - 1, bins)
        interp = np.stack([np.interp(pos, np.arange(bands), np.eye(bands)[i]) for i in range(bands)])
        self.register_buffer("band_to_bin", torch.from_numpy(interp).float(), persistent=False)  # [bands, bins]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, M+2, T] -> raw head output [B, K+1+bands, T] (whole-file padding)."""
        la = self.cfg.lookahead
        h = self.conv_in(F.pad(x, (2 - la, la), mode="replicate"))
        for conv, mix, d in zip(self.convs, self.mixes, self.cfg.dilations):
            h = h + mix(F.leaky_relu(conv(F.pad(F.leaky_relu(h, 0.1), (2 * d, 0))), 0.1))
        return self.head(F.leaky_relu(h, 0.1))

    def controls(self, raw: torch.Tensor, f0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head output [B, C, T] and f0 [B, T] -> (harmonic amps [B, T, K], noise magnitudes [B, T, bins])."""
        k = self.cfg.n_harmonics
        raw = raw.transpose(1, 2)
        dist = torch.softmax(raw[..., :k], dim=-1)
        gain = _scale(raw[..., k:k + 1]) * (f0 > 0).to(raw.dtype)[..., None]
        noise = _scale(raw[..., k + 1:]) @ self.band_to_bin
        return dist * gain, noise


def as_f0(f0, n: int, vocoder: str = "hn") -> torch.Tensor:
    """f0 per mel frame (Hz) as a float32 CPU tensor; one clear error when it is missing or does not fit."""
    name = "f0"
    if f0 is None:
        raise ComoliveError(f"the {vocoder} vocoder is driven by f0: pass f0 (Hz per mel frame, 0 = unvoiced)")
    f = torch.as_tensor(np.asarray(f0, dtype=np.float32) if not torch.is_tensor(f0) else f0).float().cpu()
    if f.shape[-1] != n:
        raise ComoliveError(f"{name} has {f.shape[-1]} frames but the mel has {n}")
    if not torch.isfinite(f).all():
        raise ComoliveError(f"{name} contains NaN or inf")
    return f.clamp_min(0.0)


class HNVocoderModel(nn.Module):
    """Network + synthesiser; `forward` is the whole-file path used both in training and inference."""

    def __init__(self, cfg: HNConfig):
        super().__init__()
        self.cfg = cfg
        self.net = HNNet(cfg)
        self.synth = HNSynth(cfg.sample_rate, cfg.hop_length, cfg.n_harmonics)

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, noise_offsets: np.ndarray | None = None) -> torch.Tensor:
        """mel [B, M, T], f0 [B, T] -> audio [B, T * hop]."""
        raw = self.net(frame_inputs(mel, f0))
        amps, noise = self.net.controls(raw, f0)
        # frames -1 .. T: first and last repeated
        f0p = torch.cat([f0[:, :1], f0, f0[:, -1:]], 1)
        ap = torch.cat([amps[:, :1], amps, amps[:, -1:]], 1)
        npd = torch.cat([noise[:, :1], noise, noise[:, -1:]], 1)
        t, hop = mel.shape[-1], self.cfg.hop_length
        outs, phase = [], None
        for s0 in range(0, t + 1, CHUNK_SEGMENTS):
            s1 = min(t + 1, s0 + CHUNK_SEGMENTS)
            y, phase = self.synth.render(f0p[:, s0:s1 + 1], ap[:, s0:s1 + 1], npd[:, s0:s1 + 1], s0, phase,
                                         noise_offsets)
            outs.append(y)
        y = torch.cat(outs, 1)
        return y[:, hop // 2: hop // 2 + t * hop]


class HNVocoder:
    """The trained compact vocoder, loaded from models/pretrained/vocoder_hn (or another stem)."""

    name = "hn"
    pitch_from_f0 = True

    def __init__(self, device: str | torch.device | None = None, path: str | Path | None = None,
                 name: str = "hn"):
        self.name = name
        stem = Path(path) if path is not None else PRETRAINED
        tensors, meta = load_checkpoint(stem)
        if meta.get("kind") != "hn_vocoder":
            raise ModelFileError(f"{stem}.json: not an hn vocoder (kind={meta.get('kind')!r})")
        self.cfg = HNConfig.from_dict(meta.get("config", {}))
        self.model = HNVocoderModel(self.cfg)
        load_into(self.model, {k: v.float() for k, v in tensors.items()}, f"{stem}.safetensors")
        self.model.eval()
        self.meta = meta
        self.sample_rate = self.cfg.sample_rate
        self.hop_length = self.cfg.hop_length
        self.n_mels = self.cfg.n_mels

    @classmethod
    def from_model(cls, model: HNVocoderModel) -> "HNVocoder":
        """Wrap an in-memory model (training validation, tests of an untrained copy)."""
        self = cls.__new__(cls)
        self.cfg, self.model, self.meta = model.cfg, model, {}
        self.sample_rate, self.hop_length, self.n_mels = model.cfg.sample_rate, model.cfg.hop_length, model.cfg.n_mels
        return self

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, f0=None) -> torch.Tensor:
        """mel [80, T] or [B, 80, T], f0 [T] or [B, T] Hz -> audio [T * hop] or [B, T * hop]."""
        batched = mel.dim() == 3
        m = (mel if batched else mel[None]).float().cpu()
        f = as_f0(f0, m.shape[-1])
        f = f if f.dim() == 2 else f[None].expand(m.shape[0], -1)
        y = self.model(m, f)
        y = y if batched else y[0]
        return y.to(mel.device)

    def stream(self) -> "HNStream":
        return HNStream(self.model)


class _StreamNet:
    """HNNet on a stream, time-major ([frames, channels]) with each layer's left context cached.

    On ~90 ms blocks the network's cost is op overhead, not arithmetic, so it runs as one im2col GEMM per
    layer with pre-packed weights and no layout changes (models/streaming.py's generic layers would
    spend several times more). Same padding as the whole-file forward: conv_in replicates the first and
    last frame, the causal layers see zeros before the start; outputs lag inputs by `lookahead` frames."""

    def __init__(self, net: HNNet):
        self.la, self.dil = net.cfg.lookahead, list(net.cfg.dilations)
        self.w_in, self.b_in = conv_taps(net.conv_in), net.conv_in.bias.detach()
        self.w = [conv_taps(c) for c in net.convs]
        self.b = [c.bias.detach() for c in net.convs]
        self.wm = [conv_taps(m) for m in net.mixes]
        self.bm = [m.bias.detach() for m in net.mixes]
        self.wh, self.bh = conv_taps(net.head), net.head.bias.detach()
        self.channels = net.cfg.channels
        self.reset()

    def reset(self) -> None:
        self.in_cache: torch.Tensor | None = None
        self.caches = [torch.zeros(2 * d, self.channels) for d in self.dil]

    @staticmethod
    def _conv3(buf: torch.Tensor, w: torch.Tensor, b: torch.Tensor, d: int) -> torch.Tensor:
        n = buf.shape[0] - 2 * d
        return torch.addmm(b, torch.cat([buf[:n], buf[d:d + n], buf[2 * d:2 * d + n]], 1), w)

    def __call__(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        """x [n, C_in] -> raw head output [m, C_out] for the frames whose right context has arrived."""
        if self.in_cache is None:
            if x.shape[0] == 0:
                return x.new_zeros(0, self.wh.shape[1])
            self.in_cache = x[:1].expand(2 - self.la, -1)
        buf = torch.cat([self.in_cache, x], 0)
        if last:
            buf = torch.cat([buf, buf[-1:].expand(self.la, -1)], 0)
        self.in_cache = buf[-2:]
        h = self._conv3(buf, self.w_in, self.b_in, 1) if buf.shape[0] > 2 else x.new_zeros(0, self.channels)
        for i, d in enumerate(self.dil):
            buf = torch.cat([self.caches[i], F.leaky_relu(h, 0.1)], 0)
            self.caches[i] = buf[buf.shape[0] - 2 * d:]
            h = h + torch.addmm(self.bm[i], F.leaky_relu(self._conv3(buf, self.w[i], self.b[i], d), 0.1), self.wm[i])
        out = torch.addmm(self.bh, F.leaky_relu(h, 0.1), self.wh)
        if last:
            self.reset()
        return out


class HNStream:
    """Live blocks: push(mel [80, n], f0 [n]) -> new samples; concatenated output == the whole-file call."""

    def __init__(self, model: HNVocoderModel):
        self.model = model
        net = model.net
        la = net.cfg.lookahead
        self._net = _StreamNet(net)
        self.hop = net.cfg.hop_length
        self.delay_samples = la * self.hop + self.hop // 2
        self.lookahead_frames = -(-self.delay_samples // self.hop)
        self.reset()

    def reset(self) -> None:
        self._net.reset()
        self._f0 = Fifo()
        self._prev: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # last frame's (f0, amps, noise)
        self._segment = 0
        self._phase: torch.Tensor | None = None

    @torch.inference_mode()
    def _frames(self, x: torch.Tensor, last: bool) -> torch.Tensor:
        """Network input [1, C_in, n] -> raw head output [1, C_out, m] (a transposed view)."""
        return self._net(x[0].t(), last).t()[None]

    @torch.inference_mode()
    def _render(self, raw: torch.Tensor, final: bool) -> torch.Tensor:
        net, hop = self.model.net, self.hop
        n = raw.shape[-1]
        parts = []
        if n:
            f0 = self._f0.pop(n)
            amps, noise = net.controls(raw, f0)
            if self._prev is None:  # frame -1 repeats frame 0
                self._prev = (f0[:, :1], amps[:, :1], noise[:, :1])
            pf, pa, pn = self._prev
            f0c, ac, nc = torch.cat([pf, f0], 1), torch.cat([pa, amps], 1), torch.cat([pn, noise], 1)
            self._prev = (f0[:, -1:], amps[:, -1:], noise[:, -1:])
            y, self._phase = self.model.synth.render(f0c, ac, nc, self._segment, self._phase)
            if self._segment == 0:
                y = y[:, hop // 2:]
            self._segment += n
            parts.append(y)
        if final and self._prev is not None:  # frame T repeats frame T-1; keep half of segment T
            pf, pa, pn = self._prev
            y, _ = self.model.synth.render(torch.cat([pf, pf], 1), torch.cat([pa, pa], 1), torch.cat([pn, pn], 1),
                                           self._segment, self._phase)
            parts.append(y[:, : hop // 2])
        return torch.cat(parts, 1)[0] if parts else torch.zeros(0)

    def push(self, mel: torch.Tensor, f0=None) -> torch.Tensor:
        m = mel.float().cpu()
        m = m if m.dim() == 3 else m[None]
        if m.shape[0] != 1:
            raise ComoliveError("the hn stream takes one signal at a time (mel [80, n])")
        f = as_f0(f0, m.shape[-1]).reshape(1, -1)
        if m.shape[-1] == 0:
            return torch.zeros(0)
        self._f0.push(f)
        with torch.inference_mode():
            x = frame_inputs(m, f)
        return self._render(self._frames(x, last=False), final=False)

    def flush(self) -> torch.Tensor:
        if self._prev is None and len(self._f0) == 0:
            self.reset()
            return torch.zeros(0)
        x = torch.zeros(1, self.model.cfg.n_mels + 2, 0)
        y = self._render(self._frames(x, last=True), final=True)
        self.reset()
        return y


def save_config_meta(cfg: HNConfig, **extra) -> dict:
    """The JSON half of an hn vocoder checkpoint."""
    return {"kind": "hn_vocoder", "format": 1, "config": asdict(cfg), **extra}
