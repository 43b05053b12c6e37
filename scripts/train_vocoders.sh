#!/usr/bin/env bash
# Rebuild the f0-driven vocoders on real + synthetic singing (CPU, 2 cores; the NSF takes hours here).
#   usage: bash scripts/train_vocoders.sh REAL_DIR [nsf|hn|hn-causal ...]   (default: all three)
# REAL_DIR: real recordings (a folder with a MANIFEST.tsv, only its "train" rows are read, or one
# sub-folder per singer), preprocessed once into data/features_real (shared with scripts/train_default.sh).
# Each run resumes when started again (runs/vocoder_*); the result is exported to models/pretrained/.
# hn and hn-causal are fine-tuned from the shipped ones (first trained on the corpus alone, configs/vocoder_hn*.toml).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REAL="${1:?usage: bash scripts/train_vocoders.sh REAL_DIR [nsf|hn|hn-causal ...]}"
shift
WHICH=("$@"); [ ${#WHICH[@]} -gt 0 ] || WHICH=(nsf hn hn-causal)
PY=.venv/bin/python
DATA=data/features_real,data/corpus
[ -f data/corpus/corpus.json ] || $PY main.py corpus data/corpus --seed 0
[ -f data/features_real/index.json ] || $PY main.py preprocess "$REAL" data/features_real
for v in "${WHICH[@]}"; do
  case "$v" in
    nsf) kind=nsf; cfg=configs/vocoder_nsf.toml; out=vocoder_nsf ;;
    hn) kind=hn; cfg=configs/vocoder_hn_real.toml; out=vocoder_hn ;;
    hn-causal) kind=hn; cfg=configs/vocoder_hn_causal_real.toml; out=vocoder_hn_causal ;;
    *) echo "unknown vocoder $v (nsf, hn or hn-causal)" >&2; exit 2 ;;
  esac
  resume=""; [ -f "runs/$out/last.json" ] && resume="--resume"
  init=""; [ "$kind" = hn ] && [ -z "$resume" ] && init="--init models/pretrained/$out"  # fine-tune the shipped one
  $PY main.py train-vocoder "$DATA" "runs/$out" --vocoder "$kind" --config "$cfg" $resume $init ${STEPS:+--steps $STEPS}
  $PY main.py export-vocoder "runs/$out" "models/pretrained/$out" --force
done
