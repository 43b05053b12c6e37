"""The one-step decoder (consistency student or EDM denoiser at a fixed sigma) on a stream, frame by frame.

Built on models/streaming.py's stateful layers: every conv keeps its left context and emits an output
once its right context has arrived, so the streamed decoder equals the whole-signal one up to float
summation order, and lags its input by `lookahead_frames`. On the CPU a time-major numpy path
(`_TimeMajorDenoiser`) runs the same graph with fewer, larger GEMMs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from models.edm import EDMDecoder, unit_to_mel
from models.noise import frame_noise
from models.streaming import StreamConv1d, Zip, _pw, conv_taps


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
        cp_end = self._conditions(pre, last)
        new = None
        if n:
            self.xs = np.concatenate([self.xs, x], 0) if self.xs.shape[0] else x
            new = np.zeros((n, 2 * c), np.float32)  # (h, skip sum so far = 0)
            new[:, :c] = (self.c_in * x) @ self.w_inp
            new[:, :c] += self.b_inp
        new = self._layers(new, last, cp_end)
        keep = min(self.o)
        if keep > self.cp0:
            self.cp, self.cp0 = self.cp[keep - self.cp0:], keep
        out = self._output(new)
        if last:
            self.reset()
        return out

    def _conditions(self, pre: np.ndarray, last: bool) -> int:
        """The smoothing conv and every layer's condition projection on the new frames; returns the frame
        index the projected conditions reach."""
        buf = np.concatenate([self.smooth_cache, pre], 0) if pre.shape[0] else self.smooth_cache
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
        return self.cp0 + self.cp.shape[0]

    def _layers(self, new: np.ndarray | None, last: bool, cp_end: int) -> np.ndarray | None:
        """The dilated gated layers, each on the rows its receptive field now allows; returns the last
        layer's new (skip sum) rows, or None."""
        c = self.c
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
        return new

    def _output(self, new: np.ndarray | None) -> np.ndarray:
        """The skip head on the last layer's new rows, and the preconditioned output."""
        if new is None:
            return np.zeros((0, self.w_final.shape[1]), np.float32)
        k = new.shape[0]
        hf = (new / self.sqrt_layers) @ self.w_skip
        hf += self.b_skip
        np.maximum(hf, 0.0, out=hf)
        fin = hf @ self.w_final
        fin += self.b_final
        out = self.c_skip * self.xs[:k] + self.c_out * fin
        self.xs = self.xs[k:]
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
