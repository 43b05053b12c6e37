#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the CUDA checks and the CUDA benchmarks in one short run.
#   bash scripts/gpu_check.sh [OUT_DIR]     (default out/gpu; JSON and a summary are written there)
# 1. gpu_tests/: every vocoder and the decoder on CUDA against the CPU, the NSF streamed on CUDA.
# 2. bench on CUDA: vocoders whole-file and streamed per block, and the live session on a file device at
#    20/40/80 ms blocks (per-block p50/p99, dropouts on the live schedule).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${1:-out/gpu}"
mkdir -p "$OUT"
bash scripts/setup.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
.venv/bin/python -m pytest -q gpu_tests 2>&1 | tee "$OUT/gpu_tests.txt"
.venv/bin/python -m evaluation.gpu_bench --json "$OUT/gpu_bench.json" | tee "$OUT/gpu_bench.txt"
