"""The decoder comparison table of scripts/compare_decoders.sh: one row per decoder, from its eval JSONs.

    python -m evaluation.decoder_table data/compare
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = (("teacher50", "EDM teacher, 50 Heun steps", "teacher 50 steps (heun)", 99),
        ("consistency1", "consistency student, 1 step", "student 1 step ", 1),
        ("consistency2", "consistency student, 2 steps", "student 2 steps", 2),
        ("consistency4", "consistency student, 4 steps", "student 4 steps", 4),
        ("progressive1", "progressive student, 1 step", "student 1 step ", 1),
        ("progressive2", "progressive student, 2 steps", "student 2 steps", 2))


def _real(doc: dict, reference: str) -> dict:
    rows = [r for r in doc["summary"] if r["path"] == "offline" and r["reference"] == reference]
    mean = lambda k: sum(r[k] for r in rows) / len(rows) if rows else float("nan")  # noqa: E731
    return {k: mean(k) for k in ("f0_cents_median", "target_gain", "sim_target", "dnsmos_ovrl")}


def table(folder: str | Path) -> list[dict]:
    folder = Path(folder)
    bench = json.loads((folder / "bench_model.json").read_text())
    cost = {r["stage"]: r for r in bench["model"]} if "model" in bench else {}
    out = []
    for name, label, stage, nfe in ROWS:
        syn_path, real_path = folder / f"syn_{name}.json", folder / f"real_{name}.json"
        if not syn_path.exists() or not real_path.exists():
            continue
        syn = json.loads(syn_path.read_text())["summary"]
        s = next(r for r in syn if not r["system"].startswith(("source", "vocoder")))
        sing, speech = _real(json.loads(real_path.read_text()), "singing"), _real(json.loads(real_path.read_text()), "speech")
        c = next((v for k, v in cost.items() if k.startswith("decoder " + stage.strip())), None)
        out.append({"decoder": label, "nfe": nfe, "mcd_db": s["mcd_db"], "f0_cents_syn": s["f0_cents_median"],
                    "sim_margin_syn": s["sim_margin"], "dnsmos_syn": s["dnsmos_ovr"],
                    "f0_cents_real": sing["f0_cents_median"], "target_gain_sing_ref": sing["target_gain"],
                    "target_gain_speech_ref": speech["target_gain"], "dnsmos_real": sing["dnsmos_ovrl"],
                    "decoder_cpu_s_per_audio_s": None if c is None else c["cpu_s_per_audio_s"]})
    return out


def main(argv: list[str] | None = None) -> None:
    folder = (argv or sys.argv[1:] or ["data/compare"])[0]
    rows = table(folder)
    cols = list(rows[0]) if rows else []
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    Path(folder, "table.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
