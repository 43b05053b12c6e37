"""Latency knobs: the block size, and the tuner that measures this machine and proposes the smallest safe block."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QFormLayout, QLabel, QProgressBar, QPushButton, QWidget

from gui.controls import Bindings


def result_rows(result) -> list[str]:
    """The tuner's table, one line per block size tried."""
    return [f"{r.block_ms:.0f} ms: compute p50 {r.compute_ms_p50:.1f} / p99 {r.compute_ms_p99:.1f} ms "
            f"({100 * r.ratio_p99:.0f}% of the block), {r.dropouts} dropouts — {'ok' if r.ok else 'too slow'}"
            for r in result.rows]


class TunePanel(QWidget):
    tune_requested = pyqtSignal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.b = Bindings(self)
        self.changed = self.b.changed
        self.block_ms = self.b.double("block_ms", 10, 1000, 5, " ms", 0,
                                      "Audio block: smaller = less latency, more CPU per second; applies at the "
                                      "next start")
        self.margin_ms = self.b.double("margin_ms", 0, 10000, 10, " ms", 0,
                                       "Output safety margin: time the converted audio waits before it plays, so "
                                       "that slow blocks do not drop out. 'one block' is the usual choice; raise "
                                       "it if the dropout counter climbs (next start)")
        self.margin_ms.setSpecialValueText("one block")
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
        form.addRow("Safety &margin", self.margin_ms)
        form.addRow("", self.tune)
        form.addRow("", self.progress)
        form.addRow("", self.result)

    def set_busy(self, busy: bool) -> None:
        self.tune.setEnabled(not busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)  # indeterminate until the tuner reports a fraction
            self.result.setText("measuring…")

    def on_progress(self, values: tuple) -> None:
        """The tuner's progress(fraction, what) calls."""
        fraction = values[0] if values else None
        if isinstance(fraction, (int, float)):
            self.progress.setRange(0, 100)
            self.progress.setValue(int(100 * fraction))
        if len(values) > 1:
            self.result.setText(f"measuring: {values[1]}…")

    def show_result(self, result) -> None:
        head = (f"proposed block on {result.device}: {result.block_ms:.0f} ms (applied)" if result.block_ms else
                f"no block size kept up on {result.device}: try a lighter vocoder, fewer steps or the GPU")
        self.result.setText("\n".join([head] + result_rows(result)))

    def load(self, settings) -> None:
        self.b.load(settings)
