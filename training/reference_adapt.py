"""Adapting the decoder to a zero-shot reference (`convert --ref CLIP`, by default; `--adapt N`; the panel's
Adapt button; `eval --real --adapt N`).

A d-vector alone brings an unheard singer only part of the way (the decoder renders an average voice near
it). A few hundred steps of the `voice add` fine-tuning on the reference clip itself (3-10 s: reconstruction
from its timbre-perturbed content, conditioned on its d-vector) make the decoder draw that singer; the
adapted model is a temporary copy, used for this conversion only. The vocoder is not adapted: a few seconds
are too little for it (docs/results.md).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from models.errors import ComoliveError
from models.voice_model import VoiceModel, own_vocoder_stem
from training.finetune import FinetuneConfig, finetune_voice
from training.voice_add import preprocess_voice

ADAPT_STEPS = 300   # chosen on the train split (docs/results.md, "Adapting the decoder to the reference")
VOICE = "reference"


def adapt_to_reference(clips: list[tuple[np.ndarray, int]], base: VoiceModel, steps: int = ADAPT_STEPS,
                       device: str | None = None, progress: bool = False, on_step=None) -> VoiceModel:
    """BASE with its one-step decoder fine-tuned for `steps` on the reference clips (audio, rate), and their
    voice added as "reference". on_step(done, total) after each step."""
    if steps < 1:
        raise ComoliveError(f"adaptation steps must be at least 1, got {steps}")
    with tempfile.TemporaryDirectory(prefix="comolive-adapt-") as tmp:
        folder, feats = Path(tmp) / "clips", Path(tmp) / "features"
        folder.mkdir()
        for i, (wav, sr) in enumerate(clips):
            sf.write(str(folder / f"ref{i}.wav"), np.asarray(wav, np.float32), int(sr))
        try:
            preprocess_voice(VOICE, folder, feats, base, progress, device)
        except ComoliveError as e:  # its message names the temporary files: say it of the reference
            reasons = [line.split(": ", 1)[-1] for line in str(e).splitlines()[1:]] or [str(e)]
            raise ComoliveError("the reference holds no usable voice to adapt to: " + "; ".join(reasons)) from None
        vm, _ = finetune_voice(base, feats, VOICE, FinetuneConfig(steps=steps), progress=progress, device=device,
                               half=True, base_label="reference adaptation", on_step=on_step)
    return vm


def adapt_and_save(clips: list[tuple[np.ndarray, int]], model: VoiceModel | str | Path | None, stem: str | Path,
                   steps: int = ADAPT_STEPS, device: str | None = None, progress: bool = False,
                   on_step=None) -> str:
    """MODEL (a loaded model, or its path; None: the embedded default) adapted to the reference clips, saved
    at STEM for this session only, with MODEL's own hn copied beside it when it has one (so `hn` still finds
    it). Returns STEM."""
    base = model if isinstance(model, VoiceModel) else VoiceModel.load(model)
    vm = adapt_to_reference(clips, base, steps, device=device, progress=progress, on_step=on_step)
    stem = Path(stem)
    vm.save(stem, half=True)
    own = base.own_vocoder("hn")
    for suffix in (".safetensors", ".json") if own is not None else ():
        shutil.copy(own.with_suffix(suffix), own_vocoder_stem(stem).with_suffix(suffix))
    return str(stem)
