"""Recording what the loop hears and plays to WAV files, off the audio thread.

The callbacks only copy their frames into lock-free rings (`feed_*`); a writer thread drains the
rings into `input.wav` and `output.wav` (soundfile, float) every few tens of milliseconds.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from realtime.ring import InputRing


FILES = ("input.wav", "output.wav")


def next_take(folder: str | Path) -> Path:
    """The first FOLDER/take-NNN that does not exist yet: each Start of the panel records a new take."""
    root = Path(folder)
    n = 1
    while (root / f"take-{n:03d}").exists():
        n += 1
    return root / f"take-{n:03d}"


class Recorder:
    def __init__(self, folder: str | Path, rate_in: int, rate_out: int, seconds_buffered: float = 4.0,
                 overwrite: bool = False):
        import soundfile as sf

        from realtime.devices import DeviceError

        self.folder = Path(folder)
        taken = [f for f in FILES if (self.folder / f).exists()]
        if taken and not overwrite:
            raise DeviceError(f"{self.folder / taken[0]}: already exists (use --force to overwrite, or another folder)")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._files = {
                "input": sf.SoundFile(str(self.folder / "input.wav"), "w", int(rate_in), 1, "FLOAT"),
                "output": sf.SoundFile(str(self.folder / "output.wav"), "w", int(rate_out), 1, "FLOAT"),
            }
        except (OSError, RuntimeError) as e:
            raise DeviceError(f"cannot record to {self.folder}: {e}") from None
        self._rings = {"input": InputRing(int(seconds_buffered * rate_in)),
                       "output": InputRing(int(seconds_buffered * rate_out))}
        self.lost = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="comolive-recorder", daemon=True)
        self._thread.start()

    def feed_input(self, x: np.ndarray) -> None:
        self._rings["input"].write(x)

    def feed_output(self, x: np.ndarray) -> None:
        self._rings["output"].write(x)

    def _drain(self) -> None:
        for key, ring in self._rings.items():
            n = min(ring.available(), ring.capacity // 2)
            if n > 0:
                _, x, lost = ring.read(n)
                self.lost += lost
                self._files[key].write(x)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self._drain()

    def close(self) -> None:
        """Write what is left and close the files (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._drain()
        for f in self._files.values():
            f.close()
