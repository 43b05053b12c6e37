"""Singing with MBROLA: canonical phonemes, sung timing, rendering (pitch curves, .pho text and exact f0: pho.py).

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
native rate. `pho.f0_ground_truth` computes exactly that from the .pho text on the model's frame grid.
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
