"""Sweeps: many trials of one experiment, run in parallel on local cores or as Ray tasks, in one table.

Trials (:func:`expand_trials`) are the product of the ``grid`` values, ``samples`` random draws of the
``random`` fields, and the ``seeds``, in that nesting (grid point, then draw, then seed; the grid's fields in
config order). Each trial is a full run (train, evaluate) of the config with its fields set (through
:func:`experiments.config.apply_override`, validated like ``--set``), its ``seed`` replaced by the trial's top
seed and no ``sweep`` section; it writes ``trials/<id>/`` laid out as a run folder, without ``report.html``.
Random draws come from one generator seeded by ``derive_seed(seed, "sweep", "random")`` (recorded), so the
trials of a config are known before anything runs. Without ``seeds`` every trial uses one top seed derived
from the config's (``sweep/seed``), so trials differ only in their fields and compare under common random
numbers.

Executors. ``local`` (default) runs trials in a ``concurrent.futures.ProcessPoolExecutor`` of ``workers``
processes (spawned, each with one torch thread); ``ray`` submits each trial as a Ray task (``num_cpus=1``) to
the cluster at ``address`` (``ray.init(address=...)``), or to a local instance started with
``ray.init(num_cpus=workers, include_dashboard=False)``. A trial depends only on its config, so both give the
same tables. ``sweep.parquet`` then has one row per (trial, policy, KPI) of segment "all": ``trial``,
``seed``, a column ``param.<dotted.path>`` per swept field, ``policy``, ``kpi``, ``value``, ``diff``,
``ci_low``, ``ci_high``.

Resuming a sweep re-runs unfinished trials only (each resumed from its own checkpoints).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from experiments.config import (
    ExperimentConfig,
    ExperimentConfigError,
    RandomRange,
    apply_override,
    parse_experiment_config,
)
from experiments.provenance import RunRecord, SeedBook
from experiments.runner import execute, read_run_config, run_logging, start_run

__all__ = [
    "ONE_THREAD",
    "SWEEP_COLUMNS",
    "Trial",
    "expand_trials",
    "map_tasks",
    "run_sweep",
    "run_trial",
    "sweep_table",
]

log = logging.getLogger("regsim.run")

Executor = Literal["local", "ray"]

#: Fixed columns of ``sweep.parquet`` (the ``param.<path>`` columns go after ``seed``).
SWEEP_COLUMNS = ("trial", "seed", "policy", "kpi", "value", "diff", "ci_low", "ci_high")


@dataclass(frozen=True)
class Trial:
    """One trial: its id (``t000``...), swept field values by dotted path, top seed and validated config."""

    id: str
    params: dict[str, Any]
    seed: int
    config: ExperimentConfig


def _draw(rng: np.random.Generator, r: RandomRange) -> float | int:
    if r.log:
        value = float(math.exp(rng.uniform(math.log(r.low), math.log(r.high))))
    else:
        value = float(rng.uniform(r.low, r.high))
    return round(value) if r.integer else value


def expand_trials(config: ExperimentConfig, seeds: SeedBook) -> list[Trial]:
    """The trials of a config with a ``sweep`` section (see the module docstring), each validated.

    Raises:
        ValueError: The config has no sweep.
        ExperimentConfigError: A swept path or value is invalid; the message names ``sweep.grid.<path>`` or
            ``sweep.random.<path>`` and the problem.
    """
    sweep = config.sweep
    if sweep is None:
        raise ValueError("the config has no sweep section")
    base = config.model_dump(mode="json")
    base["sweep"] = None
    grid_keys = list(sweep.grid)
    points = [dict(zip(grid_keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())]
    rng = np.random.default_rng(seeds.seed("sweep", "random")) if sweep.random else None
    draws: list[dict[str, Any]] = [{}]
    if rng is not None:
        draws = [{k: _draw(rng, r) for k, r in sweep.random.items()} for _ in range(sweep.samples)]
    if sweep.seeds is not None:
        top_seeds = list(sweep.seeds)
        seeds.record("sweep/seeds", top_seeds)
    else:
        top_seeds = [seeds.seed("sweep", "seed")]
    trials: list[Trial] = []
    for point, draw, seed in itertools.product(points, draws, top_seeds):
        params = {**point, **draw}
        data = dict(base)
        for path, value in params.items():
            section = "grid" if path in sweep.grid else "random"
            try:
                data = apply_override(data, path, value)
            except ExperimentConfigError as exc:
                raise ExperimentConfigError(f"sweep.{section}.{path}: {exc}") from None
        data["seed"] = seed
        tid = f"t{len(trials):03d}"
        try:
            trial_config = parse_experiment_config(data, source=f"sweep trial {tid} {params} seed {seed}")
        except ExperimentConfigError as exc:
            raise ExperimentConfigError(f"sweep: trial {tid} is invalid: {exc}") from None
        trials.append(Trial(tid, params, seed, trial_config))
    return trials


def run_trial(trial_dir: str, quiet: bool = True) -> str:
    """Run (or resume) the trial whose ``config.yaml`` and ``run.json`` are in ``trial_dir``; returns the folder.

    A module-level function of plain arguments, so a process pool or Ray can ship it.
    """
    import torch

    torch.set_num_threads(1)
    folder = Path(trial_dir)
    if json.loads((folder / "run.json").read_text(encoding="utf-8")).get("status") == "finished":
        return trial_dir
    # A trial that has logged before was started and stopped: resume it; else this is its first execution.
    started = (folder / "logs" / "run.log").exists()
    record = RunRecord.resume(folder / "run.json") if started else RunRecord.load(folder / "run.json")
    execute(read_run_config(folder), folder, record, quiet=quiet, report=False)
    return trial_dir


def sweep_table(run_dir: Path, trials: Sequence[Trial]) -> pd.DataFrame:
    """Collect every trial's evaluation (segment "all") into one table (see the module docstring)."""
    from agents.evaluate import Evaluation

    params = list(dict.fromkeys(k for t in trials for k in t.params))
    frames = []
    for t in trials:
        ev = Evaluation.read_parquet(run_dir / "trials" / t.id / "evaluation" / "evaluation.parquet")
        f = ev.frame[ev.frame["segment"] == "all"]
        rows = pd.DataFrame({"trial": t.id, "seed": np.int64(t.seed)}, index=range(len(f)))
        for p in params:
            rows[f"param.{p}"] = [t.params.get(p)] * len(f)
        for c in ("policy", "kpi", "value", "diff", "ci_low", "ci_high"):
            rows[c] = f[c].to_numpy()
        frames.append(rows)
    table = pd.concat(frames, ignore_index=True)
    return table.astype({"seed": "int64"})


#: One thread per trial for every numeric library: parallel trials already use the cores, and a trial's
#: default BLAS/OpenMP pools (one thread per core each) would oversubscribe them.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for what this process starts meanwhile (spawned workers read them at start)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _submit_local(
    tasks: Sequence[tuple[Any, ...]], workers: int, done: Callable[[Any], None], task: Callable[..., Any] = run_trial
) -> None:
    # Spawned workers: a forked copy of a process that has started torch's threads can deadlock.
    with (
        _environment(ONE_THREAD),
        ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool,
    ):
        futures = [pool.submit(task, *args) for args in tasks]
        for f in as_completed(futures):
            done(f.result())


def _submit_ray(
    tasks: Sequence[tuple[Any, ...]],
    workers: int,
    address: str | None,
    done: Callable[[Any], None],
    task: Callable[..., Any] = run_trial,
) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": ONE_THREAD})
        else:
            ray.init(
                num_cpus=workers, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": ONE_THREAD}
            )
    try:
        remote = ray.remote(num_cpus=1)(task)
        pending = [remote.remote(*args) for args in tasks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            done(ray.get(ready[0]))
    finally:
        if started_here:
            ray.shutdown()


def map_tasks(
    task: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    done: Callable[[Any], None],
    *,
    executor: Executor = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> None:
    """Run ``task(*args)`` for every ``args`` of ``tasks`` on the sweep's executors, calling ``done`` with each
    result as it finishes (in completion order).

    ``task`` must be a module-level function of plain arguments (shipped to spawned processes or Ray).
    ``local`` with one worker runs the tasks in this process, in order.

    Raises:
        ValueError: An unknown executor or fewer than one worker.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"executor: expected 'local' or 'ray', got {executor!r}")
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if executor == "ray":
        _submit_ray(tasks, workers, ray_address or os.environ.get("RAY_ADDRESS"), done, task)
    elif workers == 1:
        for args in tasks:
            done(task(*args))
    else:
        _submit_local(tasks, workers, done, task)


def run_sweep(
    config: ExperimentConfig,
    run_dir: Path,
    record: RunRecord,
    *,
    executor: Executor = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    quiet: bool = False,
) -> tuple[pd.DataFrame, Path | None]:
    """Run (or resume) every trial of a sweep into ``run_dir/trials/`` and write ``sweep.parquet``.

    Args:
        config: A config with a ``sweep`` section.
        run_dir: The sweep's run folder (with its ``config.yaml`` and ``run.json``).
        record: Its ``run.json`` record.
        executor: ``"local"`` (a process pool) or ``"ray"``.
        workers: Parallel trials (default: the machine's cores); for Ray without an address, the local
            instance's CPUs.
        ray_address: A Ray cluster to submit to (default: the ``RAY_ADDRESS`` environment variable, else a local
            instance).
        quiet: No progress bar.

    Returns:
        The sweep table and the report (None when ``outputs.report`` is false).
    """
    from tqdm import tqdm

    if executor not in ("local", "ray"):
        raise ValueError(f"executor: expected 'local' or 'ray', got {executor!r}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    seeds = SeedBook(config.seed, record.seeds)
    with run_logging(run_dir, quiet=quiet):
        try:
            trials = expand_trials(config, seeds)
            record.seeds = {**seeds.seeds, "trials": {t.id: t.seed for t in trials}}
            record.write()
            dirs = []
            for t in trials:
                folder = run_dir / "trials" / t.id
                if not (folder / "run.json").exists():
                    start_run(t.config, folder, config_path=f"{record.config_path}#{t.id}")
                elif json.loads((folder / "run.json").read_text(encoding="utf-8")).get("status") == "finished":
                    continue  # a resumed sweep: this trial is done
                dirs.append(str(folder))
            address = ray_address or os.environ.get("RAY_ADDRESS")
            log.info(
                "sweep %s: %d trials on %s with %d worker(s)%s",
                config.name,
                len(trials),
                executor,
                workers,
                f" (cluster {address})" if executor == "ray" and address else "",
            )
            with tqdm(
                total=len(trials), initial=len(trials) - len(dirs), unit="trial", disable=quiet, file=sys.stderr
            ) as bar:

                def done(d: str) -> None:
                    log.info("trial %s finished", Path(d).name)
                    bar.update(1)

                # Trials run quietly (warnings only; each logs to its own logs/run.log): their progress bars
                # would interleave. The bar here counts trials.
                if not dirs:
                    pass
                elif executor == "ray":
                    _submit_ray([(d, True) for d in dirs], workers, address, done)
                else:
                    _submit_local([(d, True) for d in dirs], workers, done)
            table = sweep_table(run_dir, trials)
            table.to_parquet(run_dir / "sweep.parquet", index=False)
            html: Path | None = None
            if config.outputs.report:
                from experiments.report import write_report

                html = write_report(run_dir)
        except BaseException:
            log.exception("sweep failed")
            record.finish("failed")
            raise
        record.finish("finished")
        log.info("sweep finished in %.1f s", record.wall_seconds or 0.0)
    return table, html
