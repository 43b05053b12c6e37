#!/usr/bin/env bash
# Rebuild the embedded default voice model (CPU, 2 cores).
#   usage: bash scripts/train_default.sh REAL_DIR
# REAL_DIR: real recordings, a folder with a MANIFEST.tsv (only its "train" rows are read) or one
# sub-folder per singer. Stages (each resumes or reuses its output when run again; logs: runs/default/):
#   1. synthetic corpus -> features -> virtual voices -> EDM teacher (configs/default.toml, ~1.5 h)
#   2. real recordings -> features (content also from timbre-perturbed copies) -> the teacher retrained on
#      corpus + real (configs/default_real.toml) -> consistency student -> models/pretrained/default
# INIT=models/pretrained/default skips stage 1's training and starts stage 2 from the shipped decoder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REAL="${1:?usage: bash scripts/train_default.sh REAL_DIR}"
PY=.venv/bin/python
mkdir -p runs/default
[ -f data/corpus/corpus.json ] || $PY main.py corpus data/corpus --seed 0
[ -f data/features/index.json ] || $PY main.py preprocess data/corpus data/features
[ -f data/features_real/index.json ] || $PY main.py preprocess "$REAL" data/features_real
if [ -z "${INIT:-}" ]; then
  [ -f data/features/timbres.npz ] || $PY main.py timbres data/features
  resume=""; [ -f runs/default/teacher/last.json ] && resume="--resume"
  $PY main.py train data/features runs/default/teacher --config configs/default.toml $resume \
    ${TEACHER_STEPS:+--steps $TEACHER_STEPS}
  INIT=runs/default/teacher/teacher_model
fi
resume=""; [ -f runs/default/teacher_real/last.json ] && resume="--resume"
init=""; [ -z "$resume" ] && init="--init $INIT"
$PY main.py train data/features,data/features_real runs/default/teacher_real --config configs/default_real.toml \
  $resume $init ${REAL_STEPS:+--steps $REAL_STEPS}
resume=""; [ -f runs/default/student/last.json ] && resume="--resume"
$PY main.py distill data/features,data/features_real runs/default/student --config configs/default_real.toml \
  $resume --teacher runs/default/teacher_real/teacher_model ${DISTILL_STEPS:+--steps $DISTILL_STEPS}
$PY main.py export runs/default/student/student_model models/pretrained/default --half --force \
  --teacher-file --default-voice "${DEFAULT_VOICE:-us1}"
