"""Streamed vs offline difference for `main.py eval`.

What is measured: the live computation (engine/stream_session.py, fed block by block as a sound
card would) against the offline Converter's output of the same file, voice, key and steps, as the
energy of their difference relative to the offline output (dB; -200 means identical). It therefore
includes whatever the live path does differently on purpose (its pitch tracker and resampling, block
edges), not only numerical noise; a value near -200 says streaming adds nothing audible.
"""
from __future__ import annotations

import numpy as np

from engine.metrics import difference_db


def make(conv) -> tuple[object | None, str]:
    """A streamer for this converter, or (None, why not)."""
    try:
        from engine import stream_session
    except ImportError as e:
        return None, f"the streaming session (engine/stream_session.py) is not available ({e})"
    return SessionStreamer(conv, stream_session), ""


class SessionStreamer:
    def __init__(self, conv, module):
        self.conv = conv
        self.m = module

    def difference_db(self, wav: np.ndarray, sr: int, voice: str, key: float, steps: int,
                      offline: np.ndarray) -> float:
        streamed = self.m.run_offline(self.session_config(voice, key, steps), wav, sr, converter=self.conv)
        return difference_db(np.asarray(streamed, np.float32), offline)

    def session_config(self, voice, key, steps):
        return self.m.SessionConfig(voice=voice, key=key, steps=steps)
