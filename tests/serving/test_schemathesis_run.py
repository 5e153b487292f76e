"""A schemathesis run as an API's user would start it: every check, every phase, against the real server.

The server runs as production runs it (``uvicorn --factory serving.app:app_from_env`` in a child process, on
SQLite and on PostgreSQL), and ``schemathesis run`` is pointed at its ``/openapi.json`` with the bearer token,
``--checks all`` and the phases ``examples,coverage,fuzzing,stateful`` (the stateful phase follows the links
schemathesis infers between operations, e.g. a registration's ``arrangement_id`` into a decision). A failure of
any check (a 5xx, an undocumented status or body, a schema-valid request refused, a schema-invalid one
accepted, a method the schema does not list answered other than 405, ...) fails the test with schemathesis'
own report. Generation is deterministic; the default run is small, the ``statistical`` one larger.

A ``statistical`` variant runs the server with **self-service on** in its world config (``menu-ts``, debtor links
on) and arrangements in arrears at the small ids generation favours (0 to 7, registered, planned and booked past a
missed installment over HTTP first, one menu shown): every check and phase on the self-service routes' real
refusals (404, 409, 422) rather than the 409 of self-service off. Its generated times are mostly far from the
seeded arrangements' present, so beyond the seed its menus, choices and cases seldom answer 200 (counted once
through ``/metrics``: none did); their success paths under fuzzing are ``test_fuzz.py``'s self-service variant,
which steers requests at the seeded state.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import pytest
from schemathesis.config import SchemathesisWarning, WarningsConfig

from benchmarks.server_process import UvicornProcess
from tests.serving.conftest import AUTH, TOKEN
from tests.serving.test_menus import self_service_population

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def _run(
    store_url: str,
    tmp_path: Path,
    max_examples: int,
    env: Mapping[str, str] | None = None,
    seed: Callable[[str], None] | None = None,
    warnings: tuple[str, ...] | None = None,
) -> None:
    env = {"REGSIM_POLICY": "static-dunning", "REGSIM_STORE": store_url, "REGSIM_TOKENS": TOKEN, **(env or {})}
    with UvicornProcess("serving.app:app_from_env", env=env, health_path="/readyz") as server:
        if seed is not None:
            seed(server.base_url)
        cmd = [str(SCHEMATHESIS), "run", f"{server.base_url}/openapi.json", "--checks", "all"]
        cmd += ["--phases", "examples,coverage,fuzzing,stateful", "-H", f"Authorization: Bearer {TOKEN}"]
        cmd += ["-n", str(max_examples), "--generation-deterministic", "--suppress-health-check", "all"]
        cmd += ["--no-color", "--continue-on-failure", "--request-timeout", "30"]
        if warnings is not None:
            cmd += ["--warnings", ",".join(warnings)]
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


#: Schemathesis' default warnings but ``missing_test_data``: a generated choice or case names a menu id no link
#: supplies (a 404, as it should be); the success paths of choices and cases are fuzzed in ``test_fuzz.py``'s
#: self-service variant, which steers them at the menus shown.
_ALL_BUT_MISSING_TEST_DATA = tuple(
    w.value for w in WarningsConfig().display if w is not SchemathesisWarning.MISSING_TEST_DATA
)


def _in_arrears(base_url: str) -> None:
    """Arrangements 0 to 7 registered, planned and booked past their first missed installment."""
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30.0) as client:
        due = 0.0
        for aid in range(8):
            body = {"arrangement_id": aid, "time": 0.0, "debt_eur": 600.0, "n_installments": 6, "due_day": 1}
            created = client.post("/v1/arrangements", json=body)
            assert created.status_code == 201, created.text
            due = float(created.json()["installments"][0]["due_time"])
            decided = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "plan_created", "time": 0.0})
            assert decided.status_code == 200, decided.text
        booked = client.post("/v1/clock", json={"time": due + 8.25})
        assert booked.json()["events"].get("installment_missed") == 8, booked.text
        menu = client.post("/v1/menus", json={"arrangement_id": 0, "time": due + 8.25})
        assert menu.status_code == 200, menu.text


@pytest.mark.statistical
def test_schemathesis_finds_no_issue_with_self_service_on(store_url: str, tmp_path: Path) -> None:
    env = {
        "REGSIM_POLICY": "menu-ts",
        "REGSIM_POPULATION": str(self_service_population(tmp_path)),
        "REGSIM_DEBTOR_LINK_SECRET": "a-debtor-link-secret-of-at-least-32-chars",
    }
    _run(store_url, tmp_path, max_examples=100, env=env, seed=_in_arrears, warnings=_ALL_BUT_MISSING_TEST_DATA)
