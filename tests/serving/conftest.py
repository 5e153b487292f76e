"""Fixtures of the server tests: stores (SQLite and a real PostgreSQL), tiny trained artifacts, the app.

* ``postgres_server`` (session): a throwaway PostgreSQL server (:mod:`tests.serving.postgres`); the tests
  that need it skip, with the reason, when the binaries are not installed.
* ``store_url``: parametrized over ``sqlite`` (a file in the test's temp dir) and ``postgresql`` (a fresh
  database on the session server, per test), so every API test runs on both stores.
* ``linucb_artifact``, ``ppo_artifact`` (session): policies trained once, with tiny budgets.
* ``api``: a ``TestClient`` over ``create_app`` on ``store_url`` with the rule-based policy and a token.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServerSettings
from tests.serving.postgres import PostgresServer, postgres_available

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_DB_COUNTER = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    reason = postgres_available()
    if reason is not None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"regsim_test_{next(_DB_COUNTER)}"
    url = server.create_database(name)
    yield url
    server.drop_database(name)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def linucb_artifact(artifacts_dir: Path) -> Path:
    """A tiny LinUCB bandit trained online through the ``regsim`` CLI."""
    out = artifacts_dir / "linucb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "train",
            "--policy",
            "linucb",
            "--steps",
            "300",
            "--seed",
            "0",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out / "policy"


@pytest.fixture(scope="session")
def ppo_artifact(artifacts_dir: Path) -> Path:
    """A tiny MaskablePPO policy (a few hundred steps: good for plumbing, not for decisions)."""
    from agents.train import train_policy
    from regsim.config import load_world_config
    from serving.settings import DEFAULT_POPULATION

    return train_policy(
        "maskable-ppo",
        config=load_world_config(DEFAULT_POPULATION),
        steps=256,
        seed=0,
        out=artifacts_dir / "ppo",
        algo_kwargs={"n_steps": 16, "batch_size": 64, "n_epochs": 1},
        n_envs=16,
        progress=False,
        tensorboard=False,
        eval_arrangements=0,
    )


def make_settings(store: str, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {"policy": "static-dunning", "store": store, "tokens": (TOKEN,)}
    values.update(overrides)
    return ServerSettings(**values)


@pytest.fixture
def api(store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as client:
        yield client


# ----------------------------------------------------------------------------------------------------------
# Replaying a simulated run through the HTTP API (production's side of the log only)
# ----------------------------------------------------------------------------------------------------------
#: Events the server's ledger derives itself; a replay does not post them (they are compared afterwards).
DERIVED = (
    "installment_due",
    "installment_paid",
    "installment_missed",
    "completed",
    "broken",
    "message_cancelled",
    "due_day_set",
    "deferral",
    "reduction",
)


def replay_through_api(
    client: TestClient, events: Any, batch: bool = False, until: float | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Post a simulated log's production events in log order; return (simulated, served) decision pairs.

    Registrations, payments, message events (by the server's message id of the simulated decision's message),
    opt-outs and referrals are posted; decisions are asked for at every simulated decision point (with
    ``batch``, the decisions of one moment as one batch). What the server derives itself (:data:`DERIVED`:
    installments falling due, paid and missed, completions, breakdowns, re-plans, cancelled reminders) is not
    posted; with ``until``, the clock is advanced to then at the end (``POST /v1/clock``), so the server books
    what the simulation booked after each arrangement's last posted event.
    """
    rows = events.to_pylist()
    message_of: dict[int, int] = {}  # simulated decision id -> the server's id of its message
    decision_of: dict[int, int] = {}  # simulated message id -> its simulated decision id
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if not pending:
            return
        asks = [
            {
                "arrangement_id": r["arrangement_id"],
                "kind": r["decision_kind"],
                "installment": r["installment"],
                "time": r["time"],
            }
            for r in pending
        ]
        if batch:
            resp = client.post("/v1/decisions/batch", json={"decisions": asks})
            assert resp.status_code == 200, resp.text
            served = resp.json()["decisions"]
        else:
            served = []
            for ask in asks:
                resp = client.post("/v1/decisions", json=ask)
                assert resp.status_code == 200, resp.text
                served.append(resp.json())
        for sim, out in zip(pending, served, strict=True):
            if out["message_id"] is not None:
                message_of[int(sim["decision_id"])] = out["message_id"]
            pairs.append((sim, out))
        pending.clear()

    for r in rows:
        kind, t = r["event"], r["time"]
        if kind == "decision":
            if pending and (pending[-1]["time"] != t or not batch):
                flush()
            pending.append(r)
            continue
        flush()
        if kind in DERIVED:
            continue
        post_production_event(client, r, message_of, decision_of)
    flush()
    if until is not None:
        resp = client.post("/v1/clock", json={"time": until})
        assert resp.status_code == 200, resp.text
    return pairs


def post_production_event(
    client: TestClient, r: dict[str, Any], message_of: dict[int, int], decision_of: dict[int, int]
) -> None:
    """Post one simulated event production reports: a registration, payment, message event, opt-out or referral.

    ``message_of`` maps a simulated decision (or menu) id to the server's id of its message; ``decision_of`` is
    filled with each simulated message id's decision id (an opt-out names the message it answered).
    """
    kind, aid, t = r["event"], r["arrangement_id"], r["time"]
    if kind == "arrangement_created":
        body = {
            "arrangement_id": aid,
            "time": t,
            "debt_eur": r["amount_eur"],
            "n_installments": r["n_installments"],
            "due_day": r["due_day"],
            "prior_payments": r["prior_payments"],
            "prior_late_share": r["prior_late_share"],
            "prior_pay_dom": None if r["prior_pay_dom"] < 1 else r["prior_pay_dom"],
        }
        resp = client.post("/v1/arrangements", json=body)
        assert resp.status_code == 201, resp.text
        return
    if kind == "payment":
        body = {"type": "payment", "arrangement_id": aid, "time": t, "amount_eur": r["amount_eur"]}
        if r["channel"] != "none":
            body["channel"] = r["channel"]
    elif kind.startswith("message_"):
        decision_of[int(r["message_id"])] = int(r["decision_id"])
        body = {"type": kind, "arrangement_id": aid, "time": t, "message_id": message_of[int(r["decision_id"])]}
        if kind == "message_sent":
            body["cost_eur"] = r["amount_eur"]
    elif kind == "opt_out":
        body = {"type": kind, "arrangement_id": aid, "time": t, "channel": r["channel"]}
        if r["message_id"] >= 0:
            body["message_id"] = message_of[decision_of[int(r["message_id"])]]
    elif kind == "referred":
        body = {"type": kind, "arrangement_id": aid, "time": t}
    else:
        raise AssertionError(f"unexpected simulated event {kind!r}")
    resp = client.post("/v1/events", json=body)
    assert resp.status_code == 200, (body, resp.text)
