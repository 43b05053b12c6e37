"""How much speaker identity the content features carry: a linear probe on single frames.

A logistic regression learns to name the speaker of one content frame; it is trained on some utterances
of each speaker and scored on the others. Accuracy far above chance means the decoder could read the
singer's timbre from the content and copy it into a conversion. Run on a feature folder of real voices
(`main.py preprocess`), it scores the content of the originals and of the timbre-perturbed copies the
decoder trains on:

    python -m evaluation.speaker_probe data/features_real [--speakers 20] [--model M] [--json probe.json]

With --model, the frames are first snapped to that voice model's content units (what its decoder reads).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MIXED_LABELS = ("m4-unknown", "libritts-unnamed")  # labels that cover several unnamed speakers


def _frames(z, key: str, rng: np.random.Generator, n: int) -> np.ndarray:
    x = z[key].astype(np.float32)
    return x[rng.choice(len(x), size=min(n, len(x)), replace=False)]


def speaker_probe(feats: str | Path, speakers: int = 20, frames_per_utt: int = 100, seed: int = 0,
                  view=None) -> dict:
    """Probe accuracy for `content` and `content_pert` on the `speakers` best-covered real speakers;
    view: frames [N, C] -> what the probe sees (default: the frames themselves)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    root = Path(feats)
    index = json.loads((root / "index.json").read_text())
    by_spk: dict[str, list[str]] = {}
    for u in index["utterances"]:
        if u.get("real") and u["split"] == "train" and u["voice"] not in MIXED_LABELS:
            by_spk.setdefault(u["voice"], []).append(u["path"])
    chosen = sorted((s for s in by_spk if len(by_spk[s]) >= 4), key=lambda s: (-len(by_spk[s]), s))[:speakers]
    if len(chosen) < 2:
        raise ValueError(f"{root}: fewer than two real speakers with 4 or more utterances")
    report = {"speakers": len(chosen), "chance": 1.0 / len(chosen)}
    for key in ("content", "content_pert"):
        rng = np.random.default_rng(seed)
        xs = {"train": [], "test": []}
        ys = {"train": [], "test": []}
        for label, spk in enumerate(chosen):
            paths = sorted(by_spk[spk])
            n_test = max(1, len(paths) // 4)
            for i, p in enumerate(paths):
                with np.load(root / p) as z:
                    if key not in z.files:
                        continue
                    x = _frames(z, key, rng, frames_per_utt)
                if view is not None:
                    x = view(x)
                part = "test" if i < n_test else "train"
                xs[part].append(x)
                ys[part].append(np.full(len(x), label))
        if not xs["train"] or not xs["test"]:
            continue
        xtr, xte = np.concatenate(xs["train"]), np.concatenate(xs["test"])
        scaler = StandardScaler().fit(xtr)
        clf = LogisticRegression(max_iter=300, C=1.0).fit(scaler.transform(xtr), np.concatenate(ys["train"]))
        report[key] = float(np.mean(clf.predict(scaler.transform(xte)) == np.concatenate(ys["test"])))
    return report


def _units_view(model: str):
    import torch

    from models.voice_model import VoiceModel

    vm = VoiceModel.load(model)
    enc = (vm.student if vm.student is not None else vm.teacher).net.cond_encoder
    if enc.units is None:
        raise SystemExit(f"{model}: this model reads content as is (no content units)")

    def view(x):
        with torch.no_grad():
            return enc.snap(torch.from_numpy(x).to(enc.units.dtype)).float().numpy()
    return view


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("feats", help="feature folder of real recordings (`main.py preprocess`)")
    ap.add_argument("--speakers", type=int, default=20)
    ap.add_argument("--model", default=None, help="voice model whose content units the frames snap to")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    r = speaker_probe(a.feats, a.speakers, view=None if a.model is None else _units_view(a.model))
    print(f"speaker probe on {r['speakers']} real speakers (chance {r['chance']:.1%}), single content frames, "
          f"held-out utterances: original {r.get('content', float('nan')):.1%}, "
          f"perturbed copy {r.get('content_pert', float('nan')):.1%}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
