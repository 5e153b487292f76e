"""The iterated Gauss-Newton refinement (experiments.calibration.gauss_newton) on a synthetic noisy least-squares
problem with a known minimum: it converges into the optimum's interval, stops by its rule, respects its budget,
and repeats itself to the bit; a step is judged at a fresh seed too (a start lucky at the common seed does not
freeze the search); the intervals' model keeps the first box's scale when the trust region shrinks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from experiments.calibration.fit import Objective
from experiments.calibration.gauss_newton import (
    GAIN_TOL,
    INTERVAL_DESIGNS,
    MIN_BOX,
    GaussNewtonResult,
    equivalent_points,
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
        self.pair_noise = np.random.default_rng(RNG_SEED + 2)
        self.design_calls = 0
        self.point_calls = 0
        self.pair_calls = 0
        #: Added to Q at the common seed of every step: the start's Q (passed in) was that much luckier.
        self.luck = 0.0

    def moments(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.a + self.jac @ theta + 0.05 * (self.jac**2) @ (theta - 0.5) ** 2

    def design(self, points: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        self.design_calls += len(points)
        return np.array([self.moments(x) + self.noise.normal(scale=SIGMA, size=K) for x in points])

    def point(self, theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        self.point_calls += 1
        m = self.moments(theta) + self.common
        return self.objective.value(m) + self.luck, m

    def pair(self, points: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        """Every point at one fresh seed: one noise draw shared by them."""
        self.pair_calls += len(points)
        noise = self.pair_noise.normal(scale=SIGMA, size=K)
        return np.array([self.moments(x) + noise for x in points])


START = np.array([0.8, 0.2, 0.1, 0.9])


def _run(problem: Problem, budget: int = 200, seed: int = 0, checked: bool = True) -> GaussNewtonResult:
    q0, m0 = problem.point(START)
    q0 -= problem.luck
    problem.point_calls = 0
    return iterated_gauss_newton(
        problem.objective,
        np.zeros(P),
        np.ones(P),
        START,
        q0,
        m0,
        problem.design,
        problem.point,
        budget=budget,
        per_iteration=2 * P + 2,
        rng=np.random.default_rng(seed),
        box=0.3,
        evaluate_pair=problem.pair if checked else None,
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
    assert result.simulations == problem.design_calls + problem.point_calls + problem.pair_calls
    assert result.simulations - result.top_up <= 15  # the search's budget; the intervals' top-up comes on top
    assert 0 < result.top_up <= INTERVAL_DESIGNS * (2 * P + 2)


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


@pytest.mark.parametrize("extra", [1, 2])
def test_a_budget_for_one_design_but_not_its_checked_step_still_gives_a_model(extra: int) -> None:
    """The smallest budget it takes (one design and one more simulation) cannot pay for a step with its two
    fresh-seed checks: the design still runs and its model is the result's (the intervals need one)."""
    problem = Problem()
    per_iteration = 2 * P + 2
    result = _run(problem, budget=per_iteration + extra)
    assert result.model is not None and result.simulations - result.top_up <= per_iteration + extra
    assert result.stop == "budget" and len(result.iterations) == 1 and result.iterations[0].actual_gain is None


def test_a_start_lucky_at_the_common_seed_does_not_freeze_the_search() -> None:
    """The start's Q at the common seed is lower than any step's there by more than the first steps gain (as
    CMA-ES's best of many is, by that seed's noise): judged at the common seed alone every step is rejected and
    the box shrinks away; judged with their paired gains at fresh seeds the steps are taken."""
    frozen_problem, checked_problem = Problem(), Problem()
    q_start = frozen_problem.point(START)[0]
    frozen_problem.luck = checked_problem.luck = 0.9 * q_start
    frozen = _run(frozen_problem, checked=False)
    assert frozen.stop == "trust-region" and not any(it.accepted for it in frozen.iterations)
    checked = _run(checked_problem)
    assert any(it.accepted for it in checked.iterations)
    assert all(len(it.checked_gains) == 1 for it in checked.iterations if it.actual_gain is not None)
    assert np.abs(checked.center - checked_problem.truth).max() < np.abs(START - checked_problem.truth).max() / 3


def test_the_intervals_model_keeps_the_first_box_when_the_trust_region_shrinks() -> None:
    """After the box shrank below MIN_BOX the last model rests on a tiny box; the intervals' model rests on every
    design point in the first box (+-0.3) around the final centre, topped up to INTERVAL_DESIGNS designs' worth."""
    problem = Problem()
    problem.luck = 0.9 * problem.point(START)[0]
    result = _run(problem, checked=False)
    assert result.stop == "trust-region" and result.box < MIN_BOX
    xs = result.design[0]
    inside = xs[np.all(np.abs(xs - result.center) <= 0.3 + 1e-12, axis=1)]
    assert result.model.points == len(inside)
    np.testing.assert_array_equal(result.model.center, result.center)
    per_iteration = 2 * P + 2
    # The top-up is drawn uniform in the box and clipped into the bounds (the start is near a corner), which loses
    # part of a point's spread; its designed worth is INTERVAL_DESIGNS designs.
    assert equivalent_points(inside, result.center, np.ones(P), 0.3) >= 0.6 * INTERVAL_DESIGNS * per_iteration
    assert result.last_model is not None and result.last_model.points < result.model.points
