"""The parameter intervals (experiments.calibration.inference) carry the simulation's own noise: with simulations
of ``A_sim`` arrangements for a log of ``A_log``, MSM's variance factor is ``1 + A_log / A_sim``, so the intervals
widen by the square root of its ratio when the simulations shrink."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.calibration.fit import FitResult, LocalModel
from experiments.calibration.inference import infer
from experiments.calibration.moments import LogMoments, MomentDesign, MomentKey
from experiments.calibration.spec import Spec, parse_spec
from regsim import WorldConfig

RNG_SEED = 21
N_LOG = 40_000


def _problem() -> tuple[Spec, LogMoments, FitResult]:
    rng = np.random.default_rng(RNG_SEED)
    base = WorldConfig()
    spec = parse_spec(
        {
            "population.types.forgetful.attention": {"low": 0.05, "high": 0.5},
            "population.types.reliable.attention": {"low": 0.3, "high": 1.5},
        },
        base,
    )
    k, widths = 6, spec.highs - spec.lows
    jac = rng.normal(size=(k, 2)) / widths[None, :]  # a move across a range shifts a moment by about 1
    values = rng.uniform(0.2, 0.8, size=k)
    se = np.full(k, 1e-3)
    draws = values[None, :] + rng.normal(0.0, 1e-3, size=(400, k))
    keys = tuple(MomentKey("on_time", f"s{i}", -1, "paid_by_due") for i in range(k))
    moments = LogMoments(MomentDesign(keys, {}, 30), values, se, np.full(k, 1000.0), draws, N_LOG)
    center = (spec.lows + spec.highs) / 2
    model = LocalModel(center, values, jac, np.zeros(k), np.eye(2) * 1e-3, 20)
    fit = FitResult(center, float(k), values.copy(), model, [], 0, 0.0, False)
    return spec, moments, fit


@pytest.mark.parametrize("sim_arrangements", [N_LOG // 4, N_LOG // 2, 2 * N_LOG])
def test_intervals_widen_by_the_msm_factor_of_smaller_simulations(sim_arrangements: int) -> None:
    spec, moments, fit = _problem()
    same = infer(spec, moments, fit, N_LOG)  # factor 1 + 1 = 2
    other = infer(spec, moments, fit, sim_arrangements)
    assert all(i.identified for i in same.identification + other.identification)
    ratio = (other.high - other.low) / (same.high - same.low)
    expected = np.sqrt((1.0 + N_LOG / sim_arrangements) / 2.0)
    np.testing.assert_allclose(ratio, expected, rtol=1e-6)
    np.testing.assert_allclose(other.se / same.se, expected, rtol=1e-6)
