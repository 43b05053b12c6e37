"""Objective quality of conversions: per file and per system, as a table, JSON and plots.

Two sources of material:
- the held-out parallel split of the synthetic corpus (`evaluate_parallel`): voice A's rendition of a
  held-out melody is converted to voice B (key shift = B's register minus A's); B's own rendition is
  the sample-aligned ground truth with exact f0. Two reference rows come with it: the unchanged
  source and the vocoder's copy-synthesis of B (the ceiling the decoder can reach).
- any folder of the user's recordings converted to one target voice (`evaluate_folder`), with
  optional reference clips of the target; no ground truth, so no MCD.

Systems are (sampler, steps) pairs of one model. Metrics: see evaluation/eval_schema.py METRICS.
Speaker references are embedded once per voice (or once per source file), never per system.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from evaluation import eval_schema
from engine.converter import Converter
from engine.frames import align_frames
from evaluation.metrics import cents_error, character_error_rate, cosine, expected_f0, mel_cepstral_distortion
from evaluation.tables import print_table
from models.audio_io import load_audio
from models.errors import ComoliveError
from models.mel import MelAnalyzer

DEFAULT_SYSTEMS = (("teacher", 50), ("student", 1), ("student", 2))
OPTIONAL_METRICS = ("mcd", "dnsmos", "cer", "stream")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
SOURCE_ROW = "source (unchanged)"
COPY_ROW = "vocoder copy-synthesis of target"
PLOT_FILES = 2  # pitch/spectrogram figures for the first files only: a report needs a few, not all

TABLE_COLS = ("file", "system", "n", "mcd_db", "f0_cents_median", "vuv_agreement", "sim_target", "sim_source",
              "sim_margin", "dnsmos_ovr", "dnsmos_p808", "cer", "stream_diff_db", "stream_lag_ms", "stream_block_diff_db",
              "rtf")
HEADERS = {"f0_cents_median": "f0_cents", "vuv_agreement": "vuv_agree", "dnsmos_ovr": "dnsmos",
           "dnsmos_p808": "p808", "stream_diff_db": "stream_dB", "stream_lag_ms": "lag_ms", "stream_block_diff_db": "blocks_dB"}


@dataclass
class Rendition:
    wav_path: Path
    voice: str
    melody: str
    transpose: float

    @property
    def f0_path(self) -> Path:
        return self.wav_path.with_suffix(".f0.npy")


@dataclass
class EvalItem:
    """One source recording to convert, and what it is compared with."""

    name: str
    wav: np.ndarray                  # at the model's sample rate
    voice: str                       # target voice
    key: float
    source_f0: np.ndarray | None = None   # exact source f0 on the model grid (corpus); else extracted
    truth: np.ndarray | None = None       # ground-truth rendition by the target voice, sample-aligned
    source_voice: str | None = None       # known source singer (corpus); else the file itself is the reference


def system_name(sampler: str, steps: int) -> str:
    return f"{sampler} {steps}-step"


def parse_systems(text: str) -> list[tuple[str, int]]:
    systems = []
    for item in text.split(","):
        sampler, _, steps = item.strip().partition(":")
        if sampler not in ("student", "teacher") or not steps.isdigit() or int(steps) < 1:
            raise ComoliveError(f"--systems: '{item}' is not SAMPLER:STEPS (e.g. student:1,teacher:50)")
        systems.append((sampler, int(steps)))
    return systems


def ground_truth_on_model_grid(f0: np.ndarray, n: int) -> np.ndarray:
    """The corpus stores f0 at frame starts (sample i*hop); our frames are centred at i*hop + hop/2."""
    a, b = f0[:n], f0[1 : n + 1] if len(f0) > n else np.append(f0[1:n], 0.0)
    mid = np.where((a > 0) & (b > 0), np.sqrt(a * np.maximum(b, 1e-9)), 0.0)
    return np.pad(mid, (0, max(0, n - len(mid))))[:n]


def heldout_pairs(corpus: Path, voices: list[str], max_pairs: int) -> list[tuple[Rendition, Rendition]]:
    """Deterministic (source, target) pairs: every held-out melody, target voices rotated over melodies."""
    by_melody = heldout_renditions(corpus)
    pairs = []
    k = 0
    while len(pairs) < max_pairs and k < max_pairs * 4:
        for melody in sorted(by_melody):
            rs = by_melody[melody]
            avail = [v for v in voices if v in rs]
            if len(avail) < 2 or len(pairs) >= max_pairs:
                continue
            tgt = avail[k % len(avail)]
            src = avail[(k * 7 + 3) % len(avail)]
            if src == tgt:
                src = avail[(avail.index(tgt) + 1) % len(avail)]
            pairs.append((rs[src], rs[tgt]))
            k += 1
        k += 1
    return pairs


def heldout_renditions(corpus: Path) -> dict[str, dict[str, Rendition]]:
    """{melody: {voice: Rendition}} of the corpus's held-out split."""
    by_melody: dict[str, dict[str, Rendition]] = {}
    for wav in sorted((corpus / "heldout").glob("*/*.wav")):
        meta = json.loads(wav.with_suffix(".json").read_text())
        r = Rendition(wav, wav.parent.name, str(meta["melody_id"]), float(meta.get("transposition", 0.0)))
        by_melody.setdefault(r.melody, {})[r.voice] = r
    if not by_melody:
        raise ComoliveError(f"{corpus}: no held-out renditions (expected {corpus}/heldout/<voice>/*.wav)")
    return by_melody


class Evaluator:
    """Holds the converter and every metric's model; `run(items)` measures each item under each system."""

    def __init__(self, model: str | Path | None = None, device: str | None = None, systems=DEFAULT_SYSTEMS,
                 skip: tuple[str, ...] = (), plots_dir: str | Path | None = None, progress: bool = True,
                 voices: tuple[str, ...] = (), vocoder: str = "nsf"):
        unknown = set(skip) - set(OPTIONAL_METRICS)
        if unknown:
            raise ComoliveError(f"--skip: unknown metric(s) {', '.join(sorted(unknown))} "
                                f"(choose from {', '.join(OPTIONAL_METRICS)})")
        torch.set_num_threads(1)
        self.model_name = str(model or "embedded default")
        self.conv = Converter(model=model, device=device, vocoder=vocoder)
        for v in voices:  # an unknown voice is a clear error before the metric models load
            self.conv.model.speaker(v)
        self.sr = self.conv.cfg.sample_rate
        self.frame_rate = self.conv.cfg.frame_rate
        self.progress = progress
        self.notes: list[str] = []
        self.systems = []
        for sampler, steps in systems:
            if self.conv.model.decoder_or_none(sampler) is None:
                self.notes.append(f"{system_name(sampler, steps)} skipped: the model {self.model_name} has no "
                                  f"{sampler} decoder (it ships the {self.decoders()[0]} only)")
            else:
                self.systems.append((sampler, steps))
        if not self.systems:
            raise ComoliveError(f"none of the requested systems can run on {self.model_name} "
                                f"(its decoders: {', '.join(self.decoders())})")
        from engine.speaker import SpeakerEncoder

        self.spk = SpeakerEncoder(device=self.conv.device)
        self.skip = set(skip)
        self.dnsmos = self.transcriber = self.streamer = None
        if "dnsmos" not in self.skip:
            from evaluation.dnsmos import DNSMOS

            self.dnsmos = DNSMOS()
        if "cer" not in self.skip:
            from evaluation.transcribe import Transcriber

            self.transcriber = Transcriber(device=str(self.conv.device))
        if "stream" not in self.skip:
            from evaluation import eval_stream

            self.streamer, why = eval_stream.make(model, str(self.conv.device), self.conv.vocoder.name)
            if self.streamer is None:
                self.notes.append(f"streamed vs offline not measured: {why}")
        self.plots_dir = Path(plots_dir) if plots_dir else None
        if self.plots_dir:
            self.plots_dir.mkdir(parents=True, exist_ok=True)
        self.plots: list[str] = []
        self.transcripts: dict[str, dict[str, str]] = {}
        self._refs: dict[str, np.ndarray] = {}

    def decoders(self) -> list[str]:
        return [n for n in ("student", "teacher") if self.conv.model.decoder_or_none(n) is not None]

    def note(self, text: str) -> None:
        self.notes.append(text)
        tqdm.write(f"note: {text}", file=sys.stderr)

    # ------------------------------------------------------------ references
    def reference(self, key: str, clips: list[np.ndarray] | None = None, vector: np.ndarray | None = None) -> np.ndarray:
        """Speaker reference, computed once per key (a voice name or a file): clips' mean d-vector, else vector."""
        if key not in self._refs:
            if clips:
                self._refs[key] = self.spk.embed_many([(c, self.sr) for c in clips])
            elif vector is not None:
                from engine.speaker import unit_vector

                self._refs[key] = unit_vector(np.asarray(vector, np.float32))
            else:
                raise ComoliveError(f"no speaker reference for {key}")
        return self._refs[key]

    # ------------------------------------------------------------ measuring
    def f0_on_grid(self, wav: np.ndarray, n: int) -> np.ndarray:
        pitch = self.conv.features.pitch
        return align_frames(pitch.extract_from(wav, self.sr), pitch.frame_rate, self.frame_rate, n, mode="nearest")

    def measure(self, system: str, out: np.ndarray, item: EvalItem, expected: np.ndarray, target_ref: np.ndarray,
                source_ref: np.ndarray, source_text: str | None) -> tuple[dict, np.ndarray]:
        f0_out = self.f0_on_grid(out, len(expected))
        row = {"file": item.name, "system": system, "target": item.voice, "key": float(item.key),
               **cents_error(f0_out, expected)}
        if item.truth is not None and "mcd" not in self.skip:
            row["mcd_db"] = mel_cepstral_distortion(out, item.truth, self.sr)
        try:
            e = self.spk.embed(out, self.sr)
            row["sim_target"], row["sim_source"] = cosine(e, target_ref), cosine(e, source_ref)
            row["sim_margin"] = row["sim_target"] - row["sim_source"]
        except ComoliveError as err:  # e.g. an output with too little voice left after trimming
            self.note(f"{item.name} / {system}: no speaker similarity ({err})")
        if self.dnsmos is not None:
            row.update(self.dnsmos.score(out, self.sr))
        if source_text is not None and system != SOURCE_ROW:
            text = self.transcriber.transcribe(out, self.sr)
            self.transcripts.setdefault(item.name, {})[system] = text
            row["cer"] = character_error_rate(source_text, text)
        return row, f0_out

    def run_item(self, item: EvalItem, target_ref: np.ndarray, bar: tqdm) -> list[dict]:
        n = len(item.wav) // self.conv.cfg.hop_length
        src_f0 = item.source_f0[:n] if item.source_f0 is not None else self.f0_on_grid(item.wav, n)
        expected = expected_f0(np.pad(src_f0, (0, max(0, n - len(src_f0)))), item.key)
        if item.source_voice is not None:
            source_ref = self._refs[item.source_voice]
        else:
            source_ref = self.reference("file:" + item.name, clips=[item.wav])
        source_text = None
        if self.transcriber is not None:
            source_text = self.transcriber.transcribe(item.wav, self.sr)
            self.transcripts.setdefault(item.name, {})[SOURCE_ROW] = source_text
        rows, f0s, wavs = [], {}, {"source": item.wav}
        bar.set_postfix_str(f"{item.name}: source")
        row, _ = self.measure(SOURCE_ROW, item.wav, item, expected, target_ref, source_ref, source_text)
        rows.append(row)
        bar.update()
        if item.truth is not None:
            bar.set_postfix_str(f"{item.name}: copy-synthesis")
            with torch.no_grad():
                mel = MelAnalyzer()(torch.from_numpy(item.truth)[None]).to(self.conv.device)
                # an f0-driven vocoder gets the truth's own f0
                f0 = torch.from_numpy(self.conv.features.f0(item.truth, self.sr, mel.shape[-1]))
                copy = self.conv.vocoder(mel, f0[None])[0].float().cpu().numpy().reshape(-1)
            copy = np.pad(copy, (0, max(0, len(item.truth) - len(copy))))[: len(item.truth)]
            row, _ = self.measure(COPY_ROW, copy, item, expected, target_ref, source_ref, source_text)
            rows.append(row)
            bar.update()
        for sampler, steps in self.systems:
            name = system_name(sampler, steps)
            bar.set_postfix_str(f"{item.name}: {name}")
            t0 = time.perf_counter()
            res = self.conv.convert(item.wav, self.sr, voice=item.voice, key=item.key, steps=steps, sampler=sampler)
            seconds = time.perf_counter() - t0
            row, f0s[name] = self.measure(name, res.audio, item, expected, target_ref, source_ref, source_text)
            row["compute_s"] = seconds
            row["rtf"] = seconds / (len(item.wav) / self.sr)
            if self.streamer is not None and sampler == "student":
                bar.set_postfix_str(f"{item.name}: {name} streamed")
                row.update(self.streamer.differences(item.wav, self.sr, item.voice, item.key, steps, res.audio))
            rows.append(row)
            wavs[name] = res.audio
            bar.update()
        if item.truth is not None:
            wavs["ground truth"] = item.truth
        if self.plots_dir is not None and self._plotted < PLOT_FILES:
            self.plot_item(item, src_f0, expected, f0s, wavs)
        return rows

    _plotted = 0

    def plot_item(self, item: EvalItem, src_f0, expected, f0s, wavs) -> None:
        from evaluation import plots

        self._plotted += 1
        stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in item.name)
        title = f"{item.name} -> {item.voice}, key {item.key:+g}"
        self.plots.append(str(plots.pitch_contours(self.plots_dir / f"pitch_{stem}.png", self.frame_rate, src_f0,
                                                   expected, f0s, title)))
        self.plots.append(str(plots.spectrograms(self.plots_dir / f"spec_{stem}.png", self.sr, wavs, title)))

    def run(self, items: list[EvalItem], target_refs: dict[str, np.ndarray]) -> list[dict]:
        per_item = len(self.systems) + 1 + any(i.truth is not None for i in items)
        bar = tqdm(total=len(items) * per_item, desc="eval", unit="conv", disable=not self.progress,
                   dynamic_ncols=True, file=sys.stderr)
        rows = []
        for item in items:
            rows += self.run_item(item, target_refs[item.voice], bar)
        bar.close()
        return rows

    def report(self, mode: str, inputs: dict, systems_requested, rows: list[dict]) -> dict:
        summary = summarise(rows)
        if self.plots_dir is not None:
            from evaluation import plots

            metrics = [m for m in ("mcd_db", "f0_cents_median", "vuv_agreement", "sim_target", "sim_margin",
                                   "dnsmos_ovr", "cer", "stream_diff_db") if any(m in r for r in summary)]
            if metrics:
                self.plots.append(str(plots.metric_bars(self.plots_dir / "metrics.png", summary, metrics,
                                                        f"{mode}: mean per system")))
        doc = {"schema": eval_schema.SCHEMA, "version": eval_schema.VERSION, "mode": mode, "model": self.model_name,
               "decoders": self.decoders(), "device": str(self.conv.device),
               "vocoder": self.conv.vocoder.name, "inputs": inputs,
               "systems": [f"{s}:{k}" for s, k in systems_requested], "notes": self.notes,
               "metrics": {k: v for k, v in eval_schema.METRICS.items()}, "rows": rows, "summary": summary}
        if self.transcripts:
            doc["transcripts"] = self.transcripts
        if self.plots:
            doc["plots"] = self.plots
        return eval_schema.clean_numbers(doc)


# ------------------------------------------------------------------------------- the two modes
def evaluate_parallel(corpus: str | Path, model: str | Path | None = None, systems=DEFAULT_SYSTEMS,
                      max_pairs: int = 12, device: str | None = None, progress: bool = True,
                      skip: tuple[str, ...] = (), plots_dir: str | Path | None = None,
                      max_seconds: float | None = None, vocoder: str = "nsf") -> dict:
    """max_seconds crops every pair (from its start) for quicker runs."""
    corpus = Path(corpus)
    ev = Evaluator(model, device, systems, skip, plots_dir, progress, vocoder=vocoder)
    by_melody = heldout_renditions(corpus)
    pairs = heldout_pairs(corpus, sorted(ev.conv.model.voices), max_pairs)
    if not pairs:
        raise ComoliveError("no held-out melody is sung by two voices the model knows")
    # one reference per voice: the mean d-vector of (up to 4 of) its held-out renditions
    for voice in sorted({r.voice for pair in pairs for r in pair}):
        clips = [load_audio(rs[voice].wav_path, ev.sr)[0] for _, rs in sorted(by_melody.items()) if voice in rs][:4]
        ev.reference(voice, clips=clips)
    items = []
    for src, tgt in pairs:
        src_wav, _ = load_audio(src.wav_path, ev.sr)
        ref, _ = load_audio(tgt.wav_path, ev.sr)
        n = min(len(src_wav), len(ref), int(max_seconds * ev.sr) if max_seconds else len(ref))
        f0 = ground_truth_on_model_grid(np.load(src.f0_path), n // ev.conv.cfg.hop_length)
        items.append(EvalItem(f"{src.voice}/{src.melody}", src_wav[:n], tgt.voice, tgt.transpose - src.transpose,
                              source_f0=f0, truth=ref[:n], source_voice=src.voice))
    rows = ev.run(items, {v: ev._refs[v] for v in {i.voice for i in items}})
    inputs = {"corpus": str(corpus), "pairs": len(items), "max_seconds": max_seconds,
              "target_reference": "mean d-vector of up to 4 held-out renditions by the target voice",
              "source_reference": "the same for the source voice",
              "expected_f0": "exact corpus f0 of the source rendition x key shift"}
    return ev.report("parallel", inputs, systems, rows)


def audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ComoliveError(f"{folder}: not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTS)


def evaluate_folder(source_dir: str | Path, voice: str, ref_dir: str | Path | None = None, key: float = 0.0,
                    model: str | Path | None = None, systems=DEFAULT_SYSTEMS, device: str | None = None,
                    progress: bool = True, skip: tuple[str, ...] = (), plots_dir: str | Path | None = None,
                    vocoder: str = "nsf") -> dict:
    source_dir = Path(source_dir)
    files = audio_files(source_dir)
    if not files:
        raise ComoliveError(f"{source_dir}: no audio files ({', '.join(AUDIO_EXTS)})")
    ev = Evaluator(model, device, systems, skip, plots_dir, progress, voices=(voice,), vocoder=vocoder)
    items = []
    for f in files:
        try:
            wav, _ = load_audio(f, ev.sr)
            if len(wav) < 0.25 * ev.sr or float(np.max(np.abs(wav))) < 1e-4:
                raise ComoliveError("too short or silent to convert")
        except ComoliveError as e:
            ev.note(f"skipped {f.name}: {e}")
            continue
        items.append(EvalItem(f.name, wav, voice, float(key)))
    if not items:
        raise ComoliveError(f"{source_dir}: none of the {len(files)} audio files could be used")
    if ref_dir is not None:
        refs = []
        for f in audio_files(Path(ref_dir)):
            try:
                refs.append(load_audio(f, ev.sr)[0])
            except ComoliveError as e:
                ev.note(f"reference {f.name} not used: {e}")
        if not refs:
            raise ComoliveError(f"{ref_dir}: no usable reference clips of voice '{voice}'")
        ev.reference(voice, clips=refs)
        how = f"mean d-vector of {len(refs)} clip(s) in {ref_dir}"
    else:
        ev.reference(voice, vector=ev.conv.model.speaker(voice))
        how = "the model's own d-vector of the voice (mean over its training clips)"
    rows = ev.run(items, {voice: ev._refs[voice]})
    inputs = {"source_dir": str(source_dir), "files": len(items), "voice": voice, "key": float(key),
              "ref_dir": str(ref_dir) if ref_dir else None, "target_reference": how,
              "source_reference": "d-vector of each source file",
              "expected_f0": f"source f0 ({ev.conv.features.pitch.__class__.__name__}) x key shift"}
    return ev.report("folder", inputs, systems, rows)


# ------------------------------------------------------------------------------- summary and output
SUMMARY_METRICS = tuple(eval_schema.METRICS)


def summarise(rows: list[dict]) -> list[dict]:
    """Per system: mean of each metric over files (median for the median-cents figure)."""
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        rs = [r for r in rows if r["system"] == system]
        s = {"system": system, "n": len(rs)}
        for k in SUMMARY_METRICS:
            vals = [r[k] for r in rs if r.get(k) is not None and np.isfinite(r[k])]
            if vals:
                s[k] = float(np.median(vals)) if k == "f0_cents_median" else float(np.mean(vals))
        out.append(s)
    return out


def print_report(doc: dict, per_file: bool = True) -> None:
    if per_file:
        print_table(doc["rows"], TABLE_COLS, "per file", headers=HEADERS)
    print_table(doc["summary"], TABLE_COLS, "per system (mean over files; f0_cents: median)", headers=HEADERS)
    for n in doc["notes"]:
        print(f"note: {n}")
