"""Sequential (per-arrangement) off-policy estimators over variable-length trajectories.

The estimand is the candidate's expected discounted return per trajectory (arrangement),
:math:`V(\\pi) = \\mathbb{E}_\\pi[\\sum_{t=0}^{T-1} \\gamma^t r_t]`; with :math:`\\gamma = 1` and the per-decision
rewards of the log it is the arrangement's run-off net recovery. With the per-step weights
:math:`w_t = \\pi(a_t|s_t)/\\pi_0(a_t|s_t)` and their running products :math:`\\rho_{0:t} = \\prod_{k \\le t} w_k`
(:math:`\\rho_{0:-1} = 1`), over ``N`` logged trajectories:

* per-decision importance sampling (Precup, Sutton & Singh 2000), ``pdis``:
  :math:`\\hat V = \\frac{1}{N} \\sum_j \\sum_t \\gamma^t \\rho^{(j)}_{0:t} r^{(j)}_t`. A reward at step ``t`` is
  weighted only by the decisions that led to it, not by later ones.
* per-decision doubly robust (Jiang & Li 2016; Thomas & Brunskill 2016), ``pddr``:
  :math:`\\hat V = \\frac{1}{N} \\sum_j \\sum_t \\gamma^t [\\rho_{0:t} (r_t - \\hat Q(s_t, a_t))
  + \\rho_{0:t-1} \\hat V(s_t)]` with :math:`\\hat V(s) = \\sum_a \\pi(a|s) \\hat Q(s, a)` (``q_logged``,
  ``q_target``). Unbiased for *any* model with that relation, since each control variate
  :math:`\\rho_{0:t-1} \\hat V(s_t) - \\rho_{0:t} \\hat Q(s_t, a_t)` has mean zero given the past; the closer
  :math:`\\hat Q` is to the reward-to-go, the lower the variance.
* its state-value form, ``pddr-v``: :math:`\\hat V = \\frac{1}{N} \\sum_j [\\hat V(s_0) + \\sum_t \\gamma^t
  \\rho_{0:t} (r_t + \\gamma \\hat V(s_{t+1}) - \\hat V(s_t))]` with ``q_target`` as :math:`\\hat V(s_t)` and
  ``v_next`` as :math:`\\hat V(s_{t+1})`. Unbiased for any state-value model
  (:math:`\\mathbb{E}[\\rho_{0:t} f(s_t)] = \\mathbb{E}[\\rho_{0:t-1} f(s_t)]` makes the corrections telescope),
  provided ``v_next`` is the *same* model at the next state; it needs no action-value model. Without ``v_next``
  the next step's ``q_target`` is used (0 after a trajectory's last step, i.e. the trajectory ended there); give
  ``v_next`` where a trajectory is cut before it ends (e.g. by the end of the log), so that its last
  :math:`\\hat V(s_T)` is not taken as 0.

Trajectories are the independent clusters: the bootstrap resamples whole trajectories (:mod:`agents.ope.intervals`).
The gate is that of :mod:`agents.ope.diagnostics`, applied to the per-step weights (a deterministic logger or the
weights' evidence of unsupported mass refuses); the reported effective sample size is that of the trajectories'
final weights :math:`\\rho_{0:T-1}`, which is what per-trajectory importance sampling would rest on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from agents.ope.diagnostics import GateSettings, effective_sample_size, gate, support_evidence
from agents.ope.inputs import BanditFeedback, Diagnostics, EstimatorResult, TrajectoryFeedback
from agents.ope.intervals import bootstrap_sums, cluster_codes, percentile_interval

__all__ = ["SEQUENTIAL_NAMES", "estimate_sequential", "pddr", "pddr_state", "pdis"]

Array = NDArray[np.float64]

SEQUENTIAL_NAMES: tuple[str, ...] = ("pdis", "pddr", "pddr-v")
"""The sequential estimators by name."""


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")


class _Sorted:
    """The feedback's steps in (trajectory, step) order, with running weights and discounts."""

    def __init__(self, feedback: TrajectoryFeedback, gamma: float) -> None:
        order = feedback.order
        self.order = order
        self.step = feedback.step[order]
        self.codes, self.n_trajectories = cluster_codes(feedback.trajectory[order])
        weight = feedback.target_prob[order] / feedback.pscore[order]
        rho = np.empty_like(weight)
        first = self.step == 0
        rho[first] = weight[first]
        # Rows are sorted, so a step t > 0 row's predecessor is the row before it.
        for t in range(1, int(self.step.max()) + 1):
            rows = np.flatnonzero(self.step == t)
            rho[rows] = rho[rows - 1] * weight[rows]
        self.rho = rho
        self.rho_before = np.where(first, 1.0, np.r_[1.0, rho[:-1]])
        self.discount = gamma ** self.step.astype(np.float64)
        self.gamma = gamma

    def per_trajectory(self, terms: Array) -> Array:
        sums: Array = np.bincount(self.codes, weights=terms, minlength=self.n_trajectories).astype(np.float64)
        return sums


def _field(feedback: TrajectoryFeedback, name: str, estimator: str) -> Array:
    value = getattr(feedback, name)
    if value is None:
        raise ValueError(f"{estimator} needs {name}; feedback.{name} is None")
    array: Array = value
    return array


def _pdis_values(fb: TrajectoryFeedback, s: _Sorted) -> Array:
    return s.per_trajectory(s.discount * s.rho * fb.reward[s.order])


def _pddr_values(fb: TrajectoryFeedback, s: _Sorted) -> Array:
    q = _field(fb, "q_logged", "pddr")[s.order]
    v = _field(fb, "q_target", "pddr")[s.order]
    return s.per_trajectory(s.discount * (s.rho * (fb.reward[s.order] - q) + s.rho_before * v))


def _pddr_state_values(fb: TrajectoryFeedback, s: _Sorted) -> Array:
    v = _field(fb, "q_target", "pddr-v")[s.order]
    if fb.v_next is not None:
        v_next = fb.v_next[s.order]
    else:
        # The next step's V(s_{t+1}) is the next row's q_target; 0 after a trajectory's last logged step.
        last = np.r_[s.codes[1:] != s.codes[:-1], True]
        v_next = np.where(last, 0.0, np.r_[v[1:], 0.0])
    terms = s.discount * s.rho * (fb.reward[s.order] + s.gamma * v_next - v)
    return s.per_trajectory(terms + np.where(s.step == 0, v, 0.0))


_VALUES: dict[str, Callable[[TrajectoryFeedback, _Sorted], Array]] = {
    "pdis": _pdis_values,
    "pddr": _pddr_values,
    "pddr-v": _pddr_state_values,
}
_NEEDS: dict[str, tuple[str, ...]] = {"pdis": (), "pddr": ("q_logged", "q_target"), "pddr-v": ("q_target",)}


def pdis(feedback: TrajectoryFeedback, *, gamma: float = 1.0) -> float:
    """Per-decision importance sampling estimate of the value per trajectory (see the module docstring).

    Args:
        feedback: The logged steps, shape ``(m,)`` arrays.
        gamma: Discount per step in [0, 1].
    """
    _check_gamma(gamma)
    return float(_pdis_values(feedback, _Sorted(feedback, gamma)).mean())


def pddr(feedback: TrajectoryFeedback, *, gamma: float = 1.0) -> float:
    """Per-decision doubly robust estimate of the value per trajectory; needs ``q_logged`` and ``q_target``."""
    _check_gamma(gamma)
    return float(_pddr_values(feedback, _Sorted(feedback, gamma)).mean())


def pddr_state(feedback: TrajectoryFeedback, *, gamma: float = 1.0) -> float:
    """State-value form of per-decision DR (``pddr-v``); needs ``q_target`` (as V(s_t)) and ``v_next``."""
    _check_gamma(gamma)
    return float(_pddr_state_values(feedback, _Sorted(feedback, gamma)).mean())


def estimate_sequential(
    feedback: TrajectoryFeedback,
    names: Sequence[str] = SEQUENTIAL_NAMES,
    *,
    seed: int | np.random.SeedSequence | np.random.Generator,
    n_bootstrap: int = 200,
    level: float = 0.95,
    gamma: float = 1.0,
    gate_settings: GateSettings | None = None,
) -> dict[str, EstimatorResult]:
    """The named sequential estimators, gated, with percentile intervals from a bootstrap over trajectories.

    Args:
        feedback: The logged steps.
        names: Estimators to run, from :data:`SEQUENTIAL_NAMES`.
        seed: Seed or generator of the bootstrap's resamples.
        n_bootstrap: Resamples of trajectories (0: point estimates only).
        level: Confidence level in (0, 1).
        gamma: Discount per step in [0, 1].
        gate_settings: Thresholds of the gate (defaults: :class:`~agents.ope.diagnostics.GateSettings`).

    Returns:
        One :class:`EstimatorResult` per name (value per trajectory); a refused one has value ``nan`` and its
        reason in ``diagnostics.refused`` (a missing model field refuses the estimator that needs it).
    """
    unknown = [name for name in names if name not in _VALUES]
    if unknown:
        raise ValueError(f"names must be among {list(SEQUENTIAL_NAMES)}, got unknown {unknown}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    _check_gamma(gamma)
    settings = gate_settings or GateSettings()
    rng = np.random.default_rng(seed)
    s = _Sorted(feedback, gamma)
    steps = BanditFeedback(
        cluster=feedback.trajectory,
        reward=feedback.reward,
        pscore=feedback.pscore,
        target_prob=feedback.target_prob,
    )
    last = np.r_[s.codes[1:] != s.codes[:-1], True]
    final_rho = s.rho[last]
    base = Diagnostics(
        ess=effective_sample_size(final_rho),
        max_weight=float(s.rho.max()),
        unsupported_mass=support_evidence(steps, z=settings.z).estimate,
        n=feedback.m,
        n_clusters=s.n_trajectories,
    )
    verdict = gate(steps, weighted=True, needs_model=False, settings=settings, base=base)
    verdicts: dict[str, Diagnostics] = {}
    for name in names:
        missing = [f for f in _NEEDS[name] if getattr(feedback, f) is None]
        refused = verdict.refused or (f"no model: {', '.join(missing)} not given" if missing else None)
        verdicts[name] = Diagnostics(
            base.ess, base.max_weight, base.unsupported_mass, base.n, base.n_clusters, refused, verdict.warning
        )
    given = [name for name in names if verdicts[name].refused is None]
    values = {name: _VALUES[name](feedback, s) for name in given}
    boot: Array | None = None
    if given and n_bootstrap > 0:
        # One set of resampled trajectories for every estimator, so that their intervals are comparable.
        columns = np.stack([np.ones(s.n_trajectories), *values.values()], axis=1)
        boot = bootstrap_sums(columns, n_bootstrap, rng)
    results: dict[str, EstimatorResult] = {}
    for name in names:
        if name not in values:
            results[name] = EstimatorResult(name, math.nan, math.nan, math.nan, verdicts[name], level=level)
            continue
        ci_low = ci_high = math.nan
        if boot is not None:
            column = 1 + given.index(name)
            ci_low, ci_high = percentile_interval(boot[:, column] / boot[:, 0], level)
        results[name] = EstimatorResult(
            name, float(values[name].mean()), ci_low, ci_high, verdicts[name], level=level, n_bootstrap=n_bootstrap
        )
    return results
