"""A schemathesis run as an API's user would start it: every check, every phase, against the real server.

The server runs as production runs it (``uvicorn --factory serving.app:app_from_env`` in a child process, on
SQLite and on PostgreSQL), and ``schemathesis run`` is pointed at its ``/openapi.json`` with the bearer token,
``--checks all`` and the phases ``examples,coverage,fuzzing,stateful`` (the stateful phase follows the links
schemathesis infers between operations, e.g. a registration's ``arrangement_id`` into a decision). A failure of
any check (a 5xx, an undocumented status or body, a schema-valid request refused, a schema-invalid one
accepted, a method the schema does not list answered other than 405, ...) fails the test with schemathesis'
own report. Generation is deterministic; the default run is small, the ``statistical`` one larger.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.server_process import UvicornProcess
from tests.serving.conftest import TOKEN

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _run(store_url: str, tmp_path: Path, max_examples: int) -> None:
    env = {"REGSIM_POLICY": "static-dunning", "REGSIM_STORE": store_url, "REGSIM_TOKENS": TOKEN}
    with UvicornProcess("serving.app:app_from_env", env=env, health_path="/readyz") as server:
        cmd = [str(SCHEMATHESIS), "run", f"{server.base_url}/openapi.json", "--checks", "all"]
        cmd += ["--phases", "examples,coverage,fuzzing,stateful", "-H", f"Authorization: Bearer {TOKEN}"]
        cmd += ["-n", str(max_examples), "--generation-deterministic", "--suppress-health-check", "all"]
        cmd += ["--no-color", "--continue-on-failure", "--request-timeout", "30"]
        # Its working folder (schemathesis keeps a cache there) is the test's temporary one.
        done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    report = done.stdout[-20_000:] + done.stderr[-2_000:]
    assert done.returncode == 0 and "No issues found" in done.stdout, report
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in done.stdout, f"phase {phase} did not pass:\n{report}"


def test_schemathesis_finds_no_issue_with_every_check_and_phase(store_url: str, tmp_path: Path) -> None:
    _run(store_url, tmp_path, max_examples=5)


@pytest.mark.statistical
def test_schemathesis_finds_no_issue_in_a_longer_run(store_url: str, tmp_path: Path) -> None:
    _run(store_url, tmp_path, max_examples=100)
