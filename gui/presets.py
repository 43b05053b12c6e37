"""What the panel remembers: every control's value, and named presets a performer switches between mid-show.

Stored as one TOML file in the user's config folder (`$COMOLIVE_CONFIG_DIR` overrides it, which tests use).
Devices are remembered by name, not index: indices change when a device is plugged in or a server starts.
A file that cannot be read never stops the panel: it opens with defaults and says why.
"""
from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from models.errors import ComoliveError

CONFIG_ENV = "COMOLIVE_CONFIG_DIR"
FILE_NAME = "panel.toml"

# The part of the settings a preset carries: the voice and how loud it is, not the sound cards.
PRESET_FIELDS = ("model", "voice", "key", "formant", "pitch", "steps", "gate_db", "gate_hold_ms", "gate_floor_db",
                 "input_gain_db", "output_gain_db", "monitor_gain_db")
# Of those, the ones whose absence from a stored preset means None (the embedded model, the model's default
# voice): None is not written to the file, and a preset saved before "model" existed was the default model's.
NONE_PRESET_FIELDS = ("model", "voice")
# Of those, what a running loop takes without a restart (LiveLoop.set); the rest applies at the next start.
LIVE_FIELDS = ("voice", "key", "formant", "gate_db", "gate_hold_ms", "gate_floor_db", "input_gain_db",
               "output_gain_db", "monitor_gain_db", "bypass")
SECTIONS = {
    "audio": ("hostapi", "input_device", "output_device", "monitor_device", "sample_rate", "input_gain_db",
              "output_gain_db", "monitor_gain_db", "record", "record_dir"),
    "voice": ("model", "voice", "key", "formant", "pitch", "steps", "gate_db", "gate_hold_ms", "gate_floor_db",
              "vocoder", "device"),
    "latency": ("block_ms", "margin_ms"),
}


@dataclass
class PanelSettings:
    hostapi: str | None = None
    input_device: str | None = None
    output_device: str | None = None
    monitor_device: str | None = None
    sample_rate: int | None = None
    input_gain_db: float = 0.0
    output_gain_db: float = 0.0
    monitor_gain_db: float = 0.0
    bypass: bool = False                 # never persisted: a show always starts with the converted voice
    record: bool = False
    record_dir: str | None = None
    model: str | None = None             # voice model file (stem); None: the embedded default
    voice: str | None = None
    key: float = 0.0
    formant: float = 0.0
    pitch: str = "fcpe"
    steps: int = 1
    gate_db: float = -50.0
    gate_hold_ms: float = 200.0
    gate_floor_db: float = -90.0         # the panel's "next to silence"
    vocoder: str | None = None           # None: the session's default
    device: str | None = None            # None: CUDA when present, else CPU
    block_ms: float = 80.0               # 80, 60 and 40 ms (and their multiples) never wait for a content chunk
    margin_ms: float = 0.0               # output safety margin; 0 = one block (the loop's default)
    presets: dict[str, dict] = field(default_factory=dict)
    preset: str | None = None            # the preset last switched to

    def preset_values(self) -> dict:
        return {k: getattr(self, k) for k in PRESET_FIELDS}

    def apply_preset(self, name: str) -> dict:
        """Take the values of preset `name`; returns the fields whose value changed."""
        if name not in self.presets:
            raise ComoliveError(f"no preset named '{name}'")
        changed = {}
        for k, v in self.presets[name].items():
            if k in PRESET_FIELDS and getattr(self, k) != v:
                setattr(self, k, v)
                changed[k] = v
        self.preset = name
        return changed

    def save_preset(self, name: str) -> None:
        name = name.strip()
        if not name:
            raise ComoliveError("a preset needs a name")
        self.presets[name] = self.preset_values()
        self.preset = name


_TYPES = {f.name: f.type for f in fields(PanelSettings)}
# The panel's own control ranges (gui/audio_panel.py, voice_panel.py, tune_panel.py): a stored value outside
# them is not loaded (the default is used, and the note names it).
RANGES = {"sample_rate": (16000, 96000), "input_gain_db": (-40.0, 40.0), "output_gain_db": (-60.0, 20.0),
          "monitor_gain_db": (-60.0, 20.0), "key": (-24.0, 24.0), "formant": (-12.0, 12.0), "steps": (1, 8),
          "gate_db": (-90.0, 0.0), "gate_hold_ms": (0.0, 2000.0),
          "gate_floor_db": (-90.0, 0.0), "block_ms": (10.0, 1000.0),
          "margin_ms": (0.0, 10000.0)}


def _coerce(name: str, value):
    """Check one stored value against the field's type and range; raise ValueError if it does not fit."""
    value = _coerce_type(name, value)
    lo, hi = RANGES.get(name, (None, None))
    if lo is not None and value is not None and not lo <= value <= hi:
        raise ValueError
    return value


def _coerce_type(name: str, value):
    kind = _TYPES[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        return float(value)
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
        return value
    if kind.startswith("str"):
        if not isinstance(value, str):
            raise ValueError
        return value
    raise ValueError


def settings_from_dict(data: dict) -> tuple[PanelSettings, list[str]]:
    """Settings from the parsed file; values of the wrong type are dropped (and named) rather than fatal."""
    s = PanelSettings()
    problems = []
    for section, names in SECTIONS.items():
        table = data.get(section, {})
        for name in names:
            if name in table:
                try:
                    setattr(s, name, _coerce(name, table[name]))
                except ValueError:
                    problems.append(f"{section}.{name}")
    for pname, table in (data.get("presets") or {}).items():
        values = dict.fromkeys(NONE_PRESET_FIELDS)
        for name in PRESET_FIELDS:
            if name in table:
                try:
                    values[name] = _coerce(name, table[name])
                except ValueError:
                    problems.append(f"presets.{pname}.{name}")
        s.presets[pname] = values
    if isinstance(data.get("preset"), str) and data["preset"] in s.presets:
        s.preset = data["preset"]
    return s, problems


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def settings_to_toml(s: PanelSettings) -> str:
    d = asdict(s)
    lines = ["# comolive control panel settings (written by the panel; safe to edit while it is closed)"]
    if s.preset is not None:
        lines.append(f"preset = {_toml_value(s.preset)}")
    for section, names in SECTIONS.items():
        lines.append(f"\n[{section}]")
        lines += [f"{n} = {_toml_value(d[n])}" for n in names if d[n] is not None]
    for pname, values in s.presets.items():
        lines.append(f"\n[presets.{_toml_value(pname)}]")
        lines += [f"{n} = {_toml_value(v)}" for n, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_dir() -> Path:
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("comolive"))


class SettingsStore:
    """Loads and saves PanelSettings as TOML; `problem` says why the file was (partly) ignored, if it was."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else config_dir() / FILE_NAME
        self.problem: str | None = None

    def load(self) -> PanelSettings:
        self.problem = None
        if not self.path.exists():
            return PanelSettings()
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            self.problem = f"settings file {self.path} is unreadable ({e}); starting with defaults"
            return PanelSettings()
        s, bad = settings_from_dict(data)
        if bad:
            self.problem = (f"settings file {self.path}: invalid or out-of-range values for {', '.join(bad)} "
                            "were reset to their defaults")
        return s

    def save(self, s: PanelSettings) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(settings_to_toml(s), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as e:
            raise ComoliveError(f"cannot save settings to {self.path}: {e}") from None
