"""DNSMOS (Microsoft's non-intrusive speech quality predictor) as a naturalness proxy, offline.

The ONNX models ship inside the `speechmos` package (dnsmos_models/: sig_bak_ovr.onnx for the
P.835 signal / background / overall scores, model_v8.onnx for P.808). speechmos's own `run()` keeps a
global session with default threading; here the same computation (its DNSMOS class: 9.01 s windows
hopped by 1 s, clips shorter than that repeated) runs on sessions we create with one thread.
Scores are on the 1..5 MOS scale. DNSMOS was trained on speech, so for singing it is a proxy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.audio_io import as_mono, resample
from models.errors import AudioInputError, ModelFileError

DNSMOS_SR = 16000


def _model_dir() -> Path:
    try:
        import speechmos
    except ImportError:
        raise ModelFileError("DNSMOS needs the package speechmos (pip install speechmos)") from None
    d = Path(speechmos.__file__).resolve().parent / "dnsmos_models"
    for name in ("sig_bak_ovr.onnx", "model_v8.onnx"):
        if not (d / name).is_file():
            raise ModelFileError(f"{d / name}: DNSMOS model missing from the speechmos package")
    return d


class DNSMOS:
    """score(wav, sr) -> {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovr", "dnsmos_p808"}."""

    def __init__(self, threads: int = 1):
        import onnxruntime as ort
        from speechmos.dnsmos import DNSMOS as _SpeechmosDNSMOS

        d = _model_dir()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        self._impl = _SpeechmosDNSMOS.__new__(_SpeechmosDNSMOS)  # its __init__ makes default-threaded sessions
        self._impl.primary_model_path = str(d / "sig_bak_ovr.onnx")
        self._impl.onnx_sess = ort.InferenceSession(str(d / "sig_bak_ovr.onnx"), opts, providers=providers)
        self._impl.p808_onnx_sess = ort.InferenceSession(str(d / "model_v8.onnx"), opts, providers=providers)

    def score(self, wav: np.ndarray, sr: int) -> dict[str, float]:
        x = resample(as_mono(wav), int(sr), DNSMOS_SR).astype(np.float32)
        if len(x) < DNSMOS_SR // 4:
            raise AudioInputError(f"DNSMOS: clip too short ({len(x) / DNSMOS_SR:.2f} s; at least 0.25 s)")
        if not np.isfinite(x).all():
            raise AudioInputError("DNSMOS: clip contains NaN or infinite samples")
        x = np.clip(x, -1.0, 1.0)
        r = self._impl(x, DNSMOS_SR, False)
        return {"dnsmos_sig": float(r["sig_mos"]), "dnsmos_bak": float(r["bak_mos"]),
                "dnsmos_ovr": float(r["ovrl_mos"]), "dnsmos_p808": float(r["p808_mos"])}
