"""Zero-shot target voice: a speaker embedding from a few seconds of someone's recording.

Trained voices and reference clips share one path: the decoder is conditioned on a resemblyzer
d-vector, so a clip's embedding stands in for a trained voice's mean embedding. A clip is checked
before it is trusted: too little voice or silence is refused; clipping, a short clip, or parts that
sound like different people give warnings, because each makes the embedding (and the output) drift.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.speaker import SpeakerEncoder, unit_vector
from models.audio_io import load_audio
from models.errors import AudioInputError, ComoliveError

MIN_VOICE_S = 1.5        # below this (after trimming silence) a clip is refused
GOOD_VOICE_S = 3.0       # below this a clip is used with a warning
CLIP_LEVEL = 0.999       # |sample| at or above this counts as clipped
CLIP_FRACTION = 0.001    # more clipped samples than this gives a warning
SAME_SPEAKER_MIN = 0.6   # halves (or clips) less similar than this look like different speakers. Calibrated on
                         # the corpus: one voice's halves 0.67-0.85; two voices spliced 0.69-0.86 for similar
                         # voices, so only clearly different speakers are caught.


@dataclass
class Reference:
    embedding: np.ndarray                     # unit-norm [256]
    voice_seconds: float                      # voice left after trimming silence, all clips together
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    clips: list[tuple[np.ndarray, int]] = field(default_factory=list, repr=False)  # (wav, sr): for --retrieval

    @property
    def name(self) -> str:
        return "ref:" + "+".join(Path(s).stem for s in self.sources)


def _check_clip(encoder: SpeakerEncoder, wav: np.ndarray, sr: int, label: str) -> tuple[np.ndarray, float, list[str]]:
    """One clip -> (embedding, seconds of voice, warnings); AudioInputError when unusable."""
    warnings = []
    wav = np.asarray(wav, np.float32)
    clipped = float(np.mean(np.abs(wav) >= CLIP_LEVEL)) if len(wav) else 0.0
    if clipped > CLIP_FRACTION:
        warnings.append(f"{label}: {100 * clipped:.1f}% of samples are clipped; the voice may sound harsher")
    try:
        voice = encoder.preprocess(wav, sr)
    except AudioInputError as e:
        raise AudioInputError(f"{label}: {str(e).removeprefix('speaker clip: ')}") from None
    seconds = len(voice) / encoder.sample_rate
    if seconds < MIN_VOICE_S:
        raise AudioInputError(f"{label}: only {seconds:.1f} s of voice after trimming silence; "
                              f"a reference needs at least {MIN_VOICE_S:g} s (3-10 s is best)")
    if seconds < GOOD_VOICE_S:
        warnings.append(f"{label}: only {seconds:.1f} s of voice; 3-10 s gives a steadier voice")
    emb = encoder.embed_voice(voice)
    half = len(voice) // 2
    if half >= MIN_VOICE_S * encoder.sample_rate:
        a, b = (encoder.embed_voice(x) for x in (voice[:half], voice[half:]))
        sim = float(a @ b)
        if sim < SAME_SPEAKER_MIN:
            warnings.append(f"{label}: its two halves sound like different speakers (similarity {sim:.2f} < "
                            f"{SAME_SPEAKER_MIN}); use a clip of one voice only")
    return emb, seconds, warnings


def reference_from_audio(encoder: SpeakerEncoder, clips: list[tuple[np.ndarray, int, str]]) -> Reference:
    """(wav, sr, label) clips of one voice -> their averaged embedding, with the checks above."""
    if not clips:
        raise AudioInputError("no reference clip given")
    embs, total, warnings = [], 0.0, []
    for wav, sr, label in clips:
        e, s, w = _check_clip(encoder, wav, sr, label)
        embs.append(e)
        total += s
        warnings += w
    mean = unit_vector(np.mean(embs, axis=0))
    if len(embs) > 1:
        worst = min(float(e @ mean) for e in embs)
        if worst < SAME_SPEAKER_MIN:
            warnings.append(f"the reference clips do not sound like one voice (similarity {worst:.2f}); "
                            "the result is a blend")
    return Reference(mean, total, [c[2] for c in clips], warnings, [(np.asarray(c[0], np.float32), c[1]) for c in clips])


def load_reference(paths: list[str | Path], encoder: SpeakerEncoder | None = None) -> Reference:
    """Reference clip files (any format/rate) -> Reference; unreadable files raise AudioInputError."""
    encoder = encoder or SpeakerEncoder()
    clips = []
    for p in paths:
        wav, sr = load_audio(p)
        clips.append((wav, sr, str(p)))
    return reference_from_audio(encoder, clips)


def reference_for(voice: str | None, clips: list[str] | None, warn=print) -> Reference | None:
    """The zero-shot voice a command asked for with --ref (None without clips); --voice with it is an
    error, and the clip checks' warnings go to `warn`."""
    if not clips:
        return None
    if voice:
        raise ComoliveError("give either --voice or --ref, not both")
    reference = load_reference(clips)
    for w in reference.warnings:
        warn(f"warning: {w}")
    return reference
