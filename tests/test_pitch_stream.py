"""Live pitch: the CPU fast path of FCPE (engine/fcpe_fast.py) against torchfcpe's own forward."""
from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from engine.fcpe_fast import FastFCPE, int8_linear
from engine.pitch import FCPEPitch, WorldPitch
from engine.pitch_stream import PITCH_HOP, LiveFCPEPitch, PitchStream, live_pitch_extractor
from models.audio_io import load_audio, resample

SPEECH = "/usr/share/sounds/alsa/Front_Center.wav"
WINDOW = 2560  # 0.16 s at 16 kHz, the live window
STEP = 640     # the live pitch chunk


@pytest.fixture(scope="module")
def speech():
    y, sr = load_audio(SPEECH)
    return resample(y, sr, 16000)


@pytest.fixture(scope="module")
def reference():
    """torchfcpe's forward, float32 throughout (the offline extractor)."""
    return FCPEPitch(device="cpu")


@pytest.fixture(scope="module")
def reference_int8():
    """torchfcpe's forward with its 1x1 convs on the same int8 weights as the live path."""
    ex = FCPEPitch(device="cpu")
    for m in ex.model.modules():
        if isinstance(m, nn.Conv1d) and m.kernel_size == (1,):
            q = int8_linear(m.weight.detach()[:, :, 0], m.bias.detach())
            m.forward = lambda x, q=q: q(x.transpose(1, 2)).transpose(1, 2)
    return ex


@pytest.fixture(scope="module")
def live():
    return live_pitch_extractor("fcpe", "cpu")


def _windows(y: np.ndarray) -> list[np.ndarray]:
    return [y[s:s + WINDOW] for s in range(0, len(y) - WINDOW + 1, STEP)]


def _cents(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both = (a > 0) & (b > 0)
    return 1200.0 * np.abs(np.log2(a[both] / b[both]))


def test_live_extractor_takes_the_fast_path_on_the_cpu(live):
    assert isinstance(live, LiveFCPEPitch) and isinstance(live.fast, FastFCPE)
    assert type(live_pitch_extractor("dio")) is WorldPitch


@pytest.mark.parametrize("decoder", ["local_argmax", "argmax"])
def test_fast_path_in_float32_equals_torchfcpe(speech, reference, decoder):
    """With float32 1x1 convs the time-major forward is torchfcpe's network to float rounding: live
    windows, the whole file and lengths around the frame and padding edges."""
    if decoder != reference.decoder:
        reference = FCPEPitch(device="cpu", decoder=decoder)
    fast = FastFCPE(reference.model, reference.threshold, reference.decoder, reference.f0_min, int8=False)
    signals = _windows(speech) + [speech] + [speech[4000:4000 + n] for n in (0, 159, 160, 239, 240, 1000, 5000)]
    for y in signals:
        a, b = reference.extract(y), fast.extract(y)
        assert a.shape == b.shape == (len(y) // PITCH_HOP,)
        assert np.array_equal(a > 0, b > 0)
        assert np.all(_cents(b, a) < 0.05)
    voiced = np.concatenate([reference.extract(y) for y in _windows(speech)]) > 0
    assert 0.2 < voiced.mean() < 0.8  # a real mix of voiced and unvoiced frames


def test_live_fast_path_matches_torchfcpe_with_the_same_int8_convs(speech, reference_int8, live):
    """The live (int8) path against torchfcpe's forward on the same int8 weights. Dynamic int8
    quantisation of the activations turns float rounding differences into an occasional step, so
    compare statistics, not every frame."""
    a = np.concatenate([reference_int8.extract(y) for y in _windows(speech)])
    b = np.concatenate([live.extract(y) for y in _windows(speech)])
    assert len(a) == len(b) and (a > 0).sum() > 100
    assert np.mean((a > 0) == (b > 0)) >= 0.99
    c = _cents(b, a)
    assert np.median(c) < 0.05 and np.percentile(c, 95) < 1.0


def test_live_fcpe_falls_back_to_torchfcpe_without_the_fast_path(speech, reference):
    """Off the CPU LiveFCPEPitch has no fast path and runs torchfcpe's forward unchanged."""
    ex = LiveFCPEPitch(device="cpu")
    ex.fast = None
    y = speech[:WINDOW * 2]
    assert np.array_equal(ex.extract(y), reference.extract(y))


def test_pitch_stream_with_the_live_path(speech, reference_int8, live):
    """PitchStream (0.16 s windows, 40 ms chunks) on the fast path against the same stream on torchfcpe
    with the same int8 convs, pushed in uneven blocks."""
    kw = dict(window_s=0.16, chunk_samples=STEP)
    ref_f0 = PitchStream(extractor=reference_int8, **kw).push(speech)
    s = PitchStream(extractor=live, **kw)
    cuts = np.cumsum(np.random.default_rng(0).integers(1, 900, 64))
    f0 = np.concatenate([s.push(part) for part in np.split(speech, cuts[cuts < len(speech)])])
    assert len(f0) == len(ref_f0) == s.ready(len(speech))
    assert np.mean((f0 > 0) == (ref_f0 > 0)) >= 0.99
    assert np.median(_cents(f0, ref_f0)) < 0.05
