"""The streaming session with the real embedded model, real extractors and the live vocoder."""
from __future__ import annotations

import math
import threading
import time

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.decoder_stream import Conditioner, DecoderStream, condition
from engine.feature_stream import LoudnessStream
from engine.loudness import Loudness
from engine.pitch import FCPEPitch
from engine.resample_stream import StreamResampler
from engine.session_config import SessionConfig
from engine.stream_session import StreamSession, run_offline
from models.audio_io import resample
from models.errors import ComoliveError
from models.voice_model import VoiceModel
from tests.helpers import harmonic

OFF = float("-inf")  # gate threshold that keeps the gate open


def _tone(freqs: np.ndarray, sr: int, amp: float = 0.3) -> np.ndarray:
    """Harmonic tone following a per-sample f0 curve (phase-continuous)."""
    ph = 2 * np.pi * np.cumsum(freqs) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 11))
    return (amp * x / np.max(np.abs(x))).astype(np.float32)


def _rel_db(a: np.ndarray, ref: np.ndarray) -> float:
    return 10 * math.log10(float(np.sum((a - ref) ** 2)) / float(np.sum(ref ** 2)) + 1e-30)


def _peak(y: np.ndarray) -> np.ndarray:
    """Scaled to a 0.5 peak: FCPE's voicing decision depends on level, the tests ask about pitch."""
    return (0.5 * y / max(float(np.max(np.abs(y))), 1e-9)).astype(np.float32)


def _fine_f0(y: np.ndarray, sr: int, fcpe: FCPEPitch) -> tuple[np.ndarray, np.ndarray]:
    """FCPE f0 at 1 ms resolution: ten runs on the 16 kHz signal shifted by 0..9 ms. Returns (times s, f0)."""
    y16 = resample(_peak(y), sr, 16000)
    t, f = [], []
    for k in range(10):
        fk = fcpe.extract(y16[16 * k:])
        t.append((np.arange(len(fk)) + 0.5) * 0.01 + k * 0.001)
        f.append(fk)
    t, f = np.concatenate(t), np.concatenate(f)
    order = np.argsort(t)
    return t[order], f[order]


def _crossing(t: np.ndarray, f: np.ndarray, level: float, after: float) -> float:
    """First time after `after` where f crosses `level` upwards (linear interpolation)."""
    i = next(j for j in range(len(f) - 1) if t[j] > after and f[j] < level <= f[j + 1])
    return float(t[i] + (level - f[i]) / (f[i + 1] - f[i]) * (t[i + 1] - t[i]))


@pytest.fixture(scope="module")
def fcpe():
    return FCPEPitch(device="cpu")


# ----------------------------------------------------------------------------- building blocks


def test_resampler_is_split_invariant_with_the_declared_delay():
    rng = np.random.default_rng(0)
    for sr_in, sr_out in ((48000, 16000), (44100, 22050), (22050, 48000), (16000, 22050)):
        r = StreamResampler(sr_in, sr_out, max(4, round(0.0015 * sr_in)))
        t = np.arange(sr_in // 2) / sr_in
        x = np.sin(2 * np.pi * 300 * t).astype(np.float32)
        whole = r.push(x)
        r.reset()
        parts, i = [], 0
        while i < len(x):
            n = int(rng.integers(1, 2000))
            parts.append(r.push(x[i:i + n]))
            i += n
        assert np.array_equal(np.concatenate(parts), whole)
        assert len(whole) == -(-len(x) * sr_out // sr_in)
        to = np.arange(len(whole)) / sr_out - r.delay_seconds
        ref = np.sin(2 * np.pi * 300 * to) * (to >= 0)
        steady = slice(int(0.01 * sr_out), None)
        assert np.max(np.abs(whole[steady] - ref[steady])) < 1e-3


def test_loudness_stream_equals_offline_loudness():
    x = harmonic(180, 1.0, 22050) * np.linspace(0.1, 1.0, 22050, dtype=np.float32)
    ls = LoudnessStream(256, 1024)
    out, i = [], 0
    for n in (100, 539, 640, 1, 3000, 7000, 20000):
        out.append(ls.push(x[i:i + n]))
        i += n
    got = np.concatenate(out)
    ref = Loudness(22050, 256, 1024).extract(x)
    assert len(got) == ls.ready(len(x)) and len(got) >= len(ref) - 3
    np.testing.assert_array_equal(got, ref[: len(got)])
    # shortened lookahead (a latency option): same frames whatever the split, windows moved earlier
    lean = [LoudnessStream(256, 1024, lookahead=0) for _ in range(2)]
    a = lean[0].push(x)
    b = np.concatenate([lean[1].push(x[i:i + 300]) for i in range(0, len(x), 300)])
    np.testing.assert_array_equal(a, b)
    assert len(a) == (len(x) - 256) // 256 + 1
    w = x[10 * 256 - 768: 11 * 256].astype(np.float64)
    assert math.isclose(a[10], max(10 * math.log10(np.mean(w * w)), -80.0), abs_tol=1e-4)


def test_multistep_decoder_stream_equals_voice_model_decode():
    model = VoiceModel.load(None)
    cfg = model.cfg
    rng = np.random.default_rng(1)
    t = 60
    f0 = np.full(t, 220.0, np.float32)
    feats = {"content": rng.standard_normal((t, cfg.content_dim)).astype(np.float32), "f0": f0,
             "voiced": np.ones(t, np.float32), "loudness": np.full(t, -20.0, np.float32)}
    spk = model.speaker(None)
    for steps in (1, 2):
        ds = DecoderStream(model.student, steps=steps, seed=3)
        pre = condition(model.student, feats["content"], f0, feats["voiced"], feats["loudness"],
                        np.tile(spk, (t, 1)), np.zeros(t, np.float32))
        got = torch.cat([ds.push(pre[..., a:b]) for a, b in ((0, 7), (7, 8), (8, 33), (33, t))], -1)
        batch = {k: torch.from_numpy(v)[None] for k, v in feats.items()}
        batch["speaker"] = torch.from_numpy(spk)[None]
        batch["shift"] = torch.zeros(1)
        ref = model.decode(batch, steps=steps, seed=3)[0]
        assert got.shape[-1] == t - ds.lookahead_frames == t - 2 * steps
        assert torch.allclose(got, ref[:, : got.shape[-1]], atol=2e-4), (got - ref[:, : got.shape[-1]]).abs().max()


def test_packed_conditioner_equals_condition():
    model = VoiceModel.load(None)
    cfg = model.cfg
    rng = np.random.default_rng(2)
    cond = Conditioner(model.student)
    n = 9
    spk = np.tile(model.speaker(None), (n, 1)).astype(np.float32)
    ramp = spk * np.linspace(0.5, 1.0, n, dtype=np.float32)[:, None]
    for speaker, shift in ((spk, np.zeros(n, np.float32)), (spk, np.full(n, 2.0, np.float32)),
                           (ramp, np.linspace(0, 3, n).astype(np.float32)), (spk, np.zeros(n, np.float32))):
        args = (rng.standard_normal((n, cfg.content_dim)).astype(np.float32), rng.uniform(0, 600, n).astype(np.float32),
                (rng.random(n) > 0.3).astype(np.float32), rng.uniform(-80, 0, n).astype(np.float32), speaker, shift)
        ref, got = condition(model.student, *args), cond.push(*args)
        assert got.shape == ref.shape == (1, cfg.cond_dim, n)
        assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


# ----------------------------------------------------------------------------- the session


def test_streamed_output_equals_offline_run_for_other_block_sizes():
    sr = 44100
    x = harmonic(220, 0.9, sr, vibrato_cents=80)
    base = SessionConfig(sample_rate=sr, gate_db=OFF, content_chunk_ms=40.0)  # the chunk is part of the computation
    ref = run_offline(base, x, sr)  # 40 ms blocks
    assert np.sqrt(np.mean(ref[sr // 4:] ** 2)) > 1e-3  # it really converts something
    for block_ms in (45.0, 20.0, 160.0):
        s = StreamSession(replace(base, block_ms=block_ms))
        raw = []
        total = len(x) + s.latency_samples
        xp = np.concatenate([x, np.zeros(total - len(x) + s.block_size, np.float32)])
        for k in range(-(-total // s.block_size)):
            raw.append(s.process(xp[k * s.block_size:(k + 1) * s.block_size]))
        got = np.concatenate(raw)[s.latency_samples: s.latency_samples + len(x)]
        assert s.stats.underflows == 0
        assert _rel_db(got, ref) < -40.0, (block_ms, _rel_db(got, ref))


def test_content_thread_gives_the_same_samples_and_a_failing_block_is_reported_and_survived():
    sr = 16000
    x = harmonic(220, 0.9, sr, vibrato_cents=80)
    serial = run_offline(SessionConfig(sample_rate=sr, gate_db=OFF, content_thread=False), x, sr)
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF))
    where = []
    push = s.content_stream.push

    def recording(samples):
        where.append(threading.current_thread())
        return push(samples)

    s.content_stream.push = recording
    assert np.array_equal(s.run_offline(x), serial)  # bit for bit
    assert where and all(t.name.startswith("comolive-content") for t in where)

    def failing(samples):
        raise RuntimeError("content model failed")

    s.content_stream.push = failing
    s.reset()
    failed = []
    for k in range(3):  # the first block that completes a content chunk fails: silence, reported
        y = s.process(x[k * s.block_size:(k + 1) * s.block_size])
        failed.append(s.stats.failed)
        assert y.shape == (s.block_size,) and (s.stats.failed is None or not np.any(y))
    assert any(f == "RuntimeError: content model failed" for f in failed) and s.stats.failures >= 1
    # a pitch error waits for the running content job before it propagates
    done = []

    def slow(samples):
        time.sleep(0.05)
        done.append(True)
        return push(samples)

    def pitch_fails(samples):
        raise ValueError("pitch failed")

    s.content_stream.push = slow
    s.pitch.push = pitch_fails
    s.reset()
    for k in range(3):
        s.process(x[k * s.block_size:(k + 1) * s.block_size])
        if s.stats.failed:
            break
    assert s.stats.failed == "ValueError: pitch failed" and done == [True]
    del s.pitch.push  # the class's method again
    s.content_stream.push = push
    s.close()
    assert not where[0].is_alive()
    assert np.array_equal(s.run_offline(x), serial)  # the session recovers; a new thread is started
    s.close()


@pytest.mark.parametrize("sr,block_ms,chunk_ms,late_ms", [(48000, 80.0, 80.0, 0.0), (48000, 30.0, 80.0, 0.0),
                                                          (48000, 40.0, 40.0, 10.0)])
def test_declared_latency_equals_measured(sr, block_ms, chunk_ms, late_ms, fcpe):
    """A voiced tone steps 220 -> 330 Hz at 0.5 s; the step comes out latency_samples later (found with
    FCPE at 1 ms resolution, within half a model frame: the f0 feature lives on the 11.6 ms grid). With
    40 ms pitch windows the step falls near a window's end, where FCPE places it one 10 ms frame late
    (`late_ms`): the declared latency is still when the output is computed, the note change lands late."""
    n = sr
    f = np.where(np.arange(n) < n // 2, 220.0, 330.0)
    x = _tone(f, sr)
    s = StreamSession(SessionConfig(sample_rate=sr, block_ms=block_ms, content_chunk_ms=chunk_ms, gate_db=OFF))
    y = s.run_offline(x, aligned=False)
    mid = math.sqrt(220 * 330)
    tx = _crossing(*_fine_f0(x, sr, fcpe), mid, 0.3)
    ty = _crossing(*_fine_f0(y, sr, fcpe), mid, 0.3)
    measured_ms = 1000 * (ty - tx)
    assert -6.0 < measured_ms - s.latency_ms < late_ms + 6.0, (measured_ms, s.latency_ms)
    parts = s.latency_parts()
    assert math.isclose(sum(parts.values()), s.latency_ms, abs_tol=1e-6)
    assert parts["vocoder lookahead"] > 0 and parts["decoder lookahead"] > 0


def test_gate_opening_fades_in_where_the_onset_plays():
    """A show's streams run from its first block; the gate lets the output through from one block before
    the first loud block's conversion (an onset may begin in the quiet block before it), no earlier."""
    sr = 48000
    s = StreamSession(SessionConfig(sample_rate=sr, gate_floor_db=-math.inf))
    b, lat = s.block_size, s.latency_samples
    x = np.concatenate([np.zeros(5 * b, np.float32), harmonic(220, 0.5, sr)])
    y = s.run_offline(x, aligned=False)
    first = int(np.flatnonzero(np.abs(y) > 0)[0])
    assert 4 * b + lat <= first <= 5 * b + lat
    tone = y[5 * b + lat + int(0.01 * sr): 5 * b + lat + int(0.1 * sr)]
    assert np.sqrt(np.mean(tone**2)) > 1e-3


def test_key_change_of_an_octave_doubles_output_f0(fcpe):
    sr = 48000
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF))
    x = harmonic(220, 1.6, sr, vibrato_cents=0)
    b = s.block_size
    out, in_f0, out_f0 = [], [], []
    for k in range(len(x) // b):
        if k == 10:
            s.set(key=12)
        out.append(s.process(x[k * b:(k + 1) * b]))
        in_f0.append(s.stats.input_f0_hz)
        out_f0.append(s.stats.output_f0_hz)
    y = _peak(np.concatenate(out))
    d = s.latency_samples
    switch = 10 * b + d  # first output sample made after the change
    before = fcpe.extract(resample(y[switch - int(0.4 * sr): switch - int(0.05 * sr)], sr, 16000))
    after = fcpe.extract(resample(y[switch + int(0.1 * sr):], sr, 16000))
    assert (before > 0).mean() > 0.8 and (after > 0).mean() > 0.8
    cents = 1200 * math.log2(np.median(after[after > 0]) / np.median(before[before > 0]))
    assert abs(cents - 1200) < 60, cents
    assert abs(1200 * math.log2(out_f0[-1] / in_f0[-1]) - 1200) < 1
    assert abs(1200 * math.log2(out_f0[5] / in_f0[5])) < 1


def test_gate_mutes_silence_and_reopens_with_the_streams_warm():
    sr = 16000
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=-50.0, gate_hold_ms=200.0, gate_floor_db=-math.inf))
    b = s.block_size
    rng = np.random.default_rng(0)
    quiet = (1e-4 * rng.standard_normal(b)).astype(np.float32)  # -80 dBFS
    for _ in range(3):
        y = s.process(quiet)
        assert s.stats.gated and not np.any(y)
    tone = harmonic(220, 1.0, sr)
    for k in range(8):
        s.process(tone[k * b:(k + 1) * b])
        assert not s.stats.gated
    assert s.stats.restarts == 1
    states = []
    for _ in range(8):  # 640 ms of quiet: the gate closes after the 200 ms hold and the latency
        y = s.process(quiet)
        states.append(s.stats.gated)
    assert states[0] is False and states[-1] is True
    assert not np.any(y) and s.stats.frames > 0  # muted, but the streams keep running
    s.process(tone[:b])
    assert not s.stats.gated and s.stats.restarts == 2
    for _ in range(40):  # 3.2 s of quiet: past the hold, the latency and SLEEP_S, the conversion stops
        s.process(quiet)
    assert s.stats.gated and s.stats.frames == 0 and not any(s.stats.stage_ms.values())


def test_a_phrase_after_a_gated_pause_converts_as_with_no_gate():
    """The gate only mutes: once it has reopened, the output is the no-gate output, sample for sample."""
    sr = 16000
    x = np.concatenate([harmonic(220, 0.8, sr), np.zeros(int(0.8 * sr), np.float32), harmonic(262, 0.8, sr)])
    gated = StreamSession(SessionConfig(sample_rate=sr, gate_db=-50.0, gate_floor_db=-math.inf)).run_offline(x)
    free = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF)).run_offline(x)
    start = int(1.6 * sr) + int(0.1 * sr)  # the second phrase, past its fade-in
    assert not np.any(gated[int(1.2 * sr): int(1.5 * sr)])  # muted during the pause
    np.testing.assert_array_equal(gated[start:], free[start:])


def test_closed_gate_lets_the_conversion_through_at_its_floor():
    sr = 16000
    x = np.concatenate([harmonic(220, 0.8, sr), np.zeros(int(0.8 * sr), np.float32), harmonic(262, 0.8, sr)])
    floored = StreamSession(SessionConfig(sample_rate=sr, gate_db=-50.0, gate_floor_db=-40.0)).run_offline(x)
    free = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF)).run_offline(x)
    pause = slice(int(1.2 * sr), int(1.5 * sr))
    assert np.any(free[pause])
    np.testing.assert_allclose(floored[pause], free[pause] * np.float32(0.01), rtol=1e-5, atol=1e-12)
    with pytest.raises(ComoliveError, match="gate_floor_db"):
        StreamSession(SessionConfig(sample_rate=sr, gate_floor_db=6.0))
    with pytest.raises(ComoliveError, match="gate_floor_db"):
        StreamSession(SessionConfig(sample_rate=sr)).set(gate_floor_db=float("nan"))


def test_a_phrase_after_a_long_pause_carries_on_from_the_paused_streams():
    """A pause past the sleep point pauses the streams; the next phrase converts as if the pause had ended
    where they stopped (same samples, after the fade-in), not from empty streams."""
    sr = 16000
    cfg = SessionConfig(sample_rate=sr, gate_db=-50.0, gate_floor_db=-math.inf)
    a = StreamSession(cfg)
    b = a.block_size
    tone1, tone2 = harmonic(220, 0.8, sr)[: 10 * b], harmonic(262, 0.8, sr)[: 10 * b]
    quiet = np.zeros(50 * b, np.float32)  # 4 s: past the hold, the latency and SLEEP_S
    out_a, ran = [], 0
    for x in np.split(np.concatenate([tone1, quiet]), 60):
        out_a.append(a.process(x))
        ran += any(a.stats.stage_ms.values())
    assert ran < 60  # the streams did pause
    out_a += [a.process(x) for x in np.split(tone2, 10)]
    short = StreamSession(cfg)  # the same input with the pause cut where the streams stopped
    out_s = [short.process(x) for x in np.split(np.concatenate([tone1, quiet[: (ran - 10) * b], tone2]), ran + 10)]
    after = a.latency_samples + int(0.1 * sr)  # past the fade-in
    np.testing.assert_array_equal(np.concatenate(out_a)[60 * b + after:], np.concatenate(out_s)[ran * b + after:])


def test_gate_closes_after_the_last_loud_input_has_played():
    """A note's end and gate_hold_ms after it reach the output before the gate fades it: the hold counts
    from the output's timeline (the input's plus the latency), not from the input's."""
    sr = 16000
    # a hold below the latency
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=-50.0, gate_hold_ms=20.0, gate_floor_db=-math.inf))
    b, lat = s.block_size, s.latency_samples
    tone = harmonic(220, 1.0, sr)[: 10 * b]
    x = np.concatenate([tone, np.zeros(12 * b, np.float32)])
    y = np.concatenate([s.process(x[k * b:(k + 1) * b]) for k in range(len(x) // b)])
    end = len(tone) + lat  # where the tone's last sample plays
    steady = np.sqrt(np.mean(y[end - 4 * b: end - 2 * b] ** 2))
    last = np.sqrt(np.mean(y[end - b // 2: end] ** 2))
    assert steady > 1e-3 and last > 0.3 * steady  # the note's end is not faded
    assert s.stats.gated and not np.any(y[-b:])  # and the gate did close


def test_nan_and_inf_input_survive():
    sr = 16000
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF))
    b = s.block_size
    x = harmonic(220, 0.8, sr)
    x[100:110] = np.nan
    x[3000] = np.inf
    x[5000] = -np.inf
    x[6000:6003] = 1e30
    out = [s.process(x[k * b:(k + 1) * b]) for k in range(len(x) // b)]
    y = np.concatenate(out)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert s.stats.nonfinite == 12
    assert np.sqrt(np.mean(y[-b:] ** 2)) > 1e-3  # still converting
    # odd shapes and lengths are taken too
    assert s.process(np.zeros((b, 2), np.float32)).shape == (b,)
    assert s.process(np.zeros(0, np.float32)).shape == (0,)


def test_live_set_validates_and_applies_at_next_block():
    s = StreamSession(SessionConfig(sample_rate=16000, gate_db=OFF))
    with pytest.raises(ComoliveError, match="unknown voice 'nobody'"):
        s.set(voice="nobody")
    with pytest.raises(ComoliveError, match="steps"):
        s.set(steps=2)
    with pytest.raises(ComoliveError, match="key must be a finite number"):
        s.set(key=float("nan"))
    with pytest.raises(ComoliveError, match="key 30 is out of range"):
        s.set(key=30)
    s.set(voice="us2", formant=2.0, gate_db=-40.0)
    assert s.voice != "us2"
    s.process(np.zeros(s.block_size, np.float32))
    assert s.voice == "us2" and s.gate.threshold_db == -40.0


@pytest.mark.parametrize("change,message", [
    (dict(voice="nobody"), "unknown voice 'nobody'"),
    (dict(sample_rate=8000), "unsupported sample rate 8000"),
    (dict(sample_rate=192000), "unsupported sample rate 192000"),
    (dict(block_ms=2.0), "block of 2 ms is too small"),
    (dict(pitch="yin"), "unknown pitch extractor 'yin'"),
    (dict(vocoder="wavenet"), "unknown vocoder 'wavenet'"),
    (dict(steps=0), "steps must be a whole number"),
    (dict(pitch_window_s=0.05), "pitch window must be 80 to 2000 ms, got 50 ms"),
    (dict(pitch_window_s="long"), "pitch_window_s must be a number"),
    (dict(pitch_window_s=0.08), "shorter than the 80 ms chunk"),
])
def test_bad_config_gives_a_clear_error(change, message):
    with pytest.raises(ComoliveError, match=message):
        StreamSession(SessionConfig(**change))


def test_live_voice_formant_and_key_changes_do_not_click():
    """A change ramps over a few frames: the output's largest second difference around the change
    stays below the largest one elsewhere in the same steady tone."""
    sr = 48000
    s = StreamSession(SessionConfig(sample_rate=sr, gate_db=OFF))
    x = harmonic(220, 1.6, sr, vibrato_cents=20)
    b = s.block_size
    at = int(round(0.8 * sr / b))  # the block that starts 0.8 s in
    out = []
    for k in range(len(x) // b):
        if k == at:
            s.set(voice="de2", formant=3.0, key=5)
        out.append(s.process(x[k * b:(k + 1) * b]))
    y = np.concatenate(out)
    switch = at * b + s.latency_samples
    d2 = np.abs(np.diff(y, 2))
    near = d2[switch - sr // 20: switch + sr // 10]
    elsewhere = d2[int(0.3 * sr): switch - sr // 10]
    assert near.max() <= 1.2 * elsewhere.max(), (near.max(), elsewhere.max())
    assert s.voice == "de2" and s.stats.underflows == 0


def test_multistep_session_declares_the_extra_decoder_lookahead():
    one = StreamSession(SessionConfig(sample_rate=48000, steps=1))
    two = StreamSession(SessionConfig(sample_rate=48000, steps=2))
    frame_ms = 1000 * 256 / 22050
    assert math.isclose(two.latency_parts()["decoder lookahead"] - one.latency_parts()["decoder lookahead"],
                        2 * frame_ms, abs_tol=1000 / 48000)  # parts are whole device samples
    assert math.isclose(two.latency_ms - one.latency_ms, 2 * frame_ms, abs_tol=1000 / 48000)
    x = harmonic(220, 0.6, 48000)
    y = run_offline(SessionConfig(steps=2, gate_db=OFF), x, 48000)
    assert np.all(np.isfinite(y)) and np.sqrt(np.mean(y[12000:] ** 2)) > 1e-3


def test_formant_shift_moves_the_envelope_and_keeps_the_pitch(fcpe):
    """Formant shift warps the decoded mel before the f0-driven vocoder: the spectral centroid rises,
    the pitch does not move."""
    sr = 22050
    x = harmonic(220, 1.5, sr, n_harm=30)

    def convert(formant: float):
        y = run_offline(SessionConfig(sample_rate=sr, formant=formant, gate_db=OFF), x, sr)[sr // 2:]
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        centroid = float((spec * np.fft.rfftfreq(len(y), 1 / sr)).sum() / spec.sum())
        f0 = fcpe.extract(resample(y, sr, 16000))
        return centroid, float(np.median(f0[f0 > 0]))

    c0, f0 = convert(0.0)
    c1, f1 = convert(4.0)
    assert c1 > c0 * 1.1, (c0, c1)
    assert abs(1200 * math.log2(f1 / f0)) < 25, (f0, f1)


def test_formant_shift_is_refused_with_a_vocoder_that_reads_pitch_from_the_mel():
    with pytest.raises(ComoliveError, match="f0-driven vocoder"):
        StreamSession(SessionConfig(sample_rate=48000, vocoder="hifigan", formant=2.0))
    s = StreamSession(SessionConfig(sample_rate=48000, vocoder="hifigan"))
    with pytest.raises(ComoliveError, match="f0-driven vocoder"):
        s.set(formant=-3.0)
    s.set(key=2.0)   # other live changes still work
    s.process(np.zeros(s.block_size, np.float32))
    assert s.config.key == 2.0 and s.config.formant == 0.0


def test_a_warmed_up_session_converts_like_a_fresh_one():
    """The live loop runs a few blocks through a session before its show (StreamSession.warm_up): it leaves
    no state behind, so the show converts sample for sample as a fresh session does."""
    sr = 44100
    x = harmonic(220.0, 0.8, sr, vibrato_cents=50)
    cfg = SessionConfig(sample_rate=sr, gate_db=OFF)
    fresh = StreamSession(cfg).run_offline(x, aligned=False)
    warmed = StreamSession(cfg)
    warmed.warm_up()
    b = warmed.block_size
    x = np.pad(x, (0, len(fresh) - len(x)))
    got = np.concatenate([warmed.process(x[k:k + b]) for k in range(0, len(x), b)])
    assert np.sqrt(np.mean(fresh ** 2)) > 1e-3
    assert np.array_equal(got, fresh)
