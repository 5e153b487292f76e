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
5. **Evaluate** the step at the common seed; ratio ``rho = (q_c - q_s) / gain``. Accepted when ``rho >``
   :data:`ACCEPT_RATIO` (the centre moves); the box doubles (up to :data:`MAX_BOX`) when ``rho >``
   :data:`GROW_RATIO` and the step reached the box's edge, and halves when rejected. Stop ``trust-region`` when the
   box falls below :data:`MIN_BOX` (the simulation's roughness scale, 3% of a range, as DFO-LS's ``rhoend``).
6. Stop ``budget`` when fewer than ``P + 3`` simulations are left for another design and its step.

The last model (centred at the last centre the design surrounded) is returned for the intervals
(:mod:`experiments.calibration.inference`). Deterministic given ``rng`` and the evaluators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.fit import LocalModel, Objective, local_model, scaled_curvature

__all__ = [
    "ACCEPT_RATIO",
    "GAIN_TOL",
    "GROW_RATIO",
    "MAX_BOX",
    "MIN_BOX",
    "REUSE_REACH",
    "GaussNewtonResult",
    "Iteration",
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

StopReason = Literal["converged", "trust-region", "budget"]
#: Simulates a list of parameter vectors, each with its own seed; their moments, shape ``(n, K)``.
DesignEvaluator = Callable[[Sequence[NDArray[np.float64]]], NDArray[np.float64]]
#: Simulates one parameter vector at the common seed; its Q and moments.
PointEvaluator = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64]]]


@dataclass(frozen=True)
class Iteration:
    """One iteration: the box, the model's points, the step's predicted and actual gains, and the outcome."""

    box: float
    points: int
    center_objective: float
    predicted_gain: float
    actual_gain: float | None
    accepted: bool


@dataclass
class GaussNewtonResult:
    """The refinement.

    Attributes:
        center: The best parameters found, shape ``(P,)``.
        objective: Q there (common seed).
        simulated: The moments there (common seed), shape ``(K,)``.
        model: The last local model.
        stop: Why it stopped: ``converged``, ``trust-region`` or ``budget``.
        simulations: Simulations it ran (designs and steps).
        box: The final half-width of the box.
        iterations: Per iteration.
        design: Every design point and its moments, in order (``(n, P)``, ``(n, K)``).
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
        budget: Simulations at most (designs and steps).
        per_iteration: New design points per iteration (at least ``P + 2`` for the first).
        rng: The design's random stream.
        box: The first box's half-width (share of each range).

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
    c, q_c, m_c = np.asarray(center, float), float(center_objective), center_simulated
    xs: list[NDArray[np.float64]] = []
    ys: list[NDArray[np.float64]] = []
    used = 0
    iterations: list[Iteration] = []
    model: LocalModel | None = None
    stop: StopReason = "budget"
    while True:
        reach = REUSE_REACH * box * widths + 1e-12
        inside = [i for i, x in enumerate(xs) if np.all(np.abs(x - c) <= reach)]
        fresh = min(per_iteration, budget - used - 1)
        if fresh < 1 or len(inside) + fresh < p + 2:
            break  # no budget for another model with a step
        if fresh > 0:
            z = rng.uniform(-1.0, 1.0, size=(fresh, p))
            new = [np.clip(c + box * widths * row, lows, highs) for row in z]
            values = evaluate_design(new)
            used += fresh
            inside += list(range(len(xs), len(xs) + fresh))
            xs += new
            ys += list(np.asarray(values, float))
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
        if used >= budget:
            iterations.append(Iteration(box, len(inside), q_c, gain, None, False))
            break
        q_s, m_s = evaluate_point(candidate)
        used += 1
        rho = (q_c - q_s) / gain
        accepted = rho > ACCEPT_RATIO
        iterations.append(Iteration(box, len(inside), q_c, gain, q_c - q_s, accepted))
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
    design = (np.array(xs), np.array(ys)) if xs else (np.zeros((0, p)), np.zeros((0, len(objective.target))))
    return GaussNewtonResult(c, q_c, m_c, model, stop, used, box, iterations, design)
