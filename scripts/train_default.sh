#!/usr/bin/env bash
# Rebuild the embedded default voice model (CPU, 2 cores: about 1.5 h from scratch).
#   corpus -> features -> virtual voices -> EDM teacher -> consistency student -> models/pretrained/default
# Each stage resumes/reuses its output when run again; logs go to runs/default/*.log.
# INIT=models/pretrained/default starts the teacher from the shipped decoder (fewer steps needed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
TEACHER_STEPS="${TEACHER_STEPS:-}"
DISTILL_STEPS="${DISTILL_STEPS:-}"
mkdir -p runs/default
[ -f data/corpus/corpus.json ] || $PY main.py corpus data/corpus --seed 0
[ -f data/features/index.json ] || $PY main.py preprocess data/corpus data/features
[ -f data/features/timbres.npz ] || $PY main.py timbres data/features
resume=""; [ -f runs/default/teacher/last.json ] && resume="--resume"
init=""; [ -z "$resume" ] && [ -n "${INIT:-}" ] && init="--init $INIT"
$PY main.py train data/features runs/default/teacher --config configs/default.toml $resume $init \
  ${TEACHER_STEPS:+--steps $TEACHER_STEPS}
resume=""; [ -f runs/default/student/last.json ] && resume="--resume"
$PY main.py distill data/features runs/default/student --config configs/default.toml $resume \
  --teacher runs/default/teacher/teacher_model ${DISTILL_STEPS:+--steps $DISTILL_STEPS}
$PY main.py export runs/default/student/student_model models/pretrained/default --half \
  --student-only --default-voice "${DEFAULT_VOICE:-us1}"
