"""The store's hot-path statements: events inserted binding only what they set, the lease and id counters."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from regsim.eventlog import EventType
from serving import db
from serving.lease import WriterLease, confirm_and_commit
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
            execute_many(conn, db.events.insert(), _rows())  # every column bound (on PostgreSQL, as arrays)
            full = _stored(conn)
            conn.execute(sa.delete(db.events))
            conn.execute(db.events.insert(), _rows())  # the reference: SQLAlchemy's own insert, row by row
            reference = _stored(conn)
    finally:
        engine.dispose()
    # The same values in the same order (seq goes on counting: compare without it).
    assert [r[1:] for r in fast] == [r[1:] for r in full] == [r[1:] for r in reference]
    assert len(fast) == len(_rows())
    assert fast[4][-1] == 1_700_000_000.5 and fast[5][-1] is None  # arrived_at bound in that run only


def test_many_rows_keep_their_order_and_the_columns_their_checks(store_url: str) -> None:
    """Rows inserted together keep the order given (the log's ``seq``), and a value too long for its column is
    refused as when bound alone (PostgreSQL binds columns as arrays: a cast must not cut it)."""
    rows = [event_row(EventType.PAYMENT, 100.0 - k, k, amount_eur=float(k)) for k in range(60)]
    # Values an array literal must quote or spell out (PostgreSQL binds the columns of many rows as arrays).
    awkward = ['a "quoted", {braced} name', "back\\slash", "NULL", "", " padded ", "\u00e9t\u00e9"]
    floats = [0.1 + 0.2, 1e-05, -0.0, 1.7976931348623157e308, 5e-324, float("inf")]
    rows += [
        event_row(EventType.DECISION, 200.0, 100 + k, decision_id=k, policy=name, propensity=x, masked_rules=None)
        for k, (name, x) in enumerate(zip(awkward, floats, strict=True))
    ]
    # A run whose strings need no escaping (quoted all the same) after one of another type.
    rows.append(event_row(EventType.PAYMENT, 201.0, 106, amount_eur=None))
    plain = ["NULL", "", " padded ", "a,b", "{x}"]
    rows += [event_row(EventType.DECISION, 202.0, 107 + k, decision_id=10 + k, policy=p) for k, p in enumerate(plain)]
    message = {
        "message_id": 1,
        "arrangement_id": 1,
        "decision_id": 1,
        "installment": 0,
        "channel": "sms",
        "purpose": "reminder",
        "send_time": 1.5,
        "state": "pending",
        "state_time": None,
    }
    engine = db.make_engine(store_url)
    db.upgrade_to_head(engine)
    try:
        with engine.begin() as conn:
            insert_events(conn, rows)
            order = sa.select(db.events.c.arrangement_id).order_by(db.events.c.seq)
            stored = [int(a) for a in conn.scalars(order)]
            execute_many(conn, db.messages.insert(), [message, {**message, "message_id": 2, "state_time": 2.0}])
            states = [tuple(r) for r in conn.execute(sa.select(db.messages.c.message_id, db.messages.c.state_time))]
            fast = _stored(conn)
            conn.execute(sa.delete(db.events))
            conn.execute(db.events.insert(), rows)  # SQLAlchemy's own insert, row by row
            assert [r[1:] for r in fast] == [r[1:] for r in _stored(conn)]
        assert stored == [*range(60), *range(100, 112)]  # arrangement ids, in the order given
        assert sorted(states) == [(1, None), (2, 2.0)]
        if engine.dialect.name == "postgresql":  # SQLite does not enforce a string's length
            too_long = [{**message, "message_id": 4}, {**message, "message_id": 3, "channel": "x" * 17}]
            with pytest.raises(Exception, match="too long"), engine.begin() as conn:
                execute_many(conn, db.messages.insert(), too_long)
    finally:
        engine.dispose()


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


def test_the_confirmation_sent_with_the_commit_commits_only_what_the_lease_and_counters_allow(
    postgres_server: Any,
) -> None:
    """PostgreSQL: the overlapped path's confirmation and COMMIT in one simple query commit the transaction
    when the lease and the counters are as expected, and otherwise fail before the COMMIT, storing nothing -
    a missing counter row included (which :meth:`WriterLease.confirm_with_ids` sees from the row count)."""
    engine = db.make_engine(postgres_server.create_database("confirm_and_commit"))
    db.upgrade_to_head(engine)
    try:
        lease = WriterLease(engine)

        def counters() -> dict[str, int]:
            with engine.connect() as conn:
                return {k: int(v) for k, v in conn.execute(sa.select(db.counters.c.name, db.counters.c.value))}

        def attempt(was: dict[str, int], now: dict[str, int], marker: int) -> bool:
            """Whether the transaction (inserting a fallback row tagged ``marker``) committed."""
            with engine.connect() as conn:
                tx = conn.begin()
                row = {"decision_id": marker, "arrangement_id": 1, "time": 0.0, "active_policy": "p"}
                conn.execute(sa.insert(db.fallbacks), {**row, "reason": "error", "detail": ""})
                try:
                    confirm_and_commit(conn, lease.confirm_and_commit_sql(was, now))
                except Exception:
                    tx.rollback()
                    return False
                tx.commit()
            with engine.connect() as conn:
                found = conn.execute(sa.select(db.fallbacks.c.decision_id).where(db.fallbacks.c.decision_id == marker))
                return found.first() is not None

        start = counters()
        was = {"decision": start["decision"], "message": start["message"]}
        now = {"decision": was["decision"] + 3, "message": was["message"] + 1}
        assert attempt(was, now, 1)
        assert counters() == {**start, **now}
        assert not attempt(was, {"decision": 99, "message": 99}, 2)  # a stale copy of the counters
        assert counters() == {**start, **now}
        newer = WriterLease(engine)  # a second server takes the store over
        assert not attempt(now, {"decision": 50, "message": 50}, 3)
        assert newer.generation != lease.generation and counters()["decision"] == now["decision"]
        lease = newer
        with engine.begin() as conn:
            conn.execute(sa.delete(db.counters).where(db.counters.c.name == "message"))
        assert not attempt(now, {"decision": now["decision"] + 1, "message": now["message"]}, 4)  # a row missing
        assert counters()["decision"] == now["decision"]
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
