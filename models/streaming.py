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
* `StreamingDenoiser(decoder)` (models/streaming_denoiser.py): features + noise for new frames in,
  one-step decoded frames out (the consistency / EDM decoder at a fixed sigma).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.hifigan import LRELU_SLOPE, HiFiGAN


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
