"""Fine-tuning the one-step student on one new singer (`main.py voice add`): a voice from a folder of recordings.

A d-vector alone gives a zero-shot voice that is only roughly the singer's; a few hundred steps of
reconstruction on their own recordings make the decoder draw *their* timbre. The student is trained
exactly as it is used: one evaluation at sigma_max from the frame-indexed noise of models.noise (the
noise VoiceModel.decode draws), conditioned on the voice's mean d-vector, so the loss measures what a
conversion will produce. Its content input comes from the timbre-perturbed copy (`content_pert`) so
the decoder must take the timbre from the d-vector, not copy it out of the content features.

The other voices of the base model are kept (their d-vectors are unchanged; the shared network moves
a little). A few utterances are held out to report the loss before and after, measured on the weights
as they will be stored (float16 when the model is saved half).
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from models.consistency import ConsistencyDecoder
from models.dataset import FeatureDataset, Utterance, collate, unit
from models.device import pick_device
from models.edm import mel_to_unit
from models.errors import ComoliveError
from models.noise import frame_noise
from models.voice_model import VoiceModel
from training.voice_defaults import DECODER_STEPS

# meta keys VoiceModel.save writes itself; a base model's copies of them must not shadow the new values
_SAVE_KEYS = ("format", "version", "config", "voices")


@dataclass
class FinetuneConfig:
    steps: int = DECODER_STEPS
    batch_size: int = 8
    segment_frames: int = 128
    lr: float = 1e-4
    lr_min: float = 1e-5
    grad_clip: float = 1.0
    threads: int = 2
    loss: str = "l1"            # "l1" or "mse", in the decoder's [-1, 1] unit space
    heldout_every: int = 10     # one utterance in ten is held out...
    heldout_min_utts: int = 5   # ...when there are at least this many
    seed: int = 0               # crops
    noise_seed: int = 0         # the sampler noise (VoiceModel.decode's `seed`)


def heldout_indices(n: int, every: int = 10, min_utts: int = 5) -> list[int]:
    """Evenly spread held-out utterances: one in `every` (at least one) when there are `min_utts` or more."""
    if n < max(2, min_utts):
        return []
    k = max(1, n // every)
    return sorted({int((i + 0.5) * n / k) for i in range(k)})


def lr_at(step: int, cfg: FinetuneConfig) -> float:
    """Cosine from lr to lr_min over the run."""
    p = min(1.0, step / max(1, cfg.steps - 1))
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * p))


def one_step(dec: ConsistencyDecoder, batch: dict[str, torch.Tensor], offsets: list[int], seed: int) -> torch.Tensor:
    """The student's one-step sample in unit space [B, M, T], as VoiceModel.decode draws it, with gradients.

    Item i's noise is that of absolute frames offsets[i].. of its utterance."""
    cfg = dec.cfg
    t = batch["mel"].shape[2]
    z = np.stack([frame_noise(seed, 0, o, t, cfg.n_mels) for o in offsets])
    x = torch.from_numpy(z).to(batch["mel"].device) * cfg.sigma_max
    sigma = torch.full((x.shape[0],), cfg.sigma_max, device=x.device)
    return dec.denoise(x, sigma, dec.encode_condition(batch))


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Mean L1 (or squared) error over real frames; the target is clamped to [-1, 1] as decoding clamps."""
    diff = pred - target.clamp(-1.0, 1.0)
    err = diff.abs() if kind == "l1" else diff**2
    m = mask.unsqueeze(1).expand_as(err)
    return (err * m).sum() / m.sum().clamp(min=1)


class _Items:
    """Training crops / whole held-out utterances of one voice, as decoder batches with their noise offsets."""

    def __init__(self, data: FeatureDataset, utts: list[Utterance], speaker: np.ndarray, device: torch.device):
        self.data, self.utts, self.speaker, self.device = data, utts, speaker, device

    def _to(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in collate(items).items()}

    def crops(self, rng: random.Random, size: int, length: int) -> tuple[dict[str, torch.Tensor], list[int]]:
        items, offsets = [], []
        for _ in range(size):
            u = self.utts[rng.randrange(len(self.utts))]
            start = rng.randrange(max(1, u.frames - length + 1))
            items.append(self.data.item(u, u, start, length, speaker=self.speaker, perturbed=True))
            offsets.append(start)
        return self._to(items), offsets

    def whole(self, u: Utterance) -> dict[str, torch.Tensor]:
        return self._to([self.data.item(u, u, 0, u.frames, speaker=self.speaker, perturbed=True)])


@torch.no_grad()
def heldout_loss(dec: ConsistencyDecoder, items: _Items, cfg: FinetuneConfig) -> float | None:
    """Mean loss over the held-out utterances, each decoded whole from frame 0 (None without any)."""
    if not items.utts:
        return None
    was_training = dec.training
    dec.eval()
    losses = []
    for u in items.utts:
        batch = items.whole(u)
        pred = one_step(dec, batch, [0], cfg.noise_seed)
        losses.append(masked_loss(pred, mel_to_unit(batch["mel"], dec.cfg), batch["mask"], cfg.loss).item())
    dec.train(was_training)
    return float(np.mean(losses))


def _round_half(dec: torch.nn.Module) -> None:
    """Weights as float16 storage will give them back."""
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(p.half().float())


def _load_voice(feats_dir, name: str, cfg) -> tuple[FeatureDataset, list[Utterance], np.ndarray]:
    data = FeatureDataset(feats_dir, "train", parallel_prob=0.0, pert_prob=1.0)
    if name not in data.voices:
        raise ComoliveError(f"{feats_dir}: no voice '{name}' in the feature cache")
    utts = [u for u in data.utts if u.voice == name]
    dim = utts[0].content.shape[1]
    if dim != cfg.content_dim:
        raise ComoliveError(f"{feats_dir}: content features have {dim} dimensions, the model expects "
                            f"{cfg.content_dim} (features made with another content encoder)")
    return data, utts, unit(data.voices[name])


def _train(dec: ConsistencyDecoder, train: _Items, cfg: FinetuneConfig, name: str, progress: bool,
           on_step=None) -> list[float]:
    """The optimisation loop; returns the training loss of every step. on_step(done, total) after each step
    (the panel's progress)."""
    opt = torch.optim.AdamW(dec.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    rng = random.Random(cfg.seed)
    losses = []
    dec.train()
    bar = tqdm(total=cfg.steps, desc=f"fine-tune {name}", disable=not progress, dynamic_ncols=True)
    try:
        for step in range(cfg.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            batch, offsets = train.crops(rng, cfg.batch_size, cfg.segment_frames)
            pred = one_step(dec, batch, offsets, cfg.noise_seed)
            loss = masked_loss(pred, mel_to_unit(batch["mel"], dec.cfg), batch["mask"], cfg.loss)
            if not torch.isfinite(loss):
                raise ComoliveError(f"fine-tuning diverged at step {step} (loss {loss.item()})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(dec.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if on_step is not None:
                on_step(step + 1, cfg.steps)
    finally:
        bar.close()
    dec.eval()
    return losses


def finetune_voice(base: VoiceModel, feats_dir, name: str, cfg: FinetuneConfig | None = None,
                   progress: bool = True, device: str | None = None, half: bool = True,
                   base_label: str = "", on_step=None) -> tuple[VoiceModel, dict]:
    """Base model + the feature cache of one singer (voice `name`) -> (new VoiceModel, statistics).

    The new model holds the fine-tuned student only (the teacher, if any, was not adapted), the base's
    voices plus `name` -> its mean d-vector, and the run's provenance in meta["finetuned"]."""
    cfg = cfg or FinetuneConfig()
    if base.student is None:
        raise ComoliveError("the base model has no one-step student decoder to fine-tune (distil it first)")
    if cfg.loss not in ("l1", "mse"):
        raise ComoliveError(f"unknown fine-tuning loss {cfg.loss!r} (l1 or mse)")
    dev = pick_device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    try:
        data, utts, speaker = _load_voice(feats_dir, name, base.cfg)
        held = set(heldout_indices(len(utts), cfg.heldout_every, cfg.heldout_min_utts))
        train = _Items(data, [u for i, u in enumerate(utts) if i not in held], speaker, dev)
        val = _Items(data, [u for i, u in enumerate(utts) if i in held], speaker, dev)
        dec = copy.deepcopy(base.student).float().to(dev).requires_grad_(True)
        before = heldout_loss(dec, val, cfg)
        t0 = time.perf_counter()
        losses = _train(dec, train, cfg, name, progress, on_step)
        step_s = (time.perf_counter() - t0) / max(1, cfg.steps)
        if half:
            _round_half(dec)
        after = heldout_loss(dec, val, cfg)
    finally:
        torch.set_num_threads(threads)
    dec = dec.requires_grad_(False).cpu()
    stats = _stats(cfg, utts, len(held), before, after, losses, step_s, base.cfg.frame_rate)
    return _new_model(base, dec, name, speaker, stats, base_label), stats


def _stats(cfg: FinetuneConfig, utts: list[Utterance], n_held: int, before, after, losses: list[float],
           step_s: float, frame_rate: float) -> dict:
    tail = losses[-max(1, len(losses) // 10):]
    return {"steps": cfg.steps, "utterances": len(utts), "heldout_utterances": n_held,
            "seconds": round(sum(u.frames for u in utts) / frame_rate, 2),
            "loss_before": before, "loss_after": after,
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": float(np.mean(tail)) if losses else None,
            "seconds_per_step": round(step_s, 4), "config": asdict(cfg)}


def _new_model(base: VoiceModel, dec: ConsistencyDecoder, name: str, speaker: np.ndarray, stats: dict,
               base_label: str) -> VoiceModel:
    meta = {k: v for k, v in base.meta.items() if k not in _SAVE_KEYS}
    record = {"voice": name, "base": base_label or "unknown", **{k: v for k, v in stats.items() if k != "config"},
              "lr": stats["config"]["lr"], "loss": stats["config"]["loss"]}
    meta["finetuned"] = [*meta.get("finetuned", []), record]
    meta["kind"] = "student"
    meta["default_voice"] = name
    voices = {**base.voices, name: speaker.astype(np.float32)}
    return VoiceModel(base.cfg, voices, student=dec, teacher=None, meta=meta)
