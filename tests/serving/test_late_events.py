"""Events by event time: late events re-derive their arrangement's history through the ledger.

An event stamped before the arrangement's latest recorded event is accepted; the arrangement's history is
replayed in event-time order (:mod:`serving.late_events`). The property: the events that in-order processing
accepts, posted in any arrival order (each one refused for a state that a later arrival changes retried once
at the end), give the state of in-order processing: the ledger's state in the cache, the overview rebuilt
from the store, the stored log and the messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving import db
from serving.app import create_app
from tests.serving.conftest import AUTH, make_settings

PLAN = {"debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}


def _start(api: TestClient, aid: int) -> dict[str, Any]:
    """Register, create the plan and take the pre-due decision (its reminder goes out at about 24.4)."""
    assert api.post("/v1/arrangements", json={**PLAN, "arrangement_id": aid}).status_code == 201
    plan = api.post("/v1/decisions", json={"arrangement_id": aid, "kind": "plan_created", "time": 0.0})
    assert plan.status_code == 200, plan.text
    pre = api.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", "time": 22.0}).json()
    assert pre["message_id"] is not None
    return pre


def _metric(api: TestClient, line: str) -> float:
    for text in api.get("/metrics").text.splitlines():
        if text.startswith(line + " "):
            return float(text.split()[-1])
    return 0.0


def _payment_incident(pre: dict[str, Any], moot_time: float, sent_time: float) -> dict[str, Any]:
    """The incident of the pre-due reminder ``pre`` sent at ``sent_time`` after a payment at ``moot_time``."""
    return {
        "kind": "sent_after_payment",
        "message_id": pre["message_id"],
        "decision_id": pre["decision_id"],
        "installment": 0,
        "channel": pre["action"]["channel"],
        "moot_time": moot_time,
        "sent_time": sent_time,
    }


# -- the two cases of a late payment -------------------------------------------------------------------------
def test_a_reminder_sent_after_a_late_payment_is_an_incident_kept_once(store_url: str) -> None:
    settings_ = make_settings(store_url)
    with TestClient(create_app(settings_), headers=AUTH) as api:
        pre = _start(api, 7)
        sent = {"arrangement_id": 7, "type": "message_sent", "message_id": pre["message_id"], "time": pre["send_time"]}
        assert api.post("/v1/events", json=sent).status_code == 200
        # The payment was made before the reminder went out; the bank reports it later.
        late = api.post("/v1/events", json={"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": 22.1})
        assert late.status_code == 200, late.text
        body = late.json()
        assert body["late"] is True and body["installments_paid"] == [0] and body["cancelled"] == []
        incident = _payment_incident(pre, moot_time=22.1, sent_time=pre["send_time"])
        assert body["incidents"] == [incident]
        # Another late event re-derives the history again: the incident is neither lost nor duplicated.
        opened = {**sent, "type": "message_opened", "time": pre["send_time"] + 0.1}
        assert api.post("/v1/events", json={**opened, "time": pre["send_time"] + 0.5}).status_code == 200
        again = api.post("/v1/events", json=opened)  # (before the open just posted: late too)
        assert again.status_code == 200 and again.json()["late"] and again.json()["incidents"] == []
        view = api.get("/v1/arrangements/7").json()
        assert view["incidents"] == [incident]
        assert view["installments"][0]["status"] == "paid" and view["payments"][0]["time"] == 22.1
        # The reminder went out: it stays sent, once, and is not reported cancelled.
        assert [c["event"] for c in view["contact_history"]] == ["message_sent", "message_opened", "message_opened"]
        assert _metric(api, 'regsim_incidents_total{kind="sent_after_payment"}') == 1.0
        assert _metric(api, 'regsim_late_events_total{type="payment"}') == 1.0
    # A fresh process rebuilds the same state from the store alone.
    with TestClient(create_app(settings_), headers=AUTH) as api:
        assert api.get("/v1/arrangements/7").json() == view


def test_a_payment_stamped_before_the_decision_cancels_its_reminder(store_url: str) -> None:
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as api:
        pre = _start(api, 8)
        late = api.post("/v1/events", json={"arrangement_id": 8, "type": "payment", "amount_eur": 100.0, "time": 21.99})
        assert late.status_code == 200, late.text
        body = late.json()
        assert body["late"] and body["installments_paid"] == [0]
        assert [c["message_id"] for c in body["cancelled"]] == [pre["message_id"]]
        assert body["incidents"] == []
        # The moot reminder is no planned action.
        view = api.get("/v1/arrangements/8").json()
        assert view["next_action"] is None or view["next_action"]["message_id"] != pre["message_id"]
        assert _metric(api, 'regsim_cancelled_reminders_total{cause="payment"}') == 1.0


def test_a_reminder_reported_sent_after_the_server_cancelled_it_is_an_incident_not_refused(store_url: str) -> None:
    """The payment arrives first and cancels the reminder; the dispatcher had it already and reports it sent."""
    settings_ = make_settings(store_url)
    with TestClient(create_app(settings_), headers=AUTH) as api:
        pre = _start(api, 11)
        paid = api.post("/v1/events", json={"arrangement_id": 11, "type": "payment", "amount_eur": 100.0, "time": 22.1})
        assert [c["message_id"] for c in paid.json()["cancelled"]] == [pre["message_id"]]
        sent = {"arrangement_id": 11, "type": "message_sent", "message_id": pre["message_id"], "time": 24.4}
        answer = api.post("/v1/events", json=sent)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        incident = _payment_incident(pre, moot_time=22.1, sent_time=24.4)
        assert body["late"] is False and body["incidents"] == [incident]
        # Sent once: the same report again is refused, and a later re-derivation keeps the incident once.
        again = api.post("/v1/events", json=sent)
        assert again.status_code == 409 and "cannot be sent again" in again.json()["detail"]
        opened = {**sent, "type": "message_opened", "time": 24.5}
        assert api.post("/v1/events", json={**opened, "time": 24.6}).status_code == 200
        assert api.post("/v1/events", json=opened).json()["incidents"] == []  # (late: re-derives the history)
        view = api.get("/v1/arrangements/11").json()
        assert view["incidents"] == [incident]
        assert [c["event"] for c in view["contact_history"]] == ["message_sent", "message_opened", "message_opened"]
        assert _metric(api, 'regsim_incidents_total{kind="sent_after_payment"}') == 1.0
        assert _metric(api, 'regsim_late_events_total{type="message_sent"}') == 0.0
    with TestClient(create_app(settings_), headers=AUTH) as api:
        assert api.get("/v1/arrangements/11").json() == view


def test_a_late_opt_out_is_taken_in_event_time_but_a_late_decision_is_refused(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}")), headers=AUTH) as api:
        pre = _start(api, 9)
        channel = pre["action"]["channel"]
        # The debtor opted out of the reminder's channel before the decision; the letter saying so came later.
        late = api.post("/v1/events", json={"arrangement_id": 9, "type": "opt_out", "channel": channel, "time": 10.0})
        assert late.status_code == 200, late.text
        assert late.json()["late"] is True
        assert channel in api.get("/v1/arrangements/9").json()["opted_out"]
        # Decisions from now on respect it: the channel is masked by the opt-out rule.
        after = api.post("/v1/decisions", json={"arrangement_id": 9, "kind": "pre_due", "time": 22.5})
        assert after.status_code == 200, after.text
        assert after.json()["action"]["channel"] != channel
        assert any(m["part"] == "channel" and m["option"] == channel for m in after.json()["masked"])
        # A decision is taken at the arrangement's present: one dated before its latest event is refused, saying so.
        past = api.post("/v1/decisions", json={"arrangement_id": 9, "kind": "pre_due", "time": 21.0})
        assert past.status_code == 409 and "arrangement's present" in past.json()["detail"]


def test_a_late_event_the_history_cannot_take_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 's.db'}")), headers=AUTH) as api:
        _start(api, 9)
        for t in (30.0, 60.0, 90.0):  # the whole debt, in order: the arrangement completes at 90
            assert api.post("/v1/events", json={"arrangement_id": 9, "type": "payment", "amount_eur": 100.0, "time": t})
        before = api.get("/v1/arrangements/9").json()
        assert before["status"] == "completed"
        late = api.post("/v1/events", json={"arrangement_id": 9, "type": "payment", "amount_eur": 50.0, "time": 25.0})
        assert late.status_code == 409 and "exceed the open balance" in late.json()["detail"]
        assert api.get("/v1/arrangements/9").json() == before
        # Decisions are taken at the arrangement's present, never late.
        decision = api.post("/v1/decisions", json={"arrangement_id": 9, "kind": "follow_up", "time": 50.0})
        assert decision.status_code == 409


# -- the property -------------------------------------------------------------------------------------------
_AIDS = itertools.count(1000)


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = tmp_path_factory.mktemp("late") / "store.db"
    with TestClient(create_app(make_settings(f"sqlite:///{store}")), headers=AUTH) as client:
        yield client


@st.composite
def _events(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Production events after the pre-due decision (distinct times, in hundredths of a day), and clock ticks."""
    n = draw(st.integers(2, 8))
    times = draw(st.lists(st.integers(2201, 12000), min_size=n, max_size=n, unique=True))
    out: list[dict[str, Any]] = []
    for k in times:
        t = k / 100.0
        kind = draw(
            st.sampled_from(
                ["payment", "payment", "payment", "sent", "opened", "clicked", "opt_out", "referred", "clock", "clock"]
            )
        )
        if kind == "payment":
            out.append({"type": "payment", "amount_eur": draw(st.sampled_from([40.0, 100.0, 150.0])), "time": t})
        elif kind in ("sent", "opened", "clicked"):
            out.append({"type": f"message_{kind}", "message": True, "time": t})
        elif kind == "opt_out":
            out.append({"type": "opt_out", "channel": draw(st.sampled_from(["sms", "email"])), "time": t})
        elif kind == "referred":
            out.append({"type": "referred", "time": t})
        else:
            out.append({"clock": True, "time": t})
    return out


def _post(api: TestClient, aid: int, message_id: int, e: dict[str, Any]) -> int:
    if e.get("clock"):
        return api.post("/v1/clock", json={"time": e["time"]}).status_code
    body = {k: v for k, v in e.items() if k != "message"}
    body["arrangement_id"] = aid
    if e.get("message"):
        body["message_id"] = message_id
    return api.post("/v1/events", json=body).status_code


def _state(api: TestClient, aid: int) -> dict[str, Any]:
    """Everything the server holds of an arrangement, with its ids replaced by their order of appearance."""
    st_ = api.app.state.regsim  # type: ignore[attr-defined]
    ids: dict[tuple[str, int], int] = {}

    def norm(kind: str, value: Any) -> Any:
        if value is None or int(value) < 0:
            return value
        return ids.setdefault((kind, int(value)), len([k for k in ids if k[0] == kind]))

    with st_.engine.connect() as conn:
        cols = [c for c in db.EVENT_COLUMNS if c not in ("arrangement_id",)]
        stmt = sa.select(*(db.events.c[c] for c in cols)).where(db.events.c.arrangement_id == aid)
        log = []
        for r in conn.execute(stmt.order_by(db.events.c.seq)):
            row = dict(r._mapping)
            row["message_id"] = norm("m", row["message_id"])
            row["decision_id"] = norm("d", row["decision_id"])
            log.append(row)
        stmt = sa.select(db.messages).where(db.messages.c.arrangement_id == aid).order_by(db.messages.c.message_id)
        messages = [
            {
                **dict(r._mapping),
                "message_id": norm("m", r.message_id),
                "decision_id": norm("d", r.decision_id),
                "arrangement_id": 0,
            }
            for r in conn.execute(stmt)
        ]
        status = conn.execute(
            sa.select(db.arrangements.c.status, db.arrangements.c.last_time).where(
                db.arrangements.c.arrangement_id == aid
            )
        ).one()
    view = api.get(f"/v1/arrangements/{aid}").json()
    view.pop("arrangement_id")
    for c in [*view["contact_history"], *view["incidents"]]:
        c["message_id"], c["decision_id"] = norm("m", c["message_id"]), norm("d", c["decision_id"])
    for key in ("next_action", "last_decision"):
        if view[key] is not None:
            view[key] = {k: v for k, v in view[key].items() if k not in ("message_id", "decision_id", "decided_by")}
    replay = st_.cache.replay
    row = replay.row[aid]
    ledger = {
        name: np.where(np.isnan(a[row]), -1.0, a[row]).tolist() if a.dtype.kind == "f" else a[row].tolist()
        for name, a in replay.ledger.row_arrays().items()
        if name != "_time_of"  # (scratch space of a batch of payments)
    }
    if view["status"] not in ("offered", "active"):
        # How far an ended arrangement's days were looked at means nothing (nothing is booked after an end).
        ledger.pop("booked_day")
    return {"log": log, "messages": messages, "row": tuple(status), "view": view, "ledger": ledger}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=_events(), data=st.data())
def test_any_arrival_order_gives_the_state_of_in_order_processing(
    shared_api: TestClient, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    _same_state_in_any_order(shared_api, events, lambda accepted: data.draw(st.permutations(accepted), label="order"))


@pytest.mark.parametrize(
    "events",
    [
        # An event at midnight comes before that day's bookkeeping, which the clock already did: it is late.
        [
            {"type": "message_sent", "message": True, "time": 22.01},
            {"clock": True, "time": 56.01},
            {"type": "message_opened", "message": True, "time": 56.0},
        ],
        # A referral the server refuses until the payment before it arrives (the plan looks broken).
        [{"type": "referred", "time": 56.01}, {"type": "payment", "amount_eur": 100.0, "time": 22.01}],
        # A reminder reported sent after the plan looked broken (an incident of the breakdown), until the late
        # payment that completes its installment shows it moot from the payment on: the incident follows.
        [
            {"type": "payment", "amount_eur": 40.0, "time": 22.01},
            {"type": "payment", "amount_eur": 40.0, "time": 22.02},
            {"type": "message_sent", "message": True, "time": 56.01},
            {"type": "payment", "amount_eur": 40.0, "time": 22.03},
        ],
    ],
)
def test_orders_found_by_the_property_search(shared_api: TestClient, events: list[dict[str, Any]]) -> None:
    """Arrival orders that once broke the property, posted in the order given."""
    _same_state_in_any_order(shared_api, events, lambda accepted: [e for e in events if e in accepted])


def _same_state_in_any_order(api: TestClient, events: list[dict[str, Any]], arrange: Any) -> None:
    """Post the events in time order to one arrangement and in ``arrange(accepted)`` order to another."""
    first = next(_AIDS)
    pre = _start(api, first)
    in_order = sorted(events, key=lambda e: e["time"])
    accepted = [e for e in in_order if _post(api, first, pre["message_id"], e) == 200]
    expected = _state(api, first)

    order = arrange(accepted)
    second = next(_AIDS)
    pre = _start(api, second)
    # An event refused for a state that events still to arrive change (a referral of an arrangement the
    # server must think broken until the earlier payment arrives) is retried once at the end, as a client
    # retries a 409 when its queue has drained.
    refused = [e for e in order if _post(api, second, pre["message_id"], e) != 200]
    retried = [_post(api, second, pre["message_id"], e) for e in refused]
    assert retried == [200] * len(refused)
    assert _state(api, second) == expected


def test_the_migration_marks_reported_events_stored_before_it(tmp_path: Path) -> None:
    """Events stored before arrival times were recorded: those only production reports count as arrived."""
    from alembic import command

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as conn:
            command.upgrade(db._alembic_config(conn), "0002")
            for event in ("payment", "installment_paid", "broken", "decision"):
                conn.execute(
                    sa.text("INSERT INTO events (time, event, arrangement_id) VALUES (1.0, :e, 7)"), {"e": event}
                )
        assert db.upgrade_to_head(engine) == db.head_revision()
        with engine.connect() as conn:
            rows = conn.execute(sa.select(db.events.c.event, db.events.c.arrived_at).order_by(db.events.c.seq)).all()
        assert [tuple(r) for r in rows] == [
            ("payment", 0.0),
            ("installment_paid", None),
            ("broken", None),
            ("decision", 0.0),
        ]
        with engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "0002")
        with engine.connect() as conn:
            assert "arrived_at" not in {c["name"] for c in sa.inspect(conn).get_columns("events")}
            assert not sa.inspect(conn).has_table("incidents")
    finally:
        engine.dispose()
