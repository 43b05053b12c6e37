"""Audio devices through PortAudio (sounddevice): listing, picking by index or name, checking rates.

Every problem a user can cause or meet here (a name that matches nothing, a busy or unplugged
device, a rate the device refuses) becomes a DeviceError with a sentence that says what to do.
PortAudio scans devices once, when it initialises: `refresh()` re-scans (e.g. after jackd started).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import ComoliveError


class DeviceError(ComoliveError):
    """An audio device that cannot be found, opened or run at the requested settings."""


@dataclass
class DeviceInfo:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def label(self) -> str:
        return f"[{self.index}] {self.name} ({self.hostapi})"


_stuck: str | None = None  # why PortAudio can no longer be used in this process (see mark_stuck)


def mark_stuck(reason: str) -> None:
    """A stream never returned from closing (its audio server died under it): every later PortAudio call
    may block the same way, so audio stays off in this process and says so instead of hanging."""
    global _stuck
    _stuck = reason


def is_stuck() -> bool:
    return _stuck is not None


def _sd():
    if _stuck:
        raise DeviceError(f"audio is unavailable until comolive is restarted: {_stuck}")
    try:
        import sounddevice as sd
    except OSError as e:  # libportaudio2 missing
        raise DeviceError(f"PortAudio is not available ({e}); install libportaudio2 (scripts/setup.sh)") from None
    return sd


REFRESH_TIMEOUT_S = 3.0


def refresh() -> None:
    """Re-initialise PortAudio so that it sees devices (or a JACK server) that appeared since it started.

    Bounded: after an audio server died under an open stream, PortAudio can block for ever here; then
    audio is marked unavailable for this process (mark_stuck) and a DeviceError says so."""
    import atexit
    import threading

    sd = _sd()
    done = threading.Event()

    def work() -> None:
        sd._terminate()
        sd._initialize()
        done.set()

    threading.Thread(target=work, name="comolive-portaudio-rescan", daemon=True).start()
    if not done.wait(REFRESH_TIMEOUT_S):
        atexit.unregister(sd._exit_handler)  # it would block the interpreter's exit the same way
        mark_stuck("PortAudio did not re-initialise after an audio server went away")
        _sd()  # raises the DeviceError that says so


def list_hostapis() -> list[str]:
    return [h["name"] for h in _sd().query_hostapis()]


def list_devices() -> list[DeviceInfo]:
    sd = _sd()
    apis = list_hostapis()
    return [DeviceInfo(i, d["name"], apis[d["hostapi"]], int(d["max_input_channels"]),
                       int(d["max_output_channels"]), float(d["default_samplerate"]))
            for i, d in enumerate(sd.query_devices())]


def _channels(d: DeviceInfo, kind: str) -> int:
    return d.max_input_channels if kind == "input" else d.max_output_channels


def _match_hostapi(name: str) -> str:
    apis = list_hostapis()
    hits = [a for a in apis if name.lower() in a.lower()]
    if not hits:
        raise DeviceError(f"no host API matches '{name}' (available: {', '.join(apis) or 'none'})")
    exact = [a for a in hits if a.lower() == name.lower()]
    return (exact or hits)[0]


def resolve(spec: int | str | None, kind: str, hostapi: str | None = None) -> DeviceInfo:
    """The device meant by `spec` for `kind` ('input' or 'output').

    None: the default device (of `hostapi` when given); int or a string of digits: that index;
    any other string: the one device whose name contains it (case-insensitive), within `hostapi`."""
    sd = _sd()
    devices = list_devices()
    api = _match_hostapi(hostapi) if hostapi else None
    if spec is None or spec == "":
        if api is not None:
            info = sd.query_hostapis(list_hostapis().index(api))
            idx = info["default_input_device" if kind == "input" else "default_output_device"]
        else:
            idx = sd.default.device[0 if kind == "input" else 1]
            if idx is None or idx < 0:
                try:
                    idx = sd.query_devices(kind=kind)["index"]
                except Exception:
                    idx = -1
        if idx is None or idx < 0:
            where = f" in host API '{api}'" if api else ""
            raise DeviceError(f"there is no default {kind} device{where}; pick one with --{kind} "
                              "(see `python main.py devices`)")
        spec = int(idx)
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        if not 0 <= spec < len(devices):
            raise DeviceError(f"there is no audio device number {spec} (see `python main.py devices`)")
        d = devices[spec]
        if _channels(d, kind) < 1:
            raise DeviceError(f"device {d.label()} has no {kind} channels")
        return d
    cands = [d for d in devices if _channels(d, kind) > 0 and (api is None or d.hostapi == api)]
    hits = [d for d in cands if spec.lower() in d.name.lower()]
    exact = [d for d in hits if d.name.lower() == spec.lower()]
    hits = exact or hits
    if not hits:
        names = ", ".join(f"'{d.name}'" for d in cands) or "none"
        where = f" in host API '{api}'" if api else ""
        raise DeviceError(f"no {kind} device matches '{spec}'{where} (available: {names})")
    if len(hits) > 1:
        raise DeviceError(f"'{spec}' matches several {kind} devices: {', '.join(d.label() for d in hits)}; "
                          "give its number or --hostapi")
    return hits[0]


def check_rate(d: DeviceInfo, kind: str, rate: float, channels: int = 1) -> None:
    """Raise a DeviceError when `d` refuses `rate` Hz (PortAudio's own check, before any stream opens)."""
    sd = _sd()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=d.index, samplerate=rate, channels=channels, dtype="float32")
    except Exception as e:  # sounddevice raises PortAudioError or ValueError
        raise DeviceError(f"{kind} device {d.label()} does not support {rate:g} Hz "
                          f"({_pa_reason(e)}; its default rate is {d.default_samplerate:g} Hz)") from None


def _pa_reason(e: Exception) -> str:
    msg = str(e.args[0]) if getattr(e, "args", None) else str(e)
    return msg.split("\n")[0] or type(e).__name__


def stream_error(e: Exception, what: str) -> DeviceError:
    """A readable DeviceError for a PortAudio failure while opening or running `what`."""
    reason = _pa_reason(e)
    hint = ""
    low = reason.lower()
    if "unanticipated host error" in low or "busy" in low or "device unavailable" in low:
        hint = " (is another program using it, or was it unplugged?)"
    elif "sample rate" in low:
        hint = " (try the device's default rate)"
    return DeviceError(f"cannot open {what}: {reason}{hint}")


def describe() -> str:
    """Host APIs and devices as text (what `main.py devices` prints)."""
    sd = _sd()
    lines = ["host APIs: " + ", ".join(list_hostapis())]
    din, dout = sd.default.device
    lines.append(f"{'#':>3}  {'in':>3} {'out':>3}  {'rate':>7}  {'host API':<28} name")
    for d in list_devices():
        mark = ("<" if d.index == din else " ") + (">" if d.index == dout else " ")
        lines.append(f"{d.index:>3}{mark}{d.max_input_channels:>3} {d.max_output_channels:>3}  "
                     f"{d.default_samplerate:>7g}  {d.hostapi:<28} {d.name}")
    if len(lines) == 2:
        lines.append("  (no audio devices: is a sound server such as JACK running? `devices` re-scans at start)")
    lines.append("(< default input, > default output)")
    return "\n".join(lines)
