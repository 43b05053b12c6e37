"""A melody's sung pitch curve and its MBROLA .pho text (training/corpus/mbrola.py renders it), and the
exact f0 of a rendition computed from that text (see mbrola.py on why it is exact).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.errors import ComoliveError
from training.corpus.mbrola import SIL, Phone, voice_symbol


@dataclass(frozen=True)
class Expression:
    """Per-melody singing style (drawn from the seed, identical for every voice)."""
    vib_rate: float       # Hz
    vib_depth: float      # cents (peak)
    vib_delay: float      # s after a note onset before vibrato starts to fade in
    glide: float          # s, legato pitch transition between notes
    scoop: float          # cents below the target at a phrase onset

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Expression":
        return cls(vib_rate=round(float(rng.uniform(5.0, 6.5)), 3),
                   vib_depth=round(float(rng.uniform(20.0, 45.0)), 2),
                   vib_delay=round(float(rng.uniform(0.12, 0.25)), 3),
                   glide=round(float(rng.uniform(0.05, 0.10)), 3),
                   scoop=round(float(rng.uniform(20.0, 60.0)), 1))


def pitch_curve(melody, expr: Expression, t: np.ndarray, note_seed: int = 0) -> np.ndarray:
    """Sung pitch (fractional MIDI, untransposed) at times `t` (s): notes, legato glides, onset scoops and
    delayed vibrato. In a rest the pitch jumps half-way from the last note to the next note's scoop start
    (the voice is silent there, and voiced phones never see the jump)."""
    sung = [(k, n) for k, n in enumerate(melody.notes) if not n.is_rest]
    rng = np.random.default_rng([note_seed & 0xFFFFFFFF, len(sung)])
    jit = rng.uniform(0.85, 1.15, size=(len(sung), 2))     # per-note vibrato depth / rate jitter
    m = np.full(t.shape, float(sung[0][1].midi))
    for j, (k, n) in enumerate(sung):
        prev = melody.notes[k - 1] if k > 0 else None
        legato_in = prev is not None and not prev.is_rest
        # a note's pitch holds from the middle of the rest before it (the jump falls in silence)
        since = -np.inf if j == 0 else (n.start if legato_in else 0.5 * (prev.start + n.start))
        m[t >= since] = n.midi
        if not legato_in:   # the silence before the note already sits at the scoop's starting pitch
            m[(t >= since) & (t < n.start)] -= expr.scoop / 100.0
        if legato_in:   # glide from the previous note, centred a little after the boundary
            g = min(expr.glide, 0.3 * prev.dur, 0.3 * n.dur)
            a, b = n.start - 0.35 * g, n.start + 0.65 * g
            w = (t >= a) & (t < b)
            x = (t[w] - a) / (b - a)
            m[w] = prev.midi + (n.midi - prev.midi) * (0.5 - 0.5 * np.cos(np.pi * x))
        else:           # scoop up into a note after a rest
            d = min(0.08, 0.3 * n.dur)
            w = (t >= n.start) & (t < n.start + d)
            x = (t[w] - n.start) / d
            m[w] -= expr.scoop / 100.0 * (0.5 + 0.5 * np.cos(np.pi * x))
        if n.dur >= 0.35:  # vibrato: fade in after the delay, fade out before the note ends
            depth = expr.vib_depth * jit[j, 0] / 100.0
            rate = expr.vib_rate * (1.0 + (jit[j, 1] - 1.0) / 3.0)          # ±5 %
            t_on = n.start + expr.vib_delay
            w = (t >= t_on) & (t < n.end)
            tt = t[w]
            env = np.clip((tt - t_on) / 0.25, 0.0, 1.0) * np.clip((n.end - 0.06 - tt) / 0.1, 0.0, 1.0)
            m[w] += depth * env * np.sin(2 * np.pi * rate * (tt - t_on))
    return m


def midi_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


# --------------------------------------------------------------------------------------- .pho files
PITCH_STEP_MS = 10     # pitch point spacing of ordinary phones (vibrato needs ~10 ms to stay sinusoidal)
MAX_PHO_LINE = 1000    # mbrola reads .pho lines into a 1024-byte buffer: longer lines are a fatal error


def pitch_step_ms(dur_ms: int) -> int:
    """Pitch point spacing for a phone of `dur_ms`: 10 ms, coarser (multiples of 5 ms) for long phones so
    that the line stays under mbrola's limit (~70 points). The ground truth uses the points as written,
    so a coarser spacing only makes the vibrato a little polygonal, never the ground truth wrong."""
    return max(PITCH_STEP_MS, -(-dur_ms // (70 * 5)) * 5)


def pitch_curve_ms(melody, expr: Expression, note_seed: int = 0) -> np.ndarray:
    """`pitch_curve` on every whole millisecond 0..duration (index = ms)."""
    n_ms = int(round(melody.duration * 1000)) + 1
    return pitch_curve(melody, expr, np.arange(n_ms, dtype=np.float64) / 1000.0, note_seed)


def write_pho(phones: list[Phone], curve_ms: np.ndarray, voice: str, transpose: int, comment: str = "") -> str:
    """The .pho text of a plan for one voice: its phoneme symbols, and pitch points every
    `pitch_step_ms` and at both ends of every phone, from `curve_ms` (fractional MIDI per ms)
    transposed by `transpose` semitones."""
    lines = [f"; comolive corpus {comment} voice={voice} transpose={transpose:+d}".rstrip()]
    for k, ph in enumerate(phones):
        nxt = phones[k + 1].p if k + 1 < len(phones) else None
        sym = voice_symbol(voice, ph.p, nxt)
        dur = ph.end - ph.start
        step = pitch_step_ms(dur)
        first = (ph.start // step + 1) * step
        tms = [ph.start] + list(range(first, ph.end, step)) + [ph.end]
        if ph.p == SIL:
            # No 0 % point on a silence: mbrola inserts a 0 ms silence before every "_" line and gives
            # it a pitch by interpolating over the gap up to this line's first point. With a point at
            # 0 % that gap is 0 ms, the inserted silence keeps f0 = 0 Hz, and if a frame ever lands in
            # it the period is sr/0: a runaway loop ("X-_ Concat : PANIC, check your pitch").
            tms = tms[1:]
        hz = midi_to_hz(curve_ms[np.minimum(tms, len(curve_ms) - 1)] + transpose)
        pts = " ".join(f"{100.0 * (a - ph.start) / dur:.2f} {f:.2f}" for a, f in zip(tms, hz))
        line = f"{sym} {dur} {pts}"
        if len(line) >= MAX_PHO_LINE:
            raise ComoliveError(f"internal: .pho line of {len(line)} characters for a {dur} ms phone")
        lines.append(line)
    return "\n".join(lines) + "\n"


def parse_pho(pho: str) -> list[tuple[str, float, list[tuple[float, float]]]]:
    """(symbol, duration ms, [(position %, Hz), ...]) per line of a .pho text (comments skipped)."""
    out = []
    for line in pho.splitlines():
        s = line.strip()
        if not s or s.startswith(";"):
            continue
        f = s.split()
        vals = [float(x) for x in f[2:]]
        out.append((f[0], float(f[1]), list(zip(vals[0::2], vals[1::2]))))
    return out


def f0_ground_truth(pho: str, voiced: list[bool], native_sr: int, n_frames: int,
                    sr: int = 22050, hop: int = 256) -> np.ndarray:
    """The f0 (Hz, float32) MBROLA renders from `pho`, on frames centred at i*hop/sr seconds.

    MBROLA places pitch marks one period apart; the period starting at a mark at time u is
    int(native_sr / f(u)) samples, f being the linear interpolation (in Hz) of the current phone's pitch
    points. A frame at time t lies, on average, half a period after the mark that started its period,
    so its f0 is native_sr / floor(native_sr / f(u)) with u = t - 1/(2 f(t)). Frames inside unvoiced
    phones and silences are 0.
    """
    rows = parse_pho(pho)
    if len(rows) != len(voiced):
        raise ComoliveError("internal: voicing flags do not match the .pho lines")
    pos_all, hz_all, vstart, vend = [], [], [], []
    start = 0.0
    for (sym, dur, pts), v in zip(rows, voiced):
        for p, h in pts:   # the curve is continuous: both ends of every phone carry the same value
            pos_all.append(start + p / 100.0 * dur)
            hz_all.append(h)
        if v:
            vstart.append(start)
            vend.append(start + dur)
        start += dur
    pos_all, hz_all = np.asarray(pos_all), np.asarray(hz_all)
    t = np.arange(n_frames, dtype=np.float64) * hop / sr * 1000.0      # ms
    k = np.searchsorted(np.asarray(vstart), t, side="right") - 1
    is_v = (k >= 0) & (t < np.asarray(vend + [0.0])[np.maximum(k, 0)])
    f0 = np.zeros(n_frames, dtype=np.float64)
    if is_v.any() and len(pos_all):
        tv = t[is_v]
        u = tv - 500.0 / np.interp(tv, pos_all, hz_all)      # half a period earlier (ms)
        f = np.interp(u, pos_all, hz_all).astype(np.float32)
        period = np.floor(np.float32(native_sr) / f)
        f0[is_v] = native_sr / period.astype(np.float64)
    return f0.astype(np.float32)
