"""Retrieval of the target's own content frames (`--retrieval R`), a remedy for timbre carried by content.

The content features of a source still carry some of its singer's timbre. Each source frame is replaced,
in part, by the mean of its k nearest frames (cosine) among the frames of the target's reference clips:
content = (1 - R) * source + R * retrieved. R = 0 leaves the content exactly as it was. The index is the
reference clips' content as the same extractor computes it for conversion.
"""
from __future__ import annotations

import numpy as np

from models.errors import ComoliveError

DEFAULT_K = 4


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def check_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ComoliveError(f"retrieval ratio must be within 0..1, got {ratio:g}")
    return ratio


class ContentIndex:
    """The target's content frames [N, C] and the blend of a source's content with its nearest frames."""

    def __init__(self, frames: np.ndarray, k: int = DEFAULT_K):
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 2 or len(frames) < k:
            raise ComoliveError(f"retrieval needs at least {k} content frames of the target, got {frames.shape}")
        self.frames, self.k = frames, k
        self._unit = _unit(frames)

    def retrieve(self, content: np.ndarray) -> np.ndarray:
        """Mean of the k nearest target frames of each source frame: [T, C] -> [T, C]."""
        sims = _unit(np.asarray(content, np.float32)) @ self._unit.T
        nearest = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
        return self.frames[nearest].mean(axis=1)

    def blend(self, content: np.ndarray, ratio: float) -> np.ndarray:
        if ratio <= 0.0 or len(content) == 0:
            return content
        return ((1.0 - ratio) * content + ratio * self.retrieve(content)).astype(np.float32)
