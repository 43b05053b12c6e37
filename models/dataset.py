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

Speaker conditioning, for voices unheard in training to land somewhere sensible: with `utt_speaker_prob`
an item is conditioned on its target utterance's own d-vector instead of the voice's mean (a reference
clip gives such a noisy estimate, not the mean); with `timbre_prob` the target becomes a virtual voice,
the utterance with its formants moved by one of the shifts of FEATS/timbres.npz (training/timbres.py),
conditioned on the d-vector measured on that rendering. f0 and the `shift` input are left alone: the
timbre is the speaker's, not a control.

When a group holds several voices, a batch item takes the *source* features (content, loudness,
f0 moved into the target's register) from voice A and the target mel + speaker from voice B:
the decoder learns conversion directly, so timbre leaking through content features is unlearned.

Real recordings (index entries with `real`: no parallel renditions) teach by reconstruction: the
content comes from the timbre-perturbed copy stored beside it (`content_pert`, training/perturb.py) with
probability `pert_prob`, and the speaker is always the utterance's own d-vector (a label may cover
several unnamed speakers), its virtual voices included: a real cache has a timbres.npz of its own, so
the few singers it holds become many. `MixedDataset` draws items from several caches (e.g. the synthetic corpus
and real recordings) in fixed proportions.

Retrieval (`retrieval_prob`): an item's content is blended with its nearest frames among 3-10 s of the
target voice's *other* recordings (models/retrieval.py, ratio drawn in 0..1), as `--retrieval R` blends a
source with the reference clips' frames when converting. The retrieved frames carry the target's timbre
(content features do, in part), so the decoder learns to take the voice from them too, not only from
the d-vector. Other recordings of a voice: the same voice, another melody (synthetic), or the same label
and a d-vector that agrees (real: a label may cover several unnamed speakers).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.config import recorded_features
from models.errors import ComoliveError
from models.formant import warp_mel
from models.retrieval import ContentIndex

TIMBRES_FILE = "timbres.npz"
RETRIEVAL_FRAMES = (260, 860)  # index size drawn per item, in frames: 3-10 s, a reference clip's length
SAME_VOICE_MIN = 0.6  # real recordings under one label whose d-vectors agree less than this are not pooled


def load_timbres(feats_dir: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(shifts [K], {index path: d-vectors [K, 256]}) from FEATS/timbres.npz."""
    path = Path(feats_dir) / TIMBRES_FILE
    if not path.is_file():
        raise ComoliveError(f"{path}: missing — run `python main.py timbres {feats_dir}` (timbre_prob > 0 needs it)")
    z = np.load(path)
    return z["shifts"].astype(np.float32), {str(p): e for p, e in zip(z["paths"], z["spk"])}


def unit(v: np.ndarray) -> np.ndarray:
    """A feature cache's d-vector mean scaled to unit length (voice means in index.json, timbre means)."""
    return (v / (np.linalg.norm(v) + 1e-9)).astype(np.float32)


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
    spk: np.ndarray                       # this utterance's own d-vector
    timbres: np.ndarray | None = None     # [K, 256] d-vectors of its virtual voices (timbre shifts)
    content_pert: np.ndarray | None = None  # content of a timbre-perturbed copy (real recordings)
    real: bool = False

    @property
    def frames(self) -> int:
        return self.mel.shape[1]


class FeatureDataset:
    """All utterances of one split in memory; `batch()` draws random aligned crops."""

    def __init__(self, feats_dir: str | Path, split: str = "train", parallel_prob: float = 0.8,
                 aug_shift: tuple[float, float] = (0.0, 0.0), exclude_voices=(), utt_speaker_prob: float = 0.0,
                 timbre_prob: float = 0.0, pert_prob: float = 1.0, retrieval_prob: float = 0.0):
        root = Path(feats_dir)
        self.pert_prob, self.retrieval_prob = float(pert_prob), float(retrieval_prob)
        self.utt_speaker_prob, self.timbre_prob = float(utt_speaker_prob), float(timbre_prob)
        self.timbre_shifts, timbres = (load_timbres(root) if self.timbre_prob > 0 else (np.zeros(0, np.float32), {}))
        self.aug_shift_prob, self.aug_shift_max = float(aug_shift[0]), float(aug_shift[1])
        excluded = set(exclude_voices)
        index_path = root / "index.json"
        if not index_path.exists():
            raise ComoliveError(f"{root}: no index.json — run `python main.py preprocess` on a dataset first")
        index = json.loads(index_path.read_text())
        self.feature_settings = recorded_features(index.get("config", {}), index.get("pitch"))
        self.voices: dict[str, np.ndarray] = {v: np.asarray(e, np.float32) for v, e in index["voices"].items()
                                              if v not in excluded}
        self.utts: list[Utterance] = []
        for item in index["utterances"]:
            if item["split"] != split or item["voice"] in excluded:
                continue
            z = np.load(root / item["path"])
            if self.timbre_prob > 0 and timbres and item["path"] not in timbres:
                raise ComoliveError(f"{root / TIMBRES_FILE}: no timbres for {item['path']} (made before the "
                                    f"last preprocess?) — run `python main.py timbres {root}` again")
            self.utts.append(Utterance(item["voice"], item["group"], float(item.get("transpose", 0.0)),
                                       z["mel"], z["content"], z["f0"], z["loudness"], z["spk"],
                                       timbres.get(item["path"]),
                                       z["content_pert"] if "content_pert" in z.files else None,
                                       bool(item.get("real", False))))
        if not self.utts:
            raise ComoliveError(f"{root}: no '{split}' utterances in the feature cache")
        self.groups: dict[str, list[int]] = {}
        for i, u in enumerate(self.utts):
            self.groups.setdefault(u.group, []).append(i)
        self.parallel_prob = parallel_prob
        self.voice_names = sorted(self.voices)
        self.pools = self._retrieval_pools() if self.retrieval_prob > 0 else {}
        self.timbre_means: dict[str, np.ndarray] = {}   # voice -> [K, 256] mean d-vector of each virtual voice
        for v in self.voice_names if self.timbre_prob > 0 and timbres else ():
            mean = np.mean([u.timbres for u in self.utts if u.voice == v], axis=0)
            self.timbre_means[v] = np.stack([unit(m) for m in mean])

    def __len__(self) -> int:
        return len(self.utts)

    def _retrieval_pools(self) -> dict[int, list[int]]:
        """Utterance -> the other recordings of its voice (another melody; for real ones, a d-vector that
        agrees), the frames a retrieval index for it is drawn from."""
        by_voice: dict[str, list[int]] = {}
        for i, u in enumerate(self.utts):
            by_voice.setdefault(u.voice, []).append(i)
        pools = {}
        for i, u in enumerate(self.utts):
            pools[i] = [j for j in by_voice[u.voice] if self.utts[j].group != u.group
                        and (not u.real or float(unit(u.spk) @ unit(self.utts[j].spk)) >= SAME_VOICE_MIN)]
        return pools

    def retrieval_index(self, rng: random.Random, target: int) -> ContentIndex | None:
        """3-10 s of content frames from other recordings of the target's voice; None when it has none."""
        pool = list(self.pools.get(target, ()))
        if not pool:
            return None
        rng.shuffle(pool)
        want, frames, n = rng.randint(*RETRIEVAL_FRAMES), [], 0
        for j in pool:
            c = self.utts[j].content
            frames.append(c[: want - n])
            n += len(frames[-1])
            if n >= want:
                break
        return ContentIndex(np.concatenate(frames)) if n >= 4 else None

    def pair(self, rng: random.Random, target: int | None = None) -> tuple[Utterance, Utterance]:
        """(source, target): a parallel rendition by another voice when one exists, else the same one."""
        tgt = self.utts[rng.randrange(len(self.utts)) if target is None else target]
        peers = [j for j in self.groups[tgt.group] if self.utts[j].voice != tgt.voice]
        if peers and rng.random() < self.parallel_prob:
            return self.utts[rng.choice(peers)], tgt
        return tgt, tgt

    def speaker(self, rng: random.Random, tgt: Utterance) -> tuple[np.ndarray, float]:
        """(d-vector, timbre shift in semitones) for a target: its voice or a virtual voice, mean or own
        (always its own for a real recording: a label may cover several unnamed speakers)."""
        own = tgt.real or (self.utt_speaker_prob > 0 and rng.random() < self.utt_speaker_prob)
        if tgt.timbres is not None and self.timbre_prob > 0 and rng.random() < self.timbre_prob:
            j = rng.randrange(len(self.timbre_shifts))
            return (tgt.timbres[j] if own else self.timbre_means[tgt.voice][j]), float(self.timbre_shifts[j])
        return (tgt.spk if own else self.voices[tgt.voice]), 0.0

    def item(self, src: Utterance, tgt: Utterance, start: int, length: int, shift: float = 0.0,
             speaker: np.ndarray | None = None, timbre: float = 0.0, perturbed: bool = False) -> dict[str, np.ndarray]:
        n = min(src.frames, tgt.frames)
        content = src.content_pert if perturbed and src.content_pert is not None else src.content
        end = min(start + length, n)
        f0 = src.f0[start:end] * np.float32(2.0 ** ((tgt.transpose - src.transpose + shift) / 12.0))
        f0_i, voiced = interpolate_f0(f0)
        return {
            "mel": warp_mel(tgt.mel[:, start:end], shift + timbre),
            "shift": np.float32(shift),
            "content": content[start:end].astype(np.float32),
            "f0": f0_i,
            "voiced": voiced,
            "loudness": src.loudness[start:end],
            "speaker": self.voices[tgt.voice] if speaker is None else speaker,
        }

    def draw(self, rng: random.Random, length: int) -> dict[str, np.ndarray]:
        """One random training item (a crop of `length` frames)."""
        t = rng.randrange(len(self.utts))
        src, tgt = self.pair(rng, t)
        n = min(src.frames, tgt.frames)
        start = rng.randrange(max(1, n - length + 1))
        shift = 0.0
        if self.aug_shift_max > 0 and rng.random() < self.aug_shift_prob:
            shift = rng.uniform(-self.aug_shift_max, self.aug_shift_max)
        spk, timbre = self.speaker(rng, tgt)
        perturbed = src.real and self.pert_prob > 0 and rng.random() < self.pert_prob
        item = self.item(src, tgt, start, length, shift, spk, timbre, perturbed)
        if timbre == 0.0 and self.retrieval_prob > 0 and rng.random() < self.retrieval_prob:
            index = self.retrieval_index(rng, t)  # (a virtual voice has no other recordings to retrieve from)
            if index is not None:
                item["content"] = index.blend(item["content"], rng.random())
        return item

    def batch(self, rng: random.Random, size: int, length: int) -> dict[str, torch.Tensor]:
        return collate([self.draw(rng, length) for _ in range(size)])


class MixedDataset:
    """Items drawn from several feature caches in fixed proportions; the voices are the first cache's."""

    def __init__(self, datasets: list[FeatureDataset], weights: list[float]):
        self.datasets, self.weights = datasets, weights
        first = datasets[0]
        self.voices, self.voice_names = first.voices, first.voice_names
        self.pair, self.item = first.pair, first.item  # validation audio comes from the first cache

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def batch(self, rng: random.Random, size: int, length: int) -> dict[str, torch.Tensor]:
        picks = rng.choices(self.datasets, weights=self.weights, k=size)
        return collate([d.draw(rng, length) for d in picks])


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
