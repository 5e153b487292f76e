"""Per-decision off-policy estimators: stateless, vectorised functions of a :class:`BanditFeedback`.

Notation (every array has shape ``(n,)``, one entry per logged decision ``i``): context :math:`x_i`, logged action
:math:`a_i`, reward :math:`r_i`, logging propensity :math:`\\pi_0(a_i|x_i)` (``pscore``), the candidate's
probability of the logged action :math:`\\pi(a_i|x_i)` (``target_prob``), importance weight
:math:`w_i = \\pi(a_i|x_i)/\\pi_0(a_i|x_i)`, the reward model at the logged action :math:`\\hat q(x_i, a_i)`
(``q_logged``) and its expectation under the candidate :math:`\\hat q(x_i, \\pi) = \\sum_a \\pi(a|x_i) \\hat q(x_i, a)`
(``q_target``). The estimand is the candidate's mean per-decision reward
:math:`V(\\pi) = \\mathbb{E}_x \\mathbb{E}_{a \\sim \\pi(\\cdot|x)}[r]` on the log's contexts.

The action of the arrangement model is factorised (channel x send slot, due day, deferral, reduction) and masked
per context; the *caller* computes ``target_prob`` (the candidate's probability of the whole logged joint action,
zero where a mask forbids it) and ``q_target`` (a sum over the candidate's allowed joint actions), so the
estimators here see only per-decision numbers and know nothing of the factorisation.

Formulas follow the conventions of the Open Bandit Pipeline documentation (Saito et al. 2021) and the papers
cited per function. Each estimator is also described as *columns* and a *combination*: per-decision columns
:math:`z_i` whose sums :math:`s = \\sum_i z_i` give the estimate :math:`g(s, n)`. :func:`estimate` uses that form
to compute every estimator and its clustered bootstrap (:mod:`agents.ope.intervals`) in one pass; the plain
functions below use it too, so the two never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agents.ope.diagnostics import GateSettings, gate, support_evidence, weight_diagnostics
from agents.ope.inputs import BanditFeedback, Diagnostics, EstimatorResult
from agents.ope.intervals import (
    bootstrap_sums,
    cluster_codes,
    cluster_sums,
    empirical_bernstein_interval,
    percentile_interval,
)

__all__ = [
    "ESTIMATORS",
    "ESTIMATOR_NAMES",
    "Estimator",
    "EstimatorParams",
    "dm",
    "dr",
    "dros",
    "estimate",
    "ips",
    "snips",
    "sndr",
    "switch_dr",
]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class EstimatorParams:
    """Hyperparameters of the estimators (defaults stated, not tuned: choose them by validation, issue 19).

    Attributes:
        clip: IPS clips weights at this value, :math:`\\min(w, c)` (Strehl et al. 2010); ``inf`` = no clipping.
        tau: Switch-DR uses the weighted correction only where :math:`w \\le \\tau` (Wang et al. 2017). Default 20.
        lambda_: DRos shrinkage :math:`\\lambda \\ge 0` (Su et al. 2020); weights near :math:`\\sqrt\\lambda` are
            shrunk least, larger ones towards 0. Default 400 (strongest weight kept: :math:`\\sqrt\\lambda/2 = 10`).
    """

    clip: float = math.inf
    tau: float = 20.0
    lambda_: float = 400.0

    def __post_init__(self) -> None:
        if not self.clip > 0.0:
            raise ValueError(f"clip must be > 0 (inf for no clipping), got {self.clip}")
        if not self.tau >= 0.0:
            raise ValueError(f"tau must be >= 0 (inf for plain DR), got {self.tau}")
        if not self.lambda_ >= 0.0:
            raise ValueError(f"lambda_ must be >= 0 (0 gives DM, inf plain DR), got {self.lambda_}")


def _q_logged(feedback: BanditFeedback, name: str) -> Array:
    if feedback.q_logged is None:
        raise ValueError(f"{name} needs q_logged (the reward model at the logged action); feedback.q_logged is None")
    return feedback.q_logged


def _q_target(feedback: BanditFeedback, name: str) -> Array:
    if feedback.q_target is None:
        raise ValueError(f"{name} needs q_target (the reward model under the candidate); feedback.q_target is None")
    return feedback.q_target


def _ratio(numerator: Array, denominator: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0.0, numerator / np.where(denominator != 0.0, denominator, 1.0), np.nan)


@dataclass(frozen=True)
class Estimator:
    """An estimator as per-decision columns and a combination of their sums.

    Attributes:
        name: Its name in ``ope.json``.
        weighted: Whether it uses importance weights (refused on failed support or a deterministic logger).
        needs_model: Whether it needs the reward model (``q_target``, and ``q_logged`` when weighted).
        columns: ``(feedback, params) -> z``, shape ``(n, k)``.
        combine: ``(s, count) -> value``: ``s`` the column sums, shape ``(..., k)``, ``count`` the number of
            decisions, shape ``(...)``; returns shape ``(...)``.
        mean_of_terms: True when the estimate is the mean of its single column (then the empirical-Bernstein
            bound applies to that column).
    """

    name: str
    weighted: bool
    needs_model: bool
    columns: Callable[[BanditFeedback, EstimatorParams], Array]
    combine: Callable[[Array, Array], Array]
    mean_of_terms: bool


def _mean(s: Array, count: Array) -> Array:
    return _ratio(s[..., 0], count)


def _dm_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    return _q_target(fb, "dm")[:, None]


def _ips_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    return (np.minimum(fb.weight, p.clip) * fb.reward)[:, None]


def _snips_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    w = fb.weight
    return np.stack([w * fb.reward, w], axis=1)


def _snips_combine(s: Array, count: Array) -> Array:
    return _ratio(s[..., 0], s[..., 1])


def _residual(fb: BanditFeedback, name: str) -> Array:
    return fb.reward - _q_logged(fb, name)


def _dr_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    return (_q_target(fb, "dr") + fb.weight * _residual(fb, "dr"))[:, None]


def _sndr_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    w = fb.weight
    return np.stack([_q_target(fb, "sndr"), w * _residual(fb, "sndr"), w], axis=1)


def _sndr_combine(s: Array, count: Array) -> Array:
    return _ratio(s[..., 0], count) + _ratio(s[..., 1], s[..., 2])


def _switch_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    w = fb.weight
    kept = np.where(w <= p.tau, w, 0.0)
    return (_q_target(fb, "switch-dr") + kept * _residual(fb, "switch-dr"))[:, None]


def _shrunk_weight(w: Array, lambda_: float) -> Array:
    if math.isinf(lambda_):
        return w
    if lambda_ == 0.0:
        return np.zeros_like(w)
    return lambda_ * w / (w * w + lambda_)


def _dros_columns(fb: BanditFeedback, p: EstimatorParams) -> Array:
    return (_q_target(fb, "dros") + _shrunk_weight(fb.weight, p.lambda_) * _residual(fb, "dros"))[:, None]


ESTIMATORS: dict[str, Estimator] = {
    e.name: e
    for e in (
        Estimator("dm", False, True, _dm_columns, _mean, True),
        Estimator("ips", True, False, _ips_columns, _mean, True),
        Estimator("snips", True, False, _snips_columns, _snips_combine, False),
        Estimator("dr", True, True, _dr_columns, _mean, True),
        Estimator("sndr", True, True, _sndr_columns, _sndr_combine, False),
        Estimator("switch-dr", True, True, _switch_columns, _mean, True),
        Estimator("dros", True, True, _dros_columns, _mean, True),
    )
}
"""The per-decision estimators by name, in the order of ``ope.json``."""

ESTIMATOR_NAMES: tuple[str, ...] = tuple(ESTIMATORS)


def _point(name: str, feedback: BanditFeedback, params: EstimatorParams) -> float:
    spec = ESTIMATORS[name]
    sums = spec.columns(feedback, params).sum(axis=0)
    return float(spec.combine(sums, np.asarray(float(feedback.n))))


def dm(feedback: BanditFeedback) -> float:
    """Direct method: the reward model's mean under the candidate.

    .. math:: \\hat V_{\\mathrm{DM}} = \\frac{1}{n} \\sum_{i=1}^n \\hat q(x_i, \\pi)

    Needs ``q_target``, shape ``(n,)``. Unbiased only if the reward model is; no weights, so no variance from
    them, and no check of the model's extrapolation to actions rarely logged (Beygelzimer & Langford 2009).
    """
    return _point("dm", feedback, EstimatorParams())


def ips(feedback: BanditFeedback, *, clip: float = math.inf) -> float:
    """Inverse propensity scoring, with the weights optionally clipped.

    .. math:: \\hat V_{\\mathrm{IPS}} = \\frac{1}{n} \\sum_{i=1}^n \\min(w_i, c)\\, r_i

    Needs ``reward``, ``pscore``, ``target_prob``, shape ``(n,)``. Unbiased for :math:`c = \\infty` when the
    logger covers the candidate's support (Horvitz & Thompson 1952; Precup et al. 2000); a finite clip ``c``
    trades a downward bias (for non-negative rewards) for variance (Strehl et al. 2010; Ionides 2008).
    """
    return _point("ips", feedback, EstimatorParams(clip=clip))


def snips(feedback: BanditFeedback) -> float:
    """Self-normalised IPS: IPS divided by the mean weight.

    .. math:: \\hat V_{\\mathrm{SNIPS}} = \\frac{\\sum_i w_i r_i}{\\sum_i w_i}

    ``nan`` when every weight is zero. Biased at finite ``n`` but consistent, invariant to a constant shift of
    the rewards (:math:`r \\to r + b` moves it by exactly ``b``), and usually of lower variance than IPS
    (Swaminathan & Joachims 2015). Under unsupported candidate mass it silently renormalises onto the support.
    """
    return _point("snips", feedback, EstimatorParams())


def dr(feedback: BanditFeedback) -> float:
    """Doubly robust: the direct method plus the importance-weighted residual of the reward model.

    .. math:: \\hat V_{\\mathrm{DR}} = \\frac{1}{n} \\sum_{i=1}^n \\left[\\hat q(x_i, \\pi)
        + w_i \\left(r_i - \\hat q(x_i, a_i)\\right)\\right]

    Needs ``q_logged`` and ``q_target``, shape ``(n,)``. Unbiased when either the propensities or the reward
    model are right (Dudik, Langford & Li 2011; Robins, Rotnitzky & Zhao 1994); its variance shrinks as the model
    improves. With the model cross-fitted, the residual's weight is independent of the row's own reward.
    """
    return _point("dr", feedback, EstimatorParams())


def sndr(feedback: BanditFeedback) -> float:
    """Self-normalised doubly robust: DR whose weighted residual is normalised by the total weight.

    .. math:: \\hat V_{\\mathrm{SNDR}} = \\frac{1}{n} \\sum_i \\hat q(x_i, \\pi)
        + \\frac{\\sum_i w_i (r_i - \\hat q(x_i, a_i))}{\\sum_i w_i}

    Needs ``q_logged`` and ``q_target``. Consistent; bounded by the reward model's range plus the residuals'
    range, however large the weights (Kallus & Uehara 2019; the form of the Open Bandit Pipeline).
    """
    return _point("sndr", feedback, EstimatorParams())


def switch_dr(feedback: BanditFeedback, *, tau: float = 20.0) -> float:
    """Switch doubly robust: DR's weighted residual only where the weight is at most ``tau``.

    .. math:: \\hat V_{\\mathrm{Switch}} = \\frac{1}{n} \\sum_{i=1}^n \\left[\\hat q(x_i, \\pi)
        + w_i\\, \\mathbb{1}\\{w_i \\le \\tau\\} \\left(r_i - \\hat q(x_i, a_i)\\right)\\right]

    Needs ``q_logged`` and ``q_target``. :math:`\\tau = \\infty` gives DR; :math:`\\tau = 0` gives DM (the
    form of the Open Bandit Pipeline, after Wang, Agarwal & Dudik 2017, which switches per action).
    """
    return _point("switch-dr", feedback, EstimatorParams(tau=tau))


def dros(feedback: BanditFeedback, *, lambda_: float = 400.0) -> float:
    """Doubly robust with optimistic shrinkage of the weights.

    .. math:: \\hat V_{\\mathrm{DRos}} = \\frac{1}{n} \\sum_{i=1}^n \\left[\\hat q(x_i, \\pi)
        + \\frac{\\lambda w_i}{w_i^2 + \\lambda} \\left(r_i - \\hat q(x_i, a_i)\\right)\\right]

    Needs ``q_logged`` and ``q_target``. The shrunk weight minimises a bound on the mean squared error that
    assumes the model's error is small (Su, Dimakopoulou, Krishnamurthy & Dudik 2020): :math:`\\lambda = 0`
    gives DM, :math:`\\lambda \\to \\infty` gives DR.
    """
    return _point("dros", feedback, EstimatorParams(lambda_=lambda_))


def _refused(name: str, diagnostics: Diagnostics, level: float) -> EstimatorResult:
    return EstimatorResult(name, math.nan, math.nan, math.nan, diagnostics, level=level)


def estimate(
    feedback: BanditFeedback,
    names: Sequence[str] = ESTIMATOR_NAMES,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator,
    n_bootstrap: int = 200,
    level: float = 0.95,
    params: EstimatorParams | None = None,
    gate_settings: GateSettings | None = None,
    bernstein: bool = True,
) -> dict[str, EstimatorResult]:
    """Every named estimator on one feedback, gated, with clustered-bootstrap and empirical-Bernstein intervals.

    The gate (:func:`agents.ope.diagnostics.gate`) runs first: a refused estimator gets value ``nan`` and the
    reason in ``diagnostics.refused``. The others share one clustered bootstrap: per-arrangement sums of all
    their columns, ``n_bootstrap`` multinomial resamples of arrangements, percentile intervals at ``level``
    (:mod:`agents.ope.intervals`). For the estimators that are means of per-decision terms (all but ``snips`` and
    ``sndr``) the empirical-Bernstein interval of Maurer & Pontil (2009) is added as a second opinion, on one
    value per arrangement (its terms' sum over the mean number of decisions per arrangement) with the observed
    range as the range: it is exact for clipped IPS with a known range, approximate otherwise.

    Args:
        feedback: The logged decisions.
        names: Estimators to run, from :data:`ESTIMATOR_NAMES`.
        seed: Seed or generator of the bootstrap's resamples.
        n_bootstrap: Resamples (0: point estimates and diagnostics only).
        level: Confidence level of the intervals, in (0, 1).
        params: Hyperparameters (defaults: :class:`EstimatorParams`).
        gate_settings: Thresholds of the gate (defaults: :class:`~agents.ope.diagnostics.GateSettings`).
        bernstein: Whether to compute the empirical-Bernstein intervals.

    Returns:
        One :class:`EstimatorResult` per name, in the order of ``names``.
    """
    unknown = [name for name in names if name not in ESTIMATORS]
    if unknown:
        raise ValueError(f"names must be among {list(ESTIMATOR_NAMES)}, got unknown {unknown}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    params = params or EstimatorParams()
    gate_settings = gate_settings or GateSettings()
    rng = np.random.default_rng(seed)
    base = weight_diagnostics(feedback, z=gate_settings.z)
    evidence = support_evidence(feedback, z=gate_settings.z)
    verdicts = {
        name: gate(
            feedback,
            weighted=ESTIMATORS[name].weighted,
            needs_model=ESTIMATORS[name].needs_model,
            settings=gate_settings,
            base=base,
            evidence=evidence,
        )
        for name in names
    }
    given = [name for name in names if verdicts[name].refused is None]
    blocks = {name: ESTIMATORS[name].columns(feedback, params) for name in given}
    results: dict[str, EstimatorResult] = {}
    if given:
        columns = np.concatenate([np.ones((feedback.n, 1)), *blocks.values()], axis=1)
        codes, n_clusters = cluster_codes(feedback.cluster)
        sums_c = cluster_sums(codes, n_clusters, columns)
        full = sums_c.sum(axis=0)
        boot = bootstrap_sums(sums_c, n_bootstrap, rng) if n_bootstrap > 0 else None
        mean_size = feedback.n / n_clusters
        start = 1
        for name in given:
            spec = ESTIMATORS[name]
            k = blocks[name].shape[1]
            value = float(spec.combine(full[start : start + k], np.asarray(full[0])))
            ci_low = ci_high = math.nan
            if boot is not None:
                ci_low, ci_high = percentile_interval(spec.combine(boot[:, start : start + k], boot[:, 0]), level)
            b_low = b_high = math.nan
            if bernstein and spec.mean_of_terms and spec.weighted:
                b_low, b_high = empirical_bernstein_interval(sums_c[:, start] / mean_size, level=level)
            results[name] = EstimatorResult(
                name, value, ci_low, ci_high, verdicts[name], b_low, b_high, level, n_bootstrap
            )
            start += k
    return {name: results.get(name) or _refused(name, verdicts[name], level) for name in names}
