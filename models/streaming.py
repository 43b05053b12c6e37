"""Stateful streaming inference for our convolutional networks (keep state, do not recompute).

A non-causal convolution stack is run on a stream block by block; every layer keeps the last input
samples it needs as left context and computes only new outputs. The whole-signal run zero-pads
every layer's input at both ends; the stream reproduces that exactly:

* start: each conv cache starts as its left padding (zeros, or the first sample for replicate
  padding), so the first outputs see what the whole-signal run sees;
* middle: a conv emits an output once its right context has arrived, so its output lags its input
  by its right padding (its lookahead). Lags add up along the stack; a path that skips layers
  (residual, parallel branches, side inputs) is buffered in a FIFO until the slower path has
  produced the same positions, so every sum adds samples of the same position;
* end: `last=True` (the caller's `flush()`) appends each layer's own right padding (zeros) *at that
  layer*, not at the network input; this is what the whole-signal run does and why flushing
  with zero input frames would be wrong (conv biases make a layer's response to zeros non-zero).

Transposed convolutions (upsampling) are overlap-add: each input sample writes `kernel` output
samples; the `kernel - stride` not yet complete ones are kept as a partial-sum tail and completed
by the next block; the first `padding` outputs are dropped (the whole-signal crop) and the tail's
remaining `kernel - stride - padding` outputs are emitted at the end.

Streamed output equals whole-signal output up to float summation order (~1e-7 relative).
Tensors are [B, C, T]. Two wrappers use this:

* `StreamingHiFiGAN(model)`: mel frames in, audio samples out (the HiFi-GAN V1 vocoder).
* `StreamingDenoiser(decoder)`: features + noise for new frames in, one-step decoded frames out
  (the consistency / EDM decoder at a fixed sigma, condition smoothing conv included).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.edm import EDMDecoder, unit_to_mel
from models.hifigan import LRELU_SLOPE, HiFiGAN
from models.noise import frame_noise


# ----------------------------------------------------------------------------- buffers


class Fifo:
    """Samples produced but not yet consumed, along the last (time) axis."""

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.buf is None else self.buf.shape[-1]

    def push(self, x: torch.Tensor) -> None:
        if self.buf is None or self.buf.shape[-1] == 0:
            self.buf = x
        elif x.shape[-1]:
            self.buf = torch.cat([self.buf, x], -1)

    def pop(self, n: int) -> torch.Tensor:
        assert self.buf is not None and n <= self.buf.shape[-1]
        out, self.buf = self.buf[..., :n], self.buf[..., n:]
        return out


class Zip:
    """Aligns k streams that lag by different amounts: returns the positions all of them have produced."""

    def __init__(self, k: int) -> None:
        self.fifos = [Fifo() for _ in range(k)]

    def push(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        for f, x in zip(self.fifos, xs, strict=True):
            f.push(x)
        n = min(len(f) for f in self.fifos)
        return [f.pop(n) for f in self.fifos]


def _empty(x: torch.Tensor, channels: int) -> torch.Tensor:
    return x.new_zeros(x.shape[0], channels, 0)


_MKLDNN = [hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()]
_GEMM_MAX_LEN = 16  # outputs per call up to which a plain GEMM beats oneDNN on the CPU


def _conv_gemm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, dilation: int) -> torch.Tensor:
    """conv1d as one [B*L, C_in*k] @ [C_in*k, C_out] GEMM (weight viewed, not copied) -> [B, C_out, L].

    The row-major small-M product runs 2-5x faster than oneDNN's (which repacks the weight on every
    call) or MKL's [C_out, K] @ [K, L] for a few frames (measured on the 2-core AMD EPYC machines)."""
    bsz, cin, _ = x.shape
    cout, _, k = w.shape
    span = (k - 1) * dilation
    n = x.shape[-1] - span
    if k == 1:
        cols = x.transpose(1, 2)
    else:
        cols = x.unfold(-1, span + 1, 1)[..., ::dilation].permute(0, 2, 1, 3)  # [B, L, C_in, k]
    cols = cols.reshape(bsz * n, cin * k)
    wt = w.reshape(cout, cin * k).t()
    y = torch.addmm(b, cols, wt) if b is not None else cols @ wt
    return y.view(bsz, n, cout).transpose(1, 2)


def _conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Unpadded stride-1 conv1d, fast for the short inputs of a stream on the CPU.

    A few outputs: one GEMM (`_conv_gemm`). More: oneDNN called directly, because for inputs of
    channels x length <= 20480 at batch 1 torch's dispatch falls back to its im2col / dilated kernels,
    up to 3x slower (2.6 ms instead of 0.3 ms for a dilated 256-channel HiFi-GAN conv on a 4-frame
    block). Elsewhere (CUDA, other dtypes) F.conv1d. Same sums, another order: ~1e-7 relative.
    """
    w, b = conv.weight, conv.bias
    if x.device.type == "cpu" and conv.groups == 1:
        if x.shape[-1] - (w.shape[-1] - 1) * conv.dilation[0] <= _GEMM_MAX_LEN:
            return _conv_gemm(x, w, b, conv.dilation[0])
        if _MKLDNN[0] and x.dtype == w.dtype == torch.float32 and w.is_contiguous():
            try:
                return torch.mkldnn_convolution(x.contiguous(), w, b, [0], [1], list(conv.dilation), 1)
            except RuntimeError:  # a build without this kernel: use the generic path from now on
                _MKLDNN[0] = False
    return F.conv1d(x, w, b, 1, 0, conv.dilation, conv.groups)


def conv_taps(conv: nn.Conv1d) -> torch.Tensor:
    """A conv weight [C_out, C_in, k] as one [k * C_in, C_out] matrix (a copy) for time-major im2col:
    rows of tap 0 first, so `[x[t], x[t + d], ..., x[t + (k-1) d]] @ conv_taps(conv)` is output t."""
    w = conv.weight.detach()
    return torch.cat([w[:, :, j].t() for j in range(w.shape[-1])], 0).contiguous()


def _pw(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A padding-free nn.Conv1d (1x1 here) on a block; also takes zero-length input (nn.Conv1d refuses it)."""
    return _conv1d(x, conv) if x.shape[-1] else _empty(x, conv.out_channels)


# ----------------------------------------------------------------------------- stream modules


class Stream:
    """A streaming stage: `y = stage(x, last)` takes new input samples, returns the newly complete outputs.

    `last=True` ends the stream (the stage applies its end padding, emits everything, and resets).
    `out_delay(d)`: the output lag, in output-rate samples, of a stage whose input lags by d samples;
    `out_delay(0)` is the stage's lookahead. Stages may keep references to the tensors they are
    given (no copies on the hot path): do not modify a pushed tensor in place afterwards.
    """

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def reset(self) -> None:
        pass

    def out_delay(self, d: int) -> int:
        return d


class StreamConv1d(Stream):
    """A stride-1 nn.Conv1d run with `left`/`right` padding (default: the conv's own symmetric padding).

    pad_mode "zeros" (nn.Conv1d's) or "replicate" (F.pad(mode="replicate")). The cache holds the last
    (kernel-1)*dilation input samples; outputs lag inputs by `right` samples.
    """

    def __init__(self, conv: nn.Conv1d, left: int | None = None, right: int | None = None, pad_mode: str = "zeros"):
        if conv.stride[0] != 1:
            raise ValueError("StreamConv1d needs a stride-1 convolution")
        if left is None or right is None:
            if not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros":
                raise ValueError("give left/right explicitly for this convolution")
            left = right = conv.padding[0]
        if pad_mode not in ("zeros", "replicate"):
            raise ValueError(f"pad_mode must be 'zeros' or 'replicate', not {pad_mode!r}")
        self.conv = conv
        self.left, self.right, self.pad_mode = int(left), int(right), pad_mode
        self.span = (conv.kernel_size[0] - 1) * conv.dilation[0]  # input samples beyond the first one
        self.out_channels = conv.out_channels
        self.reset()

    def reset(self) -> None:
        self.cache: torch.Tensor | None = None

    def out_delay(self, d: int) -> int:
        return d + self.right

    def _pad(self, edge: torch.Tensor, n: int) -> torch.Tensor:
        if self.pad_mode == "zeros":
            return edge.new_zeros(edge.shape[0], edge.shape[1], n)
        return edge.expand(-1, -1, n)

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        if self.cache is None:
            if x.shape[-1] == 0 and self.pad_mode == "replicate":
                return _empty(x, self.out_channels)  # nothing to replicate yet
            self.cache = self._pad(x[..., :1], self.left)
        buf = torch.cat([self.cache, x], -1) if self.cache.shape[-1] else x
        if last:
            buf = torch.cat([buf, self._pad(buf[..., -1:], self.right)], -1)
        n_out = buf.shape[-1] - self.span
        if n_out > 0:
            y = _conv1d(buf, self.conv)
        else:
            y = _empty(x, self.out_channels)
        if last:
            self.reset()
        else:
            self.cache = buf[..., max(n_out, 0):]
            if buf is x:  # never keep a view of the caller's tensor as state
                self.cache = self.cache.clone()
        return y


class StreamConvTranspose1d(Stream):
    """nn.ConvTranspose1d (stride u, kernel k >= u, padding p) as overlap-add with a partial-sum tail.

    Input sample m writes the (uncropped) outputs [m*u, m*u + k); those before (m+1)*u are complete,
    the k - u after them wait in the tail for the next block's contributions. The whole-signal crop
    of p samples at the start makes the output lag by p samples (plus u times the input lag).
    The contributions are one matmul with the weight viewed as [C_in, C_out * k] (no copy): on short
    blocks this is several times faster than F.conv_transpose1d, which repacks the weight every call.
    """

    def __init__(self, conv: nn.ConvTranspose1d):
        u, k, p = conv.stride[0], conv.kernel_size[0], conv.padding[0]
        if conv.dilation[0] != 1 or conv.output_padding[0] != 0 or k < u or k - u < p:
            raise ValueError("StreamConvTranspose1d needs dilation 1, no output_padding and stride <= kernel - padding")
        self.conv = conv
        self.u, self.k, self.p = u, k, p
        self.q = -(-k // u)  # input samples that write into one output sample (at most)
        self.out_channels = conv.out_channels
        self.reset()

    def reset(self) -> None:
        self.tail: torch.Tensor | None = None  # partial sums of the (q-1)*u outputs after the emitted ones
        self.to_drop = self.p
        self.seen = 0

    def out_delay(self, d: int) -> int:
        return d * self.u + self.p

    def _contributions(self, x: torch.Tensor) -> torch.Tensor:
        """Uncropped transposed conv of x without bias, [B, C_out, (n + q - 1) * u] (zeros beyond n*u + k - u)."""
        u, k, q, c = self.u, self.k, self.q, self.conv
        b, n = x.shape[0], x.shape[-1]
        cout = self.out_channels
        if c.groups != 1 or not c.weight.is_contiguous():
            y = F.conv_transpose1d(x, c.weight, None, u, 0, 0, c.groups)
            return F.pad(y, (0, (n + q - 1) * u - y.shape[-1]))
        w = c.weight.view(c.in_channels, cout * k)
        contrib = (x.transpose(1, 2) @ w).view(b, n, cout, k)  # input m, channel, tap j -> output m*u + j
        if q * u != k:
            contrib = F.pad(contrib, (0, q * u - k))
        contrib = contrib.view(b, n, cout, q, u).permute(0, 2, 3, 1, 4)  # [B, C_out, q, n, u]
        out = x.new_zeros(b, cout, n + q - 1, u)
        for j in range(q):  # overlap-add: tap block j of input m lands in output block m + j
            out[:, :, j : j + n] += contrib[:, :, j]
        return out.view(b, cout, (n + q - 1) * u)

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        u, k, c = self.u, self.k, self.conv
        n = x.shape[-1]
        self.seen += n
        if n:
            y = self._contributions(x)
            if self.tail is not None and self.tail.shape[-1]:
                y[..., : self.tail.shape[-1]] += self.tail
            out, self.tail = y[..., : n * u], y[..., n * u :]
        else:
            out = _empty(x, self.out_channels)
        if last and self.seen:
            out = torch.cat([out, self.tail[..., : k - u - self.p]], -1)
        if c.bias is not None:
            out = out + c.bias.view(1, -1, 1)
        if self.to_drop and out.shape[-1]:
            cut = min(self.to_drop, out.shape[-1])
            out, self.to_drop = out[..., cut:], self.to_drop - cut
        if last:
            self.reset()
        return out


class Pointwise(Stream):
    """A per-sample function (activation, scaling): no state, no lag."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        return self.fn(x)


class Sequential(Stream):
    def __init__(self, *stages: Stream):
        self.stages = list(stages)

    def reset(self) -> None:
        for s in self.stages:
            s.reset()

    def out_delay(self, d: int) -> int:
        for s in self.stages:
            d = s.out_delay(d)
        return d

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        for s in self.stages:
            x = s(x, last)
        return x


class Residual(Stream):
    """x + body(x): x waits in a FIFO until the body's (lagging) output of the same positions arrives."""

    def __init__(self, body: Stream):
        self.body = body
        self.skip = Fifo()

    def reset(self) -> None:
        self.body.reset()
        self.skip = Fifo()

    def out_delay(self, d: int) -> int:
        return self.body.out_delay(d)

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        y = self.body(x, last)
        self.skip.push(x)
        out = self.skip.pop(y.shape[-1]) + y
        if last:
            self.reset()
        return out


class Parallel(Stream):
    """reduce([branch(x) for branch]) with the branch outputs aligned (the faster ones wait)."""

    def __init__(self, branches: Sequence[Stream], reduce: Callable[[list[torch.Tensor]], torch.Tensor]):
        self.branches = list(branches)
        self.reduce = reduce
        self.zip = Zip(len(self.branches))

    def reset(self) -> None:
        for b in self.branches:
            b.reset()
        self.zip = Zip(len(self.branches))

    def out_delay(self, d: int) -> int:
        return max(b.out_delay(d) for b in self.branches)

    def __call__(self, x: torch.Tensor, last: bool = False) -> torch.Tensor:
        out = self.reduce(self.zip.push(*(b(x, last) for b in self.branches)))
        if last:
            self.reset()
        return out


# ----------------------------------------------------------------------------- HiFi-GAN


def hifigan_stream(model: HiFiGAN, after_up: Callable[[int], Stream | None] | None = None) -> Sequential:
    """The HiFiGAN.forward graph as streaming stages sharing the model's weights (same op order).

    `after_up(i)` may return a stage inserted after upsampling stage i (the streamed `excite` hook)."""

    def resblock(block) -> Stream:
        pairs = []
        for c1, c2 in zip(block.convs1, block.convs2):
            pairs.append(Residual(Sequential(
                Pointwise(lambda x: F.leaky_relu(x, LRELU_SLOPE)), StreamConv1d(c1),
                Pointwise(lambda x: F.leaky_relu(x, LRELU_SLOPE)), StreamConv1d(c2),
            )))
        return Sequential(*pairs)

    def mean_of(k: int) -> Callable[[list[torch.Tensor]], torch.Tensor]:
        def reduce(xs: list[torch.Tensor]) -> torch.Tensor:
            acc = xs[0]
            for x in xs[1:]:
                acc = acc + x
            return acc / k
        return reduce

    k = model.num_kernels
    stages: list[Stream] = [StreamConv1d(model.conv_pre)]
    for i, up in enumerate(model.ups):
        stages.append(Pointwise(lambda x: F.leaky_relu(x, LRELU_SLOPE)))
        stages.append(StreamConvTranspose1d(up))
        extra = after_up(i) if after_up is not None else None
        if extra is not None:
            stages.append(extra)
        stages.append(Parallel([resblock(b) for b in model.resblocks[i * k : (i + 1) * k]], mean_of(k)))
    stages += [Pointwise(F.leaky_relu), StreamConv1d(model.conv_post), Pointwise(torch.tanh)]
    return Sequential(*stages)


class StreamingHiFiGAN:
    """Streams a loaded `models.hifigan.HiFiGAN` (same weights, no copy): mel frames in, audio out.

    push(mel [n_mels, n] or [B, n_mels, n], any n >= 0) -> the newly complete samples ([k] or [B, k]).
    After N frames pushed, N*hop - delay_samples samples have come out in total (never fewer than 0);
    flush() returns the last ones (total N*hop, exactly the whole-file `model(mel)`) and resets the
    stream for reuse. The audio of mel frame f is complete once frame f + lookahead_frames is pushed.
    """

    def __init__(self, model: HiFiGAN):
        self.model = model
        self.hop_length = model.hop_length
        self.sample_rate = model.sample_rate
        self.n_mels = model.config.n_mels
        self.net = hifigan_stream(model)
        self._batched = False
        self.delay_samples = self.net.out_delay(0)  # 3258 for V1 universal
        self.lookahead_frames = -(-self.delay_samples // self.hop_length)  # 13 for V1 universal
        self.reset()

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.delay_samples / self.sample_rate

    def reset(self) -> None:
        """Forget the stream (flush() does this after emitting the tail)."""
        self.net.reset()
        self.frames_in = 0
        self.samples_out = 0
        self._batch = 1

    def _run(self, mel: torch.Tensor, last: bool) -> torch.Tensor:
        w = self.model.conv_pre.weight
        with torch.inference_mode():
            y = self.net(mel.to(device=w.device, dtype=w.dtype), last).squeeze(1)
        self.samples_out += y.shape[-1]
        return y if self._batched else y[0]

    def push(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() == 2:
            mel, self._batched = mel.unsqueeze(0), False
        elif mel.dim() == 3:
            self._batched = True
        else:
            raise ValueError(f"expected mel [n_mels, n] or [B, n_mels, n], got {tuple(mel.shape)}")
        if mel.shape[1] != self.n_mels:
            raise ValueError(f"expected {self.n_mels} mel bins, got {mel.shape[1]}")
        self._batch = mel.shape[0]
        self.frames_in += mel.shape[-1]
        return self._run(mel, last=False)

    def flush(self) -> torch.Tensor:
        """End of stream: the remaining delay_samples samples (as the whole-file run's zero padding implies)."""
        w = self.model.conv_pre.weight
        y = self._run(w.new_zeros(self._batch, self.n_mels, 0), last=True)
        self.reset()
        return y


# ----------------------------------------------------------------------------- one-step decoder


class _TimeMajorDenoiser:
    """The Denoiser.forward graph of one stream (batch 1) on the CPU, time-major ([frames, channels]).

    On a ~7-frame block (80 ms) StreamingDenoiser's generic stages spend more time on op overhead
    (layout changes, FIFO bookkeeping, a separate 1x1 conv per layer) than on the GEMMs, which are
    bound by reading the 7.5 MB of weights (~3 ms when other work has pushed them out of the caches).
    Here, as in models/hn_vocoder.py's _StreamNet, every convolution is one GEMM with weights packed
    once (`conv_taps`), rows are frames and nothing changes layout:
    * the condition projections of all layers are one GEMM per block; their rows, with the dilated
      conv's bias and the conv of the layer's sigma projection folded in, are the bias input of each
      layer's dilated-conv GEMM;
    * each layer keeps ONE row buffer, (h, skip sum) of frames [o - left, a), where o is the layer's
      next output frame and a the frames it has received: its h columns are the conv input (the im2col
      matrix is copied from a strided view of them) and rows [left, left + k) are the residual state of the k
      outputs. Padding rows hold h = -(sigma projection), so that h + sigma projection is 0 there as
      in the whole-signal run's zero padding. A layer emits frames o .. e-1 with
      e = min(a - right, frames with a condition); `last` appends its right padding.
    Same sums as the generic path in another order: the outputs agree to ~1e-6.

    Weights are packed when the stream is made: later changes to the decoder's parameters are not seen.
    """

    def __init__(self, sd: "StreamingDenoiser"):
        net = sd.net
        c = net.cfg.channels
        self.c = c
        layers = list(net.layers)
        self.n_layers = len(layers)
        sig = [b.reshape(c) for b in sd.layer_bias]
        with torch.no_grad():
            sm = net.cond_encoder.smooth
            if sm.kernel_size[0] != 3 or sm.dilation[0] != 1:
                raise ValueError("the condition smoothing conv is expected to have 3 taps")
            self.w_smooth, self.b_smooth = conv_taps(sm), sm.bias.detach()
            self.w_inp, self.b_inp = conv_taps(net.inp), net.inp.bias.detach()
            self.w = [conv_taps(l.dilated) for l in layers]  # [taps * c, 2c]
            self.w_cond = torch.cat([conv_taps(l.cond) for l in layers], 1).contiguous()  # [cond_dim, L * 2c]
            self.b_cond = torch.cat([l.cond.bias.detach() + l.dilated.bias.detach()
                                     + s @ w.view(-1, c, 2 * c).sum(0) for l, s, w in zip(layers, sig, self.w)])
            self.w_out = [conv_taps(l.out) for l in layers]
            self.b_out = [l.out.bias.detach() for l in layers]
            self.w_out[-1], self.b_out[-1] = self.w_out[-1][:, c:].contiguous(), self.b_out[-1][c:]  # skip half
            self.w_skip, self.b_skip = conv_taps(net.skip_out), net.skip_out.bias.detach()
            self.w_final, self.b_final = conv_taps(net.final), net.final.bias.detach()
            # padding rows of each layer's buffer: h = -sigma projection, skip = 0 (never read)
            self.pad_rows = [torch.cat([-s.expand(max(l.pad), c), s.new_zeros(max(l.pad), c)], 1) for l, s in
                             zip(layers, sig)]
        self.dil = [l.dilated.dilation[0] for l in layers]
        self.taps = [l.dilated.kernel_size[0] for l in layers]
        self.pads = [tuple(l.pad) for l in layers]
        # run in numpy: per op ~1 us instead of torch's ~5-10, and its OpenBLAS takes these small-M
        # products ~1.4x faster than torch's MKL on the 2-core AMD machine
        def arr(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), np.float32)

        for name in ("w_smooth", "b_smooth", "w_inp", "b_inp", "w_cond", "b_cond", "w_skip", "b_skip",
                     "w_final", "b_final"):
            setattr(self, name, arr(getattr(self, name)))
        self.w, self.w_out, self.b_out, self.pad_rows = ([arr(t) for t in ts] for ts in
                                                         (self.w, self.w_out, self.b_out, self.pad_rows))
        # the graph's scalars as float32: float32 arrays keep their dtype through every product and quotient
        self.c_in, self.c_skip, self.c_out = (np.float32(float(v)) for v in (sd.c_in, sd.c_skip, sd.c_out))
        self.sqrt2, self.sqrt_layers = np.float32(math.sqrt(2.0)), np.float32(math.sqrt(self.n_layers))
        self.reset()

    def reset(self) -> None:
        self.smooth_cache: np.ndarray | None = None  # last 2 condition frames (None: stream not started)
        self.cp = np.zeros((0, self.w_cond.shape[1]), np.float32)  # condition projections of frames [cp0, ...)
        self.cp0 = 0
        self.bufs = [rows[:left] for rows, (left, _) in zip(self.pad_rows, self.pads)]
        self.o = [0] * self.n_layers
        self.xs = np.zeros((0, self.w_inp.shape[0]), np.float32)  # x (for c_skip * x) of frames not yet output

    def __call__(self, pre: torch.Tensor, x: torch.Tensor, last: bool) -> torch.Tensor:
        """pre [n, cond_dim], x [n, n_mels] (new frames) -> output [k, n_mels] of the newly final frames."""
        pre = np.ascontiguousarray(pre.detach().cpu().numpy(), np.float32)
        x = np.ascontiguousarray(x.detach().cpu().numpy(), np.float32)
        return torch.from_numpy(self._run(pre, x, last))

    def _run(self, pre: np.ndarray, x: np.ndarray, last: bool) -> np.ndarray:
        c, n = self.c, pre.shape[0]
        if self.smooth_cache is None:
            if n == 0:
                if last:
                    self.reset()
                return np.zeros((0, x.shape[1]), np.float32)
            self.smooth_cache = pre[:1]  # replicate padding at the start
        buf = np.concatenate([self.smooth_cache, pre], 0) if n else self.smooth_cache
        if last:
            buf = np.concatenate([buf, buf[-1:]], 0)
        m = buf.shape[0] - 2
        if m > 0:
            cond = np.concatenate([buf[:m], buf[1:m + 1], buf[2:]], 1) @ self.w_smooth
            cond += self.b_smooth
            proj = cond @ self.w_cond
            proj += self.b_cond
            self.cp = np.concatenate([self.cp, proj], 0) if self.cp.shape[0] else proj
        self.smooth_cache = buf[max(m, 0):]
        cp_end = self.cp0 + self.cp.shape[0]
        new = None
        if n:
            self.xs = np.concatenate([self.xs, x], 0) if self.xs.shape[0] else x
            new = np.zeros((n, 2 * c), np.float32)  # (h, skip sum so far = 0)
            new[:, :c] = (self.c_in * x) @ self.w_inp
            new[:, :c] += self.b_inp
        for i in range(self.n_layers):
            left, right = self.pads[i]
            d, taps = self.dil[i], self.taps[i]
            b = self.bufs[i]
            if new is not None or (last and right):
                parts = [b] + ([new] if new is not None else []) + ([self.pad_rows[i][:right]] if last else [])
                b = np.concatenate(parts, 0)  # contiguous rows of 2c: the strided im2col view below relies on it
            o = self.o[i]
            k = min(b.shape[0] - (taps - 1) * d, cp_end - o)
            if k <= 0:
                self.bufs[i], new = b, None
                continue
            cols = np.lib.stride_tricks.as_strided(b, (k, taps, c), (b.strides[0], b.strides[0] * d, b.strides[1]))
            y = cols.reshape(k, taps * c) @ self.w[i]
            y += self.cp[o - self.cp0: o - self.cp0 + k, 2 * c * i: 2 * c * (i + 1)]
            g = np.tanh(y[:, c:])
            g *= _sigmoid(y[:, :c])
            r = g @ self.w_out[i]
            r += self.b_out[i]
            if i < self.n_layers - 1:
                r += b[left: left + k]  # (h + res, skip + s)
                r[:, :c] /= self.sqrt2
                new = r
            else:  # the last layer's residual half is never used: the skip sum only
                new = r + b[left: left + k, c:]
            self.bufs[i] = b[k:]
            self.o[i] = o + k
        keep = min(self.o)
        if keep > self.cp0:
            self.cp, self.cp0 = self.cp[keep - self.cp0:], keep
        if new is None:
            out = np.zeros((0, self.w_final.shape[1]), np.float32)
        else:
            k = new.shape[0]
            hf = (new / self.sqrt_layers) @ self.w_skip
            hf += self.b_skip
            np.maximum(hf, 0.0, out=hf)
            fin = hf @ self.w_final
            fin += self.b_final
            out = self.c_skip * self.xs[:k] + self.c_out * fin
            self.xs = self.xs[k:]
        if last:
            self.reset()
        return out.astype(np.float32, copy=False)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


class StreamingDenoiser:
    """One network evaluation of an EDM/consistency decoder at a fixed sigma, streamed frame by frame.

    push(feats, noise=None) -> decoded frames [n_mels, k] ([B, n_mels, k] for batched input):
      feats: content [n, C], f0 [n] (Hz, unvoiced interpolated), voiced [n], loudness [n] (dB),
      speaker [S], shift (semitones, scalar) — the keys of `EDMDecoder.encode_condition`, with or
      without the batch dimension. speaker/shift apply to the frames of this push.
      noise: standard normal [n_mels, n] for these frames; None draws models.noise.frame_noise(seed,
      step 0, absolute frame index, ...), which is what `VoiceModel.decode(steps=1, seed, frame_offset)` uses.
    Output frames lag input frames by `lookahead_frames`; flush() emits the rest and resets the stream.
    Output is `decoder.denoise(noise * sigma, sigma, cond)` (normalised mel) or, with to_mel=True,
    `unit_to_mel` of it (what VoiceModel.decode returns).

    The sigma embedding and each layer's sigma projection are constants of the stream (precomputed).
    `lookahead_frames` is exact: the condition smoothing conv's one frame of right context overlaps the
    first residual layer's, so it is receptive_field(cfg)[1] - 1 whenever the first layer has right padding.

    One signal (batch 1) on the CPU in float32 runs `_TimeMajorDenoiser` (weights packed at
    construction, run in numpy: ~3.4 ms per 4-frame block with the default model on the 2-core machine, where
    the generic stages took ~8 ms per 80 ms block);
    batches, other devices and fast=False run the generic stages below. Both equal the whole-sequence
    denoise to float rounding (~1e-6).
    """

    def __init__(self, decoder: EDMDecoder, sigma: float | None = None, seed: int = 0, frame_offset: int = 0,
                 to_mel: bool = False, fast: bool = True):
        cfg = decoder.cfg
        net = decoder.net
        self.decoder, self.cfg, self.net = decoder, cfg, net
        self.sigma = float(cfg.sigma_max if sigma is None else sigma)
        self.seed, self.frame_offset, self.to_mel = seed, frame_offset, to_mel
        self.n_mels = cfg.n_mels
        p = next(net.parameters())
        with torch.inference_mode():
            sig = torch.full((1,), self.sigma, device=p.device, dtype=p.dtype)
            s = sig.view(-1, 1, 1)
            self.c_skip, self.c_out = decoder.scalings(s)  # same ops as EDMDecoder.denoise
            self.c_in = 1.0 / (s**2 + cfg.sigma_data**2).sqrt()
            emb = net.sigma_embedding(sig.log() / 4.0)
            self.layer_bias = [layer.sigma(emb).unsqueeze(-1) for layer in net.layers]
        self.smooth = StreamConv1d(net.cond_encoder.smooth, 1, 1, pad_mode="replicate")
        self.convs = [StreamConv1d(layer.dilated, *layer.pad) for layer in net.layers]
        d = 0
        for layer in net.layers:  # a layer's output lags by its conv's and by the condition's lag (1)
            d = max(d + layer.pad[1], self.smooth.out_delay(0))
        self.lookahead_frames = d
        self._batched = False
        # the time-major path (one signal on the CPU in float32); fast=False keeps the generic stages
        self._tm = _TimeMajorDenoiser(self) if fast and p.device.type == "cpu" and p.dtype == torch.float32 else None
        self.reset()

    @property
    def lookahead_ms(self) -> float:
        return 1000.0 * self.lookahead_frames / self.cfg.frame_rate

    def reset(self) -> None:
        """Forget the stream (flush() does this); the next push is frame `frame_offset` again."""
        self.smooth.reset()
        for c in self.convs:
            c.reset()
        self.zips = [Zip(3) for _ in self.net.layers]  # conv output, condition, (h, skip) of the layer input
        self.out_zip = Zip(2)  # x (for c_skip * x), skip sum
        self.frames_in = 0
        self.frames_out = 0
        self._like: torch.Tensor | None = None
        if self._tm is not None:
            self._tm.reset()
        self._mode: str | None = None  # "fast" or "generic", chosen at the stream's first block

    def _condition(self, feats: dict) -> torch.Tensor:
        """ConditionEncoder.forward without its padding and smoothing conv: [B, cond_dim, n]."""
        enc = self.net.cond_encoder
        p = next(self.net.parameters())
        batched = feats["content"].dim() == 3
        g = {k: torch.as_tensor(v).to(device=p.device, dtype=p.dtype) for k, v in feats.items()}
        if not batched:
            g = {k: v.unsqueeze(0) for k, v in g.items()}
        shift = g.get("shift", torch.zeros(g["content"].shape[0], device=p.device, dtype=p.dtype))
        if shift.dim() == 0:
            shift = shift.view(1)
        h = enc.projections(g["content"], g["f0"], g["voiced"], g["loudness"], g["speaker"], shift.view(-1))
        self._batched = batched
        return h.transpose(1, 2)

    def push(self, feats: dict, noise: torch.Tensor | None = None) -> torch.Tensor:
        p = next(self.net.parameters())
        with torch.inference_mode():
            pre = self._condition(feats)
            b, n = pre.shape[0], pre.shape[-1]
            if noise is None:
                z = torch.from_numpy(frame_noise(self.seed, 0, self.frame_offset + self.frames_in, n, self.n_mels))
                z = z.to(p.device).unsqueeze(0).expand(b, -1, -1)
            else:
                z = torch.as_tensor(noise).to(device=p.device, dtype=p.dtype)
                z = z.unsqueeze(0) if z.dim() == 2 else z
            if z.shape[-1] != n or z.shape[1] != self.n_mels:
                raise ValueError(f"noise must be [{self.n_mels}, {n}] for {n} frames, got {tuple(z.shape)}")
            self.frames_in += n
            self._like = pre[..., :0]  # batch size, dtype and device for flush()
            return self._run(pre, z * self.sigma, last=False)

    def flush(self) -> torch.Tensor:
        """End of stream: the last lookahead_frames frames (edges as the whole-sequence run pads them)."""
        p = next(self.net.parameters())
        like = self._like if self._like is not None else p.new_zeros(1, self.cfg.cond_dim, 0)
        with torch.inference_mode():
            y = self._run(like[..., :0], like.new_zeros(like.shape[0], self.n_mels, 0), last=True)
        self.reset()
        return y

    def _run(self, pre: torch.Tensor, x: torch.Tensor, last: bool) -> torch.Tensor:
        """The Denoiser.forward graph on the new frames of the stream: the time-major path for one
        signal on the CPU, else the generic stages (same op order as Denoiser.forward)."""
        if self._mode is None:
            self._mode = "fast" if self._tm is not None and pre.shape[0] == 1 else "generic"
        elif self._mode == "fast" and pre.shape[0] != 1:
            raise ValueError("a stream's batch size cannot change before flush()")
        if self._mode == "fast":
            out = self._tm(pre[0].t(), x[0].t(), last).t().unsqueeze(0)  # [1, n_mels, k], a time-major view
        else:
            out = self._run_generic(pre, x, last)
        self.frames_out += out.shape[-1]
        if last:
            self._mode = None
        if self.to_mel:
            out = unit_to_mel(out, self.cfg)
        return out if self._batched else out[0]

    def _run_generic(self, pre: torch.Tensor, x: torch.Tensor, last: bool) -> torch.Tensor:
        net = self.net
        cond = self.smooth(pre, last)
        h = _pw(net.inp, self.c_in * x)
        state = torch.cat([h, torch.zeros_like(h)], 1)  # (h, skip sum so far) travel together
        c = h.shape[1]
        for layer, conv, zp, bias in zip(net.layers, self.convs, self.zips, self.layer_bias):
            y = conv(state[:, :c] + bias, last)
            y, cnd, st = zp.push(y, cond, state)
            y = y + _pw(layer.cond, cnd)
            gate, filt = y.chunk(2, dim=1)
            y = _pw(layer.out, torch.sigmoid(gate) * torch.tanh(filt))
            residual, skip = y.chunk(2, dim=1)
            state = torch.cat([(st[:, :c] + residual) / math.sqrt(2.0), st[:, c:] + skip], 1)
        xa, skip = self.out_zip.push(x, state[:, c:])
        hf = F.relu(_pw(net.skip_out, skip / math.sqrt(len(net.layers))))
        return self.c_skip * xa + self.c_out * _pw(net.final, hf)
