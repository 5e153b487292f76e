"""The typed inputs and outputs of off-policy evaluation: logged feedback in, estimates with diagnostics out.

:class:`BanditFeedback` holds ``n`` logged decisions as aligned arrays (what every per-decision estimator of
:mod:`agents.ope.estimators` needs); :class:`TrajectoryFeedback` holds the steps of variable-length trajectories
(one per arrangement) for the sequential estimators of :mod:`agents.ope.sequential`. Both validate at
construction and raise a :class:`ValueError` naming the field and the allowed range. :class:`EstimatorResult`
is one estimator's answer (point estimate, interval, :class:`Diagnostics`); a refused estimate has value ``nan``
and says why in ``diagnostics.refused``.

The factorised action of the arrangement model (channel x send slot, due day, deferral, reduction) and its masks
are the caller's business: the caller computes, for each logged decision, the candidate's probability of the
logged (joint) action ``target_prob`` and the reward model's expectation under the candidate ``q_target``
(summing over the candidate's allowed joint actions). The estimators see only these per-decision numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["BanditFeedback", "Diagnostics", "EstimatorResult", "TrajectoryFeedback"]


def _as_float(name: str, values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite (no nan or inf), got {int(np.sum(~np.isfinite(array)))} bad values")
    return array


def _as_int(name: str, values: ArrayLike) -> NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array, got shape {array.shape}")
    integral = np.issubdtype(array.dtype, np.integer) or (
        np.issubdtype(array.dtype, np.floating) and bool(np.all(array == np.round(array)))
    )
    if array.size and not integral:
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_range(
    name: str, array: NDArray[np.float64], low: float, high: float, *, low_open: bool = False, allowed: str
) -> None:
    bad = (array <= low if low_open else array < low) | (array > high)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must lie in {allowed}, got {int(bad.sum())} values outside"
            f" (first: {float(array[first])} at row {first})"
        )


def _check_length(name: str, array: NDArray[np.generic], n: int) -> None:
    if len(array) != n:
        raise ValueError(f"{name} must have the same length as reward ({n}), got {len(array)}")


@dataclass(frozen=True)
class BanditFeedback:
    """``n`` logged decisions, each with what the estimators need (all arrays aligned, shape ``(n,)``).

    Arrays are converted to their dtypes at construction (``cluster`` int64, the rest float64) and checked: 1-d,
    one length, finite, within range. ``unsupported_mass=None`` becomes zeros (unknown support: the diagnostics
    then rest on ``target_prob``/``pscore`` alone).

    Attributes:
        cluster: int64, the arrangement id (arrangements, not decisions, are independent: bootstrap by cluster).
        reward: float64, the logged decision's reward (per-decision estimand: euros paid within the feedback
            window minus the decision's contact cost).
        pscore: float64 in (0, 1], the logging policy's probability of the logged action (the propensity logged).
        target_prob: float64 in [0, 1], the candidate's probability of the logged action in the logged context.
        q_logged: float64, the reward model's prediction at the logged action (cross-fitted), or None (IPS only).
        q_target: float64, the reward model's expectation under the candidate at the logged context
            (:math:`\\sum_a \\pi(a|x) \\hat q(x, a)`), or None.
        unsupported_mass: float64 in [0, 1], the candidate's probability on actions the logging policy never takes
            in that context (0 where unknown).
    """

    cluster: NDArray[np.int64]
    reward: NDArray[np.float64]
    pscore: NDArray[np.float64]
    target_prob: NDArray[np.float64]
    q_logged: NDArray[np.float64] | None = None
    q_target: NDArray[np.float64] | None = None
    unsupported_mass: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        reward = _as_float("reward", self.reward)
        n = len(reward)
        if n == 0:
            raise ValueError("reward must hold at least one logged decision, got 0")
        cluster = _as_int("cluster", self.cluster)
        _check_length("cluster", cluster, n)
        pscore = _as_float("pscore", self.pscore)
        _check_length("pscore", pscore, n)
        _check_range("pscore", pscore, 0.0, 1.0, low_open=True, allowed="(0, 1]")
        target_prob = _as_float("target_prob", self.target_prob)
        _check_length("target_prob", target_prob, n)
        _check_range("target_prob", target_prob, 0.0, 1.0, allowed="[0, 1]")
        converted: dict[str, NDArray[np.generic] | None] = {
            "cluster": cluster,
            "reward": reward,
            "pscore": pscore,
            "target_prob": target_prob,
        }
        for name in ("q_logged", "q_target"):
            value = getattr(self, name)
            if value is not None:
                array = _as_float(name, value)
                _check_length(name, array, n)
                converted[name] = array
        if self.unsupported_mass is None:
            converted["unsupported_mass"] = np.zeros(n)
        else:
            mass = _as_float("unsupported_mass", self.unsupported_mass)
            _check_length("unsupported_mass", mass, n)
            _check_range("unsupported_mass", mass, 0.0, 1.0, allowed="[0, 1]")
            converted["unsupported_mass"] = mass
        for name, converted_array in converted.items():
            object.__setattr__(self, name, converted_array)

    @property
    def n(self) -> int:
        """Number of logged decisions."""
        return len(self.reward)

    @property
    def n_clusters(self) -> int:
        """Number of distinct arrangements (clusters)."""
        return len(np.unique(self.cluster))

    @property
    def weight(self) -> NDArray[np.float64]:
        """Importance weights :math:`w_i = \\pi(a_i|x_i) / \\pi_0(a_i|x_i)`, shape ``(n,)``."""
        return self.target_prob / self.pscore

    @property
    def support_gap(self) -> NDArray[np.float64]:
        """``unsupported_mass`` as an array (zeros where it was not given), shape ``(n,)``."""
        assert self.unsupported_mass is not None  # set to zeros in __post_init__
        return self.unsupported_mass

    def take(self, rows: ArrayLike) -> BanditFeedback:
        """The feedback restricted to ``rows`` (integer indices, possibly repeated, or a boolean mask of length n)."""
        index = np.asarray(rows)
        if index.dtype == np.bool_ and len(index) != self.n:
            raise ValueError(f"rows as a boolean mask must have length n={self.n}, got {len(index)}")
        return BanditFeedback(
            cluster=self.cluster[index],
            reward=self.reward[index],
            pscore=self.pscore[index],
            target_prob=self.target_prob[index],
            q_logged=None if self.q_logged is None else self.q_logged[index],
            q_target=None if self.q_target is None else self.q_target[index],
            unsupported_mass=self.support_gap[index],
        )


@dataclass(frozen=True)
class Diagnostics:
    """What gates an estimate: the weights' health, the candidate's support and the sample's size.

    Attributes:
        ess: Effective sample size of the importance weights, :math:`(\\sum_i w_i)^2 / \\sum_i w_i^2`
            (``n`` when all weights are equal; ``nan`` when all weights are zero).
        max_weight: Largest importance weight :math:`\\max_i w_i`.
        unsupported_mass: Mean over decisions of the candidate's probability on actions the logger never takes.
        n: Number of logged decisions.
        n_clusters: Number of arrangements (independent clusters).
        refused: Why the estimate was refused (its value is then ``nan``), or None.
        warning: A caveat on an estimate that was given (e.g. DM on a deterministic logger), or None.
    """

    ess: float
    max_weight: float
    unsupported_mass: float
    n: int
    n_clusters: int
    refused: str | None = None
    warning: str | None = None


@dataclass(frozen=True)
class EstimatorResult:
    """One estimator's answer on one feedback.

    Attributes:
        name: Estimator name (``dm``, ``ips``, ``snips``, ``dr``, ``sndr``, ``switch-dr``, ``dros``, or a
            sequential estimator's name).
        value: Point estimate of the candidate's mean per-decision reward (``nan`` when refused).
        ci_low: Lower end of the clustered-bootstrap percentile interval (``nan`` when refused or not computed).
        ci_high: Upper end of that interval.
        diagnostics: The weights' and support's diagnostics, with the refusal or warning if any.
        bound_low: Lower end of the empirical-Bernstein interval (IPS-type estimators only; ``nan`` otherwise).
        bound_high: Upper end of the empirical-Bernstein interval.
        level: Confidence level of both intervals.
        n_bootstrap: Number of bootstrap resamples behind ``ci_low``/``ci_high`` (0 when none).
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    diagnostics: Diagnostics
    bound_low: float = math.nan
    bound_high: float = math.nan
    level: float = 0.95
    n_bootstrap: int = 0

    @property
    def refused(self) -> str | None:
        """Why the estimate was refused, or None (shortcut for ``diagnostics.refused``)."""
        return self.diagnostics.refused


@dataclass(frozen=True)
class TrajectoryFeedback:
    """Steps of variable-length logged trajectories (one per arrangement), as aligned arrays of shape ``(m,)``.

    Rows of one trajectory need not be contiguous; within a trajectory ``step`` gives the order (0, 1, 2, ...
    without gaps or repeats). The sequential estimators use the cumulative importance ratio
    :math:`\\rho_{0:t} = \\prod_{k \\le t} \\pi(a_k|s_k) / \\pi_0(a_k|s_k)`.

    Attributes:
        trajectory: int64, the trajectory (arrangement) id; trajectories are the independent clusters.
        step: int64 >= 0, the decision's index within its trajectory.
        reward: float64, the step's reward (euros paid after the decision minus its contact cost).
        pscore: float64 in (0, 1], the logging policy's probability of the logged action.
        target_prob: float64 in [0, 1], the candidate's probability of the logged action.
        q_logged: float64, the model's :math:`\\hat Q(s_t, a_t)` at the logged action, or None. Either the
            candidate's expected reward-to-go from step t after taking :math:`a_t` (the Jiang & Li model), or
            just this step's expected reward (a per-step control variate); per-decision DR is unbiased with
            either, and has lower variance the closer the model is to the reward-to-go.
        q_target: float64, :math:`\\hat V(s_t) = \\sum_a \\pi(a|s_t) \\hat Q(s_t, a)` under the same model, or None.
        v_next: float64, the model's value of the next state under the candidate, :math:`\\hat V(s_{t+1})`
            (0 after a trajectory's last step if it ended there), or None; used by the state-value form of
            per-decision DR (None: the next step's ``q_target``, 0 after the last step).
    """

    trajectory: NDArray[np.int64]
    step: NDArray[np.int64]
    reward: NDArray[np.float64]
    pscore: NDArray[np.float64]
    target_prob: NDArray[np.float64]
    q_logged: NDArray[np.float64] | None = None
    q_target: NDArray[np.float64] | None = None
    v_next: NDArray[np.float64] | None = None
    _order: NDArray[np.int64] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reward = _as_float("reward", self.reward)
        m = len(reward)
        if m == 0:
            raise ValueError("reward must hold at least one logged step, got 0")
        trajectory = _as_int("trajectory", self.trajectory)
        _check_length("trajectory", trajectory, m)
        step = _as_int("step", self.step)
        _check_length("step", step, m)
        if np.any(step < 0):
            raise ValueError(f"step must be >= 0, got minimum {int(step.min())}")
        pscore = _as_float("pscore", self.pscore)
        _check_length("pscore", pscore, m)
        _check_range("pscore", pscore, 0.0, 1.0, low_open=True, allowed="(0, 1]")
        target_prob = _as_float("target_prob", self.target_prob)
        _check_length("target_prob", target_prob, m)
        _check_range("target_prob", target_prob, 0.0, 1.0, allowed="[0, 1]")
        order = np.lexsort((step, trajectory))
        sorted_traj, sorted_step = trajectory[order], step[order]
        starts = np.r_[True, sorted_traj[1:] != sorted_traj[:-1]]
        expected = np.arange(m) - np.maximum.accumulate(np.where(starts, np.arange(m), 0))
        if np.any(sorted_step != expected):
            raise ValueError("step must run 0, 1, 2, ... without gaps or repeats within each trajectory")
        converted: dict[str, NDArray[np.generic]] = {
            "trajectory": trajectory,
            "step": step,
            "reward": reward,
            "pscore": pscore,
            "target_prob": target_prob,
            "_order": order.astype(np.int64),
        }
        for name in ("q_logged", "q_target", "v_next"):
            value = getattr(self, name)
            if value is not None:
                array = _as_float(name, value)
                _check_length(name, array, m)
                converted[name] = array
        for name, converted_array in converted.items():
            object.__setattr__(self, name, converted_array)

    @property
    def m(self) -> int:
        """Number of logged steps."""
        return len(self.reward)

    @property
    def n_trajectories(self) -> int:
        """Number of distinct trajectories."""
        return len(np.unique(self.trajectory))

    @property
    def order(self) -> NDArray[np.int64]:
        """Row order that sorts the steps by (trajectory, step)."""
        return self._order
