"""The branched truth of the per-decision OPE estimand: it reproduces the log exactly where the candidate is the
logger, agrees with the on-policy value where the candidate cannot change the contexts, and refuses what it cannot
branch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import agents
from agents.ope.behaviour import EpsilonMixture
from agents.ope.candidates import effective_actions
from agents.ope.logged import LoggedDecisions, decision_rewards, logged_decisions
from experiments.ope_truth import branch_rewards, branchable, branched_truth, simulate_log
from regsim import load_world_config
from tests.experiments.conftest import REPO

WORLD = load_world_config(REPO / "configs" / "population" / "default.yaml")
SHORT = WORLD.model_copy(update={"simulation": WORLD.simulation.model_copy(update={"runoff_months_after_plan": 1.0})})
SEED = 3


@pytest.fixture(scope="module")
def log() -> tuple[pa.Table, LoggedDecisions]:
    events = simulate_log(
        SHORT, EpsilonMixture(base="static-dunning", epsilon=0.3, seed=SEED), arrangements=40, seed=SEED
    )
    return events, logged_decisions(events, SHORT)


def _logger(seed: int = 99) -> EpsilonMixture:
    return EpsilonMixture(base="static-dunning", epsilon=0.3, seed=seed)


def test_branching_every_decision_with_the_logged_action_replays_the_logged_rewards_exactly(
    log: tuple[pa.Table, LoggedDecisions],
) -> None:
    """Candidate == logger, action by action: each branch (the logged prefix, the logged action, then the logged
    actions after it) must live the logged life, so its reward is the logged one to the cent, decision by decision.
    Fails if the prefix is replayed off by one, the branched decision is read at the wrong position, the branch's
    world differs from the log's (capacity, seed, debtor) or the reward is attributed differently."""
    _, logged = log
    rows = np.flatnonzero(logged.rewards.closed)
    assert len(rows) > 300
    rewards = branch_rewards(SHORT, SEED, logged, rows, logged.actions[rows], _logger(), replay_identical=True)
    np.testing.assert_allclose(rewards, logged.rewards.reward[rows], rtol=0, atol=1e-6)
    assert np.ptp(rewards) > 10  # (the rewards differ from one decision to the next: not a trivial match)


def test_another_action_changes_the_branched_reward(log: tuple[pa.Table, LoggedDecisions]) -> None:
    """Where a contact is replaced by silence, the branched reward gains the contact's cost at least sometimes,
    and the logged rewards are left untouched where the action is the logged one."""
    _, logged = log
    rows = np.flatnonzero(logged.rewards.closed)
    silent = effective_actions(logged.contexts.take(rows), np.zeros((len(rows), 5), dtype=np.int64))
    rewards = branch_rewards(SHORT, SEED, logged, rows, silent, _logger())
    same = np.all(silent == logged.actions[rows], axis=1)
    np.testing.assert_array_equal(rewards[same], logged.rewards.reward[rows][same])
    cost = logged.rewards.contact_cost[rows]
    assert np.any(np.abs(rewards[~same] - logged.rewards.reward[rows][~same]) > 0)
    assert (cost[~same] > 0).any()


def test_a_candidate_drawn_like_the_logger_has_the_on_policy_value_within_its_error(
    log: tuple[pa.Table, LoggedDecisions],
) -> None:
    """A fresh copy of the logger (its own exploration draws) cannot change which contexts arise on average, so its
    branched truth must agree with the on-policy per-decision value of the logger (here: the logged mean, which is
    ``decision_value_eur`` of that run) within three standard errors of the paired difference (the same decisions,
    the same random numbers: small). A uniformly random candidate is told apart."""
    events, logged = log
    on_policy = decision_rewards(events).value
    truth = branched_truth(
        SHORT, SEED, logged, _logger(seed=7), _logger(), rng=np.random.default_rng(0), window_days=14.0
    )
    assert not truth.sampled and truth.standard_error > truth.difference_se > 0
    assert abs(truth.value - on_policy) < 3 * truth.difference_se, (truth.value, on_policy, truth.difference_se)
    assert truth.logged_value == pytest.approx(on_policy)
    other = branched_truth(SHORT, SEED, logged, agents.make("random", seed=5), _logger(), rng=np.random.default_rng(0))
    assert abs(other.value - on_policy) > 3 * other.difference_se, (other.value, on_policy, other.difference_se)


def test_a_sample_of_decisions_is_stated_and_drawn_from_the_counted_ones(log: tuple[pa.Table, LoggedDecisions]) -> None:
    _, logged = log
    truth = branched_truth(
        SHORT, SEED, logged, agents.make("silent"), _logger(), rng=np.random.default_rng(1), sample=50
    )
    assert truth.sampled and len(truth.rows) == 50 and len(np.unique(truth.rows)) == 50
    assert logged.rewards.closed[truth.rows].all()
    assert np.isfinite(truth.standard_error)
    with pytest.raises(ValueError, match="sample"):
        branched_truth(SHORT, SEED, logged, agents.make("silent"), _logger(), rng=np.random.default_rng(1), sample=0)


def test_a_learning_logger_cannot_be_branched(log: tuple[pa.Table, LoggedDecisions]) -> None:
    _, logged = log
    learner = agents.make("epsilon-greedy", epsilon=0.2, seed=0)
    assert not branchable(learner) and branchable(_logger())
    rows = np.flatnonzero(logged.rewards.closed)[:3]
    with pytest.raises(ValueError, match="continuation"):
        branch_rewards(SHORT, SEED, logged, rows, logged.actions[rows], learner)


#: A feedback window long enough to hold the decisions after a branched one (about every two weeks), so that the
#: policy going on deciding (the continuation) shapes the branched reward.
LONG_WINDOW = 60.0


@pytest.fixture(scope="module")
def long_window_log() -> LoggedDecisions:
    """A log of 80 arrangements (twice the other: a tighter paired error) read with the long window."""
    events = simulate_log(SHORT, _logger(SEED), arrangements=80, seed=SEED)
    return logged_decisions(events, SHORT, window_days=LONG_WINDOW)


def _paired_se(a: np.ndarray, b: np.ndarray, cluster: np.ndarray) -> float:
    """Standard error of ``mean(a - b)`` with arrangements as the units."""
    d = a - b
    _, inverse = np.unique(cluster, return_inverse=True)
    resid = np.bincount(inverse, weights=d - d.mean())
    g = len(resid)
    return float(np.sqrt(g / (g - 1) * np.sum(resid**2)) / len(d))


def test_a_wrong_logger_continuation_changes_the_branched_truth_under_a_long_window(
    long_window_log: LoggedDecisions,
) -> None:
    """Under a 60-day window the decisions after a branched one fall inside its window. Branched with the logger
    going on, a candidate drawn like the logger keeps the logger's on-policy value (the logged mean, on the same
    random numbers) within three paired standard errors; branched with a wrong continuation (uniform draws after
    the branched decision instead of the logger's 30%), the same candidate's truth moves by more than three paired
    standard errors (a milder one, static dunning without the uniform draws, moves it by about two). Fails if the
    branches ignore the continuation (the logger, the logged actions or anything else deciding after the branched
    decision whatever ``continuation`` is)."""
    logged = long_window_log
    rows = np.flatnonzero(logged.rewards.closed)
    assert len(rows) > 200
    cluster = logged.rewards.arrangement_id[rows]
    truths = {
        name: branched_truth(SHORT, SEED, logged, _logger(seed=7), continuation, rng=np.random.default_rng(0))
        for name, continuation in {
            "logger": _logger(),
            "random": agents.make("random", seed=11),
        }.items()
    }
    right = truths["logger"]
    assert np.array_equal(right.rows, rows)
    assert abs(right.value - right.logged_value) < 3 * right.difference_se, (right.value, right.logged_value)
    for name in ("random",):
        wrong = truths[name]
        assert np.array_equal(wrong.rows, rows)
        se = _paired_se(wrong.rewards, right.rewards, cluster)
        assert abs(wrong.value - right.value) > 3 * se, (name, wrong.value, right.value, se)
    with pytest.raises(ValueError, match="window_days"):
        branched_truth(SHORT, SEED, logged, _logger(seed=7), _logger(), rng=np.random.default_rng(0), window_days=14.0)
