"""The streaming conversion session: device-rate blocks in, converted blocks out, fixed known delay.

    s = StreamSession(SessionConfig(sample_rate=48000, block_ms=80))
    y = s.process(x)            # x, y: float32 [s.block_size]; y is the conversion delayed by s.latency_samples
    s.set(key=12, voice="us2")  # from any thread; applied at the next block, ramped over ~46 ms
    s.latency_parts()           # ms by named part, summing to s.latency_samples

Signal path (every stage keeps its state and computes only new frames; README, "Live"):
  device rate --FIR--> 16 kHz --> Whisper content (40-80 ms chunks, 1 s windows; engine/content.py)
                                 \\-> pitch (sliding windows on the same chunk grid; engine/pitch_stream.py)
              --FIR--> 22 050 Hz --> loudness (engine/feature_stream.py)
  -> model frames (nearest-frame alignment as offline) -> key shift, causal octave guard, unvoiced hold
  -> one-step decoder (engine/decoder_stream.py) -> streamed vocoder (models/vocoders.py)
  -> 22 050 Hz --FIR--> device rate, read at exactly latency_samples behind the input.

Latency. The output sample n is the conversion of input sample n - latency_samples. latency_samples
is the smallest delay for which every output sample of every block (of block_size samples) has been
computed when process() returns; it is found by running the stages' sample/frame bookkeeping (not
the networks) over 260 s of blocks. It covers the stages' lookaheads and the waits caused by chunk and
frame grids; it does NOT include the block itself: an audio loop adds one block (the time to fill
it) plus its output margin, so end-to-end = latency_samples + block + margin
(`end_to_end_floor_ms` = latency + block). The content/pitch chunk follows the block
(`content_chunk_for`: 80 ms for blocks that are multiples of 80 ms, 60 ms for multiples of 60 ms,
else 40 ms), so a block never waits for a chunk that ends after it.

Chunks shorter than training's. The model was trained on content from 80 ms chunks; with 40 or 60 ms
chunks Whisper frames come from windows that end earlier (frames of the two gridings agree at mean
cosine 0.93 for 40 ms). Measured on 3 held-out pairs (MCD against the target's own rendition, hn
vocoder): 4.11 / 3.88 / 3.88 dB with 40 ms chunks, 4.10 / 3.91 / 3.88 with 80 ms. At a pitch window's
end FCPE places a note change one 10 ms frame late, so with 40 ms windows about half the note changes
land 10 ms after the declared latency.
Options that trade fidelity for latency: loudness_lookahead_ms=0 (the loudness window ends at its
frame's end instead of 17.4 ms later: -13 ms declared; after a gate restart the converted onset then
comes later, which a JACK loop measurement shows) and pitch_right_ms=0 (-4 ms more; the last pitch
frame of each window loses ~9 cents). pitch="dio" costs ~4 ms of CPU per chunk instead of FCPE's ~9
(the model was trained on FCPE f0; DIO's voicing agrees with FCPE's on 85 % of frames).

Threads. Pitch and content read the same 16 kHz samples and share no state, so with content_thread
(default; ignored when the process may use only one CPU) a block that completes a content chunk runs
the Whisper encoder in one worker thread owned by the session while pitch runs in the caller's thread
(torch and CTranslate2 release the GIL in their kernels), then joins it. With a second core free, the
two cost about max(pitch, content) of wall time per chunk instead of their sum (Whisper ~13 ms per
1 s window); with no core free (measured on the 2-core machine while a training job used it)
they take their sum plus ~3 ms of CPU for the contention, and content_thread=False is the better
choice. The output is the same, sample for sample. Every job is joined within the block that
submitted it (also when pitch raises; an error raised in the content thread is re-raised in the
caller), so reset() and the gate's restart never race it. Stage laps: "pitch" is the pitch time,
"content" only the further wait for the content thread. close() stops the thread (a later block
starts it again); dropping the session stops it too.

Level. Offline conversion normalises the whole file to -20 dBFS active level before extracting
features and undoes the gain at the end (engine/loudness_norm.py). A live stream cannot know its
level in advance, so it applies a fixed reference gain (`input_gain_db`, default 0 dB: a singer
peaking around -10 dBFS with an active level near -20 dBFS matches training) to the features' input
and divides the output by the same gain. The decoder's own output level drifts from the input's (by a
few dB, more for high voices), so with `follow_level` (default) the output is also rescaled to the
input's level by a slow follower (engine/level_follow.py), as offline conversion rescales the whole file.

A block whose conversion raises plays as silence (`stats.failed` says why, `stats.failures` counts them)
and closes the gate: the next loud block restarts every stream on the same timeline, with a fade-in.

Noise gate. When the input block level has stayed below gate_db for gate_hold_ms, inference stops
and the output fades to silence (FADE_MS). The next block above gate_db restarts every stream at time
0 (as if a new recording began at that block) and the output fades in at the restart's first output
sample, which comes latency_samples later. While the gate stays open, the output does not depend on
how the input was cut into blocks: run_offline() with any block size gives the same samples.
"""
from __future__ import annotations

import math
import os
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from engine.content import CONTENT_HOP, CONTENT_SAMPLE_RATE, WhisperContent
from engine.decoder_stream import Conditioner, DecoderStream
from engine.feature_stream import LoudnessStream, grid_index
from engine.level_follow import LevelFollower
from engine.pitch_stream import PITCH_HOP, PITCH_RATE, CausalF0, PitchStream, live_pitch_extractor
from engine.resample_stream import RationalResampler, StreamResampler
from models.formant import FORMANT_RANGE, warp_mel_frames
from models.device import pick_device
from models.errors import ComoliveError
from models.vocoders import default_live_vocoder, load_vocoder
from models.voice_model import VoiceModel

MIN_RATE, MAX_RATE = 16000, 96000
MIN_BLOCK_MS, MAX_BLOCK_MS = 5.0, 1000.0
RESAMPLE_MS = 1.0      # half length of the FIR resampling kernels (= their delay)
RAMP_FRAMES = 4        # live key / formant / voice changes ramp over this many model frames (~46 ms)
FADE_MS = 5.0          # gate fade out / in
PLAN_SECONDS = 260.0   # horizon of the latency bookkeeping
KEY_RANGE = 24         # semitones either way (as main.py)
LIVE_KEYS = ("key", "formant", "voice", "reference", "gate_db", "gate_hold_ms", "input_gain_db")


def content_chunk_for(block_ms: float) -> float:
    """The content/pitch chunk for a block size: the longest of 80, 60, 40 ms that divides the block
    (a block then never waits for a chunk that ends after it, and larger chunks cost fewer encoder
    calls), else 40 ms."""
    for c in (80, 60, 40):
        if abs(block_ms / c - round(block_ms / c)) < 1e-6:
            return float(c)
    return 40.0


@dataclass
class SessionConfig:
    sample_rate: int = 48000        # device rate of the blocks given to process()
    block_ms: float = 80.0          # block_size = round(block_ms * sample_rate / 1000); 40 ms: see `tune`
    content_chunk_ms: float | None = None  # content/pitch chunk, whole 20 ms frames; None = content_chunk_for(block)
    model: str | None = None        # voice model path; None = embedded default
    voice: str | None = None        # trained voice name; None = model default
    reference: object | None = None # engine.reference.Reference: a voice from clips (zero-shot), instead of voice
    key: float = 0.0                # semitones (pitch shift), live-changeable
    formant: float = 0.0            # formant shift in semitones (mel warp before the f0-driven vocoder), live
    steps: int = 1                  # 1 = one-step student; k > 1 = multistep consistency (more lookahead)
    pitch: str = "fcpe"             # pitch extractor
    vocoder: str = "auto"           # "auto" = models.vocoders.default_live_vocoder(device), or a name
    device: str | None = None       # None = CUDA when available, else CPU
    gate_db: float = -50.0          # noise gate threshold (dBFS of the input block); live-changeable
    gate_hold_ms: float = 200.0     # gate stays open this long after the level falls; live-changeable
    seed: int = 0
    input_gain_db: float = 0.0      # fixed reference gain before feature extraction (see module doc)
    follow_level: bool = True       # output level follows the input's (engine/level_follow.py)
    pitch_window_s: float | None = None  # pitch window per content chunk; None = 0.16 s (fcpe) or 0.32 s (dio, harvest)
    pitch_right_ms: float = 10.0    # right context of the last pitch frame kept from a window (whole 10 ms frames)
    loudness_lookahead_ms: float | None = None  # None = as training (17.4 ms); less trades onset timing for latency
    threads: int | None = 1         # torch threads for the live path (None: leave as is)
    content_thread: bool = True     # Whisper content in a worker thread while pitch runs (see module doc)


@dataclass
class SessionStats:
    input_level_db: float = -200.0
    output_level_db: float = -200.0
    input_f0_hz: float = 0.0        # median of the voiced model frames made in this block (before key shift)
    output_f0_hz: float = 0.0       # the same after key shift (what the decoder and vocoder were given)
    gated: bool = True
    compute_ms: float = 0.0         # wall-clock time of this process() call
    cpu_ms: float = 0.0             # process CPU time during it (not inflated by other processes)
    # wall time by stage (STAGES). With content_thread, content runs while pitch does: "pitch" is the
    # pitch extractor's time and "content" only the further wait for the content thread after it.
    stage_ms: dict = field(default_factory=dict)
    # process CPU time (all threads) of the same laps: with content_thread, the content work done
    # while pitch ran is counted in "pitch" (the sum over stages stays the block's CPU time)
    stage_cpu_ms: dict = field(default_factory=dict)
    frames: int = 0                 # model frames decoded in this block
    nonfinite: int = 0              # NaN/inf input samples replaced by 0 (total since start)
    underflows: int = 0             # output samples that were not ready in time (total; 0 with fixed blocks)
    restarts: int = 0               # gate reopenings (total)
    failed: str | None = None       # this block's conversion raised: the error (the block plays as silence)
    failures: int = 0               # blocks whose conversion raised (total)


def _level_db(x: np.ndarray) -> float:
    if len(x) == 0:
        return -200.0
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    return 10.0 * math.log10(ms) if ms > 1e-20 else -200.0


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


_LOADED: dict = {}  # loaded, stateless parts shared by sessions (a new block size needs no reload)
_LOADING = threading.Lock()


def _loaded(key, make):
    with _LOADING:  # sessions may be prepared in background threads
        if key not in _LOADED:
            _LOADED[key] = make()
        return _LOADED[key]


def _load_vocoder(name: str, device: torch.device):
    """A vocoder by name; "auto" is models.vocoders.default_live_vocoder(device) ("hn" on a CPU), falling
    back to "hifigan" when that one cannot be loaded here."""
    if str(name).strip().lower() != "auto":
        return name, _loaded(("vocoder", name, str(device)), lambda: load_vocoder(name, device=device))
    choice = default_live_vocoder(device)
    try:
        return choice, _loaded(("vocoder", choice, str(device)), lambda: load_vocoder(choice, device=device))
    except (ComoliveError, ImportError, OSError) as e:
        if choice == "hifigan":
            raise
        warnings.warn(f"vocoder {choice!r} could not be loaded ({e}); using 'hifigan' (slower on a CPU, "
                      f"no formant shift)", RuntimeWarning, stacklevel=3)
        return "hifigan", _loaded(("vocoder", "hifigan", str(device)),
                                  lambda: load_vocoder("hifigan", device=device))


STAGES = ("resample", "pitch", "content", "decoder", "vocoder")  # wall laps of a block, in this order


class _Laps:
    """Wall and CPU time between successive lap() calls, added to the named stage of a SessionStats."""

    def __init__(self, stats: SessionStats):
        self.stats = stats
        self.w, self.c = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.stats.stage_ms[stage] += 1000.0 * (w - self.w)
        self.stats.stage_cpu_ms[stage] += 1000.0 * (c - self.c)
        self.w, self.c = w, c


class _Ramp:
    """A value (scalar or vector) that moves linearly to a new target over RAMP_FRAMES frames."""

    def __init__(self, value):
        self.cur = np.asarray(value, np.float64).copy()
        self.target = self.cur.copy()
        self.left = 0

    def set(self, target, jump: bool = False) -> None:
        self.target = np.asarray(target, np.float64).copy()
        self.left = 0 if jump else RAMP_FRAMES
        if jump:
            self.cur = self.target.copy()

    def take(self, n: int) -> np.ndarray:
        """Values for the next n frames [n, ...]."""
        out = np.empty((n,) + self.cur.shape, np.float64)
        for i in range(n):
            if self.left > 0:
                self.cur = self.cur + (self.target - self.cur) / self.left
                self.left -= 1
            out[i] = self.cur
        return out


WARM_UP_BLOCKS = 4  # blocks run through a session before its show starts (StreamSession.warm_up)


class StreamSession:
    """A loaded model, its feature extractors and vocoder, and the state of one live stream."""

    def __init__(self, config: SessionConfig):
        self.config = cfg = replace(config)
        self._validate(cfg)
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        self._device = pick_device(cfg.device)
        self.device = "cuda:0" if self._device.type == "cuda" else "cpu"
        self.model = _loaded(("model", cfg.model, str(self._device)),
                             lambda: VoiceModel.load(cfg.model, device=self._device))
        self.mcfg = m = self.model.cfg
        self.voice = cfg.voice or self.model.meta.get("default_voice") or sorted(self.model.voices)[0]
        self.model.speaker(self.voice)  # unknown voice -> ComoliveError now
        if cfg.reference is not None:
            self._reference_embedding(cfg.reference)  # a wrong one fails now, with a clear message
            self.voice = cfg.reference.name
        if self.model.student is None and cfg.steps >= 1:
            raise ComoliveError("this model has no one-step student decoder; live conversion needs one")
        if cfg.steps > 1 and getattr(self.model.student, "base_steps", None) is not None:
            raise ComoliveError("a progressive-distillation student runs live at 1 step only (its multistep "
                                "sampler is not the streamed one); use convert for more steps")
        self.sr = int(cfg.sample_rate)
        self.block_size = int(round(cfg.block_ms * self.sr / 1000.0))

        # stages
        k_in = max(1, int(round(RESAMPLE_MS * self.sr / 1000.0)))
        self.k_in = k_in
        self.res16 = StreamResampler(self.sr, CONTENT_SAMPLE_RATE, k_in)
        self.res22 = StreamResampler(self.sr, m.sample_rate, k_in)
        threads = torch.get_num_threads()
        self.content_chunk_ms = float(cfg.content_chunk_ms or content_chunk_for(cfg.block_ms))
        chunk_frames = int(round(self.content_chunk_ms / 20.0))
        if m.content_encoder != "whisper":
            raise ComoliveError(f"this voice model reads {m.content_encoder!r} content features, which the live "
                                "session cannot compute (it streams Whisper content only); use convert")
        self.content = _loaded(("content", self.device, threads, chunk_frames),
                               lambda: WhisperContent(device=self.device, threads=threads, chunk_frames=chunk_frames))
        self.content_stream = self.content.stream()
        self.content_chunk = self.content.chunk_samples
        pitch_ex = _loaded(("pitch", cfg.pitch, self.device), lambda: live_pitch_extractor(cfg.pitch, self.device))
        base_s = 0.16 if str(cfg.pitch).strip().lower() == "fcpe" else 0.32
        window_s = cfg.pitch_window_s or max(base_s, 2 * self.content_chunk / CONTENT_SAMPLE_RATE)
        self.pitch = PitchStream(window_s=window_s, chunk_samples=self.content_chunk, extractor=pitch_ex,
                                 right_frames=int(round(cfg.pitch_right_ms / 10.0)))
        la = cfg.loudness_lookahead_ms
        self.loud = LoudnessStream(m.hop_length, 1024,
                                   lookahead=None if la is None else int(round(la * m.sample_rate / 1000.0)))
        self.f0_post = CausalF0()
        self.decoder = DecoderStream(self.model.student, steps=cfg.steps, seed=cfg.seed)
        self.condition = Conditioner(self.model.student)
        self.vocoder_name, self.vocoder = _load_vocoder(cfg.vocoder, self._device)
        self._check_formant(cfg.formant)
        if self.vocoder.sample_rate != m.sample_rate or self.vocoder.hop_length != m.hop_length:
            raise ComoliveError(f"vocoder {self.vocoder_name!r} works at {self.vocoder.sample_rate} Hz / hop "
                                f"{self.vocoder.hop_length}, the model at {m.sample_rate} Hz / hop {m.hop_length}")
        self.voc_stream = self.vocoder.stream()
        self.level = LevelFollower(m.hop_length, m.sample_rate) if cfg.follow_level else None
        self.k_out = max(1, int(round(RESAMPLE_MS * m.sample_rate / 1000.0)))

        # latency: bookkeeping of every stage over many blocks
        self._plan_grids()
        self.latency_samples, self._parts = self._plan_latency()
        self.out_res = RationalResampler(m.sample_rate, self.sr, self.k_out,
                                         offset=(self.latency_samples - k_in) * self._q_out)

        # live settings
        self._lock = threading.Lock()
        self._pending: dict = {}
        self.key = _Ramp(cfg.key)
        self.formant = _Ramp(cfg.formant)
        self.speaker = _Ramp(self.model.speaker(self.voice) if cfg.reference is None else
                             self._reference_embedding(cfg.reference))
        self.gate_db = float(cfg.gate_db)
        self.gate_hold = int(round(cfg.gate_hold_ms * self.sr / 1000.0))
        self.gain = 10.0 ** (cfg.input_gain_db / 20.0)
        self.fade = max(1, int(round(FADE_MS * self.sr / 1000.0)))
        self.stats = SessionStats()
        self._run_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # the content thread, started at the first content job
        self._threaded = bool(cfg.content_thread) and _usable_cpus() > 1
        self.reset()

    # ------------------------------------------------------------------ configuration
    @staticmethod
    def _validate(cfg: SessionConfig) -> None:
        sr = cfg.sample_rate
        if not isinstance(sr, (int, np.integer)) or isinstance(sr, bool) or not MIN_RATE <= sr <= MAX_RATE:
            raise ComoliveError(f"unsupported sample rate {sr!r}: use a whole number of Hz from {MIN_RATE} "
                                f"to {MAX_RATE}")
        if not (isinstance(cfg.block_ms, (int, float)) and math.isfinite(cfg.block_ms)):
            raise ComoliveError(f"block_ms must be a number, got {cfg.block_ms!r}")
        if cfg.block_ms < MIN_BLOCK_MS:
            raise ComoliveError(f"block of {cfg.block_ms:g} ms is too small (at least {MIN_BLOCK_MS:g} ms)")
        if cfg.block_ms > MAX_BLOCK_MS:
            raise ComoliveError(f"block of {cfg.block_ms:g} ms is too large (at most {MAX_BLOCK_MS:g} ms)")
        if not isinstance(cfg.steps, int) or not 1 <= cfg.steps <= 8:
            raise ComoliveError(f"steps must be a whole number from 1 to 8, got {cfg.steps!r}")
        for name in ("key", "formant", "gate_hold_ms", "input_gain_db"):
            v = getattr(cfg, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ComoliveError(f"{name} must be a finite number, got {v!r}")
        if cfg.gate_hold_ms < 0:
            raise ComoliveError("gate_hold_ms must be >= 0")
        c = cfg.content_chunk_ms
        if c is not None and (not isinstance(c, (int, float)) or not 20 <= c <= 400
                              or abs(c / 20.0 - round(c / 20.0)) > 1e-9):
            raise ComoliveError(f"content_chunk_ms must be a multiple of 20 ms from 20 to 400, got {c!r}")
        if not 0 <= cfg.pitch_right_ms <= 40:
            raise ComoliveError(f"pitch_right_ms must be 0..40, got {cfg.pitch_right_ms!r}")
        if cfg.loudness_lookahead_ms is not None and not 0 <= cfg.loudness_lookahead_ms <= 17.4:
            raise ComoliveError(f"loudness_lookahead_ms must be 0..17.4 (or None), got {cfg.loudness_lookahead_ms!r}")
        if abs(cfg.key) > KEY_RANGE:
            raise ComoliveError(f"key {cfg.key:g} is out of range (-{KEY_RANGE}..{KEY_RANGE} semitones)")
        if abs(cfg.formant) > FORMANT_RANGE:
            raise ComoliveError(f"formant {cfg.formant:g} is out of range "
                                f"(-{FORMANT_RANGE}..{FORMANT_RANGE} semitones)")
        if not isinstance(cfg.gate_db, (int, float)) or math.isnan(cfg.gate_db):
            raise ComoliveError(f"gate_db must be a number (-inf turns the gate off), got {cfg.gate_db!r}")

    def _reference_embedding(self, ref) -> np.ndarray:
        """A Reference's d-vector, checked against the model's speaker size."""
        emb = np.asarray(getattr(ref, "embedding", None), np.float32)
        if emb.shape != (self.mcfg.speaker_dim,) or not np.isfinite(emb).all():
            raise ComoliveError(f"reference voice: expected a {self.mcfg.speaker_dim}-d speaker embedding "
                                "(engine.reference.load_reference)")
        return emb

    def set(self, **changes) -> None:
        """Change key, formant, voice, gate_db, gate_hold_ms or input_gain_db; applied at the next block.

        Thread-safe; values are checked here, so a bad value raises in the caller's thread and the
        stream goes on unchanged."""
        unknown = set(changes) - set(LIVE_KEYS)
        if unknown:
            extra = " (steps changes the latency: start a new session)" if "steps" in unknown else ""
            raise ComoliveError(f"cannot change {', '.join(sorted(unknown))} live{extra}; "
                                f"live settings: {', '.join(LIVE_KEYS)}")
        if "voice" in changes:
            self.model.speaker(changes["voice"])
        if changes.get("reference") is not None:
            self._reference_embedding(changes["reference"])
        trial = replace(self.config, **{k: v for k, v in changes.items() if k not in ("voice", "reference")})
        self._validate(trial)
        if "formant" in changes:
            self._check_formant(changes["formant"])
        with self._lock:
            self._pending.update(changes)

    def _check_formant(self, formant: float) -> None:
        if formant and not self.vocoder.pitch_from_f0:
            raise ComoliveError(f"a formant shift needs an f0-driven vocoder ('hn'): {self.vocoder_name!r} takes "
                                f"its pitch from the mel, which the shift moves too")

    def _apply_pending(self) -> None:
        with self._lock:
            ch, self._pending = self._pending, {}
        if not ch:
            return
        self.config = replace(self.config, **ch)
        if "key" in ch:
            self.key.set(float(ch["key"]))
        if "formant" in ch:
            self.formant.set(float(ch["formant"]))
        if "voice" in ch:
            self.voice = ch["voice"]
            self.speaker.set(self.model.speaker(self.voice))
            self.config = replace(self.config, reference=None)
        if ch.get("reference") is not None:
            self.voice = ch["reference"].name
            self.speaker.set(self._reference_embedding(ch["reference"]))
        if "gate_db" in ch:
            self.gate_db = float(ch["gate_db"])
        if "gate_hold_ms" in ch:
            self.gate_hold = int(round(float(ch["gate_hold_ms"]) * self.sr / 1000.0))
        if "input_gain_db" in ch:
            self.gain = 10.0 ** (float(ch["input_gain_db"]) / 20.0)

    # ------------------------------------------------------------------ latency bookkeeping
    def _plan_grids(self) -> None:
        m = self.mcfg
        n_frames = int(PLAN_SECONDS * m.frame_rate) + 64
        i = np.arange(n_frames)
        self._cidx = grid_index(i, m.sample_rate, m.hop_length, CONTENT_SAMPLE_RATE, CONTENT_HOP)
        self._pidx = grid_index(i, m.sample_rate, m.hop_length, PITCH_RATE, PITCH_HOP)
        g = math.gcd(m.sample_rate, self.sr)
        self._p_out, self._q_out = self.sr // g, m.sample_rate // g

    def _model_frames(self, n, chunked: bool = True, features: bool = True):
        """Model frames whose features are all final after n input samples (vectorised)."""
        n16 = self.res16.available(n)
        n22 = self.res22.available(n)
        if not features:
            return n22 // self.mcfg.hop_length
        if chunked:
            cf = (n16 // self.content_chunk) * self.content.chunk_frames
            pf = self.pitch.available(n16)
        else:
            cf = n16 // CONTENT_HOP
            pf = np.maximum(0, n16 // PITCH_HOP - self.pitch.right)
        fc = np.searchsorted(self._cidx, cf, side="left")
        fp = np.searchsorted(self._pidx, pf, side="left")
        return np.minimum(np.minimum(fc, fp), self.loud.available(n22))

    def _delay_for(self, frames: np.ndarray, ends: np.ndarray, post: bool = True) -> int:
        """Smallest output delay such that block ends `ends` find their last output sample computed."""
        hop = self.mcfg.hop_length
        if post:
            fd = np.maximum(0, frames - self.decoder.lookahead_frames)
            v = np.maximum(0, fd * hop - self.voc_stream.delay_samples)
            k_out = self.k_out
        else:
            v, k_out = frames * hop, 0
        # output n reads model-rate position (n - D + k_in) * Q / P; needs floor(pos) + k_out < v
        u_max = -((-(v - k_out) * self._p_out) // self._q_out) - 1
        return int(np.max(ends - 1 + self.k_in - u_max))

    def _plan_latency(self) -> tuple[int, dict]:
        b = self.block_size
        ends = np.arange(1, int(PLAN_SECONDS * self.sr) // b + 1, dtype=np.int64) * b
        d_all = self._delay_for(self._model_frames(ends), ends)
        d_fine = self._delay_for(self._model_frames(ends, chunked=False), ends)
        d_grid = self._delay_for(self._model_frames(ends, features=False), ends)
        d_bare = self._delay_for(self._model_frames(ends, features=False), ends, post=False)
        latency = max(d_all, self.k_in)
        sr = self.sr
        m = self.mcfg
        dec = self.decoder.lookahead_frames * m.hop_length / m.sample_rate
        voc = self.voc_stream.delay_samples / m.sample_rate
        rout = self.k_out / m.sample_rate
        post_s = (d_grid - d_bare) / sr  # decoder + vocoder + output resampling, as whole samples
        parts = {
            "resampling in": self.k_in / sr,
            "frame grid": (d_bare - self.k_in) / sr,
            "feature lookahead (loudness window, pitch)": (d_fine - d_grid) / sr,
            "content/pitch chunk": (latency - d_fine) / sr,
            "decoder lookahead": dec,
            "vocoder lookahead": voc,
            "resampling out": rout,
            "rounding": post_s - dec - voc - rout,
        }
        return latency, {k: 1000.0 * v for k, v in parts.items()}

    def latency_parts(self) -> dict[str, float]:
        """ms by named part; the parts sum to latency_samples / sample_rate * 1000."""
        return dict(self._parts)

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sr

    @property
    def end_to_end_floor_ms(self) -> float:
        """latency + one block: the least any block-based audio loop can reach (before its output margin)."""
        return 1000.0 * (self.latency_samples + self.block_size) / self.sr

    # ------------------------------------------------------------------ stream state
    def _content_pool(self) -> ThreadPoolExecutor:
        """The one worker thread that runs content jobs (started on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="comolive-content")
            # a dropped session stops its thread too (the finalizer holds the pool, not the session)
            self._pool_finalizer = weakref.finalize(self, self._pool.shutdown, wait=False)
        return self._pool

    def close(self) -> None:
        """Stop the content thread (waits for a process() call in progress). The session stays usable:
        the next process() that needs the thread starts it again."""
        with self._run_lock:
            if self._pool is not None:
                self._pool_finalizer.detach()
                self._pool.shutdown(wait=True)
                self._pool = None

    def warm_up(self, blocks: int = WARM_UP_BLOCKS) -> None:
        """A few blocks of a quiet sung tone through every stage, then reset(): the first blocks of a show
        pay for lazy set-up (thread start, first network calls) and would play as dropouts."""
        t = np.arange(blocks * self.block_size) / self.sr
        tone = 0.05 * np.sin(2 * np.pi * 220.0 * t) + 0.02 * np.sin(2 * np.pi * 440.0 * t)
        for k in range(blocks):
            self.process(tone[k * self.block_size:(k + 1) * self.block_size].astype(np.float32))
        self.reset()

    def reset(self) -> None:
        """Back to time 0 with all stream state cleared (live settings are kept). Thread-safe: waits
        for a process() call in progress."""
        with self._run_lock:
            self._reset()

    def _reset(self) -> None:
        if self.level is not None:
            self.level.clear()
        self._restart_streams()
        self.n_total = 0           # input samples seen since reset
        self.origin = 0            # n_total at which the current stream started
        self.open = False
        self.quiet = self.gate_hold  # start closed: the first loud block opens the gate
        self.fade_in_at: int | None = None
        self.stats = SessionStats()

    def _restart_streams(self) -> None:
        for s in (self.res16, self.res22, self.content_stream, self.pitch, self.loud, self.f0_post,
                  self.decoder, self.voc_stream):
            s.reset()
        if hasattr(self, "out_res"):  # made after the latency plan, which needs the other stages
            self.out_res.reset()
        if self.level is not None:
            self.level.restart()
        self._content = np.zeros((0, self.content.dim), np.float32)
        self._c0 = 0
        self._f0raw = np.zeros(0, np.float32)
        self._p0 = 0
        self._loud = np.zeros(0, np.float32)
        self._l0 = 0
        self.frames = 0            # model frames assembled
        self._voc_f0: list[np.ndarray] = []  # vocoder f0 of frames pushed to the decoder, not yet decoded
        self._voc_formant: list[np.ndarray] = []  # their formant shift (semitones), applied to the decoded mel

    # ------------------------------------------------------------------ processing
    def process(self, block: np.ndarray) -> np.ndarray:
        """One block in (float32 mono; any length, block_size for the declared latency) -> same length out.

        `stats` is replaced by a new SessionStats when the call ends (readers in other threads never
        see a half-updated one)."""
        with self._run_lock:
            prev = self.stats
            self._st = SessionStats(nonfinite=prev.nonfinite, underflows=prev.underflows, restarts=prev.restarts,
                                    failures=prev.failures)
            y = self._process(block)
            self.stats = self._st
            return y

    def _process(self, block: np.ndarray) -> np.ndarray:
        t_start = time.perf_counter()
        c_start = time.process_time()
        self._apply_pending()
        x = np.asarray(block, dtype=np.float32)
        if x.ndim > 1:
            x = x.reshape(len(x), -1).mean(axis=1) if x.shape[0] else x.reshape(0)
        x = np.array(x, dtype=np.float32, copy=True).reshape(-1)
        bad = ~np.isfinite(x)
        st = self._st
        if bad.any():
            st.nonfinite += int(bad.sum())
            x[bad] = 0.0
        np.clip(x, -1.0, 1.0, out=x)
        n = len(x)
        st.stage_ms = {k: 0.0 for k in STAGES}
        st.stage_cpu_ms = {k: 0.0 for k in STAGES}
        st.frames, st.input_f0_hz, st.output_f0_hz = 0, 0.0, 0.0
        st.input_level_db = _level_db(x)

        # noise gate
        loud = st.input_level_db >= self.gate_db
        self.quiet = 0 if loud else self.quiet + n
        closing = False
        if not self.open and loud:
            self.open = True
            self.origin = self.n_total
            self._restart_streams()
            self.fade_in_at = self.origin + self.latency_samples
            st.restarts += 1
        elif self.open and self.quiet >= self.gate_hold and self.quiet > 0:
            closing = True

        y = np.zeros(n, np.float32)
        if self.open:
            try:
                y = self._convert(x)
            except Exception as e:  # noqa: BLE001 - one bad block must not end the show
                st.failed, st.failures = f"{type(e).__name__}: {e}", st.failures + 1
                self.open, self.fade_in_at, closing = False, None, False  # the next loud block restarts
        if closing:
            ramp = np.zeros(n, np.float32)
            f = min(self.fade, n)
            ramp[:f] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(f) + 1) / f)
            y *= ramp
            self.open = False
        if self.fade_in_at is not None and self.open:
            a = self.fade_in_at - self.n_total  # fade start inside this block
            idx = np.arange(n) - a
            if a < n:
                g = np.clip((idx + 1) / self.fade, 0.0, 1.0)
                y *= (0.5 - 0.5 * np.cos(np.pi * g)).astype(np.float32)
                if a + self.fade <= n:
                    self.fade_in_at = None
            else:
                y[:] = 0.0
        self.n_total += n
        st.gated = not self.open and not closing
        np.clip(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0, out=y)
        st.output_level_db = _level_db(y)
        st.compute_ms = 1000.0 * (time.perf_counter() - t_start)
        st.cpu_ms = 1000.0 * (time.process_time() - c_start)
        return y

    def _convert(self, x: np.ndarray) -> np.ndarray:
        st = self._st
        m = self.mcfg
        laps = _Laps(st)
        xg = x * np.float32(self.gain)
        x16 = self.res16.push(xg)
        x22 = self.res22.push(xg)
        laps.lap("resample")
        # pitch and content read the same samples and share no state: when a content chunk is due,
        # Whisper runs in the content thread while pitch runs here
        job = None
        if self._threaded and self.content_stream.chunks_for(len(x16)):
            job = self._content_pool().submit(self.content_stream.push, x16)
        try:
            f0new = self.pitch.push(x16)
        except BaseException:
            if job is not None:
                wait([job])  # nothing may touch the content stream (reset, restart) while the job runs
            raise
        laps.lap("pitch")
        cnew = job.result() if job is not None else self.content_stream.push(x16)  # re-raises its error
        laps.lap("content")
        lnew = self.loud.push(x22)
        if self.level is not None:
            self.level.feed_input(x22)

        # assemble model frames whose features are all final
        self._content = np.concatenate([self._content, cnew]) if len(cnew) else self._content
        self._f0raw = np.concatenate([self._f0raw, f0new]) if len(f0new) else self._f0raw
        self._loud = np.concatenate([self._loud, lnew]) if len(lnew) else self._loud
        i0 = self.frames
        i1 = self._l0 + len(self._loud)
        y22 = np.zeros(0, np.float32)
        if i1 > i0:
            i = np.arange(i0, i1)
            ci = grid_index(i, m.sample_rate, m.hop_length, CONTENT_SAMPLE_RATE, CONTENT_HOP)
            pi = grid_index(i, m.sample_rate, m.hop_length, PITCH_RATE, PITCH_HOP)
            ok = (ci < self._c0 + len(self._content)) & (pi < self._p0 + len(self._f0raw))
            k = int(np.argmin(ok)) if not ok.all() else len(ok)
            if k > 0:
                y22 = self._decode(i[:k], ci[:k], pi[:k], laps)
        laps.lap("resample")  # loudness and frame assembly are counted with resampling
        if self.level is not None:
            y22 = self.level.apply(y22)
        y22 = y22 / np.float32(self.gain)
        self.out_res.push(y22)
        # output samples n (local to the stream) of this block
        n0 = self.n_total - self.origin
        n1 = n0 + len(x)
        ready = int(self.out_res.available(self.out_res.n_in))
        y = np.zeros(len(x), np.float32)
        upto = min(n1, ready)
        if upto > n0:
            y[: upto - n0] = self.out_res.render(n0, upto)
        if upto < n1:
            st.underflows += n1 - max(upto, n0)
        self.out_res.trim(n1)
        laps.lap("resample")
        return y

    def _decode(self, i: np.ndarray, ci: np.ndarray, pi: np.ndarray, laps: _Laps) -> np.ndarray:
        """Model frames i (features ready) -> decoder -> vocoder; returns new model-rate samples."""
        st = self._st
        laps.lap("resample")
        n = len(i)
        content = self._content[ci - self._c0]
        f0raw = self._f0raw[pi - self._p0]
        loud = self._loud[i - self._l0]
        guarded, held, voiced = self.f0_post(f0raw)
        key = self.key.take(n)
        f0 = (held * np.exp2(key / 12.0)).astype(np.float32)
        f0_voc = f0 * voiced
        spk = self.speaker.take(n).astype(np.float32)
        formant = self.formant.take(n).astype(np.float32)
        # the decoder's own shift input stays at 0 (its training value); formants move by warping its mel
        pre = self.condition(content, f0, voiced, loud, spk, np.zeros(n, np.float32))
        mel = self.decoder.push(pre)
        self._voc_f0.append(f0_voc)
        self._voc_formant.append(formant)
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        laps.lap("decoder")
        v = np.concatenate(self._voc_f0)
        k = mel.shape[-1]
        f0m, rest = v[:k], v[k:]
        self._voc_f0 = [rest]
        fm = np.concatenate(self._voc_formant)
        self._voc_formant = [fm[k:]]
        if fm[:k].any():
            warped = warp_mel_frames(mel.float().cpu().numpy(), fm[:k])
            mel = torch.from_numpy(warped).to(device=mel.device, dtype=mel.dtype)
        audio = self.voc_stream.push(mel, torch.from_numpy(f0m).to(mel.device))
        y = audio.float().cpu().numpy().reshape(-1)
        laps.lap("vocoder")
        # bookkeeping and trimming of the feature buffers
        self.frames = int(i[-1]) + 1
        st.frames = n
        if voiced.any():
            st.input_f0_hz = float(np.median(guarded[voiced > 0]))
            st.output_f0_hz = float(np.median(f0[voiced > 0]))
        m = self.mcfg
        nxt = self.frames
        c_keep = int(grid_index(nxt, m.sample_rate, m.hop_length, CONTENT_SAMPLE_RATE, CONTENT_HOP))
        p_keep = int(grid_index(nxt, m.sample_rate, m.hop_length, PITCH_RATE, PITCH_HOP))
        # never trim past what has arrived: the next frame's source frame may not be here yet
        c_keep = min(c_keep, self._c0 + len(self._content))
        p_keep = min(p_keep, self._p0 + len(self._f0raw))
        l_keep = min(nxt, self._l0 + len(self._loud))
        self._content, self._c0 = self._content[c_keep - self._c0:], c_keep
        self._f0raw, self._p0 = self._f0raw[p_keep - self._p0:], p_keep
        self._loud, self._l0 = self._loud[l_keep - self._l0:], l_keep
        return y

    # ------------------------------------------------------------------ whole files
    def run_offline(self, wav: np.ndarray, aligned: bool = True) -> np.ndarray:
        """Feed a whole recording (at sample_rate) block by block from time 0, as the live loop would.

        aligned=True drops the first latency_samples, so output[n] is the conversion of wav[n]
        (same length as wav); aligned=False returns the raw process() stream (len(wav) rounded up
        to whole blocks)."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        self.reset()
        total = len(wav) + (self.latency_samples if aligned else 0)
        nb = -(-total // self.block_size)
        x = np.zeros(nb * self.block_size, np.float32)
        x[: len(wav)] = wav
        out = np.concatenate([self.process(x[k * self.block_size:(k + 1) * self.block_size])
                              for k in range(nb)]) if nb else np.zeros(0, np.float32)
        if not aligned:
            return out
        return out[self.latency_samples: self.latency_samples + len(wav)]


def run_offline(config: SessionConfig, wav: np.ndarray, sr: int) -> np.ndarray:
    """The offline run of the streaming computation: a session at `sr` fed the file block by block;
    returns the conversion aligned with the input (delay removed), len(wav) samples."""
    session = StreamSession(replace(config, sample_rate=int(sr)))
    return session.run_offline(wav)
