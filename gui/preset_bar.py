"""The preset strip: numbered buttons (keys 1-9 switch instantly), save-as and delete."""
from __future__ import annotations

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QHBoxLayout, QInputDialog, QLabel, QPushButton, QWidget

MAX_BUTTONS = 9


class PresetBar(QWidget):
    chosen = pyqtSignal(str)
    save_requested = pyqtSignal(str)
    delete_requested = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setStyleSheet("QPushButton:checked { background: #3d7dd8; color: white; font-weight: bold; }")
        self.lay = QHBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.lay.addWidget(QLabel("Presets:"))
        self.buttons: list[QPushButton] = []
        self.button_row = QHBoxLayout()
        self.lay.addLayout(self.button_row)
        self.lay.addStretch(1)
        self.save = QPushButton("Save as…")
        self.save.setToolTip("Save the current voice, key, formant, gate and gains as a preset (Ctrl+S)")
        self.save.clicked.connect(self._ask_name)
        self.delete = QPushButton("Delete")
        self.delete.setToolTip("Delete the current preset")
        self.delete.clicked.connect(lambda: self.current and self.delete_requested.emit(self.current))
        self.lay.addWidget(self.save)
        self.lay.addWidget(self.delete)
        self.names: list[str] = []
        self.current: str | None = None

    def _ask_name(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Preset name:", text=self.current or "")
        if ok and name.strip():
            self.save_requested.emit(name.strip())

    def set_presets(self, names: list[str], current: str | None) -> None:
        self.names, self.current = list(names), current
        for b in self.buttons:
            self.button_row.removeWidget(b)
            b.deleteLater()
        self.buttons = []
        for i, name in enumerate(self.names):
            label = f"{i + 1} {name}" if i < MAX_BUTTONS else name
            b = QPushButton(label)
            b.setObjectName(f"preset_{i + 1}")
            b.setCheckable(True)
            b.setChecked(name == current)
            b.setToolTip(f"Switch to preset '{name}'" + (f" (key {i + 1})" if i < MAX_BUTTONS else ""))
            b.clicked.connect(lambda _=False, n=name: self.chosen.emit(n))
            self.button_row.addWidget(b)
            self.buttons.append(b)
        self.delete.setEnabled(current is not None)

    def name_at(self, number: int) -> str | None:
        """Preset for key `number` (1-based), if there is one."""
        return self.names[number - 1] if 1 <= number <= len(self.names) else None
