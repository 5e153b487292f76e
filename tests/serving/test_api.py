"""Functional tests of the API, on SQLite and PostgreSQL (``store_url``)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from agents.artifact import ArtifactError
from agents.base import BasePolicy
from agents.registry import register
from regsim.decision import ContextBatch, DecisionBatch
from regsim.eventlog import read_events
from regsim.metrics import KPI_NAMES, kpis
from serving import db
from serving.app import create_app
from serving.cli import export_log
from tests.serving.conftest import AUTH, TOKEN, make_settings

PLAN = {"arrangement_id": 7, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}


def _register_and_plan(api: TestClient, aid: int = 7) -> None:
    assert api.post("/v1/arrangements", json={**PLAN, "arrangement_id": aid}).status_code == 201
    assert (
        api.post("/v1/decisions", json={"arrangement_id": aid, "kind": "plan_created", "time": 0.0}).status_code == 200
    )


# -- status sync ---------------------------------------------------------------------------------------------
def test_a_payment_cancels_the_pending_reminder_and_none_is_planned_again(api: TestClient) -> None:
    _register_and_plan(api)
    # Installment 0 falls due on day 27 (2026-02-01); the pre-due decision is 5 days before.
    pre = api.post("/v1/decisions", json={"arrangement_id": 7, "kind": "pre_due", "time": 22.0}).json()
    assert pre["action"]["channel"] != "none" and pre["message_id"] is not None and pre["send_time"] > 22.4
    paid = api.post("/v1/events", json={"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": 22.4})
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["installments_paid"] == [0]
    assert [c["message_id"] for c in body["cancelled"]] == [pre["message_id"]]
    # The cancelled reminder is no planned action (reported sent anyway, it is an incident:
    # tests/serving/test_late_events.py).
    overview = api.get("/v1/arrangements/7").json()
    assert overview["installments_paid"] == 1
    assert overview["next_action"] is None or overview["next_action"]["message_id"] != pre["message_id"]
    # A later reminder decision about the paid installment is masked by the paid-installment rule.
    again = api.post(
        "/v1/decisions", json={"arrangement_id": 7, "kind": "pre_due", "installment": 0, "time": 23.0}
    ).json()
    assert again["action"]["channel"] == "none" and again["message_id"] is None
    assert "paid_installment" in again["masked_rules"]
    metrics = api.get("/metrics").text
    assert 'regsim_cancelled_reminders_total{cause="payment"} 1.0' in metrics


def test_overview_shows_plan_next_action_and_contacts(api: TestClient) -> None:
    _register_and_plan(api)
    pre = api.post("/v1/decisions", json={"arrangement_id": 7, "kind": "pre_due", "time": 22.0}).json()
    api.post("/v1/events", json={"arrangement_id": 7, "type": "message_sent", "message_id": 1, "time": 22.1})
    view = api.get("/v1/arrangements/7").json()
    assert view["status"] == "active" and view["installments_open"] == 3 and len(view["installments"]) == 3
    assert view["next_action"]["message_id"] == pre["message_id"]
    assert view["next_action"]["decided_by"]["decision_id"] == pre["decision_id"]
    assert [c["event"] for c in view["contact_history"]] == ["message_sent"]
    assert api.get("/v1/arrangements/999").status_code == 404


# -- idempotency ---------------------------------------------------------------------------------------------
def test_idempotency_replays_the_first_response_and_refuses_another_body(api: TestClient) -> None:
    _register_and_plan(api)
    ask = {"arrangement_id": 7, "kind": "pre_due", "time": 22.0}
    first = api.post("/v1/decisions", json=ask, headers={"Idempotency-Key": "k-1"})
    again = api.post("/v1/decisions", json=dict(reversed(list(ask.items()))), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    other = api.post("/v1/decisions", json={**ask, "time": 22.5}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 409 and "k-1" in other.json()["detail"]
    # One decision was made, not two.
    assert api.get("/v1/arrangements/7").json()["last_decision"]["decision_id"] == first.json()["decision_id"]


# -- auth ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong-token-xyz"}, {"Authorization": f"Basic {TOKEN}"}]
)
def test_auth_refuses_missing_and_wrong_tokens(store_url: str, headers: dict[str, str]) -> None:
    with TestClient(create_app(make_settings(store_url))) as client:
        for method, path in [
            ("get", "/v1/arrangements/1"),
            ("get", "/metrics"),
            ("post", "/v1/events"),
            ("post", "/v1/decisions"),  # the fast path's route: it hands refusals to the framework
        ]:
            r = getattr(client, method)(path, headers=headers, **({"json": {}} if method == "post" else {}))
            assert r.status_code == 401, (path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ready"}  # nothing disclosed without a token
        # The schema and its page are public; the calls made from them need the token.
        assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


# -- the fast path of POST /v1/decisions ---------------------------------------------------------------------
def test_the_decision_fast_path_answers_as_the_framework_does(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same requests, answered by the fast path and by the FastAPI route (a ``+json`` type skips the fast
    path), give the same status and body (ids aside), and the fast path did answer the first ones."""
    import serving.fastpath

    seen: list[bytes] = []
    validated = serving.fastpath._validated
    monkeypatch.setattr(serving.fastpath, "_validated", lambda raw: seen.append(raw) or validated(raw))
    for aid in (7, 8):
        assert api.post("/v1/arrangements", json={**PLAN, "arrangement_id": aid}).status_code == 201

    def both(ask: dict[str, Any], aid: int = 7, other: int = 8) -> tuple[Any, Any]:
        fast_headers = {"Content-Type": "application/json"}
        fast = api.post("/v1/decisions", content=json.dumps({**ask, "arrangement_id": aid}), headers=fast_headers)
        slow_headers = {"Content-Type": "application/vnd.regsim+json"}
        slow = api.post("/v1/decisions", content=json.dumps({**ask, "arrangement_id": other}), headers=slow_headers)
        assert fast.status_code == slow.status_code, (fast.text, slow.text)
        assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
        return fast.json(), slow.json()

    n = len(seen)
    fast, slow = both({"kind": "plan_created", "time": 0.0})
    assert len(seen) == n + 1  # the first went through the fast path, the second did not
    ids = ("decision_id", "arrangement_id", "message_id")
    assert {k: v for k, v in fast.items() if k not in ids} == {k: v for k, v in slow.items() if k not in ids}
    # Refusals: the service's (404, 409, 422 naming the field) and the framework's own (422 on validation).
    for ask, status in [
        ({"kind": "pre_due", "time": 5.0, "installment": 9}, 409),
        ({"kind": "plan_created", "time": 6.0}, 409),
        ({"kind": "lunch", "time": 6.0}, 422),
    ]:
        fast, slow = both(ask)
        assert fast == {**slow, **({"detail": fast["detail"]} if status == 409 else {})}, (fast, slow)
        assert api.post("/v1/decisions", json={**ask, "arrangement_id": 7}).status_code == status
    fast, slow = both({"kind": "pre_due", "time": 6.0}, aid=99, other=99)
    assert fast == slow and "99" in fast["detail"]
    # Off the fast path: a body without a content type, a malformed key, a repeated key header.
    body = json.dumps({"arrangement_id": 7, "kind": "pre_due", "time": 7.0})
    r = api.post("/v1/decisions", content=body, headers={"Content-Type": ""})
    assert r.status_code == 415 and "content-type" in r.json()["detail"]
    headers = {"Content-Type": "application/json", "Idempotency-Key": "a b"}
    assert api.post("/v1/decisions", content=body, headers=headers).status_code == 422
    # Request metrics count the fast path's answers under the route's template.
    assert 'method="POST",route="/v1/decisions",status="200"' in api.get("/metrics").text


# -- limits and validation -----------------------------------------------------------------------------------
def test_a_too_large_body_is_refused_with_413_naming_the_limit(store_url: str) -> None:
    with TestClient(create_app(make_settings(store_url, max_body_bytes=2000)), headers=AUTH) as client:
        big = {"decisions": [{"arrangement_id": k, "kind": "pre_due", "time": 1.0} for k in range(100)]}
        r = client.post("/v1/decisions/batch", json=big)
        assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]
        # The fast path of POST /v1/decisions leaves an oversized body to the same refusal.
        one = {"arrangement_id": 1, "kind": "pre_due", "time": 1.0, "pad": "x" * 3000}
        r = client.post("/v1/decisions", json=one)
        assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PLAN, "debt_eur": -5}, "debt_eur"),
        ({**PLAN, "due_day": 31}, "due_day"),
        ({**PLAN, "name": "Jane Doe"}, "name"),
        ({**PLAN, "opted_out": ["pigeon"]}, "opted_out"),
        ({**PLAN, "n_installments": 100}, "n_installments"),
    ],
)
def test_validation_errors_name_the_field(api: TestClient, body: dict[str, Any], field: str) -> None:
    r = api.post("/v1/arrangements", json=body)
    assert r.status_code == 422, r.text
    assert any(field in e["msg"] or field in map(str, e["loc"]) for e in r.json()["detail"])


def test_a_decision_needs_a_registered_arrangement_and_a_known_kind(api: TestClient) -> None:
    assert api.post("/v1/decisions", json={"arrangement_id": 5, "kind": "pre_due", "time": 1.0}).status_code == 404
    r = api.post("/v1/decisions", json={"arrangement_id": 5, "kind": "lunch", "time": 1.0})
    assert r.status_code == 422 and "kind" in r.json()["detail"][0]["msg"]


def test_a_batch_error_names_the_item_and_its_field(api: TestClient) -> None:
    _register_and_plan(api)
    item = {"arrangement_id": 7, "kind": "pre_due", "at": "2020-01-01T00:00:00Z"}
    r = api.post("/v1/decisions/batch", json={"decisions": [item]})
    assert r.status_code == 422, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "decisions", 0, "at"]
    assert error["input"] == "2020-01-01T00:00:00+00:00"
    # An installment outside the arrangement's plan conflicts with its state (409), naming the item and field.
    item = {"arrangement_id": 7, "kind": "pre_due", "time": 22.0, "installment": 9}
    r = api.post("/v1/decisions/batch", json={"decisions": [item]})
    assert r.status_code == 409 and r.json()["detail"].startswith("decisions.0.installment: 9"), r.text


# -- export --------------------------------------------------------------------------------------------------
def test_export_log_reads_as_an_event_log_and_gives_kpis(api: TestClient, store_url: str, tmp_path: Path) -> None:
    _register_and_plan(api)
    api.post("/v1/events", json={"arrangement_id": 7, "type": "message_sent", "message_id": 1, "time": 0.4})
    for k, t in enumerate((20.0, 50.0, 80.0)):
        api.post("/v1/events", json={"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": t + k * 0})
    table = read_events(export_log(store_url, tmp_path))
    values = kpis(table)
    assert set(values) == set(KPI_NAMES)
    assert values["completion_rate"] == 1.0 and values["collected_eur"] == 300.0
    assert values["on_time_installment_rate"] == 1.0 and values["contacts_per_arrangement"] == 1.0


# -- migrations ----------------------------------------------------------------------------------------------
def test_a_fresh_store_is_created_by_alembic_at_head(api: TestClient, store_url: str) -> None:
    engine = db.make_engine(store_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


# -- safe roll-out -------------------------------------------------------------------------------------------
class _Failing(BasePolicy):
    """A policy that raises (to test the fallback)."""

    name = "test-failing"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        raise RuntimeError("boom")


class _Slow(BasePolicy):
    """A policy that exceeds any small time budget."""

    name = "test-slow"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        time.sleep(0.3)
        return DecisionBatch.none(len(contexts))


for _cls in (_Failing, _Slow):
    with contextlib.suppress(ValueError):  # registered by an earlier import of this module
        register(_cls.name)(_cls)


@pytest.mark.parametrize(("policy", "reason"), [("test-failing", "error"), ("test-slow", "timeout")])
def test_the_fallback_answers_for_a_failing_or_slow_policy_and_is_counted(
    store_url: str, policy: str, reason: str
) -> None:
    settings = make_settings(store_url, policy=policy, decision_budget_ms=50)
    with TestClient(create_app(settings), headers=AUTH) as client:
        _register_and_plan(client)
        r = client.post("/v1/decisions", json={"arrangement_id": 7, "kind": "pre_due", "time": 22.0}).json()
        assert r["fallback"] is True and r["policy"] == "static-dunning"
        assert f'regsim_fallbacks_total{{reason="{reason}"}} 2.0' in client.get("/metrics").text


def test_the_shadow_policy_is_logged_and_never_returned(store_url: str) -> None:
    settings = make_settings(store_url, policy="static-dunning", shadow_policy="silent")
    with TestClient(create_app(settings), headers=AUTH) as client:
        _register_and_plan(client)
        r = client.post("/v1/decisions", json={"arrangement_id": 7, "kind": "pre_due", "time": 22.0}).json()
        assert r["policy"] == "static-dunning" and r["action"]["channel"] != "none"
        assert 'regsim_shadow_decisions_total{outcome="disagree"}' in client.get("/metrics").text
    engine = db.make_engine(store_url)
    with engine.connect() as conn:
        rows = conn.execute(db.shadow_decisions.select().order_by(db.shadow_decisions.c.id)).all()
    engine.dispose()
    assert [(row.policy, row.a_channel, row.agrees) for row in rows][-1] == ("silent", 0, False)


def test_a_tampered_artifact_refuses_to_start(store_url: str, linucb_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(linucb_artifact, copy)
    config = json.loads((copy / "config.json").read_text())
    config["config"]["alpha"] = 5.0
    (copy / "config.json").write_text(json.dumps(config))
    with (
        pytest.raises(ArtifactError, match=r"config\.json"),
        TestClient(create_app(make_settings(store_url, policy=str(copy)))),
    ):
        pass


def _bandit_session(client: TestClient, start: int, stop: int) -> list[list[int]]:
    """Register arrangements start..stop-1, plan them, pay, and ask pre-due decisions over ~2 months."""
    actions = []
    for aid in range(start, stop):
        t = float(aid - start)
        client.post("/v1/arrangements", json={**PLAN, "arrangement_id": aid, "time": t})
        actions.append(
            client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "plan_created", "time": t}).json()[
                "action"
            ]["indices"]
        )
    for aid in range(start, stop):
        t = 40.0 + (aid - start)
        client.post("/v1/events", json={"arrangement_id": aid, "type": "payment", "amount_eur": 100.0, "time": t})
    for aid in range(start, stop):  # installment 1 falls due on day 55: decisions still pending at the end
        r = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", "time": 50.0})
        actions.append(r.json()["action"]["indices"])
    return actions


def test_bandit_state_survives_a_restart(store_url: str, linucb_artifact: Path, tmp_path: Path) -> None:
    settings = make_settings(store_url, policy=str(linucb_artifact))
    with TestClient(create_app(settings), headers=AUTH) as client:
        _bandit_session(client, 0, 6)
        state = client.app.state.regsim.online  # type: ignore[attr-defined]
        assert state.updates > 0  # it learned from matured rewards
        before = {k: np.asarray(v).copy() for k, v in state.policy.state_dict().items()}
        day = state.day
    with TestClient(create_app(settings), headers=AUTH) as client:
        state = client.app.state.regsim.online  # type: ignore[attr-defined]
        after = state.policy.state_dict()
        assert state.day == day and set(after) == set(before)
        for k, v in before.items():
            np.testing.assert_array_equal(np.asarray(after[k]), v, err_msg=k)
        assert len(state.matcher) > 0  # the pending decisions were rebuilt from the log
