"""Checks that need an NVIDIA GPU (run by scripts/gpu_check.sh, not by the CPU suite): every vocoder and the
decoder on CUDA agree with the CPU, the NSF streams on CUDA like the whole file, and a live session runs
on CUDA with its default vocoder. On a machine without CUDA these fail: the script is for GPU machines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.session_config import SessionConfig
from engine.stream_session import run_offline
from models.mel import MelAnalyzer
from models.vocoders import VOCODERS, default_live_vocoder, load_vocoder
from tests.helpers import harmonic

SR, HOP = 22050, 256


def test_cuda_is_there() -> None:
    assert torch.cuda.is_available(), "no CUDA device: scripts/gpu_check.sh is for machines with an NVIDIA GPU"


def _tone(seconds: float = 1.0):
    wav = harmonic(220.0, seconds, SR, n_harm=20, vibrato_cents=30.0)
    mel = MelAnalyzer()(torch.from_numpy(wav)[None])[0]
    f0 = torch.full((mel.shape[-1],), 220.0)
    return mel, f0


@pytest.mark.parametrize("name", VOCODERS)
def test_vocoder_on_cuda_matches_cpu(name: str) -> None:
    mel, f0 = _tone()
    cpu = load_vocoder(name, "cpu")(mel, f0).float()
    gpu = load_vocoder(name, "cuda")(mel.cuda(), f0).float().cpu()
    assert torch.isfinite(gpu).all()
    assert 10 * torch.log10(((gpu - cpu) ** 2).sum() / (cpu ** 2).sum()) < -30.0


def test_nsf_stream_on_cuda_equals_whole_file() -> None:
    mel, f0 = _tone(0.8)
    voc = load_vocoder("nsf", "cuda")
    whole = voc(mel.cuda(), f0).float().cpu()
    st = voc.stream()
    parts = [st.push(mel[:, i:i + 4].cuda(), f0[i:i + 4]) for i in range(0, mel.shape[-1], 4)]
    y = torch.cat([p.float().cpu() for p in parts] + [st.flush().float().cpu()])
    assert 10 * torch.log10(((y - whole) ** 2).sum() / (whole ** 2).sum()) < -50.0


def test_live_session_on_cuda_uses_the_nsf() -> None:
    assert default_live_vocoder("cuda") == "nsf"
    wav = harmonic(196.0, 2.0, 48000, n_harm=20, vibrato_cents=40.0)
    out = run_offline(SessionConfig(sample_rate=48000, block_ms=40.0, device="cuda"), wav, 48000)
    assert out.shape == wav.shape and np.isfinite(out).all() and np.abs(out).max() > 1e-3
