"""Training loops: the EDM teacher (`main.py train`) and consistency distillation (`main.py distill`).

Both loops share one skeleton: a run folder with the resolved config (config.toml), a CSV log
(log.csv: step, loss, lr, steps/s), atomic safetensors checkpoints (last.* and step_N.*) that
hold weights, optimizer moments and the step counter, `--resume` from last.*, held-out
validation loss and validation audio (val/step_N.wav) every `validate_every` steps.
"""
from __future__ import annotations

import csv
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.checkpoint import (load_checkpoint, load_into, load_optimizer_tensors, optimizer_tensors,
                               python_rng_state, restore_rng, rng_tensors, save_checkpoint, trim_log)
from models.config import RunConfig
from models.consistency import ConsistencyDistiller
from models.content_units import fit_units, sample_frames
from models.dataset import FeatureDataset, MixedDataset, collate
from models.edm import EDMDecoder, mel_to_unit
from models.progressive import ProgressiveDecoder, ProgressiveDistiller, student_meta
from models.errors import ComoliveError
from models.voice_model import VoiceModel

UNIT_FRAMES_PER_ITEM = 40  # frames of each utterance (and its perturbed copy) the content units are fitted on


class TrainingRun:
    """Shared loop skeleton; subclasses supply the module being trained and its loss."""

    kind = "teacher"

    def __init__(self, feats_dir: str | Path, run_dir: str | Path, cfg: RunConfig, resume: bool = False,
                 progress: bool = True, init: str | Path | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        tc = cfg.train
        torch.set_num_threads(max(1, tc.threads))
        torch.manual_seed(tc.seed)
        self.rng = random.Random(tc.seed)
        aug = (tc.aug_shift_prob, tc.aug_shift_max)
        dirs = [d for d in str(feats_dir).split(",") if d]  # several caches: mixed by tc.data_weights
        sets = [FeatureDataset(d, "train", tc.parallel_prob, aug, tc.exclude_voices, tc.utt_speaker_prob,
                               tc.timbre_prob, tc.pert_prob, tc.retrieval_prob) for d in dirs]
        for d, ds in zip(dirs, sets):
            differ = {k: (v, ds.feature_settings[k]) for k, v in cfg.model.feature_settings().items()
                      if k in ds.feature_settings and ds.feature_settings[k] != v}
            if differ:
                k, (want, got) = next(iter(differ.items()))
                raise ComoliveError(f"{d}: its features were made with {k} = {got!r}, this run's [model] has "
                                    f"{want!r} (preprocess again, or set {k} in the config)")
        if len(sets) > 1:
            weights = tc.data_weights or [1.0] * len(sets)
            if len(weights) != len(sets):
                raise ComoliveError(f"data_weights has {len(weights)} values for {len(sets)} feature folders")
            self.data = MixedDataset(sets, weights)
        else:
            self.data = sets[0]
        try:
            self.val = FeatureDataset(dirs[0], "heldout", tc.parallel_prob, exclude_voices=tc.exclude_voices)
        except ComoliveError:
            self.val = None
        self.step = 0
        last = self.run_dir / "last"
        if (self.run_dir / "last.json").exists() and not resume:
            raise ComoliveError(f"{self.run_dir}: already holds a run (use --resume to continue it, or another folder)")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.build()
        if init is not None and not resume:
            self.warm_start(init)
        if not resume:
            self.fit_content_units(sets)
        self.opt = self.new_optimizer()
        if resume:
            if not (self.run_dir / "last.json").exists():
                raise ComoliveError(f"{self.run_dir}: nothing to resume (no last checkpoint)")
            tensors, meta = load_checkpoint(last)
            self.restore(tensors)
            load_optimizer_tensors(self.opt, tensors)
            self.step = int(meta["step"])
            self.rng.seed(tc.seed + self.step)  # checkpoints without a random state
            restore_rng(tensors, self.rng, meta)
        (self.run_dir / "config.toml").write_text(cfg.to_toml())

    def new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.trainable().parameters(), lr=self.cfg.train.lr, betas=(0.9, 0.99),
                                 weight_decay=0.0)

    def warm_start(self, stem: str | Path) -> None:
        """Start from the network of a saved voice model (its teacher, else its student: same architecture,
        near-identical scalings), e.g. to retrain the shipped decoder on more voices in fewer steps."""
        vm = VoiceModel.load(stem)
        if {**vm.cfg.to_dict(), "content_units": 0} != {**self.cfg.model.to_dict(), "content_units": 0}:
            raise ComoliveError(f"{stem}: its [model] config differs from this run's; cannot start from it")
        src = vm.teacher if vm.teacher is not None else vm.student
        tensors = {k: v.float() for k, v in src.state_dict().items()}
        own = self.trainable().state_dict()
        if vm.cfg.content_units != self.cfg.model.content_units:  # units are fitted anew (fit_content_units)
            tensors = {k: v for k, v in tensors.items() if not k.endswith("cond_encoder.units")}
            tensors.update({k: torch.zeros_like(v) for k, v in own.items() if k.endswith("cond_encoder.units")})
        load_into(self.trainable(), tensors, stem)

    def fit_content_units(self, sets: list[FeatureDataset]) -> None:
        """k-means centres for a model that snaps content to units and has none yet (a fresh run, or one
        started from a model without them): fitted on the training content, original and perturbed."""
        enc = getattr(getattr(self.trainable(), "net", None), "cond_encoder", None)
        if enc is None or enc.units is None or bool(enc.units.abs().sum() > 0):
            return
        contents = [c for d in sets for u in d.utts for c in (u.content, u.content_pert) if c is not None]
        frames = sample_frames(contents, UNIT_FRAMES_PER_ITEM, self.cfg.train.seed)
        print(f"fitting {len(enc.units)} content units on {len(frames)} frames", flush=True)
        enc.units.copy_(torch.from_numpy(fit_units(frames, len(enc.units), self.cfg.train.seed)))

    # --- hooks ---
    def build(self) -> None:
        self.model = EDMDecoder(self.cfg.model)

    def trainable(self) -> torch.nn.Module:
        return self.model

    def restore(self, tensors: dict[str, torch.Tensor]) -> None:
        load_into(self.model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, self.run_dir)

    def weights(self) -> dict[str, torch.Tensor]:
        return {"model." + k: v for k, v in self.model.state_dict().items()}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        drop = self.cfg.train.speaker_drop
        if drop > 0:  # some items with no speaker: the unconditional teacher speaker guidance needs
            keep = (torch.rand(len(batch["speaker"]), 1, device=batch["speaker"].device) >= drop).float()
            batch = {**batch, "speaker": batch["speaker"] * keep}
        return self.model.loss(batch["mel"], batch, batch["mask"])

    def after_step(self) -> None:
        pass

    def total_steps(self) -> int:
        return self.cfg.train.steps

    def voice_model(self) -> VoiceModel:
        return VoiceModel(self.cfg.model, self.data.voices, teacher=self.model, meta=self.provenance())

    def model_name(self) -> str:
        """The voice model file the run writes in its folder (besides its checkpoints)."""
        return f"{self.kind}_model"

    def sample_steps(self) -> int:
        return 10

    # --- loop ---
    def provenance(self) -> dict:
        return {"trained_steps": self.step, "kind": self.kind, "voices_trained": self.data.voice_names}

    def lr_at(self, step: int) -> float:
        tc = self.cfg.train
        warm = min(200, self.total_steps() // 10)
        if step < warm:
            return tc.lr * (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, self.total_steps() - warm))
        return tc.lr_min + 0.5 * (tc.lr - tc.lr_min) * (1 + math.cos(math.pi * p))

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch["mel"] = mel_to_unit(batch["mel"], self.cfg.model)
        return batch

    def save(self) -> None:
        meta = {"step": self.step, "kind": self.kind, "config": self.cfg.model.to_dict(),
                "rng_python": python_rng_state(self.rng)}
        tensors = {**self.weights(), **optimizer_tensors(self.opt), **rng_tensors()}
        save_checkpoint(self.run_dir / "last", tensors, meta)
        self.voice_model().save(self.run_dir / self.model_name())

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.val is None:
            return None
        rng = random.Random(1234)
        state = torch.get_rng_state()
        torch.manual_seed(1234)
        self.trainable().eval()
        losses = [self.loss(self.prepare(self.val.batch(rng, 8, self.cfg.train.segment_frames))).item() for _ in range(4)]
        self.trainable().train()
        torch.set_rng_state(state)
        if self.cfg.model.vocoder == "hifigan-universal" and self.cfg.model.n_mels == 80:
            self.write_validation_audio()
        return float(np.mean(losses))

    @torch.no_grad()
    def write_validation_audio(self) -> None:
        """Convert one held-out parallel pair (first utterance, its first peer) and write the wav."""
        from models.audio_io import save_audio
        from models.hifigan import load_universal_hifigan

        src, tgt = self.val.pair(random.Random(0), target=0)
        batch = collate([self.val.item(src, tgt, 0, min(src.frames, tgt.frames, 600))])
        vm = self.voice_model()
        sampler = "teacher" if self.kind == "teacher" else "student"
        mel = vm.decode(batch, steps=self.sample_steps(), sampler=sampler)
        if not hasattr(self, "_vocoder"):
            self._vocoder = load_universal_hifigan("cpu")
        wav = self._vocoder(mel).squeeze().numpy()
        (self.run_dir / "val").mkdir(exist_ok=True)
        save_audio(self.run_dir / "val" / f"{self.kind}_step{self.step:06d}.wav", wav, self.cfg.model.sample_rate)

    def run(self, max_steps: int | None = None) -> Path:
        tc = self.cfg.train
        total = self.total_steps() if max_steps is None else min(self.total_steps(), max_steps)
        log_path = self.run_dir / "log.csv"
        trim_log(log_path, self.step)
        new_log = not log_path.exists()
        log = open(log_path, "a", newline="")
        writer = csv.writer(log)
        if new_log:
            writer.writerow(["step", "kind", "loss", "val_loss", "lr", "steps_per_s", "time"])
        bar = tqdm(total=total, initial=self.step, desc=f"{self.kind}", disable=not self.progress, dynamic_ncols=True)
        t0, window, ema = time.time(), [], None
        self.trainable().train()
        try:
            while self.step < total:
                lr = self.lr_at(self.step)
                for g in self.opt.param_groups:
                    g["lr"] = lr
                batch = self.prepare(self.data.batch(self.rng, tc.batch_size, tc.segment_frames))
                loss = self.loss(batch)
                if not torch.isfinite(loss):
                    raise ComoliveError(f"training diverged at step {self.step} (loss {loss.item()}); lower the lr")
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.trainable().parameters(), tc.grad_clip)
                self.opt.step()
                self.after_step()
                self.step += 1
                ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
                window.append(time.time())
                window = window[-50:]
                sps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
                bar.update(1)
                bar.set_postfix(loss=f"{ema:.4f}", sps=f"{sps:.1f}")
                val = None
                if self.step % tc.validate_every == 0 or self.step == total:
                    val = self.validate()
                    if val is not None:
                        bar.write(f"step {self.step}: held-out loss {val:.4f}")
                if self.step % tc.log_every == 0 or val is not None:
                    writer.writerow([self.step, self.kind, f"{ema:.5f}", "" if val is None else f"{val:.5f}",
                                     f"{lr:.2e}", f"{sps:.2f}", f"{time.time() - t0:.1f}"])
                    log.flush()
                if self.step % tc.checkpoint_every == 0 or self.step == total:
                    self.save()
        finally:
            bar.close()
            log.close()
        self.save()
        return self.run_dir / self.model_name()


class DistillationRun(TrainingRun):
    """Consistency distillation of a trained teacher into a one-step student."""

    kind = "student"

    def __init__(self, feats_dir, run_dir, cfg: RunConfig, teacher: str | Path, resume: bool = False,
                 progress: bool = True):
        vm = VoiceModel.load(teacher)
        if vm.teacher is None:
            raise ComoliveError(f"{teacher}: holds no teacher decoder to distil")
        self.teacher = vm.teacher
        cfg.model = vm.cfg
        super().__init__(feats_dir, run_dir, cfg, resume, progress)

    def build(self) -> None:
        tc = self.cfg.train
        self.distiller = ConsistencyDistiller(self.teacher, tc.distill_n, tc.ema_decay, tc.teacher_solver,
                                              tc.speaker_guidance)
        self.model = self.distiller.student

    def restore(self, tensors):
        super().restore(tensors)
        load_into(self.distiller.target, {k[7:]: v for k, v in tensors.items() if k.startswith("target.")}, self.run_dir)

    def weights(self):
        return {**super().weights(), **{"target." + k: v for k, v in self.distiller.target.state_dict().items()}}

    def loss(self, batch):
        return self.distiller.loss(batch["mel"], batch, batch["mask"])

    def after_step(self) -> None:
        self.distiller.update_target()

    def total_steps(self) -> int:
        return self.cfg.train.distill_steps

    def sample_steps(self) -> int:
        return 1

    def voice_model(self) -> VoiceModel:
        return VoiceModel(self.cfg.model, self.data.voices, student=self.distiller.target, teacher=self.teacher,
                          meta=self.provenance())


class ProgressiveRun(TrainingRun):
    """Progressive distillation (models/progressive.py): rounds of `progressive_round_steps` steps, each halving
    the steps, from the EDM teacher's `progressive_base_steps` Heun steps down to 1. Every round's student is
    written as RUN/progressive_<k>step_model (a voice model whose student takes k steps)."""

    kind = "progressive"

    def __init__(self, feats_dir, run_dir, cfg: RunConfig, teacher: str | Path, resume: bool = False,
                 progress: bool = True):
        vm = VoiceModel.load(teacher)
        if vm.decoder_or_none("teacher") is None:
            raise ComoliveError(f"{teacher}: holds no teacher decoder to distil")
        if cfg.train.speaker_guidance:
            raise ComoliveError("speaker_guidance is distilled by consistency distillation only (distill "
                                "--method consistency); progressive distillation would leave it out")
        base = cfg.train.progressive_base_steps
        if base < 2 or base & (base - 1):
            raise ComoliveError(f"progressive_base_steps must be a power of two of at least 2, got {base}")
        self.teacher, cfg.model = vm.teacher, vm.cfg
        self.rounds = base.bit_length() - 1  # base -> base/2 -> ... -> 1
        super().__init__(feats_dir, run_dir, cfg, resume, progress)

    def _start_round(self, r: int, teacher: EDMDecoder) -> None:
        base = self.cfg.train.progressive_base_steps
        self.round = r
        self.distiller = ProgressiveDistiller(teacher, base, base >> r)
        self.model = self.distiller.student

    def build(self) -> None:
        self._start_round(0, self.teacher)

    def restore(self, tensors):
        r = int(tensors["progress.round"].item())
        if r > 0:  # the round's teacher is the previous round's student
            base = self.cfg.train.progressive_base_steps
            prev = ProgressiveDecoder(self.cfg.model, base, base >> r)
            load_into(prev, {k[8:]: v for k, v in tensors.items() if k.startswith("teacher.")}, self.run_dir)
            self._start_round(r, prev)
            self.opt = self.new_optimizer()
        super().restore(tensors)

    def weights(self):
        w = {**super().weights(), "progress.round": torch.tensor(self.round)}
        if self.round > 0:
            w.update({"teacher." + k: v for k, v in self.distiller.teacher.state_dict().items()})
        return w

    def loss(self, batch):
        return self.distiller.loss(batch["mel"], batch, batch["mask"])

    def lr_at(self, step: int) -> float:
        """Warm-up and cosine within each round."""
        tc, n = self.cfg.train, self.cfg.train.progressive_round_steps
        p, warm = step % n, max(1, n // 10)
        if p < warm:
            return tc.lr * (p + 1) / warm
        return tc.lr_min + 0.5 * (tc.lr - tc.lr_min) * (1 + math.cos(math.pi * (p - warm) / max(1, n - warm)))

    def after_step(self) -> None:
        n = self.cfg.train.progressive_round_steps
        if (self.step + 1) % n == 0 and self.round + 1 < self.rounds:  # this round ends: its student teaches
            self.voice_model().save(self.run_dir / self.model_name())
            self._start_round(self.round + 1, self.model.eval().requires_grad_(False))
            self.opt = self.new_optimizer()

    def total_steps(self) -> int:
        return self.rounds * self.cfg.train.progressive_round_steps

    def sample_steps(self) -> int:
        return self.model.steps

    def model_name(self) -> str:
        return f"progressive_{self.model.steps}step_model"

    def voice_model(self) -> VoiceModel:
        meta = {**self.provenance(), **student_meta(self.model)}
        return VoiceModel(self.cfg.model, self.data.voices, student=self.model, meta=meta)
