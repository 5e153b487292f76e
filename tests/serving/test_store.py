"""The store's hot-path statements: events inserted binding only what they set, the lease and id counters."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from regsim.eventlog import EventType
from serving import db
from serving.lease import WriterLease
from serving.store import event_row, execute_many, insert_events, next_decision_and_message_ids, next_ids


def _rows() -> list[dict[str, Any]]:
    """Runs of one event type with columns set in some rows only (a default in one row, a value in the next)."""
    rows = [
        event_row(EventType.INSTALLMENT_DUE, 3.0, 1, installment=0, amount_eur=100.0),
        event_row(EventType.INSTALLMENT_DUE, 3.0, 2, installment=1, amount_eur=50.5),
        event_row(EventType.DECISION, 3.25, 1, decision_id=7, decision_kind="pre_due", propensity=0.25, policy="p"),
        event_row(EventType.DECISION, 3.25, 2, decision_id=8, decision_kind="pre_due", masked_rules="opt_out"),
        event_row(EventType.PAYMENT, 4.5, 1, amount_eur=20.0, channel="sms"),
        event_row(EventType.PAYMENT, 4.5, 2, amount_eur=30.0),
        event_row(EventType.INSTALLMENT_DUE, 5.0, 1, installment=-1, amount_eur=None),
    ]
    rows[4]["arrived_at"] = 1_700_000_000.5  # a reported event's arrival time, in one row of the run only
    return rows


def _stored(conn: sa.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sa.select(db.events).order_by(db.events.c.seq))]


def test_events_binding_only_what_they_set_are_stored_as_every_column_bound(store_url: str) -> None:
    engine = db.make_engine(store_url)
    db.upgrade_to_head(engine)
    try:
        with engine.begin() as conn:
            insert_events(conn, _rows())
            fast = _stored(conn)
            conn.execute(sa.delete(db.events))
            execute_many(conn, db.events.insert(), _rows())  # every column bound
            full = _stored(conn)
    finally:
        engine.dispose()
    # The same values in the same order (seq goes on counting: compare without it).
    assert [r[1:] for r in fast] == [r[1:] for r in full]
    assert len(fast) == len(_rows())
    assert fast[4][-1] == 1_700_000_000.5 and fast[5][-1] is None  # arrived_at bound in that run only


def test_the_lease_check_and_id_counters_run_inside_the_transaction(store_url: str) -> None:
    engine = db.make_engine(store_url)
    db.upgrade_to_head(engine)
    try:
        lease = WriterLease(engine)
        with engine.begin() as conn:
            lease.confirm(conn)
            first = next_ids(conn, "decision", 3)
        try:
            with engine.begin() as conn:
                rolled = next_ids(conn, "decision", 2)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        with engine.begin() as conn:
            after = next_ids(conn, "decision", 1)
        assert rolled == [first[-1] + 1, first[-1] + 2] and after == [first[-1] + 1]  # the rollback undid it
        newer = WriterLease(engine)  # a second server takes the store over
        with engine.begin() as conn:
            newer.confirm(conn)
        with engine.begin() as conn:
            try:
                lease.confirm(conn)
            except Exception as exc:
                assert type(exc).__name__ == "LeaseLostError"
            else:
                raise AssertionError("the older server still confirmed its lease")
    finally:
        engine.dispose()


def test_decision_and_message_ids_come_from_their_own_counters_in_one_statement(store_url: str) -> None:
    engine = db.make_engine(store_url)
    db.upgrade_to_head(engine)
    try:
        with engine.begin() as conn:
            decisions, messages = next_ids(conn, "decision", 2), next_ids(conn, "message", 5)
            both = next_decision_and_message_ids(conn, 3, 1)
            alone = next_decision_and_message_ids(conn, 2, 0)  # (no contact: no message id)
    finally:
        engine.dispose()
    assert both == ([decisions[-1] + 1, decisions[-1] + 2, decisions[-1] + 3], [messages[-1] + 1])
    assert alone == ([decisions[-1] + 4, decisions[-1] + 5], [])
