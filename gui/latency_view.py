"""The latency budget part by part, the measured delay, and whether the machine keeps up.

Latency is a sum the performer can read: one coloured segment per part (block, each stage's lookahead,
output margin, device buffers). Below it: per-block compute p50/p99 against the block (the block is the
deadline), dropouts and the compute device.
"""
from __future__ import annotations

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QPainter
from PyQt6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

PALETTE = [QColor(c) for c in ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
                               "#ff9da7", "#9c755f", "#bab0ac")]


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


class BudgetBar(QWidget):
    """A stacked bar: one segment per latency part, widths proportional to milliseconds."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.parts: dict[str, float] = {}
        self.setMinimumHeight(22)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(400, 24)

    def set_parts(self, parts: dict[str, float]) -> None:
        self.parts = {k: float(v) for k, v in parts.items()}  # colours by position, as in the legend
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        total = sum(v for v in self.parts.values() if v > 0)
        p.fillRect(self.rect(), QColor(40, 40, 46))
        if total > 0:
            x = 0.0
            for i, (name, ms) in enumerate(self.parts.items()):
                if ms <= 0:
                    continue
                width = self.width() * ms / total
                rect = QRectF(x, 0, width, self.height())
                p.fillRect(rect, PALETTE[i % len(PALETTE)])
                if width > 28:
                    p.setPen(QColor(15, 15, 15))
                    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, f"{ms:.0f}")
                x += width
        p.end()


class ComputeBar(QWidget):
    """Compute time per block against the block: p50 filled, p99 as a line; red past 100%."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.block_ms = 0.0
        self.p50 = self.p99 = None
        self.setMinimumHeight(14)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(400, 16)

    def set_values(self, block_ms: float, p50: float | None, p99: float | None) -> None:
        self.block_ms, self.p50, self.p99 = block_ms, p50, p99
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(40, 40, 46))
        if self.block_ms > 0 and self.p50 is not None:
            frac50 = min(1.0, self.p50 / self.block_ms)
            colour = QColor(60, 200, 90) if (self.p99 or 0) < 0.7 * self.block_ms else \
                QColor(235, 200, 50) if (self.p99 or 0) < self.block_ms else QColor(235, 60, 50)
            p.fillRect(QRectF(0, 0, self.width() * frac50, self.height()), colour)
            if self.p99 is not None:
                x = self.width() * min(1.0, self.p99 / self.block_ms)
                p.fillRect(QRectF(x - 1.5, 0, 3, self.height()), QColor(250, 250, 250))
        p.end()


class LatencyView(QWidget):
    """set_budget() before and during a run; set_stats() with each LiveLoop.stats() snapshot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = BudgetBar()
        self.legend = QLabel("latency budget: load the voice to compute it")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.total = QLabel("—")
        self.measured = QLabel("—")
        self.compute = QLabel("—")
        self.compute_bar = ComputeBar()
        self.dropouts = QLabel("0")
        self.device = QLabel("—")
        big = self.total.font()
        big.setPointSizeF(big.pointSizeF() * 1.4)
        big.setBold(True)
        for lab in (self.total, self.measured):
            lab.setFont(big)
        grid = QGridLayout()
        grid.addWidget(QLabel("declared"), 0, 0)
        grid.addWidget(self.total, 0, 1)
        grid.addWidget(QLabel("measured"), 0, 2)
        grid.addWidget(self.measured, 0, 3)
        grid.addWidget(QLabel("compute / block"), 1, 0)
        grid.addWidget(self.compute, 1, 1, 1, 3)
        grid.addWidget(self.compute_bar, 2, 0, 1, 4)
        grid.addWidget(QLabel("dropouts"), 3, 0)
        grid.addWidget(self.dropouts, 3, 1)
        grid.addWidget(QLabel("running on"), 3, 2)
        grid.addWidget(self.device, 3, 3)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.bar)
        lay.addWidget(self.legend)
        lay.addLayout(grid)
        self.parts: dict[str, float] = {}

    def set_budget(self, parts: dict[str, float], note: str = "") -> None:
        self.parts = dict(parts)
        self.bar.set_parts(parts)
        items = []
        for i, (name, ms) in enumerate(parts.items()):
            if abs(ms) < 0.5:
                continue  # e.g. rounding, a zero device buffer: in the sum, not worth a label
            colour = PALETTE[i % len(PALETTE)].name()
            items.append(f"<span style='color:{colour}'>■</span> {name} {ms:.0f}")
        total = sum(parts.values())
        self.legend.setText(" &nbsp; ".join(items) + (f" &nbsp; <i>{note}</i>" if note else ""))
        self.total.setText(_ms(total) if parts else "—")

    def set_unknown(self, why: str) -> None:
        self.parts = {}
        self.bar.set_parts({})
        self.legend.setText(why)
        self.total.setText("—")

    def set_stats(self, st) -> None:
        """One LiveLoop.stats() snapshot."""
        parts = getattr(st, "latency_parts", None)
        if parts and parts != self.parts:
            self.set_budget(parts)
        self.measured.setText(_ms(getattr(st, "measured_latency_ms", None)))
        block = float(getattr(st, "block_ms", 0.0) or 0.0)
        p50, p99 = getattr(st, "compute_ms_p50", None), getattr(st, "compute_ms_p99", None)
        if p50 is not None and block > 0:
            self.compute.setText(f"p50 {p50:.1f} ms · p99 {p99:.1f} ms of a {block:.0f} ms block "
                                 f"({100 * p99 / block:.0f}% at p99)")
        else:
            self.compute.setText("—")
        self.compute_bar.set_values(block, p50, p99)
        drops = int(getattr(st, "dropouts", 0) or 0)
        failed = int(getattr(st, "failed_blocks", 0) or 0)
        self.dropouts.setText(f"{drops}" + (f" (overruns {st.overruns})" if getattr(st, "overruns", 0) else "")
                              + (f" (failed blocks {failed})" if failed else ""))
        self.dropouts.setToolTip(str(getattr(st, "last_failure", "") or ""))
        self.dropouts.setStyleSheet("color: #e15759; font-weight: bold" if drops else "")
        self.device.setText(str(getattr(st, "device", "—")))

    def set_device(self, device: str) -> None:
        self.device.setText(device)
