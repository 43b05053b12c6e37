"""Audio controls: host API, input/output/monitor devices (with their rates), sample rate, gains, recording."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QFileDialog, QFormLayout, QHBoxLayout, QLineEdit, QPushButton, QWidget

from gui.controls import Bindings, set_items

RATES = (16000, 22050, 32000, 44100, 48000, 88200, 96000)


def device_label(d) -> str:
    return f"{d.name} [{d.hostapi}, {d.default_samplerate / 1000:g} kHz]"


class AudioPanel(QWidget):
    """Device lists come from realtime.devices (set_devices); the Refresh button asks for a re-scan."""

    refresh_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.b = Bindings(self)
        self.changed = self.b.changed
        b = self.b
        self.hostapi = b.combo("hostapi", [("all", None)], tip="Restrict the device lists to one host API")
        self.input_device = b.combo("input_device", [("system default", None)], tip="Microphone / input")
        self.output_device = b.combo("output_device", [("system default", None)],
                                     tip="Main output: speakers, interface or a virtual cable into OBS")
        self.monitor_device = b.combo("monitor_device", [("none", None)],
                                      tip="Optional second output carrying the same sound (e.g. headphones)")
        self.sample_rate = b.combo("sample_rate", [("input device's rate", None)] + [(f"{r} Hz", r) for r in RATES],
                                   tip="Stream sample rate (the model resamples internally)")
        self.input_gain_db = b.double("input_gain_db", -40, 40, 1, " dB", 1, "Input gain (live)")
        self.output_gain_db = b.double("output_gain_db", -60, 20, 1, " dB", 1, "Output gain (live)")
        self.monitor_gain_db = b.double("monitor_gain_db", -60, 20, 1, " dB", 1, "Monitor gain (live)")
        self.record = b.check("record", "record input and output", "Writes input.wav and output.wav into the "
                                                                    "folder below (from the next start)")
        self.record_dir = QLineEdit()
        self.record_dir.setObjectName("record_dir")
        self.record_dir.setPlaceholderText("folder for input.wav / output.wav")
        self.record_dir.editingFinished.connect(
            lambda: self.changed.emit("record_dir", self.record_dir.text().strip() or None))
        browse = QPushButton("…")
        browse.setToolTip("Choose the recording folder")
        browse.clicked.connect(self._browse)
        self.refresh = QPushButton("Re-scan devices")
        self.refresh.setToolTip("Look for devices again (after plugging one in or starting a JACK server)")
        self.refresh.clicked.connect(self.refresh_requested.emit)
        rec_row = QHBoxLayout()
        rec_row.addWidget(self.record_dir, 1)
        rec_row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("&Host API", self.hostapi)
        form.addRow("&Input", self.input_device)
        form.addRow("&Output", self.output_device)
        form.addRow("&Monitor", self.monitor_device)
        form.addRow("Sample &rate", self.sample_rate)
        form.addRow("Input gain", self.input_gain_db)
        form.addRow("Output gain", self.output_gain_db)
        form.addRow("Monitor gain", self.monitor_gain_db)
        form.addRow("", self.record)
        form.addRow("Record to", rec_row)
        form.addRow("", self.refresh)
        self._devices = []

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Recording folder", self.record_dir.text())
        if path:
            self.record_dir.setText(path)
            self.changed.emit("record_dir", path)

    def set_devices(self, hostapis: list[str], devices: list) -> None:
        """Fill the pickers; devices are offered by name (what the loop matches and the settings remember)."""
        self._devices = list(devices)
        set_items(self.hostapi, [("all", None)] + [(h, h) for h in hostapis])
        self._fill()

    def _fill(self) -> None:
        api = self.hostapi.currentData()
        devs = [d for d in self._devices if api is None or d.hostapi == api]
        ins = [(device_label(d), d.name) for d in devs if d.max_input_channels > 0]
        outs = [(device_label(d), d.name) for d in devs if d.max_output_channels > 0]
        set_items(self.input_device, [("system default", None)] + ins)
        set_items(self.output_device, [("system default", None)] + outs)
        set_items(self.monitor_device, [("none", None)] + outs)

    def load(self, settings) -> None:
        self.b.show("hostapi", settings.hostapi)
        self._fill()
        self.b.load(settings)
        self.record_dir.setText(settings.record_dir or "")
