"""Iterated Gauss-Newton on local regression models of the moments, in a trust region: the fit's refinement.

CMA-ES (:mod:`experiments.calibration.optimiser`) finds the basin; near its best point a population search
gains little per simulation (on the 20-parameter benchmark its best Q fell by ~190 over its last twelve
generations and stayed 60 above Q at the truth). The method of simulated moments has a structure CMA-ES does not
use: the moments are close to linear in the parameters over a few tenths of each range, and
:class:`~experiments.calibration.fit.LocalModel` estimates that linear map from simulations with independent
seeds (the simulation's roughness at one seed becomes independent regression noise,
:func:`~experiments.calibration.fit.scaled_curvature` takes its bias off the curvature).

Each iteration, from the current centre ``c`` with Q ``q_c`` at the common seed and a box of half-width ``h``
(share of each range, the trust region):

1. **Design**: ``per_iteration`` new points uniform in ``c +- h * range`` (clipped into the bounds), each with its
   own seed, plus every earlier design point within ``c +-`` :data:`REUSE_REACH` ``h * range`` (re-used). Twice
   the box: in 20 dimensions hardly any point of the previous design lies inside the box after a step, but all of
   it lies within twice the box after an accepted step (``|s| <= h``) or a rejected one (``h`` halved), so each
   model rests on the last two designs and more, not on ``2P`` points for ``P + 1`` coefficients.
2. **Model**: :func:`~experiments.calibration.fit.local_model` over them, centred at ``c``; in range units the
   gradient ``g = D J^T W (m_hat - a)`` and the noise-corrected curvature ``H``, its eigenvalues floored at 1
   (a direction worth less than one unit of Q across the whole range does not move).
3. **Step**: the Levenberg-Marquardt step ``s = (H + lambda I)^{-1} g`` with the smallest ``lambda >= 0`` that keeps
   ``max_j |s_j| <= h`` (weak directions are damped first), clipped into the bounds; its predicted gain
   ``2 g.s - s.H.s``.
4. **Stop** ``converged`` when the predicted gain is below :data:`GAIN_TOL` (one unit of Q: a change the
   intervals, two standard errors wide at four units, cannot see), before the step is simulated.
5. **Evaluate** the step at the common seed, and the step and the centre together at :data:`CHECK_SEEDS` fresh
   seeds (``evaluate_pair``, a new seed per call); the judged gain is the mean of the common seed's gain
   ``q_c - q_s`` and the fresh seeds' paired gains, and ``rho = judged / gain``. Why: the centre holds its place
   because its Q at the common seed was the lowest seen (CMA-ES's best of its whole search, or an accepted step),
   so part of ``q_c``'s lead is that seed's noise, which no step shares: the common seed's gain is biased against
   every step (on the 8,000-arrangement recovery predicted gains of 44-74 came out as -56 to +1 there, and four
   rejections shrank the box to 0.019). At a fresh seed simulated at both points the paired gain has no selection
   bias (the seed chose nothing) and little noise (the points share it: common random numbers). The common seed's
   gain stays in the mean so that the reported Q, which is the common seed's, cannot drift up without bound.
   Accepted when ``rho >`` :data:`ACCEPT_RATIO` (the centre moves); the box doubles (up to :data:`MAX_BOX`) when
   ``rho >`` :data:`GROW_RATIO` and the step reached the box's edge, and halves when rejected. Stop
   ``trust-region`` when the box falls below :data:`MIN_BOX` (the simulation's roughness scale, 3% of a range, as
   DFO-LS's ``rhoend``).
6. Stop ``budget`` when the simulations left cannot pay for another design, its step and checks.

**The intervals' model** (:attr:`GaussNewtonResult.model`, :mod:`experiments.calibration.inference`) is not the
trust region's last one: after rejections that one rests on a box a few hundredths of a range wide, where the
moments' slopes are mostly the simulation's roughness (the 8,000-arrangement recovery called none of ten
parameters identified from it). It is fitted over every design point within the *first* box (``box`` at the
start) around the final centre, topped up with fresh uniform points there (their own seeds) until the design is
worth :data:`INTERVAL_DESIGNS` designs of ``per_iteration`` uniform points for its weakest slope
(:func:`equivalent_points`), so the intervals measure the moments' sensitivity at the first box's scale. The
top-up comes on top of the search's ``budget`` (at most the target's worth of points, :attr:`GaussNewtonResult.
top_up`). It was first kept back from the budget: on the 20-parameter benchmark, at a target of ``6P``, that
reserve cut the search from five iterations to four and left Q at 390 on 284 degrees of freedom against 337.
Deterministic given ``rng`` and the evaluators.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.fit import LocalModel, Objective, local_model, scaled_curvature

__all__ = [
    "ACCEPT_RATIO",
    "CHECK_SEEDS",
    "GAIN_TOL",
    "GROW_RATIO",
    "INTERVAL_DESIGNS",
    "MAX_BOX",
    "MIN_BOX",
    "REUSE_REACH",
    "GaussNewtonResult",
    "Iteration",
    "equivalent_points",
    "iterated_gauss_newton",
    "trust_region_step",
]

#: A step whose predicted gain in Q is below this ends the search (converged).
GAIN_TOL = 1.0
#: A step is accepted when its actual gain is at least this share of the predicted one.
ACCEPT_RATIO = 0.1
#: Above this ratio (and on the box's edge) the box doubles.
GROW_RATIO = 0.75
#: The box's largest half-width (share of each range).
MAX_BOX = 0.5
#: Below this half-width the search stops (the simulation's roughness scale).
MIN_BOX = 0.03
#: Earlier design points within this many box half-widths of the centre (every coordinate) are re-used.
REUSE_REACH = 2.0
#: Eigenvalue floor of the curvature in range units (one unit of Q across the whole range).
EIGEN_FLOOR = 1.0
#: Fresh seeds at which each step is simulated with its centre (its paired gain judges the step with the
#: common seed's).
CHECK_SEEDS = 1
#: The intervals' model is worth this many designs of ``per_iteration`` uniform points in the first box around the
#: final centre: ``6P`` at the default ``2P`` per design, as the one local design without the refinement. Measured
#: on the statistical recovery test's fit (3 parameters, 4,000 arrangements, ``tests/experiments/
#: test_calibration_recovery.py``): with two designs (``4P``) two of the three intervals came out "wide" from the
#: slopes' noise (1 identified), with three 2 identified; all covered the truth either way.
INTERVAL_DESIGNS = 3

StopReason = Literal["converged", "trust-region", "budget"]
#: Simulates a list of parameter vectors, each with its own seed; their moments, shape ``(n, K)``.
DesignEvaluator = Callable[[Sequence[NDArray[np.float64]]], NDArray[np.float64]]
#: Simulates one parameter vector at the common seed; its Q and moments.
PointEvaluator = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]
#: Simulates a list of parameter vectors all at one fresh seed (a new one per call); their moments, ``(n, K)``.
PairEvaluator = Callable[[Sequence[NDArray[np.float64]]], NDArray[np.float64]]


@dataclass(frozen=True)
class Iteration:
    """One iteration: the box, the model's points, the step's predicted and actual gains, and the outcome.

    ``actual_gain`` is the gain at the common seed, ``checked_gains`` the paired gains at fresh seeds and
    ``judged_gain`` their mean with the common seed's (``None`` without fresh seeds), the gain the step was judged on.
    """

    box: float
    points: int
    center_objective: float
    predicted_gain: float
    actual_gain: float | None
    accepted: bool
    checked_gains: tuple[float, ...] = ()
    judged_gain: float | None = None


@dataclass
class GaussNewtonResult:
    """The refinement.

    Attributes:
        center: The best parameters found, shape ``(P,)``.
        objective: Q there (common seed).
        simulated: The moments there (common seed), shape ``(K,)``.
        model: The intervals' model: over the design points in the first box around the final centre, topped up
            with fresh ones to ``interval_points`` equivalent points (the last model when ``interval_points`` is 0).
        stop: Why it stopped: ``converged``, ``trust-region`` or ``budget``.
        simulations: Simulations it ran (designs, steps, checks and the intervals' top-up).
        box: The final half-width of the box.
        iterations: Per iteration.
        design: Every design point and its moments, in order (``(n, P)``, ``(n, K)``).
        last_model: The trust region's last model (the one the last step came from).
    """

    center: NDArray[np.float64]
    objective: float
    simulated: NDArray[np.float64]
    model: LocalModel
    stop: StopReason
    simulations: int
    box: float
    iterations: list[Iteration] = field(default_factory=list)
    design: tuple[NDArray[np.float64], NDArray[np.float64]] = (np.zeros((0, 0)), np.zeros((0, 0)))
    last_model: LocalModel | None = None
    top_up: int = 0
    """Of ``simulations``, the intervals' top-up after the search (outside its budget)."""


def trust_region_step(
    grad: NDArray[np.float64], curvature: NDArray[np.float64], box: float, floor: float = EIGEN_FLOOR
) -> tuple[NDArray[np.float64], bool]:
    """The minimiser of ``-2 g.s + s.H.s`` damped to ``max|s| <= box`` (range units), and whether it was damped.

    ``H``'s eigenvalues are floored at ``floor``; the damping ``lambda`` is found by bisection (the step's size
    falls monotonically in it).
    """
    values, vectors = np.linalg.eigh((curvature + curvature.T) / 2.0)
    values = np.maximum(values, floor)
    proj = vectors.T @ grad

    def step(lam: float) -> NDArray[np.float64]:
        return np.asarray(vectors @ (proj / (values + lam)), float)

    s = step(0.0)
    if np.max(np.abs(s)) <= box:
        return s, False
    lo, hi = 0.0, 1.0
    while np.max(np.abs(step(hi))) > box:
        lo, hi = hi, hi * 4.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.max(np.abs(step(mid))) > box:
            lo = mid
        else:
            hi = mid
    return step(hi), True


def equivalent_points(
    xs: NDArray[np.float64], center: NDArray[np.float64], widths: NDArray[np.float64], box: float
) -> float:
    """How many points uniform in ``center +- box * range`` the design ``xs`` is worth for the weakest slope.

    A slope's variance in a regression is ``s^2 / sum_i (z_ij - mean_j)^2`` (range units ``z``); a point uniform in
    ``+-box`` adds ``box^2 / 3`` to that sum in expectation. The design's worth is its smallest sum over
    ``box^2 / 3``: points crowded near the centre (a shrunken trust region's) are worth little, however many.
    """
    if len(xs) < 2:
        return 0.0
    z = (np.asarray(xs, float) - center) / widths
    spread = ((z - z.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.min(spread) / (box**2 / 3.0))


def _top_up(
    xs: Sequence[NDArray[np.float64]],
    center: NDArray[np.float64],
    widths: NDArray[np.float64],
    box: float,
    target: int,
    p: int,
) -> tuple[list[int], int]:
    """The design points within ``center +- box * range`` and how many fresh uniform points there bring them to
    ``target`` equivalent points (:func:`equivalent_points`) and at least ``P + 2`` points."""
    reach = box * widths + 1e-12
    inside = [i for i, x in enumerate(xs) if np.all(np.abs(x - center) <= reach)]
    worth = equivalent_points(np.array([xs[i] for i in inside]).reshape(-1, p), center, widths, box)
    need = max(math.ceil(target - worth - 1e-9), p + 2 - len(inside), 0)
    return inside, need


def iterated_gauss_newton(
    objective: Objective,
    lows: NDArray[np.float64],
    highs: NDArray[np.float64],
    center: NDArray[np.float64],
    center_objective: float,
    center_simulated: NDArray[np.float64],
    evaluate_design: DesignEvaluator,
    evaluate_point: PointEvaluator,
    *,
    budget: int,
    per_iteration: int,
    rng: np.random.Generator,
    box: float = 0.3,
    evaluate_pair: PairEvaluator | None = None,
    check_seeds: int = CHECK_SEEDS,
    interval_points: int | None = None,
) -> GaussNewtonResult:
    """Refine ``center`` by iterated Gauss-Newton in a trust region (module docstring).

    Args:
        objective: The fit's objective.
        lows: Lower bounds, shape ``(P,)``.
        highs: Upper bounds, shape ``(P,)``.
        center: The start (e.g. CMA-ES's best), inside the bounds.
        center_objective: Q at ``center`` at the common seed.
        center_simulated: Its moments.
        evaluate_design: Simulates design points, each with its own seed.
        evaluate_point: Simulates a step at the common seed.
        budget: Simulations of the search at most (designs, steps and their checks); the intervals' top-up comes on
            top, at most ``interval_points`` (:attr:`GaussNewtonResult.top_up`).
        per_iteration: New design points per iteration (at least ``P + 2`` for the first).
        rng: The design's random stream.
        box: The first box's half-width (share of each range).
        evaluate_pair: Simulates the centre and the step at one fresh seed (a new one per call); ``None``: steps
            are judged at the common seed alone.
        check_seeds: Fresh seeds per step (calls of ``evaluate_pair``), when it is given.
        interval_points: Equivalent points (:func:`equivalent_points`) of the intervals' model in the first box
            around the final centre (default :data:`INTERVAL_DESIGNS` ``* per_iteration``); 0: the intervals'
            model is the last one.

    Raises:
        ValueError: A budget or design too small for one model and its step, or a bad box.
    """
    p = len(lows)
    widths = highs - lows
    if per_iteration < p + 2 or budget < per_iteration + 1:
        raise ValueError(
            f"iterated Gauss-Newton of {p} parameters needs per_iteration >= {p + 2} and budget >= per_iteration + 1, "
            f"got {per_iteration} and {budget}"
        )
    if not MIN_BOX <= box <= MAX_BOX:
        raise ValueError(f"box: expected a half-width in [{MIN_BOX}, {MAX_BOX}], got {box}")
    first_box = box
    target = INTERVAL_DESIGNS * per_iteration if interval_points is None else interval_points
    checks = check_seeds if evaluate_pair is not None else 0
    step_cost = 1 + 2 * checks
    c, q_c, m_c = np.asarray(center, float), float(center_objective), center_simulated
    xs: list[NDArray[np.float64]] = []
    ys: list[NDArray[np.float64]] = []
    used = 0
    iterations: list[Iteration] = []
    model: LocalModel | None = None
    stop: StopReason = "budget"

    def design(points: list[NDArray[np.float64]]) -> list[int]:
        nonlocal used
        values = evaluate_design(points)
        used += len(points)
        xs.extend(points)
        ys.extend(np.asarray(values, float))
        return list(range(len(xs) - len(points), len(xs)))

    while True:
        reach = REUSE_REACH * box * widths + 1e-12
        inside = [i for i, x in enumerate(xs) if np.all(np.abs(x - c) <= reach)]
        # The first design goes ahead whatever its step would cost: it is the intervals' model if nothing follows.
        fresh = min(per_iteration, budget - used - (step_cost if model is not None else 0))
        if fresh < 1 or len(inside) + fresh < p + 2:
            break  # no budget for another model with a step
        z = rng.uniform(-1.0, 1.0, size=(fresh, p))
        inside += design([np.clip(c + box * widths * row, lows, highs) for row in z])
        model = local_model(np.array([xs[i] for i in inside]), np.array([ys[i] for i in inside]), c, widths)
        curvature = scaled_curvature(objective, model, widths)
        grad = (model.jacobian * widths[None, :]).T @ (objective.weights * (objective.target - model.intercept))
        s, _ = trust_region_step(grad, curvature, box)
        candidate = np.clip(c + widths * s, lows, highs)
        s = (candidate - c) / widths
        gain = float(2.0 * grad @ s - s @ curvature @ s)
        if gain < GAIN_TOL:
            iterations.append(Iteration(box, len(inside), q_c, gain, None, False))
            stop = "converged"
            break
        if budget - used < step_cost:
            iterations.append(Iteration(box, len(inside), q_c, gain, None, False))
            break
        q_s, m_s = evaluate_point(candidate)
        used += 1
        # The common seed's gain is biased against the step: the centre is there because its Q at that seed was
        # the lowest seen (CMA-ES's best of its population, or an accepted step), so part of its lead is that
        # seed's noise, which no step inherits. At a fresh seed, simulated at both points, the paired gain has no
        # such bias (the seed played no part in choosing the centre) and the shared seed keeps its noise small.
        checked: list[float] = []
        for _ in range(checks):
            assert evaluate_pair is not None  # checks > 0
            pair = np.asarray(evaluate_pair([c, candidate]), float)
            used += 2
            checked.append(objective.value(pair[0]) - objective.value(pair[1]))
        judged = float(np.mean([q_c - q_s, *checked]))
        rho = judged / gain
        accepted = rho > ACCEPT_RATIO
        iterations.append(
            Iteration(box, len(inside), q_c, gain, q_c - q_s, accepted, tuple(checked), judged if checks else None)
        )
        on_edge = float(np.max(np.abs(s))) >= 0.99 * box
        if accepted:
            c, q_c, m_c = candidate, q_s, m_s
            if rho > GROW_RATIO and on_edge:
                box = min(2.0 * box, MAX_BOX)
        else:
            box *= 0.5
            if box < MIN_BOX:
                stop = "trust-region"
                break
        if budget - used < 2:
            break
    assert model is not None
    last = model
    top_up = 0
    if target > 0:
        inside, need = _top_up(xs, c, widths, first_box, target, p)
        need = min(need, math.ceil(target))  # outside the search's budget (module docstring)
        top_up = max(need, 0)
        if need > 0:
            z = rng.uniform(-1.0, 1.0, size=(need, p))
            inside += design([np.clip(c + first_box * widths * row, lows, highs) for row in z])
        if len(inside) >= p + 2:
            model = local_model(np.array([xs[i] for i in inside]), np.array([ys[i] for i in inside]), c, widths)
    design_arrays = (np.array(xs), np.array(ys)) if xs else (np.zeros((0, p)), np.zeros((0, len(objective.target))))
    return GaussNewtonResult(c, q_c, m_c, model, stop, used, box, iterations, design_arrays, last, top_up)
