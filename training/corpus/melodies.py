"""Melodies with lyrics for the synthetic singing corpus.

Source: the Bach chorales bundled with music21 (soprano part, German text of verse 1). A chorale is cut
into phrases of ~4-12 s at fermatas and rests; each phrase becomes one `Melody` (notes and rests in
seconds, syllable text on the first note of each syllable, None on melisma continuations).

Everything random here (tempo, phrase grouping, breaths) is drawn from a generator seeded by
(seed, piece name), so a melody does not change when more or fewer melodies are requested.

Lyrics become phonemes of the small canonical inventory of `training.corpus.mbrola` through a
rule-based German grapheme-to-phoneme reduction (`german_syllable_phones`): robust, tiny and the same
on every machine (no espeak version drift).
"""
from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from models.errors import ComoliveError

LEAD_S = 0.20       # silence before the first note of a melody
TAIL_S = 0.30       # silence after the last note
MIN_PHRASE_S = 4.0
MAX_PHRASE_S = 12.0

# Register per voice sex (MIDI numbers). The female range is the male range one octave up, so the
# same melody sung by a male and a female voice differs by exactly 12 semitones.
REGISTER_CENTRE = {"female": 64, "male": 52}     # E4 / E3
REGISTER_RANGE = {"female": (55, 75), "male": (43, 63)}   # G3-D#5 / G2-D#4 (comfortable core)


@dataclass
class Note:
    start: float            # seconds from the start of the rendered file
    dur: float              # seconds
    midi: int | None        # None for a rest
    text: str | None = None  # syllable (verse 1) on the first note of a syllable; None = melisma or rest
    syllabic: str | None = None  # music21 syllabic: single/begin/middle/end
    fermata: bool = False

    @property
    def is_rest(self) -> bool:
        return self.midi is None

    @property
    def end(self) -> float:
        return self.start + self.dur


@dataclass
class Melody:
    id: str
    piece: str              # source piece, e.g. "bach/bwv104.6"
    title: str
    language: str           # lyrics language ("de")
    tempo_qpm: float        # quarter notes per minute (fermatas held longer)
    first_measure: int
    last_measure: int
    notes: list[Note] = field(default_factory=list)
    duration: float = 0.0   # seconds, including LEAD_S and TAIL_S

    def sung(self) -> list[Note]:
        return [n for n in self.notes if not n.is_rest]

    def pitch_range(self) -> tuple[int, int]:
        ps = [n.midi for n in self.sung()]
        return min(ps), max(ps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = [asdict(n) for n in self.notes]
        return d


def stretch_melody(m: Melody, factor: float) -> Melody:
    """The same melody sung `factor` times slower (used to step around rare mbrola failures)."""
    notes = [Note(start=round(LEAD_S + (n.start - LEAD_S) * factor, 6), dur=round(n.dur * factor, 6), midi=n.midi,
                  text=n.text, syllabic=n.syllabic, fermata=n.fermata) for n in m.notes]
    end = notes[-1].end
    return Melody(id=m.id, piece=m.piece, title=m.title, language=m.language,
                  tempo_qpm=round(m.tempo_qpm / factor, 3), first_measure=m.first_measure,
                  last_measure=m.last_measure, notes=notes, duration=round(end + TAIL_S, 6))


def piece_rng(seed: int, piece: str, salt: int = 0) -> np.random.Generator:
    """A generator that depends only on the seed and the piece (and an optional salt)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(piece.encode()), salt])


def register_shift(melody: Melody, sex: str) -> int:
    """Whole semitones that move `melody` into the comfortable range of a `sex` voice.

    The female shift centres the melody on E4 (kept inside G3-D#5 where the melody's span allows); the
    male shift is the female shift minus exactly one octave.
    """
    if sex not in REGISTER_CENTRE:
        raise ComoliveError(f"unknown voice sex '{sex}' (expected female or male)")
    lo, hi = melody.pitch_range()
    rlo, rhi = REGISTER_RANGE["female"]
    shift = int(round(REGISTER_CENTRE["female"] - (lo + hi) / 2.0))
    if hi + shift > rhi:
        shift = rhi - hi
    if lo + shift < rlo:
        shift = rlo - lo
    return shift if sex == "female" else shift - 12


# ------------------------------------------------------------------------------------- lyrics → phones
_VOWEL_RULES = [  # longest first; German orthography → canonical vowels
    ("ieh", ["i"]), ("ie", ["i"]), ("eih", ["a", "i"]), ("ei", ["a", "i"]), ("ai", ["a", "i"]),
    ("ey", ["a", "i"]), ("ay", ["a", "i"]), ("eu", ["o", "i"]), ("äu", ["o", "i"]), ("au", ["a", "u"]),
    ("aa", ["a"]), ("ee", ["e"]), ("oo", ["o"]),
    ("ä", ["e"]), ("ö", ["e"]), ("ü", ["i"]), ("y", ["i"]),
    ("a", ["a"]), ("e", ["e"]), ("i", ["i"]), ("o", ["o"]), ("u", ["u"]),
]
_CONS_RULES = [
    ("tsch", ["t", "S"]), ("sch", ["S"]), ("chs", ["k", "s"]), ("ch", ["S"]), ("ck", ["k"]),
    ("qu", ["k", "v"]), ("ph", ["f"]), ("th", ["t"]), ("dt", ["t"]), ("tz", ["t", "s"]),
    ("ng", ["n"]), ("nk", ["n", "k"]), ("pf", ["p", "f"]), ("ß", ["s"]),
    ("b", ["b"]), ("c", ["k"]), ("d", ["d"]), ("f", ["f"]), ("g", ["g"]), ("j", ["j"]), ("k", ["k"]),
    ("l", ["l"]), ("m", ["m"]), ("n", ["n"]), ("p", ["p"]), ("r", ["r"]), ("s", ["s"]), ("t", ["t"]),
    ("v", ["f"]), ("w", ["v"]), ("x", ["k", "s"]), ("z", ["t", "s"]), ("h", []),
]
_VOWEL_LETTERS = set("aeiouäöüy")
_DEVOICE = {"b": "p", "d": "t", "g": "k", "v": "f"}
_LETTERS = re.compile(r"[^a-zäöüß]")


def clean_syllable(text: str | None) -> str:
    """Lower-case letters only ("Höh'" → "höh", "de," → "de")."""
    if not text:
        return ""
    return _LETTERS.sub("", text.lower().replace("\u00ad", ""))


def german_syllable_phones(text: str, word_initial: bool = True) -> list[str]:
    """Canonical phonemes of one German sung syllable (rule-based, deliberately coarse).

    Umlauts fold to their unrounded neighbours (ä→e, ö→e, ü→i), "ch" → S, z → t s, w → v, v → f,
    lengthening h is silent, diphthongs are two vowels (ei → a i, au → a u, eu → o i), word-initial
    sp/st are S p/S t, a syllable-final b/d/g/v is devoiced (Auslautverhärtung). A syllable without a
    vowel gets a schwa (written e) before its last consonant.
    """
    s = clean_syllable(text)
    out: list[str] = []
    i = 0
    while i < len(s):
        if i == 0 and word_initial and s.startswith(("sp", "st")):
            out += ["S", s[1]]
            i += 2
            continue
        if i == 0 and s.startswith("chr"):
            out.append("k")
            i += 2
            continue
        for g, ph in (_VOWEL_RULES if s[i] in _VOWEL_LETTERS else _CONS_RULES):
            if s.startswith(g, i):
                out += ph
                i += len(g)
                break
        else:
            i += 1  # a letter outside the tables: ignore
    # collapse doubled consonants (nn, ss, tt...)
    dedup: list[str] = []
    for p in out:
        if dedup and p == dedup[-1] and p not in "aeiou":
            continue
        dedup.append(p)
    out = dedup
    if not any(p in "aeiou" for p in out):
        if not out:
            return []
        out.insert(max(len(out) - 1, 0), "e")
    # syllable-final devoicing of the coda
    last_v = max(k for k, p in enumerate(out) if p in "aeiou")
    for k in range(last_v + 1, len(out)):
        out[k] = _DEVOICE.get(out[k], out[k])
    return out


# ----------------------------------------------------------------------------------- score → melodies
@dataclass
class _Event:  # one note or rest of a part, in quarter lengths
    offset: float
    ql: float
    midi: int | None
    text: str | None
    syllabic: str | None
    fermata: bool
    measure: int


def chorale_paths() -> list[str]:
    """Names (corpus-relative, e.g. 'bach/bwv104.6') of the Bach chorales bundled with music21, sorted."""
    try:
        from music21 import corpus
    except ImportError as e:  # pragma: no cover - music21 is a pinned dependency
        raise ComoliveError(f"music21 is needed to build the singing corpus ({e})") from None
    names = set()
    for p in corpus.getComposer("bach"):
        if p.suffix == ".mxl" and p.name.startswith("bwv"):
            names.add("bach/" + p.name[: -len(".mxl")])
    return sorted(names)


def _part_events(piece: str) -> tuple[list[_Event], str] | None:
    from music21 import corpus, expressions

    try:
        score = corpus.parse(piece)
    except Exception:  # a corpus file music21 cannot read: skip it
        return None
    parts = list(score.parts)
    if not parts:
        return None
    part = next((p for p in parts if (p.partName or "").lower().startswith("sopran")), parts[0])
    title = ""
    if score.metadata is not None:
        title = score.metadata.title or score.metadata.movementName or ""
    events: list[_Event] = []
    for el in part.stripTies().flatten().notesAndRests:
        ql = float(el.quarterLength)
        if ql <= 0:  # grace notes
            continue
        fermata = any(isinstance(e, expressions.Fermata) for e in el.expressions)
        measure = int(el.measureNumber or 0)
        if el.isRest:
            events.append(_Event(float(el.offset), ql, None, None, None, fermata, measure))
            continue
        midi = max(p.midi for p in el.pitches) if el.isChord else el.pitch.midi
        text = syllabic = None
        lyr = [ly for ly in el.lyrics if ly.number == 1] or list(el.lyrics[:1])
        if lyr and clean_syllable(lyr[0].text):
            text, syllabic = lyr[0].text.strip(), lyr[0].syllabic
        events.append(_Event(float(el.offset), ql, int(midi), text, syllabic, fermata, measure))
    if sum(e.text is not None for e in events) < 8:
        return None  # no usable lyrics
    return events, str(title)


def _phrases(events: list[_Event]) -> list[list[_Event]]:
    """Split a part at fermatas and rests; leading/trailing rests dropped."""
    out: list[list[_Event]] = []
    cur: list[_Event] = []
    for e in events:
        if e.midi is None:
            if cur:
                out.append(cur)
                cur = []
            continue
        cur.append(e)
        if e.fermata:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def _singable(ph: list[_Event]) -> bool:
    """Starts with a syllable and carries text on at least half of its notes."""
    return bool(ph) and ph[0].text is not None and sum(e.text is not None for e in ph) * 2 >= len(ph)


def _group_phrases(phrases: list[list[_Event]], dur_of, rng: np.random.Generator) -> list[list[list[_Event]]]:
    """Fermata phrases grouped into melodies of MIN..MAX seconds (a target length drawn per group; a phrase
    longer than MAX_PHRASE_S is a melody of its own, trimmed at a syllable start)."""
    groups: list[list[list[_Event]]] = []
    cur: list[list[_Event]] = []
    cur_s = 0.0
    target = float(rng.uniform(5.0, 9.0))
    for ph in phrases:
        ph_s = sum(dur_of(e) for e in ph)
        if ph_s > MAX_PHRASE_S:  # very long phrase: its own melody, trimmed at a syllable start
            keep, acc = [], 0.0
            for e in ph:
                if acc + dur_of(e) > MAX_PHRASE_S - 0.5 and e.text is not None and acc >= MIN_PHRASE_S:
                    break
                keep.append(e)
                acc += dur_of(e)
            if cur:
                groups.append(cur)
            groups.append([keep])
            cur, cur_s = [], 0.0
            continue
        if cur and cur_s + ph_s + 0.4 > MAX_PHRASE_S:
            groups.append(cur)
            cur, cur_s = [], 0.0
        cur.append(ph)
        cur_s += ph_s + (0.4 if len(cur) > 1 else 0.0)
        if cur_s >= target:
            groups.append(cur)
            cur, cur_s = [], 0.0
            target = float(rng.uniform(5.0, 9.0))
    if cur:
        groups.append(cur)
    return groups


def melodies_from_piece(piece: str, seed: int, max_per_piece: int | None = None) -> list[Melody]:
    """All melodies (phrases of ~4-12 s) of one chorale, with tempo and breaths drawn from the seed."""
    got = _part_events(piece)
    if got is None:
        return []
    events, title = got
    rng = piece_rng(seed, piece)
    qls = np.array([e.ql for e in events if e.midi is not None])
    median_ql = float(np.median(qls)) if len(qls) else 1.0
    note_s = float(rng.uniform(0.42, 0.75))           # seconds per median note
    sec_per_ql = note_s / median_ql
    qpm = round(60.0 / sec_per_ql, 1)
    sec_per_ql = 60.0 / qpm
    fermata_hold = float(rng.uniform(1.3, 1.7))

    def dur_of(e: _Event) -> float:
        return e.ql * sec_per_ql * (fermata_hold if e.fermata else 1.0)

    # fermata phrases grouped into melodies, breath rests between a group's phrases
    groups = _group_phrases([p for p in _phrases(events) if _singable(p)], dur_of, rng)

    stem = piece.split("/")[-1].replace(".", "-")
    out: list[Melody] = []
    for gi, group in enumerate(groups):
        notes: list[Note] = []
        t = LEAD_S
        for pi, ph in enumerate(group):
            if pi > 0:
                breath = round(float(rng.uniform(0.25, 0.5)), 3)
                notes.append(Note(start=round(t, 6), dur=breath, midi=None))
                t += breath
            for e in ph:
                d = dur_of(e)
                notes.append(Note(start=round(t, 6), dur=round(d, 6), midi=e.midi, text=e.text,
                                  syllabic=e.syllabic, fermata=e.fermata))
                t += d
        total = t - LEAD_S
        if total < MIN_PHRASE_S - 1.0 or total > MAX_PHRASE_S + 0.5:
            continue
        m = Melody(id=f"{stem}_{gi:02d}", piece=piece, title=title, language="de", tempo_qpm=qpm,
                   first_measure=group[0][0].measure, last_measure=group[-1][-1].measure, notes=notes,
                   duration=round(t + TAIL_S, 6))
        out.append(m)
    if max_per_piece is not None and len(out) > max_per_piece:
        idx = sorted(rng.choice(len(out), size=max_per_piece, replace=False).tolist())
        out = [out[i] for i in idx]
    return out


def _signature(m: Melody) -> tuple:
    """Transposition- and tempo-invariant identity of a tune: its interval sequence."""
    ps = [n.midi for n in m.notes if not n.is_rest]
    return tuple(b - a for a, b in zip(ps, ps[1:]))


def select_melodies(n: int, seed: int = 0, max_per_piece: int = 1, progress: bool = False) -> list[Melody]:
    """`n` distinct tunes from chorales drawn in a seed-shuffled order (at most `max_per_piece` each;
    one per chorale by default, the most varied choice)."""
    if n < 1:
        raise ComoliveError(f"number of melodies must be at least 1, got {n}")
    pieces = chorale_paths()
    if not pieces:
        raise ComoliveError("music21's corpus holds no Bach chorales (is music21 fully installed?)")
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, 7]).permutation(len(pieces))
    seen: set[tuple] = set()
    out: list[Melody] = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="melodies", unit="mel")
    for k in order:
        for m in melodies_from_piece(pieces[k], seed, max_per_piece):
            sig = _signature(m)
            if sig in seen:
                continue
            seen.add(sig)
            out.append(m)
            if bar is not None:
                bar.update(1)
            if len(out) >= n:
                break
        if len(out) >= n:
            break
    if bar is not None:
        bar.close()
    if len(out) < n:
        raise ComoliveError(f"only {len(out)} melodies with lyrics could be extracted (asked for {n})")
    return out
