"""Feature extractors: shapes, frame grids, accuracy on signals with known answers, streaming == offline."""
from __future__ import annotations

import numpy as np
import pytest

from engine.content import HFContent, WhisperContent, WhisperLogMel, make_content_extractor
from engine.frames import MODEL_FRAME_RATE, align_frames, frame_times
from engine.loudness import Loudness
from engine.pitch import (FCPEPitch, PitchExtractor, WorldPitch, fix_octave_jumps, interpolate_unvoiced,
                          make_pitch_extractor, shift_key)
from engine.registry import PITCH_EXTRACTORS
from engine.speaker import SpeakerEncoder
from models.audio_io import load_audio, resample
from models.errors import AudioInputError, ComoliveError

SR = 16000
ALSA = "/usr/share/sounds/alsa"


def vibrato_f0(t):
    """220 Hz with ±30 cents vibrato at 5.5 Hz: the ground truth of `harmonic_tone`."""
    return 220.0 * 2.0 ** (0.3 * np.sin(2 * np.pi * 5.5 * t) / 12.0)


def harmonic_tone(seconds=1.0, sr=SR):
    """10 harmonics (1/k amplitudes) following vibrato_f0."""
    t = np.arange(int(seconds * sr)) / sr
    ph = 2 * np.pi * np.cumsum(vibrato_f0(t)) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 11))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def cents(a, b):
    return 1200.0 * np.abs(np.log2(a / b))


@pytest.fixture(scope="module")
def tone():
    return harmonic_tone()


@pytest.fixture(scope="module")
def fcpe():
    return FCPEPitch(device="cpu")


@pytest.fixture(scope="module")
def whisper():
    return WhisperContent(window_s=0.5, chunk_frames=4, device="cpu")


# ---------------------------------------------------------------- frames

def test_align_frames_convention():
    # frame i at rate r is centred at (i + 0.5) / r
    assert np.allclose(frame_times(3, 50.0), [0.01, 0.03, 0.05])
    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    assert np.array_equal(align_frames(x, 50, 50, 10), x)
    # 50 Hz -> 100 Hz nearest: each source frame covers two destination frames
    up = align_frames(x, 50, 100, 20, mode="nearest")
    assert up.shape == (20, 3) and np.array_equal(up[:, 0], np.repeat(np.arange(10), 2))
    # linear interpolation of a quantity linear in time is exact between source centres
    src_t = frame_times(50, 50.0)
    n_dst = int(1.0 * MODEL_FRAME_RATE)
    dst_t = frame_times(n_dst, MODEL_FRAME_RATE)
    lin = align_frames(src_t.astype(np.float32), 50, MODEL_FRAME_RATE, n_dst, mode="linear")
    inside = (dst_t >= src_t[0]) & (dst_t <= src_t[-1])
    assert np.allclose(lin[inside], dst_t[inside], atol=1e-6)
    # nearest picks the source frame whose interval holds the destination centre
    near = align_frames(np.arange(50), 50, MODEL_FRAME_RATE, n_dst)
    assert np.array_equal(near, np.minimum((dst_t * 50).astype(int), 49))
    with pytest.raises(ComoliveError):
        align_frames(x, 50, 100, 5, mode="cubic")


# ---------------------------------------------------------------- pitch

@pytest.mark.parametrize("name", list(PITCH_EXTRACTORS))
def test_pitch_accuracy_and_grid(name, tone, fcpe):
    ex = fcpe if name == "fcpe" else make_pitch_extractor(name)
    assert isinstance(ex, PitchExtractor)
    assert ex.sample_rate == 16000 and ex.hop_length == 160 and ex.frame_rate == 100.0
    f0 = ex.extract(tone)
    assert f0.shape == (len(tone) // 160,) and f0.dtype == np.float32
    voiced = f0 > 0
    assert voiced.mean() > 0.95
    truth = vibrato_f0(frame_times(len(f0), ex.frame_rate))
    assert np.median(cents(f0[voiced], truth[voiced])) < 20.0
    # silence and white noise are unvoiced
    assert (ex.extract(np.zeros(SR, np.float32)) == 0).all()
    noise = (np.random.default_rng(0).standard_normal(SR) * 0.1).astype(np.float32)
    assert (ex.extract(noise) > 0).mean() < 0.05


def test_pitch_other_rates(tone, fcpe):
    x22 = resample(tone, SR, 22050)
    f0 = fcpe.extract_from(x22, 22050)
    assert len(f0) == len(resample(x22, 22050, SR)) // 160
    # pyworld can run on the model grid directly
    w = WorldPitch("dio", sample_rate=22050, hop_length=256)
    f0m = w.extract(x22)
    assert len(f0m) == len(x22) // 256 and abs(w.frame_rate - MODEL_FRAME_RATE) < 1e-9
    v = f0m > 0
    truth = vibrato_f0(frame_times(len(f0m), w.frame_rate))
    assert np.median(cents(f0m[v], truth[v])) < 20.0


def test_pitch_factory_errors():
    with pytest.raises(ComoliveError, match="crepe"):
        make_pitch_extractor("crepe")
    with pytest.raises(ComoliveError):
        WorldPitch("yin")


def test_interpolate_and_shift():
    f0 = np.array([0, 0, 200, 0, 0, 0, 400, 0], np.float32)
    filled, voiced = interpolate_unvoiced(f0)
    assert np.array_equal(voiced, f0 > 0)
    assert filled[0] == 200 and filled[-1] == 400
    assert np.allclose(filled[2:7], 200 * 2 ** (np.arange(5) / 4))  # linear in log-frequency
    z, m = interpolate_unvoiced(np.zeros(4, np.float32))
    assert (z == 0).all() and not m.any()
    s = shift_key(f0, 12)
    assert np.allclose(s, f0 * 2) and (s[f0 == 0] == 0).all()
    assert np.allclose(shift_key(f0, -7)[2], 200 * 2 ** (-7 / 12))


def test_octave_guard_fixes_isolated_jumps():
    f0 = vibrato_f0(frame_times(100, 100.0)).astype(np.float32)
    f0[[10, 11, 12, 50]] = 0.0                     # an unvoiced gap
    bad = f0.copy()
    bad[30:33] *= 2.0                              # 3 frames an octave up
    bad[60:62] *= 0.5                              # 2 frames an octave down
    bad[80] *= 2.0                                 # 1 frame
    fixed = fix_octave_jumps(bad)
    assert np.allclose(fixed, f0)


def test_octave_guard_keeps_melodic_leaps():
    t = frame_times(300, 100.0)
    f0 = vibrato_f0(t).astype(np.float32)
    f0[100:200] *= 2.0                             # real leap up an octave and back
    f0[200:] *= 0.5                                # then an octave below the start
    f0[199:201] = 0.0
    assert np.array_equal(fix_octave_jumps(f0), f0)
    # a fifth is never touched, even when isolated
    g = vibrato_f0(t).astype(np.float32)
    g[40:42] *= 1.5
    assert np.array_equal(fix_octave_jumps(g), g)


# ---------------------------------------------------------------- content

def test_whisper_shapes(whisper, tone):
    assert whisper.sample_rate == 16000 and whisper.frame_rate == 50.0 and whisper.dim == 384
    feats = whisper.extract(tone[:SR // 2 + 100])
    assert feats.shape == ((SR // 2 + 100) // 320, 384) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    assert whisper.extract(np.zeros(100, np.float32)).shape == (0, 384)
    assert WhisperLogMel()(np.zeros(3200, np.float32)).shape == (80, 20)


def test_whisper_stream_equals_whole(whisper):
    rng = np.random.default_rng(1)
    x = np.concatenate([harmonic_tone(0.6), 0.05 * rng.standard_normal(5000).astype(np.float32),
                        harmonic_tone(0.3)])
    whole = whisper.extract(x)
    st = whisper.stream()
    got, pos = [], 0
    while pos < len(x):
        n = int(rng.integers(1, 2500))
        got.append(st.push(x[pos:pos + n]))
        pos += n
    got.append(st.flush())
    streamed = np.concatenate(got)
    assert streamed.shape == whole.shape
    assert np.array_equal(streamed, whole)


def test_whisper_frames_never_see_the_future(whisper, tone):
    """Frames of chunk k depend only on audio up to the end of chunk k (causal, as live)."""
    x = tone[: 16 * 320].copy()
    a = whisper.extract(x)
    y = x.copy()
    y[8 * 320:] = np.random.default_rng(2).standard_normal(len(y) - 8 * 320).astype(np.float32) * 0.3
    b = whisper.extract(y)
    assert np.array_equal(a[:8], b[:8]) and not np.allclose(a[8:], b[8:])


def test_content_factory_and_errors():
    with pytest.raises(ComoliveError, match="unknown content extractor"):
        make_content_extractor("wav2vec9")
    with pytest.raises(ComoliveError, match="shorter than one chunk"):
        WhisperContent(window_s=0.04, chunk_frames=4)
    with pytest.raises(ComoliveError, match="pip install transformers"):
        HFContent("/nonexistent")
    with pytest.raises(ComoliveError, match="model_dir"):
        make_content_extractor("hubert")


# ---------------------------------------------------------------- loudness

def test_loudness_grid_and_levels():
    lo = Loudness(22050, 256, 1024)
    assert abs(lo.frame_rate - MODEL_FRAME_RATE) < 1e-9
    n = 22050
    sine = np.sin(2 * np.pi * 441 * np.arange(n) / 22050).astype(np.float32)
    db = lo.extract(sine)
    assert db.shape == (n // 256,) and db.dtype == np.float32
    assert np.allclose(db[2:-2], -3.01, atol=0.1)
    assert np.allclose(lo.extract(0.1 * sine)[2:-2], -23.01, atol=0.1)
    assert (lo.extract(np.zeros(n, np.float32)) == -80.0).all()
    # frame i covers samples [i*256 - 384, i*256 + 640): the onset at sample 5120 is first seen by frame 18
    step = np.zeros(n, np.float32)
    step[5120:] = sine[5120:]
    d = lo.extract(step)
    assert (d[:18] == -80.0).all() and d[18] > -80.0
    assert lo.extract(np.zeros(300, np.float32)).shape == (1,)


# ---------------------------------------------------------------- speaker

@pytest.fixture(scope="module")
def speaker():
    return SpeakerEncoder(device="cpu")


def test_speaker_embedding(speaker):
    a, sr = load_audio(f"{ALSA}/Front_Left.wav")
    b, _ = load_audio(f"{ALSA}/Rear_Right.wav")
    ea, eb = speaker.embed(a, sr), speaker.embed(b, sr)
    assert ea.shape == (256,) and abs(np.linalg.norm(ea) - 1) < 1e-5
    # the same voice played 30 % slower (formants and pitch lower) is a different timbre
    deeper = speaker.embed(resample(b, sr, int(sr / 0.7)), sr)
    assert float(ea @ deeper) < float(ea @ eb) - 0.1
    m = speaker.embed_many([(a, sr), (b, sr)])
    assert abs(np.linalg.norm(m) - 1) < 1e-5 and float(m @ ea) > float(eb @ ea)


def test_speaker_rejects_unusable_clips(speaker):
    a, sr = load_audio(f"{ALSA}/Front_Left.wav")
    with pytest.raises(AudioInputError, match="too short|only .* s of voice"):
        speaker.embed(a[: int(0.2 * sr)], sr)
    with pytest.raises(AudioInputError, match="silent"):
        speaker.embed(np.zeros(sr, np.float32), sr)
    with pytest.raises(AudioInputError):
        speaker.embed_many([])
