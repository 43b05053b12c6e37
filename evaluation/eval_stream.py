"""Streamed vs offline difference for `main.py eval` (two figures, both in dB of difference energy
relative to the reference; -200 means identical):

- stream_diff_db: the live computation (engine/stream_session.py: a StreamSession fed 40 ms blocks
  from time 0, delay removed) against the offline Converter's output of the same file, voice, key,
  steps and vocoder (the one the evaluation runs with). The session gets the input gain that the offline whole-file level
  normalisation computes for this file, and its noise gate is off, so the figure measures what the
  streaming computation itself changes (windowed pitch tracking, chunked content, FIR resampling,
  streamed decoder/vocoder), not the level policy or the gate.
- stream_lag_ms: where the cross-correlation of the two peaks (> 0: the live output comes later than
  the session's declared latency says), within +-20 ms.
- stream_block_diff_db: the same session fed 25 ms blocks against 40 ms blocks: "streaming equals
  offline" of the same streaming computation (docs/results.md, `blocks_dB`); -200 dB means bit-identical.
"""
from __future__ import annotations

import numpy as np

from evaluation.metrics import best_lag, difference_db

BLOCK_MS = 40.0
OTHER_BLOCK_MS = 25.0
MAX_LAG_S = 0.02


def make(model, device: str, vocoder: str = "nsf") -> tuple["SessionStreamer | None", str]:
    """A streamer for this model, or (None, why not)."""
    try:
        from engine import stream_session
    except ImportError as e:
        return None, f"the streaming session (engine/stream_session.py) cannot be imported ({e})"
    return SessionStreamer(model, device, stream_session, vocoder), ""


class SessionStreamer:
    def __init__(self, model, device: str, module, vocoder: str = "nsf"):
        self.m = module
        self.vocoder = vocoder  # the offline Converter's vocoder: compare like with like
        self.model = None if model is None else str(model)
        self.device = device

    def _run(self, wav: np.ndarray, sr: int, voice: str, key: float, steps: int, block_ms: float) -> np.ndarray:
        from engine.loudness_norm import normalize_level

        gain = normalize_level(wav, sr)[1]
        cfg = self.m.SessionConfig(sample_rate=int(sr), block_ms=block_ms, model=self.model, voice=voice,
                                   key=float(key), steps=int(steps), vocoder=self.vocoder, device=self.device,
                                   gate_db=float("-inf"), input_gain_db=20.0 * float(np.log10(gain)),
                                   content_chunk_ms=self.m.content_chunk_for(BLOCK_MS))  # same for both block sizes
        return np.asarray(self.m.run_offline(cfg, wav, sr), np.float32)

    def differences(self, wav: np.ndarray, sr: int, voice: str, key: float, steps: int,
                    offline: np.ndarray) -> dict[str, float]:
        streamed = self._run(wav, sr, voice, key, steps, BLOCK_MS)
        other = self._run(wav, sr, voice, key, steps, OTHER_BLOCK_MS)
        lag = best_lag(streamed, offline, int(MAX_LAG_S * sr))
        return {"stream_diff_db": difference_db(streamed, offline),
                "stream_lag_ms": 1000.0 * lag / sr,
                "stream_block_diff_db": difference_db(other, streamed)}
