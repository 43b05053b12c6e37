"""Fine-tuning the NSF HiFi-GAN (models/nsf_hifigan.py): `main.py train-vocoder FEATS... RUN --config configs/vocoder_nsf.toml`.

Data (training/vocoder_train.load_clips): feature folders written by `main.py preprocess` (each utterance's
audio at the model rate, its log-mel and its f0 from the pitch extractor that also runs at conversion
time; one utterance in `val_every` kept for the held-out loss) and corpus folders (renditions with their
exact f0; the corpus's own held-out split gives the held-out loss). Evaluation sets are never read here.

Start: the V1 universal weights, the source convolutions at zero (the V1 itself). Only the stages from
`inject_from` on, conv_post and the source convolutions train; the V1's first stage stays as shipped.
Loss: L1 between log-mels of output and recording (full band) plus the multi-resolution STFT distance.
So that pitch comes from the source and not from the mel's harmonics, which the decoder draws loosely,
some inputs have their harmonics blurred: a Gaussian along the mel axis of random width (`blur_prob`).

The run folder holds config.toml, log.csv, last.safetensors/.json (trainable weights, optimizer, step:
`--resume`) and vocoder.safetensors/.json (what `export-vocoder` packs).
"""
from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint, load_into, load_optimizer_tensors, restore_rng, save_checkpoint
from models.config import read_config_toml
from models.errors import ComoliveError
from models.hifigan import load_universal_hifigan
from models.mel import MelAnalyzer, MelConfig
from models.nsf_hifigan import NSFConfig, NSFHiFiGAN, nsf_meta
from training.vocoder_train import FeatureClip, MultiResSTFTLoss, VocoderTrainingRun, _toml, load_clips


@dataclass
class NSFTrainConfig:
    steps: int = 1500
    batch_size: int = 4
    segment_frames: int = 32
    context_frames: int = 8  # mel frames fed on each side of the segment (the loss sees the segment only)
    lr: float = 1e-4
    lr_min: float = 1e-5
    source_lr_scale: float = 50.0  # the source convolutions start at zero and have far to go
    grad_clip: float = 1.0
    blur_prob: float = 0.7
    gta_prob: float = 0.0  # share of windows fed the decoder's mel of the utterance (`main.py gta-mels`) when it has one
    blur_max_bins: float = 2.5
    mel_weight: float = 1.0
    fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512, 256, 128])
    val_every: int = 40
    checkpoint_every: int = 100
    validate_every: int = 250
    log_every: int = 10
    threads: int = 2
    seed: int = 0


def load_nsf_config(path: str | Path | None) -> tuple[NSFConfig, NSFTrainConfig]:
    if path is None:
        return NSFConfig(), NSFTrainConfig()
    raw = read_config_toml(path, {"model": NSFConfig, "train": NSFTrainConfig})
    return NSFConfig(**raw.get("model", {})), NSFTrainConfig(**raw.get("train", {}))


class NSFBatcher:
    """Random windows: mel/f0 of context + segment + context frames, audio of the segment."""

    def __init__(self, clips: list[FeatureClip], segment: int, context: int, hop: int, gta_prob: float = 0.0):
        self.gta_prob = gta_prob
        self.clips = [c for c in clips if c.frames >= segment + 2 * context + 1]
        if not self.clips:
            raise ComoliveError(f"no utterance is long enough for segments of {segment}+2*{context} frames")
        self.weights = [c.frames for c in self.clips]
        self.segment, self.context, self.hop = segment, context, hop

    def batch(self, rng: random.Random, size: int) -> dict:
        seg, ctx, hop = self.segment, self.context, self.hop
        mels, f0s, auds, gtas = [], [], [], []
        for clip in rng.choices(self.clips, weights=self.weights, k=size):
            a = rng.randrange(ctx, clip.frames - seg - ctx + 1)
            gta = getattr(clip, "gta", None) is not None and rng.random() < self.gta_prob
            gtas.append(gta)
            mels.append((clip.gta if gta else clip.mel)[:, a - ctx:a + seg + ctx])
            f0s.append(clip.f0[a - ctx:a + seg + ctx])
            auds.append(clip.audio[a * hop:(a + seg) * hop])
        return {"mel": torch.stack(mels), "f0": torch.stack(f0s), "audio": torch.stack(auds),
                "gta": torch.tensor(gtas),
                "noise_offsets": np.array([rng.randrange(1 << 40) for _ in range(size)], np.int64),
                "phase0": torch.tensor([rng.uniform(0, 2 * math.pi) for _ in range(size)], dtype=torch.float64)}


def blur_mel(mel: torch.Tensor, sigma_bins: torch.Tensor) -> torch.Tensor:
    """Gaussian blur along the mel axis in the linear domain, per item ([B, M, T], sigma [B]; 0 = none)."""
    m = mel.shape[1]
    idx = torch.arange(m, dtype=mel.dtype)
    d2 = (idx[:, None] - idx[None, :]) ** 2
    s = sigma_bins.clamp_min(1e-3).to(mel.dtype)[:, None, None]
    k = torch.exp(-d2[None] / (2 * s ** 2))
    k = k / k.sum(-1, keepdim=True)  # [B, M_out, M_in]
    return torch.log(torch.clamp(k @ torch.exp(mel), min=1e-5))


class NSFTrainingRun(VocoderTrainingRun):
    """The hn run's loop (lr schedule, clipping, log, checkpoints) around the NSF model and its data."""

    desc = "nsf vocoder"

    def __init__(self, feature_dirs: list[str | Path], run_dir: str | Path, model_cfg: NSFConfig,
                 cfg: NSFTrainConfig, resume: bool = False, progress: bool = True, init: str | Path | None = None):
        self._open_run(",".join(map(str, feature_dirs)), run_dir, cfg, resume, progress)
        start = self.run_dir / "last" if resume else init  # its model configuration wins over the command line's
        if start is not None:
            model_cfg = NSFConfig.from_dict(load_checkpoint(start)[1]["config"])
        self.model_cfg = model_cfg
        self.model = NSFHiFiGAN(load_universal_hifigan(), model_cfg).train()
        names = set(self.model.trainable_names())
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in names)
        self.params = [p for n, p in self.model.named_parameters() if n in names]
        source = [p for n, p in self.model.named_parameters() if n in names and n.startswith("source_convs.")]
        rest = [p for n, p in self.model.named_parameters() if n in names and not n.startswith("source_convs.")]
        self.opt = torch.optim.AdamW([{"params": rest}, {"params": source, "lr_scale": cfg.source_lr_scale}],
                                     lr=cfg.lr, betas=(0.8, 0.99), weight_decay=0.0)
        if start is not None:  # a saved NSF vocoder's fine-tuned tensors over the V1
            tensors, meta = self._load_trainable(start)
        if resume:
            load_optimizer_tensors(self.opt, tensors)
            self.step = int(meta["step"])
            restore_rng(tensors, self.rng, meta)
        train, val = load_clips(self.corpus, MelAnalyzer(), cfg.val_every)
        hop = self.model.hop_length
        self.train = NSFBatcher(train, cfg.segment_frames, cfg.context_frames, hop, cfg.gta_prob)
        self.val = NSFBatcher(val, cfg.segment_frames, cfg.context_frames, hop) if val else None
        self.loss_fn = MultiResSTFTLoss(cfg.fft_sizes)
        self.mel_fn = MelAnalyzer(MelConfig(fmax=None))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(
            _toml({"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(cfg)}))

    def _load_trainable(self, stem: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
        """A checkpoint's tensors over the current model (it holds the trainable ones only); returns it whole."""
        tensors, meta = load_checkpoint(stem)
        if meta.get("kind") != "nsf_hifigan":
            raise ComoliveError(f"{stem}: not an NSF vocoder checkpoint")
        full = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        full.update({k: v.float() for k, v in tensors.items() if not k.startswith(("opt.", "rng."))})
        load_into(self.model, full, stem)
        return tensors, meta

    def trainable(self) -> list[torch.Tensor]:
        return self.params

    def loss(self, batch: dict) -> torch.Tensor:
        c, hop = self.cfg, self.model.hop_length
        mel = batch["mel"]
        if self.model.training and c.blur_prob > 0:
            sig = torch.tensor([self.rng.uniform(0.5, c.blur_max_bins) if self.rng.random() < c.blur_prob else 0.0
                                for _ in range(mel.shape[0])])
            sig = torch.where(batch["gta"], 0.0, sig)  # the decoder's mel is loose enough as it is
            mel = torch.where((sig > 0)[:, None, None], blur_mel(mel, sig), mel)
        y = self.model(mel, batch["f0"], batch["phase0"], batch["noise_offsets"])
        y = y[:, c.context_frames * hop:(c.context_frames + c.segment_frames) * hop]
        ref = batch["audio"]
        mel_l1 = (self.mel_fn(y) - self.mel_fn(ref)).abs().mean()
        return self.loss_fn(y, ref) + c.mel_weight * mel_l1

    def meta(self) -> dict:
        return nsf_meta(self.model_cfg, step=self.step, data=self.corpus, train=dataclasses.asdict(self.cfg))

    def weights(self) -> dict[str, torch.Tensor]:
        state = self.model.state_dict()
        return {k: state[k] for k in self.model.trainable_names()}


def export_nsf(run: str | Path, out: str | Path, half: bool = True) -> Path:
    """A run folder (or checkpoint stem) -> OUT.safetensors + OUT.json: the trainable tensors (float16 by default)."""
    from models.nsf_hifigan import load_nsf

    src = Path(run)
    stem = src / "vocoder" if src.is_dir() else src
    load_nsf(stem)  # refuse to export what the loader would reject
    tensors, meta = load_checkpoint(stem)
    weights = {k: (v.half() if half else v) for k, v in tensors.items() if not k.startswith("opt.")}
    save_checkpoint(out, weights, {**meta, "dtype": "float16" if half else "float32"})
    return Path(out)
