"""Stateful streaming (models/streaming.py): streamed output equals the whole-signal output.

The vocoder is the real HiFi-GAN V1 universal on real speech (alsa-utils recordings); the decoder
uses random weights (small and default configs) against `EDMDecoder.denoise` / `VoiceModel.decode`.
Blocks have random sizes, including 0 and 1 frames.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio_io import load_audio
from models.config import ModelConfig, RunConfig
from models.consistency import ConsistencyDecoder, student_from_teacher
from models.dataset import collate
from models.denoiser import receptive_field
from models.edm import EDMDecoder
from models.hifigan import HiFiGAN, HiFiGANConfig, load_universal_hifigan
from models.mel import MelAnalyzer
from models.streaming import StreamingHiFiGAN
from models.streaming_denoiser import StreamingDenoiser
from models.voice_model import VoiceModel
from tests.helpers import tiny_model_config

DEFAULT_TOML = Path(__file__).resolve().parent.parent / "configs" / "default.toml"
SPEECH = ("/usr/share/sounds/alsa/Front_Center.wav", "/usr/share/sounds/alsa/Front_Left.wav")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as in the live path: two threads next to any other job run 2x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blocks(total: int, rng: random.Random, lo: int, hi: int):
    i = 0
    while i < total:
        n = min(rng.randint(lo, hi), total - i)
        yield i, n
        i += n


def _stream_vocoder(s: StreamingHiFiGAN, mel: torch.Tensor, rng: random.Random, lo: int = 1, hi: int = 20):
    outs = []
    for i, n in _blocks(mel.shape[-1], rng, lo, hi):
        outs.append(s.push(mel[..., i : i + n]))
        assert s.samples_out == max(0, (i + n) * s.hop_length - s.delay_samples)
    outs.append(s.flush())
    return torch.cat(outs, -1)


# ---------------------------------------------------------------- vocoder


def test_streamed_universal_vocoder_equals_whole_file_on_real_speech() -> None:
    wav = np.concatenate([load_audio(p, 22050)[0] for p in SPEECH])  # ~2.9 s of two spoken phrases
    mel = MelAnalyzer()(torch.from_numpy(wav))[0]
    vocoder = load_universal_hifigan()
    with torch.inference_mode():
        whole = vocoder(mel)[0]
    s = StreamingHiFiGAN(vocoder)
    assert (s.delay_samples, s.lookahead_frames) == (3258, vocoder.receptive_field.right) == (3258, 13)
    streamed = _stream_vocoder(s, mel, random.Random(0))
    assert streamed.shape == whole.shape == (mel.shape[-1] * 256,)
    err = (streamed - whole).abs().max().item()
    rel_db = 10 * torch.log10((streamed - whole).pow(2).sum() / whole.pow(2).sum()).item()
    assert err < 2e-5 and rel_db < -90, (err, rel_db)


@pytest.mark.parametrize("config", [
    HiFiGANConfig(n_mels=8, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4), upsample_initial_channel=16),
    HiFiGANConfig(n_mels=8, upsample_rates=(3, 5), upsample_kernel_sizes=(7, 11), upsample_initial_channel=8,
                  resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 2), (1, 3, 9))),
])
def test_streamed_vocoder_random_weights_any_blocks(config: HiFiGANConfig) -> None:
    torch.manual_seed(0)
    model = HiFiGAN(config).eval()
    mel = torch.randn(2, config.n_mels, 70)
    with torch.inference_mode():
        whole = model(mel)
    s = StreamingHiFiGAN(model)
    assert s.lookahead_frames == model.receptive_field.right
    rng = random.Random(1)
    for lo, hi in ((0, 1), (0, 7), (30, 80)):  # one frame at a time (with empty pushes), small and big blocks
        streamed = _stream_vocoder(s, mel, rng, lo, hi)  # batched, and reused after each flush
        assert streamed.shape == whole.shape
        assert (streamed - whole).abs().max().item() < 1e-5
    one = _stream_vocoder(s, mel[0], rng, 1, 9)  # unbatched
    assert one.dim() == 1 and (one - whole[0]).abs().max().item() < 1e-5
    assert s.flush().numel() == 0  # flushing an empty stream yields nothing


def test_vocoder_output_of_frame_f_is_final_after_frame_f_plus_lookahead() -> None:
    torch.manual_seed(0)
    config = HiFiGANConfig(n_mels=8, upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4), upsample_initial_channel=16)
    model = HiFiGAN(config).eval()
    s = StreamingHiFiGAN(model)
    mel = torch.randn(config.n_mels, 40)
    got = torch.cat([s.push(mel[:, i : i + 1]) for i in range(20)])
    f = 20 - 1 - s.lookahead_frames
    assert got.shape[-1] >= (f + 1) * s.hop_length  # frame f's samples are out
    with torch.inference_mode():
        other = model(torch.cat([mel[:, :20], torch.randn(config.n_mels, 20)], -1))[0]
    assert torch.allclose(got, other[: got.shape[-1]], atol=1e-5)  # later frames cannot change them


# ---------------------------------------------------------------- one-step decoder


def _random_decoder(cfg: ModelConfig, klass=ConsistencyDecoder, seed: int = 0):
    torch.manual_seed(seed)
    dec = klass(cfg).eval().requires_grad_(False)
    for name, p in dec.named_parameters():  # O(1) activations everywhere, final layer no longer zero
        fan_in = p[0].numel() if p.dim() > 1 else 1
        p.data.normal_(0, 1.0 / fan_in**0.5 if p.dim() > 1 else 0.1)
    return dec


def _features(cfg: ModelConfig, t: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"content": torch.randn(1, t, cfg.content_dim, generator=g),
            "f0": 100 + 300 * torch.rand(1, t, generator=g), "voiced": (torch.rand(1, t, generator=g) > 0.3).float(),
            "loudness": -60 + 50 * torch.rand(1, t, generator=g),
            "speaker": torch.randn(1, cfg.speaker_dim, generator=g), "shift": torch.tensor([2.0])}


def _stream_decoder(s: StreamingDenoiser, feats: dict, z: torch.Tensor | None, rng: random.Random, lo=0, hi=12):
    outs = []
    t = feats["content"].shape[1]
    for i, n in _blocks(t, rng, lo, hi):
        block = {k: v[0] if k in ("speaker", "shift") else v[0, i : i + n] for k, v in feats.items()}
        outs.append(s.push(block, None if z is None else z[0, :, i : i + n]))
        assert s.frames_out == max(0, i + n - s.lookahead_frames)
    outs.append(s.flush())
    return torch.cat(outs, -1)


@pytest.mark.parametrize("cfg", [
    ModelConfig(layers=6, channels=32, cond_dim=32, dilation_cycle=3, lookahead_frames=2),
    ModelConfig(),
    RunConfig.load(DEFAULT_TOML).model,
    ModelConfig(layers=4, channels=16, cond_dim=16, dilation_cycle=3, lookahead_frames=5),
    ModelConfig(layers=3, channels=16, cond_dim=16, lookahead_frames=0),
], ids=["small", "default", "default.toml", "lookahead5", "lookahead0"])
def test_streamed_decoder_equals_whole_sequence_denoise(cfg: ModelConfig) -> None:
    t = 120
    feats, z = _features(cfg, t), torch.randn(1, cfg.n_mels, t, generator=torch.Generator().manual_seed(2))
    for klass in (ConsistencyDecoder, EDMDecoder):
        dec = _random_decoder(cfg, klass)
        sigma = torch.full((1,), cfg.sigma_max)
        with torch.inference_mode():
            whole = dec.denoise(z * cfg.sigma_max, sigma, dec.encode_condition(feats))[0]
        assert whole.std(-1).mean() > 0.05  # the network's output varies over time: a real comparison
        s = StreamingDenoiser(dec)
        first_layer_right = dec.net.layers[0].pad[1]
        assert s.lookahead_frames == receptive_field(cfg)[1] - (1 if first_layer_right else 0)
        streamed = _stream_decoder(s, feats, z, random.Random(3))
        assert streamed.shape == whole.shape
        assert (streamed - whole).abs().max().item() < 1e-5


@pytest.mark.parametrize("cfg", [
    ModelConfig(layers=6, channels=32, cond_dim=32, dilation_cycle=3, lookahead_frames=2),
    ModelConfig(dilation_cycle=3),
    ModelConfig(layers=4, channels=16, cond_dim=16, dilation_cycle=3, lookahead_frames=5),
    ModelConfig(layers=3, channels=16, cond_dim=16, lookahead_frames=0),
], ids=["small", "default-dilated", "lookahead5", "lookahead0"])
def test_time_major_decoder_path_equals_the_generic_stages(cfg: ModelConfig) -> None:
    """The CPU path for one signal (_TimeMajorDenoiser) gives the generic stages' frames block by block,
    flush and a second stream included; a batch still runs the generic stages."""
    dec = _random_decoder(cfg)
    t = 70
    feats, z = _features(cfg, t), torch.randn(1, cfg.n_mels, t, generator=torch.Generator().manual_seed(2))
    fast, generic = StreamingDenoiser(dec), StreamingDenoiser(dec, fast=False)
    for _ in range(2):
        for i, n in _blocks(t, random.Random(5), 0, 9):
            block = {k: v[0] if k in ("speaker", "shift") else v[0, i : i + n] for k, v in feats.items()}
            a, b = fast.push(block, z[0, :, i : i + n]), generic.push(block, z[0, :, i : i + n])
            assert fast._mode == "fast" and generic._mode == "generic"
            assert a.shape == b.shape and (a.numel() == 0 or (a - b).abs().max().item() < 1e-5)
        a, b = fast.flush(), generic.flush()
        assert a.shape == b.shape and (a - b).abs().max().item() < 1e-5
    pair = {k: torch.cat([v, v.flip(-1) if v.dim() > 1 else v]) for k, v in feats.items()}  # batch of 2
    zz = torch.cat([z, z.flip(-1)])
    both = torch.cat([fast.push(pair, zz), fast.flush()], -1)
    assert fast._mode is None and both.shape == (2, cfg.n_mels, t)
    ref = torch.cat([generic.push(pair, zz), generic.flush()], -1)
    assert (both - ref).abs().max().item() < 1e-5


def test_decoder_lookahead_is_minimal() -> None:
    """Frame f depends on frame f + lookahead (so no smaller lookahead could be exact) and on nothing later."""
    cfg = ModelConfig()
    dec = _random_decoder(cfg)
    la = StreamingDenoiser(dec).lookahead_frames
    assert la == 2 and receptive_field(cfg)[1] == 3
    t, f = 40, 20
    feats, z = _features(cfg, t), torch.randn(1, cfg.n_mels, t)
    sigma = torch.full((1,), cfg.sigma_max)
    with torch.inference_mode():
        base = dec.denoise(z * cfg.sigma_max, sigma, dec.encode_condition(feats))
        for k in ("content", "f0", "loudness"):
            for j, changes in ((f + la, True), (f + la + 1, False)):
                g = dict(feats)
                g[k] = feats[k].clone()
                g[k][:, j] += 50.0
                moved = dec.denoise(z * cfg.sigma_max, sigma, dec.encode_condition(g))
                assert (moved[..., f] - base[..., f]).abs().max().item() > 1e-4 if changes else \
                    torch.equal(moved[..., : f + 1], base[..., : f + 1])
        z2 = z.clone()
        z2[..., f + la] += 1.0
        moved = dec.denoise(z2 * cfg.sigma_max, sigma, dec.encode_condition(feats))
        assert (moved[..., f] - base[..., f]).abs().max().item() > 1e-4


def test_streamed_decoder_equals_voice_model_decode_with_frame_noise() -> None:
    cfg = tiny_model_config(lookahead_frames=2)
    dec = _random_decoder(cfg)
    vm = VoiceModel(cfg, {"x": np.ones(cfg.speaker_dim, np.float32)}, student=student_from_teacher(dec).eval())
    t, offset = 90, 1234
    rng = np.random.default_rng(0)
    item = {"mel": np.zeros((cfg.n_mels, t), np.float32),
            "content": rng.standard_normal((t, cfg.content_dim)).astype(np.float32),
            "f0": rng.uniform(100, 400, t).astype(np.float32), "voiced": np.ones(t, np.float32),
            "loudness": np.full(t, -20, np.float32), "speaker": np.ones(cfg.speaker_dim, np.float32)}
    batch = collate([item])
    whole = vm.decode(batch, steps=1, seed=5, frame_offset=offset)[0]
    feats = {k: batch[k] for k in ("content", "f0", "voiced", "loudness", "speaker", "shift")}
    s = StreamingDenoiser(vm.student, seed=5, frame_offset=offset, to_mel=True)
    for _ in range(2):  # a flushed stream starts over at frame_offset
        streamed = _stream_decoder(s, feats, None, random.Random(4), 1, 5)
        assert (streamed - whole).abs().max().item() < 1e-5
    assert s.flush().shape == (cfg.n_mels, 0)
