"""Live pitch on a note scale: the singer's f0, the converted voice's f0, and where the output should be.

Singers look here for octave errors: the output trace should sit on the dashed "expected" line (input + key
shift); a trace a whole octave off is flagged in red.
"""
from __future__ import annotations

import math
from collections import deque

from PyQt6.QtCore import QPointF, QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PyQt6.QtWidgets import QWidget

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
IN_COLOUR = QColor(90, 170, 255)
OUT_COLOUR = QColor(255, 150, 60)
EXPECT_COLOUR = QColor(160, 160, 170)


def hz_to_midi(f0: float | None) -> float | None:
    if f0 is None or not math.isfinite(f0) or f0 <= 0:
        return None
    return 69.0 + 12.0 * math.log2(f0 / 440.0)


def note_name(midi: float) -> str:
    """69.3 -> 'A4 +30¢'."""
    n = round(midi)
    cents = round((midi - n) * 100)
    return f"{NOTE_NAMES[n % 12]}{n // 12 - 1} {cents:+d}¢"


def octave_error(in_midi: float | None, out_midi: float | None, key: float) -> bool:
    """True when the output sits about a whole octave (or more) away from input + key."""
    if in_midi is None or out_midi is None:
        return False
    return abs(out_midi - (in_midi + key)) >= 10.0


class PitchView(QWidget):
    """Scrolling history of input/output f0 (one point per refresh); push() adds a point."""

    def __init__(self, history: int = 150, parent: QWidget | None = None):
        super().__init__(parent)
        self.key = 0.0
        self.inputs: deque[float | None] = deque(maxlen=history)
        self.outputs: deque[float | None] = deque(maxlen=history)
        self.setMinimumSize(320, 200)
        self.setToolTip("Pitch: blue = your voice, orange = converted voice, dashed = where the converted voice "
                        "should be (your voice + key shift)")

    def sizeHint(self) -> QSize:
        return QSize(560, 300)

    def set_key(self, key: float) -> None:
        self.key = float(key)
        self.update()

    def push(self, in_f0: float | None, out_f0: float | None) -> None:
        self.inputs.append(hz_to_midi(in_f0))
        self.outputs.append(hz_to_midi(out_f0))
        self.update()

    def clear(self) -> None:
        self.inputs.clear()
        self.outputs.clear()
        self.update()

    def _range(self) -> tuple[float, float]:
        vals = [v for v in self.inputs if v is not None] + [v for v in self.outputs if v is not None]
        vals += [v + self.key for v in self.inputs if v is not None]
        if not vals:
            return 48.0, 72.0  # C3..C5
        lo, hi = min(vals) - 2, max(vals) + 2
        if hi - lo < 24:
            mid = (hi + lo) / 2
            lo, hi = mid - 12, mid + 12
        return math.floor(lo), math.ceil(hi)

    def _trace(self, values, x0: float, dx: float, y) -> QPainterPath:
        path, pen_down = QPainterPath(), False
        for i, v in enumerate(values):
            if v is None:
                pen_down = False
                continue
            pt = QPointF(x0 + i * dx, y(v))
            if pen_down:
                path.lineTo(pt)
            else:
                path.moveTo(pt)
                pen_down = True
        return path

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), QColor(22, 22, 26))
        fm = p.fontMetrics()
        head = fm.height() + 8
        left = fm.horizontalAdvance("C#5 ") + 6
        plot = QRectF(left, head, w - left - 6, h - head - 6)
        lo, hi = self._range()

        def y(m: float) -> float:
            return plot.bottom() - (m - lo) / (hi - lo) * plot.height()

        for n in range(int(lo), int(hi) + 1):
            is_c = n % 12 == 0
            black = NOTE_NAMES[n % 12].endswith("#")
            p.setPen(QPen(QColor(70, 70, 80) if is_c else QColor(40, 40, 46) if not black else QColor(33, 33, 38),
                          1))
            p.drawLine(QPointF(plot.left(), y(n)), QPointF(plot.right(), y(n)))
            if is_c or (hi - lo <= 30 and n % 12 in (4, 7, 9)):
                p.setPen(QColor(150, 150, 160) if is_c else QColor(100, 100, 110))
                p.drawText(QRectF(2, y(n) - fm.height() / 2, left - 6, fm.height()),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{NOTE_NAMES[n % 12]}{n // 12 - 1}")

        n_hist = self.inputs.maxlen or 1
        dx = plot.width() / max(1, n_hist - 1)
        x0 = plot.right() - (len(self.inputs) - 1) * dx
        p.setClipRect(plot)
        expected = [None if v is None else v + self.key for v in self.inputs]
        p.setPen(QPen(EXPECT_COLOUR, 1.2, Qt.PenStyle.DashLine))
        p.drawPath(self._trace(expected, x0, dx, y))
        # the input wide underneath, the output narrow on top: where they agree, both stay visible
        for values, colour, width in ((self.inputs, IN_COLOUR, 5.0), (self.outputs, OUT_COLOUR, 2.0)):
            p.setPen(QPen(colour, width))
            p.drawPath(self._trace(values, x0, dx, y))
            dot = QPen(colour, 4.0)  # lone readings (short notes, a slow machine) show as dots
            dot.setCapStyle(Qt.PenCapStyle.RoundCap)
            p.setPen(dot)
            for i, v in enumerate(values):
                if v is not None and (i == 0 or values[i - 1] is None) and (i + 1 == len(values) or
                                                                            values[i + 1] is None):
                    p.drawPoint(QPointF(x0 + i * dx, y(v)))
        p.setClipping(False)

        # header: the current notes in words
        cur_in = self.inputs[-1] if self.inputs else None
        cur_out = self.outputs[-1] if self.outputs else None
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        x = 8.0
        for label, val, colour in (("in", cur_in, IN_COLOUR), ("out", cur_out, OUT_COLOUR)):
            text = f"{label} {note_name(val) if val is not None else '—'}"
            p.setPen(colour)
            p.drawText(QPointF(x, fm.ascent() + 4), text)
            x += fm.horizontalAdvance(text) + 24
        if octave_error(cur_in, cur_out, self.key):
            p.setPen(QColor(255, 80, 80))
            p.drawText(QPointF(x, fm.ascent() + 4), "OCTAVE?")
        p.end()
