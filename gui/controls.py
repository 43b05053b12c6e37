"""Controls bound to a settings field by name: one place that turns widget edits into (field, value) changes.

Every panel builds its widgets through a Bindings object, so loading a preset updates every widget without
echoing changes back, and every edit arrives at the window as one `changed(field, value)` signal.
"""
from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget


class Bindings(QObject):
    changed = pyqtSignal(str, object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.widgets: dict[str, QWidget] = {}

    def _add(self, name: str, w: QWidget) -> None:
        w.setObjectName(name)
        self.widgets[name] = w

    def double(self, name: str, lo: float, hi: float, step: float, suffix: str = "", decimals: int = 1,
               tip: str = "") -> QDoubleSpinBox:
        w = QDoubleSpinBox()
        w.setRange(lo, hi)
        w.setSingleStep(step)
        w.setDecimals(decimals)
        w.setSuffix(suffix)
        w.setToolTip(tip)
        w.setKeyboardTracking(False)  # typing "-12" must not apply "-1" first
        w.valueChanged.connect(lambda v, n=name: self.changed.emit(n, float(v)))
        self._add(name, w)
        return w

    def integer(self, name: str, lo: int, hi: int, suffix: str = "", tip: str = "") -> QSpinBox:
        w = QSpinBox()
        w.setRange(lo, hi)
        w.setSuffix(suffix)
        w.setToolTip(tip)
        w.setKeyboardTracking(False)
        w.valueChanged.connect(lambda v, n=name: self.changed.emit(n, int(v)))
        self._add(name, w)
        return w

    def combo(self, name: str, items: list[tuple[str, object]] = (), tip: str = "") -> QComboBox:
        w = QComboBox()
        w.setToolTip(tip)
        set_items(w, items)
        w.activated.connect(lambda i, n=name, c=w: self.changed.emit(n, c.itemData(i)))
        self._add(name, w)
        return w

    def check(self, name: str, text: str, tip: str = "") -> QCheckBox:
        w = QCheckBox(text)
        w.setToolTip(tip)
        w.toggled.connect(lambda v, n=name: self.changed.emit(n, bool(v)))
        self._add(name, w)
        return w

    def show(self, name: str, value) -> None:
        """Put a value into the widget of `name` without emitting a change."""
        w = self.widgets[name]
        w.blockSignals(True)
        try:
            if isinstance(w, (QDoubleSpinBox, QSpinBox)):
                w.setValue(value if value is not None else w.minimum())
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                i = w.findData(value)
                if i < 0 and value is not None:
                    # a remembered device or voice that is not here now: keep it visible, marked missing
                    w.addItem(f"{value} (not found)", value)
                    i = w.count() - 1
                w.setCurrentIndex(max(i, 0))
        finally:
            w.blockSignals(False)

    def load(self, settings) -> None:
        for name in self.widgets:
            if hasattr(settings, name):
                self.show(name, getattr(settings, name))


def set_items(w: QComboBox, items) -> None:
    """Replace a combo's items, keeping the current choice when it is still offered."""
    current = w.currentData()
    w.blockSignals(True)
    w.clear()
    for label, data in items:
        w.addItem(label, data)
    i = w.findData(current)
    w.setCurrentIndex(i if i >= 0 else 0)
    w.blockSignals(False)
