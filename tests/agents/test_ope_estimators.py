"""The per-decision OPE estimators, their gate and the cross-fitted reward model, on synthetic logs with known truth."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agents.ope import BanditFeedback, EstimatorParams, GateSettings, estimate
from agents.ope.estimators import ESTIMATOR_NAMES, dm, dr, dros, ips, sndr, snips, switch_dr
from agents.ope.reward_model import cross_fitted_rewards
from agents.ope.synthetic import SyntheticBandit, synthetic_bandit

WEIGHTED = ("ips", "snips", "dr", "sndr", "switch-dr", "dros")


def _log(seed: int = 0, **kwargs: object) -> SyntheticBandit:
    return synthetic_bandit(np.random.default_rng(seed), **kwargs)  # type: ignore[arg-type]


def _with_rewards(fb: BanditFeedback, reward: np.ndarray) -> BanditFeedback:
    return dataclasses.replace(fb, reward=reward)


def _with_wrong_model(log: SyntheticBandit, bias_per_action: np.ndarray) -> BanditFeedback:
    """The feedback with a reward model wrong by ``bias_per_action[a]`` at action ``a`` (not a constant)."""
    q = log.expected_reward + bias_per_action[None, :]
    rows = np.arange(log.feedback.n)
    return dataclasses.replace(log.feedback, q_logged=q[rows, log.action], q_target=(log.target_probs * q).sum(axis=1))


# -- exact identities -------------------------------------------------------------------------------------------------
def test_dr_and_dm_are_exact_when_the_model_is_exact_and_rewards_noiseless() -> None:
    log = _log(noise_sd=0.0, n_clusters=300)
    assert dr(log.feedback) == pytest.approx(log.true_value, abs=1e-10)
    assert dm(log.feedback) == pytest.approx(log.true_value, abs=1e-10)
    assert sndr(log.feedback) == pytest.approx(log.true_value, abs=1e-10)
    # IPS is not exact on the same log: the identity above is the model's doing.
    assert abs(ips(log.feedback) - log.true_value) > 1e-3


def test_dr_corrects_a_biased_model_where_dm_does_not() -> None:
    log = _log(noise_sd=0.0, n_clusters=2000, model_bias=1.0)
    assert dm(log.feedback) == pytest.approx(log.true_value + 1.0, abs=1e-9)
    assert abs(dr(log.feedback) - log.true_value) < 0.1
    bias = np.linspace(-2.0, 2.0, log.target_probs.shape[1])
    wrong = _with_wrong_model(log, bias)
    assert abs(dm(wrong) - log.true_value) > 0.15
    assert abs(dr(wrong) - log.true_value) < 0.1


def test_the_self_normalised_and_shrunk_estimators_follow_their_formulas() -> None:
    log = _log(n_clusters=200)
    fb = _with_wrong_model(log, np.linspace(-1.0, 1.0, log.target_probs.shape[1]))
    w, r, q_l, q_t = fb.weight, fb.reward, fb.q_logged, fb.q_target
    assert q_l is not None and q_t is not None
    assert snips(fb) == pytest.approx(float((w * r).sum() / w.sum()), abs=1e-12)
    assert sndr(fb) == pytest.approx(float(q_t.mean() + (w * (r - q_l)).sum() / w.sum()), abs=1e-12)
    shrunk = 3.0 * w / (w * w + 3.0)
    assert dros(fb, lambda_=3.0) == pytest.approx(float(np.mean(q_t + shrunk * (r - q_l))), abs=1e-12)
    kept = np.where(w <= 1.5, w, 0.0)
    assert switch_dr(fb, tau=1.5) == pytest.approx(float(np.mean(q_t + kept * (r - q_l))), abs=1e-12)


def test_snips_moves_exactly_with_a_reward_shift_and_ips_does_not() -> None:
    fb = _log(n_clusters=200).feedback
    shifted = _with_rewards(fb, fb.reward + 5.0)
    assert snips(shifted) == pytest.approx(snips(fb) + 5.0, abs=1e-9)
    assert ips(shifted) - ips(fb) == pytest.approx(5.0 * fb.weight.mean(), abs=1e-9)
    assert abs(ips(shifted) - ips(fb) - 5.0) > 1e-3


def test_switch_dr_is_dr_at_tau_infinite_and_dm_at_tau_zero() -> None:
    fb = _log(n_clusters=200, model_bias=0.5).feedback
    assert switch_dr(fb, tau=math.inf) == pytest.approx(dr(fb), abs=1e-12)
    assert switch_dr(fb, tau=0.0) == pytest.approx(dm(fb), abs=1e-12)
    middle = float(np.median(fb.weight))
    assert switch_dr(fb, tau=middle) != pytest.approx(dr(fb), abs=1e-6)


def test_dros_is_dr_as_lambda_grows_and_dm_at_lambda_zero() -> None:
    fb = _log(n_clusters=200, model_bias=0.5).feedback
    assert dros(fb, lambda_=math.inf) == pytest.approx(dr(fb), abs=1e-12)
    assert dros(fb, lambda_=1e12) == pytest.approx(dr(fb), abs=1e-6)
    assert dros(fb, lambda_=0.0) == pytest.approx(dm(fb), abs=1e-12)
    assert dros(fb, lambda_=1.0) != pytest.approx(dr(fb), abs=1e-4)


def test_clipping_caps_each_weight() -> None:
    fb = _log(n_clusters=200).feedback
    w = fb.weight
    clip = float(np.quantile(w, 0.9))
    assert ips(fb, clip=clip) == pytest.approx(float(np.mean(np.minimum(w, clip) * fb.reward)), abs=1e-12)
    assert ips(fb, clip=10 * float(w.max())) == pytest.approx(ips(fb), abs=1e-12)
    positive = _with_rewards(fb, np.abs(fb.reward))
    assert ips(positive, clip=clip) < ips(positive)
    tiny = 0.5 * float(w[w > 0].min())
    assert ips(fb, clip=tiny) == pytest.approx(tiny * float(fb.reward[w > 0].sum()) / fb.n, abs=1e-12)


def test_estimate_agrees_with_the_plain_functions() -> None:
    fb = _log(n_clusters=300, model_bias=0.3).feedback
    params = EstimatorParams(clip=5.0, tau=3.0, lambda_=20.0)
    results = estimate(fb, seed=0, n_bootstrap=20, params=params, gate_settings=GateSettings(min_ess=0.0))
    plain = {
        "dm": dm(fb),
        "ips": ips(fb, clip=5.0),
        "snips": snips(fb),
        "dr": dr(fb),
        "sndr": sndr(fb),
        "switch-dr": switch_dr(fb, tau=3.0),
        "dros": dros(fb, lambda_=20.0),
    }
    assert list(results) == list(ESTIMATOR_NAMES)
    for name, value in plain.items():
        result = results[name]
        assert result.value == pytest.approx(value, abs=1e-10), name
        assert result.ci_low <= result.value <= result.ci_high, name
        assert result.diagnostics.refused is None
        assert result.n_bootstrap == 20
    assert math.isnan(results["dm"].bound_low) and math.isnan(results["snips"].bound_low)
    assert results["ips"].bound_low < results["ips"].value < results["ips"].bound_high


def test_estimate_is_reproducible_from_its_seed() -> None:
    fb = _log(n_clusters=100).feedback
    a, b, c = (estimate(fb, seed=s, n_bootstrap=30) for s in (7, 7, 8))
    assert a["dr"].ci_low == b["dr"].ci_low
    assert a["dr"].ci_low != c["dr"].ci_low


# -- unbiasedness (statistical) ---------------------------------------------------------------------------------------
@pytest.mark.statistical
def test_ips_and_dr_intervals_cover_the_truth_over_seeds() -> None:
    covered = {"ips": 0, "dr": 0, "snips": 0, "sndr": 0}
    errors: dict[str, list[float]] = {name: [] for name in covered}
    seeds = range(12)
    for seed in seeds:
        log = _log(seed, n_clusters=400)
        # A model wrong by action, so that DR's unbiasedness is not the model's doing.
        fb = _with_wrong_model(log, np.linspace(-1.0, 1.0, log.target_probs.shape[1]))
        results = estimate(fb, names=tuple(covered), seed=seed, n_bootstrap=200)
        for name, result in results.items():
            covered[name] += result.ci_low <= log.true_value <= result.ci_high
            errors[name].append(result.value - log.true_value)
    for name, count in covered.items():
        assert count >= 10, (name, count)
        # The mean error over seeds is within 3 standard errors of zero (unbiased, or nearly for the ratios).
        err = np.asarray(errors[name])
        assert abs(err.mean()) < 3 * err.std(ddof=1) / math.sqrt(len(err)) + 1e-9, (name, err.mean())


# -- the gate ------------------------------------------------------------------------------------------------------
def test_failed_support_refuses_the_weighting_estimators_and_keeps_dm() -> None:
    log = _log(n_clusters=300, unsupported_action=True)
    assert log.feedback.support_gap.mean() > 0.05
    results = estimate(log.feedback, seed=0, n_bootstrap=10)
    for name in WEIGHTED:
        result = results[name]
        assert math.isnan(result.value) and math.isnan(result.ci_low), name
        assert result.refused is not None and "failed support" in result.refused, name
    assert math.isfinite(results["dm"].value)
    assert results["dm"].refused is None
    assert results["dm"].diagnostics.warning is not None and "never takes" in results["dm"].diagnostics.warning
    assert results["dm"].diagnostics.unsupported_mass >= log.feedback.support_gap.mean()


def test_unsupported_mass_is_seen_from_the_weights_when_not_logged() -> None:
    log = _log(n_clusters=2000, unsupported_action=True)
    unlogged = dataclasses.replace(log.feedback, unsupported_mass=None)
    results = estimate(unlogged, names=("ips", "dm"), seed=0, n_bootstrap=0)
    assert results["ips"].refused is not None and "failed support" in results["ips"].refused
    assert results["dm"].refused is None
    # A looser threshold lets the estimate through, with the caveat stated.
    loose = estimate(unlogged, names=("ips",), seed=0, n_bootstrap=0, gate_settings=GateSettings(max_unsupported=0.9))
    assert loose["ips"].refused is None
    assert loose["ips"].diagnostics.warning is not None and "unsupported" in loose["ips"].diagnostics.warning


def test_full_support_passes_the_gate() -> None:
    results = estimate(_log(n_clusters=2000).feedback, seed=0, n_bootstrap=0)
    assert all(r.refused is None for r in results.values())
    assert all(r.diagnostics.warning is None for r in results.values())


def test_a_deterministic_logger_gets_dm_with_a_warning_and_no_weighting() -> None:
    log = _log(n_clusters=300, deterministic_logger=True)
    assert np.all(log.feedback.pscore == 1.0)
    # The support is declared unknown (zeros), so the refusal rests on the logger being deterministic.
    fb = dataclasses.replace(log.feedback, unsupported_mass=None)
    results = estimate(fb, seed=0, n_bootstrap=10, gate_settings=GateSettings(max_unsupported=1.0))
    for name in WEIGHTED:
        assert "deterministic" in (results[name].refused or ""), name
        assert math.isnan(results[name].value)
    assert math.isfinite(results["dm"].value) and results["dm"].refused is None
    assert "deterministic" in (results["dm"].diagnostics.warning or "")


def test_estimators_without_a_model_are_refused_in_estimate_and_raise_alone() -> None:
    fb = _log(n_clusters=100, with_model=False).feedback
    results = estimate(fb, seed=0, n_bootstrap=10)
    assert math.isfinite(results["ips"].value) and math.isfinite(results["snips"].value)
    for name in ("dm", "dr", "sndr", "switch-dr", "dros"):
        assert "q_" in (results[name].refused or ""), name
    with pytest.raises(ValueError, match="q_target"):
        dm(fb)
    with pytest.raises(ValueError, match="q_logged"):
        dr(dataclasses.replace(fb, q_target=np.zeros(fb.n)))


def test_diagnostics_report_ess_and_the_largest_weight() -> None:
    fb = _log(n_clusters=100).feedback
    d = estimate(fb, names=("ips",), seed=0, n_bootstrap=0)["ips"].diagnostics
    w = fb.weight
    assert d.ess == pytest.approx(w.sum() ** 2 / (w * w).sum())
    assert d.max_weight == pytest.approx(w.max())
    assert (d.n, d.n_clusters) == (fb.n, len(np.unique(fb.cluster)))
    low_ess = estimate(fb, names=("ips",), seed=0, n_bootstrap=0, gate_settings=GateSettings(min_ess=1e9))
    assert "effective sample size" in (low_ess["ips"].diagnostics.warning or "")


# -- validation -----------------------------------------------------------------------------------------------------
_GOOD = {
    "cluster": [0, 0, 1],
    "reward": [1.0, 2.0, 3.0],
    "pscore": [0.5, 1.0, 0.2],
    "target_prob": [1.0, 0.0, 0.3],
    "q_logged": [0.0, 0.0, 0.0],
    "q_target": [0.0, 0.0, 0.0],
    "unsupported_mass": [0.0, 0.1, 0.0],
}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pscore", [0.0, 1.0, 0.2], "pscore must lie in \\(0, 1\\]"),
        ("pscore", [0.5, 1.5, 0.2], "pscore must lie in \\(0, 1\\]"),
        ("target_prob", [-0.1, 0.0, 0.3], "target_prob must lie in \\[0, 1\\]"),
        ("reward", [1.0, math.nan, 3.0], "reward must be finite"),
        ("reward", [[1.0, 2.0, 3.0]], "reward must be a 1-d array"),
        ("cluster", [0, 1], "cluster must have the same length"),
        ("cluster", [0.5, 0.0, 1.0], "cluster must hold integers"),
        ("q_logged", [0.0, 0.0], "q_logged must have the same length"),
        ("q_target", [0.0, math.inf, 0.0], "q_target must be finite"),
        ("unsupported_mass", [0.0, 2.0, 0.0], "unsupported_mass must lie in \\[0, 1\\]"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditFeedback(**{**_GOOD, field: value})  # type: ignore[arg-type]


def test_empty_feedback_is_refused() -> None:
    with pytest.raises(ValueError, match="reward must hold at least one"):
        BanditFeedback(cluster=np.array([], int), reward=np.array([]), pscore=np.array([]), target_prob=np.array([]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"clip": 0.0}, "clip must be > 0"), ({"tau": -1.0}, "tau must be >= 0"), ({"lambda_": -1.0}, "lambda_")],
)
def test_bad_params_are_refused_naming_the_field(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EstimatorParams(**kwargs)


def test_estimate_refuses_unknown_names_and_bad_levels() -> None:
    fb = BanditFeedback(**_GOOD)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="names must be among"):
        estimate(fb, names=("ipw",), seed=0)
    with pytest.raises(ValueError, match="level must lie in"):
        estimate(fb, seed=0, level=1.0)
    with pytest.raises(ValueError, match="max_unsupported must lie in"):
        GateSettings(max_unsupported=1.5)


def test_take_keeps_rows_aligned() -> None:
    fb = BanditFeedback(**_GOOD)  # type: ignore[arg-type]
    sub = fb.take([2, 2, 1])
    assert sub.cluster.tolist() == [1, 1, 0]
    assert sub.reward.tolist() == [3.0, 3.0, 2.0]
    assert sub.support_gap.tolist() == [0.0, 0.0, 0.1]
    assert fb.take(np.array([True, False, True])).pscore.tolist() == [0.5, 0.2]
    with pytest.raises(ValueError, match="boolean mask must have length"):
        fb.take(np.array([True, False]))


# -- the cross-fitted reward model ----------------------------------------------------------------------------------
def _fit(log: SyntheticBandit, reward: np.ndarray | None = None, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    n, k = log.target_probs.shape
    actions = np.broadcast_to(np.arange(k)[None, :, None], (n, k, 1))
    return cross_fitted_rewards(
        log.features,
        log.action[:, None],
        actions,
        log.target_probs,
        log.feedback.reward if reward is None else reward,
        log.feedback.cluster,
        action_sizes=(k,),
        seed=0,
        **kwargs,  # type: ignore[arg-type]
    )


def test_cross_fitted_model_gives_dm_close_to_the_truth_and_dr_unbiased() -> None:
    log = _log(n_clusters=3000, with_model=False, cluster_sd=0.0)
    q_logged, q_target = _fit(log)
    fb = dataclasses.replace(log.feedback, q_logged=q_logged, q_target=q_target)
    results = estimate(fb, names=("dm", "dr"), seed=0, n_bootstrap=200)
    # The synthetic reward is linear in the context per action: the default model holds it.
    assert abs(results["dm"].value - log.true_value) < 0.05
    assert results["dr"].ci_low <= log.true_value <= results["dr"].ci_high
    # Without the context x action interactions the action's effect cannot vary with the context: DM is off.
    q_logged, q_target = _fit(log, context_interactions=False)
    assert abs(dm(dataclasses.replace(fb, q_target=q_target)) - log.true_value) > 0.1


def test_cross_fitting_keeps_an_arrangement_out_of_its_own_predictions() -> None:
    log = _log(n_clusters=50, with_model=False)
    q_logged, q_target = _fit(log)
    changed = log.feedback.reward.copy()
    mine = log.feedback.cluster == 3
    changed[mine] += 100.0
    q_logged2, q_target2 = _fit(log, reward=changed)
    np.testing.assert_allclose(q_logged2[mine], q_logged[mine])
    np.testing.assert_allclose(q_target2[mine], q_target[mine])
    assert not np.allclose(q_logged2[~mine], q_logged[~mine])


def test_the_candidate_expectation_is_the_weighted_mean_of_the_model_over_actions() -> None:
    log = _log(n_clusters=60, with_model=False)
    n, k = log.target_probs.shape
    _, q_target = _fit(log)
    per_action = []
    for a in range(k):
        # The model at action a alone: one candidate action per row, with weight 1.
        _, q_a = cross_fitted_rewards(
            log.features,
            log.action[:, None],
            np.full((n, 1, 1), a),
            np.ones((n, 1)),
            log.feedback.reward,
            log.feedback.cluster,
            action_sizes=(k,),
            seed=0,
        )
        per_action.append(q_a)
    np.testing.assert_allclose(q_target, (np.stack(per_action, axis=1) * log.target_probs).sum(axis=1), atol=1e-8)


def test_the_reward_model_refuses_bad_shapes_naming_the_argument() -> None:
    log = _log(n_clusters=20, with_model=False)
    n, k = log.target_probs.shape
    actions = np.broadcast_to(np.arange(k)[None, :, None], (n, k, 1))
    args = (log.features, log.action[:, None], actions, log.target_probs, log.feedback.reward, log.feedback.cluster)
    with pytest.raises(ValueError, match="logged_actions: part p must lie"):
        cross_fitted_rewards(*args, action_sizes=(k - 1,), seed=0)
    with pytest.raises(ValueError, match="target_weights must be >= 0"):
        cross_fitted_rewards(*args[:3], 2 * log.target_probs, *args[4:], action_sizes=(k,), seed=0)
    with pytest.raises(ValueError, match="folds must lie in"):
        cross_fitted_rewards(*args, action_sizes=(k,), seed=0, folds=1000)
    with pytest.raises(ValueError, match="features must have shape"):
        cross_fitted_rewards(log.features[:, 0], *args[1:], action_sizes=(k,), seed=0)


@pytest.mark.parametrize("with_kinds", [False, True])
@pytest.mark.parametrize("interactions", [False, True])
def test_predictions_without_the_design_matrix_equal_the_design_times_the_coefficients(
    with_kinds: bool, interactions: bool
) -> None:
    from agents.ope.reward_model import _design, _predict

    rng = np.random.default_rng(0)
    x, code = rng.normal(size=(40, 4)), rng.random((40, 7))
    kinds = np.eye(3)[rng.integers(0, 3, size=40)] if with_kinds else None
    design = _design(x, code, kinds, interactions)
    assert design.shape[1] == 1 + 4 + 7 + (21 if with_kinds else 0) + (28 if interactions else 0)
    beta = np.asarray(rng.normal(size=design.shape[1]), dtype=np.float64)
    np.testing.assert_allclose(_predict(x, code, kinds, interactions, beta), design @ beta, atol=1e-12)


def test_the_decision_kind_lets_the_action_effect_differ_by_kind() -> None:
    rng = np.random.default_rng(1)
    n, k = 6000, 3
    kind = rng.integers(0, 2, size=n)
    action = rng.integers(0, k, size=n)
    # Action 1 pays 2 more in kind 1 and 2 less in kind 0; the context plays no part.
    reward = np.where(action == 1, np.where(kind == 1, 2.0, -2.0), 0.0) + rng.normal(0.0, 0.1, size=n)
    args = (rng.normal(size=(n, 2)), action[:, None], np.full((n, 1, 1), 1), np.ones((n, 1)), reward, np.arange(n))
    _, with_kind = cross_fitted_rewards(*args, action_sizes=(k,), seed=0, kinds=kind)
    _, without = cross_fitted_rewards(*args, action_sizes=(k,), seed=0)
    truth = np.where(kind == 1, 2.0, -2.0)
    assert np.abs(with_kind - truth).max() < 0.1
    assert np.abs(without - truth).mean() > 1.5


@pytest.mark.parametrize("with_kinds", [False, True])
@pytest.mark.parametrize("interactions", [False, True])
def test_the_normal_equations_from_slots_equal_those_of_the_design_matrix(with_kinds: bool, interactions: bool) -> None:
    from agents.ope.reward_model import _design, _encode, _normal_equations, _slots

    rng = np.random.default_rng(0)
    n, sizes = 300, (4, 3, 2)
    z = rng.normal(size=(n, 3))
    logged = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    y = rng.normal(size=n)
    kind = rng.integers(0, 3, size=n)
    design = _design(
        z, _encode(logged[:, None, :], np.ones((n, 1)), sizes), np.eye(3)[kind] if with_kinds else None, interactions
    )
    slots = _slots(z, logged, sizes, kind if with_kinds else None, 3 if with_kinds else 0, interactions)
    gram, moment = _normal_equations(slots, y, design.shape[1])
    np.testing.assert_allclose(gram, design.T @ design, atol=1e-9)
    np.testing.assert_allclose(moment, design.T @ y, atol=1e-9)
