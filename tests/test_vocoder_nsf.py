"""The NSF HiFi-GAN: an untrained source branch is the V1 itself, streamed == whole file with a live
source branch, the shipped vocoder sings the f0 it is given (not the pitch drawn in the mel), every
default offline path uses an f0-driven vocoder, clear errors for damaged files, and fine-tuning runs."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from engine.frames import MODEL_FRAME_RATE, align_frames
from evaluation.metrics import cents_error
from models.checkpoint import load_checkpoint, save_checkpoint
from models.errors import ComoliveError, ModelFileError
from models.hifigan import load_universal_hifigan
from models.mel import MelAnalyzer
from models.nsf_hifigan import PRETRAINED, NSFHiFiGAN, NSFStream, load_nsf
from training.nsf_train import blur_mel
from models.vocoders import default_live_vocoder, default_offline_vocoder, load_vocoder, pitch_note
from tests.helpers import harmonic

SR, HOP = 22050, 256


@pytest.fixture(scope="module")
def base():
    return load_universal_hifigan("cpu")


@pytest.fixture(scope="module")
def analyzer() -> MelAnalyzer:
    return MelAnalyzer()


def _tone(seconds: float, f0: float, gap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    wav = harmonic(f0, seconds, SR, n_harm=24, vibrato_cents=30.0, amp=0.3)
    t = np.arange(len(wav)) / SR
    f = (f0 * 2.0 ** (30.0 / 1200.0 * np.sin(2 * np.pi * 5.5 * t)))[HOP // 2::HOP][:len(wav) // HOP]
    f = f.astype(np.float32)
    if gap:
        n = len(f)
        wav[n // 2 * HOP:(n // 2 + 6) * HOP] = 0.0
        f[n // 2:n // 2 + 6] = 0.0
    return wav, f


def test_untrained_source_branch_is_the_v1(base, analyzer: MelAnalyzer) -> None:
    wav, f0 = _tone(0.5, 180.0)
    mel = analyzer(torch.from_numpy(wav)[None])
    nsf = NSFHiFiGAN(base).eval()
    with torch.no_grad():
        assert torch.equal(nsf(mel, torch.from_numpy(f0)[None]), base(mel))


def test_streamed_equals_whole_file_with_a_live_source(base, analyzer: MelAnalyzer) -> None:
    torch.manual_seed(0)
    nsf = NSFHiFiGAN(base).eval()
    for conv in nsf.source_convs:  # a source branch that contributes, as after training
        torch.nn.init.normal_(conv.weight, std=0.05)
    wav, f0 = _tone(0.6, 240.0)
    mel = analyzer(torch.from_numpy(wav)[None])[0]
    f0 = torch.from_numpy(f0)
    with torch.no_grad():
        whole = nsf(mel[None], f0[None])[0]
    rng = random.Random(0)
    for lo, hi in ((1, 2), (3, 9)):
        st, out, i = NSFStream(nsf), [], 0
        while i < mel.shape[-1]:
            n = rng.randint(lo, hi)
            out.append(st.push(mel[:, i:i + n], f0[i:i + n]))
            i += n
        out.append(st.flush())
        y = torch.cat(out)
        assert y.shape == whole.shape
        assert 10 * torch.log10(((y - whole) ** 2).sum() / (whole ** 2).sum()) < -60.0
    assert st.delay_samples == NSFStream(nsf).net.out_delay(0) > 0


def test_shipped_nsf_sings_the_given_f0_not_the_mels_pitch(analyzer: MelAnalyzer) -> None:
    """A ramp of f0 under a mel with its harmonics smeared (what a decoder's loose mel looks like)."""
    from engine.pitch import make_pitch_extractor

    voc = load_vocoder("nsf", "cpu")
    assert voc.pitch_from_f0
    n = int(2.0 * SR) // HOP
    ramp = np.geomspace(160.0, 320.0, n).astype(np.float32)
    t = np.arange(n * HOP) / SR
    f_s = np.interp(t, (np.arange(n) + 0.5) * HOP / SR, ramp)
    phase = 2 * np.pi * np.cumsum(f_s) / SR
    wav = sum(np.sin(k * phase) / k for k in range(1, 25)).astype(np.float32)
    wav *= 0.3 / np.abs(wav).max()
    mel = blur_mel(analyzer(torch.from_numpy(wav)[None]), torch.tensor([2.0]))[0]
    out = voc(mel, torch.from_numpy(ramp)).numpy()
    pitch = make_pitch_extractor("fcpe", device="cpu")
    got = align_frames(pitch.extract_from(out, SR), pitch.frame_rate, MODEL_FRAME_RATE, n)
    inner = slice(10, n - 10)
    err = cents_error(got[inner], ramp[inner])
    assert err["f0_cents_median"] < 10.0, err


def test_every_offline_default_is_pitch_true() -> None:
    import main

    parser = main.build_parser()
    for argv in (["convert", "a.wav", "b.wav"], ["eval", "data/corpus"]):
        name = parser.parse_args(argv).vocoder
        assert load_vocoder(name, "cpu").pitch_from_f0, (argv, name)
    assert load_vocoder(default_offline_vocoder("cpu"), "cpu").pitch_from_f0
    assert default_live_vocoder("cpu") == "hn"
    assert "pitch from the mel" in pitch_note("hifigan") and pitch_note("nsf") is None and pitch_note(None) is None


def test_damaged_nsf_files_are_refused_clearly(tmp_path) -> None:
    tensors, meta = load_checkpoint(PRETRAINED)
    with pytest.raises(ModelFileError, match="not found"):
        load_nsf(tmp_path / "missing")
    save_checkpoint(tmp_path / "wrong_kind", tensors, {**meta, "kind": "hn_vocoder"})
    with pytest.raises(ModelFileError, match="not an NSF"):
        load_nsf(tmp_path / "wrong_kind")
    dropped = dict(tensors)
    dropped.pop(sorted(dropped)[0])
    save_checkpoint(tmp_path / "short", dropped, meta)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_nsf(tmp_path / "short")
    with pytest.raises(ComoliveError, match="driven by f0"):
        load_vocoder("nsf", "cpu")(torch.zeros(80, 4) - 5)


def test_nsf_fine_tuning_runs_and_exports(tmp_path, analyzer: MelAnalyzer) -> None:
    """Two steps on a tiny feature folder, a resume, and the export that the loader accepts."""
    import main

    feats = tmp_path / "feats"
    (feats / "train" / "v").mkdir(parents=True)
    utts = []
    for i, f in enumerate((150.0, 210.0)):
        wav, f0 = _tone(1.0, f, gap=False)
        mel = analyzer(torch.from_numpy(wav)[None])[0].numpy()
        np.savez(feats / "train" / "v" / f"{i}.npz", mel=mel, f0=f0,
                 audio=np.round(wav[:len(f0) * HOP] * 32767).astype(np.int16))
        utts.append({"path": f"train/v/{i}.npz", "split": "train", "voice": "v"})
    (feats / "index.json").write_text(json.dumps({"utterances": utts}))
    cfg = tmp_path / "nsf.toml"
    cfg.write_text("[train]\nsteps = 2\nbatch_size = 1\nsegment_frames = 8\ncontext_frames = 2\n"
                   "checkpoint_every = 1\nvalidate_every = 2\nthreads = 1\nval_every = 2\n")
    run = tmp_path / "run"
    assert main.main(["train-vocoder", str(feats), str(run), "--vocoder", "nsf", "--config", str(cfg),
                      "--steps", "1"]) == 0
    assert main.main(["train-vocoder", str(feats), str(run), "--vocoder", "nsf", "--config", str(cfg),
                      "--resume"]) == 0
    assert load_checkpoint(run / "last")[1]["step"] == 2
    assert main.main(["export-vocoder", str(run), str(tmp_path / "out")]) == 0
    model = load_nsf(tmp_path / "out")
    assert any(float(c.weight.abs().sum()) > 0 for c in model.source_convs)  # the branch has learnt something
