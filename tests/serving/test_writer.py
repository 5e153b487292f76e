"""The fast write path: write-through replay cache, group commit, bulk replay, and the writer lease.

* The cache is only an optimisation: a server whose cache is emptied before every request (so every request
  rebuilds its state from the store), and a server restarted midway, answer exactly as a warm one does.
* Group commit: requests processed in one transaction are each accepted or refused on their own, every
  accepted one is in the store, and a refused one leaves no trace in the store or the cache. Concurrent
  clients all get their answers, and every acknowledged decision is in the store.
* A second server on the same store takes the lease; the first one then refuses writes with 503.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import agents
from regsim import simulate
from regsim.config import load_world_config
from serving import db, schemas
from serving.app import create_app
from serving.refusals import ConflictError, NotFoundError
from serving.settings import DEFAULT_POPULATION
from serving.writer import Outcome, WriteOp
from tests.serving.commit_failure import fail_a_commit
from tests.serving.conftest import AUTH, make_settings, replay_through_api


class _ColdClient:
    """A test client whose server forgets its replay cache before every request."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def post(self, *args: Any, **kwargs: Any) -> Any:
        self.client.app.state.regsim.cache.clear()  # type: ignore[attr-defined]
        return self.client.post(*args, **kwargs)


def _in_threads(fn: Callable[[int], None], ids: list[int]) -> None:
    """``fn(aid)`` for every id at once, one client thread each; returns when all are done."""
    threads = [threading.Thread(target=fn, args=(a,)) for a in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _replay(store: str, events: Any, cold: bool) -> list[dict[str, Any]]:
    with TestClient(create_app(make_settings(store)), headers=AUTH) as client:
        pairs = replay_through_api(_ColdClient(client) if cold else client, events)  # type: ignore[arg-type]
    return [served for _, served in pairs]


def test_a_cold_cache_gives_the_same_answers_as_a_warm_one(tmp_path: Path) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    result = simulate(config, agents.make("static-dunning"), arrangements=6, months=3, seed=5)
    warm = _replay(f"sqlite:///{tmp_path / 'warm.db'}", result.events, cold=False)
    cold = _replay(f"sqlite:///{tmp_path / 'cold.db'}", result.events, cold=True)
    assert warm, "the run made no decisions"
    assert cold == warm


def _register_and_plan(client: TestClient, ids: list[int]) -> None:
    for aid in ids:
        body = {
            "arrangement_id": aid,
            "time": 0.0,
            "debt_eur": 900.0 + aid,
            "n_installments": 3 + aid % 5,
            "due_day": 5,
        }
        assert client.post("/v1/arrangements", json=body).status_code == 201
    asks = [{"arrangement_id": a, "kind": "plan_created", "time": 0.0} for a in ids]
    assert client.post("/v1/decisions/batch", json={"decisions": asks}).status_code == 200


def _script(client: TestClient, ids: list[int], days: list[float]) -> list[Any]:
    out = []
    for day in days:
        for aid in ids:
            out.append(
                client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", "time": day}).json()
            )
        payment = {"type": "payment", "arrangement_id": ids[0], "time": day + 0.5, "amount_eur": 50.0}
        out.append(client.post("/v1/events", json=payment).json())
    return out


def test_a_restarted_server_answers_as_one_that_kept_running(store_url: str, tmp_path: Path) -> None:
    ids = [1, 2, 3]
    other = f"sqlite:///{tmp_path / 'running.db'}"
    with TestClient(create_app(make_settings(other)), headers=AUTH) as client:
        _register_and_plan(client, ids)
        kept = _script(client, ids, [2.0, 9.0, 40.0])
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as client:
        _register_and_plan(client, ids)
        restarted = _script(client, ids, [2.0])
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as client:
        restarted += _script(client, ids, [9.0, 40.0])
    assert restarted == kept


def test_a_group_accepts_and_refuses_each_request_on_its_own(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    app = create_app(make_settings(store))
    with TestClient(app, headers=AUTH) as client:
        _register_and_plan(client, [1, 2, 3])
        st = app.state.regsim
        before = st.cache.replay.subset([1, 2, 3])
        decide = schemas.DecisionIn.model_validate
        group = [
            WriteOp("decide", decide({"arrangement_id": 1, "kind": "pre_due", "time": 3.0})),
            WriteOp("decide", decide({"arrangement_id": 99, "kind": "pre_due", "time": 3.0})),  # not registered
            WriteOp("decide", decide({"arrangement_id": 2, "kind": "pre_due", "time": 38.0, "installment": 50})),
            WriteOp("decide", decide({"arrangement_id": 1, "kind": "pre_due", "time": 3.5})),  # same arrangement
            WriteOp("decide", decide({"arrangement_id": 3, "kind": "plan_created", "time": 3.0})),  # not offered
            WriteOp("decide", decide({"arrangement_id": 3, "kind": "pre_due", "time": 4.0})),
        ]
        results = st.writer._run(group)
        assert [type(r) for r in results] == [
            Outcome,
            NotFoundError,
            ConflictError,  # installment 50 is not in its plan: a conflict with the arrangement's state
            Outcome,
            ConflictError,
            Outcome,
        ]
        # The refused point of arrangement 2 booked its installments (day 38) in the workspace: not kept.
        after = st.cache.replay.subset([2]).ledger.row_arrays()
        ref = before.ledger.row_arrays()
        for name in ("sched.came_due", "sched.miss_ptr", "booked_day", "history.missed"):
            assert np.array_equal(after[name][[0]], ref[name][[1]]), name
        decided = [r.body for r in results if isinstance(r, Outcome)]
        ids = [int(b.split('"decision_id":')[1].split(",")[0]) for b in decided]
        with st.engine.connect() as conn:
            stored = conn.execute(
                sa.select(db.events.c.decision_id, db.events.c.arrangement_id).where(db.events.c.decision_id.in_(ids))
            ).all()
            booked_for_2 = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.events)
                .where(db.events.c.arrangement_id == 2, db.events.c.event == "installment_due")
            ).scalar_one()
        assert sorted(a for _, a in stored) == [1, 1, 3]
        assert booked_for_2 == 0
        # What the group left in the cache is what the store gives a cold start.
        overview = client.get("/v1/arrangements/2").json()
        st.cache.clear()
        assert client.get("/v1/arrangements/2").json() == overview
        again = client.post("/v1/decisions", json={"arrangement_id": 2, "kind": "pre_due", "time": 5.0})
        assert again.status_code == 200, again.text


def test_concurrent_decisions_are_all_acknowledged_and_all_stored(store_url: str) -> None:
    app = create_app(make_settings(store_url))
    ids = list(range(1, 25))
    answers: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()
    with TestClient(app, headers=AUTH) as client:
        _register_and_plan(client, ids)

        def post(aid: int) -> None:
            for k in range(3):
                body = {"arrangement_id": aid, "kind": "pre_due", "time": 3.0 + k}
                r = client.post("/v1/decisions", json=body, headers={"Idempotency-Key": f"c-{aid}-{k}"})
                with lock:
                    (answers.append(r.json()) if r.status_code == 200 else errors.append(r.text))

        _in_threads(post, ids)
        st = app.state.regsim
        with st.engine.connect() as conn:
            stored = dict(
                conn.execute(
                    sa.select(db.events.c.decision_id, db.events.c.arrangement_id).where(
                        db.events.c.event == "decision"
                    )
                ).all()
            )
        groups = st.metrics.registry.get_sample_value("regsim_write_group_requests_sum")
    assert not errors, errors[:3]
    assert len(answers) == 3 * len(ids)
    assert len({a["decision_id"] for a in answers}) == len(answers)
    assert all(stored.get(a["decision_id"]) == a["arrangement_id"] for a in answers)
    assert groups is not None and groups >= len(answers)


def test_a_second_server_takes_the_store_over(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    body = {"arrangement_id": 1, "time": 0.0, "debt_eur": 900.0, "n_installments": 3, "due_day": 5}
    with TestClient(create_app(make_settings(store)), headers=AUTH) as first:
        assert first.post("/v1/arrangements", json=body).status_code == 201
        with TestClient(create_app(make_settings(store)), headers=AUTH) as second:
            refused = first.post("/v1/decisions", json={"arrangement_id": 1, "kind": "plan_created", "time": 0.0})
            assert refused.status_code == 503
            assert "another server process" in refused.json()["detail"]
            taken = second.post("/v1/decisions", json={"arrangement_id": 1, "kind": "plan_created", "time": 0.0})
            assert taken.status_code == 200, taken.text


def test_a_second_server_takes_a_postgresql_store_over_from_the_overlapped_path(postgres_server: Any) -> None:
    """PostgreSQL: the overlapped path confirms the lease with its commit; once a newer server holds the lease,
    the older one's decisions are refused with 503 and none of them is stored."""
    store = postgres_server.create_database("takeover_overlapped")
    with TestClient(create_app(make_settings(store)), headers=AUTH) as first:
        assert first.app.state.regsim.writer.overlap  # type: ignore[attr-defined]
        _register_and_plan(first, [1, 2])
        ask = {"arrangement_id": 1, "kind": "pre_due", "time": 1.0}
        assert first.post("/v1/decisions", json=ask).status_code == 200
        second_app = create_app(make_settings(store))
        with TestClient(second_app, headers=AUTH) as second:
            refused = first.post("/v1/decisions", json={"arrangement_id": 2, "kind": "pre_due", "time": 1.0})
            assert refused.status_code == 503, refused.text
            assert "another server process" in refused.json()["detail"]
            with second_app.state.regsim.engine.connect() as conn:
                stored = conn.execute(
                    sa.select(db.events.c.arrangement_id).where(
                        db.events.c.event == "decision", db.events.c.decision_kind == "pre_due"
                    )
                ).all()
            assert [r[0] for r in stored] == [1]  # the refused decision left nothing
            taken = second.post("/v1/decisions", json={"arrangement_id": 2, "kind": "pre_due", "time": 1.0})
            assert taken.status_code == 200, taken.text


def _after_refusal(store: str, refusal: dict[str, Any] | None) -> tuple[Any, Any]:
    app = create_app(make_settings(store))
    with TestClient(app, headers=AUTH) as client:
        _register_and_plan(client, [1])
        if refusal is not None:
            path, body, status = refusal["path"], refusal["body"], refusal["status"]
            assert client.post(path, json=body).status_code == status
        ask = {"arrangement_id": 1, "kind": "pre_due", "time": 1.0}
        decision = client.post("/v1/decisions", json=ask).json()
        return decision, client.get("/v1/arrangements/1").json()


@pytest.mark.parametrize(
    "refusal",
    [
        {
            "path": "/v1/arrangements",
            "body": {"arrangement_id": 1, "time": 0.0, "debt_eur": 1.0, "n_installments": 3, "due_day": 5},
            "status": 409,
        },
        # Late enough to book installments before it is refused for its amount: nothing may stay booked.
        {
            "path": "/v1/events",
            "body": {"type": "payment", "arrangement_id": 1, "time": 38.0, "amount_eur": 1e6},
            "status": 409,  # more than the balance: a conflict with the arrangement's state
        },
    ],
    ids=["register", "event"],
)
def test_a_refused_request_alone_leaves_no_trace(tmp_path: Path, refusal: dict[str, Any]) -> None:
    expected = _after_refusal(f"sqlite:///{tmp_path / 'plain.db'}", None)
    assert _after_refusal(f"sqlite:///{tmp_path / 'refused.db'}", refusal) == expected


def test_masked_options_are_those_of_each_context() -> None:
    from regsim.decision import PART_NAMES
    from regsim.replay import contexts_from_log
    from serving.responses import ResponseParts as _Responses

    config = load_world_config(DEFAULT_POPULATION)
    result = simulate(config, agents.make("static-dunning"), arrangements=20, months=3, seed=2)
    batch = contexts_from_log(result.events, config)
    assert batch is not None
    got, names, plain = _Responses(batch.space).masked(batch)
    for i in range(len(batch)):
        hit = [n for n, f in batch.forbidden.items() if n != "not_applicable" and f[i].any()]
        assert names[i] == ",".join(hit)
        want = []
        for (part, option), rules in sorted(batch[i].masked_by.items()):
            shown = [r for r in rules if r != "not_applicable"]
            if shown:
                want.append((PART_NAMES[part], batch.space.option_labels(part)[option], shown))
        assert [(m.part, m.option, m.rules) for m in got[i]] == want
        assert plain[i] == [m.model_dump() for m in got[i]]
    assert any(got), "no option was masked in the run"


@pytest.mark.parametrize("first", [1, 2], ids=["other-arrangement", "same-arrangement"])
def test_a_refused_batch_in_a_group_is_undone(tmp_path: Path, first: int) -> None:
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}"))
    with TestClient(app, headers=AUTH) as client:
        _register_and_plan(client, [1, 2])
        st = app.state.regsim
        batch = schemas.BatchDecisionIn.model_validate
        ok = batch({"decisions": [{"arrangement_id": first, "kind": "pre_due", "time": 3.0}]})
        # Books arrangement 2's installments up to day 38 (one missed), then is refused for its installment.
        bad = batch({"decisions": [{"arrangement_id": 2, "kind": "pre_due", "time": 38.0, "installment": 50}]})
        results = st.writer._run([WriteOp("batch", ok), WriteOp("batch", bad)])
        assert [type(r) for r in results] == [Outcome, ConflictError]
        cached = st.cache.replay.subset([2]).ledger.row_arrays()
        st.cache.clear()
        with st.engine.connect() as conn:
            rebuilt = st.cache.workspace(conn, [2]).replay.ledger.row_arrays()
        for name, value in cached.items():
            assert np.array_equal(value, rebuilt[name], equal_nan=True), name


def _lingering_writer(rounds: int, max_s: float = 1.0, max_group: int = 2_000) -> Any:
    from serving.writer import Writer

    # _linger only looks at the queue and the event loop: the store, service and cache are not needed.
    return Writer(None, None, None, None, None, max_group=max_group, linger_rounds=rounds, linger_max_s=max_s)  # type: ignore[arg-type]


async def _arrive(writer: Any, after_rounds: int, aid: int) -> None:
    """Queue a decision request after ``after_rounds`` rounds of the event loop (a request still being read)."""
    import asyncio

    for _ in range(after_rounds):
        await asyncio.sleep(0)
    writer._queue.append(WriteOp("decide", schemas.DecisionIn(arrangement_id=aid, kind="pre_due", time=3.0)))


@pytest.mark.parametrize("rounds", [0, 3, 6])
def test_the_writer_lingers_until_the_loop_queues_nothing_new(rounds: int) -> None:
    import asyncio

    async def scenario() -> list[int]:
        writer = _lingering_writer(rounds)
        # Requests on their way: each arrives 2 rounds after the one before; the last one after a pause of 5.
        arrivals = [0, 2, 4, 6, 11]
        tasks = [asyncio.create_task(_arrive(writer, r, aid)) for aid, r in enumerate(arrivals, start=1)]
        await asyncio.sleep(0)  # the first request is queued: the writer wakes up
        await writer._linger()
        taken = [op.body.arrangement_id for op in writer._take()]
        await asyncio.gather(*tasks)
        return taken

    taken = asyncio.run(scenario())
    if rounds == 0:
        assert taken == [1]  # no lingering: only what was queued
    elif rounds == 3:
        assert taken == [1, 2, 3, 4]  # gaps of 2 rounds are waited for, the pause of 5 is not
    else:
        assert taken == [1, 2, 3, 4, 5]


def test_lingering_stops_when_the_group_is_full_or_the_time_is_up() -> None:
    import asyncio

    async def stream(writer: Any, n: int) -> None:
        for aid in range(2, n + 2):
            await _arrive(writer, 1, aid)

    async def scenario(max_s: float, max_group: int) -> tuple[int, float]:
        writer = _lingering_writer(rounds=4, max_s=max_s, max_group=max_group)
        await _arrive(writer, 0, 1)
        feeder = asyncio.create_task(stream(writer, 100_000))
        started = time.perf_counter()
        await writer._linger()
        waited = time.perf_counter() - started
        size = len(writer._queue)
        feeder.cancel()
        return size, waited

    size, _ = asyncio.run(scenario(max_s=60.0, max_group=50))
    assert size == 50  # a full group is taken at once
    size, waited = asyncio.run(scenario(max_s=0.05, max_group=10**9))
    assert 1 < size < 100_000 and waited < 5.0  # a steady stream does not keep the group waiting


def test_a_failed_commit_of_an_overlapped_group_is_run_again(postgres_server: Any, monkeypatch: Any) -> None:
    """PostgreSQL: groups are worked on while the one before commits; one commit fails on purpose.

    The failed group, and the group worked on top of it, are run again without overlap: every request is
    answered once, no decision id is given twice, every acknowledged decision is stored once, and the id
    counters are those of the decisions stored.
    """
    import serving.writer as writer_module

    prepared = writer_module.Writer._prepare
    overlapped = [0]
    failure = fail_a_commit(monkeypatch)

    def counting_prepare(self: Any, group: Any, before: Any) -> Any:
        overlapped[0] += before is not None and not before.done()
        return prepared(self, group, before)

    monkeypatch.setattr(writer_module.Writer, "_prepare", counting_prepare)
    store = postgres_server.create_database("overlap_commit_failure")
    app = create_app(make_settings(store))
    ids = list(range(1, 25))
    answers: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()
    with TestClient(app, headers=AUTH) as client:
        assert app.state.regsim.writer.overlap
        _register_and_plan(client, ids)
        failure.fail_after(4)  # a commit among the concurrent decisions'

        def post(aid: int) -> None:
            for k in range(4):
                body = {"arrangement_id": aid, "kind": "pre_due", "time": 3.0 + k}
                r = client.post("/v1/decisions", json=body)
                with lock:
                    (answers.append(r.json()) if r.status_code == 200 else errors.append(r.text))

        _in_threads(post, ids)
        with app.state.regsim.engine.connect() as conn:
            stored = conn.execute(
                sa.select(db.events.c.decision_id, db.events.c.arrangement_id).where(db.events.c.event == "decision")
            ).all()
            counters = dict(conn.execute(sa.select(db.counters.c.name, db.counters.c.value)).all())
    assert failure.commits > failure.fail_at and overlapped[0] > 0  # the failure happened, and groups did overlap
    assert not errors, errors[:3]
    assert len(answers) == 4 * len(ids)
    assert len({a["decision_id"] for a in answers}) == len(answers)
    by_id = dict(stored)
    assert len(by_id) == len(stored)  # no decision stored twice
    assert all(by_id.get(a["decision_id"]) == a["arrangement_id"] for a in answers)
    assert counters["decision"] == max(by_id)


def test_connections_kept_between_overlapped_groups_that_the_database_dropped_are_replaced(
    postgres_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: the overlapped path keeps its connections between groups (no checkout, no pre-ping).

    Kept connections are used again; when the database server has dropped them (here: every backend of the
    store terminated), the groups that meet them are rolled back and run again on fresh connections: every
    request is answered 200 and every acknowledged decision is stored once.
    """
    store = postgres_server.create_database("kept_connections_dropped")
    app = create_app(make_settings(store))
    ids = list(range(1, 17))
    answers: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def post_all(client: TestClient, time: float) -> None:
        def post(aid: int) -> None:
            r = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", "time": time})
            with lock:
                (answers.append(r.json()) if r.status_code == 200 else errors.append(r.text))

        _in_threads(post, ids)

    with TestClient(app, headers=AUTH) as client:
        writer = app.state.regsim.writer
        assert writer.overlap
        _register_and_plan(client, ids)
        post_all(client, 3.0)
        kept = [conn for conn, _ in writer._connections._kept]
        assert kept, "no connection was kept after the overlapped groups"
        held = writer._connections
        used_again = held.take()
        assert used_again is kept[0]  # a fresh kept connection is used again, not checked out anew
        held._kept.appendleft((used_again, 0.0))  # (given back as if long idle: closed on take)
        other_one = held.take()
        assert other_one is not used_again and used_again.closed
        held._kept.appendleft((other_one, time.monotonic()))
        with sa.create_engine(db.normalise_url(store)).connect() as other:
            other.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        with caplog.at_level(logging.WARNING, logger="regsim.serving"):
            for day in (4.0, 5.0, 6.0):
                post_all(client, day)
        assert "overlapped write group" in caplog.text  # a group met the dropped connection, and was run again
        with app.state.regsim.engine.connect() as conn:
            stored = conn.execute(
                sa.select(db.events.c.decision_id, db.events.c.arrangement_id).where(db.events.c.event == "decision")
            ).all()
    assert not errors, errors[:3]
    assert len(answers) == 4 * len(ids)
    by_id = dict(stored)
    assert len(by_id) == len(stored)
    assert all(by_id.get(a["decision_id"]) == a["arrangement_id"] for a in answers)


def test_a_group_run_again_after_a_failure_counts_its_requests_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Metrics count what committed: a group that fails after its work and is run again one request at a time
    (the serial path's retry) counts each of its events and decisions once, not once per attempt."""
    from pydantic import TypeAdapter

    import serving.writer as writer_module

    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}"))
    with TestClient(app, headers=AUTH) as client:
        _register_and_plan(client, [1, 2])
        st = app.state.regsim
        before = client.get("/metrics").text
        real = writer_module.Writer._work
        failed: list[int] = []

        def failing_once(self: Any, conn: Any, group: list[WriteOp]) -> Any:
            out = real(self, conn, group)
            if len(group) > 1 and not failed:
                failed.append(len(group))
                raise RuntimeError("the group's transaction fails after its work")
            return out

        monkeypatch.setattr(writer_module.Writer, "_work", failing_once)
        event = TypeAdapter(schemas.EventIn).validate_python
        group = [
            WriteOp("event", event({"arrangement_id": a, "type": "payment", "amount_eur": 10.0, "time": 1.0}))
            for a in (1, 2)
        ] + [WriteOp("decide", schemas.DecisionIn(arrangement_id=1, kind="follow_up", time=1.5))]
        results = st.writer._run(group)
        assert failed == [3] and [type(r) for r in results] == [Outcome] * 3

        def count(text: str, line: str) -> float:
            return sum(float(t.split()[-1]) for t in text.splitlines() if t.startswith(line))

        after = client.get("/metrics").text
        assert (
            count(after, 'regsim_events_total{type="payment"}') - count(before, 'regsim_events_total{type="payment"}')
            == 2
        )
        assert count(after, "regsim_decisions_total{") - count(before, "regsim_decisions_total{") == 1
