"""One simulation of the log's treatment at a parameter vector, and many of them on the sweep's executors.

:class:`SimulationJob` holds what every simulation of a calibration shares (the base world, the spec, the moment
design, the logged decisions, the size and horizon); it is written once to a pickle file that each worker reads
once (:func:`simulate_point`, a module-level function of plain arguments, so a spawned process or a Ray task
can run it). :func:`run_points` runs a list of (parameter vector, seed) points through
:func:`experiments.sweep.map_tasks`, the sweep's local process pool or Ray, with a progress bar.

Common random numbers: the fit evaluates every parameter vector with the same seed (``seed`` of the job's
caller), so the difference between two evaluations is the parameters', not the draws' (:mod:`regsim.random`:
every draw is a function of seed, purpose, debtor and day).

Book size. The shared resources (:class:`regsim.config_channels.CapacityConfig`: collectors, robocall lines, the
print room) serve the whole book, so a simulation of fewer arrangements than the log with the log's capacity gives
each debtor more of it: on the 50,000-arrangement benchmark log, simulated at 20,000 at the true parameters, the
collector-call moments were twice the log's (clicked after a call 0.051 vs 0.027, reminder response 0.197 vs
0.095) and Q at the truth was 430-545 on 284 degrees of freedom at three seeds. :func:`sized_world` scales the
capacity to the simulation's share of the book (the minutes per call times ``A_log / A_sim``, the letters per day
times ``A_sim / A_log``), which took Q at the truth to 351-400 at four seeds (docs/calibration_fit.md, "The
model at the truth").
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.moments import MomentDesign, moment_values
from experiments.calibration.replaying import (
    LoggedDecisions,
    Pairing,
    ReplayingPolicy,
    ReplayStats,
    fallback_policy,
    require_logging_policy,
)
from experiments.calibration.spec import Spec
from regsim.config import ConfigError, WorldConfig

__all__ = ["Executor", "PointResult", "SimulationJob", "run_points", "simulate_point", "sized_world"]

Executor = Literal["local", "ray"]


def sized_world(base: WorldConfig, log_arrangements: int, sim_arrangements: int) -> WorldConfig:
    """``base`` with its shared capacity scaled from a book of ``log_arrangements`` to ``sim_arrangements``.

    Each resource's throughput per arrangement is kept: collector and robocall minutes per call times
    ``log / sim`` (the head counts are integers, the minutes are not), letters per day times ``sim / log``
    (rounded, at least 1). The identity when the sizes are equal.

    Raises:
        ValueError: A size below 1.
    """
    if log_arrangements < 1 or sim_arrangements < 1:
        raise ValueError(f"arrangements: expected sizes >= 1, got log {log_arrangements}, sim {sim_arrangements}")
    if log_arrangements == sim_arrangements:
        return base
    factor = log_arrangements / sim_arrangements
    cap = base.capacity
    scaled = cap.model_copy(
        update={
            "collector_minutes_per_call": cap.collector_minutes_per_call * factor,
            "robocall_minutes_per_call": cap.robocall_minutes_per_call * factor,
            "letters_per_day": max(1, round(cap.letters_per_day / factor)),
        }
    )
    return base.model_copy(update={"capacity": scaled})


@dataclass(frozen=True)
class SimulationJob:
    """What every simulation of one calibration shares.

    Attributes:
        base: The world the spec's paths are set in, at the simulation's book size (:func:`sized_world`).
        spec: The fitted parameters.
        design: The moments measured on each simulation.
        decisions: The log's decisions, replayed.
        arrangements: Arrangements per simulation.
        months: Simulated horizon (unit: months of 30 days).
        horizon_days: Moments count only events before this time (unit: days); ``None``: all.
        pairing: How simulated arrangements take log arrangements' decisions
            (:class:`~experiments.calibration.replaying.ReplayingPolicy`); ``"policy"``: none, the logging policy
            itself decides on the simulated states.

    Raises:
        ValueError: ``pairing="policy"`` with a log that names no registered policy (raised here, before any
            simulation).
    """

    base: WorldConfig
    spec: Spec
    design: MomentDesign
    decisions: LoggedDecisions
    arrangements: int
    months: int
    horizon_days: float | None = None
    pairing: Pairing = "arrangement"

    def __post_init__(self) -> None:
        if self.pairing == "policy":
            require_logging_policy(self.decisions, 0)

    def write(self, folder: Path) -> Path:
        """Pickle the job into ``folder`` (created); returns the file."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "simulation_job.pkl"
        path.write_bytes(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))
        return path


@dataclass(frozen=True)
class PointResult:
    """One simulation's moments.

    Attributes:
        index: The point's position in the submitted list.
        values: Simulated moments, shape ``(K,)`` (NaN where the cell did not occur, or all NaN on error).
        seed: The seed it ran with.
        seconds: Wall time of the simulation and its moments.
        replay: What the replaying policy did.
        error: Why the parameter vector gave no world (e.g. named shares above 1), else ``None``.
    """

    index: int
    values: NDArray[np.float64]
    seed: int
    seconds: float
    replay: ReplayStats
    error: str | None = None


_JOBS: dict[str, SimulationJob] = {}


def _job(path: str) -> SimulationJob:
    if path not in _JOBS:
        _JOBS[path] = pickle.loads(Path(path).read_bytes())  # a file this calibration wrote itself
    return _JOBS[path]


def simulate_point(job_path: str, index: int, values: list[float], seed: int) -> PointResult:
    """Simulate the job's world at ``values`` with ``seed`` under the replayed decisions (with ``pairing="policy"``
    the logging policy, its own stream seeded with ``seed``); its moments.

    A module-level function of plain arguments (the job is read from ``job_path`` once per process).
    """
    from regsim.simulate import simulate

    job = _job(job_path)
    started = time.perf_counter()
    try:
        world = job.spec.apply(job.base, values)
    except ConfigError as exc:
        nan = np.full(len(job.design.keys), np.nan)
        return PointResult(index, nan, seed, 0.0, ReplayStats(), error=str(exc).splitlines()[0])
    policy = ReplayingPolicy(job.decisions, fallback_policy(job.decisions, seed), job.pairing)
    result = simulate(world, policy, arrangements=job.arrangements, months=job.months, seed=seed)
    moments = moment_values(result.events, job.design, job.horizon_days)
    return PointResult(index, moments, seed, time.perf_counter() - started, policy.stats)


def run_points(
    job: SimulationJob,
    points: Sequence[tuple[NDArray[np.float64], int]],
    *,
    executor: Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
    desc: str = "simulations",
    quiet: bool = False,
    work_dir: Path | None = None,
) -> list[PointResult]:
    """Simulate every (parameter vector, seed) point; results in the order of ``points``.

    Args:
        job: The shared job.
        points: Parameter vectors (spec order) with their seeds.
        executor: ``"local"`` (one process with ``workers == 1``, else a spawned process pool) or ``"ray"``.
        workers: Parallel simulations.
        ray_address: A Ray cluster (default ``$RAY_ADDRESS``, else a local Ray).
        desc: The progress bar's label.
        quiet: No progress bar.
        work_dir: Where the job file goes (default: a temporary folder, removed after).
    """
    from tqdm import tqdm

    from experiments.sweep import map_tasks

    if not points:
        return []
    with tempfile.TemporaryDirectory(prefix="regsim-calibrate-") as tmp:
        path = job.write(work_dir if work_dir is not None else Path(tmp))
        results: list[PointResult | None] = [None] * len(points)
        tasks = [(str(path), i, [float(v) for v in values], int(seed)) for i, (values, seed) in enumerate(points)]
        with tqdm(total=len(points), desc=desc, unit="sim", disable=quiet, file=sys.stderr, leave=False) as bar:

            def done(result: PointResult) -> None:
                results[result.index] = result
                bar.update(1)

            map_tasks(simulate_point, tasks, done, executor=executor, workers=workers, ray_address=ray_address)
        _JOBS.pop(str(path), None)
    return [r for r in results if r is not None]
