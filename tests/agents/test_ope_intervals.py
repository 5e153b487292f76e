"""The clustered bootstrap and the empirical-Bernstein bound of :mod:`agents.ope.intervals`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.ope import BanditFeedback, estimate
from agents.ope.intervals import (
    bootstrap_multiplicities,
    bootstrap_sums,
    cluster_codes,
    cluster_sums,
    empirical_bernstein_interval,
    percentile_interval,
)


def _feedback(cluster: np.ndarray, reward: np.ndarray, weight: np.ndarray) -> BanditFeedback:
    pscore = np.full(len(reward), 0.5)
    return BanditFeedback(cluster=cluster, reward=reward, pscore=pscore, target_prob=weight * pscore)


def _width(fb: BanditFeedback, name: str) -> float:
    result = estimate(fb, names=(name,), seed=1, n_bootstrap=400)[name]
    return result.ci_high - result.ci_low


@pytest.mark.parametrize("name", ["ips", "snips"])
def test_duplicated_decisions_within_clusters_widen_the_interval(name: str) -> None:
    rng = np.random.default_rng(0)
    n_clusters, copies = 300, 10
    reward = rng.normal(size=n_clusters)
    weight = rng.uniform(0.5, 1.5, size=n_clusters)
    # The same 3,000 decisions: each value 10 times within one arrangement, or each copy its own arrangement.
    dup = _feedback(np.repeat(np.arange(n_clusters), copies), np.repeat(reward, copies), np.repeat(weight, copies))
    spread = _feedback(np.arange(n_clusters * copies), np.repeat(reward, copies), np.repeat(weight, copies))
    ratio = _width(dup, name) / _width(spread, name)
    # Ten copies carry the information of one: the interval is about sqrt(10) = 3.2 times wider.
    assert 2.5 < ratio < 4.0, ratio


def test_multiplicities_draw_every_resample_of_c_clusters() -> None:
    rng = np.random.default_rng(3)
    chunks = list(bootstrap_multiplicities(50, 60, rng, chunk=25))
    assert [c.shape for c in chunks] == [(25, 50), (25, 50), (10, 50)]
    m = np.concatenate(chunks)
    assert np.all(m.sum(axis=1) == 50)
    # Each cluster appears once per resample on average, with the multinomial's variance (1 - 1/C).
    assert m.mean() == pytest.approx(1.0)
    assert m.var() == pytest.approx(1 - 1 / 50, rel=0.15)
    again = np.concatenate(list(bootstrap_multiplicities(50, 60, np.random.default_rng(3), chunk=25)))
    assert np.array_equal(m, again)


def test_cluster_sums_add_each_clusters_rows() -> None:
    codes, n = cluster_codes(np.array([7, 3, 7, 9, 3]))
    assert n == 3 and codes.tolist() == [1, 0, 1, 2, 0]
    columns = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]])
    assert cluster_sums(codes, n, columns).tolist() == [[7.0, 70.0], [4.0, 40.0], [4.0, 40.0]]
    with pytest.raises(ValueError, match="columns must have shape"):
        cluster_sums(codes, n, columns[:3])


def test_bootstrap_sums_are_multiplicities_times_cluster_sums() -> None:
    sums = np.arange(12.0).reshape(6, 2)
    boot = bootstrap_sums(sums, 7, np.random.default_rng(5), chunk=3)
    m = np.concatenate(list(bootstrap_multiplicities(6, 7, np.random.default_rng(5), chunk=3)))
    np.testing.assert_allclose(boot, m @ sums)


def test_percentile_interval_takes_the_quantiles_and_drops_nan() -> None:
    samples = np.arange(1001.0)
    assert percentile_interval(samples, 0.9) == pytest.approx((50.0, 950.0))
    with_nan = np.r_[samples, [math.nan] * 10]
    assert percentile_interval(with_nan, 0.9) == pytest.approx((50.0, 950.0))
    assert all(math.isnan(v) for v in percentile_interval(np.full(10, math.nan)))
    with pytest.raises(ValueError, match="level must lie in"):
        percentile_interval(samples, 0.0)


def test_empirical_bernstein_follows_maurer_and_pontil() -> None:
    values = np.array([0.0, 0.2, 0.4, 1.0, 0.9])
    low, high = empirical_bernstein_interval(values, level=0.9, value_range=(0.0, 1.0))
    log_term = math.log(2 / 0.05)
    half = math.sqrt(2 * values.var(ddof=1) * log_term / 5) + 7 * log_term / (3 * 4)
    assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half))
    with pytest.raises(ValueError, match="value_range must be"):
        empirical_bernstein_interval(values, value_range=(1.0, 0.0))
    assert all(math.isnan(v) for v in empirical_bernstein_interval(values[:1]))


@pytest.mark.statistical
def test_empirical_bernstein_covers_and_is_wider_than_the_bootstrap() -> None:
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(200):
        values = rng.binomial(1, 0.1, size=60).astype(np.float64)
        low, high = empirical_bernstein_interval(values, level=0.9, value_range=(0.0, 1.0))
        covered += low <= 0.1 <= high
    # A finite-sample bound: at least its nominal coverage, here on a skewed Bernoulli(0.1) with 60 draws.
    assert covered >= 0.9 * 200
    rng = np.random.default_rng(12)
    n = 2000
    fb = _feedback(np.arange(n), rng.uniform(0, 1, size=n), rng.uniform(0, 2, size=n))
    result = estimate(fb, names=("ips",), seed=0, n_bootstrap=200)["ips"]
    assert result.bound_low < result.ci_low < result.value < result.ci_high < result.bound_high
