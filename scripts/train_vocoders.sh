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
[ -f data/corpus/corpus.json ] || $PY main.py corpus data/corpus --seed 0
[ -f data/features/index.json ] || $PY main.py preprocess data/corpus data/features
[ -f data/features_real/index.json ] || $PY main.py preprocess "$REAL" data/features_real
# nsf: stage 1 from the V1 (configs/vocoder_nsf.toml, 700 steps), stage 2 with the decoder's mels
# (configs/vocoder_nsf_gta.toml, 500 steps), stage 3 the same mix at a lower rate (configs/vocoder_nsf_gta_more.toml,
# 2000 steps; the shipped one). hn, hn-causal: 800 steps from the shipped corpus-only ones,
# then 2400 more from that run (each run resumes when started again). The shipped hn is the 800-step run's
# (the 2400 more steps lowered its DNSMOS on held-out real singing); hn-causal is the longer run's.
stage() {  # KIND CONFIG RUN INIT [STEPS]   (nsf: real + corpus features; hn: real features + the corpus, exact f0)
  local resume="" init="" data=data/features_real,data/corpus
  [ "$1" = nsf ] && data=data/features_real,data/features
  if [ -f "runs/$3/last.json" ]; then resume="--resume"; elif [ -n "$4" ]; then init="--init $4"; fi
  $PY main.py train-vocoder "$data" "runs/$3" --vocoder "$1" --config "$2" $resume $init ${5:+--steps $5}
}
for v in "${WHICH[@]}"; do
  case "$v" in
    nsf)
      stage nsf configs/vocoder_nsf.toml vocoder_nsf "" 700
      [ -n "$(ls data/features_real/*/*/*.gta.npy 2>/dev/null | head -1)" ] || \
        $PY main.py gta-mels data/features_real,data/features
      stage nsf configs/vocoder_nsf_gta.toml vocoder_nsf_gta runs/vocoder_nsf/vocoder 500
      stage nsf configs/vocoder_nsf_gta_more.toml vocoder_nsf_gta2 runs/vocoder_nsf_gta/vocoder
      $PY main.py export-vocoder runs/vocoder_nsf_gta2 models/pretrained/vocoder_nsf --force ;;
    hn|hn-causal)
      name=vocoder_${v/-/_}; cfg=configs/vocoder_${v/-/_}_real.toml
      stage hn "$cfg" "$name" "models/pretrained/$name"
      stage hn "$cfg" "${name}2" "runs/$name/vocoder" 2400
      $PY main.py export-vocoder "runs/${name}2" "models/pretrained/$name" --force ;;
    *) echo "unknown vocoder $v (nsf, hn or hn-causal)" >&2; exit 2 ;;
  esac
done
