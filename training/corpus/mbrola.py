"""Singing with MBROLA: canonical phonemes, sung timing and pitch, .pho files, rendering, exact f0.

Parallel data is the point: a melody is planned once (phonemes with times in whole milliseconds and a
pitch curve) and every voice renders that same plan. Each voice only swaps the phoneme *symbols* for its
own (German `a:`, US English `A`, ...) and transposes the pitch curve by whole semitones (its register),
so renditions are sample-aligned and their f0 curves are identical up to that transposition.

Canonical inventory (SAMPA names): vowels a e i o u; consonants p t k b d g f v s S m n l r j; `_` is
silence. Every voice in `DEFAULT_VOICES` renders every diphone a plan can contain: `probe_voice` checks
this by rendering all pairs, and `normalise_phones` rewrites a phoneme sequence (devoicing, S→s before a
consonant, merging repeated phonemes, dropping a stray j) until only diphones *all* default voices
know are left.

MBROLA is pitch-synchronous: each period is int(sr / f) samples with f linearly interpolated (in Hz)
between the pitch points of the current phone, so the true f0 is sr / floor(sr / f) at the voice's
native rate. `f0_ground_truth` computes exactly that from the .pho text on the model's frame grid.
Two measured facts make renditions line up: MBROLA's overlap-add writes every frame M samples late
(M = the database's frame period, 88-200 samples depending on the voice), which `render` removes; and
a frame's f0 is set at the pitch mark that starts its period, on average half a period earlier, which
`f0_ground_truth` accounts for. After both, the f0 of the audio (pyworld harvest) matches the ground
truth within 1-2 cents (median) with a residual lag of 0-2 ms, for every default voice.

Known mbrola traps handled here: .pho lines longer than 1023 bytes are a fatal error (pitch points are
spaced more widely on long phones); a pitch point at 0 % of a silence line can leave mbrola's inserted
0 ms silence at 0 Hz and make it loop ("PANIC, check your pitch"), so silences start at their second
point; consecutive silences and phones shorter than ~35 ms upset its duration bookkeeping.

MBROLA voices are licensed for non-commercial, research use only.
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from models.errors import ComoliveError

MBROLA_DIR = Path(os.environ.get("COMOLIVE_MBROLA_DIR", "/usr/share/mbrola"))
LICENCE_NOTE = "MBROLA voices: non-commercial, research use"

SIL = "_"
VOWELS = ("a", "e", "i", "o", "u")
CONSONANTS = ("p", "t", "k", "b", "d", "g", "f", "v", "s", "S", "m", "n", "l", "r", "j")
INVENTORY = VOWELS + CONSONANTS
# f0 ground truth is non-zero in these phonemes. b d g are left out: their closures carry little or no
# voicing in most voices (a pitch tracker finds none), so their f0 would not be identical across voices.
VOICED = frozenset(VOWELS) | frozenset("vmnlrj")
_PLOSIVE, _FRICATIVE = frozenset("ptkbdg"), frozenset("fvsS")

# sung durations of consonants (seconds); vowels take the rest of the note
CONSONANT_S = {**{c: 0.065 for c in _PLOSIVE}, **{c: 0.085 for c in _FRICATIVE},
               "m": 0.075, "n": 0.07, "l": 0.07, "r": 0.06, "j": 0.06}


@dataclass(frozen=True)
class VoiceInfo:
    name: str
    language: str
    sex: str                          # "female" / "male" (MBROLA voice docs, espeak-ng mb-* voice files)
    symbols: dict = field(default_factory=dict)       # canonical → voice symbol where they differ
    coda_symbols: dict = field(default_factory=dict)  # used when the next phoneme is not a vowel


_DE = {"a": "a:", "e": "e:", "i": "i:", "o": "o:", "u": "u:", "r": "R"}
_US = {"a": "A", "e": "E", "i": "i", "o": "O", "u": "u"}
_LONG = {"a": "A:", "e": "e:", "i": "i:", "o": "o:", "u": "u:"}
VOICES: dict[str, VoiceInfo] = {v.name: v for v in [
    VoiceInfo("de1", "de", "female", _DE), VoiceInfo("de2", "de", "male", _DE),
    VoiceInfo("de3", "de", "female", _DE), VoiceInfo("de4", "de", "male", _DE),
    VoiceInfo("de5", "de", "female", _DE), VoiceInfo("de6", "de", "male", _DE),
    VoiceInfo("de7", "de", "female", _DE),
    VoiceInfo("en1", "en-gb", "male", {"a": "A:", "e": "e", "i": "i:", "o": "O:", "u": "u:"}),
    VoiceInfo("us1", "en-us", "female", _US), VoiceInfo("us2", "en-us", "male", _US),
    VoiceInfo("us3", "en-us", "male", _US),
    VoiceInfo("es2", "es", "male", {"v": "b", "S": "tS", "j": "jj"}),
    VoiceInfo("fr1", "fr", "male", {"r": "R"}), VoiceInfo("fr4", "fr", "female", {"r": "R"}),
    VoiceInfo("it3", "it", "male"), VoiceInfo("it4", "it", "female"),
    VoiceInfo("hu1", "hu", "female", {"a": "a:", "e": "e:"}),
    VoiceInfo("cz2", "cs", "male"),
    VoiceInfo("pl1", "pl", "female"),
    VoiceInfo("nl2", "nl", "male", {}, {"l": "L"}),
    VoiceInfo("sw1", "sv", "male", _LONG),
    VoiceInfo("br3", "pt-br", "male"),
    VoiceInfo("fr2", "fr", "female", {"r": "R"}), VoiceInfo("fr3", "fr", "male", {"r": "R"}),
    VoiceInfo("fr5", "fr-be", "male", {"r": "R"}), VoiceInfo("fr6", "fr", "male", {"r": "R"}),
    VoiceInfo("fr7", "fr-be", "male", {"r": "R"}), VoiceInfo("ca1", "fr-ca", "male"),
    VoiceInfo("es1", "es", "male", {"v": "b", "S": "tS", "j": "jj"}),
    VoiceInfo("pt1", "pt", "female"), VoiceInfo("sw2", "sv", "female", _LONG),
    VoiceInfo("cr1", "hr", "male"), VoiceInfo("lt1", "lt", "male"), VoiceInfo("lt2", "lt", "male"),
    VoiceInfo("ee1", "et", "male"),
]}
# Left out of the defaults (still usable by name):
#   br3: lacks 149 diphones of the inventory (no consonant clusters, no S, no word-final nasals or l);
#   us3: its silence-vowel diphones are creaky: a vowel after a rest is period-doubled (a subharmonic
#        15 dB under f0), so pitch trackers read an octave low on ~13 % of its voiced frames.
DEFAULT_VOICES = ("de1", "de2", "de3", "de4", "de5", "de6", "de7", "en1", "us1", "us2", "es2",
                  "fr1", "fr4", "it3", "it4", "hu1", "cz2", "pl1", "nl2", "sw1",
                  "fr2", "fr3", "fr5", "fr6", "fr7", "ca1", "es1", "pt1", "sw2", "cr1", "lt1", "lt2", "ee1")

VOLUME = 0.6   # mbrola -v: keeps loud voices (it3) from clipping; level is normalised afterwards


def voice_info(voice: str) -> VoiceInfo:
    if voice not in VOICES:
        raise ComoliveError(f"unknown MBROLA voice '{voice}' (known: {', '.join(sorted(VOICES))})")
    return VOICES[voice]


def voice_path(voice: str) -> Path:
    voice_info(voice)
    p = MBROLA_DIR / voice / voice
    if not p.is_file():
        raise ComoliveError(f"MBROLA voice '{voice}' is not installed ({p} missing; apt install mbrola-{voice})")
    return p


def installed_voices() -> list[str]:
    return [v for v in VOICES if (MBROLA_DIR / v / v).is_file()]


def voice_symbol(voice: str, phone: str, next_phone: str | None) -> str:
    info = voice_info(voice)
    if phone == SIL:
        return SIL
    if info.coda_symbols and phone in info.coda_symbols and (next_phone is None or next_phone not in VOWELS):
        return info.coda_symbols[phone]
    return info.symbols.get(phone, phone)


def _mbrola_bin() -> str:
    return os.environ.get("COMOLIVE_MBROLA", "mbrola")


def run_mbrola(voice: str, pho: str, ignore_missing: bool = False) -> tuple[np.ndarray, int, str]:
    """Render `pho` text with `voice`. Returns (float32 samples at the voice's native rate, rate, stderr)."""
    db = voice_path(voice)
    with tempfile.TemporaryDirectory(prefix="comolive-mbrola-") as tmp:
        out = Path(tmp) / "out.wav"
        cmd = [_mbrola_bin(), "-v", str(VOLUME)] + (["-e"] if ignore_missing else []) + [str(db), "-", str(out)]
        try:
            r = subprocess.run(cmd, input=pho.encode("ascii"), capture_output=True, timeout=120)
        except FileNotFoundError:
            raise ComoliveError("the 'mbrola' program is not installed (apt install mbrola)") from None
        err = r.stderr.decode("latin-1")
        if r.returncode != 0 or not out.exists():
            first = err.strip().splitlines()[0] if err.strip() else f"exit status {r.returncode}"
            raise ComoliveError(f"mbrola failed with voice {voice}: {first}")
        wav, sr = sf.read(str(out), dtype="float32")
    return wav, int(sr), err


@functools.lru_cache(maxsize=None)
def voice_header(voice: str) -> tuple[int, int]:
    """(native sample rate, MBROLA frame period M in samples) from the voice database header.

    The header is "MBROLA", a 5-byte version, int16 number of diphones, uint16 0 then int32 size of the
    pitch-mark table (older: uint16 size), int32 size of the waves, int16 rate, uint8 period, uint8 coding.
    """
    p = voice_path(voice)
    with open(p, "rb") as f:
        b = f.read(32)
    if len(b) < 27 or b[:6] != b"MBROLA":
        raise ComoliveError(f"{p}: not an MBROLA voice database")
    o = 19 if int.from_bytes(b[13:15], "little") == 0 else 15
    rate = int.from_bytes(b[o + 4:o + 6], "little", signed=True)
    period = b[o + 6]
    if rate <= 0 or not 20 <= period <= 255:
        raise ComoliveError(f"{p}: unexpected MBROLA header (rate {rate}, period {period})")
    return rate, period


def render(voice: str, pho: str, total_ms: int) -> tuple[np.ndarray, int]:
    """Render `pho` and put the audio on the .pho timeline: (float32 samples, native rate).

    MBROLA's overlap-add writes each frame M samples (the database's frame period) after its pitch
    mark, so its output lags the .pho timeline by M samples, a different lag for every voice. Dropping
    those M samples and padding/trimming to exactly `total_ms` makes renditions by different voices
    sample-aligned.
    """
    wav, sr, err = run_mbrola(voice, pho)
    if "Warning" in err or "PANIC" in err:
        raise ComoliveError(f"mbrola voice {voice}: {err.strip().splitlines()[0]}")
    rate, period = voice_header(voice)
    if rate != sr:
        raise ComoliveError(f"mbrola voice {voice}: header says {rate} Hz but it renders {sr} Hz")
    n = int(round(total_ms * sr / 1000))
    wav = wav[period:period + n]
    if len(wav) < n:
        wav = np.concatenate([wav, np.zeros(n - len(wav), dtype=np.float32)])
    return wav.astype(np.float32, copy=False), sr


# ------------------------------------------------------------------------------------ voice checking
_WARN = re.compile(r"Warning: (\S+?)-(\S+) unknown")


_PROBE_MS = {**{p: 150 for p in VOWELS}, **{p: 70 for p in CONSONANTS}, SIL: 100}


def _probe_chunks(voice: str, pairs: list[tuple[str, str]]) -> tuple[int, str, bool]:
    """Render "_ x y _" for each pair in one mbrola call (missing diphones replaced by silence)."""
    seq: list[str] = []
    for x, y in pairs:
        for p in (SIL, x, y, SIL):
            if not (p == SIL and seq and seq[-1] == SIL):  # consecutive silences upset mbrola
                seq.append(p)
    lines = [f"{voice_symbol(voice, p, seq[k + 1] if k + 1 < len(seq) else None)} {_PROBE_MS[p]} 0 140 100 140"
             for k, p in enumerate(seq)]
    db = voice_path(voice)
    with tempfile.TemporaryDirectory(prefix="comolive-probe-") as tmp:
        out = Path(tmp) / "probe.wav"
        r = subprocess.run([_mbrola_bin(), "-e", str(db), "-", str(out)], capture_output=True,
                           input=("\n".join(lines) + "\n").encode("ascii"), timeout=300)
        sr = sf.info(str(out)).samplerate if out.exists() and out.stat().st_size > 44 else 0
    return sr, r.stderr.decode("latin-1"), r.returncode == 0


@functools.lru_cache(maxsize=None)
def probe_voice(voice: str) -> tuple[int, frozenset]:
    """Render every canonical diphone with `voice`; return (native rate, canonical pairs it cannot render).

    A pair is missing when mbrola reports its diphone unknown, or when a "_ x y _" chunk on its own makes
    mbrola fail (found by bisecting the chunks of a failed run).
    """
    units = list(INVENTORY) + [SIL]
    pairs = [(x, y) for x, y in itertools.product(units, repeat=2) if (x, y) != (SIL, SIL)]
    info = voice_info(voice)
    inv: dict[str, set] = {SIL: {SIL}}     # voice symbol → canonical phonemes (es2: b stands for b and v)
    for p in INVENTORY:
        for s in {info.symbols.get(p, p), info.coda_symbols.get(p, info.symbols.get(p, p))}:
            inv.setdefault(s, set()).add(p)
    missing: set = set()
    rate = 0

    def run(chunk: list[tuple[str, str]]) -> None:
        nonlocal rate
        sr, err, ok = _probe_chunks(voice, chunk)
        if ok:
            rate = rate or sr
            for a, b in _WARN.findall(err):
                missing.update(itertools.product(inv.get(a, ()), inv.get(b, ())))
        elif len(chunk) == 1:
            missing.add(chunk[0])
        else:
            run(chunk[: len(chunk) // 2])
            run(chunk[len(chunk) // 2:])

    run(pairs)
    if not rate:
        raise ComoliveError(f"mbrola voice {voice} renders nothing (broken installation?)")
    return rate, frozenset(missing)


@functools.lru_cache(maxsize=None)
def allowed_diphones(voices: tuple[str, ...] = DEFAULT_VOICES) -> frozenset:
    """Canonical pairs every voice in `voices` renders (silence-silence always allowed)."""
    units = list(INVENTORY) + [SIL]
    allowed = set(itertools.product(units, repeat=2))
    for v in voices:
        allowed -= probe_voice(v)[1]
    allowed.add((SIL, SIL))
    return frozenset(allowed)


def check_voices(voices: list[str] | tuple[str, ...]) -> None:
    """Raise a ComoliveError naming any voice that cannot render the default voices' diphone set."""
    allowed = allowed_diphones(DEFAULT_VOICES)
    for v in voices:   # x-x never reaches mbrola: normalise_phones merges repeated phonemes
        bad = sorted((a, b) for a, b in allowed & probe_voice(v)[1] if a != b)
        if bad:
            show = ", ".join(f"{a}-{b}" for a, b in bad[:8])
            raise ComoliveError(f"MBROLA voice {v} lacks {len(bad)} diphones of the canonical inventory "
                                f"({show}{', ...' if len(bad) > 8 else ''}); choose another voice")


# --------------------------------------------------------------------------------- phonemes & timing
@dataclass
class Phone:
    p: str          # canonical phoneme or "_"
    start: int      # ms
    end: int        # ms
    note: int = -1  # index (in melody.notes) of the note the phone belongs to; -1 for lead/tail silence

    @property
    def voiced(self) -> bool:
        return self.p in VOICED


_DEVOICE = {"b": "p", "d": "t", "g": "k", "v": "f"}


def normalise_phones(phones: list[Phone], allowed: frozenset) -> list[Phone]:
    """Rewrite the sequence until every adjacent pair is in `allowed` (the same result for every voice).

    Fixes, in order: merge identical neighbours; devoice b d g v; S → s; drop a j; m → n; drop the
    first phoneme of the pair (a consonant), else the second. A dropped phone's time goes to its
    neighbour (the previous phone unless that is silence).
    """
    ph = [Phone(x.p, x.start, x.end, x.note) for x in phones]
    changed = True
    while changed:
        changed = False
        k = 0
        while k + 1 < len(ph):
            x, y = ph[k], ph[k + 1]
            if x.p == y.p:                     # one long phoneme (repeated vowel, geminate, rest-rest)
                x.end = y.end
                del ph[k + 1]
                changed = True
                continue
            if (x.p, y.p) in allowed:
                k += 1
                continue
            changed = True
            if x.p in _DEVOICE and (_DEVOICE[x.p], y.p) in allowed:
                x.p = _DEVOICE[x.p]
            elif x.p == "S" and ("s", y.p) in allowed:
                x.p = "s"
            elif x.p == "m" and ("n", y.p) in allowed:
                x.p = "n"
            elif "j" in (x.p, y.p):
                _drop(ph, k if x.p == "j" else k + 1)
            elif x.p not in VOWELS and x.p != SIL:
                _drop(ph, k)
            else:
                _drop(ph, k + 1)
    return ph


def _drop(ph: list[Phone], k: int) -> None:
    gone = ph.pop(k)
    if k > 0 and ph[k - 1].p != SIL:
        ph[k - 1].end = gone.end
    elif k < len(ph):
        ph[k].start = gone.start
    elif k > 0:
        ph[k - 1].end = gone.end


def _syllable_phones(notes, i0: int) -> list[str]:
    from training.corpus.melodies import german_syllable_phones

    n = notes[i0]
    word_initial = n.syllabic in (None, "single", "begin")
    return german_syllable_phones(n.text, word_initial=word_initial) or ["a"]


MIN_CONSONANT_S = 0.035   # shorter phones make mbrola's duration bookkeeping unstable (runaway "PANIC")
MIN_GLIDE_S = 0.05


def _fit_syllable(seq: list[str], span: float) -> list[str]:
    """Drop phonemes a short syllable has no room for: diphthong off-glides first, then coda consonants
    from the end, then onset consonants from the start (always keeping one vowel)."""
    seq = list(seq)

    def cons_total(q):
        return sum(CONSONANT_S[p] for p in q if p not in VOWELS)

    def n_groups(q):
        return sum(1 for k, p in enumerate(q) if p in VOWELS and (k == 0 or q[k - 1] not in VOWELS))

    def fits(q):
        c = [CONSONANT_S[p] for p in q if p not in VOWELS]
        scale = min(1.0, 0.5 * span / sum(c)) if c else 1.0
        return not c or min(c) * scale >= MIN_CONSONANT_S

    while True:
        vowel_time = (span - min(cons_total(seq), 0.5 * span)) / max(n_groups(seq), 1)
        glides = [k for k, p in enumerate(seq) if p in VOWELS and k > 0 and seq[k - 1] in VOWELS]
        if glides and min(0.3 * vowel_time / 2, 0.14) < MIN_GLIDE_S:
            del seq[glides[-1]]
            continue
        if fits(seq):
            return seq
        vi = [k for k, p in enumerate(seq) if p in VOWELS]
        if len(seq) - 1 > vi[-1]:
            del seq[-1]
        elif vi[0] > 0:
            del seq[0]
        else:
            return seq


def _lay_out(seq: list[str], t0: float, t1: float, note_idx: int) -> list[tuple[str, float, float, int]]:
    """Spread a syllable's phonemes over [t0, t1] s: consonants get their sung durations (scaled down to
    at most half of a short syllable), vowels share the rest; in a run of vowels (a diphthong) the
    later ones are short off-glides."""
    span = t1 - t0
    seq = _fit_syllable(seq, span)
    cons = [CONSONANT_S[p] if p not in VOWELS else 0.0 for p in seq]
    fixed = sum(cons)
    if fixed > 0.5 * span:
        cons = [c * 0.5 * span / fixed for c in cons]
        fixed = 0.5 * span
    groups: list[list[int]] = []          # runs of adjacent vowels
    for k, p in enumerate(seq):
        if p in VOWELS:
            if groups and groups[-1][-1] == k - 1:
                groups[-1].append(k)
            else:
                groups.append([k])
    durs = list(cons)
    per_group = (span - fixed) / max(len(groups), 1)
    for g in groups:
        glide = min(0.3 * per_group / len(g), 0.14) if len(g) > 1 else 0.0
        durs[g[0]] = per_group - glide * (len(g) - 1)
        for k in g[1:]:
            durs[k] = glide
    out, t = [], t0
    for p, d in zip(seq, durs):
        out.append((p, t, t + d, note_idx))
        t += d
    return out


def plan_phones(melody, allowed: frozenset | None = None) -> list[Phone]:
    """Timed canonical phonemes (whole ms) of a melody: the same for every voice."""
    if allowed is None:
        allowed = allowed_diphones(DEFAULT_VOICES)
    notes = melody.notes
    raw: list[tuple[str, float, float, int]] = [(SIL, 0.0, notes[0].start, -1)]
    i = 0
    while i < len(notes):
        n = notes[i]
        if n.is_rest:
            raw.append((SIL, n.start, n.end, i))
            i += 1
            continue
        j = i + 1           # melisma: following notes without text belong to this syllable
        while j < len(notes) and not notes[j].is_rest and notes[j].text is None:
            j += 1
        seq = _syllable_phones(notes, i) if n.text else ["a"]
        raw += _lay_out(seq, n.start, notes[j - 1].end, i)
        i = j
    raw.append((SIL, notes[-1].end, melody.duration, -1))
    # whole-ms boundaries from the cumulative times (no drift), zero-length phones dropped
    phones: list[Phone] = []
    for p, t0, t1, ni in raw:
        a, b = int(round(t0 * 1000)), int(round(t1 * 1000))
        if phones:
            a = phones[-1].end
        if b - a < 8:    # too short to render: give its time to the previous phone
            if phones and b > a:
                phones[-1].end = b
            continue
        phones.append(Phone(p, a, b, ni))
    return normalise_phones(phones, allowed)


# ------------------------------------------------------------------------------------------- pitch
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
