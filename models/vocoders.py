"""Vocoders by name: one interface for whole-file and streamed mel -> audio, whatever the architecture.

Names: "nsf" (NSF HiFi-GAN, the offline and CUDA default), "hifigan" (the V1 universal, pitch from the mel),
"hn" (compact harmonic-plus-noise, the CPU live default), "hn-causal" (hn with no right context).

A vocoder takes the model's log-mel (models/mel.py: 22 050 Hz, hop 256, 80 bins) and the f0 of the same
frames (Hz, 0 = unvoiced, on the frame grid of engine/frames.py). Vocoders that do not use f0 ignore it;
f0-driven ones (harmonic-plus-noise, neural source-filter) take their pitch from it exactly.

    voc = load_vocoder("hifigan")            # whole file: voc(mel [80, T], f0 [T] | None) -> audio [T * hop]
    st = voc.stream()                        # live: st.push(mel [80, n], f0 [n] | None) -> new samples
    ...; tail = st.flush()                   # concatenation of push()es + flush() == voc(whole mel, f0)

`st.delay_samples` is the stream's algorithmic lookahead in output samples (after N frames pushed,
N * hop - delay_samples samples have come out) and `st.lookahead_frames` the same in whole frames.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from models.device import pick_device
from models.errors import ComoliveError
from models.hn_vocoder import as_f0


class VocoderStream(Protocol):
    delay_samples: int
    lookahead_frames: int

    def push(self, mel: torch.Tensor, f0: torch.Tensor | np.ndarray | None = None) -> torch.Tensor: ...

    def flush(self) -> torch.Tensor: ...

    def reset(self) -> None: ...


class Vocoder(Protocol):
    name: str
    pitch_from_f0: bool  # True: the output pitch is the given f0 (a formant warp of the mel keeps the pitch)
    sample_rate: int
    hop_length: int
    n_mels: int

    def __call__(self, mel: torch.Tensor, f0: torch.Tensor | np.ndarray | None = None) -> torch.Tensor: ...

    def stream(self) -> VocoderStream: ...


class HiFiGANVocoder:
    """The HiFi-GAN V1 universal generator (13.9 M parameters): its pitch follows the mel; an option, not a default."""

    name = "hifigan"
    pitch_from_f0 = False  # reads pitch from the mel's harmonics

    def __init__(self, device: str | torch.device | None = None):
        from models.hifigan import load_universal_hifigan

        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.model = load_universal_hifigan(self.device)
        self.sample_rate = self.model.sample_rate
        self.hop_length = self.model.hop_length
        self.n_mels = self.model.config.n_mels

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, f0=None) -> torch.Tensor:
        """mel [80, T] or [B, 80, T] -> audio [T * hop] or [B, T * hop]."""
        batched = mel.dim() == 3
        y = self.model((mel if batched else mel[None]).to(self.device)).squeeze(1)
        return y if batched else y[0]

    def stream(self) -> "_HiFiGANStream":
        return _HiFiGANStream(self)


class _HiFiGANStream:
    def __init__(self, vocoder: HiFiGANVocoder):
        from models.streaming import StreamingHiFiGAN

        self._s = StreamingHiFiGAN(vocoder.model)
        self.delay_samples = self._s.delay_samples
        self.lookahead_frames = self._s.lookahead_frames

    def push(self, mel: torch.Tensor, f0=None) -> torch.Tensor:
        return self._s.push(mel)

    def flush(self) -> torch.Tensor:
        return self._s.flush()

    def reset(self) -> None:
        self._s.reset()


class NSFVocoder:
    """NSF HiFi-GAN (models/nsf_hifigan.py): the V1 with a harmonic source from our f0, the offline default."""

    name = "nsf"
    pitch_from_f0 = True

    def __init__(self, device: str | torch.device | None = None, path=None):
        from models.nsf_hifigan import load_nsf

        self.device = pick_device(device) if not isinstance(device, torch.device) else device
        self.model = load_nsf(path, self.device)
        self.sample_rate = self.model.sample_rate
        self.hop_length = self.model.hop_length
        self.n_mels = self.model.base.config.n_mels

    @torch.inference_mode()
    def __call__(self, mel: torch.Tensor, f0=None) -> torch.Tensor:
        """mel [80, T] or [B, 80, T], f0 [T] or [B, T] Hz -> audio [T * hop] or [B, T * hop]."""
        batched = mel.dim() == 3
        m = (mel if batched else mel[None]).to(self.device)
        f = as_f0(f0, m.shape[-1], self.name)
        f = f if f.dim() == 2 else f[None].expand(m.shape[0], -1)
        y = self.model(m, f)
        return y if batched else y[0]

    def stream(self):
        from models.nsf_hifigan import NSFStream

        return NSFStream(self.model)


def _hn_vocoder(device: str | torch.device | None = None) -> Vocoder:
    """The compact f0-driven harmonic-plus-noise vocoder (models/hn_vocoder.py), the live default on a CPU."""
    from models.hn_vocoder import HNVocoder

    return HNVocoder(device=device)


def _hn_causal_vocoder(device: str | torch.device | None = None) -> Vocoder:
    """The same vocoder trained with no right context: 11.6 ms less lookahead, slightly lower quality."""
    from models.hn_vocoder import PRETRAINED_CAUSAL, HNVocoder

    return HNVocoder(device=device, path=PRETRAINED_CAUSAL, name="hn-causal")


_FACTORIES = {"nsf": NSFVocoder, "hifigan": HiFiGANVocoder, "hn": _hn_vocoder, "hn-causal": _hn_causal_vocoder}
VOCODERS = tuple(_FACTORIES)


def load_vocoder(name: str = "hifigan", device: str | torch.device | None = None,
                 path: str | Path | None = None) -> Vocoder:
    """A vocoder by name; unknown names and unusable files raise with a readable message. `path`: another
    checkpoint of that vocoder (a voice model's own hn, VoiceModel.own_vocoder) instead of the shipped one."""
    key = str(name).strip().lower()
    if key not in _FACTORIES:
        raise ComoliveError(f"unknown vocoder {name!r}; choose one of: {', '.join(sorted(_FACTORIES))}")
    if path is not None:
        if key != "hn":
            raise ComoliveError(f"only the hn vocoder can be loaded from another file, not {name!r}")
        from models.hn_vocoder import HNVocoder

        return HNVocoder(device=device, path=path)
    return _FACTORIES[key](device=device)


def default_live_vocoder(device: str | torch.device | None = None) -> str:
    """The vocoder for live use: "hn" on a CPU (fits the real-time budget), "nsf" on CUDA (best quality)."""
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return "nsf" if dev.type == "cuda" else "hn"


def default_offline_vocoder(device: str | torch.device | None = None) -> str:
    """The vocoder for offline conversion: the NSF HiFi-GAN everywhere (quality first, pitch from f0)."""
    return "nsf"


PITCH_FROM_MEL = ("hifigan",)  # vocoders whose pitch is read from the mel, not from the f0 they are given


def pitch_note(name: str | None) -> str | None:
    """What to tell a user who picked (by name) a vocoder that does not take its pitch from f0."""
    if str(name or "").strip().lower() not in PITCH_FROM_MEL:
        return None
    return (f"note: the {name} vocoder reads pitch from the mel the decoder draws, so the melody can drift "
            f"off the input's; 'nsf' (the default) and 'hn' sing the f0 exactly")
