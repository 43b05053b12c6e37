"""The compact f0-driven vocoder "hn" and the vocoder interface: streamed == whole file for every
vocoder, the shipped weights beat an untrained copy, the output's pitch is the given f0, loading by
name, clear errors for missing or damaged files, and the training / export loop on a tiny corpus."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

import models.hn_vocoder as hn
from engine.frames import MODEL_FRAME_RATE, align_frames
from evaluation.metrics import cents_error
from models.audio_io import save_audio
from models.checkpoint import load_checkpoint, save_checkpoint
from models.errors import ComoliveError, ModelFileError
from models.hn_vocoder import HNConfig, HNVocoder, HNVocoderModel
from models.mel import MelAnalyzer
from training.vocoder_train import VocoderTrainConfig, VocoderTrainingRun, export_vocoder
from models.vocoders import VOCODERS, default_live_vocoder, default_offline_vocoder, load_vocoder
from tests.helpers import harmonic

SR, HOP = 22050, 256


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def analyzer() -> MelAnalyzer:
    return MelAnalyzer()


@pytest.fixture(scope="module")
def hn_voc() -> HNVocoder:
    return load_vocoder("hn", "cpu")


def _sung_tone(seconds: float, f0: float = 196.0, vibrato: float = 40.0, seed: int = 0):
    """A vowel-like tone with vibrato and an unvoiced gap, and its exact f0 on the mel frame grid."""
    wav = harmonic(f0, seconds, SR, n_harm=24, vibrato_cents=vibrato, amp=0.3)
    t = np.arange(len(wav)) / SR
    f = f0 * 2.0 ** (vibrato / 1200.0 * np.sin(2 * np.pi * 5.5 * t))
    n = len(wav) // HOP
    f0_frames = f[HOP // 2::HOP][:n].astype(np.float32)
    gap = slice(n // 2, n // 2 + 8)
    wav[gap.start * HOP:gap.stop * HOP] = 0.02 * np.random.default_rng(seed).standard_normal(8 * HOP)
    f0_frames[gap] = 0.0
    return wav, f0_frames


def _streamed(voc, mel: torch.Tensor, f0: torch.Tensor, rng: random.Random, lo: int, hi: int) -> torch.Tensor:
    st = voc.stream()
    out, i = [], 0
    while i < mel.shape[-1]:
        n = rng.randint(lo, hi)
        out.append(st.push(mel[:, i:i + n], f0[i:i + n]))
        i += n
    out.append(st.flush())
    return torch.cat(out)


def _diff_db(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float(10 * torch.log10(((a - ref) ** 2).sum() / (ref ** 2).sum()))


@pytest.mark.parametrize("name", VOCODERS)
def test_streamed_equals_whole_file_for_every_vocoder(name: str, analyzer: MelAnalyzer) -> None:
    voc = load_vocoder(name, "cpu")
    wav, f0 = _sung_tone(0.6 if name == "hifigan" else 2.0)
    mel = analyzer(torch.from_numpy(wav)[None])[0]
    f0 = torch.from_numpy(f0)
    whole = voc(mel, f0)
    assert whole.shape == (mel.shape[-1] * HOP,)
    for seed, (lo, hi) in enumerate(((1, 3), (4, 9), (1, 20))):
        streamed = _streamed(voc, mel, f0, random.Random(seed), lo, hi)
        assert streamed.shape == whole.shape
        assert _diff_db(streamed, whole) < -60.0


def test_causal_hn_has_half_a_frame_of_lookahead(analyzer: MelAnalyzer) -> None:
    """"hn-causal" is the same vocoder with no right context: only the half frame of control interpolation."""
    voc = load_vocoder("hn-causal", "cpu")
    assert voc.name == "hn-causal" and voc.pitch_from_f0
    wav, f0 = _sung_tone(1.0)
    mel = analyzer(torch.from_numpy(wav)[None])[0]
    st = voc.stream()
    assert st.lookahead_frames == 1 and st.delay_samples == HOP // 2
    got = 0
    for n in range(1, 20):
        got += len(st.push(mel[:, n - 1:n], torch.from_numpy(f0[n - 1:n])))
        assert got == max(0, n * HOP - st.delay_samples)
    y = voc(mel, torch.from_numpy(f0))  # it renders the tone: energy where the input has it
    assert torch.isfinite(y).all() and 0.1 < float(y.pow(2).mean().sqrt() / np.sqrt(np.mean(wav ** 2))) < 10


def test_hn_stream_declares_its_lookahead(hn_voc: HNVocoder, analyzer: MelAnalyzer) -> None:
    wav, f0 = _sung_tone(1.0)
    mel = analyzer(torch.from_numpy(wav)[None])[0]
    st = hn_voc.stream()
    assert st.lookahead_frames == 2 and st.delay_samples == HOP + HOP // 2
    got = 0
    for n in range(1, 30):
        got += len(st.push(mel[:, n - 1:n], torch.from_numpy(f0[n - 1:n])))
        assert got == max(0, n * HOP - st.delay_samples)
    st.reset()  # a reset stream starts over: same samples as a fresh one
    again = torch.cat([st.push(mel[:, :10], torch.from_numpy(f0[:10])), st.flush()])
    assert torch.allclose(again, hn_voc(mel[:, :10], torch.from_numpy(f0[:10])), atol=1e-5)


def test_trained_hn_beats_untrained_copy_on_log_mel_distance(hn_voc: HNVocoder, analyzer: MelAnalyzer) -> None:
    torch.manual_seed(0)
    untrained = HNVocoder.from_model(HNVocoderModel(hn_voc.cfg).eval())
    dists = {}
    for label, voc in (("trained", hn_voc), ("untrained", untrained)):
        total = []
        for f0_hz, seed in ((140.0, 0), (262.0, 1)):
            wav, f0 = _sung_tone(1.5, f0_hz, seed=seed)
            mel = analyzer(torch.from_numpy(wav)[None])[0]
            out = voc(mel, torch.from_numpy(f0))
            total.append(float((analyzer(out[None])[0] - mel).abs().mean()))
        dists[label] = float(np.mean(total))
    assert dists["trained"] < 0.6 * dists["untrained"], dists


def test_hn_output_pitch_is_the_given_f0(hn_voc: HNVocoder, analyzer: MelAnalyzer) -> None:
    from engine.pitch import make_pitch_extractor

    wav, f0 = _sung_tone(2.0, 220.0, vibrato=60.0)
    mel = analyzer(torch.from_numpy(wav)[None])[0]
    target = f0 * np.float32(2 ** (3 / 12))  # sing it a minor third higher than the mel's own pitch
    out = hn_voc(mel, torch.from_numpy(target)).numpy()
    pitch = make_pitch_extractor("fcpe", device="cpu")
    got = align_frames(pitch.extract_from(out, SR), pitch.frame_rate, MODEL_FRAME_RATE, len(target), "nearest")
    err = cents_error(got, target)
    assert err["f0_cents_median"] < 15.0, err


def test_vocoders_by_name_and_defaults(hn_voc: HNVocoder) -> None:
    assert set(VOCODERS) >= {"nsf", "hifigan", "hn", "hn-causal"}
    assert (hn_voc.name, hn_voc.sample_rate, hn_voc.hop_length, hn_voc.n_mels) == ("hn", SR, HOP, 80)
    assert load_vocoder(" HN ").name == "hn"
    assert default_live_vocoder("cpu") == "hn" and default_offline_vocoder("cpu") == "nsf"
    with pytest.raises(ComoliveError, match="unknown vocoder"):
        load_vocoder("wavenet")
    mel = torch.full((80, 12), -5.0)
    with pytest.raises(ComoliveError, match="driven by f0"):
        hn_voc(mel, None)
    with pytest.raises(ComoliveError, match="frames"):
        hn_voc(mel, torch.full((11,), 200.0))
    with pytest.raises(ComoliveError, match="NaN"):
        hn_voc.stream().push(mel, torch.full((12,), float("nan")))
    batch = hn_voc(mel[None].expand(2, -1, -1), torch.full((2, 12), 200.0))
    assert batch.shape == (2, 12 * HOP) and torch.allclose(batch[0], hn_voc(mel, torch.full((12,), 200.0)))


def test_missing_or_damaged_hn_file_is_a_clear_model_file_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(hn, "PRETRAINED", tmp_path / "nowhere" / "vocoder_hn")
    with pytest.raises(ModelFileError, match="not found"):
        load_vocoder("hn")
    monkeypatch.undo()
    for ext in (".safetensors", ".json"):
        shutil.copy(hn.PRETRAINED.with_suffix(ext), tmp_path / f"v{ext}")
    data = (tmp_path / "v.safetensors").read_bytes()
    (tmp_path / "v.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupted or truncated"):
        HNVocoder(path=tmp_path / "v")
    tensors, meta = load_checkpoint(hn.PRETRAINED)  # crafted descriptions (stored in both files, as saved)
    save_checkpoint(tmp_path / "v", tensors, {**meta, "kind": "voice_model"})
    with pytest.raises(ModelFileError, match="not an hn vocoder"):
        HNVocoder(path=tmp_path / "v")
    save_checkpoint(tmp_path / "v", tensors, {**meta, "config": {**meta["config"], "channels": 32}})
    with pytest.raises(ModelFileError, match="do not fit"):
        HNVocoder(path=tmp_path / "v")


def _tiny_corpus(root, n: int = 3) -> None:
    """Corpus layout of training/corpus/build.py: wav + f0.npy (frames centred at i*hop, n//hop + 1 of them)."""
    for split in ("train", "heldout"):
        for k in range(n if split == "train" else 1):
            f0 = 150.0 + 40 * k
            wav = harmonic(f0, 1.2, SR, n_harm=12, vibrato_cents=30.0, seed=k)
            t = np.arange(len(wav) // HOP + 1) * HOP / SR
            f = (f0 * 2.0 ** (30.0 / 1200.0 * np.sin(2 * np.pi * 5.5 * t))).astype(np.float32)
            d = root / split / "v1"
            d.mkdir(parents=True, exist_ok=True)
            save_audio(d / f"m{k}.wav", wav, SR)
            np.save(d / f"m{k}.f0.npy", f)


def test_train_resume_and_export_on_a_tiny_corpus(tmp_path) -> None:
    _tiny_corpus(tmp_path / "corpus")
    cfg = HNConfig(channels=16, dilations=[1, 2], n_harmonics=24, n_noise_bands=8)
    tc = VocoderTrainConfig(steps=6, batch_size=2, segment_frames=16, context_frames=4, checkpoint_every=3,
                            validate_every=3, log_every=1, fft_sizes=[512, 128])
    run = tmp_path / "run"
    VocoderTrainingRun(tmp_path / "corpus", run, cfg, VocoderTrainConfig(**{**tc.__dict__, "steps": 3}),
                       progress=False).run()
    assert json.loads((run / "last.json").read_text())["step"] == 3
    with pytest.raises(ComoliveError, match="already holds a run"):
        VocoderTrainingRun(tmp_path / "corpus", run, cfg, tc, progress=False)
    VocoderTrainingRun(tmp_path / "corpus", run, cfg, tc, resume=True, progress=False).run()
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("step,loss,val_loss") and rows[-1].startswith("6,")
    out = export_vocoder(run, tmp_path / "exported" / "vocoder_hn")
    voc = HNVocoder(path=out)
    assert voc.cfg.channels == 16 and voc.meta["step"] == 6 and voc.meta["dtype"] == "float16"
    y = voc(torch.full((80, 20), -4.0), torch.full((20,), 180.0))
    assert y.shape == (20 * HOP,) and torch.isfinite(y).all()
    with pytest.raises(ComoliveError, match="nothing to resume"):
        VocoderTrainingRun(tmp_path / "corpus", tmp_path / "empty", cfg, tc, resume=True, progress=False)


def test_a_models_own_hn_is_used_with_hn_only_and_a_broken_one_is_named(tmp_path):
    """MODEL_hn beside a voice model replaces the shared hn for that model; a broken one fails in one line."""
    from engine.converter import Converter
    from models.voice_model import DEFAULT_MODEL, VoiceModel

    for suffix in (".safetensors", ".json"):
        shutil.copy(f"{DEFAULT_MODEL}{suffix}", tmp_path / f"m{suffix}")
    assert VoiceModel.load(tmp_path / "m").own_vocoder("hn") is None
    tensors, meta = load_checkpoint(hn.PRETRAINED)
    save_checkpoint(tmp_path / "m_hn", {k: v * 0.5 for k, v in tensors.items()}, meta)
    vm = VoiceModel.load(tmp_path / "m")
    assert vm.own_vocoder("hn") == tmp_path / "m_hn" and vm.own_vocoder("nsf") is None
    own = Converter(model=tmp_path / "m", device="cpu", vocoder="hn").vocoder
    assert torch.allclose(own.model.state_dict()["net.head.weight"],
                          0.5 * load_vocoder("hn").model.state_dict()["net.head.weight"], atol=1e-3)
    (tmp_path / "m_hn.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="m_hn"):
        Converter(model=tmp_path / "m", device="cpu", vocoder="hn")
