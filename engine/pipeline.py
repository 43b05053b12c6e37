"""The stage protocol of the live path, and the latency its stages' declarations add up to.

Every streamed stage (resamplers, content, pitch, loudness, f0 post-processing, conditioner, decoder,
vocoder) keeps its own state and offers the same face:

    stage.name                  what the latency part it adds is called
    stage.rate_in, .rate_out    items per second in and out (samples or frames)
    stage.ready(n_in)           how many outputs are final once n_in inputs have arrived (vectorised).
                                This is the stage's one declaration of its lookahead: a chunk grid, a
                                window's right context or a network's receptive field all show here
    stage.push(...)             new inputs -> the outputs that became final
    stage.flush()               end of input -> every output still owed (ideal_ready of all inputs in all),
                                the input's end handled as the stage's whole-input form handles it (zeros
                                after it for the resamplers, pitch and loudness: what they meet live when
                                the singer stops); then back to time 0
    stage.reset()               back to time 0, state cleared

`LatencyPlan` joins them as the live session does: device samples go through one input resampler per
rate; feature stages on each rate are mapped onto the model's frame grid (a model frame is ready when all
its features are) and run in parallel; model frames then go through the post stages in series (f0
post-processing, conditioner, decoder, vocoder) and the output resampler back to the device rate. The
latency is the least delay at which every output sample of every block is final when the block returns,
found by composing `ready` over PLAN_SECONDS of blocks (no network runs).

Its named parts come from the same declarations: first every stage made ideal (an output as soon as the
inputs it stands for have arrived: `ready = n_in * rate_out / rate_in`), which leaves the input
resampler's delay and the model frame grid; then each stage made real in turn, in pipeline order, its
part being the latency it adds (stages that add none are left out). The parts sum to the latency exactly.
Where two parallel stages wait for the same grid (content and pitch on one chunk grid) the first one made
real carries the wait.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

PLAN_SECONDS = 260.0  # horizon of the latency bookkeeping


class Stage(Protocol):
    name: str
    rate_in: Fraction | int
    rate_out: Fraction | int

    def ready(self, n_in): ...

    def push(self, *inputs): ...

    def flush(self): ...

    def reset(self) -> None: ...


def ideal_ready(stage: Stage, n):
    """Outputs whose input span has arrived, with no lookahead or grid: floor(n * rate_out / rate_in)."""
    r = Fraction(stage.rate_out) / Fraction(stage.rate_in)
    return (np.asarray(n, np.int64) * r.numerator) // r.denominator


def flush_with_silence(stage: Stage, n_in: int, n_out: int):
    """flush() of a stage of 1-D sample input that has taken n_in inputs and given n_out outputs: zeros are
    pushed until all ideal_ready(n_in) outputs are final, the ones still owed are returned, the stage reset."""
    want = int(ideal_ready(stage, n_in))
    per_out = Fraction(stage.rate_in) / Fraction(stage.rate_out)
    limit = int((want - n_out + 1) * per_out) + int(Fraction(stage.rate_in))  # their span + 1 s of lookahead
    zeros = np.arange(limit + 1, dtype=np.int64)
    done = stage.ready(n_in + zeros) >= want
    if not done.any():
        raise ValueError(f"{stage.name}: more than 1 s of lookahead")
    out = stage.push(np.zeros(int(np.argmax(done)), np.float32))[: want - n_out]
    stage.reset()
    return out


@dataclass
class Branch:
    """One input rate: the device-rate resampler and the feature stages reading its output. `grids[k]` maps
    model frame i to the frame of features[k] it reads (None: the stage is on the model grid itself)."""
    resampler: Stage
    features: list[Stage]
    grids: list[np.ndarray | None]


class LatencyPlan:
    """Latency in device samples, and its named parts in ms, from the stages' declarations."""

    def __init__(self, sample_rate: int, block_size: int, input_delay: int, branches: list[Branch],
                 post: list[Stage], output: Stage):
        self.sr, self.block, self.input_delay = int(sample_rate), int(block_size), int(input_delay)
        self.branches, self.post, self.output = branches, post, output
        self.ends = np.arange(1, int(PLAN_SECONDS * self.sr) // self.block + 1, dtype=np.int64) * self.block

    def stages(self) -> list[Stage]:
        """Every stage whose ready() matters, in pipeline order (the order parts are named in)."""
        feats = [s for b in self.branches for s in b.features]
        return [*feats, *self.post, self.output]

    def _ready(self, stage: Stage, n, real: set[int]):
        return stage.ready(n) if id(stage) in real else ideal_ready(stage, n)

    def delay(self, real: set[int]) -> int:
        """The least output delay for the block ends, with the stages in `real` as declared, others ideal."""
        frames = None
        for b in self.branches:
            n_b = b.resampler.ready(self.ends)
            for stage, grid in zip(b.features, b.grids):
                f = self._ready(stage, n_b, real)
                k = f if grid is None else np.searchsorted(grid, f, side="left")
                frames = k if frames is None else np.minimum(frames, k)
        for stage in self.post:
            frames = self._ready(stage, frames, real)
        out = self._ready(self.output, frames, real)  # device samples final, on the input's timeline
        return int(np.max(self.ends + self.input_delay - out))

    def plan(self) -> tuple[int, dict[str, float]]:
        real: set[int] = set()
        d = self.delay(real)
        parts = {"resampling in": self.input_delay, "frame grid": d - self.input_delay}
        for stage in self.stages():
            real.add(id(stage))
            nd = self.delay(real)
            if nd != d:  # stages that add nothing (a frame-by-frame guard, a chunk the block covers) stay out
                parts[stage.name] = parts.get(stage.name, 0) + nd - d
            d = nd
        latency = max(d, self.input_delay)
        parts["frame grid"] += latency - d
        return latency, {k: 1000.0 * v / self.sr for k, v in parts.items()}


class VocoderStage:
    """A vocoder's stream (models/vocoders.py) as a stage: model frames of mel and f0 in, samples out. Its
    declaration is the stream's own: after n frames, n * hop - delay_samples samples are final."""

    name = "vocoder lookahead"

    def __init__(self, stream, sample_rate: int, hop_length: int):
        self.stream, self.hop = stream, int(hop_length)
        self.rate_in, self.rate_out = Fraction(int(sample_rate), self.hop), int(sample_rate)

    def ready(self, n_in):
        return np.maximum(0, np.asarray(n_in, np.int64) * self.hop - self.stream.delay_samples)

    def push(self, mel, f0):
        return self.stream.push(mel, f0)

    def flush(self):
        return self.stream.flush()

    def reset(self) -> None:
        self.stream.reset()
