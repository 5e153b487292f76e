"""The online learner after late events: the statistics of in-order processing of the re-derived log.

A late payment re-derives its arrangement's past (:mod:`serving.late_events`): installments paid instead of
missed, an arrangement completed. The linear bandit learning online must then hold what it would hold had it
learned from the re-derived log in event-time order (:meth:`serving.online.OnlineLearner.rederived`). The truth
is computed here independently of the server: a fresh copy of the policy, regsim's outcome matcher, the final
stored log processed day boundary by day boundary (decisions registered at their day, the events of a day
observed at the boundary after it, then ``mature`` and ``update``), as the world and the server's learner do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from regsim.config import load_world_config
from regsim.eventlog import EventType, event_codes
from regsim.feedback import FEEDBACK_EVENTS, OutcomeMatcher
from regsim.rewards import RewardCosts, resolve_reward
from serving import db
from serving.app import create_app
from serving.online import OnlineLearner, _outcome_columns
from serving.policies import load
from serving.settings import DEFAULT_POPULATION
from serving.store import iter_event_tables
from serving.taken_contexts import taken_contexts
from tests.serving.conftest import AUTH, make_settings

Post = Callable[[str, dict[str, Any]], dict[str, Any]]


def poster(api: TestClient) -> Post:
    """``post(path, body)`` through ``api``: asserts a 200 or 201 and returns the JSON answer."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = api.post(path, json=body)
        assert r.status_code in (200, 201), r.text
        out: dict[str, Any] = r.json()
        return out

    return post


def open_with_pre_due_decisions(post: Post, n: int) -> None:
    """Arrangements 1..n registered at day 0 (EUR 300 in 3 installments, due day 5), their plan-creation
    decisions taken, the clock moved to day 30 and their pre-due decisions taken at day 33."""
    for aid in range(1, n + 1):
        body = {"arrangement_id": aid, "time": 0.0, "debt_eur": 300.0, "n_installments": 3, "due_day": 5}
        post("/v1/arrangements", body)
    ids = range(1, n + 1)
    post(
        "/v1/decisions/batch", {"decisions": [{"arrangement_id": a, "kind": "plan_created", "time": 0.0} for a in ids]}
    )
    post("/v1/clock", {"time": 30.0})
    post("/v1/decisions/batch", {"decisions": [{"arrangement_id": a, "kind": "pre_due", "time": 33.0} for a in ids]})


def _in_order_truth(artifact: Path, engine: sa.Engine, last_day: int, taken: dict[int, Any]) -> Any:
    """The policy after learning, in event-time order, from the stored log up to the boundary ``last_day``.

    ``taken``: decision id -> (day, context, action, propensity) as the server decided (a decision is learned
    in the context it was taken in, not in one rebuilt from a log that a later late event rewrote).
    """
    config = load_world_config(DEFAULT_POPULATION)
    policy: Any = load(str(artifact), config.rules.version).policy
    matcher = OutcomeMatcher(
        float(policy.feedback_window_days), resolve_reward(policy.feedback_reward), RewardCosts.of(config)
    )
    with engine.connect() as conn:
        log = pa.concat_tables(list(iter_event_tables(conn, config.simulation.start_date)))
    # Event-time order within each arrangement (the stored order); across arrangements it does not matter.
    codes = event_codes(log)
    time = log.column("time").to_numpy()
    stored = set(log.column("decision_id").to_numpy()[codes == EventType.DECISION].tolist())
    assert stored == set(taken)
    rows = log.to_pylist()
    for b in range(min(int(d) for d, *_ in taken.values()) + 1, last_day + 1):
        for decision_id, (day, context, action, propensity) in sorted(taken.items()):
            if day == b - 1:
                matcher.add(np.array([decision_id]), float(day), context, action, propensity)
        for e in np.flatnonzero((time >= b - 1) & (time < b)).tolist():
            event = EventType(int(codes[e]))
            if event in FEEDBACK_EVENTS:
                matcher.observe(event, _outcome_columns(rows[e]))
        feedback = matcher.mature(float(b))
        if feedback is not None:
            policy.update(feedback)
    return policy


def _assert_same_statistics(served: Any, truth: Any) -> None:
    assert served.learned == truth.learned
    for name, stats in truth.arms.items():
        mine = served.arms[name]
        np.testing.assert_array_equal(mine.n, stats.n)
        for key in ("A", "b", "reward_sum", "A_inv", "theta"):
            np.testing.assert_allclose(getattr(mine, key), getattr(stats, key), rtol=1e-9, atol=1e-9, err_msg=key)


def test_late_payments_give_the_learner_the_statistics_of_in_order_processing(
    tmp_path: Path, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = _recording_taken(monkeypatch)
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}", policy=str(linucb_artifact)))
    with TestClient(app, headers=AUTH) as api:
        post = poster(api)

        open_with_pre_due_decisions(post, 6)
        post("/v1/events", {"arrangement_id": 2, "type": "payment", "amount_eur": 100.0, "time": 34.0})  # in order
        post("/v1/events", {"arrangement_id": 6, "type": "payment", "amount_eur": 100.0, "time": 40.0})  # in order
        post("/v1/clock", {"time": 44.0})
        # Late, and before the day-33 decision, still pending: the arrangement now completes at day 40 (with the
        # payment of that day), so the decision matures at once, learned in the context it was taken in (without
        # the payment), not in the one the rewritten log gives it.
        late = post("/v1/events", {"arrangement_id": 6, "type": "payment", "amount_eur": 200.0, "time": 32.0})
        assert late["late"] and late["status"] == "completed"
        post("/v1/clock", {"time": 56.0})  # the first installments of 1, 3, 4 and 5 missed (due at 36)
        learner = app.state.regsim.online
        assert learner.day == 56 and learner.policy.learned > 0
        # Late: the decision of day 0 has matured without this payment (window 14 days).
        assert post("/v1/events", {"arrangement_id": 3, "type": "payment", "amount_eur": 50.0, "time": 2.0})["late"]
        # Late: the first installment paid, not missed; the day-33 decision matured (at 47) with a miss.
        late = post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 100.0, "time": 35.0})
        assert late["late"] and late["installments_paid"] == [0]
        # Late, and it ends the arrangement (paid in full): the day-33 decision's outcome is its completion.
        late = post("/v1/events", {"arrangement_id": 4, "type": "payment", "amount_eur": 300.0, "time": 35.5})
        assert late["late"] and late["status"] == "completed"
        # A decision pending at the late event that the late event's completion matures at once.
        post("/v1/decisions", {"arrangement_id": 5, "kind": "missed", "time": 56.0})
        post("/v1/clock", {"time": 58.0})
        late = post("/v1/events", {"arrangement_id": 5, "type": "payment", "amount_eur": 300.0, "time": 57.0})
        assert late["late"] and late["status"] == "completed"
        post("/v1/clock", {"time": 60.0})
        truth = _in_order_truth(linucb_artifact, app.state.regsim.engine, learner.day, taken)
        _assert_same_statistics(learner.policy, truth)
        # The corrected statistics are what the store keeps (a restarted server learns on from them).
        with app.state.regsim.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(db.policy_state)).scalar_one() == 2
    with TestClient(
        create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}", policy=str(linucb_artifact))), headers=AUTH
    ) as again:
        _assert_same_statistics(again.app.state.regsim.online.policy, truth)  # type: ignore[attr-defined]


def _assert_taken_contexts(app: Any, taken: dict[int, Any]) -> None:
    """The contexts :func:`serving.online.taken_contexts` rebuilds from the store are those decided in."""
    from agents.bandits.design import design_matrix

    st_ = app.state.regsim
    features = st_.online.policy.config.feature_set
    cols = [db.events.c[name] for name in (*db.EVENT_COLUMNS, "arrived_at")]
    with st_.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(db.events.c.seq))]
    rebuilt: dict[int, Any] = {}
    for aid in sorted({int(r["arrangement_id"]) for r in rows}):
        mine = [r for r in rows if int(r["arrangement_id"]) == aid]
        rebuilt.update(taken_contexts(st_.service.template, mine, st_.service.epoch))
    assert set(rebuilt) == set(taken)
    for decision_id, (_, context, _, _) in taken.items():
        np.testing.assert_array_equal(
            design_matrix(rebuilt[decision_id], features), design_matrix(context, features), err_msg=str(decision_id)
        )


def taken_ids_at(taken: dict[int, Any], day: int) -> list[int]:
    """The ids of the decisions taken on ``day``, in order."""
    return sorted(d for d, (t, *_) in taken.items() if t == day)


def _recording_taken(monkeypatch: pytest.MonkeyPatch) -> dict[int, Any]:
    """Record every decision the server registers with its learner: id -> (day, context, action, propensity)."""
    taken: dict[int, Any] = {}
    add = OnlineLearner.add_decisions

    def recording(self: OnlineLearner, ids: list[int], time: float, contexts: Any, actions: Any, prop: Any) -> None:
        for k, decision_id in enumerate(ids):
            taken[int(decision_id)] = (int(time), contexts.take(np.array([k])), actions[k : k + 1], prop[k : k + 1])
        add(self, ids, time, contexts, actions, prop)

    monkeypatch.setattr(OnlineLearner, "add_decisions", recording)
    return taken


def test_two_late_payments_before_a_matured_decision_keep_the_context_it_was_taken_in(
    store_url: str, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two late payments on one arrangement, both arriving after a decision matured, the first stamped before it:
    the second correction moves the decision's statistics in the context it was taken in (without the first
    late payment), not in the one the first re-derived log gives it; so does a third, and a restart keeps them."""
    taken = _recording_taken(monkeypatch)
    url = store_url
    app = create_app(make_settings(url, policy=str(linucb_artifact)))
    with TestClient(app, headers=AUTH) as api:
        post = poster(api)

        open_with_pre_due_decisions(post, 3)
        post("/v1/clock", {"time": 56.0})  # the day-33 decisions matured at 47
        learner = app.state.regsim.online
        assert learner.day == 56 and learner.policy.learned > 0
        # Arrangement 1: a late payment of half the installment before the day-33 decision (in its context in the
        # re-derived log, not in the one it was taken in; its reward unchanged), then the other half after it,
        # within its window: the first installment is paid, and the second correction changes the reward.
        assert post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 50.0, "time": 32.0})["late"]
        late = post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 50.0, "time": 35.0})
        assert late["late"] and late["installments_paid"] == [0]
        # Arrangement 2: the same, then a third late payment before the decision that changes its reward again
        # (the arrangement paid in full: completed).
        assert post("/v1/events", {"arrangement_id": 2, "type": "payment", "amount_eur": 50.0, "time": 32.0})["late"]
        assert post("/v1/events", {"arrangement_id": 2, "type": "payment", "amount_eur": 50.0, "time": 35.0})["late"]
        late = post("/v1/events", {"arrangement_id": 2, "type": "payment", "amount_eur": 200.0, "time": 34.0})
        assert late["late"] and late["status"] == "completed"
        # Arrangement 3: a late payment before the day-33 decision makes its reminder moot (cancelled at the
        # arrangement's present); a decision taken after that, in a context without the reminder, has matured
        # when a second late payment arrives.
        late = post("/v1/events", {"arrangement_id": 3, "type": "payment", "amount_eur": 100.0, "time": 32.5})
        assert late["late"] and [c["decision_id"] for c in late["cancelled"]] == [taken_ids_at(taken, 33)[2]]
        post("/v1/decisions", {"arrangement_id": 3, "kind": "pre_due", "time": 56.0})
        post("/v1/clock", {"time": 75.0})
        assert post("/v1/events", {"arrangement_id": 3, "type": "payment", "amount_eur": 50.0, "time": 60.0})["late"]
        post("/v1/clock", {"time": 76.0})
        truth = _in_order_truth(linucb_artifact, app.state.regsim.engine, learner.day, taken)
        _assert_same_statistics(learner.policy, truth)
        _assert_taken_contexts(app, taken)
    with TestClient(create_app(make_settings(url, policy=str(linucb_artifact))), headers=AUTH) as again:
        _assert_same_statistics(again.app.state.regsim.online.policy, truth)  # type: ignore[attr-defined]


def test_a_decision_pending_across_a_restart_matures_in_the_context_it_was_taken_in(
    store_url: str, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A late payment stamped before a pending decision, then a restart: the restarted learner rebuilds the
    pending decision from the store, in the context it was taken in (without the late payment, which arrived
    after it), not in the one the rewritten log gives it; once it matures, the statistics are in-order's."""
    taken = _recording_taken(monkeypatch)
    url = store_url
    with TestClient(create_app(make_settings(url, policy=str(linucb_artifact))), headers=AUTH) as api:
        post = poster(api)

        open_with_pre_due_decisions(post, 2)
        post("/v1/clock", {"time": 40.0})
        assert post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 50.0, "time": 32.0})["late"]
        assert post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 20.0, "time": 38.0})["late"]
    app = create_app(make_settings(url, policy=str(linucb_artifact)))
    with TestClient(app, headers=AUTH) as again:
        r = again.post("/v1/clock", json={"time": 50.0})  # the day-33 decisions mature at 47, after the restart
        assert r.status_code == 200, r.text
        learner = app.state.regsim.online
        truth = _in_order_truth(linucb_artifact, app.state.regsim.engine, learner.day, taken)
        _assert_same_statistics(learner.policy, truth)


def test_a_restart_replays_arrival_orders_only_where_a_late_event_preceded_a_pending_decision(
    tmp_path: Path, linucb_artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arrival-order replay at a restart (milliseconds per arrangement) runs only for arrangements whose
    pending decision was taken before an event stamped earlier arrived; a late event after the pending decision
    leaves the rewritten log's contexts right, so it is not replayed."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with TestClient(create_app(make_settings(url, policy=str(linucb_artifact))), headers=AUTH) as api:
        post = poster(api)
        open_with_pre_due_decisions(post, 3)
        post("/v1/clock", {"time": 40.0})
        # 1: stamped before its pending day-33 decision, arriving after it. 2: a reported event at 35, then a
        # payment stamped 34.5 (late, rewrites the log) but after the decision. 3: nothing late.
        assert post("/v1/events", {"arrangement_id": 1, "type": "payment", "amount_eur": 50.0, "time": 32.0})["late"]
        post("/v1/events", {"arrangement_id": 2, "type": "opt_out", "channel": "sms", "time": 40.5})
        assert post("/v1/events", {"arrangement_id": 2, "type": "payment", "amount_eur": 50.0, "time": 34.5})["late"]
    replayed: list[int] = []
    real = taken_contexts

    def counting(template: Any, rows: Any, epoch: Any) -> Any:
        replayed.append(int(rows[0]["arrangement_id"]))
        return real(template, rows, epoch)

    monkeypatch.setattr("serving.online.taken_contexts", counting)
    with TestClient(create_app(make_settings(url, policy=str(linucb_artifact))), headers=AUTH):
        assert replayed == [1]
