"""The back-test's predictive interval (``experiments/calibration/backtest.py``): an interval for one more draw
from the distribution of the ``n`` simulated draws, so that a held-out log moment drawn from the same distribution
falls inside it with the stated level, whatever ``n``."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.calibration.backtest import PREDICTIVE_LEVEL, predictive_interval


@pytest.mark.parametrize("n", [5, 10, 20])
def test_a_new_draw_falls_inside_at_the_stated_level(n: int) -> None:
    """20,000 columns of ``n`` normal draws and one more draw each: the share of new draws inside their interval
    is the level within 4 binomial standard deviations (the draws' own 5-95% range covers 62%, 76% and 81% there)."""
    rng = np.random.default_rng(n)
    columns = 20_000
    scale = rng.uniform(0.01, 3.0, size=columns)
    centre = rng.uniform(-5.0, 5.0, size=columns)
    sims = centre + scale * rng.standard_normal((n, columns))
    new = centre + scale * rng.standard_normal(columns)
    low, median, high = predictive_interval(sims, PREDICTIVE_LEVEL)
    coverage = float(np.mean((new >= low) & (new <= high)))
    sd = np.sqrt(PREDICTIVE_LEVEL * (1.0 - PREDICTIVE_LEVEL) / columns)
    assert abs(coverage - PREDICTIVE_LEVEL) < 4.0 * sd, coverage
    np.testing.assert_allclose(median, np.median(sims, axis=0))


def test_a_moment_in_fewer_than_two_draws_has_no_interval() -> None:
    """NaN draws are left out per moment; a moment with fewer than two draws gets NaN bounds (not covered)."""
    sims = np.array([[1.0, np.nan, 0.0], [2.0, np.nan, np.nan], [3.0, 5.0, np.nan]])
    low, median, high = predictive_interval(sims, 0.9)
    assert np.isnan(low[1:]).all() and np.isnan(high[1:]).all() and np.isnan(median[1:]).all()
    half = 2.919985580355516 * 1.0 * np.sqrt(1.0 + 1.0 / 3.0)  # t(2) at 0.95, sd 1
    np.testing.assert_allclose([low[0], median[0], high[0]], [2.0 - half, 2.0, 2.0 + half])
