"""Voice controls: which voice model and voice (or a clip, and adapting to it), key and formant shift, pitch
extractor, sampler steps, noise gate, compute device."""
from __future__ import annotations

from pathlib import Path

from PyQt6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from engine.registry import PITCH_EXTRACTORS
from gui.controls import Bindings, set_items
from models.vocoders import VOCODERS

DEFAULT_MODEL_LABEL = "embedded default"
PITCH_LABELS = {"fcpe": "FCPE (accurate, default)", "dio": "DIO (fastest)", "harvest": "Harvest (slow, smooth)"}


class VoicePanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.b = Bindings(self)
        self.changed = self.b.changed
        b = self.b
        self.model = b.combo("model", [(DEFAULT_MODEL_LABEL, None)],
                             tip="Voice model: the embedded default, a model `voice add` wrote to ./voices, or any "
                                 "other (Open…). Chosen while stopped; its voices fill the list below")
        self.open_model = QPushButton("Open…")
        self.open_model.setToolTip("Open a voice model file (.safetensors) made by `main.py voice add` or training")
        self.voice = b.combo("voice", [("loading voices…", None)],
                             tip="Target voice (live: switches without restarting)")
        self.key = b.double("key", -24, 24, 1, " st", 1, "Key shift in semitones (live). +12 = one octave up")
        self.formant = b.double("formant", -12, 12, 0.5, " st", 1,
                                "Formant shift (live): negative = darker/larger, positive = brighter/smaller")
        self.pitch = b.combo("pitch", [(PITCH_LABELS.get(p, p), p) for p in PITCH_EXTRACTORS],
                             tip="Pitch extractor (applies at the next start)")
        self.steps = b.integer("steps", 1, 8, "", "Decoder steps: 1 = one-step (fastest, live default); "
                                                  "more = quality mode, more compute per block (next start)")
        self.gate_db = b.double("gate_db", -90, 0, 1, " dB", 0,
                                "Noise gate threshold (live): input below it for the hold is silence out")
        self.gate_hold_ms = b.double("gate_hold_ms", 0, 2000, 10, " ms", 0,
                                     "How long the gate stays open after the voice drops below the threshold")
        self.gate_floor_db = b.double("gate_floor_db", -90, 0, 1, " dB", 0,
                                      "How far the closed gate turns the output down (-90 dB: next to "
                                      "silence). -40 keeps a trace of room tone between phrases")
        self.vocoder = b.combo("vocoder", [("auto (fast on CPU, best on GPU)", None)] + [(v, v) for v in VOCODERS],
                               tip="Vocoder (applies at the next start)")
        self.device = b.combo("device", [("auto (GPU if present)", None), ("CPU", "cpu"), ("CUDA GPU", "cuda")],
                              tip="Where the model runs (applies at the next start)")
        self.from_clip = QPushButton("From clip…")
        self.from_clip.setToolTip("Sing in the voice of a 3-10 s recording (one voice, no music); several files are "
                                  "averaged. Picking a voice in the list goes back to it.")
        self.adapt = QPushButton("Adapt")
        self.adapt.setToolTip("Fine-tune the decoder on the clip (300 steps, about 30 s on a 2-core CPU, while "
                              "stopped): the voice moves further towards the clip's singer. It lasts until "
                              "another voice, clip or model is chosen")
        self.adapt.setEnabled(False)
        self.adapt.setVisible(False)  # shown when the panel can adapt (main.py gives it the means)
        self.match_key = QPushButton("Match clip")
        self.match_key.setToolTip("Set the key that moves your singing into the clip's register: the whole "
                                  "semitones between the median pitch of your last seconds of singing and the "
                                  "clip's (sing a few seconds first)")
        self.match_key.setEnabled(False)  # until a clip is in use
        self.clip_label = QLabel("")
        self.clip_label.setWordWrap(True)
        self.clip_label.setVisible(False)  # until a clip is in use
        clip_buttons = QHBoxLayout()
        clip_buttons.addWidget(self.from_clip)
        clip_buttons.addWidget(self.adapt)
        clip_buttons.addStretch(1)
        clip_row = QVBoxLayout()
        clip_row.addLayout(clip_buttons)
        clip_row.addWidget(self.clip_label)
        key_row = QHBoxLayout()
        key_row.addWidget(self.key, 1)
        key_row.addWidget(self.match_key)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.open_model)
        form = QFormLayout(self)
        form.addRow("Voice model", model_row)
        form.addRow("&Voice", self.voice)
        form.addRow("Voice from clip", clip_row)
        key_label = QLabel("&Key shift")
        key_label.setBuddy(self.key)  # Alt+K still reaches the key
        form.addRow(key_label, key_row)
        form.addRow("&Formant shift", self.formant)
        form.addRow("&Pitch extractor", self.pitch)
        form.addRow("Sampler &steps", self.steps)
        form.addRow("Noise &gate", self.gate_db)
        form.addRow("Gate &hold", self.gate_hold_ms)
        form.addRow("Gate f&loor", self.gate_floor_db)
        form.addRow("V&ocoder", self.vocoder)
        form.addRow("Compute &device", self.device)

    def show_reference(self, reference, adapted: bool = False) -> None:
        """Say which voice from clips is in use (None: the named voice is), and whether the decoder is adapted
        to it."""
        self.clip_label.setText("" if reference is None else
                                f"using {reference.name} ({reference.voice_seconds:.1f} s of voice"
                                f"{', decoder adapted' if adapted else ''})")
        self.clip_label.setVisible(reference is not None)
        self.adapt.setEnabled(reference is not None and not adapted)
        self.match_key.setEnabled(reference is not None)

    def set_models(self, stems) -> None:
        """The models offered besides the embedded default (their file name shown, their path kept)."""
        set_items(self.model, [(DEFAULT_MODEL_LABEL, None)] + [(Path(m).name, str(m)) for m in stems])

    def offer_model(self, stem: str | None) -> None:
        """Make sure a model (e.g. one just opened) is in the list, so showing it does not read "not found"."""
        if stem is not None and self.model.findData(stem) < 0:
            self.model.addItem(Path(stem).name, stem)

    def set_voices(self, names: list[str], default: str | None) -> None:
        items = [(f"{n} (default)" if n == default else n, n) for n in names]
        set_items(self.voice, items)

    def set_vocoders(self, names) -> None:
        set_items(self.vocoder, [("auto (fast on CPU, best on GPU)", None)] + [(v, v) for v in names])

    def load(self, settings) -> None:
        self.offer_model(settings.model)
        self.b.load(settings)
