"""Entry point of the control panel: `python main.py` (or `python main.py gui`)."""
from __future__ import annotations

import os
import sys

from models.errors import ComoliveError


def _check_display() -> None:
    """Qt aborts the process when it finds no screen; say it in words instead."""
    if sys.platform.startswith("linux") and not any(os.environ.get(v) for v in
                                                    ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        raise ComoliveError("no desktop display found (DISPLAY/WAYLAND_DISPLAY unset): the control panel needs "
                            "one; `python main.py live` converts without a window")


def dark_palette():
    """A dark theme: easier on the eyes on a dim stage, and the meters and pitch traces stand out."""
    from PyQt6.QtGui import QColor, QPalette

    pal = QPalette()
    role = QPalette.ColorRole
    for r, c in ((role.Window, "#26262b"), (role.WindowText, "#e6e6ea"), (role.Base, "#1c1c20"),
                 (role.AlternateBase, "#2c2c32"), (role.ToolTipBase, "#f0f0f0"), (role.ToolTipText, "#202020"),
                 (role.Text, "#e6e6ea"), (role.Button, "#34343b"), (role.ButtonText, "#e6e6ea"),
                 (role.Highlight, "#3d7dd8"), (role.HighlightedText, "#ffffff"), (role.PlaceholderText, "#8a8a92")):
        pal.setColor(r, QColor(c))
    pal.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, QColor("#77777f"))
    pal.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor("#77777f"))
    return pal


def make_app(argv: list[str] | None = None):
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setApplicationName("comolive")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    return app


def run(argv: list[str] | None = None, model: str | None = None, adapter=None) -> int:
    """`model`: open with this voice model; `adapter`: what the Adapt button runs (MainWindow)."""
    _check_display()
    import torch

    from gui.main_window import MainWindow

    torch.set_num_threads(1)  # the live path runs on one thread; the GUI and audio callbacks need the other core
    app = make_app(argv)
    window = MainWindow(model=model, adapter=adapter)
    window.show()
    return app.exec()
