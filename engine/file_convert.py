"""A recording converted through the live pipeline, from file to file, in memory that does not grow with it.

The live session (engine/stream_session.py) is fed the file block by block, as the live loop feeds it, and
its output, delay removed, is written block by block: what comes out is what `live` and `stream` play
with the same settings, sample for sample, and a two-hour file needs the memory of a few blocks (the
level pass keeps one number per 20 ms). One setting is the file's own by choice: the input gain, which a
live show cannot know in advance, is here the file's active level brought to -20 dBFS (as the whole-file
converter normalises); it is reported, so that `stream --input-gain-db` gives the same samples.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import soundfile as sf

from engine.loudness_norm import PEAK_LIMIT, TARGET_ACTIVE_DBFS, active_level_of_frames, frame_rms_db, level_frame
from engine.session_config import SessionConfig
from engine.stream_session import StreamSession
from models.audio_io import audio_info, check_writable, write_failure
from models.errors import AudioInputError

READ_SECONDS = 1.0  # the level pass reads this much at a time


@dataclass
class FileConversion:
    seconds: float
    sample_rate: int
    input_gain_db: float
    latency_ms: float
    compute_s: float
    failed_blocks: int
    vocoder: str
    voice: str
    key: float

    def summary(self, src, dst) -> str:
        return (f"converted {src} ({self.seconds:.2f} s) -> {dst} through the live pipeline: voice "
                f"'{self.voice}', key {self.key:+g}, vocoder {self.vocoder}, input gain {self.input_gain_db:+.1f} dB, "
                f"latency {self.latency_ms:.1f} ms removed; {self.compute_s:.2f} s compute "
                f"({self.compute_s / max(self.seconds, 1e-9):.2f}x real time)"
                + (f"; {self.failed_blocks} block(s) failed and play as silence" if self.failed_blocks else ""))


def _mono_blocks(f: sf.SoundFile, size: int):
    for block in f.blocks(blocksize=size, dtype="float32", always_2d=True):
        yield block.mean(axis=1)


def file_input_gain_db(path: str | os.PathLike) -> float:
    """The gain (dB) that brings the file's active level to TARGET_ACTIVE_DBFS with its peak below PEAK_LIMIT:
    loudness_norm.normalize_level, with the frames' levels read block by block."""
    with sf.SoundFile(str(path)) as f:
        frame = level_frame(f.samplerate)
        dbs, peak, rest = [], 0.0, np.zeros(0, np.float32)
        for x in _mono_blocks(f, int(READ_SECONDS * f.samplerate)):
            if not np.isfinite(x).all():
                raise AudioInputError(f"{path}: contains NaN or infinite samples")
            peak = max(peak, float(np.max(np.abs(x))) if len(x) else 0.0)
            x = np.concatenate([rest, x])
            whole = len(x) // frame * frame
            if whole:
                dbs.append(frame_rms_db(x[:whole], frame))
            rest = x[whole:]
    if peak < 1e-4:
        raise AudioInputError(f"{path}: input is silent (peak below -80 dBFS): nothing to convert")
    level = active_level_of_frames(np.concatenate(dbs) if dbs else np.full(1, -120.0))
    return min(TARGET_ACTIVE_DBFS - level, 20.0 * math.log10(PEAK_LIMIT / peak))


def convert_file(config: SessionConfig, src: str | os.PathLike, dst: str | os.PathLike, force: bool = False,
                 input_gain_db: float | None = None, progress=None) -> FileConversion:
    """src -> dst through a StreamSession with `config` at the file's rate (gain: the file's own unless
    given); dst is written as 16-bit PCM, whole or not at all. progress(done_s, total_s) is called after each block."""
    out = check_writable(dst, force)
    info = audio_info(src)
    session = StreamSession(replace(config, sample_rate=int(info.samplerate)))  # bad settings fail first
    try:
        gain = file_input_gain_db(src) if input_gain_db is None else float(input_gain_db)
    except BaseException:
        session.close()
        raise
    session.set(input_gain_db=gain)  # applied from the first block
    b, sr = session.block_size, session.sr
    tmp = out.with_name(out.name + ".partial")
    t0, n_in, written, skip = time.process_time(), 0, 0, session.latency_samples
    try:
        with sf.SoundFile(str(src)) as f, sf.SoundFile(str(tmp), "w", sr, 1, "PCM_16", format="WAV") as g:
            def emit(y: np.ndarray) -> None:
                """Write the block's output, less the first latency_samples of the stream, up to n_in."""
                nonlocal skip, written
                drop = min(skip, len(y))
                skip -= drop
                y = y[drop: drop + max(0, n_in - written)]
                g.write(np.clip(y, -1.0, 1.0))
                written += len(y)

            for x in _mono_blocks(f, b):
                n_in += len(x)
                emit(session.process(np.pad(x, (0, b - len(x)))))
                if progress is not None:
                    progress(n_in / sr, info.frames / sr)
            emit(session.flush())  # the last latency_samples of output: zeros after the end, as live
        os.replace(tmp, out)
    except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError is a RuntimeError (disk full, ...)
        tmp.unlink(missing_ok=True)
        raise write_failure(out, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        session.close()
    return FileConversion(n_in / sr, sr, gain, session.latency_ms, time.process_time() - t0,
                          session.stats.failures, session.vocoder_name, session.voice, float(config.key))

