"""sounddevice streams for the live loop: one duplex stream, or separate input / output / monitor streams.

One duplex stream when input and output are the same device (one callback, one clock, exact
alignment); otherwise an input stream and one output stream per output device, each at its own
native rate. The callbacks only hand frames to the loop (`audio_in` / `audio_out`), which moves them
through the rings; an exception in a callback is recorded and stops the stream instead of crashing.
"""
from __future__ import annotations

import atexit
import threading
import time

from realtime.devices import DeviceError, DeviceInfo, check_rate, mark_stuck, resolve, stream_error


CLOSE_TIMEOUT_S = 0.5  # a stream whose server died may never return from abort(): stop waiting after this
SILENT_DEVICE_S = 1.5   # no callback for this long: the device is gone


def _ts(t, attr: str) -> float | None:
    v = getattr(t, attr, 0.0) if t is not None else 0.0
    return float(v) if v else None


class SoundDeviceBackend:
    """Opens the streams a LiveConfig asks for; the loop drives them through `open`, `start`, `close`."""

    kind = "sounddevice"

    def __init__(self, input_device=None, output_device=None, monitor_device=None, hostapi=None,
                 sample_rate=None, blocksize: int = 0, latency: str | float = "low", duplex: bool = True):
        self.spec = (input_device, output_device, monitor_device)
        self.hostapi = hostapi
        self.sample_rate = sample_rate
        self.prefer_rate: int | None = None  # used when sample_rate is None and the input device accepts it
        self.blocksize = blocksize
        self.latency = latency
        self.duplex = duplex
        self.streams: list = []
        self.last_callback = 0.0
        self.finished_unexpectedly: str | None = None
        self.wedged = False  # a stream did not close (its server died): PortAudio is left as it is
        self._closing = False

    # --------------------------------------------------------------------- set-up
    def resolve(self) -> dict:
        """Pick devices and rates (raises DeviceError); returns {'input', 'outputs', 'rate_in', 'rates_out'}."""
        din = resolve(self.spec[0], "input", self.hostapi)
        dout = resolve(self.spec[1], "output", self.hostapi)
        dmon = resolve(self.spec[2], "output", self.hostapi) if self.spec[2] is not None else None
        rate_in = int(self.sample_rate or din.default_samplerate)
        if not self.sample_rate and self.prefer_rate and self.prefer_rate != rate_in:
            try:
                check_rate(din, "input", self.prefer_rate)
                rate_in = int(self.prefer_rate)
            except DeviceError:
                pass
        check_rate(din, "input", rate_in)
        outs = [dout] + ([dmon] if dmon is not None else [])
        rates = []
        for d in outs:
            if self.sample_rate or d.index == din.index:
                r = rate_in
            else:  # its native rate, unless it also runs at the input's rate (then no resampling)
                r = int(d.default_samplerate)
                try:
                    check_rate(d, "output", rate_in)
                    r = rate_in
                except DeviceError:
                    pass
            check_rate(d, "output", r)
            rates.append(r)
        self.din, self.outs, self.rate_in, self.rates_out = din, outs, rate_in, rates
        return {"input": din, "outputs": outs, "rate_in": rate_in, "rates_out": rates}

    def _out_channels(self, d: DeviceInfo) -> int:
        return min(2, d.max_output_channels)

    def open(self, loop) -> dict[str, float]:
        """Create (not start) the streams; returns the device buffer latencies in ms."""
        import sounddevice as sd

        self.loop = loop
        self._closing = False
        self.finished_unexpectedly = None
        din, outs = self.din, self.outs
        kw = dict(dtype="float32", blocksize=self.blocksize, latency=self.latency,
                  finished_callback=self._finished)
        try:
            if outs[0].index == din.index and self.duplex:
                s = sd.Stream(device=(din.index, outs[0].index), samplerate=self.rate_in,
                              channels=(1, self._out_channels(outs[0])), callback=self._duplex, **kw)
                self.streams = [s]
                lat_in, lat_out = s.latency
            else:
                si = sd.InputStream(device=din.index, samplerate=self.rate_in, channels=1,
                                    callback=self._input, **kw)
                so = sd.OutputStream(device=outs[0].index, samplerate=self.rates_out[0],
                                     channels=self._out_channels(outs[0]), callback=self._make_output(0), **kw)
                self.streams = [si, so]
                lat_in, lat_out = si.latency, so.latency
            for k, d in enumerate(outs[1:], start=1):
                self.streams.append(sd.OutputStream(device=d.index, samplerate=self.rates_out[k],
                                                    channels=self._out_channels(d),
                                                    callback=self._make_output(k), **kw))
        except sd.PortAudioError as e:
            self.close()
            raise stream_error(e, f"{din.label()} -> {', '.join(d.label() for d in outs)}") from None
        self.period = int(self.streams[0].blocksize or 0)
        parts = {"device input buffer": 1000.0 * float(lat_in), "device output buffer": 1000.0 * float(lat_out)}
        return parts

    def start(self) -> None:
        import sounddevice as sd

        self.last_callback = time.monotonic()
        try:
            for s in self.streams:
                s.start()
        except sd.PortAudioError as e:
            self.close()
            raise stream_error(e, "the audio stream") from None

    def close(self) -> None:
        """Abort and close the streams, waiting at most CLOSE_TIMEOUT_S: when the audio server died, PortAudio
        may block for ever in abort(). Then the streams are left to a daemon thread, and PortAudio is not
        terminated at exit (that would block the same way): `wedged` is set."""
        self._closing = True
        streams, self.streams = self.streams, []
        if not streams:
            return

        def shut() -> None:
            for s in streams:
                try:
                    s.abort(ignore_errors=True)
                    s.close(ignore_errors=True)
                except Exception:
                    pass

        t = threading.Thread(target=shut, name="comolive-close-streams", daemon=True)
        t.start()
        t.join(CLOSE_TIMEOUT_S)
        if t.is_alive():
            self.wedged = True
            import sounddevice as sd

            atexit.unregister(sd._exit_handler)  # terminating PortAudio at exit would block too
            mark_stuck("the audio stream did not close after its device or server went away")

    def check(self) -> str | None:
        """Watchdog polled by the worker: a reason to stop, or None."""
        if self.finished_unexpectedly:
            return self.finished_unexpectedly
        if self.streams and time.monotonic() - self.last_callback > SILENT_DEVICE_S:
            return (f"no audio callback for {SILENT_DEVICE_S:g} s: the audio device stopped (unplugged, or its "
                    "server quit?)")
        return None

    # ------------------------------------------------------------------ callbacks
    def _finished(self) -> None:
        if not self._closing:
            self.finished_unexpectedly = "the audio stream stopped unexpectedly (device unplugged or busy?)"

    def _duplex(self, indata, outdata, frames, t, status) -> None:
        self.last_callback = time.monotonic()
        try:
            self.loop.audio_in(indata[:, 0], _ts(t, "inputBufferAdcTime"))
            y = self.loop.audio_out(0, frames, _ts(t, "outputBufferDacTime"))
            outdata[:] = y[:, None]
        except Exception as e:  # never let an exception escape into PortAudio
            self._callback_error(e, outdata)

    def _input(self, indata, frames, t, status) -> None:
        self.last_callback = time.monotonic()
        try:
            self.loop.audio_in(indata[:, 0], _ts(t, "inputBufferAdcTime"))
        except Exception as e:
            self._callback_error(e, None)

    def _make_output(self, k: int):
        def cb(outdata, frames, t, status) -> None:
            try:
                y = self.loop.audio_out(k, frames, _ts(t, "outputBufferDacTime"))
                outdata[:] = y[:, None]
            except Exception as e:
                self._callback_error(e, outdata)
        return cb

    def _callback_error(self, e: Exception, outdata) -> None:
        import sounddevice as sd

        if outdata is not None:
            outdata.fill(0)
        self.finished_unexpectedly = f"audio callback failed: {type(e).__name__}: {e}"
        raise sd.CallbackAbort
