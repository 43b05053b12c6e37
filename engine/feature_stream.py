"""Live loudness and the mapping of the 16 kHz feature grids onto the model's frame grid.

LoudnessStream is engine/loudness.Loudness fed block by block: same reflect padding at the stream
start, same float64 frame RMS, so its frames equal Loudness.extract of the concatenated input. Its
lookahead is (win - hop) / 2 samples (384 at 22 050 Hz: 17.4 ms): frame i needs samples up to
i * hop + (win + hop) / 2.

`grid_index(i, ...)` is engine/frames.align_frames(mode="nearest") for one model frame: the source
frame whose interval contains the model frame's centre.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from engine.loudness import frames_db
from engine.pipeline import flush_with_silence


def grid_index(i, model_rate: int, model_hop: int, src_rate: int, src_hop: int):
    """Source frame under the centre of model frame i:
    floor((i + 0.5) * model_hop / model_rate * src_rate / src_hop), in integers."""
    i = np.asarray(i, dtype=np.int64)
    return ((2 * i + 1) * model_hop * src_rate) // (2 * model_rate * src_hop)


class LoudnessStream:
    """push(samples at the model rate) -> dB of every newly complete frame (Loudness framing)."""

    name = "loudness window"

    def __init__(self, hop_length: int = 256, win_length: int = 1024, floor_db: float = -80.0,
                 lookahead: int | None = None, sample_rate: int = 22050):
        """lookahead: samples each frame may read beyond its own end; None = (win - hop) / 2, exactly
        Loudness's framing. Less moves every window earlier by the difference (the loudness curve then
        lags the offline one by that much: lower latency, slightly different features than training)."""
        self.hop, self.win, self.floor_db = int(hop_length), int(win_length), float(floor_db)
        self.rate_in, self.rate_out = int(sample_rate), Fraction(int(sample_rate), self.hop)
        exact = self.win - self.hop - (self.win - self.hop) // 2
        la = exact if lookahead is None else int(lookahead)
        if not 0 <= la <= exact:
            raise ValueError(f"loudness lookahead must be 0..{exact} samples")
        self.pad = self.win - self.hop - la  # left padding of the stream (reflected at its start)
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float64)
        self._buf_start = 0  # position of _buf[0] in the padded stream (padded index = input index + pad)
        self._started = False
        self.n_in = 0
        self.frames_out = 0

    def ready(self, n):
        """Frames complete after n input samples (vectorised)."""
        n = np.asarray(n, dtype=np.int64)
        need = self.win - self.pad  # input samples frame 0 needs
        return np.where(n >= need, (n - need) // self.hop + 1, 0)

    def push(self, x: np.ndarray) -> np.ndarray:
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float64)])
        self.n_in += len(x)
        if not self._started:
            if self.n_in < self.win - self.pad:
                return np.zeros(0, np.float32)
            # the whole-signal reflect padding at the start (numpy's "reflect": x[pad], ..., x[1])
            # with a shortened lookahead the pad can be longer than what frame 0 waits for: reflect
            # only those first samples (the same whatever the block sizes) and put zeros beyond
            k = min(self.pad, self.win - self.pad - 1)
            refl = np.concatenate([np.zeros(self.pad - k), self._buf[1: k + 1][::-1]])
            self._buf = np.concatenate([refl, self._buf])
            self._started = True
        n = int(self.ready(self.n_in))
        if n <= self.frames_out:
            return np.zeros(0, np.float32)
        a = self.frames_out * self.hop - self._buf_start
        seg = self._buf[a: a + (n - self.frames_out - 1) * self.hop + self.win]
        db = frames_db(np.lib.stride_tricks.sliding_window_view(seg, self.win)[:: self.hop], self.floor_db)
        self.frames_out = n
        drop = n * self.hop - self._buf_start
        self._buf = self._buf[drop:]
        self._buf_start += drop
        return db

    def flush(self) -> np.ndarray:
        """End of input: the last frames, with zeros after the input."""
        return flush_with_silence(self, self.n_in, self.frames_out)
