"""The README's panel screenshot: the panel live at its default settings (80 ms block, one-block safety
margin, default voice) on JACK dummy devices, the bundled sung phrase looping into its input.

    .venv/bin/python scripts/panel_screenshot.py docs/img/panel.png [--seconds 20]

It prints what the panel showed (compute per block, dropouts) beside the image, so a screenshot taken
on a machine that did not keep up is seen as such.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


class PhraseFeeder:
    """A JACK client that loops a recording into every input port of the panel's loop."""

    def __init__(self, server: str, signal):
        import jack
        import numpy as np

        self.np, self.signal, self.pos = np, np.asarray(signal, np.float32), 0
        self.client = jack.Client("comolive_phrase", no_start_server=True, servername=server)
        self.port = self.client.outports.register("play")
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        idx = (self.pos + self.np.arange(frames)) % len(self.signal)
        self.port.get_array()[:] = self.signal[idx]
        self.pos += frames

    def connect(self) -> None:
        for p in self.client.get_ports(is_audio=True, is_input=True):
            if not p.name.startswith(("system:", self.client.name + ":")):
                self.client.connect(self.port, p)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="PNG to write")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the panel runs before the picture")
    a = ap.parse_args(argv)

    import torch
    from PyQt6.QtTest import QTest

    from gui.app import make_app
    from gui.main_window import MainWindow
    from gui.presets import PanelSettings, SettingsStore
    from models.audio_io import load_audio
    from realtime.jackd import JackServer

    def wait(cond, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not cond() and time.monotonic() < end:
            QTest.qWait(100)
        return cond()

    torch.set_num_threads(1)  # as `python main.py` runs the panel
    phrase, _ = load_audio(ROOT / "assets" / "demo_phrase.wav", sr=48000)
    with tempfile.TemporaryDirectory() as tmp, JackServer(rate=48000, period=256) as server:
        store = SettingsStore(Path(tmp) / "panel.toml")
        store.save(PanelSettings(hostapi="JACK Audio Connection Kit", input_device="system",
                                 output_device="system"))  # every other setting at its default
        app = make_app([])
        w = MainWindow(store=store)
        w.show()
        feeder = PhraseFeeder(server.name, phrase)
        try:
            w.start()
            if not wait(lambda: w.control.state == "running", 300):
                print(f"the panel did not go live: {w.banner.text.text()}", file=sys.stderr)
                return 1
            feeder.connect()
            QTest.qWait(int(a.seconds * 1000))
            w.grab().save(a.out)
            print(f"wrote {a.out}: block {w.settings.block_ms:g} ms, compute {w.latency.compute.text()}, "
                  f"dropouts {w.latency.dropouts.text()}, declared latency {w.latency.total.text()}")
            w.stop()
            wait(lambda: w.control.state == "idle", 30)
        finally:
            feeder.close()
            w.close()
            app.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
