"""The sliding analysis window of the chunked live extractors (content, pitch).

Both run their network once per chunk of input, on the fixed-length window of samples that ends at the
chunk's end (zeros before the stream's start), with chunks aligned to t = 0: then what they compute does
not depend on how the input was cut into blocks.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class ChunkWindows:
    def __init__(self, window: int, chunk: int):
        self.window, self.chunk = int(window), int(chunk)
        self.reset()

    def reset(self) -> None:
        self.buf = np.zeros(self.window, np.float32)  # the window ending at the last chunk end
        self.pending = np.zeros(0, np.float32)        # samples after the last chunk end
        self.chunks = 0                               # chunks completed since reset

    def due(self, n: int) -> int:
        """How many chunks a push of n more samples completes."""
        return (len(self.pending) + int(n)) // self.chunk

    def push(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """Append samples; yield the window of each chunk they complete, in order (consume them all)."""
        self.pending = np.concatenate([self.pending, np.asarray(x, np.float32)])
        while len(self.pending) >= self.chunk:
            self.buf = np.concatenate([self.buf[self.chunk:], self.pending[: self.chunk]])
            self.pending = self.pending[self.chunk:]
            self.chunks += 1
            yield self.buf
