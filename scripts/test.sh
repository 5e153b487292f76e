#!/usr/bin/env bash
# Run the test suite (sets up .venv first if needed). Extra arguments go to pytest.
# The default suite excludes the slow statistical checks; CI runs them afterwards (see .ci/run). Tests run in
# parallel on every core (pytest-xdist).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -m "not statistical" -n auto "$@"
