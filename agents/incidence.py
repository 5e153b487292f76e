"""Cumulative incidence of how arrangements end, over months since their start, per policy.

An arrangement ends one way (completed, broken, referred: competing risks) or is censored (still open when it
is no longer followed: at its run-off cap, or at a fixed horizon). The cumulative incidence of end *k* at *t*
months is :math:`F_k(t) = P(T \\le t, K = k)`, the share of arrangements that have ended that way by *t*; the
three curves and the share still open add up to 1, and a verdict at any horizon reads from them.

Estimator: Aalen-Johansen, :math:`\\hat F_k(t) = \\sum_{t_j \\le t} \\hat S(t_{j-1}) \\, d_{kj} / n_j`, with
:math:`\\hat S` the Kaplan-Meier estimate of having ended no way, :math:`d_{kj}` the ends of kind *k* at
:math:`t_j` and :math:`n_j` the arrangements still followed then (lifelines' :class:`AalenJohansenFitter`; its
band is the delta-method interval of lifelines' ``confidence_interval_``). Unlike the naive :math:`1 -
\\mathrm{KM}` of one end with the others treated as censored, which overstates each end (an arrangement that
broke can no longer complete), it is the crude share when nothing is censored.

Ties: the estimator takes one end at a time. Tied end times are moved apart here, deterministically and
*downwards* by multiples of :data:`_UNTIE_MONTHS` (a fraction of a second; censoring times stay, so an
arrangement censored at the time of an end still counts as followed then), so that nothing moves past a cap
and lifelines' own random jitter, which reseeds NumPy's global generator, never runs.

References:
    Aalen & Johansen, "An empirical transition matrix for non-homogeneous Markov chains based on censored
    observations", Scand. J. Statist. 5 (1978). Putter, Fiocco & Geskus, "Tutorial in biostatistics: competing
    risks and multi-state models", Stat. Med. 26 (2007), section 3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from numpy.typing import NDArray

from regsim.metrics import END_KINDS

__all__ = ["ENDS", "INCIDENCE_COLUMNS", "IncidenceCurves", "cumulative_incidence", "naive_incidence"]

#: The competing ends, in the order of :data:`regsim.metrics.END_KINDS` (code k + 1 in the fitter; 0 censored).
ENDS: tuple[str, ...] = END_KINDS[:3]

#: Columns of :attr:`IncidenceCurves.frame`.
INCIDENCE_COLUMNS: tuple[str, ...] = ("policy", "end_kind", "months", "incidence", "ci_low", "ci_high")

_UNTIE_MONTHS = 1e-9  # (about 3 ms: far below the resolution of a verdict)


@dataclass(frozen=True)
class IncidenceCurves:
    """Cumulative incidence curves, per policy and end.

    Attributes:
        frame: One row per (policy, end_kind, months) on the grid, columns :data:`INCIDENCE_COLUMNS`:
            ``months`` since the arrangement's start (unit: months of 30 days), ``incidence`` the Aalen-Johansen
            estimate of the share ended that way by then, ``ci_low``/``ci_high`` its pointwise band at ``level``.
            Curves are step functions: the value at a grid point holds until the next.
        level: Confidence level of the band.
        arrangements: Arrangements per policy.
        censored_share: Per policy, the share of arrangements censored (no end observed).
    """

    frame: pd.DataFrame
    level: float
    arrangements: dict[str, int]
    censored_share: dict[str, float]

    @property
    def policies(self) -> list[str]:
        """The policies, in the order given."""
        return list(self.arrangements)

    def curve(self, policy: str, end_kind: str) -> pd.DataFrame:
        """One curve: ``months``, ``incidence``, ``ci_low``, ``ci_high``.

        Raises:
            KeyError: Unknown policy or end kind (naming the allowed ones).
        """
        if policy not in self.arrangements:
            raise KeyError(f"policy {policy!r}; allowed: {self.policies}")
        if end_kind not in ENDS:
            raise KeyError(f"end_kind {end_kind!r}; allowed: {list(ENDS)}")
        f = self.frame
        rows = f[(f["policy"] == policy) & (f["end_kind"] == end_kind)]
        return rows[["months", "incidence", "ci_low", "ci_high"]].reset_index(drop=True)

    def at(self, policy: str, end_kind: str, months: float) -> float:
        """The estimate at ``months`` (the step function's value: the last grid point at or before it)."""
        c = self.curve(policy, end_kind)
        before = c[c["months"] <= months]
        return float(before["incidence"].iloc[-1]) if len(before) else 0.0


def _codes(outcomes: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    for column in ("end_kind", "months_to_end"):
        if column not in outcomes:
            raise ValueError(f"outcomes lack column {column!r} (use regsim.metrics.arrangement_outcomes)")
    kind = outcomes["end_kind"].to_numpy()
    unknown = sorted(set(kind.tolist()) - set(END_KINDS))
    if unknown:
        raise ValueError(f"end_kind: unknown {unknown}; allowed: {list(END_KINDS)}")
    code = np.zeros(len(kind), dtype=np.int64)
    for k, name in enumerate(ENDS):
        code[kind == name] = k + 1
    months = outcomes["months_to_end"].to_numpy(dtype=np.float64)
    if not np.isfinite(months).all() or (months < 0).any():
        raise ValueError("months_to_end must be finite and >= 0")
    return months, code


def _grid(all_months: Sequence[NDArray[np.float64]], step: float) -> NDArray[np.float64]:
    top = max((float(m.max()) for m in all_months if len(m)), default=0.0)
    return np.arange(0.0, math.floor(top / step) * step + step / 2 + step, step)


def _step_at(index: NDArray[np.float64], values: NDArray[np.float64], grid: NDArray[np.float64]) -> NDArray[np.float64]:
    """A right-continuous step function given at ``index`` evaluated on ``grid`` (0 before its first point)."""
    pos = np.searchsorted(index, grid, side="right") - 1
    return np.where(pos >= 0, values[np.clip(pos, 0, None)], 0.0)


def _untied(months: NDArray[np.float64], code: NDArray[np.int64]) -> NDArray[np.float64]:
    """End times made distinct by moving the j-th of a tie down by j x :data:`_UNTIE_MONTHS` (see the module
    docstring); censoring times are kept."""
    out = months.copy()
    ended = np.flatnonzero(code != 0)
    order = ended[np.argsort(months[ended], kind="stable")]
    t = months[order]
    first = np.r_[True, t[1:] != t[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
    out[order] = t - (np.arange(len(t)) - start) * _UNTIE_MONTHS
    return out


def _aalen_johansen(
    months: NDArray[np.float64], code: NDArray[np.int64], k: int, grid: NDArray[np.float64], level: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    if not (code == k).any():
        zero = np.zeros(len(grid))
        return zero, zero, zero
    fitter = AalenJohansenFitter(alpha=1 - level)
    fitter.fit(_untied(months, code), code, event_of_interest=k)
    estimate = fitter.cumulative_density_.iloc[:, 0]
    band = fitter.confidence_interval_.reindex(estimate.index).ffill()
    # (lifelines labels the two bounds the other way round; take them by value)
    low = np.fmin(band.iloc[:, 0].to_numpy(), band.iloc[:, 1].to_numpy())
    high = np.fmax(band.iloc[:, 0].to_numpy(), band.iloc[:, 1].to_numpy())
    value = estimate.to_numpy(dtype=np.float64)
    low, high = np.where(np.isnan(low), value, low), np.where(np.isnan(high), value, high)
    t = estimate.index.to_numpy(dtype=np.float64)
    return _step_at(t, value, grid), _step_at(t, low, grid), _step_at(t, high, grid)


def cumulative_incidence(
    outcomes: Mapping[str, pd.DataFrame] | pd.DataFrame,
    *,
    level: float = 0.95,
    step_months: float = 0.25,
    grid: Sequence[float] | None = None,
) -> IncidenceCurves:
    """Aalen-Johansen cumulative incidence of completion, breakdown and referral, per policy.

    Args:
        outcomes: Per policy, the frame of :func:`regsim.metrics.arrangement_outcomes` (columns ``end_kind``
            and ``months_to_end``; pooled over seeds if you like), or one frame (policy ``"all"``).
        level: Confidence level of the band, in (0, 1).
        step_months: Spacing of the grid the curves are given on (unit: months), when ``grid`` is not given.
        grid: Months at which to give the curves (increasing, >= 0); default 0 to the longest follow-up.

    Returns:
        The :class:`IncidenceCurves`.

    Raises:
        ValueError: A frame lacks the columns, has an unknown end kind or a negative time; a bad level or grid.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if not step_months > 0:
        raise ValueError(f"step_months must be > 0, got {step_months}")
    given = {"all": outcomes} if isinstance(outcomes, pd.DataFrame) else dict(outcomes)
    if not given:
        raise ValueError("outcomes: no policy given")
    data = {name: _codes(o) for name, o in given.items()}
    if grid is None:
        points = _grid([m for m, _ in data.values()], step_months)
    else:
        points = np.asarray(grid, dtype=np.float64)
        if points.ndim != 1 or (points < 0).any() or (np.diff(points) <= 0).any():
            raise ValueError("grid must be increasing months >= 0")
    parts = []
    for name, (months, code) in data.items():
        for k, end in enumerate(ENDS, start=1):
            value, low, high = _aalen_johansen(months, code, k, points, level)
            parts.append(
                pd.DataFrame(
                    {
                        "policy": name,
                        "end_kind": end,
                        "months": points,
                        "incidence": value,
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
            )
    frame = pd.concat(parts, ignore_index=True)[list(INCIDENCE_COLUMNS)]
    return IncidenceCurves(
        frame=frame,
        level=level,
        arrangements={name: len(m) for name, (m, _) in data.items()},
        censored_share={name: float((c == 0).mean()) if len(c) else math.nan for name, (_, c) in data.items()},
    )


def naive_incidence(outcomes: pd.DataFrame, end_kind: str, months: float) -> float:
    """The naive estimate :math:`1 - \\mathrm{KM}(t)` of one end, the other ends treated as censored.

    Shown for contrast only (it overstates every end under competing risks: see the module docstring).
    """
    if end_kind not in ENDS:
        raise KeyError(f"end_kind {end_kind!r}; allowed: {list(ENDS)}")
    t, code = _codes(outcomes)
    km = KaplanMeierFitter().fit(t, event_observed=code == ENDS.index(end_kind) + 1)
    return float(1.0 - km.survival_function_at_times(months).iloc[0])
