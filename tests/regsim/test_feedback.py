"""The outcome matcher against a decision-by-decision reference, over many batches and releases.

The matcher keeps its pending decisions in buffers that grow geometrically and are compacted when decisions
mature; whatever the sizes of the batches, what it hands out must be what a plain per-decision bookkeeping of
the same events gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.rules_based import StaticDunning
from regsim import WorldConfig
from regsim.decision import ActionSpace, ContextBatch, Feedback
from regsim.eventlog import EventType
from regsim.feedback import OutcomeMatcher
from regsim.rewards import Outcomes, RewardCosts
from regsim.simulate import simulate

WINDOW = 10.0


@dataclass
class _Pending:
    arrangement: int
    time: float
    paid: float = 0.0
    cost: float = 0.0
    contacts: int = 0
    completed: bool = False
    broken: bool = False
    ended: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _batch(space: ActionSpace, arrangements: np.ndarray) -> ContextBatch:
    n = len(arrangements)
    return ContextBatch(
        space=space,
        columns={"arrangement_id": arrangements.astype(np.int64), "balance_eur": 100.0 + arrangements},
        mask=np.ones((n, space.mask_size), dtype=bool),
    )


def test_the_matcher_hands_out_what_per_decision_bookkeeping_gives() -> None:
    space = ActionSpace.from_config(WorldConfig().decisions)
    released: list[Outcomes] = []

    def record(outcomes: Outcomes, costs: RewardCosts) -> np.ndarray:
        released.append(outcomes)
        return outcomes.collected_eur - outcomes.contact_cost_eur - costs.breakdown_cost_eur * outcomes.broken

    matcher = OutcomeMatcher(WINDOW, reward=record, costs=RewardCosts(breakdown_cost_eur=100.0))
    rng = np.random.default_rng(3)
    reference: dict[int, _Pending] = {}
    next_id = 1
    seen: dict[int, tuple[float, float, bool, bool]] = {}

    def check(feedback: Any) -> None:
        if feedback is None:
            return
        outcomes = released[-1]
        for k, d in enumerate(feedback.decision_ids.tolist()):
            p = reference.pop(d)
            got = (
                outcomes.collected_eur[k],
                outcomes.contact_cost_eur[k],
                int(outcomes.contacts[k]),
                bool(outcomes.completed[k]),
                bool(outcomes.broken[k]),
            )
            assert got == (p.paid, p.cost, p.contacts, p.completed, p.broken), d
            assert outcomes.balance_eur[k] == 100.0 + p.arrangement
            assert feedback.contexts.columns["arrangement_id"][k] == p.arrangement
            assert feedback.rewards[k] == p.paid - p.cost - 100.0 * p.broken
            seen[d] = got

    for step in range(400):
        day = float(step // 8)
        # A batch of decisions, 1 to 40 (crossing the buffers' capacities many times).
        n = int(rng.integers(1, 41))
        arrangements = rng.integers(0, 60, size=n)
        ids = np.arange(next_id, next_id + n, dtype=np.int64)
        next_id += n
        actions = rng.integers(0, 3, size=(n, 5))
        matcher.add(ids, day, _batch(space, arrangements), actions, np.full(n, 0.5))
        for d, a in zip(ids.tolist(), arrangements.tolist(), strict=True):
            reference[d] = _Pending(int(a), day)
        # Payments of some arrangements later that day.
        payers = rng.integers(0, 60, size=5)
        amounts = np.round(rng.uniform(5, 50, size=5), 2)
        t = day + 0.5
        matcher.observe(EventType.PAYMENT, {"time": t, "arrangement_id": payers, "amount_eur": amounts})
        for a, amount in zip(payers.tolist(), amounts.tolist(), strict=True):
            for p in reference.values():
                if p.arrangement == a and p.time <= t < p.time + WINDOW and not p.ended:
                    p.paid += amount
        # The cost of the messages of a few pending decisions.
        if reference:
            pending = np.array(sorted(reference), dtype=np.int64)
            sent = rng.choice(pending, size=min(3, len(pending)), replace=False)
            costs = np.full(len(sent), 0.85)
            owners = np.array([reference[d].arrangement for d in sent.tolist()], dtype=np.int64)
            matcher.observe(
                EventType.MESSAGE_SENT, {"time": t, "arrangement_id": owners, "amount_eur": costs, "decision_id": sent}
            )
            for d in sent.tolist():
                reference[d].cost += 0.85
                reference[d].contacts += 1
        # Now and then an arrangement ends.
        if step % 13 == 0:
            a = int(rng.integers(0, 60))
            kind = EventType.BROKEN if step % 2 else EventType.COMPLETED
            matcher.observe(kind, {"time": np.array([t]), "arrangement_id": np.array([a], dtype=np.int64)})
            for p in reference.values():
                if p.arrangement == a and p.time <= t < p.time + WINDOW and not p.ended:
                    p.ended = True
                    p.completed |= kind == EventType.COMPLETED
                    p.broken |= kind == EventType.BROKEN
        if step % 8 == 7:
            check(matcher.mature(day + 1.0))
            assert len(matcher) == len(reference)
    check(matcher.flush(60.0))
    assert len(matcher) == 0 and not reference
    assert len(seen) == next_id - 1


def test_pending_contexts_stay_in_few_batches_and_aligned_with_their_decisions() -> None:
    """A server adds one small batch per write group and drops one arrangement's decisions per late event: the
    contexts must stay in O(log n) batches (each drop and gather walks them all) and row-aligned."""
    space = ActionSpace.from_config(WorldConfig().decisions)
    matcher = OutcomeMatcher(1e6, reward=lambda o, c: o.collected_eur, costs=RewardCosts(breakdown_cost_eur=0.0))
    rng = np.random.default_rng(11)
    for step in range(3000):
        n = int(rng.integers(1, 4))
        arrangements = rng.integers(0, 500, size=n)
        ids = np.arange(3 * step, 3 * step + n, dtype=np.int64)
        matcher.add(ids, float(step), _batch(space, arrangements), np.zeros((n, 5), dtype=np.int64), np.ones(n))
        if step % 50 == 49:  # a late event: the arrangement's pending decisions are replaced
            matcher._drop(matcher._arr != int(rng.integers(0, 500)))
    assert len(matcher._contexts) <= 2 * np.log2(len(matcher)) + 2, len(matcher._contexts)
    gathered = matcher._gather_contexts(np.arange(len(matcher)))
    np.testing.assert_array_equal(gathered.columns["arrangement_id"], matcher._arr)
    np.testing.assert_array_equal(gathered.columns["balance_eur"], 100.0 + matcher._arr)


class _FedStaticDunning(StaticDunning):
    """Static dunning that is fed its outcomes after 30 days, and keeps the rewards it is given."""

    feedback_window_days = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.fed: dict[int, float] = {}

    def update(self, feedback: Feedback) -> None:
        self.fed.update(zip(feedback.decision_ids.tolist(), feedback.rewards.tolist(), strict=True))


def test_the_world_charges_a_breakdown_what_its_config_says() -> None:
    """Fed-back rewards read ``arrangements.breakdown_cost_eur``: the cost changes no decision, so the rewards of
    two worlds that differ in it alone differ by 0.01 x the cost on the decisions whose arrangement broke."""
    rewards = []
    for cost in (0.0, 500.0):
        config = WorldConfig().with_overrides(arrangements={"breakdown_cost_eur": cost})
        policy = _FedStaticDunning()
        simulate(config, policy, arrangements=300, months=6, seed=4)
        rewards.append(policy.fed)
    assert rewards[0].keys() == rewards[1].keys() and len(rewards[0]) > 500
    gap = np.array([rewards[0][d] - rewards[1][d] for d in rewards[0]])
    assert np.allclose(gap[np.abs(gap) > 1e-9], 5.0)  # 0.01 x EUR 500, or nothing
    assert (np.abs(gap - 5.0) < 1e-9).sum() > 10  # some decisions saw a breakdown
