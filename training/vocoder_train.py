"""Training the "hn" vocoder on real audio: `main.py train-vocoder DATA RUN` and `main.py export-vocoder`.

Data: the synthetic corpus's train split (wav + exact f0 per rendition; training/corpus/build.py), or
comma-separated feature folders of `main.py preprocess` (audio, mel and extracted f0 per utterance, real
recordings and corpus alike; one utterance in 40 kept for the held-out loss).
Every rendition is loaded once; its log-mel (models/mel.py, what the vocoder will be fed) and its
f0 moved onto the mel frame grid (frame centres, engine/frames.py) are computed at load time.
A training example is `segment_frames` frames of audio plus `context_frames` of left context for
the network; the loss is a multi-resolution STFT distance (linear + log magnitude) between the
rendered and the real audio of the segment. The harmonic phase and the noise draw start at random
points, so the model cannot rely on either matching the recording.

The run folder holds config.toml (resolved), log.csv (step, loss, held-out loss, lr, steps/s),
last.safetensors/.json (weights, optimizer state, step: `--resume` continues from it; written
atomically) and vocoder.safetensors/.json (the model alone, loadable by HNVocoder).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.audio_io import load_audio
from models.config import read_config_toml
from models.checkpoint import (load_checkpoint, load_into, load_optimizer_tensors, optimizer_tensors,
                               python_rng_state, restore_rng, rng_tensors, save_checkpoint, trim_log)
from models.errors import ComoliveError
from models.hn_vocoder import HNConfig, HNVocoderModel, frame_inputs, save_config_meta
from models.mel import MelAnalyzer


@dataclass
class VocoderTrainConfig:
    steps: int = 2200
    batch_size: int = 8
    segment_frames: int = 64
    context_frames: int = 32  # left context the network sees before each segment (its receptive field)
    lr: float = 2e-3
    lr_min: float = 1e-4
    grad_clip: float = 2.0
    fft_sizes: list[int] = field(default_factory=lambda: [2048, 1024, 512, 256, 128])
    checkpoint_every: int = 250
    validate_every: int = 500
    log_every: int = 25
    threads: int = 1
    seed: int = 0


def load_config(path: str | Path | None) -> tuple[HNConfig, VocoderTrainConfig]:
    """[model] (HNConfig) and [train] (VocoderTrainConfig) sections of a TOML file; defaults when None."""
    if path is None:
        return HNConfig(), VocoderTrainConfig()
    raw = read_config_toml(path, {"model": HNConfig, "train": VocoderTrainConfig})
    return HNConfig(**raw.get("model", {})), VocoderTrainConfig(**raw.get("train", {}))


def _toml(sections: dict[str, dict]) -> str:
    def fmt(v):
        return json.dumps(v) if isinstance(v, str) else repr(v).lower() if isinstance(v, bool) else repr(v)

    lines = []
    for name, d in sections.items():
        lines += [f"[{name}]"] + [f"{k} = {fmt(v)}" for k, v in d.items()] + [""]
    return "\n".join(lines)


def f0_on_mel_grid(f0_starts: np.ndarray, n: int) -> np.ndarray:
    """Corpus f0 (frames centred at i*hop) -> n frames centred at i*hop + hop/2 (geometric mean, 0 if either is 0)."""
    a = f0_starts[:n]
    b = f0_starts[1:n + 1] if len(f0_starts) > n else np.append(f0_starts[1:n], 0.0)
    mid = np.where((a > 0) & (b > 0), np.sqrt(a * np.maximum(b, 1e-9)), 0.0)
    return np.pad(mid, (0, max(0, n - len(mid))))[:n].astype(np.float32)


class Clip:
    """One rendition in memory: audio [N], log-mel [M, T], f0 on the mel grid [T]."""

    def __init__(self, wav_path: Path, analyzer: MelAnalyzer):
        wav, _ = load_audio(wav_path, analyzer.sample_rate)
        self.path = wav_path
        self.audio = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        with torch.no_grad():
            self.mel = analyzer(self.audio[None])[0]
        f0_path = wav_path.with_suffix(".f0.npy")
        if not f0_path.exists():
            raise ComoliveError(f"{f0_path}: missing f0 ground truth for {wav_path.name}")
        self.f0 = torch.from_numpy(f0_on_mel_grid(np.load(f0_path).astype(np.float64), self.mel.shape[-1]))

    @property
    def frames(self) -> int:
        return self.mel.shape[-1]


def load_split(corpus: str | Path, split: str, analyzer: MelAnalyzer) -> list[Clip]:
    root = Path(corpus)
    if not root.is_dir():
        raise ComoliveError(f"{root}: corpus folder not found (build it with `main.py corpus {root}`)")
    wavs = sorted((root / split).glob("*/*.wav"))
    if not wavs:
        raise ComoliveError(f"{root}: no {split} renditions (expected {root}/{split}/<voice>/*.wav)")
    return [Clip(w, analyzer) for w in wavs]


def gta_path(npz: Path) -> Path:
    """Where `main.py gta-mels` keeps the decoder's mel for a preprocessed utterance (FEATS/<voice>/<utt>.gta.npy)."""
    return npz.with_name(npz.name[: -len(".npz")] + ".gta.npy")


class FeatureClip:
    """One preprocessed utterance in memory: audio [N], log-mel [80, T], f0 [T], and the decoder's mel for it
    when `main.py gta-mels` wrote one (training/gta_mels.py; else None)."""

    def __init__(self, npz: Path):
        with np.load(npz) as z:
            if "audio" not in z:
                raise ComoliveError(f"{npz}: no audio stored (preprocess again with this version)")
            self.audio = torch.from_numpy(z["audio"].astype(np.float32) / 32767.0)
            self.mel = torch.from_numpy(z["mel"].astype(np.float32))
            self.f0 = torch.from_numpy(z["f0"].astype(np.float32))
        gta = gta_path(npz)
        self.gta = torch.from_numpy(np.load(gta).astype(np.float32)) if gta.exists() else None
        self.frames = min(self.mel.shape[-1], len(self.f0), len(self.audio) // 256,
                          self.gta.shape[-1] if self.gta is not None else self.mel.shape[-1])


def load_feature_clips(dirs: list[str | Path], val_every: int) -> tuple[list[FeatureClip], list[FeatureClip]]:
    """Train utterances of every folder, one in `val_every` set aside for the held-out loss."""
    train, val = [], []
    for d in map(Path, dirs):
        try:
            index = json.loads((d / "index.json").read_text())
        except (OSError, ValueError):
            raise ComoliveError(f"{d}: not a feature folder (run `main.py preprocess DATASET {d}` first)") from None
        items = [u for u in index["utterances"] if u["split"] == "train"]
        for i, u in enumerate(items):
            (val if i % val_every == val_every // 2 else train).append(FeatureClip(d / u["path"]))
    if not train:
        raise ComoliveError("no training utterances in " + ", ".join(map(str, dirs)))
    return train, val


def load_clips(data: str | Path, analyzer: MelAnalyzer, val_every: int = 40) -> tuple[list, list]:
    """(train, held-out) clips of comma-separated folders: a corpus (its train and held-out splits, exact f0)
    or a feature folder of `preprocess` (one utterance in `val_every` held out)."""
    train, val = [], []
    for part in (p for p in str(data).split(",") if p):
        if (Path(part) / "index.json").exists():
            t, v = load_feature_clips([part], val_every)
        else:
            t = load_split(part, "train", analyzer)
            try:
                v = load_split(part, "heldout", analyzer)
            except ComoliveError:
                v = []
        train += t
        val += v
    return train, val


class MultiResSTFTLoss:
    """Mean over resolutions of L1(|S| - |Ŝ|) + L1(log|S| - log|Ŝ|), Hann windows, hop = n_fft / 4."""

    def __init__(self, fft_sizes: list[int]):
        self.sizes = list(fft_sizes)
        self.windows = {n: torch.hann_window(n) for n in self.sizes}

    def __call__(self, y: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        total = y.new_zeros(())
        for n in self.sizes:
            s = torch.stft(y, n, n // 4, window=self.windows[n], return_complex=True).abs()
            r = torch.stft(ref, n, n // 4, window=self.windows[n], return_complex=True).abs()
            total = total + (s - r).abs().mean() + (torch.log(s + 1e-5) - torch.log(r + 1e-5)).abs().mean()
        return total / len(self.sizes)


class Batcher:
    """Random (context + segment) windows from clips, sampled in proportion to their length."""

    def __init__(self, clips: list[Clip], segment: int, context: int, hop: int):
        self.clips = [c for c in clips if c.frames >= segment + context + 2]
        if not self.clips:
            raise ComoliveError(f"no clip is long enough for segments of {segment}+{context} frames")
        self.weights = [c.frames for c in self.clips]
        self.segment, self.context, self.hop = segment, context, hop

    def batch(self, rng: random.Random, size: int) -> dict:
        seg, ctx, hop = self.segment, self.context, self.hop
        mels, f0s, auds, firsts = [], [], [], []
        for clip in rng.choices(self.clips, weights=self.weights, k=size):
            a = rng.randrange(ctx, clip.frames - seg - 1)  # first frame of the segment
            mels.append(clip.mel[:, a - ctx:a + seg + 1])
            f0s.append(clip.f0[a - ctx:a + seg + 1])
            auds.append(clip.audio[a * hop - hop // 2:(a + seg) * hop + hop // 2])
            firsts.append(a)
        return {"mel": torch.stack(mels), "f0": torch.stack(f0s), "audio": torch.stack(auds),
                "noise_offsets": np.array([rng.randrange(1 << 40) for _ in range(size)], np.int64),
                "phase0": torch.tensor([rng.uniform(0, 2 * math.pi) for _ in range(size)], dtype=torch.float64)}


def render_batch(model: HNVocoderModel, batch: dict, context: int) -> torch.Tensor:
    """The network over context + segment + 1 frames; the synthesiser over the segment's samples only.

    Output [B, (segment + 1) * hop]: samples from the centre of the frame before the segment to the
    centre of its last frame plus half a hop (the span of segments a .. a+segment)."""
    f0 = batch["f0"]
    raw = model.net(frame_inputs(batch["mel"], f0))
    amps, noise = model.net.controls(raw, f0)
    k = context - 1  # frame a-1
    y, _ = model.synth.render(f0[:, k:], amps[:, k:], noise[:, k:], 0, batch["phase0"], batch["noise_offsets"])
    return y


class VocoderTrainingRun:
    """The loop: AdamW, warm-up + cosine lr, gradient clipping, periodic held-out loss and checkpoints."""

    desc = "hn vocoder"

    def __init__(self, corpus: str | Path, run_dir: str | Path, model_cfg: HNConfig, cfg: VocoderTrainConfig,
                 resume: bool = False, progress: bool = True, init: str | Path | None = None):
        self._open_run(str(Path(corpus)), run_dir, cfg, resume, progress)
        if resume:  # the run's own model config wins over the command line's
            _, meta = load_checkpoint(self.run_dir / "last")
            model_cfg = HNConfig.from_dict(meta["config"])
        if init is not None and not resume:  # start from a saved hn vocoder (its architecture wins)
            tensors, meta = load_checkpoint(init)
            if meta.get("kind") != "hn_vocoder":
                raise ComoliveError(f"{init}: not an hn vocoder checkpoint")
            model_cfg = HNConfig.from_dict(meta["config"])
        self.model_cfg = model_cfg
        self.model = HNVocoderModel(model_cfg)
        if init is not None and not resume:
            load_into(self.model, {k: v.float() for k, v in tensors.items() if not k.startswith("opt.")}, init)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
        if resume:
            tensors, meta = load_checkpoint(self.run_dir / "last")
            load_into(self.model, {k: v for k, v in tensors.items() if not k.startswith(("opt.", "rng."))},
                      self.run_dir / "last")
            load_optimizer_tensors(self.opt, tensors)
            self.step = int(meta["step"])
            self.rng = random.Random(cfg.seed * 1_000_003 + self.step)  # checkpoints without a random state
            restore_rng(tensors, self.rng, meta)
        train, val = load_clips(self.corpus, MelAnalyzer())
        self.train = Batcher(train, cfg.segment_frames, cfg.context_frames, model_cfg.hop_length)
        self.val = Batcher(val, cfg.segment_frames, cfg.context_frames, model_cfg.hop_length) if val else None
        self.loss_fn = MultiResSTFTLoss(cfg.fft_sizes)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.toml").write_text(
            _toml({"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(cfg)}))

    def _open_run(self, data: str, run_dir: str | Path, cfg, resume: bool, progress: bool) -> None:
        """What every vocoder run does first: check the run folder against --resume, threads, seeds."""
        self.corpus, self.run_dir, self.cfg, self.progress = data, Path(run_dir), cfg, progress
        if (self.run_dir / "last.json").exists() and not resume:
            raise ComoliveError(f"{self.run_dir}: already holds a run (use --resume to continue it, or another folder)")
        if resume and not (self.run_dir / "last.json").exists():
            raise ComoliveError(f"{self.run_dir}: nothing to resume (no last checkpoint)")
        torch.set_num_threads(max(1, cfg.threads))
        torch.manual_seed(cfg.seed)
        self.rng, self.step = random.Random(cfg.seed), 0

    def trainable(self) -> list[torch.Tensor]:
        return list(self.model.parameters())

    def lr_at(self, step: int) -> float:
        c = self.cfg
        warm = min(200, c.steps // 10)
        if step < warm:
            return c.lr * (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, c.steps - warm))
        return c.lr_min + 0.5 * (c.lr - c.lr_min) * (1 + math.cos(math.pi * p))

    def loss(self, batch: dict) -> torch.Tensor:
        return self.loss_fn(render_batch(self.model, batch, self.cfg.context_frames), batch["audio"])

    @torch.no_grad()
    def validate(self) -> float | None:
        if self.val is None:
            return None
        rng = random.Random(1234)
        self.model.eval()
        out = float(np.mean([self.loss(self.val.batch(rng, self.cfg.batch_size)).item() for _ in range(4)]))
        self.model.train()
        return out

    def meta(self) -> dict:
        return save_config_meta(self.model_cfg, step=self.step, corpus=str(self.corpus),
                                train=dataclasses.asdict(self.cfg))

    def weights(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    def save(self) -> None:
        weights = self.weights()
        state = {**weights, **optimizer_tensors(self.opt), **rng_tensors()}
        save_checkpoint(self.run_dir / "last", state, {**self.meta(), "rng_python": python_rng_state(self.rng)})
        save_checkpoint(self.run_dir / "vocoder", weights, self.meta())

    def run(self) -> Path:
        c = self.cfg
        log_path = self.run_dir / "log.csv"
        trim_log(log_path, self.step)
        new_log = not log_path.exists()
        with open(log_path, "a", newline="") as log:
            writer = csv.writer(log)
            if new_log:
                writer.writerow(["step", "loss", "val_loss", "lr", "steps_per_s", "time"])
            bar = tqdm(total=c.steps, initial=self.step, desc=self.desc, disable=not self.progress,
                       dynamic_ncols=True, mininterval=2.0)
            t0, window, ema = time.time(), [], None
            self.model.train()
            try:
                while self.step < c.steps:
                    lr = self.lr_at(self.step)
                    for g in self.opt.param_groups:
                        g["lr"] = lr * g.get("lr_scale", 1.0)
                    loss = self.loss(self.train.batch(self.rng, c.batch_size))
                    if not torch.isfinite(loss):
                        raise ComoliveError(f"training diverged at step {self.step} (loss {loss.item()}); lower the lr")
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.trainable(), c.grad_clip)
                    self.opt.step()
                    self.step += 1
                    ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
                    window = (window + [time.time()])[-50:]
                    sps = (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 else 0.0
                    bar.update(1)
                    bar.set_postfix(loss=f"{ema:.4f}", sps=f"{sps:.2f}")
                    val = None
                    if self.step % c.validate_every == 0 or self.step == c.steps:
                        val = self.validate()
                        if val is not None:
                            bar.write(f"step {self.step}: held-out loss {val:.4f}")
                    if self.step % c.log_every == 0 or val is not None:
                        writer.writerow([self.step, f"{ema:.5f}", "" if val is None else f"{val:.5f}", f"{lr:.2e}",
                                         f"{sps:.2f}", f"{time.time() - t0:.1f}"])
                        log.flush()
                    if self.step % c.checkpoint_every == 0:
                        self.save()
            finally:
                bar.close()
        self.save()
        return self.run_dir / "vocoder"


def export_vocoder(run: str | Path, out: str | Path, half: bool = True) -> Path:
    """RUN (a run folder or a checkpoint stem) -> OUT.safetensors + OUT.json, weights only (float16 by default)."""
    src = Path(run)
    stem = src / "vocoder" if src.is_dir() else src
    tensors, meta = load_checkpoint(stem)
    if meta.get("kind") != "hn_vocoder":
        raise ComoliveError(f"{stem}: not an hn vocoder checkpoint")
    model = HNVocoderModel(HNConfig.from_dict(meta["config"]))
    weights = {k: v for k, v in tensors.items() if not k.startswith(("opt.", "rng."))}
    load_into(model, weights, stem)  # refuse to export something the loader would reject
    if half:
        weights = {k: v.half() for k, v in weights.items()}
    meta = {**meta, "dtype": "float16" if half else "float32"}
    out = Path(out)
    save_checkpoint(out, weights, meta)
    return out


def finetune_hn(feats_dir: str | Path, out: str | Path, init: str | Path, steps: int = 300,
                progress: bool = True) -> dict:
    """The hn vocoder `init` fine-tuned on one voice's feature cache (its recordings: mel, f0, audio), saved
    as OUT (float16). A few hundred steps at a tenth of the training rate make it render that singer's own
    detail (measured on a held-out singer: target gain +0.017 / +0.022, docs/results.md)."""
    cfg = VocoderTrainConfig(steps=steps, lr=2e-4, lr_min=2e-5, checkpoint_every=10**9, validate_every=10**9,
                             threads=max(1, min(2, torch.get_num_threads())))
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            run = VocoderTrainingRun(str(feats_dir), Path(run_dir) / "run", HNConfig(), cfg, progress=progress,
                                     init=init)
            export_vocoder(run.run(), out, half=True)
    finally:
        torch.set_num_threads(threads)
    return {"vocoder_steps": steps, "vocoder_seconds": round(time.perf_counter() - t0, 1), "vocoder": str(out)}
