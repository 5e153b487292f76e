"""Rewards charge self-service's concessions and staff cases (issue 18): net recovery in training is the verdict's.

Without self-service every reward is what it was, bit for bit; with it, the run-off reward of an arrangement's
whole log is ``0.01`` times its run-off value of :func:`regsim.metrics.runoff_value`, staff cases included
and concessions counted once (they come off the balance, so off what is collected).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import agents
from regsim import WorldConfig, simulate
from regsim.eventlog import EventType, event_codes
from regsim.metrics import arrangement_outcomes, runoff_value
from regsim.rewards import REWARDS, EventChunk, RewardCosts, tally

COSTS = RewardCosts(breakdown_cost_eur=150.0)


def _chunks(events: pa.Table, ids: np.ndarray) -> list[EventChunk]:
    """The log's events, one chunk per event type, each event's row its arrangement's position in ``ids``."""
    codes = event_codes(events)
    arr = events.column("arrangement_id").to_numpy()
    row_of = {int(a): i for i, a in enumerate(ids)}
    out: list[EventChunk] = []
    names = ("amount_eur", "deferral_days", "collection_costs_eur")
    for code in np.unique(codes):
        m = np.flatnonzero(codes == code)
        cols = {
            n: np.nan_to_num(events.column(n).take(pa.array(m)).to_numpy(zero_copy_only=False).astype(np.float64))
            for n in names
            if n in events.column_names
        }
        rows = np.array([row_of[int(a)] for a in arr[m]], dtype=np.int64)
        out.append((EventType(int(code)), rows, cols))
    return out


def test_tally_counts_concessions_and_staff_cases_and_runoff_value_charges_each_once() -> None:
    """A staff case is charged as a contact; a concession is not charged again (what is collected is net of it)."""
    chunks: list[EventChunk] = [
        (EventType.PAYMENT, np.array([0, 1]), {"amount_eur": np.array([100.0, 50.0])}),
        (EventType.CONCESSION, np.array([0]), {"amount_eur": np.array([20.0])}),
        (EventType.CASE_RESOLVED, np.array([1]), {"amount_eur": np.array([4.0])}),
    ]
    o = tally(chunks, 2, np.ones(2), np.full(2, 500.0))
    np.testing.assert_array_equal(o.concessions_eur, [20.0, 0.0])
    np.testing.assert_array_equal(o.staff_cost_eur, [0.0, 4.0])
    np.testing.assert_allclose(REWARDS["runoff_value"](o, COSTS), [1.0, 0.46])
    np.testing.assert_allclose(REWARDS["collected"](o, COSTS), [1.0, 0.46])  # a staff case is a contact


def test_runoff_reward_of_a_self_service_log_is_the_verdicts_runoff_value() -> None:
    config = WorldConfig().with_overrides(self_service={"enabled": True, "visit": {"follow_prob": 1.0}})
    result = simulate(config, agents.make("static-dunning"), arrangements=150, months=12, seed=3)
    codes = event_codes(result.events)
    assert (codes == EventType.CONCESSION).any() and (codes == EventType.CASE_RESOLVED).any()
    outcomes = arrangement_outcomes(result.events)
    ids = outcomes.index.to_numpy()
    o = tally(_chunks(result.events, ids), len(ids), np.zeros(len(ids)), np.zeros(len(ids)))
    got = REWARDS["runoff_value"](o, RewardCosts.of(config))
    np.testing.assert_allclose(got, 0.01 * runoff_value(outcomes).to_numpy(), atol=1e-9)


def test_without_self_service_the_rewards_are_bit_for_bit_as_before() -> None:
    config = WorldConfig()
    result = simulate(config, agents.make("static-dunning"), arrangements=80, months=6, seed=5)
    ids = arrangement_outcomes(result.events).index.to_numpy()
    o = tally(_chunks(result.events, ids), len(ids), np.full(len(ids), 30.0), np.full(len(ids), 900.0))
    assert not o.concessions_eur.any() and not o.staff_cost_eur.any()
    net = o.collected_eur - o.contact_cost_eur
    np.testing.assert_array_equal(REWARDS["runoff_value"](o, COSTS), 0.01 * net + 3.0 * o.completed)
    brk = o.collected_eur - o.contact_cost_eur - 150.0 * o.broken
    np.testing.assert_array_equal(REWARDS["collected"](o, COSTS), 0.01 * brk)
