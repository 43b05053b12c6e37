"""Hyper-parameters of a voice model, readable as TOML.

One ModelConfig describes everything that must match between training and inference: the mel
analysis, the feature dimensions, the denoiser's shape and lookahead, the EDM constants. It is
stored as JSON beside every checkpoint, and training runs read it (plus TrainConfig) from TOML.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from models.config_check import check_values
from models.errors import ComoliveError


FEATURE_FIELDS = ("sample_rate", "hop_length", "n_mels", "mel_min", "mel_max", "content_dim", "speaker_dim",
                  "content_encoder", "pitch_extractor")


def recorded_features(cache_config: dict, cache_pitch: str | None) -> dict:
    """The feature settings a feature cache's index.json records (only those it records; a cache from
    before content_encoder was recorded holds Whisper content)."""
    d = {k: cache_config[k] for k in FEATURE_FIELDS if k in cache_config}
    if cache_config:
        d.setdefault("content_encoder", "whisper")
    if cache_pitch:
        d["pitch_extractor"] = cache_pitch
    return d


@dataclass
class ModelConfig:
    # signal
    sample_rate: int = 22050
    hop_length: int = 256
    n_mels: int = 80
    mel_min: float = -11.5  # log-mel range mapped to [-1, 1] for the decoder
    mel_max: float = 2.5
    # conditioning features
    content_dim: int = 384
    content_units: int = 0  # > 0: content frames snap to this many k-means centres (models/content_units.py)
    content_encoder: str = "whisper"  # the content features it reads (engine/registry.CONTENT_ENCODERS)
    pitch_extractor: str = "fcpe"  # the f0 it was trained on (any extractor's Hz work; this one is the match)
    speaker_dim: int = 256
    cond_dim: int = 192
    # denoiser (non-causal WaveNet); receptive field = 1 + sum over layers of (kernel-1)*dilation
    layers: int = 10
    channels: int = 128
    kernel_size: int = 3
    dilation_cycle: int = 1  # dilation = 2 ** (i % dilation_cycle); 1 means all dilations are 1
    lookahead_frames: int = 2  # right context of the whole denoiser, in mel frames
    # EDM (Karras et al.) constants, as in CoMoSVC
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.2
    p_std: float = 1.2
    # vocoder the mels are meant for
    vocoder: str = "hifigan-universal"

    def feature_settings(self) -> dict:
        """What a feature cache depends on: two configs that agree here can share one (training/preprocess.py)."""
        return {k: getattr(self, k) for k in FEATURE_FIELDS}

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "model config") -> "ModelConfig":
        return cls(**check_values(cls, d, where))


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 16
    segment_frames: int = 128
    lr: float = 2e-4
    lr_min: float = 2e-5
    grad_clip: float = 1.0
    parallel_prob: float = 0.8  # chance of pairing source features of voice A with target mel of voice B
    aug_shift_prob: float = 0.0  # chance of a random formant/key shift of a training item (models/formant.py)
    aug_shift_max: float = 0.0  # its range, +- semitones
    exclude_voices: list = field(default_factory=list)  # voices never trained on (zero-shot evaluation)
    utt_speaker_prob: float = 0.0  # chance of conditioning on the utterance's own d-vector, not the voice mean
    timbre_prob: float = 0.0  # chance of a virtual voice (FEATS/timbres.npz, `main.py timbres`) as the target
    pert_prob: float = 1.0  # chance that a real recording's content comes from its timbre-perturbed copy
    retrieval_prob: float = 0.0  # chance that an item's content is blended with other recordings of its voice
    speaker_drop: float = 0.0  # teacher: chance of an item conditioned on no speaker (zeros), for speaker guidance
    data_weights: list = field(default_factory=list)  # share of items from each feature folder (FEATS=a,b,...)
    checkpoint_every: int = 500
    validate_every: int = 1000
    log_every: int = 50
    seed: int = 0
    threads: int = 2
    # consistency distillation
    distill_steps: int = 4000
    distill_n: int = 25  # N in the Karras discretisation
    ema_decay: float = 0.95
    teacher_solver: str = "heun"
    speaker_guidance: float = 0.0  # w: the teacher's ODE steps follow D(s) + w (D(s) - D(no speaker)) (models/consistency.py)
    # progressive distillation (distill --method progressive): halvings from base_steps Heun steps down to 1
    progressive_base_steps: int = 8
    progressive_round_steps: int = 200


def read_config_toml(path: str | Path, sections: dict[str, type | None]) -> dict:
    """A TOML config with [model] and [train] sections -> its dict; unknown sections and unknown keys of the
    sections whose dataclass is given are refused with the file's name."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ComoliveError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ComoliveError(f"{p}: not valid TOML ({e})") from None
    unknown = set(raw) - set(sections)
    if unknown:
        raise ComoliveError(f"{p}: unknown sections {sorted(unknown)} (expected {', '.join(f'[{k}]' for k in sections)})")
    for sec, kind in sections.items():
        if kind is not None and sec in raw:
            check_values(kind, raw[sec], f"{p} [{sec}]")
    return raw


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def load(cls, path: str | Path | None) -> "RunConfig":
        if path is None:
            return cls()
        raw = read_config_toml(path, {"model": None, "train": TrainConfig})
        return cls(ModelConfig.from_dict(raw.get("model", {}), f"{path} [model]"), TrainConfig(**raw.get("train", {})))

    def to_toml(self) -> str:
        def fmt(v):
            return json.dumps(v) if isinstance(v, str) else repr(v).lower() if isinstance(v, bool) else repr(v)

        lines = ["[model]"] + [f"{k} = {fmt(v)}" for k, v in dataclasses.asdict(self.model).items()]
        lines += ["", "[train]"] + [f"{k} = {fmt(v)}" for k, v in dataclasses.asdict(self.train).items()]
        return "\n".join(lines) + "\n"
