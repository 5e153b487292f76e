"""The online learner's cheaper bookkeeping and save: what it learns, holds and stores is what it was.

* The learner registers a server's small decision batches with the outcome matcher lazily
  (:attr:`serving.online.OnlineLearner.matcher`): they wait, and go in together when the matcher is read or
  enough of them wait. A stream of real contexts (a simulated population's), split into small write groups,
  goes through the learner and, beside it, through a matcher that takes every group at once, as the learner
  did before; the policy's statistics and the matcher's pending rows must agree bit for bit.
* The per-transaction save writes the scalars' JSON from kept fragments and runs its update on the driver's
  cursor: the JSON must be ``json.dumps``'s, character for character, and the row stored the one SQLAlchemy's
  execution of the same statement stores.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import agents
from agents.rules_based import StaticDunning
from regsim.config import load_world_config
from regsim.decision import ContextBatch, DecisionBatch
from regsim.eventlog import EventType
from regsim.feedback import OutcomeMatcher
from regsim.rewards import RewardCosts, resolve_reward
from regsim.simulate import simulate
from serving import db, online
from serving.online import OnlineLearner, _outcome_columns, _ScalarsJSON
from serving.settings import DEFAULT_POPULATION

_COLUMNS = ("_ids", "_arr", "_time", "_balance", "_paid", "_cost", "_contacts", "_completed", "_actions", "_propensity")


class _Recorder(StaticDunning):
    """Static dunning that keeps every batch of contexts it decides, with its decisions."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[ContextBatch, DecisionBatch]] = []

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        out = super().decide_batch(contexts)
        self.seen.append((contexts, out))
        return out


@pytest.fixture(scope="module")
def recorded() -> list[tuple[ContextBatch, DecisionBatch]]:
    """Real decision batches: 150 simulated arrangements over two months."""
    recorder = _Recorder()
    simulate(load_world_config(DEFAULT_POPULATION), recorder, arrangements=150, months=2, seed=5)
    assert sum(len(c) for c, _ in recorder.seen) > 300
    return recorder.seen


def _assert_same_matcher(mine: OutcomeMatcher, ref: OutcomeMatcher) -> None:
    assert len(mine) == len(ref)
    for name in _COLUMNS:
        np.testing.assert_array_equal(getattr(mine, name), getattr(ref, name), err_msg=name)
    every = np.arange(len(ref))
    got, want = mine._gather_contexts(every), ref._gather_contexts(every)
    for name, column in want.by_name().items():
        np.testing.assert_array_equal(got.by_name()[name], column, err_msg=name)
    np.testing.assert_array_equal(got.mask, want.mask)
    for name, forbidden in want.forbidden.items():
        np.testing.assert_array_equal(got.forbidden.get(name, np.zeros_like(got.mask)), forbidden, err_msg=name)


def _payment_rows(rng: np.random.Generator, arrangements: np.ndarray[Any, Any], day: int) -> list[dict[str, Any]]:
    """Store rows of a few payments (and a decision, which carries no outcome) later on ``day``."""
    payers = rng.choice(arrangements, size=min(4, len(arrangements)), replace=False).tolist()
    rows: list[dict[str, Any]] = [
        {"event": "payment", "time": day + 0.5, "arrangement_id": a, "amount_eur": float(rng.uniform(5, 80))}
        for a in payers
    ]
    rows.append({"event": "decision", "time": day + 0.5, "arrangement_id": payers[0], "decision_id": 1})
    return rows


class _EagerReference:
    """The learner's bookkeeping as it was: every group added to the matcher at once, the same day boundaries."""

    def __init__(self, policy: Any, matcher: OutcomeMatcher) -> None:
        self.policy, self.matcher = policy, matcher
        self.day = -1
        self.queued: list[tuple[EventType, dict[str, Any]]] = []
        self.updates = 0

    def advance(self, day: int) -> None:
        if self.day < 0:
            self.day = day
        while self.day < day:
            self.day += 1
            for event, columns in [e for e in self.queued if e[1]["time"][0] < self.day]:
                self.matcher.observe(event, columns)
            self.queued = [e for e in self.queued if e[1]["time"][0] >= self.day]
            feedback = self.matcher.mature(float(self.day))
            if feedback is not None:
                self.policy.update(feedback)
                self.updates += 1


def test_lazy_registration_learns_and_holds_what_per_group_registration_does(
    recorded: list[tuple[ContextBatch, DecisionBatch]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online, "_UNMATCHED_MAX", 4)  # (a small day's groups outnumber it)
    config = load_world_config(DEFAULT_POPULATION)
    policy: Any = agents.make("linucb", alpha=1.0, feedback_window_days=5.0, seed=3)
    learner = OnlineLearner(policy, "test", config, dt.date(2026, 1, 1))
    reference = _EagerReference(
        agents.make("linucb", alpha=1.0, feedback_window_days=5.0, seed=3),
        OutcomeMatcher(5.0, resolve_reward(policy.feedback_reward), RewardCosts.of(config)),
    )
    rng = np.random.default_rng(11)
    next_id, reads, largest_day = 1, 0, 0
    for contexts, decisions in recorded:
        day = int(np.asarray(contexts.columns["day"]).max())
        learner.advance(float(day))
        reference.advance(day)
        # The day's decisions in write groups of 1 to 20.
        start, groups = 0, 0
        while start < len(contexts):
            end = min(len(contexts), start + int(rng.integers(1, 21)))
            rows = np.arange(start, end)
            ids = list(range(next_id, next_id + len(rows)))
            next_id += len(rows)
            group, actions, prop = contexts.take(rows), decisions.actions[rows], decisions.propensity[rows]
            learner.add_decisions(ids, float(day), group, actions, prop)
            reference.matcher.add(np.asarray(ids, dtype=np.int64), float(day), group, actions, prop)
            start, groups = end, groups + 1
        largest_day = max(largest_day, groups)
        events = _payment_rows(rng, np.asarray(contexts.columns["arrangement_id"]), day)
        learner.add_events(events)
        reference.queued.extend((EventType.PAYMENT, _outcome_columns(r)) for r in events if r["event"] == "payment")
        if rng.random() < 0.3:  # a read in the middle of a day: the waiting decisions go in first
            _assert_same_matcher(learner.matcher, reference.matcher)
            reads += 1
    # Some days had more groups than may wait (the learner added them before the day's end).
    assert largest_day > online._UNMATCHED_MAX
    assert reference.updates > 10 and learner.updates == reference.updates and reads > 3
    _assert_same_matcher(learner.matcher, reference.matcher)
    mine, theirs = policy.state_dict(), reference.policy.state_dict()
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(value), err_msg=key)


def test_waiting_decisions_of_different_times_go_in_at_their_own_times(
    recorded: list[tuple[ContextBatch, DecisionBatch]],
) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    policy: Any = agents.make("linucb")
    learner = OnlineLearner(policy, "test", config, dt.date(2026, 1, 1))
    matcher = OutcomeMatcher(14.0, resolve_reward(policy.feedback_reward), RewardCosts.of(config))
    contexts, decisions = next((c, d) for c, d in recorded if len(c) >= 6)
    # No clock in between: nothing reads the matcher, so all four groups wait.
    for k, time in enumerate((3.0, 3.0, 4.0, 3.0)):
        rows = np.arange(k, k + 2) if k < 3 else np.arange(5, 6)
        ids = [10 * k + j for j in range(len(rows))]
        group, actions, prop = contexts.take(rows), decisions.actions[rows], decisions.propensity[rows]
        learner.add_decisions(ids, time, group, actions, prop)
        matcher.add(np.asarray(ids, dtype=np.int64), time, group, actions, prop)
    assert len(learner._unmatched) == 4
    _assert_same_matcher(learner.matcher, matcher)
    assert learner._unmatched == []


def _dumps_scalars(state: Mapping[str, Any]) -> str:
    """The scalars' JSON as the learner wrote it before :class:`serving.online._ScalarsJSON`."""
    small = {k: np.asarray(v) for k, v in state.items() if np.ndim(v) == 0}
    return json.dumps({k: [v.dtype.str, v.item()] for k, v in small.items()}, separators=(",", ":"))


def test_the_scalars_json_is_what_json_dumps_writes(recorded: list[tuple[ContextBatch, DecisionBatch]]) -> None:
    policy: Any = agents.make("linucb")
    encoder = _ScalarsJSON()
    states: list[dict[str, Any]] = [{}, {"only": "text"}, {"n": 3}]
    for contexts, _ in recorded[:3]:
        policy.decide_batch(contexts)  # (the space known, the counters moving)
        states.append({**policy.state_dict(arrays=False), "__server_day": np.asarray(7)})
    odd: dict[str, Any] = {
        "a": 1,
        "text": 'déjà "vu"\n\u2603 \U0001f600',
        "nan": np.asarray(math.nan),
        "inf": np.asarray(-math.inf),
        "zero": np.asarray(-0.0),
        "flag": True,
        "f32": np.asarray(np.float32(0.1)),
        "big": 2**63 - 1,
        "u64": np.asarray(np.uint64(2**64 - 1)),
        "empty": "",
        "vector": np.arange(3),
        "scalar": np.float64(2.5),
        "after": "x",
    }
    states += [odd, {**odd, "text": "changed", "empty": "now set"}, {**odd, "zero": np.asarray(0.0)}, odd]
    for state in states + states:  # (again: the kept fragments)
        assert encoder.encode(state) == _dumps_scalars(state)


class _FrozenClock(dt.datetime):
    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> _FrozenClock:
        return cls(2026, 3, 4, 5, 6, 7, 891011, tzinfo=tz)


def _stored(engine: sa.Engine) -> list[tuple[Any, ...]]:
    cols = "slot, policy, policy_version, origin, state, updated_at"
    kinds = ", typeof(state), typeof(updated_at)" if engine.dialect.name == "sqlite" else ""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(f"SELECT {cols}{kinds} FROM policy_state ORDER BY slot")]


def test_the_saved_row_is_what_sqlalchemy_stores(
    store_url: str, recorded: list[tuple[ContextBatch, DecisionBatch]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online.dt, "datetime", _FrozenClock)
    config = load_world_config(DEFAULT_POPULATION)
    policy: Any = agents.make("linucb")
    policy.decide_batch(recorded[0][0])
    learner = OnlineLearner(policy, "test", config, dt.date(2026, 1, 1))
    learner.day = 4
    engine = db.make_engine(store_url)
    db.upgrade_to_head(engine)
    with engine.begin() as conn:
        learner.save(conn, learned=True)  # (inserts both slots)
    with engine.begin() as conn:
        learner.save(conn, learned=True)  # (updates both on the driver's cursor)
    mine = _stored(engine)
    assert [r[0] for r in mine] == ["active", "active.small"]
    # The same values through SQLAlchemy's execution of the same statement.
    big, small = learner._blobs(with_big=True)
    with engine.begin() as conn:
        for slot, blob in (("active", big), ("active.small", small)):
            values = {"policy": "linucb", "policy_version": policy.version, "origin": "test", "state": blob}
            conn.execute(online._UPDATE_STATE, {"b_slot": slot, **values, "updated_at": _FrozenClock.now(dt.UTC)})
    assert _stored(engine) == mine
    engine.dispose()
