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

Latency. The output sample n is the conversion of input sample n - latency_samples: the smallest
delay at which every output sample of every block is final when process() returns, composed from the
stages' own declarations (engine/pipeline.py, LatencyPlan). It does not include the block itself: an
audio loop adds one block plus its output margin (`end_to_end_floor_ms` = latency + block). The
content/pitch chunk follows the block (`content_chunk_for`), so a block never waits for a chunk that
ends after it. Content runs in a worker thread while pitch runs (`content_thread`); the output is the
same either way. Offline normalises the whole file's level; live applies a fixed `input_gain_db` and a
slow level follower (`follow_level`). docs/architecture.md gives the measured effect of each setting.

A block whose conversion raises plays as silence (`stats.failed` says why, `stats.failures` counts them),
and the next block restarts every stream on the same timeline (as if a new recording began there), with a
fade-in.

Noise gate (engine/noise_gate.py): the output held down while the input is quiet; the streams keep
running through a pause, so the next phrase starts with its context. A pause SLEEP_S longer than the hold
pauses the streams (an idle show costs nothing): their state is kept as it stood, and the next loud block
carries on from it, as if the silence in between had not been, so that phrase starts with the context of
the pause before it. A show starts with the streams running, so its first phrase has the room tone before
it as context too (empty streams at the voice's onset cost about 0.1 DNSMOS, docs/results.md); if nobody
sings, they pause SLEEP_S after the hold. While a conversion runs, the output does not depend on how the
input was cut into blocks: run_offline() with any block size gives the same samples, apart from the
gate's fades.
"""
from __future__ import annotations

import math
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from fractions import Fraction

import numpy as np
import torch

from engine.content import CONTENT_HOP, CONTENT_SAMPLE_RATE, WhisperContent
from engine.decoder_stream import Conditioner, DecoderStream
from engine.feature_stream import LoudnessStream, grid_index
from engine.frame_align import FrameAligner
from engine.level_follow import LevelFollower
from engine.noise_gate import NoiseGate
from engine.pipeline import PLAN_SECONDS, Branch, LatencyPlan, VocoderStage
from engine.pitch_stream import PITCH_HOP, PITCH_RATE, CausalF0, PitchStream, live_pitch_extractor
from engine.ramp import Ramp
from engine.resample_stream import RationalResampler, StreamResampler
from engine.session_config import (LIVE_KEYS, PITCH_WINDOW_S, STAGES, Laps, SessionConfig, SessionStats,
                                    content_chunk_for, validate_config)
from engine.shared_parts import load_session_vocoder, loaded
from models.device import pick_device
from models.errors import ComoliveError
from models.formant import warp_mel_frames
from models.voice_model import VoiceModel

RESAMPLE_MS = 1.0      # half length of the FIR resampling kernels (= their delay)
SLEEP_S = 2.0          # a pause this much longer than the gate's hold pauses the streams until the voice returns


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


WARM_UP_BLOCKS = 4  # blocks run through a session before its show starts (StreamSession.warm_up)


class StreamSession:
    """A loaded model, its feature extractors and vocoder, and the state of one live stream."""

    def __init__(self, config: SessionConfig):
        self.config = cfg = replace(config)
        validate_config(cfg)
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        self._device = pick_device(cfg.device)
        self.device = "cuda:0" if self._device.type == "cuda" else "cpu"
        self.model = loaded(("model", cfg.model, str(self._device)),
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
        self._build_stages(cfg, m)
        self.latency_samples, self._parts = self._plan_latency()
        q_out = m.sample_rate // math.gcd(m.sample_rate, self.sr)
        self.out_res = RationalResampler(m.sample_rate, self.sr, self.k_out, name="resampling out",
                                         offset=(self.latency_samples - self.k_in) * q_out)
        # every stage, in the order a block passes them (reset together: _restart_streams)
        self.stages = (self.res16, self.res22, self.content_stream, self.pitch, self.loud, self.align,
                       self.f0_post, self.condition, self.decoder, self.voc_stream, self.out_res)

        # live settings
        self._lock = threading.Lock()
        self._pending: dict = {}
        self.key = Ramp(cfg.key)
        self.formant = Ramp(cfg.formant)
        self.speaker = Ramp(self.model.speaker(self.voice) if cfg.reference is None else
                            self._reference_embedding(cfg.reference))
        self.gate = NoiseGate(self.sr, cfg.gate_db, cfg.gate_hold_ms, self.latency_samples, int(SLEEP_S * self.sr),
                              cfg.gate_floor_db)
        self.gain = 10.0 ** (cfg.input_gain_db / 20.0)
        self.stats = SessionStats()
        self._run_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None  # the content thread, started at the first content job
        self._threaded = bool(cfg.content_thread) and _usable_cpus() > 1
        self.reset()

    def _build_stages(self, cfg: SessionConfig, m) -> None:
        """Every stage of the live path but the output resampler (whose offset is the latency)."""
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
        self.content = loaded(("content", self.device, threads, chunk_frames),
                               lambda: WhisperContent(device=self.device, threads=threads, chunk_frames=chunk_frames))
        self.content_stream = self.content.stream()
        self.content_chunk = self.content.chunk_samples
        pitch_ex = loaded(("pitch", cfg.pitch, self.device), lambda: live_pitch_extractor(cfg.pitch, self.device))
        base_s = PITCH_WINDOW_S if str(cfg.pitch).strip().lower() == "fcpe" else 0.32  # dio, harvest: longer
        window_s = cfg.pitch_window_s or max(base_s, 2 * self.content_chunk / CONTENT_SAMPLE_RATE)
        if window_s * CONTENT_SAMPLE_RATE < self.content_chunk + 160 * round(cfg.pitch_right_ms / 10.0):
            raise ComoliveError(f"a pitch window of {1000 * window_s:g} ms is shorter than the "
                                f"{self.content_chunk_ms:g} ms chunk and its right context: make it longer or the "
                                f"block shorter")
        self.pitch = PitchStream(window_s=window_s, chunk_samples=self.content_chunk, extractor=pitch_ex,
                                 right_frames=int(round(cfg.pitch_right_ms / 10.0)))
        la = cfg.loudness_lookahead_ms
        self.loud = LoudnessStream(m.hop_length, 1024, sample_rate=m.sample_rate,
                                   lookahead=None if la is None else int(round(la * m.sample_rate / 1000.0)))
        self.align = FrameAligner(m.sample_rate, m.hop_length, self.content.dim)
        self.f0_post = CausalF0(frame_rate=Fraction(m.sample_rate, m.hop_length))
        self.decoder = DecoderStream(self.model.student, steps=cfg.steps, seed=cfg.seed)
        self.condition = Conditioner(self.model.student)
        self.vocoder_name, self.vocoder = load_session_vocoder(cfg.vocoder, self._device, self.model)
        self._check_formant(cfg.formant)
        if self.vocoder.sample_rate != m.sample_rate or self.vocoder.hop_length != m.hop_length:
            raise ComoliveError(f"vocoder {self.vocoder_name!r} works at {self.vocoder.sample_rate} Hz / hop "
                                f"{self.vocoder.hop_length}, the model at {m.sample_rate} Hz / hop {m.hop_length}")
        self.voc_stream = VocoderStage(self.vocoder.stream(), m.sample_rate, m.hop_length)
        self.level = LevelFollower(m.hop_length, m.sample_rate) if cfg.follow_level else None
        self.k_out = max(1, int(round(RESAMPLE_MS * m.sample_rate / 1000.0)))

    # ------------------------------------------------------------------ configuration
    def _reference_embedding(self, ref) -> np.ndarray:
        """A Reference's d-vector, checked against the model's speaker size."""
        emb = np.asarray(getattr(ref, "embedding", None), np.float32)
        if emb.shape != (self.mcfg.speaker_dim,) or not np.isfinite(emb).all():
            raise ComoliveError(f"reference voice: expected a {self.mcfg.speaker_dim}-d speaker embedding "
                                "(engine.reference.load_reference)")
        return emb

    def set(self, **changes) -> None:
        """Change key, formant, voice, gate_db, gate_hold_ms, gate_floor_db or input_gain_db; applied at the
        next block.

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
        validate_config(trial)
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
        self.gate.set(ch.get("gate_db"), ch.get("gate_hold_ms"), ch.get("gate_floor_db"))
        if "input_gain_db" in ch:
            self.gain = 10.0 ** (float(ch["input_gain_db"]) / 20.0)

    # ------------------------------------------------------------------ latency
    def _plan_latency(self) -> tuple[int, dict]:
        """The stages joined as _convert joins them, their declarations composed (engine/pipeline.py)."""
        m = self.mcfg
        frames = np.arange(int(PLAN_SECONDS * m.frame_rate) + 64)

        def grid(rate: int, hop: int) -> np.ndarray:
            return grid_index(frames, m.sample_rate, m.hop_length, rate, hop)

        branches = [Branch(self.res22, [self.loud], [None]),
                    Branch(self.res16, [self.content_stream, self.pitch],
                           [grid(CONTENT_SAMPLE_RATE, CONTENT_HOP), grid(PITCH_RATE, PITCH_HOP)])]
        out = RationalResampler(m.sample_rate, self.sr, self.k_out, offset=0, name="resampling out")
        post = [self.f0_post, self.condition, self.decoder, self.voc_stream]
        return LatencyPlan(self.sr, self.block_size, self.k_in, branches, post, out).plan()

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
        self.origin = 0            # n_total - origin: the streams' own sample count (they skip paused time)
        self._running = True       # False while paused: the next loud block resumes the streams
        self._broken = False       # a block failed: the next loud block restarts them instead
        self.gate.reset()
        self.stats = SessionStats()

    def _restart_streams(self) -> None:
        for s in self.stages:
            s.reset()
        if self.level is not None:
            self.level.restart()
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

        if self.gate.step(st.input_level_db, n, self.n_total, preroll=self.block_size):
            st.restarts += 1
        if self.gate.asleep:
            self._running = False  # a long pause: the streams wait, as they stand, for the voice
        if not self._running and self.gate.open:  # the voice is back (or a show's first phrase, or after a failure)
            if self._broken:  # a failed block left the streams in an unknown state: a new recording begins here
                self.origin = self.n_total
                self._restart_streams()
                self._broken = False
            self.gate.restarted(self.n_total)
            self._running = True
        y = np.zeros(n, np.float32)
        if self._running:
            try:
                y = self._convert(x)
            except Exception as e:  # noqa: BLE001 - one bad block must not end the show
                st.failed, st.failures = f"{type(e).__name__}: {e}", st.failures + 1
                self._running, self._broken = False, True
        else:
            self.origin += n  # paused: the streams' time stands still
        self.gate.apply(y, self.n_total)
        self.n_total += n
        st.gated = self.gate.gated
        np.clip(np.nan_to_num(y, nan=0.0, posinf=0.0, neginf=0.0), -1.0, 1.0, out=y)
        st.output_level_db = _level_db(y)
        st.compute_ms = 1000.0 * (time.perf_counter() - t_start)
        st.cpu_ms = 1000.0 * (time.process_time() - c_start)
        return y

    def _convert(self, x: np.ndarray) -> np.ndarray:
        st = self._st
        laps = Laps(st)
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

        frames, content, f0raw, loud = self.align.push(cnew, f0new, lnew)  # model frames now complete
        y22 = self._decode(content, f0raw, loud, laps) if len(frames) else np.zeros(0, np.float32)
        laps.lap("resample")  # loudness and frame assembly are counted with resampling
        if self.level is not None:
            y22 = self.level.apply(y22)
        y22 = y22 / np.float32(self.gain)
        self.out_res.push(y22)
        # output samples n (local to the stream) of this block
        n0 = self.n_total - self.origin
        n1 = n0 + len(x)
        ready = int(self.out_res.ready(self.out_res.n_in))
        y = np.zeros(len(x), np.float32)
        upto = min(n1, ready)
        if upto > n0:
            y[: upto - n0] = self.out_res.render(n0, upto)
        if upto < n1:
            st.underflows += n1 - max(upto, n0)
        self.out_res.trim(n1)
        laps.lap("resample")
        return y

    def _decode(self, content: np.ndarray, f0raw: np.ndarray, loud: np.ndarray, laps: Laps) -> np.ndarray:
        """Complete model frames -> decoder -> vocoder; returns new model-rate samples."""
        st = self._st
        laps.lap("resample")
        n = len(loud)
        guarded, held, voiced = self.f0_post.push(f0raw)
        key = self.key.take(n)
        f0 = (held * np.exp2(key / 12.0)).astype(np.float32)
        f0_voc = f0 * voiced
        spk = self.speaker.take(n).astype(np.float32)
        formant = self.formant.take(n).astype(np.float32)
        # the decoder's own shift input stays at 0 (its training value); formants move by warping its mel
        pre = self.condition.push(content, f0, voiced, loud, spk, np.zeros(n, np.float32))
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
        st.frames = n
        if voiced.any():
            st.input_f0_hz = float(np.median(guarded[voiced > 0]))
            st.output_f0_hz = float(np.median(f0[voiced > 0]))
        return y

    # ------------------------------------------------------------------ whole files
    def flush(self) -> np.ndarray:
        """End of input: the latency_samples of output still owed for the input so far, computed as live
        computes them when the input falls silent (whole blocks of zeros); then back to time 0."""
        b = self.block_size
        y = np.concatenate([self.process(np.zeros(b, np.float32)) for _ in range(-(-self.latency_samples // b))]
                           + [np.zeros(0, np.float32)])
        self.reset()
        return y[: self.latency_samples]

    def run_offline(self, wav: np.ndarray, aligned: bool = True) -> np.ndarray:
        """Feed a whole recording (at sample_rate) block by block from time 0, as the live loop would.

        aligned=True drops the first latency_samples and flushes, so output[n] is the conversion of wav[n]
        (same length as wav); aligned=False returns the raw process() stream (len(wav) rounded up
        to whole blocks)."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        self.reset()
        b = self.block_size
        x = np.zeros(-(-len(wav) // b) * b, np.float32)
        x[: len(wav)] = wav
        out = [self.process(x[k:k + b]) for k in range(0, len(x), b)]
        if not aligned:
            return np.concatenate(out) if out else np.zeros(0, np.float32)
        out.append(self.flush())
        return np.concatenate(out)[self.latency_samples: self.latency_samples + len(wav)]


def run_offline(config: SessionConfig, wav: np.ndarray, sr: int) -> np.ndarray:
    """The offline run of the streaming computation: a session at `sr` fed the file block by block;
    returns the conversion aligned with the input (delay removed), len(wav) samples."""
    session = StreamSession(replace(config, sample_rate=int(sr)))
    return session.run_offline(wav)
