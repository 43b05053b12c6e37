"""A voice added from a folder (`voice add`) against the same singer zero-shot, on real singing.

    python -m evaluation.eval_folder_voice REAL_DIR [--singer gts-EN-Tenor-1] [--steps 300 1000]
        [--vocoder-steps 300] [--split heldout|train] [--json F]

The singer's sung clips of the split but the last go into a folder: `voice add` fine-tunes the default model
on them (and, as it does by default, fine-tunes the model's own hn vocoder on them too), once per `--steps`
value, and the same clips are the zero-shot reference (`--ref`, with the shared hn) for comparison. The last
clip is never used for either: similarity to the target is measured against it. Sources: the first sung clip
of every other singer of the split (the first `sources` of them, sorted), converted at key 0 and at the
register key (evaluation/eval_real.register_key), hn vocoder unless `--vocoder` names others.
target_gain = sim(output, left-out clip) - sim(source, left-out clip).

`--split train` chooses settings (step counts) on a singer of the train split, so that none is chosen on the
held-out singers the report is about; the default model has heard that singer, so its gains run smaller.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from evaluation.metrics import cosine
from evaluation.eval_real import _by_speaker, _median_f0, manifest_rows, register_key
from training.voice_defaults import DECODER_STEPS as STEPS, VOCODER_STEPS


def evaluate_folder_voice(real_dir: str | Path, singer: str, steps: list[int] | int = STEPS,
                          vocoder: list[str] | str = "hn",
                          sources: int = 6, progress: bool = True, split: str = "heldout",
                          vocoder_steps: int = VOCODER_STEPS, zero_shot: bool = True) -> dict:
    from engine.converter import Converter
    from evaluation.dnsmos import DNSMOS
    from engine.pitch import make_pitch_extractor
    from engine.reference import reference_from_audio
    from engine.speaker import SpeakerEncoder
    from training.voice_add import add_voice
    from models.audio_io import load_audio

    real_dir = Path(real_dir)
    step_list = [steps] if isinstance(steps, int) else list(steps)
    vocoders = [vocoder] if isinstance(vocoder, str) else list(vocoder)
    singing = _by_speaker(manifest_rows(real_dir, split), "singing")
    if singer not in singing:
        raise ValueError(f"{singer}: no sung clips in the {split} split")
    clips = [c["path"] for c in singing[singer]]
    if len(clips) < 2:
        raise ValueError(f"{singer}: needs two sung clips or more in the {split} split")
    train, measure = clips[:-1], clips[-1]
    spk, mos, harvest = SpeakerEncoder(), DNSMOS(), make_pitch_extractor("harvest")
    target = spk.embed(*load_audio(real_dir / measure))
    tgt_f0 = _median_f0(np.concatenate([harvest.extract_from(*load_audio(real_dir / c)) for c in train]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        folder.mkdir()
        for c in train:
            (folder / Path(c).name).symlink_to((real_dir / c).resolve())
        systems, reports = {}, {}
        reference = reference_from_audio(spk, [(*load_audio(real_dir / c), c) for c in train])
        for n in step_list:
            stem, report = add_voice("folder_voice", folder, out=Path(tmp) / f"voice{n}", steps=n,
                                     progress=progress, vocoder_steps=vocoder_steps)
            reports[n] = {k: v for k, v in report.items()
                          if k in ("seconds_per_step", "steps", "files_used", "vocoder_steps", "vocoder_seconds")}
            for voc in vocoders:
                name = " ".join(["folder voice"] + [f"{n} steps"] * (len(step_list) > 1) + [voc] * (len(vocoders) > 1))
                systems[name] = (Converter(model=stem, vocoder=voc), {"voice": "folder_voice"})
        for voc in vocoders if zero_shot else []:
            systems[" ".join(["zero-shot"] + [voc] * (len(vocoders) > 1))] = (Converter(vocoder=voc),
                                                                            {"reference": reference})
        rows = []
        for other in sorted(s for s in singing if s != singer)[:sources]:
            src_rel = singing[other][0]["path"]
            wav, sr = load_audio(real_dir / src_rel)
            src_emb = spk.embed(wav, sr)
            keys = {"0": 0.0, "register": register_key(tgt_f0, _median_f0(harvest.extract_from(wav, sr)))}
            for name, (conv, kw) in systems.items():
                for mode, key in keys.items():
                    out = conv.convert(wav, sr, key=key, **kw).audio
                    e = spk.embed(out, sr)
                    rows.append({"system": name, "source": src_rel, "key": mode, "semitones": key,
                                 "sim_target": cosine(e, target), "sim_source": cosine(e, src_emb),
                                 "target_gain": cosine(e, target) - cosine(src_emb, target),
                                 "dnsmos_ovrl": mos.score(out, sr)["dnsmos_ovr"]})
    summary = []
    for name in systems:
        for mode in ("0", "register"):
            rs = [r for r in rows if r["system"] == name and r["key"] == mode]
            summary.append({"system": name, "key": mode, "n": len(rs),
                            **{k: float(np.mean([r[k] for r in rs]))
                               for k in ("sim_target", "sim_source", "target_gain", "dnsmos_ovrl")}})
    return {"singer": singer, "split": split, "train_clips": train, "measure_clip": measure, "steps": step_list,
            "vocoders": vocoders, "voice_add": reports, "summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("real_dir")
    ap.add_argument("--singer", default="gts-EN-Tenor-1")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"),
                    help="train: choose settings on a train-split singer")
    ap.add_argument("--steps", type=int, nargs="+", default=[STEPS], help="decoder steps; several compare side by side")
    ap.add_argument("--vocoder-steps", type=int, default=VOCODER_STEPS)
    ap.add_argument("--vocoder", nargs="+", default=["hn"], help="vocoders; several compare side by side (hn: the "
                    "folder voice's own hn)")
    ap.add_argument("--no-zero-shot", action="store_true", help="leave out the zero-shot row")
    ap.add_argument("--sources", type=int, default=6, help="source singers (the first N others, sorted)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    doc = evaluate_folder_voice(a.real_dir, a.singer, a.steps, a.vocoder, sources=a.sources, split=a.split,
                                vocoder_steps=a.vocoder_steps, zero_shot=not a.no_zero_shot)
    print(f"{a.singer} ({a.split}): voice added from {len(doc['train_clips'])} clips, measured on "
          f"{doc['measure_clip']}")
    print(f"{'system':<28} {'key':<9} {'n':>2} {'sim_target':>10} {'sim_source':>10} {'tgt_gain':>9} {'dnsmos':>7}")
    for r in doc["summary"]:
        print(f"{r['system']:<28} {r['key']:<9} {r['n']:>2} {r['sim_target']:>10.3f} {r['sim_source']:>10.3f} "
              f"{r['target_gain']:>+9.3f} {r['dnsmos_ovrl']:>7.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
