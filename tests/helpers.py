"""Small builders shared by tests: synthetic signals and a tiny, learnable feature cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.config import ModelConfig, RunConfig, TrainConfig


def harmonic(f0: float, seconds: float, sr: int, n_harm: int = 10, vibrato_cents: float = 0.0,
             amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced, vowel-like tone with known f0 (optionally with 5.5 Hz vibrato)."""
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * 2.0 ** (vibrato_cents / 1200.0 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, n_harm + 1))
    x = x / np.max(np.abs(x)) * amp
    return x.astype(np.float32)


def tiny_model_config(**kw) -> ModelConfig:
    base = dict(layers=3, channels=32, cond_dim=32, content_dim=8, speaker_dim=4, n_mels=16, lookahead_frames=1)
    base.update(kw)
    return ModelConfig(**base)


def tiny_run_config(**train) -> RunConfig:
    t = dict(steps=300, batch_size=8, segment_frames=32, lr=3e-3, lr_min=3e-4, checkpoint_every=100,
             validate_every=10_000, log_every=20, threads=1, distill_steps=150, parallel_prob=0.8)
    t.update(train)
    return RunConfig(tiny_model_config(), TrainConfig(**t))


def write_tiny_cache(root: Path, cfg: ModelConfig, n_groups: int = 6, voices=("a", "b"), frames: int = 80,
                     seed: int = 0) -> Path:
    """A parallel feature cache whose mel is a deterministic function of pitch, content and voice.

    Voice identity changes the spectral tilt, so conversion (source voice a -> target b) is learnable."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    spk = {v: np.eye(cfg.speaker_dim, dtype=np.float32)[i] for i, v in enumerate(voices)}
    index = []
    bins = np.arange(cfg.n_mels)[:, None]
    for g in range(n_groups):
        split = "heldout" if g == n_groups - 1 else "train"
        f0 = 150 + 100 * np.sin(np.linspace(0, 3, frames) + g)
        f0[rng.random(frames) < 0.1] = 0.0
        content = rng.standard_normal((frames, cfg.content_dim)).astype(np.float32)
        for vi, v in enumerate(voices):
            centre = (np.log1p(np.maximum(f0, 80) / 700.0) * 30)[None, :]
            mel = -6 + 4 * np.exp(-((bins - centre) ** 2) / 20.0) - (0.1 + 0.15 * vi) * bins / 2 \
                + 0.5 * content[:, :1].T
            mel[:, f0 == 0] = -9.0
            name = f"{split}/{v}/g{g}.npz"
            (root / split / v).mkdir(parents=True, exist_ok=True)
            np.savez(root / name, mel=mel.astype(np.float32), content=content.astype(np.float16),
                     f0=f0.astype(np.float32), loudness=np.full(frames, -20.0, np.float32), spk=spk[v])
            index.append({"path": name, "voice": v, "split": split, "group": f"g{g}", "transpose": 0.0,
                          "frames": frames})
    (root / "index.json").write_text(json.dumps({"voices": {v: e.tolist() for v, e in spk.items()},
                                                 "utterances": index}))
    return root
