"""Content units: each content frame snapped to the nearest of K learned centres (k-means).

Why: the content features (Whisper encoder frames) carry the singer as well as the words; a linear
probe names a real speaker from one frame far above chance, and a decoder that can read the singer
from the content copies the source's timbre instead of the target's. A frame replaced by its nearest
centre keeps what is said and sung (the centres are fitted on many voices) and drops most of who says
it, so the decoder has to take the timbre from the speaker embedding. The centres live in the voice
model (a buffer of the condition encoder), so training, `convert` and the live path snap alike.
"""
from __future__ import annotations

import numpy as np
import torch


def nearest_units(content: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """content [..., C] -> the nearest centre of units [K, C] for each frame (squared Euclidean)."""
    flat = content.reshape(-1, content.shape[-1])
    score = flat @ units.t() * -2.0 + (units * units).sum(1)  # |x - u|^2 - |x|^2
    return units[score.argmin(1)].reshape(content.shape)


def fit_units(frames: np.ndarray, k: int, seed: int = 0, iters: int = 25) -> np.ndarray:
    """k-means (k-means++ start, Lloyd iterations) on frames [N, C] -> centres [k, C] float32."""
    x = torch.from_numpy(np.ascontiguousarray(frames, np.float32))
    n = len(x)
    if n < k:
        raise ValueError(f"{k} content units need at least {k} frames, got {n}")
    g = torch.Generator().manual_seed(seed)
    sq = (x * x).sum(1)
    centres = [x[torch.randint(n, (1,), generator=g)].squeeze(0)]
    dist = sq - 2 * x @ centres[0] + centres[0] @ centres[0]
    for _ in range(1, k):  # k-means++: each new centre drawn in proportion to the squared distance
        c = x[torch.multinomial(dist.clamp(min=0) + 1e-12, 1, generator=g)].squeeze(0)
        centres.append(c)
        dist = torch.minimum(dist, sq - 2 * x @ c + c @ c)
    u = torch.stack(centres)
    for _ in range(iters):
        idx = (x @ u.t() * -2.0 + (u * u).sum(1)).argmin(1)
        sums = torch.zeros_like(u).index_add_(0, idx, x)
        counts = torch.bincount(idx, minlength=k).float()
        empty = counts == 0
        u = torch.where(empty[:, None], u, sums / counts.clamp(min=1)[:, None])
    return u.numpy().astype(np.float32)


def sample_frames(contents: list[np.ndarray], per_item: int, seed: int = 0) -> np.ndarray:
    """Up to per_item random frames of each [T, C] array, stacked: the k-means input."""
    rng = np.random.default_rng(seed)
    out = [c[rng.choice(len(c), min(per_item, len(c)), replace=False)] for c in contents if len(c)]
    return np.concatenate(out).astype(np.float32)
