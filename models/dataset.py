"""Training data: cached per-utterance features (written by `main.py preprocess`) as decoder batches.

Cache layout: FEATS/index.json and FEATS/<voice>/<utt>.npz holding, on the model's frame grid,
mel [M, T] (log), content [T, C], f0 [T] (Hz, 0 = unvoiced, as the live extractor sees it),
loudness [T] (dB) and spk [S] (d-vector of the utterance). index.json lists utterances with their
voice, parallel group (the same melody sung by several voices, sample-aligned) and transposition,
and the mean d-vector of each voice.

`aug_shift` (probability, max semitones): the target mel is warped in frequency by a random k
semitones (models/formant.py), the f0 input scaled by 2^(k/12) and k given as the `shift` input,
so the decoder learns the formant-shift control. `exclude_voices` leaves voices out entirely
(they are the unseen voices of the zero-shot evaluation).

When a group holds several voices, a batch item takes the *source* features (content, loudness,
f0 moved into the target's register) from voice A and the target mel + speaker from voice B:
the decoder learns conversion directly, so timbre leaking through content features is unlearned.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.errors import ComoliveError
from models.formant import warp_mel


def interpolate_f0(f0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill unvoiced (0) frames by linear interpolation between voiced neighbours; returns (f0, voiced)."""
    voiced = f0 > 0
    out = f0.astype(np.float32).copy()
    if voiced.any() and not voiced.all():
        idx = np.arange(len(f0))
        out[~voiced] = np.interp(idx[~voiced], idx[voiced], f0[voiced])
    return out, voiced.astype(np.float32)


@dataclass
class Utterance:
    voice: str
    group: str
    transpose: float
    mel: np.ndarray
    content: np.ndarray
    f0: np.ndarray
    loudness: np.ndarray

    @property
    def frames(self) -> int:
        return self.mel.shape[1]


class FeatureDataset:
    """All utterances of one split in memory; `batch()` draws random aligned crops."""

    def __init__(self, feats_dir: str | Path, split: str = "train", parallel_prob: float = 0.8,
                 aug_shift: tuple[float, float] = (0.0, 0.0), exclude_voices=()):
        root = Path(feats_dir)
        self.aug_shift_prob, self.aug_shift_max = float(aug_shift[0]), float(aug_shift[1])
        excluded = set(exclude_voices)
        index_path = root / "index.json"
        if not index_path.exists():
            raise ComoliveError(f"{root}: no index.json — run `python main.py preprocess` on a dataset first")
        index = json.loads(index_path.read_text())
        self.voices: dict[str, np.ndarray] = {v: np.asarray(e, np.float32) for v, e in index["voices"].items()
                                              if v not in excluded}
        self.utts: list[Utterance] = []
        for item in index["utterances"]:
            if item["split"] != split or item["voice"] in excluded:
                continue
            z = np.load(root / item["path"])
            self.utts.append(Utterance(item["voice"], item["group"], float(item.get("transpose", 0.0)),
                                       z["mel"], z["content"], z["f0"], z["loudness"]))
        if not self.utts:
            raise ComoliveError(f"{root}: no '{split}' utterances in the feature cache")
        self.groups: dict[str, list[int]] = {}
        for i, u in enumerate(self.utts):
            self.groups.setdefault(u.group, []).append(i)
        self.parallel_prob = parallel_prob
        self.voice_names = sorted(self.voices)

    def __len__(self) -> int:
        return len(self.utts)

    def pair(self, rng: random.Random, target: int | None = None) -> tuple[Utterance, Utterance]:
        """(source, target): a parallel rendition by another voice when one exists, else the same one."""
        tgt = self.utts[rng.randrange(len(self.utts)) if target is None else target]
        peers = [j for j in self.groups[tgt.group] if self.utts[j].voice != tgt.voice]
        if peers and rng.random() < self.parallel_prob:
            return self.utts[rng.choice(peers)], tgt
        return tgt, tgt

    def item(self, src: Utterance, tgt: Utterance, start: int, length: int, shift: float = 0.0) -> dict[str, np.ndarray]:
        n = min(src.frames, tgt.frames)
        end = min(start + length, n)
        f0 = src.f0[start:end] * np.float32(2.0 ** ((tgt.transpose - src.transpose + shift) / 12.0))
        f0_i, voiced = interpolate_f0(f0)
        return {
            "mel": warp_mel(tgt.mel[:, start:end], shift),
            "shift": np.float32(shift),
            "content": src.content[start:end].astype(np.float32),
            "f0": f0_i,
            "voiced": voiced,
            "loudness": src.loudness[start:end],
            "speaker": self.voices[tgt.voice],
        }

    def batch(self, rng: random.Random, size: int, length: int) -> dict[str, torch.Tensor]:
        items = []
        for _ in range(size):
            src, tgt = self.pair(rng)
            n = min(src.frames, tgt.frames)
            start = rng.randrange(max(1, n - length + 1))
            shift = 0.0
            if self.aug_shift_max > 0 and rng.random() < self.aug_shift_prob:
                shift = rng.uniform(-self.aug_shift_max, self.aug_shift_max)
            items.append(self.item(src, tgt, start, length, shift))
        return collate(items)


def collate(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad to the longest item; `mask` marks real frames; `shift` is the formant-shift input (0 when absent)."""
    t = max(it["mel"].shape[1] for it in items)
    out: dict[str, list] = {k: [] for k in ("mel", "content", "f0", "voiced", "loudness", "speaker", "mask")}
    for it in items:
        n = it["mel"].shape[1]
        pad = t - n
        out["mel"].append(np.pad(it["mel"], ((0, 0), (0, pad)), constant_values=it["mel"].min()))
        out["content"].append(np.pad(it["content"], ((0, pad), (0, 0))))
        for k in ("f0", "voiced"):
            out[k].append(np.pad(it[k], (0, pad)))
        out["loudness"].append(np.pad(it["loudness"], (0, pad), constant_values=-80.0))
        out["speaker"].append(it["speaker"])
        out["mask"].append((np.arange(t) < n).astype(np.float32))
    batch = {k: torch.from_numpy(np.stack(v).astype(np.float32)) for k, v in out.items()}
    batch["shift"] = torch.tensor([float(it.get("shift", 0.0)) for it in items], dtype=torch.float32)
    return batch
