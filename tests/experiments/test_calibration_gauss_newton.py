"""The iterated Gauss-Newton refinement (experiments.calibration.gauss_newton) on a synthetic noisy least-squares
problem with a known minimum: it converges into the optimum's interval, stops by its rule, respects its budget,
and repeats itself to the bit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from experiments.calibration.fit import Objective
from experiments.calibration.gauss_newton import (
    GAIN_TOL,
    GaussNewtonResult,
    iterated_gauss_newton,
    trust_region_step,
)

RNG_SEED = 7
P, K = 4, 60
SIGMA = 0.01


class Problem:
    """Moments ``a + J theta`` (mildly curved) plus noise: independent per design seed, one fixed draw at the common
    seed. The log's moments are the noise-free moments at ``truth``."""

    def __init__(self) -> None:
        rng = np.random.default_rng(RNG_SEED)
        self.jac = rng.normal(scale=0.2, size=(K, P))
        self.a = rng.uniform(0.2, 0.6, size=K)
        self.truth = np.array([0.3, 0.7, 0.55, 0.2])
        self.common = rng.normal(scale=SIGMA, size=K)
        self.noise = np.random.default_rng(RNG_SEED + 1)
        self.objective = Objective(self.moments(self.truth), np.full(K, 2 * SIGMA**2))
        self.design_calls = 0
        self.point_calls = 0

    def moments(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.a + self.jac @ theta + 0.05 * (self.jac**2) @ (theta - 0.5) ** 2

    def design(self, points: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        self.design_calls += len(points)
        return np.array([self.moments(x) + self.noise.normal(scale=SIGMA, size=K) for x in points])

    def point(self, theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        self.point_calls += 1
        m = self.moments(theta) + self.common
        return self.objective.value(m), m


def _run(problem: Problem, budget: int = 200, seed: int = 0) -> GaussNewtonResult:
    start = np.array([0.8, 0.2, 0.1, 0.9])
    q0, m0 = problem.point(start)
    problem.point_calls = 0
    return iterated_gauss_newton(
        problem.objective,
        np.zeros(P),
        np.ones(P),
        start,
        q0,
        m0,
        problem.design,
        problem.point,
        budget=budget,
        per_iteration=2 * P + 2,
        rng=np.random.default_rng(seed),
        box=0.3,
    )


def test_converges_into_the_optimum_and_stops_by_its_rule() -> None:
    problem = Problem()
    result = _run(problem)
    assert result.stop == "converged"
    assert result.iterations[-1].predicted_gain < GAIN_TOL
    # The optimum at the common seed's noise: GLS of its noise on the Jacobian, about SIGMA / |J| per parameter;
    # the estimate lies within a few of those of the truth (the start was 0.5-0.7 of a range away).
    se = SIGMA / np.sqrt((problem.jac**2).sum(axis=0))
    assert np.all(np.abs(result.center - problem.truth) < 6 * se), (result.center, problem.truth, se)
    assert result.objective < problem.point(np.array([0.8, 0.2, 0.1, 0.9]))[0]
    assert sum(it.accepted for it in result.iterations) >= 1


def test_respects_its_budget() -> None:
    problem = Problem()
    result = _run(problem, budget=15)
    assert result.stop == "budget"
    assert result.simulations == problem.design_calls + problem.point_calls <= 15


def test_same_seed_same_search_to_the_bit() -> None:
    a, b = _run(Problem()), _run(Problem())
    np.testing.assert_array_equal(a.center, b.center)
    assert a.iterations == b.iterations
    np.testing.assert_array_equal(a.design[0], b.design[0])
    assert _run(Problem(), seed=1).design[0].tolist() != a.design[0].tolist()


def test_trust_region_step_is_damped_to_the_box() -> None:
    h = np.diag([100.0, 1.0])
    g = np.array([50.0, 5.0])
    free, damped = trust_region_step(g, h, box=10.0)
    np.testing.assert_allclose(free, [0.5, 5.0])
    assert not damped
    step, damped = trust_region_step(g, h, box=0.4)
    assert damped and np.max(np.abs(step)) == pytest.approx(0.4, rel=1e-6)
    assert abs(step[1]) < 0.4 + 1e-9  # the weak direction is damped first: the step turns towards the strong one


def test_bad_budget_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="budget"):
        _run(Problem(), budget=5)
