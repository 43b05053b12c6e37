"""A time-major CPU forward of torchfcpe's bundled FCPE, for the live pitch path (engine/pitch_stream.py).

Why a module of its own: live pitch runs FCPE on 16-frame windows every 40 ms, where torchfcpe's own
forward costs far more than its arithmetic: [B, C, T] convolutions with transposes around every
norm, a 31-tap depthwise conv mostly over zero padding, the k=3 input convs on torch's slow conv
path, weight norm recomputed per call, and an STFT front end and decoder of a dozen small ops each.
Here the same network runs on [T, C] arrays throughout (batch 1, CPU only):

* mel: windowed frames (clip, reflect pad) and |X| in compiled loops around torch's rFFT and the mel
  matmul; log rows written straight into the zero-padded input of the first conv;
* input stack: each k=3 conv is one float32 GEMM over a strided im2col view of its padded input,
  GroupNorm + LeakyReLU one compiled pass;
* encoder layers: LayerNorm, int8 1x1 convs (dynamically quantised as before), GLU and SiLU on the
  last dim, the depthwise conv a compiled multiply-add over the taps that meet real frames;
* output: weight norm folded once at load; the local-argmax decoder one compiled pass.

FastFCPE.extract keeps engine.pitch.FCPEPitch.extract's contract (frame grid, threshold, f0 floor).
Per 0.16 s window, 1 thread on the 2-core dev CPU: 9.2 ms median against 16.5 for torchfcpe's forward
with the same int8 convs (the previous live path) and 40 with float32 convs; on 66 held-out files
through PitchStream its f0 is the previous live path's to 0.0004 cents median (max 9, where the int8
rounding of an activation flips), voicing the same on all but 2 of 75834 frames.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import nn

from models.audio_io import as_mono


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamically quantised (int8 weight, per-tensor) linear layer for `weight` [out, in]. At a few
    dozen frames FCPE's 1x1 convs are bound by their 9.4 M weights; int8 (fbgemm) runs them ~2x faster
    than float32 GEMMs and moves f0 by ~0.4 cents median against float32."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear
    from torch.ao.quantization import default_dynamic_qconfig

    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    lin.qconfig = default_dynamic_qconfig
    return QLinear.from_float(lin)


def _packed(q: nn.Module):
    """The packed weights of a dynamic quantised linear, for calling its op (as its forward does for
    qint8 weights: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=True)) without the module."""
    return q._packed_params._packed_params


@njit(cache=True, nogil=True)
def _depthwise(x: np.ndarray, taps: np.ndarray, bias: np.ndarray, pad: int, out: np.ndarray) -> None:
    """out[i] = bias + sum_s taps[s - i + pad] * x[s] over the frames s that exist: a depthwise conv
    with zero padding on [T, C] rows, touching only the taps that meet real frames (16 of 31 at 16
    frames). ~45 us at 16 x 1024, against ~100 for numpy's einsum and ~240 for torch's conv2d."""
    t, c = x.shape
    k = taps.shape[0]
    for i in range(t):
        for ch in range(c):
            out[i, ch] = bias[ch]
        for s in range(max(0, i - pad), min(t, i - pad + k)):
            j = s - i + pad
            for ch in range(c):
                out[i, ch] += taps[j, ch] * x[s, ch]


@njit(cache=True, nogil=True)
def _group_norm_leaky(x: np.ndarray, groups: int, weight: np.ndarray, bias: np.ndarray, eps: float,
                      slope: float) -> None:
    """In place on x [T, C]: GroupNorm over (T, C / groups) blocks, affine, then LeakyReLU."""
    t, c = x.shape
    size = c // groups
    for g in range(groups):
        s1 = 0.0
        for i in range(t):
            for ch in range(g * size, (g + 1) * size):
                s1 += x[i, ch]
        mean = s1 / (t * size)
        s2 = 0.0
        for i in range(t):
            for ch in range(g * size, (g + 1) * size):
                d = x[i, ch] - mean
                s2 += d * d
        rstd = 1.0 / np.sqrt(s2 / (t * size) + eps)
        for ch in range(g * size, (g + 1) * size):
            a = np.float32(weight[ch] * rstd)
            b = np.float32(bias[ch] - mean * weight[ch] * rstd)
            for i in range(t):
                v = x[i, ch] * a + b
                x[i, ch] = v if v >= 0 else v * np.float32(slope)


@njit(cache=True, nogil=True)
def _frames(x: np.ndarray, pad_l: int, reflect: bool, hop: int, window: np.ndarray, out: np.ndarray) -> None:
    """out[f] = window * frame f of x clipped to [-1, 1] and padded by pad_l on the left (reflect or
    zeros; the right pad is implied by the frame count), as torch.stft(center=False) frames it."""
    n = x.shape[0]
    for f in range(out.shape[0]):
        for i in range(out.shape[1]):
            p = f * hop + i - pad_l
            if p < 0 or p >= n:
                if not reflect:
                    out[f, i] = 0.0
                    continue
                p = -p if p < 0 else 2 * (n - 1) - p
            out[f, i] = min(max(x[p], np.float32(-1.0)), np.float32(1.0)) * window[i]


@njit(cache=True, nogil=True)
def _log_rows(mel: np.ndarray, clip: float, out: np.ndarray) -> None:
    """out[1 + f] = log(max(mel[f], clip)) for the rows of out between its first and last (left for
    the conv's zero padding); rows past mel's end repeat its last row, as torchfcpe pads the mel."""
    last = mel.shape[0] - 1
    for f in range(out.shape[0] - 2):
        src = min(f, last)
        for j in range(out.shape[1]):
            out[f + 1, j] = np.log(max(mel[src, j], np.float32(clip)))


@njit(cache=True, nogil=True)
def _magnitude(spec: np.ndarray, out: np.ndarray) -> None:
    """|X| as torchfcpe takes it, sqrt(re^2 + im^2 + 1e-9), from [frames, bins, 2] (re, im)."""
    for i in range(spec.shape[0]):
        for j in range(spec.shape[1]):
            re = spec[i, j, 0]
            im = spec[i, j, 1]
            out[i, j] = np.sqrt(re * re + im * im + np.float32(1e-9))


@njit(cache=True, nogil=True)
def _decode(y: np.ndarray, cents: np.ndarray, threshold: float, f0_min: float, local: bool,
            out: np.ndarray) -> None:
    """FCPE's decoders on the latent y [T, D]: the y-weighted mean of the cent table over the 9 bins
    around the peak (local argmax; edge bins repeat, as torchfcpe clamps the indices) or over all
    bins; f0 = 10 * 2^(cents / 1200), 0 where the peak is at most `threshold` or f0 < f0_min."""
    t, d = y.shape
    for i in range(t):
        k = 0
        for j in range(1, d):
            if y[i, j] > y[i, k]:
                k = j
        if not y[i, k] > threshold:
            out[i] = 0.0
            continue
        lo, hi = (k - 4, k + 5) if local else (0, d)
        num = np.float32(0.0)
        den = np.float32(0.0)
        for j in range(lo, hi):
            jj = min(max(j, 0), d - 1)
            num += cents[jj] * y[i, jj]
            den += y[i, jj]
        f = np.float32(10.0) * np.float32(2.0) ** (num / den / np.float32(1200.0))
        out[i] = f if f >= f0_min else 0.0


def _pointwise(conv: nn.Conv1d, int8: bool):
    w, b = conv.weight.detach()[:, :, 0].contiguous(), conv.bias.detach()
    return _packed(int8_linear(w, b)) if int8 else (w, b)


def _linear(x: torch.Tensor, w) -> torch.Tensor:
    return F.linear(x, *w) if isinstance(w, tuple) else torch.ops.quantized.linear_dynamic(x, w, True)


class _Layer:
    """One CFNEncoderLayer (conv only): x + pw2(silu(dw(glu(pw1(layer_norm(x))))))."""

    def __init__(self, layer: nn.Module, int8: bool):
        net = layer.conformer.net
        ln, pw1, dw, pw2 = net[0], net[2], net[4].conv, net[6]
        self.ln = (ln.normalized_shape, ln.weight.detach(), ln.bias.detach(), ln.eps)
        self.pw1 = _pointwise(pw1, int8)
        self.pw2 = _pointwise(pw2, int8)
        self.pad = dw.padding[0]
        self.taps = dw.weight.detach()[:, 0, :].t().contiguous().numpy()  # [k, C]
        self.dw_bias = dw.bias.detach().numpy()

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        _depthwise(x.numpy(), self.taps, self.dw_bias, self.pad, out.numpy())
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = F.layer_norm(x, *self.ln)
        h = F.silu(self.depthwise(F.glu(_linear(h, self.pw1), dim=-1)), inplace=True)
        return x.add_(_linear(h, self.pw2))


class FastFCPE:
    """torchfcpe's bundled model (InferCFNaiveMelPE), batch 1 on the CPU, time-major; see the module
    docstring. int8=False keeps the 1x1 convs in float32: f0 then equals torchfcpe's to float rounding
    (< 0.01 cents), at ~2x the cost per call of int8 (18 vs 9 ms at 16 frames). `supports(model)` says
    whether a loaded model has the structure this code expects."""

    def __init__(self, infer_model: nn.Module, threshold: float = 0.05, decoder: str = "local_argmax",
                 f0_min: float | None = None, int8: bool = True):
        if not self.supports(infer_model):
            raise ValueError("FastFCPE: not the conv-only CFNaiveMelPE this forward was written for")
        if decoder not in ("local_argmax", "argmax"):
            raise ValueError(f"FastFCPE: unknown decoder {decoder!r}")
        m = infer_model.model
        mel = infer_model.wav2mel.mel_extractor
        self.sample_rate = int(infer_model.wav2mel.sampling_rate)
        self.hop = int(mel.hop_length)
        self.win = int(mel.win_size)
        self.n_fft = int(mel.n_fft)
        self.clip = float(mel.clip_val)
        self.window = torch.hann_window(self.win).numpy()
        self.mel_basis_t = mel.mel_basis.detach().t().contiguous()  # [n_fft // 2 + 1, n_mels]
        self.threshold = float(threshold)
        self.decoder = decoder
        self.f0_min = float(m.f0_min if f0_min is None else f0_min)

        with torch.no_grad():
            c1, gn, act, c2 = m.input_stack
            self.in1 = self._im2col_weight(c1)
            self.in2 = self._im2col_weight(c2)
            self.gn = (gn.num_groups, gn.weight.detach().numpy(), gn.bias.detach().numpy(), float(gn.eps))
            self.slope = float(act.negative_slope)
            self.layers = [_Layer(layer, int8) for layer in m.net.encoder_layers]
            self.norm = (m.norm.normalized_shape, m.norm.weight.detach(), m.norm.bias.detach(), m.norm.eps)
            self.out_w = m.output_proj.weight.detach().clone()  # weight norm applied once, here
            self.out_b = m.output_proj.bias.detach().clone()
            self.cents = m.cent_table.detach().float().numpy().copy()
        self.extract(np.zeros(16 * self.hop, np.float32))  # numba compiles (or loads) the kernels now, not live

    @staticmethod
    def supports(infer_model: nn.Module) -> bool:
        m = getattr(infer_model, "model", None)
        if m is None or getattr(m, "harmonic_emb", 1) is not None or not hasattr(m, "input_stack"):
            return False
        try:
            c1, gn, act, c2 = m.input_stack
            ok = (isinstance(c1, nn.Conv1d) and isinstance(gn, nn.GroupNorm) and isinstance(act, nn.LeakyReLU)
                  and isinstance(c2, nn.Conv1d)
                  and all(c.kernel_size == (3,) and c.padding == (1,) and c.stride == (1,) and c.groups == 1
                          for c in (c1, c2)))
            for layer in m.net.encoder_layers:
                net = layer.conformer.net
                dw = net[4].conv
                ok = ok and layer.attn is None and isinstance(net[0], nn.LayerNorm) and isinstance(net[3], nn.GLU)
                ok = ok and dw.groups == dw.in_channels == dw.out_channels and dw.stride == (1,)
                ok = ok and 2 * dw.padding[0] + 1 == dw.kernel_size[0] and isinstance(net[5], nn.SiLU)
                ok = ok and net[2].kernel_size == (1,) and net[6].kernel_size == (1,)
            mel = infer_model.wav2mel
            ok = ok and mel.mel_type == "default" and mel.mel_extractor.n_fft == mel.mel_extractor.win_size
            return bool(ok)
        except (AttributeError, TypeError, ValueError, IndexError):
            return False

    @staticmethod
    def _im2col_weight(conv: nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
        w = conv.weight.detach()  # [out, in, k]
        return w.permute(0, 2, 1).reshape(w.shape[0], -1).contiguous(), conv.bias.detach()  # [out, k * in]

    # ---------------------------------------------------------------- stages

    def mel(self, wav: np.ndarray) -> torch.Tensor:
        """wav [N] -> log mel as rows 1..N // hop + 1 of a [N // hop + 3, n_mels] tensor whose first and
        last rows are zero (the next conv's padding); the values are torchfcpe's Wav2MelModule's."""
        n = wav.shape[0]
        pad_l = (self.win - self.hop) // 2
        pad_r = max((self.win - self.hop + 1) // 2, self.win - n - pad_l)
        frames = torch.empty((n + pad_l + pad_r - self.win) // self.hop + 1, self.win)
        _frames(wav, pad_l, pad_r < n, self.hop, self.window, frames.numpy())
        spec = torch.view_as_real(torch.fft.rfft(frames, n=self.n_fft))
        mag = torch.empty(spec.shape[:2])
        _magnitude(spec.numpy(), mag.numpy())
        out = torch.zeros(n // self.hop + 3, self.mel_basis_t.shape[1])
        _log_rows(torch.mm(mag, self.mel_basis_t).numpy(), self.clip, out.numpy())
        return out

    @staticmethod
    def _conv3(xp: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor],
               out: torch.Tensor | None = None) -> torch.Tensor:
        """k=3, padding 1 conv of the rows between the first and last of xp [T + 2, C] (those two are
        the zero padding), as one GEMM over a strided im2col view. Kept in float32: int8 here moved f0
        by 0.4 cents median, with a few octave jumps, on held-out singing."""
        t, c = xp.shape[0] - 2, xp.shape[1]
        return torch.addmm(wb[1], xp.as_strided((t, 3 * c), (c, 1)), wb[0].t(), out=out)

    def latent(self, mel: torch.Tensor) -> torch.Tensor:
        """log mel [T + 2, n_mels] (zero first and last rows) -> sigmoid latent [T, out_dims]
        (CFNaiveMelPE.forward)."""
        t = mel.shape[0] - 2
        x = torch.zeros(t + 2, self.in1[0].shape[0])
        self._conv3(mel, self.in1, out=x[1:-1])
        _group_norm_leaky(x[1:-1].numpy(), *self.gn, self.slope)
        x = self._conv3(x, self.in2)
        for layer in self.layers:
            x = layer(x)
        x = F.layer_norm(x, *self.norm)
        return torch.sigmoid_(F.linear(x, self.out_w, self.out_b))

    def decode(self, y: torch.Tensor) -> np.ndarray:
        """latent [T, out_dims] -> f0 [T] in Hz, 0 = unvoiced (threshold and f0 floor applied)."""
        f0 = np.empty(y.shape[0], np.float32)
        _decode(y.numpy(), self.cents, self.threshold, self.f0_min, self.decoder == "local_argmax", f0)
        return f0

    @torch.no_grad()
    def extract(self, wav: np.ndarray) -> np.ndarray:
        """Same contract as engine.pitch.FCPEPitch.extract: mono 16 kHz -> f0 [len // hop], 0 unvoiced."""
        wav = as_mono(wav)
        n = len(wav) // self.hop
        if n == 0:
            return np.zeros(0, np.float32)
        return self.decode(self.latent(self.mel(np.ascontiguousarray(wav[self.hop // 2:]))))[:n]
