"""Paired differences to a baseline and their confidence intervals: stateless functions of per-pair arrays.

:func:`paired_mean_difference` (difference of means, paired t interval) and :func:`paired_ratio_difference`
(difference of two ratios of sums, delta-method interval) return a :class:`PairedDifference`. They know nothing
of policies or KPIs; :mod:`agents.evaluate` applies them to per-arrangement outcomes (see its docstring for the
notation and the references).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = ["PairedDifference", "paired_mean_difference", "paired_ratio_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """A difference to the baseline and its confidence interval.

    Attributes:
        diff: Point estimate (policy minus baseline).
        ci_low: Lower bound of the interval.
        ci_high: Upper bound of the interval.
        se: Standard error of ``diff``.
    """

    diff: float
    ci_low: float
    ci_high: float
    se: float

    def scaled(self, factor: float) -> PairedDifference:
        """The same difference in units ``factor`` times larger (e.g. per-seed totals from per-arrangement means)."""
        return PairedDifference(self.diff * factor, self.ci_low * factor, self.ci_high * factor, self.se * factor)


_NAN_DIFFERENCE = PairedDifference(math.nan, math.nan, math.nan, math.nan)


def _check_paired(*arrays: NDArray[np.float64]) -> int:
    n = len(arrays[0])
    if any(a.ndim != 1 or len(a) != n for a in arrays):
        raise ValueError(f"paired arrays must be 1-d of equal length, got shapes {[a.shape for a in arrays]}")
    return n


def paired_mean_difference(y: ArrayLike, y_base: ArrayLike, *, level: float = 0.95) -> PairedDifference:
    """Difference of means of paired observations, with the paired t interval.

    :math:`\\bar d \\pm t_{(1+level)/2,\\,N-1} \\, s_d / \\sqrt N`, where :math:`d_i = y_i - y^{base}_i`,
    :math:`\\bar d` their mean and :math:`s_d` their sample standard deviation (ddof 1).

    Args:
        y: Per-pair outcome under the policy, shape ``(N,)``.
        y_base: Per-pair outcome under the baseline, shape ``(N,)``.
        level: Confidence level of the two-sided interval.

    Returns:
        The difference; its interval is NaN for fewer than two pairs, and has zero width when every pair's
        difference is the same.

    Reference: Student's paired t test, e.g. Wasserman, *All of Statistics*, section 10.6 (paired samples).
    """
    a = np.asarray(y, dtype=np.float64)
    b = np.asarray(y_base, dtype=np.float64)
    n = _check_paired(a, b)
    if n == 0:
        return _NAN_DIFFERENCE
    d = a - b
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, df=n - 1)) * se
    return PairedDifference(mean, mean - half, mean + half, se)


def paired_ratio_difference(
    num: ArrayLike, den: ArrayLike, num_base: ArrayLike, den_base: ArrayLike, *, level: float = 0.95
) -> PairedDifference:
    """Difference of two ratios of sums over the same pairs, with a delta-method interval.

    With :math:`R = \\bar Y / \\bar X` for the policy and :math:`R_b = \\bar Y_b / \\bar X_b` for the baseline,
    :math:`D = R - R_b` is linearised per pair into the influence values

    .. math:: z_i = \\frac{Y_i - R X_i}{\\bar X} - \\frac{Y_{b,i} - R_b X_{b,i}}{\\bar X_b},

    so :math:`\\operatorname{Var} D \\approx s_z^2 / N` (the covariance of the two ratios enters through the
    pairing), and the interval is :math:`D \\pm z_{(1+level)/2} \\, s_z / \\sqrt N` with the normal quantile.

    Args:
        num: Per-pair numerator :math:`Y` under the policy, shape ``(N,)``.
        den: Per-pair denominator :math:`X` under the policy, shape ``(N,)``.
        num_base: Per-pair numerator under the baseline, shape ``(N,)``.
        den_base: Per-pair denominator under the baseline, shape ``(N,)``.
        level: Confidence level of the two-sided interval.

    Returns:
        The difference; all NaN when a denominator sums to 0; the interval NaN for fewer than two pairs.

    Reference: Deng, Knoblich & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018, section 3.3.
    """
    y, x, yb, xb = (np.asarray(v, dtype=np.float64) for v in (num, den, num_base, den_base))
    n = _check_paired(y, x, yb, xb)
    if n == 0:
        return _NAN_DIFFERENCE
    mx, mxb = float(x.mean()), float(xb.mean())
    if mx == 0 or mxb == 0:
        return _NAN_DIFFERENCE
    r, rb = float(y.sum()) / float(x.sum()), float(yb.sum()) / float(xb.sum())
    diff = r - rb
    if n < 2:
        return PairedDifference(diff, math.nan, math.nan, math.nan)
    z = (y - r * x) / mx - (yb - rb * xb) / mxb
    se = float(z.std(ddof=1)) / math.sqrt(n)
    half = float(stats.norm.ppf(0.5 + level / 2)) * se
    return PairedDifference(diff, diff - half, diff + half, se)
