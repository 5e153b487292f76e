"""The replaying policy (experiments.calibration.replaying): the log's decisions, replayed in the world that made
the log with its seed, give the log back; elsewhere the fallback decides and is counted."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

import agents
from agents.ope.behaviour import EpsilonMixture
from experiments.calibration.replaying import LoggedDecisions, NoAction, ReplayingPolicy, fallback_policy
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
    assert policy.stats.replayed == len(decisions.actions)
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
    unknown = LoggedDecisions(decisions.arrangement_ids, decisions.actions, "some-vendor-model", "7")
    assert isinstance(fallback_policy(unknown, seed=0), NoAction)


def test_a_masked_logged_option_is_replaced_by_the_fallback(log) -> None:
    decisions = LoggedDecisions.from_log(log.events)
    # Log every decision as the longest deferral with the largest reduction: the history caps (rules.py) mask them
    # after a few, and the fallback's part is used there.
    forced = {k: (0, 0, 0, 4, 2) for k in decisions.actions}
    policy = ReplayingPolicy(LoggedDecisions(decisions.arrangement_ids, forced, None, None), NoAction())
    simulate(WORLD, policy, arrangements=300, months=3, seed=3)  # raises RuleViolation if a masked option got out
    assert policy.stats.partly_fallback > 0
    assert np.isfinite(policy.stats.total)
