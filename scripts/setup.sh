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
if ! .venv/bin/python -c "import regsim, torch, gymnasium, sb3_contrib, pytest, ray, matplotlib, nbclient, fastapi, psycopg, schemathesis, lifelines, optuna, cmaes" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[rl,serve,experiments,calibrate,dev]"
fi
# System packages: PostgreSQL's server binaries (the server's tests start a real, throwaway PostgreSQL with
# initdb + pg_ctl) and wrk (the server benchmark's load generator; it falls back to Python clients without it).
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# Chromium and its WebDriver: the staff pages' browser test (tests/serving/test_staff_pages.py; skipped without).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null; }
  else
    echo "warning: ${missing[*]} not installed and apt-get unavailable; the PostgreSQL and browser tests will be skipped" >&2
  fi
fi
echo "regsim is set up in .venv" >&2
