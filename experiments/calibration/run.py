"""A whole calibration: read the log, measure its moments, fit, infer, back-test, and write the outputs.

Order (each step one module): the log's moments (:mod:`~experiments.calibration.moments`; before the cut when
months are held out), the logged decisions (:mod:`~experiments.calibration.replaying`), the fit
(:mod:`~experiments.calibration.fit`) and its intervals (:mod:`~experiments.calibration.inference`), the
back-test (:mod:`~experiments.calibration.backtest`) when ``holdout_months > 0``, and the outputs
(:mod:`~experiments.calibration.report`). One seed at the top: the common-random-numbers seed of the fit's
simulations is ``seed``; the bootstrap, the sampler, the local design and the back-test draw from streams
derived from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from experiments.calibration.backtest import Backtest, backtest
from experiments.calibration.fit import FitResult, fit
from experiments.calibration.inference import Inference, infer
from experiments.calibration.moments import LogMoments, log_moments, months_in
from experiments.calibration.optimiser import OptimiserName
from experiments.calibration.ranking import DEFAULT_CANDIDATES, Ranking, is_stochastic, rank_candidates
from experiments.calibration.replaying import LoggedDecisions, PairingChoice, resolve_pairing
from experiments.calibration.simulation import Executor, SimulationJob, sized_world
from experiments.calibration.spec import Spec
from regsim.config import WorldConfig
from regsim.eventlog import read_events

__all__ = ["DEFAULT_SIM_ARRANGEMENTS", "Calibration", "calibrate", "default_sim_arrangements", "read_log"]

log = logging.getLogger("regsim.calibrate")

#: Arrangements per simulation unless told otherwise: the log's, up to this many. The cost of a calibration is
#: linear in it; what it costs in precision is the MSM factor ``1 + A_log / A_sim`` on the estimator's variance
#: (the fitted simulation's sampling noise), which the weights and the intervals carry
#: (:class:`~experiments.calibration.fit.Objective`, :func:`~experiments.calibration.inference.infer`): 2 for a log
#: of at most 20,000 arrangements, 3.5 for 50,000 (intervals 1.32 times those of simulations as large as the log).
DEFAULT_SIM_ARRANGEMENTS = 20_000


def default_sim_arrangements(n_log: int) -> int:
    """Arrangements per simulation for a log of ``n_log`` when none is given: ``min(n_log, 20,000)``."""
    return min(n_log, DEFAULT_SIM_ARRANGEMENTS)


@dataclass(frozen=True)
class Calibration:
    """Everything a calibration produced.

    Attributes:
        base: The world the spec was set in.
        spec: The fitted parameters.
        world: The calibrated world (the base with the estimates).
        moments: The log's moments the fit used (before the cut when months are held out).
        fit: The fit.
        inference: The parameters' intervals and identification.
        backtest: The back-test (``None`` without held-out months).
        ranking: The back-test's ranking of candidate policies, calibrated world against OPE on the held-out
            months (``None`` without held-out months, candidates, or a stochastic logging policy).
        log_path: The log read.
        arrangements: Arrangements in the log.
        sim_arrangements: Arrangements per simulation.
        months: Months the fit simulated.
        holdout_months: Months held out.
        seconds: Wall time.
    """

    base: WorldConfig
    spec: Spec
    world: WorldConfig
    moments: LogMoments
    fit: FitResult
    inference: Inference
    backtest: Backtest | None
    ranking: Ranking | None
    log_path: str
    arrangements: int
    sim_arrangements: int
    months: int
    holdout_months: int
    seconds: float


def read_log(path: str | Path) -> pa.Table:
    """An event log: a folder holding ``events.parquet`` or the Parquet file itself.

    Raises:
        FileNotFoundError: Neither exists.
    """
    p = Path(path)
    file = p / "events.parquet" if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"--log: no event log at {file} (a folder with events.parquet, or the file)")
    return read_events(file)


def calibrate(
    events: pa.Table,
    base: WorldConfig,
    spec: Spec,
    *,
    trials: int | None = None,
    refine: int | None = None,
    seed: int,
    optimiser: OptimiserName = "cma-es",
    holdout_months: int = 0,
    sim_arrangements: int | None = None,
    n_boot: int = 200,
    min_count: int = 30,
    draws: int = 20,
    executor: Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
    quiet: bool = False,
    log_path: str = "<table>",
    pairing: PairingChoice = "auto",
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
) -> Calibration:
    """Calibrate ``spec`` of ``base`` to a log (module docstring).

    Args:
        events: The event log.
        base: The world whose fields the spec names (its calendar start must be the log's).
        spec: The fitted parameters.
        trials: The optimiser's evaluations at most (default: :func:`~experiments.calibration.fit.fit`'s).
        refine: Simulations of the iterated Gauss-Newton refinement (default 0: one step; 12P recommended).
        optimiser: ``cma-es`` or ``dfo-ls`` (:mod:`~experiments.calibration.optimiser`).
        seed: The top seed (the fit's common-random-numbers seed).
        holdout_months: The log's last months held out for the back-test (0: none).
        sim_arrangements: Arrangements per simulation (default: :func:`default_sim_arrangements`, the log's up to
            20,000; at most the log's, since each simulated arrangement replays one logged arrangement).
        n_boot: Bootstrap draws of the log's moments.
        min_count: Smallest log denominator of a moment kept.
        draws: Simulations of the back-test's predictive distribution.
        executor: ``local`` or ``ray``.
        workers: Parallel simulations.
        ray_address: A Ray cluster.
        quiet: No progress output.
        log_path: Where the log came from (for the report).
        candidates: Registered policies the back-test ranks (:mod:`~experiments.calibration.ranking`) when months
            are held out and the log's policy is stochastic; empty: none.
        pairing: How simulated arrangements take the log's decisions
            (:class:`~experiments.calibration.replaying.ReplayingPolicy`); ``"auto"``: the logging policy itself
            where the log names a registered one, else replay by arrangement
            (:func:`~experiments.calibration.replaying.resolve_pairing`). The fit records the pairing used.

    Raises:
        ValueError: A bad size, too few months to hold out, or the moments' and fit's errors.
    """
    started = time.perf_counter()
    months = months_in(events)
    if not 0 <= holdout_months < months:
        raise ValueError(
            f"--holdout-months: expected 0..{months - 1} for a log of {months} months, got {holdout_months}"
        )
    decisions = LoggedDecisions.from_log(events)
    chosen = resolve_pairing(pairing, decisions)
    n_log = len(decisions.arrangement_ids)
    n_sim = default_sim_arrangements(n_log) if sim_arrangements is None else sim_arrangements
    if not 1 <= n_sim <= n_log:
        raise ValueError(f"--sim-arrangements: expected 1..{n_log} (the log's arrangements), got {n_sim}")
    cutoff = 30.0 * (months - holdout_months) if holdout_months else None
    rng = np.random.default_rng([seed, 0x424F4F54])  # "BOOT": the bootstrap's own stream
    moments = log_moments(events, rng=rng, min_count=min_count, n_boot=n_boot, horizon_days=cutoff)
    fit_months = months - holdout_months
    sim_base = sized_world(base, n_log, n_sim)  # the shared capacity at the simulation's share of the book
    job = SimulationJob(sim_base, spec, moments.design, decisions, n_sim, fit_months, cutoff, chosen)
    log.info(
        "calibrating %d parameters on %d moments of %d arrangements (%d months, %d held out); %d per simulation; "
        "pairing %s",
        len(spec),
        len(moments.values),
        n_log,
        months,
        holdout_months,
        n_sim,
        chosen if pairing == chosen else f"{chosen} ({pairing})",
    )
    result = fit(
        job,
        moments,
        trials=trials,
        refine=refine,
        seed=seed,
        optimiser=optimiser,
        executor=executor,
        workers=workers,
        ray_address=ray_address,
        quiet=quiet,
    )
    inference = infer(spec, moments, result, n_sim)
    bt: Backtest | None = None
    if cutoff is not None:
        full = log_moments(events, rng=np.random.default_rng([seed, 0x46554C4C]), min_count=min_count, n_boot=n_boot)
        full_job = SimulationJob(sim_base, spec, full.design, decisions, n_sim, months, None, chosen)
        bt = backtest(
            full_job,
            full,
            inference,
            result.estimate,
            cutoff,
            draws=draws,
            seed=seed,
            executor=executor,
            workers=workers,
            ray_address=ray_address,
            quiet=quiet,
        )
    ranking: Ranking | None = None
    if cutoff is not None and candidates and is_stochastic(events):
        log.info("ranking %d candidate policies on the held-out months: OPE and the calibrated world", len(candidates))
        ranking = rank_candidates(
            events,
            spec.apply(sim_base, result.estimate),
            base,
            decisions,
            candidates,
            arrangements=n_sim,
            months=months,
            cutoff_days=cutoff,
            seed=seed,
            n_bootstrap=n_boot,
            pairing=chosen,
        )
    return Calibration(
        base=base,
        spec=spec,
        world=spec.apply(base, result.estimate),
        moments=moments,
        fit=result,
        inference=inference,
        backtest=bt,
        ranking=ranking,
        log_path=log_path,
        arrangements=n_log,
        sim_arrangements=n_sim,
        months=fit_months,
        holdout_months=holdout_months,
        seconds=time.perf_counter() - started,
    )
