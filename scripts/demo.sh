#!/usr/bin/env bash
# Quick start, command 1: set everything up (first run only) and convert the bundled sung demo
# phrase to the embedded default voice. Extra arguments go to `main.py convert`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
mkdir -p out
.venv/bin/python main.py convert assets/demo_phrase.wav out/demo_converted.wav --force --check-pitch "$@"
echo "listen: out/demo_converted.wav (input: assets/demo_phrase.wav)"
