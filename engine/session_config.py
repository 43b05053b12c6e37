"""What a live session is configured with, what it reports per block, and the checks on both.

SessionConfig is the whole of a session's settings (the ones in LIVE_KEYS may change while it runs,
through StreamSession.set); validate_config turns the first bad value into one clear ComoliveError.
SessionStats is one block's report, with wall and CPU time by stage (STAGES) added by Laps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from models.errors import ComoliveError
from models.formant import FORMANT_RANGE

MIN_RATE, MAX_RATE = 16000, 96000
MIN_BLOCK_MS, MAX_BLOCK_MS = 5.0, 1000.0
KEY_RANGE = 24         # semitones either way (as engine/arg_types.py)
# The live FCPE window (0.32 s for dio and harvest; pitch_window_s overrides both). 0.32 s was measured against
# it (docs/results.md, "Live pitch window"): +0.13 DNSMOS on 24 sung clips of the real train split but none on
# the held-out pairs, whose melody error rose by 0.5 cents, for 2-3 ms more CPU a block: not the default.
PITCH_WINDOW_S = 0.16
LIVE_KEYS = ("key", "formant", "voice", "reference", "gate_db", "gate_hold_ms", "gate_floor_db", "input_gain_db")


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
    gate_floor_db: float = float("-inf")  # the converted signal while the gate is closed (dB; -inf: silence); live
    seed: int = 0
    input_gain_db: float = 0.0      # fixed gain before feature extraction, divided out of the output
    follow_level: bool = True       # output level follows the input's (engine/level_follow.py)
    pitch_window_s: float | None = None  # pitch window per content chunk; None = PITCH_WINDOW_S (or two chunks)
    pitch_right_ms: float = 10.0    # right context of the last pitch frame kept from a window (whole 10 ms frames)
    loudness_lookahead_ms: float | None = None  # None = as training (17.4 ms); less trades onset timing for latency
    threads: int | None = 1         # torch threads for the live path (None: leave as is)
    content_thread: bool = True     # Whisper content in a worker thread while pitch runs (same output)


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


STAGES = ("resample", "pitch", "content", "decoder", "vocoder")  # wall laps of a block, in this order


class Laps:
    """Wall and CPU time between successive lap() calls, added to the named stage of a SessionStats."""

    def __init__(self, stats: SessionStats):
        self.stats = stats
        self.w, self.c = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.stats.stage_ms[stage] += 1000.0 * (w - self.w)
        self.stats.stage_cpu_ms[stage] += 1000.0 * (c - self.c)
        self.w, self.c = w, c


def validate_config(cfg: SessionConfig) -> None:
    """Every value of a session configuration checked: one clear ComoliveError for the first bad one."""
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
    f = cfg.gate_floor_db
    if not isinstance(f, (int, float)) or math.isnan(f) or not f <= 0:
        raise ComoliveError(f"gate_floor_db must be a level in dB at or below 0 (-inf: silence), got {f!r}")
    c = cfg.content_chunk_ms
    if c is not None and (not isinstance(c, (int, float)) or not 20 <= c <= 400
                          or abs(c / 20.0 - round(c / 20.0)) > 1e-9):
        raise ComoliveError(f"content_chunk_ms must be a multiple of 20 ms from 20 to 400, got {c!r}")
    w = cfg.pitch_window_s
    if w is not None:
        if not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ComoliveError(f"pitch_window_s must be a number of seconds, got {w!r}")
        if not 0.08 <= w <= 2.0:
            raise ComoliveError(f"the pitch window must be 80 to 2000 ms, got {1000 * w:g} ms")
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
