"""Retrieval of the target's own content frames (models/retrieval.py)."""
from __future__ import annotations

import numpy as np
import pytest

from models.retrieval import ContentIndex, check_ratio
from models.errors import ComoliveError


def test_ratio_zero_is_no_retrieval_and_ratio_one_is_the_targets_frames():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((200, 16)).astype(np.float32)
    source = rng.standard_normal((50, 16)).astype(np.float32)
    index = ContentIndex(target, k=4)
    assert index.blend(source, 0.0) is source
    full = index.blend(source, 1.0)
    # each frame is the mean of 4 target frames: the nearest by cosine
    sims = (source / np.linalg.norm(source, axis=1, keepdims=True)) @ (target / np.linalg.norm(target, axis=1,
                                                                                                keepdims=True)).T
    nearest = np.argsort(-sims, axis=1)[:, :4]
    assert np.allclose(full, target[nearest].mean(axis=1), atol=1e-6)
    assert np.allclose(index.blend(source, 0.25), 0.75 * source + 0.25 * full, atol=1e-6)


def test_bad_ratios_and_too_few_frames_are_refused():
    with pytest.raises(ComoliveError, match="within 0..1"):
        check_ratio(1.5)
    with pytest.raises(ComoliveError, match="at least 4 content frames"):
        ContentIndex(np.zeros((2, 8), np.float32))


def test_convert_with_retrieval_zero_equals_convert_without(tmp_path):
    from engine.converter import Converter
    from engine.reference import load_reference
    from tests.helpers import harmonic
    import soundfile as sf

    ref = tmp_path / "ref.wav"
    sf.write(str(ref), harmonic(330.0, 4.0, 22050, vibrato_cents=50.0), 22050)
    reference = load_reference([ref])
    conv = Converter(vocoder="hn")
    x = harmonic(220.0, 1.0, 22050)
    plain = conv.convert(x, 22050, reference=reference).audio
    assert np.array_equal(conv.convert(x, 22050, reference=reference, retrieval=0.0).audio, plain)
    assert not np.array_equal(conv.convert(x, 22050, reference=reference, retrieval=1.0).audio, plain)
    with pytest.raises(ComoliveError, match="needs the target's recordings"):
        conv.convert(x, 22050, retrieval=0.5)
