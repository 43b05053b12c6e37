"""A voice model as users see it: decoder weights + hyper-parameters + the named voices it can sing in.

Saved as one checkpoint (models/checkpoint.py): `student.*` (one-step consistency decoder) and/or
`teacher.*` (EDM decoder) tensors, `voice.<name>` d-vectors, and a JSON with the ModelConfig and
provenance. Weights may be stored in float16 to keep the embedded default small; they are used in
float32. A model may have an hn vocoder of its own beside it (MODEL_hn.*: the shared one fine-tuned on
the recordings of a voice added from a folder, training/voice_add.py), used whenever it runs with "hn".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import checkpoint_stem, load_checkpoint, load_into, save_checkpoint
from models.config import ModelConfig
from models.consistency import ConsistencyDecoder
from models.edm import EDMDecoder, unit_to_mel
from models.errors import ComoliveError, ModelFileError
from models.noise import frame_noise
from models import progressive

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DEFAULT_MODEL = PRETRAINED_DIR / "default"
TEACHER_SUFFIX = "_teacher"  # MODEL_teacher.*: the EDM teacher of a student-only MODEL, read only when asked for
USER_VOICES_DIR = Path("voices")  # where `voice add` writes a model unless told otherwise (in the working folder)
OWN_VOCODERS = ("hn",)  # MODEL_hn.*: the model's own fine-tuned copy of that vocoder


def teacher_stem(stem: str | Path) -> Path:
    stem = Path(stem)
    return stem.with_name(stem.name + TEACHER_SUFFIX)


def own_vocoder_stem(stem: str | Path, vocoder: str = "hn") -> Path:
    stem = Path(stem)
    return stem.with_name(f"{stem.name}_{vocoder}")


def find_voice_models(folder: str | Path) -> list[Path]:
    """The voice models (stems) in a folder, such as the `voices/` that `voice add` writes to; their own
    vocoders and teachers beside them are not voice models and are left out."""
    found = []
    for js in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else ():
        try:
            meta = json.loads(js.read_text())
        except (OSError, ValueError):
            continue
        stem = js.with_suffix("")
        if (isinstance(meta, dict) and meta.get("format") == "comolive-voice-model"
                and not stem.name.endswith(TEACHER_SUFFIX) and stem.with_suffix(".safetensors").exists()):
            found.append(stem)
    return found


class VoiceModel:
    def __init__(self, cfg: ModelConfig, voices: dict[str, np.ndarray], student: ConsistencyDecoder | None = None,
                 teacher: EDMDecoder | None = None, meta: dict | None = None):
        if student is None and teacher is None:
            raise ValueError("a voice model needs a student or a teacher decoder")
        self.cfg = cfg
        self.voices = voices
        self.student = student
        self.teacher = teacher
        self.meta = meta or {}
        self.broken: dict[str, str] = {}  # voices stored in the file but unusable: name -> why
        self.device = torch.device("cpu")
        self.stem: Path | None = None  # where it was loaded from (its teacher file lies beside it)

    # ------------------------------------------------------------------ I/O
    def save(self, stem: str | Path, half: bool = False, extra_meta: dict | None = None) -> Path:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, dec in (("student.", self.student), ("teacher.", self.teacher)):
            if dec is not None:
                for k, v in dec.state_dict().items():
                    tensors[prefix + k] = v.half() if half and v.is_floating_point() else v
        for name, vec in self.voices.items():
            tensors["voice." + name] = torch.from_numpy(np.asarray(vec, np.float32))
        meta = {**self.meta, **(extra_meta or {}), "format": "comolive-voice-model", "version": 1,
                "config": self.cfg.to_dict(), "voices": sorted(self.voices)}
        return save_checkpoint(stem, tensors, meta)

    @classmethod
    def load(cls, stem: str | Path | None = None, device: str | torch.device = "cpu") -> "VoiceModel":
        stem = checkpoint_stem(stem) if stem is not None else DEFAULT_MODEL  # beside it: its teacher, its own hn
        tensors, meta = load_checkpoint(stem)
        if meta.get("format") != "comolive-voice-model":
            raise ModelFileError(f"{stem}: not a comolive voice model")
        try:
            cfg = ModelConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ComoliveError) as e:
            raise ModelFileError(f"{stem}: unreadable model configuration ({e})") from None
        decoders = {}
        student = ConsistencyDecoder
        if meta.get("student_kind") == progressive.KIND:  # a progressive-distillation student (models/progressive.py)
            student = lambda c: progressive.student_from_meta(c, meta)  # noqa: E731
        for prefix, klass in (("student.", student), ("teacher.", EDMDecoder)):
            sd = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
            if sd:
                try:
                    dec = klass(cfg)
                except (KeyError, TypeError, ValueError) as e:  # the progressive student's settings
                    raise ModelFileError(f"{stem}: unreadable progressive student settings ({e})") from None
                load_into(dec, sd, stem)
                decoders[prefix[:-1]] = dec.eval().requires_grad_(False)
        if not decoders:
            raise ModelFileError(f"{stem}: holds no decoder weights")
        voices, broken = {}, {}
        for k, v in tensors.items():
            if k.startswith("voice."):
                vec = v.float().numpy()
                if vec.shape != (cfg.speaker_dim,) or not np.isfinite(vec).all() or not np.any(vec):
                    broken[k[len("voice."):]] = (f"its speaker vector has shape {tuple(vec.shape)}, not "
                                                 f"({cfg.speaker_dim},)" if vec.shape != (cfg.speaker_dim,)
                                                 else "its speaker vector is not finite or is all zero")
                else:
                    voices[k[len("voice."):]] = vec
        if not voices:
            raise ModelFileError(f"{stem}: holds no usable voice" + (f" ({', '.join(broken)} broken)" if broken else ""))
        model = cls(cfg, voices, decoders.get("student"), decoders.get("teacher"), meta)
        model.broken, model.stem = broken, stem
        return model.to(device)

    def own_vocoder(self, vocoder: str) -> Path | None:
        """The stem of this model's own copy of `vocoder` when one lies beside it (else None: the shared one)."""
        name = str(vocoder).strip().lower()
        if self.stem is None or name not in OWN_VOCODERS:
            return None
        own = own_vocoder_stem(self.stem, name)
        return own if own.with_suffix(".safetensors").is_file() else None  # where save_checkpoint writes it

    def to(self, device: str | torch.device) -> "VoiceModel":
        self.device = torch.device(device)
        for dec in (self.student, self.teacher):
            if dec is not None:
                dec.to(self.device)
        return self

    # ------------------------------------------------------------- inference
    def speaker(self, voice: str | None) -> np.ndarray:
        if voice is None:
            voice = self.meta.get("default_voice") or sorted(self.voices)[0]
        if voice in self.broken:
            raise ComoliveError(f"voice '{voice}' is broken in this model file: {self.broken[voice]}")
        if voice not in self.voices:
            raise ComoliveError(f"unknown voice '{voice}' (available: {', '.join(sorted(self.voices))})")
        return self.voices[voice]

    def decoder_or_none(self, sampler: str) -> EDMDecoder | None:
        if sampler == "student":
            return self.student
        if self.teacher is None and self.stem is not None and teacher_stem(self.stem).with_suffix(".json").exists():
            self.teacher = self._load_teacher(teacher_stem(self.stem))
        return self.teacher

    def decoder(self, sampler: str) -> EDMDecoder:
        dec = self.decoder_or_none(sampler)
        if dec is None:
            where = f" (no {teacher_stem(self.stem)}.safetensors beside it)" if sampler == "teacher" and self.stem else ""
            raise ComoliveError(f"this model has no {sampler} decoder{where}")
        return dec

    def _load_teacher(self, stem: Path) -> EDMDecoder:
        """The teacher file beside a student-only model: a voice model of the same configuration."""
        other = VoiceModel.load(stem, device=self.device)
        if other.teacher is None or other.cfg != self.cfg:
            raise ModelFileError(f"{stem}: not the teacher of {self.stem} (no teacher, or another configuration)")
        return other.teacher

    @torch.no_grad()
    def decode(self, feats: dict[str, torch.Tensor], steps: int = 1, sampler: str = "student", seed: int = 0,
               frame_offset: int = 0, solver: str = "heun") -> torch.Tensor:
        """Batch of features (as models.dataset.collate makes) -> log-mel [B, M, T].

        Noise is drawn for absolute frames frame_offset.. so pieces of a file decode like the whole."""
        dec = self.decoder(sampler)
        feats = {k: v.to(self.device) for k, v in feats.items()}
        cond = dec.encode_condition(feats)
        b, t = cond.shape[0], cond.shape[2]

        def noise(step: int) -> torch.Tensor:
            z = torch.from_numpy(frame_noise(seed, step, frame_offset, t, self.cfg.n_mels))
            return z.unsqueeze(0).expand(b, -1, -1).to(self.device)

        x = dec.sample(cond, noise, steps=steps, solver=solver)
        return unit_to_mel(x, self.cfg)
