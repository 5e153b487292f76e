"""The fit's minimisers (experiments.calibration.optimiser) on cheap synthetic least-squares problems with a known
minimum: DFO-LS finds it and stops converged, its first model's points come in one batch, a budget stops it,
CMA-ES stops when it no longer improves, and the same seed gives the same search to the bit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray

from experiments.calibration.optimiser import (
    cma_es_search,
    default_budget,
    dfo_ls_budget,
    dfo_ls_search,
    fit_target,
    initial_points,
)

P, K = 6, 30


class Problem:
    """``r(u) = tanh(J u / 5) - tanh(J u* / 5)``: smooth, nonlinear, zero at ``u*`` inside the cube."""

    def __init__(self, seed: int = 20) -> None:
        rng = np.random.default_rng(seed)
        self.jac = rng.normal(size=(K, P)) * 5.0
        self.truth = rng.uniform(0.25, 0.75, size=P)
        self.batches: list[int] = []
        self.points: list[NDArray[np.float64]] = []

    def __call__(self, us: Sequence[NDArray[np.float64]]) -> list[NDArray[np.float64]]:
        self.batches.append(len(us))
        self.points.extend(np.asarray(u, float) for u in us)
        return [np.tanh(self.jac @ u / 5.0) - np.tanh(self.jac @ self.truth / 5.0) for u in us]


def test_dfo_ls_finds_the_minimum_and_stops_converged() -> None:
    problem = Problem()
    search = dfo_ls_search(problem, np.full(P, 0.5), budget=100, seed=1)
    assert search.stop == "converged", search.message
    assert search.evaluations < search.budget
    assert search.objective < 1e-3
    np.testing.assert_allclose(search.best, problem.truth, atol=0.02)
    # its first model's P + 1 points in one batch, every later evaluation alone
    assert problem.batches[0] == P + 1 and set(problem.batches[1:]) == {1}
    assert len(problem.points) == search.evaluations
    assert all((u >= 0.0).all() and (u <= 1.0).all() for u in problem.points)


def test_initial_points_step_towards_the_interior() -> None:
    pts = initial_points(np.array([0.1, 0.95]), 0.2)
    np.testing.assert_allclose(pts, [[0.1, 0.95], [0.3, 0.95], [0.1, 0.75]])


def test_dfo_ls_stops_on_its_budget() -> None:
    problem = Problem()
    search = dfo_ls_search(problem, np.full(P, 0.05), budget=P + 3, seed=1)
    assert search.stop == "budget"
    assert search.evaluations == len(problem.points) <= P + 3


def test_dfo_ls_stops_at_the_roughness_scale() -> None:
    # A smooth problem with a rough ripple (like a simulation at one seed, rough at every small scale): the trust
    # region stops at rhoend (3% of the range) instead of chasing the ripple, then restarts from its best point
    # until restarts stop helping: converged, in fewer evaluations than with a trust region allowed down to 0.1%
    # (80 on this problem), near the minimum.
    smooth = Problem()
    ripple = np.random.default_rng(1).normal(size=(K, P)) * 400.0

    def rough(us: Sequence[NDArray[np.float64]]) -> list[NDArray[np.float64]]:
        return [r + 0.05 * np.sin(ripple @ np.asarray(u)) for r, u in zip(smooth(us), us, strict=True)]

    search = dfo_ls_search(rough, np.full(P, 0.5), budget=300, seed=1)
    assert search.stop == "converged" and "unsuccessful restarts" in search.message, search.message
    assert search.evaluations <= 50
    np.testing.assert_allclose(search.best, smooth.truth, atol=0.05)
    finer = dfo_ls_search(rough, np.full(P, 0.5), budget=300, seed=1, rhoend=0.001)
    assert finer.evaluations > search.evaluations


def test_the_same_seed_gives_the_same_search_to_the_bit() -> None:
    a, b = Problem(), Problem()
    np.random.seed(5)  # noqa: NPY002 - a caller's legacy global state must not change a search
    first = dfo_ls_search(a, np.full(P, 0.3), budget=40, seed=3)
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(99)  # noqa: NPY002
    second = dfo_ls_search(b, np.full(P, 0.3), budget=40, seed=3)
    assert first.best.tobytes() == second.best.tobytes() and first.objective == second.objective
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.points, b.points, strict=True))
    np.random.set_state(state)  # noqa: NPY002
    c, d = Problem(), Problem()
    one = cma_es_search(c, np.full(P, 0.3), budget=40, seed=3, popsize=8)
    two = cma_es_search(d, np.full(P, 0.3), budget=40, seed=3, popsize=8)
    assert one.best.tobytes() == two.best.tobytes()
    assert all(x.tobytes() == y.tobytes() for x, y in zip(c.points, d.points, strict=True))


def test_cma_es_stops_when_it_no_longer_improves() -> None:
    flat = [0]

    def constant(us: Sequence[NDArray[np.float64]]) -> list[NDArray[np.float64]]:
        flat[0] += len(us)
        return [np.ones(K) for _ in us]

    search = cma_es_search(constant, np.full(P, 0.5), budget=10 * P, seed=1, popsize=6, patience=3)
    assert search.stop == "converged" and search.evaluations == 4 * 6 == flat[0]  # patience 3, then one more
    assert cma_es_search(constant, np.full(P, 0.5), budget=10 * P, seed=1, popsize=6).stop == "budget"  # no patience
    problem = Problem()
    improving = cma_es_search(problem, np.full(P, 0.5), budget=24, seed=1, popsize=6)
    assert improving.stop == "budget" and improving.evaluations == 24


def test_both_stop_once_the_objective_reaches_its_target() -> None:
    assert fit_target(200) == pytest.approx(240.0) and fit_target(0) is None
    problem = Problem()
    full = cma_es_search(problem, np.full(P, 0.5), budget=60, seed=1, popsize=6)
    target = 0.5 * min(float(np.dot(r, r)) for r in problem([np.full(P, 0.5)]))
    problem = Problem()
    early = cma_es_search(problem, np.full(P, 0.5), budget=60, seed=1, popsize=6, target=target)
    assert early.stop == "converged" and early.objective <= target and early.evaluations < full.evaluations
    assert "target" in early.message and early.evaluations % 6 == 0
    problem = Problem()
    later = cma_es_search(problem, np.full(P, 0.5), budget=60, seed=1, popsize=6, target=target, min_evaluations=40)
    assert later.stop == "converged" and later.evaluations == max(42, early.evaluations)
    problem = Problem()
    dfo = dfo_ls_search(problem, np.full(P, 0.5), budget=100, seed=1, target=target)
    assert dfo.stop == "converged" and dfo.objective <= target
    assert dfo.evaluations < dfo_ls_search(Problem(), np.full(P, 0.5), budget=100, seed=1).evaluations


def test_budgets_scale_with_the_parameter_count() -> None:
    assert default_budget("dfo-ls", 20) == dfo_ls_budget(20) == 101 and default_budget("dfo-ls", 10) == 51
    assert default_budget("cma-es", 20) == 200
    with pytest.raises(ValueError, match="--optimiser: expected one of cma-es, dfo-ls"):
        default_budget("nelder-mead", 3)  # type: ignore[arg-type]
