"""Single-producer / single-consumer sample rings indexed by absolute sample position.

The audio callback and the inference worker exchange samples through these rings without locks:
the producer writes the slots first and publishes its position afterwards (a plain int store,
atomic under the GIL); the consumer does the same with its own position. Positions only grow, so
"how many samples are there" is `written - read`, and a stale or missing range is a comparison.

* `InputRing`: callback -> worker. The callback never waits: if the worker stalls for longer than
  the ring holds, the oldest samples are overwritten and the worker notices (`read` reports the
  loss) and skips ahead.
* `OutputRing`: worker -> callback, on the output's timeline. The worker writes a block at the
  output position it belongs to; the callback reads at the device clock. Samples that arrive for
  positions the callback has already passed (an overrun) are dropped, so the latency stays fixed.
"""
from __future__ import annotations

import numpy as np


class InputRing:
    """Mono float32 samples from the callback (producer) to the worker (consumer)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.buf = np.zeros(self.capacity, np.float32)
        self.written = 0  # absolute index of the next sample the producer writes
        self.read_pos = 0  # absolute index of the next sample the consumer reads

    def available(self) -> int:
        return self.written - self.read_pos

    def write(self, x: np.ndarray) -> None:
        """Producer: append `x` (never blocks; overwrites the oldest samples when full)."""
        n = len(x)
        if n > self.capacity:  # only the newest `capacity` samples can be kept
            self.written += n - self.capacity
            x, n = x[-self.capacity:], self.capacity
        i = self.written % self.capacity
        k = min(n, self.capacity - i)
        self.buf[i:i + k] = x[:k]
        if k < n:
            self.buf[:n - k] = x[k:]
        self.written += n

    def read(self, n: int) -> tuple[int, np.ndarray, int]:
        """Consumer: the next `n` samples -> (start position, samples, samples lost before them).

        Call only when `available() >= n` and `n <= capacity // 2`. If the producer lapped the reader (the
        worker stalled for longer than the ring holds), the lost samples are skipped and counted."""
        lost = 0
        behind = self.written - self.read_pos
        if behind > self.capacity * 3 // 4:  # the oldest unread samples are (or soon get) overwritten
            lost = behind - max(n, self.capacity // 2)
            self.read_pos += lost
        start = self.read_pos
        i = start % self.capacity
        k = min(n, self.capacity - i)
        out = np.empty(n, np.float32)
        out[:k] = self.buf[i:i + k]
        if k < n:
            out[k:] = self.buf[:n - k]
        if self.written - start > self.capacity:  # lapped while copying: the copy is not trustworthy
            out[:] = 0.0
        self.read_pos = start + n
        return start, out, lost

    def peek_at(self, pos: int, n: int) -> np.ndarray:
        """`n` samples from absolute position `pos`, without consuming; zeros where nothing (valid) is there.

        For a second reader that stays well behind the writer (the callback's bypass path)."""
        return self.peek_at_into(pos, np.empty(n, np.float32))

    def peek_at_into(self, pos: int, out: np.ndarray) -> np.ndarray:
        """peek_at into `out` (its length is n; no allocation: the audio callback uses it)."""
        n = len(out)
        out.fill(0.0)
        lo, hi = max(pos, self.written - self.capacity + 1), min(pos + n, self.written)
        if hi > lo:
            i, k = lo % self.capacity, hi - lo
            m = min(k, self.capacity - i)
            out[lo - pos:lo - pos + m] = self.buf[i:i + m]
            if m < k:
                out[lo - pos + m:hi - pos] = self.buf[:k - m]
        return out

    def skip(self, n: int) -> None:
        """Consumer: drop `n` unread samples (the worker catching up after falling behind)."""
        self.read_pos += n


class OutputRing:
    """Frames of `channels` float32 values on an output device's timeline (worker -> callback).

    Starts with `prefill` zero frames written: the fixed margin between the worker and the device."""

    def __init__(self, capacity: int, channels: int, prefill: int):
        if prefill >= capacity:
            raise ValueError("prefill must be smaller than the ring")
        self.capacity = int(capacity)
        self.buf = np.zeros((self.capacity, channels), np.float32)
        self.written = int(prefill)
        self.read_pos = 0

    def available(self) -> int:
        return self.written - self.read_pos

    def write_at(self, pos: int, x: np.ndarray) -> int:
        """Producer: place frames `x` [n, channels] at absolute position `pos` (>= what was written).

        Frames for positions the reader has already passed are dropped (returned count). A gap
        between the last write and `pos` is filled with silence."""
        r = self.read_pos
        if pos > self.written:
            gap_from = max(self.written, r)
            if pos > gap_from:
                self._put(gap_from, np.zeros((pos - gap_from, self.buf.shape[1]), np.float32))
        dropped = 0
        if pos < r:
            dropped = min(len(x), r - pos)
            x, pos = x[dropped:], pos + dropped
        if len(x):
            room = self.capacity - (pos + len(x) - r)
            if room < 0:  # the reader stopped: keep the newest frames
                x, pos = x[-room:], pos - room
            self._put(pos, x)
        self.written = max(self.written, pos + len(x))
        return dropped

    def _put(self, pos: int, x: np.ndarray) -> None:
        n = len(x)
        i = pos % self.capacity
        k = min(n, self.capacity - i)
        self.buf[i:i + k] = x[:k]
        if k < n:
            self.buf[:n - k] = x[k:]

    def peek(self, n: int) -> np.ndarray:
        """Consumer: the next `n` frames (copy), without advancing. Call with n <= available()."""
        return self.peek_into(np.empty((n, self.buf.shape[1]), np.float32))

    def peek_into(self, out: np.ndarray) -> np.ndarray:
        """peek into `out` [n, channels] (no allocation: the audio callback uses it)."""
        n = len(out)
        i = self.read_pos % self.capacity
        k = min(n, self.capacity - i)
        out[:k] = self.buf[i:i + k]
        if k < n:
            out[k:] = self.buf[:n - k]
        return out

    def advance(self, n: int) -> None:
        """Consumer: move the read position by `n` frames (read or not: the device clock goes on)."""
        self.read_pos += n
