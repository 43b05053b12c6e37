"""Latency knobs: the block size, and the tuner that measures this machine and proposes the smallest safe block."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QFormLayout, QLabel, QProgressBar, QPushButton, QWidget

from gui.controls import Bindings


def result_rows(result) -> list[str]:
    """Lines of the tuner's table, whatever the row objects look like (dicts or dataclasses)."""
    rows = []
    for r in getattr(result, "table", None) or getattr(result, "rows", None) or []:
        get = r.get if isinstance(r, dict) else (lambda k, r=r: getattr(r, k, None))
        block, p50, p99 = get("block_ms"), get("compute_ms_p50"), get("compute_ms_p99")
        ratio, drops = get("ratio"), get("dropouts")
        text = f"{block:.0f} ms block: compute p50 {p50:.1f} / p99 {p99:.1f} ms" if block is not None else str(r)
        if ratio is not None:
            text += f" ({100 * ratio:.0f}%)"
        if drops is not None:
            text += f", {drops} dropouts"
        rows.append(text)
    return rows


class TunePanel(QWidget):
    tune_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.b = Bindings(self)
        self.changed = self.b.changed
        self.block_ms = self.b.double("block_ms", 10, 1000, 5, " ms", 0,
                                      "Audio block: smaller = less latency, more CPU per second; applies at the "
                                      "next start")
        self.tune = QPushButton("&Tune for this machine")
        self.tune.setObjectName("tune")
        self.tune.setToolTip("Runs the voice on a test signal at several block sizes (about 10 s, no audio "
                             "device needed) and applies the smallest block that keeps up with a safety margin")
        self.tune.clicked.connect(self.tune_requested.emit)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.result = QLabel("")
        self.result.setObjectName("tune_result")
        self.result.setWordWrap(True)
        form = QFormLayout(self)
        form.addRow("&Block size", self.block_ms)
        form.addRow("", self.tune)
        form.addRow("", self.progress)
        form.addRow("", self.result)

    def set_busy(self, busy: bool) -> None:
        self.tune.setEnabled(not busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # indeterminate until the tuner reports a fraction
            self.result.setText("measuring…")

    def on_progress(self, value) -> None:
        if isinstance(value, (int, float)) and 0 <= value <= 1:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * value))
        elif isinstance(value, str):
            self.result.setText(value)

    def show_result(self, result) -> None:
        lines = [f"proposed block: {result.block_ms:.0f} ms"] + result_rows(result)
        self.result.setText("\n".join(lines))

    def load(self, settings) -> None:
        self.b.load(settings)
