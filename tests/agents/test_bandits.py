"""Contextual bandits: registry, heads and masks, convergence on a problem with a known optimum (also with
delayed feedback), propensities, reproducibility, state and saving, and learning inside the simulator."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

import agents
from agents.bandits import (
    EpsilonGreedyConfig,
    LinearBandit,
    LinearTS,
    LinearTSConfig,
    build_heads,
    load_bandit,
)
from agents.bandits.design import COMPACT_FEATURES, design_matrix, design_names
from agents.bandits.heads import first_allowed_options
from regsim import ContextBatch, DecisionKind, Feedback, Policy, WorldConfig, simulate
from regsim.decision import CHANNEL, DEFERRAL, DUE_DAY, PART_NAMES, REDUCTION, SEND_SLOT, ActionSpace
from regsim.features import feature_names
from tests.agents.synthetic_bandit import SMALL_SPACE, SyntheticProblem, play
from tests.regsim.test_rules import make_batch, random_rows

K = DecisionKind
BANDITS = ["epsilon-greedy", "linear-ts", "linucb"]
STOCHASTIC = ["epsilon-greedy", "linear-ts"]

#: Hyperparameters of the convergence tests. Each head's reward includes the other heads' contributions, so
#: its effective noise is larger than the problem's; LinUCB's width and epsilon's schedule are set for that.
CONVERGENCE: dict[str, dict[str, Any]] = {
    "epsilon-greedy": {"epsilon": 0.5, "epsilon_decay_decisions": 2000.0},
    "linear-ts": {},
    "linucb": {"alpha": 2.0},
}


def make_bandit(name: str, **kwargs: Any) -> LinearBandit:
    policy = agents.make(name, **kwargs)
    assert isinstance(policy, LinearBandit)
    return policy


def assert_allowed(batch: ContextBatch, actions: np.ndarray) -> None:
    flat = actions + np.array(batch.space.offsets)[None, :]
    ok = np.take_along_axis(batch.mask, flat, axis=1)
    assert ok.all(), f"rows/parts choosing masked options: {np.argwhere(~ok)[:5].tolist()}"


@cache
def trained_state(name: str) -> dict[str, Any]:
    """State of a bandit after learning online in a small simulated population (default action space)."""
    policy = make_bandit(name)
    simulate(WorldConfig(), policy, arrangements=150, months=2, seed=4)
    return policy.state_dict()


def trained(name: str) -> LinearBandit:
    policy = make_bandit(name)
    policy.load_state_dict(trained_state(name))
    return policy


# ------------------------------------------------------------------------------------------------------------
# Registry and arguments
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BANDITS)
def test_bandits_are_registered_online_learners(name: str) -> None:
    spec = agents.available()[name]
    assert spec.summary and {"seed", "feedback_window_days", "censored", "feature_set"} <= set(spec.arguments)
    policy = agents.make(name)
    assert isinstance(policy, Policy) and isinstance(policy, LinearBandit)
    assert policy.name == name and policy.version == "1"
    assert policy.feedback_window_days == 14.0
    assert policy.config.censored == "drop"


# name, kwargs, fragments the message must contain
BAD_ARGUMENTS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("linucb", {"alpha": -1.0}, ("alpha", ">= 0")),
    ("linucb", {"ridge": 0.0}, ("ridge", "> 0")),
    ("linucb", {"gamma": 1.0}, ("gamma", "allowed", "alpha")),
    ("linucb", {"censored": "keep"}, ("censored",)),
    ("linucb", {"feature_set": "tiny"}, ("feature_set",)),
    ("epsilon-greedy", {"epsilon": 1.5}, ("epsilon", "[0, 1]")),
    ("epsilon-greedy", {"epsilon_decay_decisions": 0.0}, ("epsilon_decay_decisions",)),
    ("epsilon-greedy", {"feedback_window_days": 0.0}, ("feedback_window_days", "> 0")),
    ("epsilon-greedy", {"seed": -1}, ("seed", ">= 0")),
    ("linear-ts", {"prior_variance": 0.0}, ("prior_variance",)),
    ("linear-ts", {"noise_variance": float("inf")}, ("noise_variance",)),
    ("linear-ts", {"propensity_samples": 0}, ("propensity_samples", ">= 1")),
    ("linear-ts", {"alpha": 1.0}, ("alpha", "allowed")),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    BAD_ARGUMENTS,
    ids=[f"{n}-{next(iter(k))}={next(iter(k.values()))!r}" for n, k, _ in BAD_ARGUMENTS],
)
def test_bad_argument_is_refused_naming_it(name: str, kwargs: dict[str, Any], fragments: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as info:
        agents.make(name, **kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


# ------------------------------------------------------------------------------------------------------------
# Design and heads
# ------------------------------------------------------------------------------------------------------------
def test_design_is_bias_and_named_features() -> None:
    batch, _ = make_batch(random_rows(7, seed=1))
    X = design_matrix(batch, "compact")
    assert X.shape == (7, 1 + len(COMPACT_FEATURES)) and X.dtype == np.float64
    assert (X[:, 0] == 1.0).all()
    assert design_names("compact")[1:] == COMPACT_FEATURES
    assert design_names("full")[1:] == feature_names()
    assert design_matrix(batch, "full").shape == (7, 1 + len(feature_names()))


def test_heads_of_the_default_action_space() -> None:
    space = ActionSpace.from_config(WorldConfig().decisions)
    contact, due, relief = build_heads(space)
    nvec = space.nvec
    # "No contact" is one arm whatever the slot; every other (channel, slot) pair is an arm.
    assert contact.n_arms == 1 + (nvec[CHANNEL] - 1) * nvec[SEND_SLOT] == 46
    assert due.n_arms == nvec[DUE_DAY] and relief.n_arms == nvec[DEFERRAL] * nvec[REDUCTION]
    assert contact.active_at.all()
    assert due.active_at.tolist() == [k == K.PLAN_CREATED for k in K]
    assert relief.active_at.tolist() == [k in (K.PRE_DUE, K.MISSED, K.FOLLOW_UP) for k in K]
    assert len(set(contact.arm_labels())) == contact.n_arms
    # Writing an arm and reading it back gives the arm.
    for head in (contact, due, relief):
        arms = np.arange(head.n_arms)
        actions = np.zeros((head.n_arms, len(PART_NAMES)), dtype=np.int64)
        head.write(actions, arms, arms, np.full((head.n_arms, len(PART_NAMES)), 2))
        np.testing.assert_array_equal(head.arms_of(actions), arms)
    # Any send slot with channel "none" is the no-contact arm.
    none = np.zeros((nvec[SEND_SLOT], len(PART_NAMES)), dtype=np.int64)
    none[:, SEND_SLOT] = np.arange(nvec[SEND_SLOT])
    assert (contact.arms_of(none) == 0).all()


def test_availability_is_the_product_of_the_parts_masks() -> None:
    rows: list[dict[str, Any]] = [
        {"kind": int(K.PRE_DUE), "opted_out": [True, False, False, False, False]},
        {"kind": int(K.MISSED), "days_to_due": -1, "contacts_7d": 3},
        {"kind": int(K.PAYMENT_RECEIVED), "days_to_due": 20},
    ]
    batch, _ = make_batch(rows)
    space = batch.space
    contact, _, relief = build_heads(space)
    kinds = batch.columns["kind"].astype(np.intp)
    first = first_allowed_options(batch.mask, space)
    avail = contact.available(batch.mask, kinds, first)
    channel, slot = batch.part_mask(CHANNEL), batch.part_mask(SEND_SLOT)
    for row in range(len(batch)):
        for arm, (c, s) in enumerate(contact.options.tolist()):
            expected = channel[row, c] and (slot[row].any() if s < 0 else slot[row, s])
            assert avail[row, arm] == expected
    assert not avail[0, 1 : 1 + space.nvec[SEND_SLOT]].any()  # email opted out
    assert avail[1].tolist() == [True] + [False] * (contact.n_arms - 1)  # contact cap: only "none"
    # At PRE_DUE the reduction does not apply: the relief head chooses among deferrals with no reduction.
    pre = relief.available(batch.mask[:1], kinds[:1], first[:1])[0]
    assert all(pre[arm] == (r == 0 and batch.part_mask(DEFERRAL)[0, d]) for arm, (d, r) in enumerate(relief.options))


# ------------------------------------------------------------------------------------------------------------
# Masked options are never chosen
# ------------------------------------------------------------------------------------------------------------
def _fix_empty_parts(mask: np.ndarray, space: ActionSpace, pick: np.ndarray) -> np.ndarray:
    """Allow one option (``pick``) in every part a row allows none of: every part must allow one."""
    mask = mask.copy()
    for off, size in zip(space.offsets, space.nvec, strict=True):
        empty = ~mask[:, off : off + size].any(axis=1)
        mask[np.flatnonzero(empty), off + pick[empty] % size] = True
    return mask


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    data=st.data(),
)
def test_masked_options_are_never_chosen(seed: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 24), label="rows")
    batch, _ = make_batch(random_rows(n, seed=seed))
    space = batch.space
    mask = data.draw(arrays(np.bool_, (n, space.mask_size)), label="mask")
    batch.mask = _fix_empty_parts(mask, space, np.arange(n))
    for name in BANDITS:
        policy = trained(name)
        for decisions in (policy.decide_batch(batch), policy.exploit(batch)):
            assert decisions.actions.shape == (n, len(PART_NAMES))
            assert_allowed(batch, decisions.actions)
            assert ((decisions.propensity > 0) & (decisions.propensity <= 1)).all()


@pytest.mark.parametrize("name", BANDITS)
def test_parts_without_an_active_head_take_their_first_allowed_option(name: str) -> None:
    batch, _ = make_batch(random_rows(200, seed=3))
    first = first_allowed_options(batch.mask, batch.space)
    actions = trained(name).decide_batch(batch).actions
    kinds = batch.columns["kind"]
    not_plan = kinds != K.PLAN_CREATED
    np.testing.assert_array_equal(actions[not_plan, DUE_DAY], first[not_plan, DUE_DAY])
    no_relief = ~np.isin(kinds, [K.PRE_DUE, K.MISSED, K.FOLLOW_UP])
    np.testing.assert_array_equal(
        actions[no_relief][:, [DEFERRAL, REDUCTION]], first[no_relief][:, [DEFERRAL, REDUCTION]]
    )
    silent = actions[:, CHANNEL] == 0
    np.testing.assert_array_equal(actions[silent, SEND_SLOT], first[silent, SEND_SLOT])
    pre = kinds == K.PRE_DUE
    assert (actions[pre, REDUCTION] == 0).all()


# ------------------------------------------------------------------------------------------------------------
# Convergence on a problem with a known optimum
# ------------------------------------------------------------------------------------------------------------
def _assert_converges(name: str, delay: int, seed: int, rounds: int = 400) -> None:
    problem = SyntheticProblem(seed=seed)
    run = play(problem, make_bandit(name, **CONVERGENCE[name]), rounds=rounds, delay=delay, seed=seed + 10)
    half = rounds // 2
    first, second = run.regret[:half].sum(), run.regret[half:].sum()
    # Sublinear cumulative regret: the second half of the rounds costs less than half of the first half.
    assert second < 0.5 * first, f"regret {first:.1f} in the first half, {second:.1f} in the second"
    assert run.accuracy >= 0.95, f"greedy choice best in {run.accuracy:.1%} of (context, head) pairs"


@pytest.mark.parametrize("delay", [0, 5], ids=["immediate", "5-rounds-late"])
@pytest.mark.parametrize("name", BANDITS)
def test_bandit_reaches_the_optimum(name: str, delay: int) -> None:
    _assert_converges(name, delay, seed=0)


@pytest.mark.statistical
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("delay", [0, 5, 10], ids=["immediate", "5-rounds-late", "10-rounds-late"])
@pytest.mark.parametrize("name", BANDITS)
def test_bandit_reaches_the_optimum_on_other_problems(name: str, delay: int, seed: int) -> None:
    _assert_converges(name, delay, seed=seed, rounds=600)


@pytest.mark.statistical
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_thompson_sampling_reaches_the_optimum_with_long_delays(seed: int) -> None:
    """Feedback 20 rounds (320 decisions) late.

    Only Thompson sampling is held to this: with LinUCB (deterministic) and, less so, epsilon-greedy, the heads
    change their choices in step, so each head's data mixes eras in which the other heads contributed different
    amounts to the shared reward; an arm abandoned early keeps a stale, low estimate, and on 3 of these 4
    problems one or two (context, head) pairs of 36 stay wrong (94.4%) although regret still falls by a factor
    of 5 or more. Thompson sampling's heads draw independently at every decision, which averages that out.
    """
    _assert_converges("linear-ts", 20, seed=seed, rounds=600)


# ------------------------------------------------------------------------------------------------------------
# Propensities
# ------------------------------------------------------------------------------------------------------------
ALPHA = 0.001  # significance level of the chi-square tests below


def _chi_square_of_frequencies(actions: np.ndarray, propensity: np.ndarray) -> tuple[float, int]:
    """p-value of the observed action counts against the counts the reported propensities predict.

    The expected share of an action is the mean propensity reported for it (for Thompson sampling each is a
    Monte Carlo estimate, independent of the draw that chose the action, so the mean is unbiased); the share
    of the actions never chosen is the rest, with observed count 0.
    """
    n = len(actions)
    distinct, inverse, counts = np.unique(actions, axis=0, return_inverse=True, return_counts=True)
    share = np.bincount(inverse.ravel(), weights=propensity) / counts
    expected = n * share
    observed = counts.astype(float)
    rest = n - expected.sum()
    assert rest > -0.01 * n, f"reported propensities add up to {share.sum():.3f} > 1"
    if rest > 0:
        observed, expected = np.append(observed, 0.0), np.append(expected, rest)
    expected *= observed.sum() / expected.sum()
    return float(stats.chisquare(observed, expected).pvalue), len(distinct)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_frequencies_match_reported_propensities(name: str) -> None:
    """On one fixed context, chosen actions over many independent draws follow the reported propensities."""
    problem = SyntheticProblem(seed=0)
    kwargs: dict[str, Any] = {"epsilon": 0.4} if name == "epsilon-greedy" else {}
    policy = make_bandit(name, seed=3, **kwargs)
    play(problem, policy, rounds=5)
    plan = int(np.flatnonzero(problem.contexts.columns["kind"] == K.PLAN_CREATED)[0])
    batch = problem.contexts.take(np.full(4_000, plan))
    decided = [policy.decide_batch(batch) for _ in range(5)]  # 20,000 draws over 5 calls
    actions = np.concatenate([d.actions for d in decided])
    propensity = np.concatenate([d.propensity for d in decided])
    pvalue, n_actions = _chi_square_of_frequencies(actions, propensity)
    assert n_actions >= 6, "the test needs a spread of actions"
    assert pvalue > ALPHA, f"chi-square p = {pvalue:.2g} < {ALPHA}"


def test_epsilon_greedy_propensities_are_exact() -> None:
    batch, _ = make_batch(random_rows(50, seed=9))
    policy = trained("epsilon-greedy")
    greedy = policy.exploit(batch).actions
    decided = policy.decide_batch(batch)
    assert isinstance(policy.config, EpsilonGreedyConfig)
    space, eps = batch.space, policy.config.epsilon
    kinds = batch.columns["kind"].astype(np.intp)
    first = first_allowed_options(batch.mask, space)
    expected = np.ones(len(batch))
    for head in build_heads(space):
        active = head.active_at[kinds]
        m = head.available(batch.mask, kinds, first)[active].sum(axis=1)
        same = head.arms_of(decided.actions[active]) == head.arms_of(greedy[active])
        expected[active] *= eps / m + (1 - eps) * same
    np.testing.assert_allclose(decided.propensity, expected, rtol=1e-12)


def test_linucb_is_deterministic_with_propensity_one() -> None:
    batch, _ = make_batch(random_rows(50, seed=2))
    a, b = trained("linucb").decide_batch(batch), trained("linucb").decide_batch(batch)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert (a.propensity == 1.0).all()


def test_thompson_propensity_floor_and_exploit() -> None:
    policy = trained("linear-ts")
    batch, _ = make_batch(random_rows(30, seed=5))
    p = policy.decide_batch(batch).propensity
    assert isinstance(policy.config, LinearTSConfig)
    m = policy.config.propensity_samples
    assert (p >= 1.0 / m**3 - 1e-15).all()  # at most three active heads, each at least 1/m
    state = policy.rng.bit_generator.state
    assert (policy.exploit(batch).propensity == 1.0).all()
    assert policy.rng.bit_generator.state == state, "exploit must not draw from the exploration stream"


# ------------------------------------------------------------------------------------------------------------
# Reproducibility, state, saving
# ------------------------------------------------------------------------------------------------------------
def _batches() -> list[ContextBatch]:
    return [make_batch(random_rows(n, seed=s))[0] for s, n in ((11, 40), (12, 1), (13, 64))]


@pytest.mark.parametrize("name", BANDITS)
def test_same_seed_same_decisions(name: str) -> None:
    a, b = trained(name), trained(name)
    for batch in _batches():
        da, db = a.decide_batch(batch), b.decide_batch(batch)
        np.testing.assert_array_equal(da.actions, db.actions)
        np.testing.assert_array_equal(da.propensity, db.propensity)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_other_seed_other_decisions(name: str) -> None:
    a, b = make_bandit(name, seed=1), make_bandit(name, seed=2)
    batch = _batches()[2]
    assert not np.array_equal(a.decide_batch(batch).actions, b.decide_batch(batch).actions)


def _assert_states_equal(s1: dict[str, Any], s2: dict[str, Any]) -> None:
    assert s1.keys() == s2.keys()
    for key in s1:
        v1, v2 = np.asarray(s1[key]), np.asarray(s2[key])
        assert v1.dtype == v2.dtype or (v1.dtype.kind == v2.dtype.kind == "U"), key
        np.testing.assert_array_equal(v1, v2, err_msg=key)


@pytest.mark.parametrize("name", BANDITS)
def test_state_dict_round_trip_is_exact(name: str) -> None:
    state = trained_state(name)
    assert {"policy", "space", "rng", "decisions", "learned", "dropped", "contact.A", "relief.theta"} <= set(state)
    policy = make_bandit(name)
    policy.load_state_dict(state)
    _assert_states_equal(policy.state_dict(), state)
    fresh = make_bandit(name).state_dict()
    assert fresh["space"] == "" and "contact.A" not in fresh
    restored = make_bandit(name)
    restored.load_state_dict(fresh)
    _assert_states_equal(restored.state_dict(), fresh)


@pytest.mark.parametrize("name", BANDITS)
def test_save_and_load_give_identical_decisions(name: str, tmp_path: Path) -> None:
    original = trained(name)
    folder = original.save(tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "manifest.json", "state.npz"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["policy"] == name and meta["config"]["seed"] == 0 and meta["design"][0] == "bias"
    with np.load(folder / "state.npz", allow_pickle=False) as data:
        assert "contact.A" in data.files
    restored = type(original).load(folder)
    by_name = load_bandit(folder)
    assert type(by_name) is type(original)
    _assert_states_equal(restored.state_dict(), original.state_dict())
    for batch in _batches():
        expected = original.decide_batch(batch)
        for policy in (restored, by_name):
            got = policy.decide_batch(batch)
            np.testing.assert_array_equal(got.actions, expected.actions)
            np.testing.assert_array_equal(got.propensity, expected.propensity)


def test_load_refuses_another_policy_or_feature_layout(tmp_path: Path) -> None:
    folder = trained("linucb").save(tmp_path / "linucb")
    with pytest.raises(ValueError, match="not 'linear-ts'"):
        LinearTS.load(folder)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "feature_version": "features-0"}))
    with pytest.raises(ValueError, match="features-0"):
        load_bandit(folder)
    with pytest.raises(ValueError, match="state is of policy"):
        make_bandit("linucb").load_state_dict(trained_state("linear-ts"))


def test_a_bandit_refuses_contexts_of_another_action_space() -> None:
    policy = trained("linucb")
    batch, _ = make_batch(random_rows(3, seed=1), WorldConfig().with_overrides(**SMALL_SPACE))
    with pytest.raises(ValueError, match="action space"):
        policy.decide_batch(batch)


@pytest.mark.parametrize("name", BANDITS)
def test_empty_batch(name: str) -> None:
    batch, _ = make_batch(random_rows(3, seed=1))
    out = make_bandit(name).decide_batch(batch.take(np.zeros(0, dtype=np.int64)))
    assert out.actions.shape == (0, len(PART_NAMES)) and out.propensity.shape == (0,)


# ------------------------------------------------------------------------------------------------------------
# Learning from feedback
# ------------------------------------------------------------------------------------------------------------
def _feedback(batch: ContextBatch, actions: np.ndarray, rewards: np.ndarray, censored: np.ndarray) -> Feedback:
    n = len(batch)
    return Feedback(np.arange(n), batch, actions, np.ones(n), rewards, censored)


@pytest.mark.parametrize("censored", ["drop", "use"])
def test_update_counts_each_active_head_and_handles_censoring(censored: str) -> None:
    batch, _ = make_batch(random_rows(60, seed=21))
    policy = make_bandit("linucb", censored=censored)
    actions = policy.decide_batch(batch).actions
    cut = np.arange(60) % 3 == 0
    policy.update(_feedback(batch, actions, np.linspace(-1, 2, 60), cut))
    kept = ~cut if censored == "drop" else np.ones(60, dtype=bool)
    kinds = batch.columns["kind"]
    assert policy.learned == kept.sum() and policy.dropped == (60 - kept.sum())
    assert policy.arms["contact"].n.sum() == kept.sum()
    assert policy.arms["due_day"].n.sum() == (kept & (kinds == K.PLAN_CREATED)).sum()
    assert policy.arms["relief"].n.sum() == (kept & np.isin(kinds, [K.PRE_DUE, K.MISSED, K.FOLLOW_UP])).sum()
    with pytest.raises(ValueError, match="finite"):
        policy.update(_feedback(batch, actions, np.full(60, np.nan), np.zeros(60, dtype=bool)))


def test_ridge_statistics_match_a_direct_solve() -> None:
    """After updates in several batches, theta is the ridge solution with the prior mean on the intercept."""
    batch, _ = make_batch(random_rows(300, seed=22))
    policy = make_bandit("epsilon-greedy", ridge=0.5)
    rng = np.random.default_rng(0)
    actions = policy.decide_batch(batch).actions
    rewards = rng.normal(size=300)
    for part in np.array_split(np.arange(300), 4):
        policy.update(_feedback(batch.take(part), actions[part], rewards[part], np.zeros(len(part), dtype=bool)))
    X = design_matrix(batch, "compact")
    head = policy.heads[0]
    arms = head.arms_of(actions)
    stats_ = policy.arms[head.name]
    prior = np.zeros(X.shape[1])
    prior[0] = rewards.mean()
    for k in np.unique(arms):
        Xk, rk = X[arms == k], rewards[arms == k]
        theta = np.linalg.solve(0.5 * np.eye(X.shape[1]) + Xk.T @ Xk, Xk.T @ rk + 0.5 * prior)
        np.testing.assert_allclose(stats_.theta[k], theta, rtol=1e-8, atol=1e-10)
    untouched = np.setdiff1d(np.arange(head.n_arms), arms)
    np.testing.assert_allclose(stats_.theta[untouched][:, 0], rewards.mean(), rtol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Inside the simulator
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BANDITS)
def test_bandit_learns_inside_the_simulator(name: str) -> None:
    policy = make_bandit(name)
    calls: list[int] = []
    update = policy.update

    def counting_update(feedback: Feedback) -> None:
        calls.append(len(feedback.rewards))
        update(feedback)

    policy.update = counting_update  # type: ignore[method-assign]
    result = simulate(WorldConfig(), policy, arrangements=300, months=4, seed=0)
    assert len(result.events) and policy.decisions > 0
    assert len(calls) > 10, "the world feeds back every evening"
    # Every decision is fed back exactly once; the ones still open at the horizon come censored and are dropped.
    assert sum(calls) == policy.decisions == policy.learned + policy.dropped
    assert policy.learned > 0 and policy.dropped > 0
    ridge = policy.arms["contact"].ridge
    for head in policy.heads:
        arms = policy.arms[head.name]
        assert arms.n.sum() > 0
        assert not np.allclose(arms.A, ridge * np.eye(policy.dim)[None])
        assert np.abs(arms.theta).sum() > 0
