"""One output device's side of the loop: its ring, its clock, gain and bypass ramps, and dropouts.

The worker `push`es converted (wet) and dry blocks; the device callback `pull`s exactly the frames
it must play. Everything in `pull` is a few vector operations on the callback's own frames.

Overrun (the worker is late, the ring holds fewer frames than the callback needs): the frames that
are there are played and followed by a fade to silence made from their own last samples played
backwards (so the waveform stays continuous: no click), the read position moves on with the device
clock regardless, and the late frames are dropped when they arrive. Once the ring again holds a
callback's worth plus a fade, playback resumes with a fade-in. Each such gap counts as one dropout,
and the latency afterwards is exactly what it was before.
"""
from __future__ import annotations

import numpy as np

from realtime.ring import OutputRing


RESAMPLE_MS = 1.5  # half length of the output resampling kernel (= its delay)


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


class OutputResampler:
    """Input-rate frames [n, 2] -> output-rate frames, for an output device whose native rate differs.

    The same windowed-sinc streaming resampler as the session's own (engine/resample_stream.py): no
    lookahead, a fixed delay of RESAMPLE_MS, declared as the "output resampling" latency part."""

    def __init__(self, rate_in: int, rate_out: int, channels: int):
        from engine.resample_stream import StreamResampler

        self.half_taps = max(1, int(round(RESAMPLE_MS * rate_in / 1000.0)))
        self._rs = [StreamResampler(rate_in, rate_out, self.half_taps) for _ in range(channels)]
        self.delay_out = int(round(self.half_taps * rate_out / rate_in))  # in output frames

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.stack([r.push(np.ascontiguousarray(x[:, c])) for c, r in enumerate(self._rs)], axis=1)


class OutputSink:
    """Ring + playback state of one output device (main output or monitor)."""

    def __init__(self, rate: int, rate_in: int, prefill: int, fade: int, gain_db: float = 0.0,
                 bypass: bool = False, capacity_s: float = 4.0):
        self.rate, self.rate_in = int(rate), int(rate_in)
        self.resampler = OutputResampler(rate_in, rate, 2) if rate != rate_in else None
        self.resample_delay = self.resampler.delay_out if self.resampler else 0
        self.prefill = int(prefill)
        self.ring = OutputRing(int(capacity_s * rate) + self.prefill, 2, self.prefill)
        self.fade = max(1, int(fade))
        self.gain_target = db_to_gain(gain_db)
        self.gain = self.gain_target
        self.mix_target = 1.0 if bypass else 0.0  # 0 = converted, 1 = dry (bypass)
        self.mix = self.mix_target
        self.playing = True
        self.dropouts = 0
        self.late_frames = 0
        self.level = 0.0  # decaying peak of what was played
        self.next_pos = self.prefill  # where the worker's next frame goes (output timeline)
        self._frac = 0.0
        self._last = np.zeros((self.fade, 2), np.float32)  # the last frames played (raw), for fade-outs
        self._last_spare = np.zeros((self.fade, 2), np.float32)
        self._tail = np.zeros((self.fade, 2), np.float32)  # the fade-out being played
        self._tail_at = self._tail_left = 0
        self._fade_up = np.linspace(0.0, 1.0, self.fade + 1, dtype=np.float32)[1:, None]  # 1/fade .. 1
        self._fade_down = np.linspace(1.0, 0.0, self.fade + 1, dtype=np.float32)[1:, None]  # .. 1/fade, 0
        self._y = np.zeros(0, np.float32)  # callback buffers (_scratch)
        self._pushed = np.zeros((self.fade, 2), np.float32)  # the last frames pushed (for a gap's fade-out)
        self._fade_in = False  # the next pushed block starts with a fade-in (it follows a gap)
        self.dry_ring = None  # when set (same rate as the input): bypass reads the input ring directly
        self.dry_offset = 0  # output position p plays input position p - dry_offset

    # ------------------------------------------------------------------ worker side
    def push(self, wet: np.ndarray, dry: np.ndarray) -> None:
        """Worker: the next block of converted and dry samples (input rate), in stream order."""
        x = np.stack([wet, dry], axis=1).astype(np.float32, copy=False)
        if self.resampler is not None:
            x = self.resampler(x)
        if self.next_pos > self.ring.written or self._fade_in:  # after skipped input or a gap: fade in
            k = min(self.fade, len(x))
            x[:k] *= self._fade_up[:k]
            self._fade_in = False
        self.late_frames += self.ring.write_at(self.next_pos, x)
        self.next_pos += len(x)
        self._pushed = np.concatenate([self._pushed, x])[-self.fade:]

    def gap(self, n_in: int) -> None:
        """Worker: a block of `n_in` input samples that could not be converted plays as a dropout: the last
        pushed frames fade out on their own time-reversed tail, silence follows, the next block fades in."""
        n = self._out_frames(n_in)
        x = np.zeros((n, 2), np.float32)
        k = min(self.fade, n)
        x[:k] = self._pushed[::-1][:k] * self._fade_down[:k]
        self.late_frames += self.ring.write_at(self.next_pos, x)
        self.next_pos += n
        self._pushed[:] = 0.0
        self._fade_in = True
        self.dropouts += 1

    def skip(self, n_in: int) -> None:
        """Worker: `n_in` input samples were lost; keep the output timeline aligned with the input's.

        Skipping only happens after a stall far longer than the output margin, so the callback is
        already in a faded dropout; the next block fades in after the silent gap."""
        self.next_pos += self._out_frames(n_in)

    def _out_frames(self, n_in: int) -> int:
        """Output frames for `n_in` input samples not pushed, the fraction carried to the next call."""
        exact = n_in * self.rate / self.rate_in + self._frac
        n = int(exact)
        self._frac = exact - n
        return n

    # ---------------------------------------------------------------- callback side
    def _scratch(self, n: int) -> None:
        """Buffers the callback works in; they grow (once) to the largest callback seen, never per call."""
        if n > len(self._y):
            self._x = np.zeros((n, 2), np.float32)
            self._y, self._m, self._g = (np.zeros(n, np.float32) for _ in range(3))
            self._steps = np.arange(1, n + 1, dtype=np.float32)

    def pull(self, n: int) -> np.ndarray:
        """Callback: the `n` mono frames to play now (gains, bypass and dropout fades applied).

        Returns a view of a buffer this sink reuses: copy it out before the next call. Allocates nothing
        (tests/test_live.py counts), dropouts included."""
        self._scratch(n)
        ring, x = self.ring, self._x[:n]
        p0 = ring.read_pos
        avail = ring.available()
        if self.playing and avail >= n:
            ring.peek_into(x)
        elif self.playing:  # overrun: play what is there, then fade out on its own time-reversed tail
            have = max(avail, 0)
            x.fill(0.0)
            if have:
                ring.peek_into(x[:have])
            self._start_tail(x, have)
            self.playing = False
            self.dropouts += 1
            self._emit_tail(x, have)
        else:
            x.fill(0.0)
            self._emit_tail(x, 0)
            if self._tail_left == 0 and avail >= n + self.fade:  # enough again: resume with a fade-in
                ring.peek_into(x)
                k = min(self.fade, n)
                x[:k] *= self._fade_up[:k]
                self.playing = True
        ring.advance(n)
        self._remember(x)
        if self.dry_ring is not None and (self.mix or self.mix_target):
            # the dry signal straight from the input ring: bypass keeps playing when the worker is late
            self.dry_ring.peek_at_into(p0 - self.dry_offset, self._y[:n])
            x[:, 1] = self._y[:n]
        y = self._mix(x)
        if n:
            np.abs(y, out=self._m[:n])
            self.level = max(float(self._m[:n].max()), self.level * 0.9)
        else:
            self.level *= 0.9
        return y

    def _remember(self, x: np.ndarray) -> None:
        """Keep the last `fade` frames played (for a fade-out), swapping two buffers instead of allocating."""
        n, f = len(x), self.fade
        if n >= f:
            self._last[:] = x[n - f:]
            return
        self._last_spare[:f - n] = self._last[n:]
        self._last_spare[f - n:] = x
        self._last, self._last_spare = self._last_spare, self._last

    def _start_tail(self, x: np.ndarray, have: int) -> None:
        """The fade-out after frame `have` of x: the last `fade` frames played, time-reversed, ramped to zero."""
        f = self.fade
        k = min(have, f)
        self._tail[:k] = x[have - k:have][::-1]  # the newest frames first
        self._tail[k:] = self._last[::-1][:f - k]
        self._tail *= self._fade_down
        self._tail_at, self._tail_left = 0, f

    def _emit_tail(self, x: np.ndarray, at: int) -> None:
        """Write the pending fade-out tail from frame `at` on (what does not fit waits for the next call)."""
        m = min(self._tail_left, len(x) - at)
        if m > 0:
            x[at:at + m] = self._tail[self._tail_at:self._tail_at + m]
            self._tail_at += m
            self._tail_left -= m

    def _ramp(self, out: np.ndarray, cur: float, target: float, per_sample: float) -> float:
        """`out` <- a ramp from cur towards target by per_sample a frame (held at target); returns its end."""
        n = len(out)
        if cur == target or n == 0:
            out.fill(cur)
            return cur
        step = per_sample if target > cur else -per_sample
        np.multiply(self._steps[:n], step, out=out)
        out += cur
        (np.minimum if step > 0 else np.maximum)(out, target, out=out)
        return float(out[-1])

    def _mix(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        m, g, y = self._m[:n], self._g[:n], self._y[:n]
        self.mix = self._ramp(m, self.mix, self.mix_target, 1.0 / self.fade)
        self.gain = self._ramp(g, self.gain, self.gain_target, max(abs(self.gain_target - self.gain), 1e-9) / self.fade)
        np.subtract(x[:, 1], x[:, 0], out=y)
        y *= m
        y += x[:, 0]
        y *= g
        return y
