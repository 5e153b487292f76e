"""From an event log to OPE feedback: rewards as the bandits' matcher counts them, exact propensities rebuilt from
the log alone, per-arrangement values that add up to the net recovery, open windows counted, the shadow policy."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

import agents
from agents.ope.behaviour import EpsilonMixture, logged_behaviour
from agents.ope.candidates import candidate_on_log, effective_actions, probability_source, uniform_probabilities
from agents.ope.feedback import build_feedback, fit_reward_models
from agents.ope.logged import LoggedDecisions, arrangement_values, decision_rewards, logged_decisions, shadow_candidate
from agents.ope.reward_model import cross_fitted_rewards
from regsim import load_world_config, simulate
from regsim.eventlog import EventType, event_codes
from regsim.features import features
from regsim.feedback import OutcomeMatcher
from regsim.metrics import arrangement_outcomes
from regsim.rewards import RewardCosts
from regsim.runoff import RunoffCap
from tests.experiments.conftest import REPO

WORLD = load_world_config(REPO / "configs" / "population" / "default.yaml")
SHORT = WORLD.model_copy(update={"simulation": WORLD.simulation.model_copy(update={"runoff_months_after_plan": 1.0})})


@pytest.fixture(scope="module")
def mixture_log() -> pa.Table:
    return simulate(WORLD, EpsilonMixture(base="static-dunning", epsilon=0.3), arrangements=60, months=3, seed=4).events


@pytest.fixture(scope="module")
def mixture_logged(mixture_log: pa.Table) -> LoggedDecisions:
    return logged_decisions(mixture_log, WORLD)


def test_rewards_are_what_the_bandits_matcher_credits(mixture_log: pa.Table, mixture_logged: LoggedDecisions) -> None:
    """decision_rewards gives each decision what regsim.feedback.OutcomeMatcher gives it (payments in the window
    minus its own messages' cost), and marks as closed exactly the decisions the matcher matures."""
    rewards = decision_rewards(mixture_log)
    matcher = OutcomeMatcher(14.0, lambda o, c: o.collected_eur - o.contact_cost_eur, RewardCosts.of(WORLD))
    for t in np.unique(rewards.time):
        k = np.flatnonzero(rewards.time == t)
        logged = mixture_logged
        matcher.add(rewards.decision_id[k], float(t), logged.contexts.take(k), logged.actions[k], logged.propensity[k])
    codes = event_codes(mixture_log)
    names = ("arrangement_id", "time", "amount_eur", "decision_id", "deferral_days", "collection_costs_eur")
    cols = {n: mixture_log.column(n).to_numpy(zero_copy_only=False) for n in names}
    for event in (EventType.PAYMENT, EventType.MESSAGE_SENT, EventType.INSTALLMENT_PAID, EventType.COMPLETED,
                  EventType.BROKEN, EventType.REFERRED):  # fmt: skip
        matcher.observe(event, {k: v[codes == event] for k, v in cols.items()})
    matured = matcher.mature(rewards.horizon_days)
    rest = matcher.flush(rewards.horizon_days)
    assert matured is not None and rest is not None
    expected = dict(zip(matured.decision_ids.tolist(), matured.rewards.tolist(), strict=True))
    expected |= dict(zip(rest.decision_ids.tolist(), rest.rewards.tolist(), strict=True))
    got = dict(zip(rewards.decision_id.tolist(), rewards.reward.tolist(), strict=True))
    assert got.keys() == expected.keys()
    assert max(abs(got[d] - expected[d]) for d in got) < 1e-9
    assert set(rewards.decision_id[rewards.closed].tolist()) == set(matured.decision_ids.tolist())
    assert 0 < (~rewards.closed).sum() < len(rewards.closed)  # a 3-month log leaves some windows open


@pytest.mark.parametrize("name", ["epsilon-mixture", "random", "epsilon-greedy"])
def test_logged_propensities_are_rebuilt_exactly_from_the_log(name: str) -> None:
    """A logger with exact probabilities, run again on the contexts replayed from its log, gives every logged
    action the logged propensity: the contexts, masks and effective actions are what the world had."""
    log = simulate(WORLD, agents.make(name), arrangements=30, months=2, seed=1).events
    logged = logged_decisions(log, WORLD)
    assert np.array_equal(effective_actions(logged.contexts, logged.actions), logged.actions)
    policy = agents.make(name)
    if name == "epsilon-greedy":  # a learner: its probabilities hold for its state at decision time; fresh = frozen
        first = logged.rewards.time == logged.rewards.time.min()
        rows = np.flatnonzero(first)
    else:
        rows = np.arange(len(logged))
    sub = logged.take(rows)
    on_log = candidate_on_log(policy, sub.contexts, sub.actions, rng=np.random.default_rng(0))
    assert on_log.source == "exact"
    np.testing.assert_allclose(on_log.target_prob, sub.propensity, rtol=1e-12, atol=0)
    np.testing.assert_allclose(on_log.weights.sum(axis=1), 1.0)


def test_uniform_probabilities_sum_to_one_over_the_effective_actions(mixture_logged: LoggedDecisions) -> None:
    """Every slot of "no contact" is one effective action: summed over the distinct effective actions, the
    uniform distribution over allowed options has mass 1 in every context."""
    contexts = mixture_logged.contexts.take(np.arange(0, len(mixture_logged), max(1, len(mixture_logged) // 5)))
    nvec = contexts.space.nvec
    every = np.array(list(itertools.product(*(range(n) for n in nvec))), dtype=np.int64)
    for i in range(len(contexts)):
        one = contexts.take(np.full(len(every), i))
        distinct = np.unique(effective_actions(one, every), axis=0)
        p = uniform_probabilities(contexts.take(np.full(len(distinct), i)), distinct)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_a_deterministic_candidate_has_probability_one_where_it_agrees(mixture_logged: LoggedDecisions) -> None:
    policy = agents.make("static-dunning")
    assert probability_source(policy, mixture_logged.contexts) == "deterministic"
    on_log = candidate_on_log(policy, mixture_logged.contexts, mixture_logged.actions, rng=np.random.default_rng(0))
    own = effective_actions(mixture_logged.contexts, policy.decide_batch(mixture_logged.contexts).actions)
    np.testing.assert_array_equal(on_log.target_prob, np.all(own == mixture_logged.actions, axis=1))
    # The mixture took the base action most of the time (probability 0.7 plus the uniform's share).
    assert 0.6 < on_log.target_prob.mean() < 0.95


def test_ground_truth_candidates_are_refused(mixture_logged: LoggedDecisions) -> None:
    with pytest.raises(ValueError, match="ground truth"):
        probability_source(agents.make("one-step-oracle"), mixture_logged.contexts)


def test_feedback_counts_only_closed_windows_and_reports_the_rest(
    mixture_log: pa.Table, mixture_logged: LoggedDecisions
) -> None:
    label = np.unique(mixture_logged.policy)[0]
    behaviours = {label: logged_behaviour(*label.split(" ", 1))}
    assert isinstance(behaviours[label], EpsilonMixture)
    fb = build_feedback(
        mixture_log, mixture_logged, agents.make("payday-aligned"), config=WORLD, behaviours=behaviours, folds=2
    )
    s = fb.summary
    assert s.decisions == len(mixture_logged)
    assert s.decisions_counted + s.decisions_open == s.decisions == fb.bandit.n + s.decisions_open
    assert s.decisions_open == int((~mixture_logged.rewards.closed).sum()) > 0
    assert np.all(mixture_logged.rewards.closed[fb.rows])
    np.testing.assert_array_equal(fb.bandit.cluster, mixture_logged.rewards.arrangement_id[fb.rows])
    assert fb.bandit.q_logged is not None and fb.bandit.q_target is not None
    # The mixture gives every allowed action positive probability: the candidate is fully supported.
    assert np.all(fb.bandit.support_gap == 0.0)
    assert s.arrangements_counted + s.arrangements_open == s.arrangements  # (3 months: most still open)


def test_one_fit_of_the_reward_models_serves_every_candidate_with_its_own_numbers(
    mixture_log: pa.Table, mixture_logged: LoggedDecisions
) -> None:
    """The models fitted once on the log (shared by candidates) give each candidate the q of a fit for it alone
    (:func:`cross_fitted_rewards`, the same folds): fails if the prediction uses another candidate's actions or
    the shared fit differs from the per-candidate one. Models of another set of decisions are refused."""
    models = fit_reward_models(mixture_log, mixture_logged, config=WORLD, folds=2, seed=3, interactions=False)
    feats = features(mixture_logged.contexts).astype(np.float64)
    for name in ("payday-aligned", "silent", "random"):
        fb = build_feedback(
            mixture_log, mixture_logged, agents.make(name), config=WORLD, reward_models=models, folds=2, seed=3
        )
        r = fb.rows
        q_logged, q_target = cross_fitted_rewards(
            feats[r],
            mixture_logged.actions[r],
            fb.candidate.support[r],
            fb.candidate.weights[r],
            mixture_logged.rewards.reward[r],
            mixture_logged.rewards.arrangement_id[r],
            action_sizes=tuple(mixture_logged.contexts.space.nvec),
            folds=2,
            seed=3,
            kinds=mixture_logged.kind[r],
            context_interactions=False,
        )
        assert fb.bandit.q_logged is not None and fb.bandit.q_target is not None
        assert np.allclose(fb.bandit.q_logged, q_logged, rtol=1e-9, atol=1e-9)
        assert np.allclose(fb.bandit.q_target, q_target, rtol=1e-9, atol=1e-9)
    half = mixture_logged.take(mixture_logged.of_arrangements(np.unique(mixture_logged.rewards.arrangement_id)[:30]))
    with pytest.raises(ValueError, match="reward_models"):
        build_feedback(mixture_log, half, agents.make("silent"), config=WORLD, reward_models=models)


def test_a_deterministic_logger_leaves_the_other_actions_unsupported() -> None:
    log = simulate(WORLD, agents.make("static-dunning"), arrangements=30, months=2, seed=2).events
    logged = logged_decisions(log, WORLD)
    fb = build_feedback(log, logged, agents.make("payday-aligned"), config=WORLD, reward_model=False)
    np.testing.assert_allclose(fb.bandit.support_gap, 1.0 - fb.bandit.target_prob)
    assert fb.bandit.support_gap.mean() > 0.2


def test_arrangement_values_add_up_to_the_run_off_net_recovery() -> None:
    cap = RunoffCap(months_after_plan=SHORT.simulation.runoff_months_after_plan)
    log = simulate(SHORT, agents.make("random"), arrangements=40, runoff=cap, seed=3).events
    ids, values = arrangement_values(log, SHORT)
    outcomes = arrangement_outcomes(log, cap=cap)
    assert len(ids) == len(outcomes)  # a run-off: every arrangement ended or reached its cap
    # Messages a decision within the cap sent after the cap are the only difference (none here, or cents).
    np.testing.assert_allclose(values, outcomes["net_recovery_eur"].reindex(ids).to_numpy(), atol=1.0)


def test_the_shadow_policy_is_evaluated_from_its_stored_actions(
    mixture_log: pa.Table, mixture_logged: LoggedDecisions
) -> None:
    """A shadow table holding static dunning's decisions gives the same probabilities as static dunning itself;
    decisions without a shadow row are left out and counted."""
    own = effective_actions(
        mixture_logged.contexts, agents.make("static-dunning").decide_batch(mixture_logged.contexts).actions
    )
    ids = mixture_logged.rewards.decision_id
    columns: dict[str, list[object]] = {"decision_id": ids[1:].tolist()}
    for k, part in enumerate(("channel", "send_slot", "due_day", "deferral", "reduction")):
        columns[f"a_{part}"] = own[1:, k].tolist()
    on_log, present = shadow_candidate(pa.table(columns), mixture_logged)
    assert not present[0] and present[1:].all()
    np.testing.assert_array_equal(on_log.target_prob[1:], np.all(own == mixture_logged.actions, axis=1)[1:])
    fb = build_feedback(
        mixture_log, mixture_logged, on_log, config=WORLD, candidate_present=present, reward_model=False
    )
    assert fb.summary.decisions_without_candidate == int(mixture_logged.rewards.closed[0])
    with pytest.raises(ValueError, match="a_channel"):
        shadow_candidate(pa.table({"decision_id": ids.tolist()}), mixture_logged)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"epsilon": 0.0}, "epsilon"), ({"epsilon": 1.5}, "epsilon"), ({"base": "one-step-oracle"}, "ground truth")],
)
def test_epsilon_mixture_refuses_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EpsilonMixture(**kwargs)  # type: ignore[arg-type]


def test_epsilon_mixture_is_registered_and_rebuilt_from_its_logged_version() -> None:
    made = agents.make("epsilon-mixture", base="payday-aligned", epsilon=0.2)
    assert isinstance(made, EpsilonMixture)
    again = logged_behaviour(made.name, made.version)
    assert isinstance(again, EpsilonMixture) and (again.base_name, again.epsilon) == ("payday-aligned", 0.2)
    assert logged_behaviour("static-dunning", "1") is not None
    assert logged_behaviour("static-dunning", "0-unknown") is None
