#!/usr/bin/env bash
# The decoders side by side (docs/results.md, "Teacher, consistency and progressive students"): the EDM teacher
# at 50 Heun steps, the consistency student at 1/2/4 steps, the progressive students at 1/2 steps, on the
# synthetic held-out split (MCD) and on the held-out real voices (offline, singing and speech references),
# with the hn vocoder; decoder cost from `bench model`.
#   usage: bash scripts/compare_decoders.sh REAL_DIR [PROGRESSIVE_RUN]   (default runs/progressive)
# PROGRESSIVE_RUN: `distill --method progressive` output (scripts/train_default.sh's teacher, configs/default_real.toml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REAL="${1:?usage: bash scripts/compare_decoders.sh REAL_DIR [PROGRESSIVE_RUN]}"
PROG="${2:-runs/progressive}"
PY=.venv/bin/python
OUT=data/compare; mkdir -p "$OUT"
PAIRS="${PAIRS:-3}"
[ -f "$OUT/bench_model.json" ] || $PY main.py bench model --json "$OUT/bench_model.json" > "$OUT/bench_model.log"
run() {  # NAME MODEL SYSTEM
  local model=(); [ -n "$2" ] && model=(--model "$2")
  $PY main.py eval data/corpus "${model[@]}" --systems "$3" --vocoder hn --pairs 4 --max-seconds 6 --skip cer,stream \
    --summary-only --json "$OUT/syn_$1.json" \
    > "$OUT/syn_$1.log" 2>&1
  $PY main.py eval --real "$REAL" "${model[@]}" --systems "$3" --vocoder hn --pairs "$PAIRS" --no-live \
    --json "$OUT/real_$1.json" > "$OUT/real_$1.log" 2>&1
}
run teacher50 "" teacher:50
for k in 1 2 4; do run consistency$k "" student:$k; done
for k in 1 2; do run progressive$k "$PROG/progressive_${k}step_model" student:$k; done
$PY -m evaluation.decoder_table "$OUT"
