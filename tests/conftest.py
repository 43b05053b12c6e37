"""Shared pytest set-up."""
import os

# Qt without a screen (DESIGN §6): the control-panel tests render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
