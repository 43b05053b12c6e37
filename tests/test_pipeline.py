"""The stage protocol: what each live stage declares with ready() is what its pushes deliver, and the
latency plan composed from those declarations adds up."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.pipeline import ideal_ready
from engine.session_config import SessionConfig
from engine.stream_session import StreamSession

OFF = float("-inf")


@pytest.fixture(scope="module")
def session():
    return StreamSession(SessionConfig(sample_rate=48000, block_ms=80.0, gate_db=OFF))


def _pieces(total: int, rng: np.random.Generator) -> list[int]:
    """Block sizes from 1 item to a few chunks, summing to total."""
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(total - sum(sizes), rng.integers(1, max(2, total // 6)))))
    return sizes


def _inputs(stage, session: StreamSession, n: int, rng: np.random.Generator):
    """n inputs of the kind the stage takes."""
    if stage is session.decoder:
        return (torch.from_numpy(rng.standard_normal((1, session.mcfg.cond_dim, n)).astype(np.float32)),)
    if stage is session.voc_stream:
        mel = torch.from_numpy(rng.uniform(-8, 0, (session.mcfg.n_mels, n)).astype(np.float32))
        return mel, torch.full((n,), 220.0)
    return ((0.1 * rng.standard_normal(n)).astype(np.float32),)


def _count(out) -> int:
    return out.shape[-1] if isinstance(out, torch.Tensor) and out.dim() > 1 else len(out)


def _joined(outs: list):
    if isinstance(outs[0], torch.Tensor):
        return torch.cat(outs, dim=-1).float().numpy()
    return np.concatenate(outs)


@pytest.mark.parametrize("name", ["res16", "res22", "content_stream", "pitch", "loud", "decoder", "voc_stream"])
def test_a_stage_delivers_what_it_declares_and_streams_as_one_push(session, name):
    """After every push, the outputs so far are exactly ready(inputs so far); flush() then delivers every
    output the inputs stand for; pushed in random blocks, they equal one push of the whole input."""
    stage = getattr(session, name)
    rng = np.random.default_rng(7)
    total = int(1.2 * float(stage.rate_in))  # 1.2 s of input
    whole = _inputs(stage, session, total, rng)
    stage.reset()
    n_in, outs = 0, []
    for k in _pieces(total, rng):
        outs.append(stage.push(*(x[..., n_in:n_in + k] for x in whole)))
        n_in += k
        assert sum(map(_count, outs)) == int(stage.ready(n_in)), f"{stage.name} after {n_in} inputs"
    assert int(stage.ready(n_in)) <= int(ideal_ready(stage, n_in)) + 1  # never ahead of its input
    outs.append(stage.flush())
    assert sum(map(_count, outs)) == int(ideal_ready(stage, n_in)), f"{stage.name}: flush"
    one = [stage.push(*whole), stage.flush()]
    got, ref = _joined(outs), _joined(one)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    stage.reset()


def test_latency_parts_come_from_the_stages_and_sum_to_the_latency(session):
    parts = session.latency_parts()
    assert math.isclose(sum(parts.values()), session.latency_ms, abs_tol=1e-9)
    assert all(v >= 0 for v in parts.values()), parts
    for stage in (session.loud, session.decoder, session.voc_stream):
        assert stage.name in parts
    assert session.f0_post.name not in parts  # adds nothing: left out
    hop_ms = 1000.0 * session.mcfg.hop_length / session.mcfg.sample_rate
    # the decoder's part is its declared lookahead, up to the frame grid
    assert abs(parts["decoder lookahead"] - session.decoder.lookahead_frames * hop_ms) <= hop_ms

