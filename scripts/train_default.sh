#!/usr/bin/env bash
# Rebuild the embedded default voice model from scratch (CPU: about an hour on 2 cores).
#   corpus -> features -> EDM teacher -> consistency student -> models/pretrained/default
# Each stage resumes/reuses its output when run again; logs go to runs/default/*.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
TEACHER_STEPS="${TEACHER_STEPS:-}"
DISTILL_STEPS="${DISTILL_STEPS:-}"
mkdir -p runs/default
[ -f data/corpus/corpus.json ] || $PY main.py corpus data/corpus --seed 0
[ -f data/features/index.json ] || $PY main.py preprocess data/corpus data/features
resume=""; [ -f runs/default/teacher/last.json ] && resume="--resume"
$PY main.py train data/features runs/default/teacher --config configs/default.toml $resume \
  ${TEACHER_STEPS:+--steps $TEACHER_STEPS}
resume=""; [ -f runs/default/student/last.json ] && resume="--resume"
$PY main.py distill data/features runs/default/student --config configs/default.toml $resume \
  --teacher runs/default/teacher/teacher_model ${DISTILL_STEPS:+--steps $DISTILL_STEPS}
$PY main.py export runs/default/student/student_model models/pretrained/default --half \
  --student-only --default-voice "${DEFAULT_VOICE:-us1}"
