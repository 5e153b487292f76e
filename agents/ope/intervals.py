"""Intervals for off-policy estimates: a bootstrap clustered by arrangement, and an empirical-Bernstein bound.

Arrangements, not decisions, are independent: the decisions of one debtor share the debtor. The bootstrap
therefore resamples *arrangements* with replacement, each bringing all of its decisions (the cluster or block
bootstrap; Davison & Hinkley 1997, sec. 3.8; Field & Welsh 2007).

It is vectorised through sums. Every estimator of :mod:`agents.ope.estimators` is a smooth function of a few
sums over decisions, :math:`\\hat V = g(\\sum_i z_i)` with :math:`z_i \\in \\mathbb{R}^k` per-decision columns
(for IPS :math:`z_i = (w_i r_i, 1)` and :math:`g(s) = s_1/s_2`). A resample that draws arrangement ``c``
:math:`m_c` times has sums :math:`\\sum_c m_c Z_c`, with :math:`Z_c = \\sum_{i \\in c} z_i` the per-arrangement
sums. So the whole bootstrap is one pass over the decisions (``Z``, shape ``(C, k)``), multiplicities
``M`` of shape ``(B, C)`` (each row a multinomial draw of ``C`` arrangements among ``C``) and one matrix product
``M @ Z``; all estimators share the same resamples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "bootstrap_multiplicities",
    "bootstrap_sums",
    "cluster_codes",
    "cluster_sums",
    "empirical_bernstein_interval",
    "percentile_interval",
]


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def cluster_codes(cluster: ArrayLike) -> tuple[NDArray[np.int64], int]:
    """Dense codes ``0..C-1`` of cluster ids, shape ``(n,)``, and the number of clusters ``C``."""
    unique, codes = np.unique(np.asarray(cluster), return_inverse=True)
    return codes.astype(np.int64).reshape(-1), len(unique)


def cluster_sums(codes: NDArray[np.int64], n_clusters: int, columns: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per-cluster sums :math:`Z_c = \\sum_{i \\in c} z_i` of per-decision columns.

    Args:
        codes: Dense cluster codes, shape ``(n,)`` (from :func:`cluster_codes`).
        n_clusters: Number of clusters ``C``.
        columns: Per-decision columns ``z``, shape ``(n, k)``.

    Returns:
        ``Z``, shape ``(C, k)``.
    """
    if columns.ndim != 2 or len(columns) != len(codes):
        raise ValueError(f"columns must have shape (n, k) with n={len(codes)}, got {columns.shape}")
    return np.stack([np.bincount(codes, weights=col, minlength=n_clusters) for col in columns.T], axis=1)


def bootstrap_multiplicities(
    n_clusters: int, n_bootstrap: int, rng: np.random.Generator, *, chunk: int = 25
) -> Iterator[NDArray[np.float64]]:
    """Multiplicities of the clusters in ``n_bootstrap`` resamples, in chunks of at most ``chunk`` rows.

    Each row is one resample: ``C`` clusters drawn uniformly with replacement, i.e. a multinomial draw
    :math:`m \\sim \\mathrm{Mult}(C; 1/C, \\dots, 1/C)`, so every row sums to ``C``.

    Yields:
        Arrays of shape ``(b, C)`` (float64, ready for a matrix product), ``b <= chunk``.
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        draws = rng.integers(0, n_clusters, size=(b, n_clusters))
        # One bincount over offset codes counts every resample's draws at once.
        offsets = draws + (np.arange(b) * n_clusters)[:, None]
        yield np.bincount(offsets.ravel(), minlength=b * n_clusters).reshape(b, n_clusters).astype(np.float64)
        done += b


def bootstrap_sums(
    sums: NDArray[np.float64], n_bootstrap: int, rng: np.random.Generator, *, chunk: int = 25
) -> NDArray[np.float64]:
    """Column sums of ``n_bootstrap`` cluster-bootstrap resamples: :math:`M Z`.

    Args:
        sums: Per-cluster sums ``Z``, shape ``(C, k)`` (from :func:`cluster_sums`).
        n_bootstrap: Number of resamples ``B``.
        rng: The generator that draws the resamples.
        chunk: Resamples drawn at a time (memory ``chunk * C`` floats).

    Returns:
        Resampled sums, shape ``(B, k)``.
    """
    parts = [m @ sums for m in bootstrap_multiplicities(len(sums), n_bootstrap, rng, chunk=chunk)]
    return np.concatenate(parts, axis=0)


def percentile_interval(samples: NDArray[np.float64], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates: their ``(1-level)/2`` and ``(1+level)/2`` quantiles.

    Replicates that are ``nan`` (e.g. a self-normalised estimator on a resample whose weights sum to zero) are
    dropped; if more than half are ``nan`` the interval is ``(nan, nan)``.

    Args:
        samples: Bootstrap replicates of one estimator, shape ``(B,)``.
        level: Confidence level in (0, 1).
    """
    _check_level(level)
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0 or len(finite) < len(samples) / 2:
        return math.nan, math.nan
    low, high = np.quantile(finite, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def empirical_bernstein_interval(
    values: NDArray[np.float64], *, level: float = 0.95, value_range: tuple[float, float] | None = None
) -> tuple[float, float]:
    """Two-sided empirical-Bernstein confidence interval for the mean of bounded i.i.d. values.

    Maurer & Pontil (2009, Theorem 4): for i.i.d. :math:`X_1..X_N` in :math:`[a, b]` and :math:`\\delta > 0`,
    with probability at least :math:`1 - \\delta`,

    .. math::

        \\mathbb{E}X \\le \\bar X + \\sqrt{\\frac{2 V_N \\ln(2/\\delta)}{N}}
            + \\frac{7 (b - a) \\ln(2/\\delta)}{3 (N - 1)},

    with :math:`V_N` the sample variance (``ddof=1``). Both sides at :math:`\\delta = (1 - level)/2` give the
    interval. Unlike the bootstrap it holds at every ``N``, not only asymptotically, and is conservative.

    Args:
        values: The i.i.d. values, shape ``(N,)``, ``N >= 2``. For an estimate over arrangements, pass one value
            per arrangement (the cluster's sum of per-decision terms divided by the mean number of decisions per
            arrangement), so that the values are independent.
        level: Confidence level in (0, 1).
        value_range: The a-priori range ``(a, b)`` of the values. None takes the observed minimum and maximum,
            a plug-in that makes the bound approximate (it assumes no value outside the observed range).

    Returns:
        ``(low, high)``.
    """
    _check_level(level)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    low_v, high_v = (float(values.min()), float(values.max())) if value_range is None else value_range
    if not high_v >= low_v:
        raise ValueError(f"value_range must be (a, b) with a <= b, got {value_range}")
    log_term = math.log(2.0 / ((1.0 - level) / 2.0))
    mean = float(values.mean())
    variance = float(values.var(ddof=1))
    half = math.sqrt(2.0 * variance * log_term / n) + 7.0 * (high_v - low_v) * log_term / (3.0 * (n - 1))
    return mean - half, mean + half
