"""The replaying policy (experiments.calibration.replaying): the log's decisions, replayed in the world that made
the log with its seed, give the log back; elsewhere the fallback decides and is counted."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

import agents
from agents.ope.behaviour import EpsilonMixture
from experiments.calibration.replaying import (
    LoggedDecisions,
    NoAction,
    ReplayingPolicy,
    fallback_policy,
    pair_by_debtor,
)
from regsim import WorldConfig, simulate

WORLD = WorldConfig()


@pytest.fixture(scope="module")
def log():
    return simulate(WORLD, agents.make("epsilon-mixture", seed=3), arrangements=300, months=3, seed=3)


def test_replay_in_the_logging_world_gives_the_log_back(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    policy = ReplayingPolicy(decisions, NoAction())
    again = simulate(WORLD, policy, arrangements=300, months=3, seed=3)
    assert policy.stats.fallback == 0 and policy.stats.partly_fallback == 0
    assert policy.stats.replayed == len(decisions)
    drop = ["policy", "policy_version", "propensity"]
    assert again.events.drop_columns(drop).equals(log.events.drop_columns(drop))


def test_unmatched_decision_points_go_to_the_logging_policy(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    assert decisions.policy == "epsilon-mixture"
    fallback = fallback_policy(decisions, seed=9)
    assert isinstance(fallback, EpsilonMixture) and fallback.epsilon == pytest.approx(0.3)
    policy = ReplayingPolicy(decisions, fallback)
    other = simulate(WORLD, policy, arrangements=300, months=3, seed=4)  # other debtors: other decision points
    s = policy.stats
    assert s.fallback > 0 and s.replayed > 0
    n_decisions = int(pc.sum(pc.equal(other.events.column("event").cast("string"), "decision")).as_py())
    assert s.total == n_decisions


def test_an_unknown_logging_policy_falls_back_to_no_action(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    unknown = decisions.with_table(decisions.table, "some-vendor-model", "7")
    assert isinstance(fallback_policy(unknown, seed=0), NoAction)


def test_a_masked_logged_option_is_replaced_by_the_fallback(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    # Log every decision as the longest deferral with the largest reduction: the history caps (rules.py) mask them
    # after a few, and the fallback's part is used there.
    forced = decisions.with_table(np.tile([0, 0, 0, 4, 2], (len(decisions), 1)), None, None)
    policy = ReplayingPolicy(forced, NoAction())
    simulate(WORLD, policy, arrangements=300, months=3, seed=3)  # raises RuleViolation if a masked option got out
    assert policy.stats.partly_fallback > 0
    assert np.isfinite(policy.stats.total)


def test_debtor_pairing_takes_the_same_plan_length_and_the_nearest_debt(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    n, debt = decisions.n_installments, decisions.debt_eur
    pool = np.flatnonzero(n == n[0])
    j = int(pool[np.argsort(debt[pool])[len(pool) // 2]])  # a debtor in the middle of its plan length's debts
    got = pair_by_debtor(decisions, np.array([n[j], n[j]]), np.array([debt[j] + 1e-6, debt[j] - 1e-6]))
    assert got.tolist() == [j, j]
    # A plan length the log lacks takes the nearest one it has.
    longest = int(n.max())
    far = pair_by_debtor(decisions, np.array([longest + 5]), np.array([500.0]))
    assert decisions.n_installments[far[0]] == longest
    with pytest.raises(ValueError, match="pairing: expected one of arrangement, debtor"):
        ReplayingPolicy(decisions, NoAction(), pairing="by-name")  # type: ignore[arg-type]


def test_debtor_pairing_in_the_logging_world_gives_the_log_back(log) -> None:
    # Same seed, same debtors: each simulated arrangement's nearest log debtor of its plan length is itself.
    decisions = LoggedDecisions.from_log(log.events)
    policy = ReplayingPolicy(decisions, NoAction(), pairing="debtor")
    again = simulate(WORLD, policy, arrangements=300, months=3, seed=3)
    assert policy.stats.fallback == 0 and policy.stats.replayed == len(decisions)
    drop = ["policy", "policy_version", "propensity"]
    assert again.events.drop_columns(drop).equals(log.events.drop_columns(drop))
