"""Virtual training voices: every train voice again with a longer or shorter vocal tract.

Thirty-odd voices are too few for the decoder to learn what the speaker embedding means between them,
so a voice it never heard lands in a gap. A formant shift of k semitones (models/formant.py
`warp_mel`: every frequency of the spectral envelope scaled by 2^(k/12), f0 untouched) is a
vocal-tract-length change, the main way real voices differ. For each train utterance and each k in
`shifts`, its mel is warped, rendered by the f0-driven hn vocoder with the utterance's own f0 and
embedded by the speaker encoder: the d-vector of a voice that does not exist, paired with the mel the
decoder should produce for it (the same warp, done on the fly by models/dataset.py). What the vocoder
itself adds to a d-vector is taken out: the virtual voice is the utterance's own d-vector moved by
(rendering warped by k) - (rendering unwarped), so it sits where a recording of that voice would.
Recorded singers are few too (a handful of clips each), so a real cache gets its virtual voices the same way.

Written to FEATS/timbres.npz: `paths` [N] (index.json paths), `shifts` [K], `spk` [N, K, 256].
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.speaker import SpeakerEncoder
from models.dataset import TIMBRES_FILE, unit
from models.errors import AudioInputError, ComoliveError
from models.formant import warp_mel
from models.vocoders import load_vocoder


def _embedding(spk: SpeakerEncoder, wav: np.ndarray, sr: int) -> np.ndarray | None:
    """The d-vector of a rendering, or None where the encoder's voice detector keeps too little of it."""
    try:
        return spk.embed(wav, sr)
    except AudioInputError:
        return None


DEFAULT_SHIFTS = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)


def build_timbres(feats_dir: str | Path, shifts=DEFAULT_SHIFTS, split: str = "train",
                  progress: bool = True) -> Path:
    """Embed every `split` utterance of the feature cache at every formant shift; returns the file written."""
    root = Path(feats_dir)
    try:
        index = json.loads((root / "index.json").read_text())
    except OSError:
        raise ComoliveError(f"{root}: no index.json — run `python main.py preprocess` first") from None
    shifts = [float(k) for k in shifts]
    if not shifts or any(k == 0 for k in shifts):
        raise ComoliveError("timbre shifts: give non-zero semitone values (0 is the voice itself)")
    items = [u for u in index["utterances"] if u["split"] == split]
    if not items:
        raise ComoliveError(f"{root}: no '{split}' utterances")
    torch.set_num_threads(2)
    vocoder = load_vocoder("hn")
    spk = SpeakerEncoder()
    sr = vocoder.sample_rate
    out = np.zeros((len(items), len(shifts), 256), np.float32)
    refused = 0
    for i, u in enumerate(tqdm(items, desc="timbres", disable=not progress, dynamic_ncols=True)):
        z = np.load(root / u["path"])
        mel, f0 = z["mel"], z["f0"]
        rendered = _embedding(spk, vocoder(torch.from_numpy(mel), f0).numpy(), sr)
        for j, k in enumerate(shifts):
            warped = _embedding(spk, vocoder(torch.from_numpy(warp_mel(mel, k)), f0).numpy(), sr)
            if warped is None:  # the encoder heard no voice in this rendering: the utterance's own voice
                out[i, j] = z["spk"]
            else:
                out[i, j] = warped if rendered is None else unit(z["spk"] + warped - rendered)
            refused += warped is None or rendered is None
    if refused:
        print(f"timbres: {refused} of {len(items) * len(shifts)} virtual voices are approximate (a rendering held "
              "too little voice for the speaker encoder)", flush=True)
    path = root / TIMBRES_FILE
    np.savez(path, paths=np.array([u["path"] for u in items]), shifts=np.array(shifts, np.float32), spk=out)
    return path

