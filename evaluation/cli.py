"""The `eval` command of main.py: argument parsing here, the work in evaluation/."""
from __future__ import annotations

import argparse
from pathlib import Path

from engine import arg_types
from models.errors import ComoliveError


def cmd_eval(a: argparse.Namespace) -> None:
    import json

    from evaluation.eval_schema import validate
    from evaluation.evaluate import evaluate_folder, evaluate_parallel, parse_systems, print_report

    systems = parse_systems(a.systems or ("student:1" if a.real else "teacher:50,student:1,student:2"))
    skip = tuple(s for s in (a.skip or "").split(",") if s)
    common = dict(model=a.model, systems=systems, device=a.device, skip=skip, plots_dir=a.plots, vocoder=a.vocoder)
    if a.real:
        if a.corpus or a.source_dir:
            raise ComoliveError("give --real DIR alone (not with a CORPUS or --source-dir)")
        from evaluation.eval_real import evaluate_real, print_real_report

        if len(systems) != 1:
            raise ComoliveError("--real evaluates one system at a time: give one SAMPLER:STEPS with --systems")
        doc = evaluate_real(a.real, model=a.model, vocoder=a.vocoder, device=a.device, pairs=a.pairs,
                            live=not a.no_live, system=systems[0], retrieval=a.retrieval, adapt=a.adapt_steps)
        print_real_report(doc)
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            print(f"wrote {a.json}")
        return
    if a.source_dir:
        if a.corpus:
            raise ComoliveError("give either a CORPUS or --source-dir, not both")
        if not a.voice:
            raise ComoliveError("--source-dir needs --voice (the target voice; see `voices`)")
        doc = evaluate_folder(a.source_dir, a.voice, ref_dir=a.ref_dir, key=a.key, **common)
        print(f"{doc['inputs']['files']} file(s) of {a.source_dir} -> voice '{a.voice}', key {a.key:+g}")
    elif a.corpus and a.zero_shot:
        from evaluation.eval_zero_shot import SUMMARY_COLUMNS, evaluate_zero_shot
        from evaluation.tables import print_table

        doc = evaluate_zero_shot(a.corpus, model=a.model, vocoder=a.vocoder, device=a.device)
        print_table(doc["summary"], SUMMARY_COLUMNS, "zero-shot: trained voices vs voices never trained on")
        if a.json:
            Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
            print(f"wrote {a.json}")
        return
    elif a.corpus:
        if a.voice or a.ref_dir:
            raise ComoliveError("--voice and --ref-dir go with --source-dir (the corpus split picks its own voices)")
        doc = evaluate_parallel(a.corpus, max_pairs=a.pairs, max_seconds=a.max_seconds, **common)
        print(f"held-out parallel split of {a.corpus}: {doc['inputs']['pairs']} conversions (voice A -> voice B)")
    else:
        raise ComoliveError("eval needs a CORPUS folder, --source-dir DIR --voice V, or --real DIR")
    print_report(doc, per_file=not a.summary_only)
    if a.plots:
        print(f"plots: {', '.join(doc.get('plots', []))}")
    if a.json:
        validate(doc)
        Path(a.json).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {a.json}")


def add_command(sub) -> None:
    """Register `eval` on main.py's sub-parsers."""
    ev = sub.add_parser("eval", help="objective quality: the corpus's held-out parallel split, or a folder of "
                                     "your recordings converted to a voice")
    ev.add_argument("corpus", nargs="?", default=None, help="corpus folder built by `corpus` (parallel split)")
    ev.add_argument("--source-dir", default=None, help="folder of source recordings to convert and measure")
    ev.add_argument("--voice", default=None, help="target voice for --source-dir")
    ev.add_argument("--ref-dir", default=None, help="reference clips of the target voice (speaker similarity); "
                                                   "default: the model's own d-vector of the voice")
    ev.add_argument("--key", type=arg_types.key, default=0.0, help="key shift for --source-dir (semitones)")
    ev.add_argument("--vocoder", default="nsf", help="vocoder of every system: nsf (default), hn, hn-causal or hifigan")
    ev.add_argument("--real", default=None, metavar="DIR",
                    help="held-out real voices of a MANIFEST.tsv folder: fixed sung sources converted zero-shot to "
                         "other held-out singers (singing and speech references, key 0 and register key)")
    ev.add_argument("--no-live", action="store_true", help="with --real: leave out the live-session rows")
    ev.add_argument("--zero-shot", action="store_true",
                    help="with CORPUS: voices from reference clips, trained vs never-trained voices")
    ev.add_argument("--retrieval", type=float, default=0.0,
                    help="with --real: share of each content frame replaced by its nearest frames in the reference "
                         "clip (0..1; measured: it does not help the default model, see docs/results.md)")
    ev.add_argument("--adapt", dest="adapt_steps", type=arg_types.whole("adaptation steps", 0), default=0,
                    help="with --real: convert with the decoder adapted to each reference clip for N steps "
                         "(convert --adapt; 0: zero-shot)")
    ev.add_argument("--systems", default=None, help="SAMPLER:STEPS list (default teacher:50,student:1,student:2; "
                                                  "with --real one system, default student:1)")
    ev.add_argument("--pairs", type=int, default=12, help="number of A->B conversions (parallel split, --real)")
    ev.add_argument("--max-seconds", type=float, default=None, help="crop each pair to this length (parallel split)")
    ev.add_argument("--skip", default=None, help="metrics to leave out: mcd,dnsmos,cer,stream")
    ev.add_argument("--plots", default=None, help="folder for PNG plots (pitch, spectrograms, metric bars)")
    ev.add_argument("--summary-only", action="store_true", help="print only the per-system table")
    ev.add_argument("--json", default=None, help="write the report as JSON (schema: evaluation/eval_schema.py)")
    arg_types.model_args(ev)
    ev.set_defaults(func=cmd_eval)
