"""Late events beside concurrent decisions on the same arrangement (many clients at once, both stores).

On PostgreSQL the writer works on a group of decisions while the group before it commits
(:mod:`serving.writer`); a group with anything else (a late payment reads its arrangement's stored log) waits
for that commit first. Here that rule is exercised for real: for every arrangement one client posts a
reminder's ``message_sent`` and three decisions, one after the other, while another client posts a payment
stamped before the decisions, so that it arrives before, beside or after decisions in flight (a late event
when a decision, or the reminder's send, stamped after it arrived first). Checked afterwards:

* every acknowledged request is stored once (each decision id once, on its arrangement; each payment once),
  nothing else is stored, and no request failed but the ``message_sent`` that in-order processing refuses too;
* each arrangement's state (the stored log, its messages, its row, the overview and the cached ledger, as
  :func:`tests.serving.test_late_events._state` reads them) is that of a fresh serial server given the same
  requests in the order the concurrent run applied them (their ``arrived_at``): overlapping changes nothing.
  (Not "in event-time order": a decision taken before a late payment arrived was taken without it, and in
  event-time order the policy would take another. That any arrival order of production events gives the
  state of event-time order is the property test of :mod:`tests.serving.test_late_events`.) On PostgreSQL
  the writer is slowed so that payments do come while a group of their arrangement commits, and that is
  checked to have happened; with the wait rule broken (events allowed to overlap) acknowledged decisions
  are lost and the test fails;
* a reminder reported sent after the time of a payment is one incident, counted once in the store and in
  ``/metrics``, whichever of the two arrived first (the payment late, or the send after the payment had
  cancelled the reminder).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving import db
from serving.app import create_app
from tests.serving.conftest import AUTH, make_settings
from tests.serving.test_late_events import _metric, _start, _state

SEED = 20261203
#: Arrangements whose payment falls between their decisions (the state must be in-order's).
MAIN = list(range(1, 17))
#: Arrangements whose payment is stamped before their reminder was sent (an incident, or a refused send).
MOOT = list(range(101, 107))
DECISION_TIMES = (25.0, 26.0, 27.0)
#: The main payments: after the reminder went out (about 24.4), before the decisions (a decision is taken at its
#: arrangement's present: one stamped before an event that arrived first is refused, in order too).
PAYMENT_TIME = {"main": 24.9, "moot": 23.0}


def _post(client: TestClient, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = client.post(path, json=body)
    return r.status_code, r.json()


def _run_concurrently(
    client: TestClient, pre: dict[int, dict[str, Any]], seed: int, in_flight: dict[int, list[threading.Event]] | None
) -> dict[str, Any]:
    """Every arrangement's decision client and payment client at once; what each request was answered.

    Each payment client waits until its arrangement's decision client has been answered ``k`` times (``k``
    drawn from 0 to 4; 0: it does not wait), or, with ``in_flight`` (the overlapping writer), until the writer
    starts on the group holding the decision client's ``k``-th request, then posts at once: beside the
    decision client's next request, or in the group after the one being worked on, which then commits. It
    is late whenever a decision (or the reminder's send) stamped after it arrived first.
    """
    rng = np.random.default_rng(seed)
    after = {aid: int(rng.integers(0, 5)) for aid in pre}
    answered = {aid: [threading.Event() for _ in range(5)] for aid in pre}
    gates = answered if in_flight is None else in_flight
    for aid in pre:
        gates[aid][0].set()
    answers: dict[str, Any] = {"decisions": [], "sent": {}, "payments": {}, "errors": [], "after": after}
    lock = threading.Lock()
    start = threading.Barrier(2 * len(pre))

    def decide(aid: int) -> None:
        sent = {"arrangement_id": aid, "type": "message_sent", "message_id": pre[aid]["message_id"]}
        start.wait()
        code, body = _post(client, "/v1/events", {**sent, "time": pre[aid]["send_time"]})
        with lock:
            answers["sent"][aid] = (code, body)
        answered[aid][1].set()
        for k, t in enumerate(DECISION_TIMES, 2):
            code, body = _post(client, "/v1/decisions", {"arrangement_id": aid, "kind": "pre_due", "time": t})
            with lock:
                (answers["decisions"].append(body) if code == 200 else answers["errors"].append((aid, t, body)))
            answered[aid][k].set()

    def pay(aid: int) -> None:
        body = {
            "arrangement_id": aid,
            "type": "payment",
            "amount_eur": 100.0,
            "time": PAYMENT_TIME["main" if aid in MAIN else "moot"],
        }
        start.wait()
        gates[aid][after[aid]].wait(timeout=30.0)
        code, out = _post(client, "/v1/events", body)
        with lock:
            answers["payments"][aid] = (code, out)

    threads = [threading.Thread(target=f, args=(a,)) for a in pre for f in (decide, pay)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def _arrival_orders(client: TestClient, aids: list[int], since: float) -> dict[int, list[dict[str, Any]]]:
    """Each arrangement's reported events stored after ``since``, in the order they arrived (were applied)."""
    with client.app.state.regsim.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            sa.select(db.events.c.arrangement_id, db.events.c.event, db.events.c.time, db.events.c.arrived_at)
            .where(db.events.c.arrangement_id.in_(aids), db.events.c.arrived_at > since)
            .order_by(db.events.c.arrived_at, db.events.c.seq)
        ).all()
    out: dict[int, list[dict[str, Any]]] = {aid: [] for aid in aids}
    for r in rows:
        out[int(r.arrangement_id)].append({"event": r.event, "time": float(r.time)})
    return out


def _serial_reference(store: str, orders: dict[int, list[dict[str, Any]]]) -> TestClient:
    """A fresh serial server given each arrangement's requests in the order the concurrent run applied them
    (the caller closes it). Decisions are taken again, in the same states, so they are the same."""
    client = TestClient(create_app(make_settings(store)), headers=AUTH)
    client.__enter__()
    for aid, order in orders.items():
        pre = _start(client, aid)
        for e in order:
            if e["event"] == "decision":
                path, body = "/v1/decisions", {"arrangement_id": aid, "kind": "pre_due", "time": e["time"]}
            elif e["event"] == "message_sent":
                path = "/v1/events"
                body = {
                    "arrangement_id": aid,
                    "type": "message_sent",
                    "message_id": pre["message_id"],
                    "time": e["time"],
                }
            else:
                assert e["event"] == "payment", e
                path = "/v1/events"
                body = {"arrangement_id": aid, "type": "payment", "amount_eur": 100.0, "time": e["time"]}
            code, out = _post(client, path, body)
            assert code == 200, out
    return client


def _stored(client: TestClient) -> dict[str, list[tuple[Any, ...]]]:
    with client.app.state.regsim.engine.connect() as conn:  # type: ignore[attr-defined]
        decisions = conn.execute(
            sa.select(db.events.c.decision_id, db.events.c.arrangement_id).where(db.events.c.event == "decision")
        ).all()
        payments = conn.execute(
            sa.select(db.events.c.arrangement_id, db.events.c.time).where(db.events.c.event == "payment")
        ).all()
        incidents = conn.execute(sa.select(db.incidents.c.arrangement_id, db.incidents.c.message_id)).all()
    return {
        name: sorted(tuple(r) for r in rows)
        for name, rows in (("decisions", decisions), ("payments", payments), ("incidents", incidents))
    }


def _request_index(op: Any) -> tuple[int, int] | None:
    """(arrangement, index of the request in its decision client's sequence: 1 the send, 2.. the decisions)."""
    body = op.body
    if op.kind == "decide" and body.time in DECISION_TIMES:
        return int(body.arrangement_id), 2 + DECISION_TIMES.index(body.time)
    if op.kind == "event" and body.type == "message_sent":
        return int(body.arrangement_id), 1
    return None


def _watch_the_writer(
    monkeypatch: pytest.MonkeyPatch, aids: list[int]
) -> tuple[dict[int, list[threading.Event]], list[int]]:
    """On the overlapping writer: the work on a group and its commit slowed by 20 ms each (a loaded machine, a
    slow disk), an event per request set when the writer starts on its group, and a count of the payments
    whose group came while a group of the same arrangement was still committing (a late payment beside
    decisions in flight)."""
    import serving.writer as writer_module

    real_commit, real_prepare, real_overlapped = (
        writer_module._commit,
        writer_module.Writer._prepare,
        writer_module.Writer._overlapped,
    )
    in_flight = {aid: [threading.Event() for _ in range(5)] for aid in aids}
    beside = [0]

    def slow_commit(conn: Any, tx: Any) -> None:
        time.sleep(0.02)
        real_commit(conn, tx)

    def signalling_prepare(self: Any, group: Any, before: Any) -> Any:
        for op in group:
            found = _request_index(op)
            if found is not None and found[0] in in_flight:
                in_flight[found[0]][found[1]].set()
        time.sleep(0.02)  # (the payment posted now is queued while this group is worked on)
        return real_prepare(self, group, before)

    async def counting_overlapped(self: Any, loop: Any, group: Any) -> None:
        flight = self._inflight
        if flight is not None and not flight.commit.done():
            busy = {int(op.body.arrangement_id) for op in flight.group if op.kind in ("decide", "event")}
            beside[0] += sum(
                op.kind == "event" and op.body.type == "payment" and op.body.arrangement_id in busy for op in group
            )
        await real_overlapped(self, loop, group)

    monkeypatch.setattr(writer_module, "_commit", slow_commit)
    monkeypatch.setattr(writer_module.Writer, "_prepare", signalling_prepare)
    monkeypatch.setattr(writer_module.Writer, "_overlapped", counting_overlapped)
    return in_flight, beside


@pytest.mark.parametrize("round_", range(2))
def test_a_late_payment_beside_concurrent_decisions_gives_the_state_of_in_order_processing(
    store_url: str, tmp_path: Path, round_: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlapping = store_url.startswith("postgresql")
    in_flight, beside = _watch_the_writer(monkeypatch, [*MAIN, *MOOT]) if overlapping else (None, [0])
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as client:
        assert client.app.state.regsim.writer.overlap == overlapping  # type: ignore[attr-defined]
        pre = {aid: _start(client, aid) for aid in [*MAIN, *MOOT]}
        assert all(PAYMENT_TIME["moot"] < p["send_time"] < PAYMENT_TIME["main"] for p in pre.values())
        planned = set(_stored(client)["decisions"])
        since = time.time()
        answers = _run_concurrently(client, pre, SEED + round_, in_flight)
        stored = _stored(client)

        # Every acknowledged request stored once, nothing else stored; only in-order's refusals.
        assert not answers["errors"], answers["errors"][:3]
        decided = [(a["decision_id"], a["arrangement_id"]) for a in answers["decisions"]]
        assert len(decided) == len(DECISION_TIMES) * len(pre)
        ours = [d for d in stored["decisions"] if d not in planned]
        assert sorted(ours) == sorted(decided) and len(set(ours)) == len(ours)
        assert len({d for d, _ in stored["decisions"]}) == len(stored["decisions"])  # no decision id twice
        assert all(code == 200 for code, _ in answers["payments"].values()), answers["payments"]
        assert sorted(stored["payments"]) == sorted(
            (aid, PAYMENT_TIME["main" if aid in MAIN else "moot"]) for aid in pre
        )
        late = {aid for aid, (_, body) in answers["payments"].items() if body["late"]}
        assert late & set(MAIN), "no payment arrived after a decision stamped after it: the race did not happen"
        if overlapping:
            assert beside[0] > 0, "no payment came while a group of its arrangement was committing"

        # The main arrangements: the state of in-order processing.
        for aid in MAIN:
            assert answers["sent"][aid][0] == 200, answers["sent"][aid]
        orders = _arrival_orders(client, MAIN, since)
        assert all(len(o) == 2 + len(DECISION_TIMES) for o in orders.values()), orders
        reference = _serial_reference(f"sqlite:///{tmp_path / 'reference.db'}", orders)
        try:
            for aid in MAIN:
                mine, ref = _state(client, aid), _state(reference, aid)
                assert mine == ref, f"arrangement {aid} (late: {aid in late})"
        finally:
            reference.__exit__(None, None, None)

        # The moot reminders went out after the payment, whichever arrived first: an incident each, once, told
        # in the answer of the second to arrive (the late payment's, or the send's after the cancellation).
        expected_incidents = []
        for aid in MOOT:
            code, sent = answers["sent"][aid]
            assert code == 200, sent
            paid = answers["payments"][aid][1]
            second, first = (paid, sent) if paid["late"] else (sent, paid)
            assert [i["message_id"] for i in second["incidents"]] == [body_id(pre, aid)]
            assert first["incidents"] == [] and not sent["late"]
            expected_incidents.append((aid, body_id(pre, aid)))
        assert sorted(stored["incidents"]) == sorted(expected_incidents)
        assert _metric(client, 'regsim_incidents_total{kind="sent_after_payment"}') == len(expected_incidents)

    # A fresh process on the same store holds the same state.
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as again:
        for aid in MAIN:
            view = again.get(f"/v1/arrangements/{aid}")
            assert view.status_code == 200
        assert _stored(again) == stored


def body_id(pre: dict[int, dict[str, Any]], aid: int) -> int:
    """The id of the arrangement's pre-due reminder."""
    return int(pre[aid]["message_id"])
