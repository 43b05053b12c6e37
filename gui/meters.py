"""Level meters: a vertical bar in dBFS with a falling peak-hold line, readable at a glance from a mic stand."""
from __future__ import annotations

import math

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter
from PyQt6.QtWidgets import QWidget

FLOOR_DB = -60.0
WARN_DB = -12.0
CLIP_DB = -3.0


class LevelMeter(QWidget):
    """Shows the level last set with set_level(db); the peak marker holds ~1 s, then falls."""

    HOLD_TICKS = 25        # refreshes at ~25 Hz
    FALL_DB_PER_TICK = 1.5

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.level_db = FLOOR_DB
        self.peak_db = FLOOR_DB
        self._hold = 0
        self.setMinimumSize(44, 160)
        self.setToolTip(f"{title} level (dBFS); the line marks the recent peak")

    def sizeHint(self) -> QSize:
        return QSize(54, 260)

    def set_level(self, db: float | None) -> None:
        db = FLOOR_DB if db is None or not math.isfinite(db) else max(FLOOR_DB, min(0.0, float(db)))
        self.level_db = db
        if db >= self.peak_db:
            self.peak_db, self._hold = db, self.HOLD_TICKS
        elif self._hold > 0:
            self._hold -= 1
        else:
            self.peak_db = max(db, self.peak_db - self.FALL_DB_PER_TICK)
        self.update()

    def _y(self, db: float, top: float, height: float) -> float:
        return top + height * (1.0 - (db - FLOOR_DB) / -FLOOR_DB)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        label_h = p.fontMetrics().height() + 2
        top, bottom = 4.0, h - 2 * label_h - 4.0
        height = max(10.0, bottom - top)
        bar = QRectF(6, top, w - 12, height)
        p.fillRect(bar, QColor(30, 30, 34))
        # the lit part, coloured by zone
        for lo, hi, colour in ((FLOOR_DB, WARN_DB, QColor(60, 200, 90)), (WARN_DB, CLIP_DB, QColor(235, 200, 50)),
                               (CLIP_DB, 0.0, QColor(235, 60, 50))):
            if self.level_db > lo:
                y_hi = self._y(min(self.level_db, hi), top, height)
                y_lo = self._y(lo, top, height)
                p.fillRect(QRectF(bar.left(), y_hi, bar.width(), y_lo - y_hi), colour)
        if self.peak_db > FLOOR_DB:
            y = self._y(self.peak_db, top, height)
            p.fillRect(QRectF(bar.left(), y - 1, bar.width(), 2), QColor(250, 250, 250))
        p.setPen(QColor(90, 90, 96))
        for db in (-48, -36, -24, -12, -6):
            y = self._y(db, top, height)
            p.drawLine(int(bar.left()), int(y), int(bar.left() + 4), int(y))
        p.setPen(self.palette().windowText().color())
        text = "—" if self.level_db <= FLOOR_DB else f"{self.level_db:.0f}"
        p.drawText(QRectF(0, bottom + 2, w, label_h), Qt.AlignmentFlag.AlignCenter, text)
        p.drawText(QRectF(0, bottom + 2 + label_h, w, label_h), Qt.AlignmentFlag.AlignCenter, self.title)
        p.end()
