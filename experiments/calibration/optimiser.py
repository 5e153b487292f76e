"""The fit's minimisers of a least-squares objective over the unit cube: CMA-ES (the default) and DFO-LS.

Both see the problem the same way: ``u`` in ``[0, 1]^P`` (the spec's bounds rescaled), a batch evaluator that
maps a list of points to their residual vectors ``r(u)`` (``Q = ||r||^2``), and a budget of evaluations that
scales with ``P``. Each returns a :class:`Search`: the best point, its Q, the evaluations and why it stopped
(``converged`` or ``budget``).

* **DFO-LS** (:func:`dfo_ls_search`; Cartis, Fiala, Marteau and Roberts 2019, ``dfo-ls`` on PyPI): a
  derivative-free trust-region Gauss-Newton method on linear interpolation models of the residuals, which is
  exactly the shape of the method of simulated moments (``r_k = (\\hat m_k - m_k(\\theta)) / \\sqrt{v_k}``). Its
  first model needs ``P + 1`` points (the start and one step of ``rhobeg`` along each coordinate, towards the
  box's interior); they are known in advance, so they are evaluated in one parallel batch and handed to DFO-LS as
  an evaluation database; every later evaluation is sequential (a batch of one). At a fixed seed a simulation is
  piecewise constant in each parameter (fit.py's docstring): below a few per cent of a range a step measures
  roughness, not slope, so the trust region stops at ``rhoend`` (:data:`DFO_RHOEND`, 3% of each range) and
  reaching it is the convergence stop: no model step larger than the simulation's roughness lowers Q any more.
  DFO-LS's slow-progress stop (Q falling by less than :data:`DFO_SLOW_THRESHOLD` of itself, in log terms, over
  5 iterations, :data:`DFO_SLOW_ITERS` times) also counts as converged. The budget is
  :func:`dfo_ls_budget` evaluations, the initial batch included.
* **CMA-ES** (:func:`cma_es_search`, optuna's sampler): generations of ``popsize`` points in parallel; budget
  :func:`cma_es_budget`.

Optional convergence stop (both): Q at or below ``target`` (e.g. ``d + 2 sqrt(2 d)`` for ``d`` degrees of
freedom, :func:`fit_target`: the objective a correct model reaches with probability about 0.98), for CMA-ES only
once ``min_evaluations`` have run (a population search's first generations can land below a target by luck, far
from the optimum). :func:`experiments.calibration.fit.fit` passes no target: a Q that close to a correct model's
can still be far from the optimum in the parameters (measured: it stopped the 8,000-arrangement recovery at
Q 300 where 120 trials reached 265, with one identified interval missing the truth). CMA-ES,
optionally (``patience``), also when the best Q has fallen by less than
:data:`CMA_TOLERANCE` over ``patience`` generations (off by default: on the 8,000-arrangement recovery a patience
of 3 stopped at Q = 363 on 262 degrees of freedom, where 120 trials reached 265).

Reproducibility: DFO-LS draws from numpy's legacy global generator only for random initial directions and
restarts, both off here; the search still runs under a global state seeded from ``seed`` and restored after,
so that no other code's use of that generator can change a fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CMA_TOLERANCE",
    "DFO_RHOBEG",
    "DFO_RHOEND",
    "OPTIMISERS",
    "BatchEvaluator",
    "OptimiserName",
    "Search",
    "cma_es_budget",
    "cma_es_search",
    "default_budget",
    "dfo_ls_budget",
    "dfo_ls_search",
    "fit_target",
    "initial_points",
]

OptimiserName = Literal["dfo-ls", "cma-es"]
#: The optimisers, the default first.
OPTIMISERS: tuple[OptimiserName, ...] = ("cma-es", "dfo-ls")

#: Maps points of the unit cube (each shape ``(P,)``) to their residual vectors (each shape ``(K,)``), in order.
BatchEvaluator = Callable[[Sequence[NDArray[np.float64]]], list[NDArray[np.float64]]]

#: DFO-LS's initial trust-region radius, in range units.
DFO_RHOBEG = 0.2
#: DFO-LS's final trust-region radius, in range units: the simulation's roughness scale (module docstring).
DFO_RHOEND = 0.03
#: DFO-LS's slow-progress threshold (decrease of log Q per iteration, averaged over 5).
DFO_SLOW_THRESHOLD = 1e-3
#: Slow iterations in a row after which DFO-LS stops.
DFO_SLOW_ITERS = 5
#: Restarts of DFO-LS from its best point (trust region back to ``rhobeg``) that do not lower Q before it stops.
DFO_RESTARTS = 2
#: With a ``patience``, CMA-ES stops when its best Q has fallen by less than this share over that many generations.
CMA_TOLERANCE = 0.01


def fit_target(dof: int) -> float | None:
    """The convergence target of Q with ``dof`` degrees of freedom: ``dof + 2 sqrt(2 dof)`` (two standard deviations
    above a chi-square's mean); ``None`` without degrees of freedom."""
    return dof + 2.0 * math.sqrt(2.0 * dof) if dof > 0 else None


@dataclass(frozen=True)
class Search:
    """A minimiser's result.

    Attributes:
        optimiser: Which one.
        best: The best point found, unit cube, shape ``(P,)``.
        objective: Q at ``best``.
        evaluations: Points evaluated.
        budget: The evaluations it was allowed.
        stop: ``converged`` (its convergence stop) or ``budget`` (it ran out of evaluations).
        message: The optimiser's own words on why it stopped.
        settings: Its settings, name to value.
    """

    optimiser: OptimiserName
    best: NDArray[np.float64]
    objective: float
    evaluations: int
    budget: int
    stop: Literal["converged", "budget"]
    message: str
    settings: tuple[tuple[str, float], ...]


def dfo_ls_budget(p: int) -> int:
    """DFO-LS's evaluations for ``p`` parameters: the initial ``p + 1`` and ``4p`` iterations (``5p + 1``)."""
    return 5 * p + 1


def cma_es_budget(p: int) -> int:
    """CMA-ES's evaluations for ``p`` parameters: ``10p`` (the 10-parameter recovery needed about 120)."""
    return 10 * p


def default_budget(optimiser: OptimiserName, p: int) -> int:
    """The budget of ``optimiser`` for ``p`` parameters.

    Raises:
        ValueError: An unknown optimiser.
    """
    if optimiser == "dfo-ls":
        return dfo_ls_budget(p)
    if optimiser == "cma-es":
        return cma_es_budget(p)
    raise ValueError(f"--optimiser: expected one of {', '.join(OPTIMISERS)}, got {optimiser!r}")


def initial_points(x0: NDArray[np.float64], rhobeg: float) -> list[NDArray[np.float64]]:
    """The start and one step of ``rhobeg`` along each coordinate, towards the interior of the unit cube
    (the ``P + 1`` points of DFO-LS's first model)."""
    points = [x0.copy()]
    for j in range(len(x0)):
        step = np.zeros(len(x0))
        step[j] = rhobeg if x0[j] + rhobeg <= 1.0 else -rhobeg
        points.append(x0 + step)
    return points


def _squares(r: NDArray[np.float64]) -> float:
    return float(np.dot(r, r))


def dfo_ls_search(
    evaluate: BatchEvaluator,
    x0: NDArray[np.float64],
    *,
    budget: int,
    seed: int,
    rhobeg: float = DFO_RHOBEG,
    rhoend: float = DFO_RHOEND,
    restarts: int = DFO_RESTARTS,
    target: float | None = None,
) -> Search:
    """Minimise ``||r(u)||^2`` over the unit cube by DFO-LS from ``x0`` (module docstring).

    Raises:
        ValueError: ``budget`` below ``P + 2``, or not ``0 < rhoend < rhobeg <= 0.5``.
    """
    import dfols
    from dfols.evaluations_database import EvaluationDatabase

    p = len(x0)
    if budget < p + 2:
        raise ValueError(f"budget: DFO-LS needs at least {p + 2} evaluations for {p} parameters, got {budget}")
    if not 0.0 < rhoend < rhobeg <= 0.5:
        raise ValueError(f"rhobeg, rhoend: expected 0 < rhoend < rhobeg <= 0.5, got {rhobeg}, {rhoend}")
    # x0 at least rhobeg inside each bound, so the initial steps stay in the cube either way.
    start = np.clip(np.asarray(x0, float), 0.0, 1.0)
    points = initial_points(start, rhobeg)
    residuals = evaluate(points)
    database = EvaluationDatabase()
    for k, (u, r) in enumerate(zip(points, residuals, strict=True)):
        database.append(u.copy(), np.asarray(r, float).copy(), make_starting_eval=k == 0)
    best_u, best_q = min(((u, _squares(r)) for u, r in zip(points, residuals, strict=True)), key=lambda t: t[1])
    counted = len(points)

    def objfun(u: NDArray[np.float64]) -> NDArray[np.float64]:
        nonlocal best_u, best_q, counted
        (r,) = evaluate([np.clip(u, 0.0, 1.0)])
        counted += 1
        q = _squares(r)
        if q < best_q:
            best_u, best_q = np.clip(u, 0.0, 1.0), q
        return np.asarray(r, float)

    params = {
        "init.random_initial_directions": False,
        "restarts.use_restarts": restarts > 0,
        "restarts.max_unsuccessful_restarts": max(restarts, 1),
        "restarts.use_soft_restarts": True,
        "restarts.auto_detect": False,
        "slow.thresh_for_slow": DFO_SLOW_THRESHOLD,
        "slow.max_slow_iters": DFO_SLOW_ITERS,
        "logging.save_diagnostic_info": False,
        "model.abs_tol": 1e-12 if target is None else target,
    }
    # DFO-LS itself draws from numpy's legacy generator (random directions, restarts: both off here).
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        soln = dfols.solve(
            objfun,
            database,
            bounds=(np.zeros(p), np.ones(p)),
            rhobeg=rhobeg,
            rhoend=rhoend,
            maxfun=budget - len(points),
            user_params=params,
            objfun_has_noise=False,
            do_logging=False,
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002
    budget_hit = soln.flag == soln.EXIT_MAXFUN_WARNING
    stop: Literal["converged", "budget"] = "budget" if budget_hit else "converged"
    if soln.flag not in (soln.EXIT_SUCCESS, soln.EXIT_SLOW_WARNING, soln.EXIT_MAXFUN_WARNING):
        stop = "converged" if counted < budget else "budget"  # e.g. a singular model: it can go no further
    return Search(
        optimiser="dfo-ls",
        best=np.asarray(best_u, float),
        objective=best_q,
        evaluations=counted,
        budget=budget,
        stop=stop,
        message=str(soln.msg),
        settings=(
            ("rhobeg", rhobeg),
            ("rhoend", rhoend),
            ("slow_threshold", DFO_SLOW_THRESHOLD),
            ("slow_iterations", float(DFO_SLOW_ITERS)),
            ("unsuccessful_restarts", float(restarts)),
            ("target", math.nan if target is None else target),
        ),
    )


def cma_es_search(
    evaluate: BatchEvaluator,
    x0: NDArray[np.float64],
    *,
    budget: int,
    seed: int,
    popsize: int,
    target: float | None = None,
    min_evaluations: int = 0,
    tolerance: float = CMA_TOLERANCE,
    patience: int | None = None,
) -> Search:
    """Minimise ``||r(u)||^2`` over the unit cube by optuna's CMA-ES, ``x0`` its first trial (module docstring).

    Raises:
        ValueError: ``budget`` or ``popsize`` below 2.
    """
    import optuna

    if budget < 2 or popsize < 2:
        raise ValueError(f"budget, popsize: expected integers >= 2, got {budget}, {popsize}")
    p = len(x0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.CmaEsSampler(seed=seed, popsize=popsize, warn_independent_sampling=False)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({f"u{j}": float(v) for j, v in enumerate(np.clip(x0, 0.0, 1.0))})
    best_u, best_q = np.asarray(x0, float), math.inf
    history: list[float] = []
    generations = math.ceil(budget / popsize)
    stop: Literal["converged", "budget"] = "budget"
    message = f"{generations} generations of {popsize} (the budget)"
    counted = 0
    for g in range(generations):
        asked = [study.ask() for _ in range(popsize)]
        us = [np.array([t.suggest_float(f"u{j}", 0.0, 1.0) for j in range(p)]) for t in asked]
        for t, u, r in zip(asked, us, evaluate(us), strict=True):
            q = _squares(r)
            study.tell(t, q)
            if q < best_q:
                best_u, best_q = u, q
        counted += len(us)
        history.append(best_q)
        if target is not None and best_q <= target and counted >= min_evaluations:
            stop, message = "converged", f"best Q {best_q:.1f} at or below the target {target:.1f}"
            break
        if (
            patience
            and len(history) > patience
            and history[-1 - patience] - best_q < tolerance * history[-1 - patience]
        ):
            stop, message = "converged", f"best Q fell by less than {tolerance:.0%} over {patience} generations"
            break
        if g == generations - 1:
            break
    return Search(
        optimiser="cma-es",
        best=np.asarray(best_u, float),
        objective=best_q,
        evaluations=counted,
        budget=budget,
        stop=stop,
        message=message,
        settings=(
            ("popsize", float(popsize)),
            ("target", math.nan if target is None else target),
            ("min_evaluations", float(min_evaluations)),
            ("tolerance", tolerance),
            ("patience", float(patience or 0)),
        ),
    )
