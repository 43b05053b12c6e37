"""Decoder-drawn mels for vocoder training: `main.py gta-mels FEATS [--model M]`.

A vocoder trained only on mels analysed from recordings meets something else at conversion time: the
decoder's mel, smoother and with looser harmonics. This writes, beside each train utterance of a feature
folder, the mel the decoder draws for it under conversion-like conditions (FEATS/<voice>/<utt>.gta.npy,
float16 [M, T], time-aligned with the utterance's audio): for a corpus rendition with parallel renditions
by other voices, the source features are another voice's and the speaker is this voice; for a real
recording, the content comes from its timbre-perturbed copy and the speaker is its own d-vector.
The NSF trainer (training/nsf_train.py) feeds these in place of the analysed mel with `gta_prob`.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from models.dataset import FeatureDataset, collate
from training.vocoder_train import gta_path
from models.voice_model import VoiceModel


@torch.no_grad()
def write_gta_mels(feats_dir: str | Path, model: str | Path | None = None, seed: int = 0,
                   progress: bool = True) -> int:
    """Writes one .gta.npy per train utterance of FEATS; returns how many were written."""
    root = Path(feats_dir)
    vm = VoiceModel.load(model)
    data = FeatureDataset(root, "train", parallel_prob=1.0)
    paths = [root / u["path"] for u in json.loads((root / "index.json").read_text())["utterances"]
             if u["split"] == "train"]
    rng = random.Random(seed)
    for i, path in enumerate(tqdm(paths, desc="decoder mels", disable=not progress, mininterval=2.0)):
        src, tgt = data.pair(rng, target=i)
        if tgt.real:  # a real recording has no parallel rendition: its own (perturbed) features
            src = tgt
        n = min(src.frames, tgt.frames)
        speaker = tgt.spk if tgt.real else data.voices[tgt.voice]
        batch = collate([data.item(src, tgt, 0, n, speaker=speaker, perturbed=tgt.real)])
        mel = vm.decode(batch, seed=seed + i)[0].float().numpy()
        np.save(gta_path(path), mel.astype(np.float16))
    return len(paths)
