#!/usr/bin/env bash
# Set up regsim on a fresh machine: a virtual environment in .venv with everything installed.
# Idempotent: a second run only checks. torch is installed first, pinned, so that pip takes the CPU wheel
# (an open range would pull a CUDA build of several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import regsim, torch, gymnasium, sb3_contrib, pytest" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[rl,serve,dev]"
fi
echo "regsim is set up in .venv" >&2
