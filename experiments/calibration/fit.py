"""The method of simulated moments: the objective, its minimisation by CMA-ES, and a Gauss-Newton polish.

Objective. With the log's moments :math:`\\hat m` (``K`` of them), their bootstrap standard errors
:math:`s_k`, and the moments :math:`m(\\theta)` of a simulation of ``A_sim`` arrangements under the log's own
decisions (:mod:`experiments.calibration.replaying`) with one fixed seed (common random numbers),

.. math:: Q(\\theta) = \\sum_k w_k\\,(\\hat m_k - m_k(\\theta))^2, \\qquad
    w_k = 1 / \\big(s_k^2\\,(1 + A_{log}/A_{sim})\\big),

inverse-variance weights of the difference of a log moment and a simulated one (the simulation's own sampling
variance is the log's scaled by ``A_log / A_sim``). A moment the simulation does not produce (no denominator)
adds 1 (one standard error off); a parameter vector that gives no valid world scores :data:`INVALID`.

Minimisation over the unit cube of the spec's bounds (``theta = low + u (high - low)``) from the base world's
values (clipped into the bounds), by :mod:`experiments.calibration.optimiser`: optuna's CMA-ES by default
(generations of ``popsize`` in parallel, a budget of ``4P`` to find the basin; no stop on the objective's level,
see :func:`fit`'s comment) or DFO-LS (a trust-region Gauss-Newton method on interpolation models of the residuals
``r_k = (\\hat m_k - m_k) / \\sqrt{v_k}``, its first ``P + 1`` points in parallel, then one simulation at a time;
its trust region stops at the simulation's roughness scale, 3% of each range). Neither needs a gradient, which the
objective does not have in any useful sense (a simulation is piecewise constant in a parameter at a fixed seed).
Then, by default (``refine`` of ``12P`` simulations), the iterated Gauss-Newton refinement of
:mod:`experiments.calibration.gauss_newton`: local models over designs of ``2P`` points in a trust region, each
step judged at the common seed and a fresh one, until the predicted gain is below one unit of Q, the box below the
roughness scale, or ``refine`` simulations are spent; the intervals use its model over the first box (+-30%)
around its final centre. With ``refine=0`` (CMA-ES's budget then ``10P``) there is instead one local linear model
of the moments around the best point (:class:`LocalModel`: least squares over ``6P`` simulations uniform in a box
of +-30% of each range, each with its own seed) and one Gauss-Newton step on it, evaluated at the common seed and
kept only if it lowers Q: measured, it leaves a 20-parameter fit far from converged (docs/calibration_fit.md).
The local model's Jacobian and noise are reused for
the intervals (:mod:`experiments.calibration.inference`). Finite differences were tried first: at a fixed seed
their Jacobian over a step of 5% of the range was dominated by the simulation's roughness (the curvature it gave
fell 50-fold when the step was made 8 times larger), so intervals from it were far too narrow.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.moments import LogMoments
from experiments.calibration.optimiser import (
    OPTIMISERS,
    OptimiserName,
    Search,
    cma_es_search,
    default_budget,
    dfo_ls_search,
)
from experiments.calibration.replaying import Pairing, ReplayStats
from experiments.calibration.simulation import Executor, SimulationJob, run_points, simulate_point

if TYPE_CHECKING:
    from experiments.calibration.gauss_newton import GaussNewtonResult

__all__ = [
    "INVALID",
    "REFINED_CMA_BUDGET",
    "REFINE_BUDGET",
    "FitResult",
    "LocalModel",
    "Objective",
    "Trial",
    "fit",
    "local_model",
    "scaled_curvature",
]

log = logging.getLogger("regsim.calibrate")

#: Objective of a parameter vector that gives no valid world.
INVALID = 1e12


@dataclass(frozen=True)
class Objective:
    """``Q`` of the module docstring.

    Attributes:
        target: Log moments, shape ``(K,)``.
        variance: ``s_k^2 (1 + A_log / A_sim)``, shape ``(K,)``.
    """

    target: NDArray[np.float64]
    variance: NDArray[np.float64]

    @classmethod
    def from_log(cls, moments: LogMoments, sim_arrangements: int) -> Objective:
        """Weights from a log's moments for simulations of ``sim_arrangements``."""
        factor = 1.0 + moments.arrangements / sim_arrangements
        return cls(moments.values.copy(), moments.se**2 * factor)

    @property
    def weights(self) -> NDArray[np.float64]:
        """``w_k``, shape ``(K,)``."""
        return 1.0 / self.variance

    def contributions(self, simulated: NDArray[np.float64]) -> NDArray[np.float64]:
        """Each moment's term of Q (1 where the simulation lacks the moment), shape ``(K,)``."""
        terms = (self.target - simulated) ** 2 * self.weights
        return np.where(np.isnan(simulated), 1.0, terms)

    def value(self, simulated: NDArray[np.float64]) -> float:
        """``Q``; :data:`INVALID` when every moment is missing (no world)."""
        if np.isnan(simulated).all():
            return INVALID
        return float(self.contributions(simulated).sum())


@dataclass(frozen=True)
class Trial:
    """One evaluated parameter vector: its values (spec order), Q and how it was proposed."""

    values: tuple[float, ...]
    objective: float
    source: str


@dataclass
class FitResult:
    """The fit.

    Attributes:
        estimate: The fitted parameters, shape ``(P,)``.
        objective: Q at the estimate.
        simulated: Simulated moments at the estimate, shape ``(K,)``.
        model: The local linear model of the moments around the estimate (its Jacobian, noise) that the intervals
            use: the local design's around CMA-ES's best, or with the refinement its model over the first box
            around its final centre.
        trials: Every evaluation, in order.
        seed: The common-random-numbers seed of every evaluation.
        seconds: Wall time of the fit.
        gauss_newton_accepted: Whether the Gauss-Newton step lowered Q.
        replay: The replaying policy's counts at the estimate.
        objective_dof: Moments minus parameters (the degrees of freedom of Q at a correct model).
        search: The optimiser's result: which, its settings, evaluations, and why it stopped.
        pairing: How simulated arrangements took the log's decisions.
        refinement: The iterated Gauss-Newton stage (its iterations, why it stopped), ``None`` when it did not run.
    """

    estimate: NDArray[np.float64]
    objective: float
    simulated: NDArray[np.float64]
    model: LocalModel
    trials: list[Trial]
    seed: int
    seconds: float
    gauss_newton_accepted: bool
    replay: ReplayStats = field(default_factory=ReplayStats)
    objective_dof: int = 0
    search: Search | None = None
    pairing: Pairing = "arrangement"
    refinement: GaussNewtonResult | None = None


def _start(job: SimulationJob) -> NDArray[np.float64]:
    spec = job.spec
    return spec.clip(spec.values_of(job.base))


@dataclass(frozen=True)
class LocalModel:
    """The simulated moments, linear in the parameters near the optimum, fitted by least squares.

    :math:`m_k(\\theta) \\approx a_k + J_k (\\theta - c)`, fitted per moment over simulations at points around
    ``c``. At a fixed seed a simulation is a step function of a parameter (each debtor's discrete outcomes flip
    at thresholds), so a finite difference over a small step measures that roughness, not the slope. The
    regression runs over points spread over :data:`LOCAL_SPREAD` of each range, each with its own seed, so the
    roughness is independent noise that its residual variance measures (:attr:`residual_var`).

    Attributes:
        center: ``c``, shape ``(P,)``.
        intercept: ``a``, the smoothed moments at ``c``, shape ``(K,)``.
        jacobian: ``J``, shape ``(K, P)``.
        residual_var: Per moment, the residual variance of the regression, shape ``(K,)``.
        slope_cov: ``(X'X)^{-1}`` of the slopes in range units, shape ``(P, P)``: ``Cov(J_k D) = s_k^2 slope_cov``.
        points: Simulations in the regression.
    """

    center: NDArray[np.float64]
    intercept: NDArray[np.float64]
    jacobian: NDArray[np.float64]
    residual_var: NDArray[np.float64]
    slope_cov: NDArray[np.float64]
    points: int


#: Half-width of the local design around the optimum, as a share of each parameter's range.
LOCAL_SPREAD = 0.3
#: The local design's point ``i`` runs with seed ``LOCAL_SEED_OFFSET + seed + i``.
#: CMA-ES's default budget before the refinement, per parameter (it finds the basin; the refinement the optimum).
REFINED_CMA_BUDGET = 4
#: The iterated Gauss-Newton refinement's default budget, per parameter (about five iterations of ``2P + 1``, with
#: the fresh-seed checks and the intervals' top-up); measured on the 20-parameter benchmark and the
#: 8,000-arrangement recovery (docs/calibration_fit.md, "The refinement").
REFINE_BUDGET = 12
LOCAL_SEED_OFFSET = 1_000_003


def local_points(
    job: SimulationJob, center: NDArray[np.float64], n: int, rng: np.random.Generator
) -> list[NDArray[np.float64]]:
    """``n`` points uniform in the box ``center +- LOCAL_SPREAD * range``, clipped into the bounds."""
    widths = job.spec.highs - job.spec.lows
    z = rng.uniform(-1.0, 1.0, size=(n, len(widths)))
    return [job.spec.clip(center + LOCAL_SPREAD * widths * row) for row in z]


def local_model(
    thetas: NDArray[np.float64], values: NDArray[np.float64], center: NDArray[np.float64], widths: NDArray[np.float64]
) -> LocalModel:
    """Least squares of each moment on ``[1, (theta - center) / widths]`` (a missing value is replaced by that
    moment's mean over the points).

    Raises:
        ValueError: Fewer points than parameters plus two.
    """
    n, p = thetas.shape
    if n < p + 2:
        raise ValueError(f"a local linear model of {p} parameters needs at least {p + 2} simulations, got {n}")
    y = np.where(np.isnan(values), np.nanmean(values, axis=0, keepdims=True), values)
    y = np.nan_to_num(y, nan=0.0)
    x = np.column_stack([np.ones(n), (thetas - center) / widths])
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ y  # (1 + P, K)
    resid = y - x @ beta
    residual_var = (resid**2).sum(axis=0) / max(n - p - 1, 1)
    return LocalModel(center, beta[0], (beta[1:] / widths[:, None]).T, residual_var, xtx_inv[1:, 1:], n)


def scaled_curvature(objective: Objective, model: LocalModel, widths: NDArray[np.float64]) -> NDArray[np.float64]:
    """:math:`H_s = D J^\\top W J D - (\\sum_k w_k s_k^2)\\,(X^\\top X)^{-1}`: the curvature of Q in range units,
    with the part the regression's noise adds to :math:`J^\\top W J` in expectation taken off (an unbiased
    estimate of the noise-free curvature), shape ``(P, P)``."""
    js = model.jacobian * widths[None, :]
    w = objective.weights
    raw = js.T @ (w[:, None] * js)
    noise = float((w * model.residual_var).sum()) * model.slope_cov
    return raw - noise


def _floored_inverse(h: NDArray[np.float64], floor: float) -> NDArray[np.float64]:
    values, vectors = np.linalg.eigh((h + h.T) / 2.0)
    return (vectors / np.maximum(values, floor)) @ vectors.T


def gauss_newton_step(objective: Objective, model: LocalModel, widths: NDArray[np.float64]) -> NDArray[np.float64]:
    """The step :math:`D H_s^{-1} D J^\\top W (\\hat m - a)` from the local model's centre, with the eigenvalues of
    :math:`H_s` floored at 1 (a move across the whole range worth at least one unit of Q), shape ``(P,)``."""
    h = scaled_curvature(objective, model, widths)
    grad = (model.jacobian * widths[None, :]).T @ (objective.weights * (objective.target - model.intercept))
    return widths * (_floored_inverse(h, 1.0) @ grad)


def fit(
    job: SimulationJob,
    moments: LogMoments,
    *,
    trials: int | None = None,
    seed: int,
    optimiser: OptimiserName = "cma-es",
    executor: Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
    quiet: bool = False,
    local: int | None = None,
    refine: int | None = None,
) -> FitResult:
    """Fit the spec's parameters to the log's moments (module docstring).

    Args:
        job: The simulations' shared job (its design must be ``moments.design``).
        moments: The log's moments.
        trials: The optimiser's evaluations at most (default: :data:`REFINED_CMA_BUDGET` ``P`` for CMA-ES
            followed by the refinement (``refine > 0``), else the optimiser's own budget for the spec's ``P``,
            :func:`~experiments.calibration.optimiser.default_budget`; CMA-ES rounds up to whole generations).
        seed: The common-random-numbers seed of every simulation, and the optimiser's seed.
        optimiser: ``cma-es`` or ``dfo-ls`` (:mod:`experiments.calibration.optimiser`).
        executor: ``local`` or ``ray``.
        workers: Parallel simulations.
        ray_address: A Ray cluster.
        quiet: No progress output.
        local: New design points per refinement iteration (default ``2P``), or, with ``refine=0``, the one local
            design's (default ``6P``); at least ``P + 2``.
        refine: Simulations of the iterated Gauss-Newton refinement (:mod:`experiments.calibration.gauss_newton`;
            default :data:`REFINE_BUDGET` ``P``); 0: none, one local design of ``local`` points and one
            Gauss-Newton step instead.

    Raises:
        ValueError: ``trials`` < 1, ``refine`` < 0 or an unknown optimiser.
    """
    from experiments.calibration.gauss_newton import iterated_gauss_newton  # it imports this module's model

    started = time.perf_counter()
    spec = job.spec
    p = len(spec)
    refine = REFINE_BUDGET * p if refine is None else refine
    if refine < 0:
        raise ValueError(f"refine: expected an integer >= 0, got {refine}")
    if trials is not None:
        budget = trials
    elif refine > 0 and optimiser == "cma-es":
        budget = REFINED_CMA_BUDGET * p
    else:
        budget = default_budget(optimiser, p)
    if budget < 1:
        raise ValueError(f"trials: expected an integer >= 1, got {budget}")
    local = max(local if local is not None else (2 if refine > 0 else 6) * p, p + 2)
    refine = max(refine, local + 1) if refine > 0 else 0
    objective = Objective.from_log(moments, job.arrangements)
    lows, widths = spec.lows, spec.highs - spec.lows
    scale = np.sqrt(objective.variance)
    history: list[Trial] = []
    best: list[tuple[float, NDArray[np.float64], NDArray[np.float64], ReplayStats]] = []
    with tempfile.TemporaryDirectory(prefix="regsim-calibrate-") as tmp:
        job_path = str(job.write(Path(tmp)))
        batches = 0

        def evaluate(us: Sequence[NDArray[np.float64]]) -> list[NDArray[np.float64]]:
            nonlocal batches
            thetas = [spec.clip(lows + widths * np.asarray(u, float)) for u in us]
            batches += 1
            if len(thetas) == 1:  # a sequential step: in this process, no pool to start
                results = [simulate_point(job_path, 0, [float(v) for v in thetas[0]], seed)]
            else:
                results = run_points(
                    job,
                    [(th, seed) for th in thetas],
                    executor=executor,
                    workers=workers,
                    ray_address=ray_address,
                    desc=f"{optimiser} batch {batches}",
                    quiet=quiet,
                )
            out = []
            for th, res in zip(thetas, results, strict=True):
                q = objective.value(res.values)
                history.append(Trial(tuple(float(x) for x in th), q, optimiser))
                if not best or q < best[0][0]:
                    best[:] = [(q, th, res.values, res.replay)]
                out.append(_residuals(objective, res.values, scale))
            if not quiet:
                log.info("%s: %d sims, best Q %.1f on %d moments", optimiser, len(history), best[0][0], len(scale))
            return out

        x0 = (_start(job) - lows) / widths
        # No objective-level stop: a Q two standard deviations above a correct model's (fit_target) can still be
        # far from the optimum in the parameters (a move worth 40 units of Q is many intervals wide). On the
        # 8,000-arrangement recovery that stop ended CMA-ES at Q 300 where 120 trials reached 265, and one of
        # five identified intervals missed the truth; the whole budget is run instead.
        target = None
        if optimiser == "dfo-ls":
            search = dfo_ls_search(evaluate, x0, budget=budget, seed=seed, target=target)
        elif optimiser == "cma-es":
            popsize = max(4 + math.floor(3 * math.log(p)), 2 * workers if workers > 1 else 0)
            search = cma_es_search(
                evaluate, x0, budget=budget, seed=seed, popsize=popsize, target=target, min_evaluations=budget // 2
            )
        else:
            raise ValueError(f"--optimiser: expected one of {', '.join(OPTIMISERS)}, got {optimiser!r}")
        if not quiet:
            log.info("%s stopped (%s) at %d sims: %s", optimiser, search.stop, search.evaluations, search.message)
        best_value, best_theta, best_sim, replay = best[0]
        rng = np.random.default_rng([seed, 0x4C4F43])  # the local design's own stream
        design_seeds = iter(range(LOCAL_SEED_OFFSET + seed, LOCAL_SEED_OFFSET + seed + 10**9))

        def evaluate_design(points: Sequence[NDArray[np.float64]], desc: str = "local design") -> NDArray[np.float64]:
            # Each design point has its own seed: at one seed the moments are a rough function of the parameters
            # at every scale, so a regression over one seed's points inherits a slope that is roughness, which no
            # residual shows; over independent seeds the roughness is independent noise, which the residual
            # variance measures and scaled_curvature takes off.
            seeds = [next(design_seeds) for _ in points]
            results = run_points(
                job,
                list(zip(points, seeds, strict=True)),
                executor=executor,
                workers=workers,
                ray_address=ray_address,
                desc=desc,
                quiet=quiet,
            )
            for pt, r in zip(points, results, strict=True):
                history.append(Trial(tuple(float(x) for x in pt), objective.value(r.values), "local"))
            return np.array([r.values for r in results])

        def evaluate_step(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            res = simulate_point(job_path, 0, [float(v) for v in theta], seed)
            q = objective.value(res.values)
            history.append(Trial(tuple(float(x) for x in theta), q, "gauss-newton"))
            steps.append((q, theta, res.values, res.replay))
            return q, res.values

        def evaluate_pair(points: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
            # A step and its centre at one fresh seed (from the design's sequence, so never the common seed nor a
            # design point's): their paired difference judges the step without the common seed's selection bias.
            pair_seed = next(design_seeds)
            results = run_points(
                job,
                [(pt, pair_seed) for pt in points],
                executor=executor,
                workers=workers,
                ray_address=ray_address,
                desc="step check",
                quiet=True,
            )
            for pt, r in zip(points, results, strict=True):
                history.append(Trial(tuple(float(x) for x in pt), objective.value(r.values), "check"))
            return np.array([r.values for r in results])

        steps: list[tuple[float, NDArray[np.float64], NDArray[np.float64], ReplayStats]] = []
        refinement: GaussNewtonResult | None = None
        if refine > 0:
            refinement = iterated_gauss_newton(
                objective,
                lows,
                spec.highs,
                best_theta,
                best_value,
                best_sim,
                evaluate_design,
                evaluate_step,
                budget=refine,
                per_iteration=local,
                rng=rng,
                box=LOCAL_SPREAD,
                evaluate_pair=evaluate_pair,
            )
            model = refinement.model
            if not quiet:
                log.info(
                    "gauss-newton stopped (%s) after %d iterations, %d sims: Q %.1f, box %.3g",
                    refinement.stop,
                    len(refinement.iterations),
                    refinement.simulations,
                    refinement.objective,
                    refinement.box,
                )
        else:
            points = local_points(job, best_theta, local, rng)
            model = local_model(np.array(points), evaluate_design(points), best_theta, widths)
            evaluate_step(spec.clip(best_theta + gauss_newton_step(objective, model, widths)))
    accepted = False
    if refinement is not None:
        accepted = any(it.accepted for it in refinement.iterations)
        for q, theta, sim, rep in steps:
            if theta is refinement.center:
                best_value, best_theta, best_sim, replay = q, theta, sim, rep
    else:
        for q, theta, sim, rep in steps:
            if q < best_value:
                best_value, best_theta, best_sim, replay, accepted = q, theta, sim, rep, True
    return FitResult(
        estimate=np.asarray(best_theta, float),
        objective=best_value,
        simulated=best_sim,
        model=model,
        trials=history,
        seed=seed,
        seconds=time.perf_counter() - started,
        gauss_newton_accepted=accepted,
        replay=replay,
        objective_dof=len(objective.target) - p,
        search=search,
        pairing=job.pairing,
        refinement=refinement,
    )


def _residuals(objective: Objective, simulated: NDArray[np.float64], scale: NDArray[np.float64]) -> NDArray[np.float64]:
    """``r`` with ``||r||^2 = Q``: ``(\\hat m - m) / sqrt(v)``, 1 for a missing moment, all ``sqrt(INVALID / K)``
    without a world."""
    if np.isnan(simulated).all():
        return np.full(len(scale), math.sqrt(INVALID / len(scale)))
    return np.where(np.isnan(simulated), 1.0, (objective.target - simulated) / scale)
