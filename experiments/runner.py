"""Running one experiment into a run folder: train the agents, evaluate them paired, write tables and the report.

The run folder (``regsim run CONFIG --out RUN_DIR``) holds, relative to ``RUN_DIR``:

* ``config.yaml`` (the resolved config), ``run.json`` (:class:`experiments.provenance.RunRecord`),
  ``logs/run.log``;
* per agent ``agents/<name>/policy/`` (the artifact), ``agents/<name>/checkpoints/`` (resumable),
  ``agents/<name>/learning_curve.parquet``, and ``tb/<name>/`` (TensorBoard);
* ``evaluation/evaluation.{parquet,json}`` (:class:`agents.evaluate.Evaluation`), the per-run details
  ``evaluation/{outcomes,mix,resources}.parquet`` (:class:`experiments.analysis.RunDetails`),
  ``evaluation/feature_importance.parquet``; ``kpis.json``; ``facts.json`` (the world's calibration facts,
  :mod:`experiments.facts`, for the report's caveat); ``report.html``.

Seeds (all recorded in ``run.json``, derived from the config's seed by purpose, see
:mod:`experiments.provenance`): ``train/<agent>/sb3`` (an SB3 model's seed) or ``train/<agent>/bandit`` (a
bandit's exploration seed), ``train/<agent>/world`` (the training populations), ``evaluation`` (the K
evaluation seeds when the config gives a count), ``feature_importance/<agent>``, ``facts``.

Resuming (``regsim run --resume RUN_DIR``: :func:`read_run_config`, then :func:`execute` with the record of
:meth:`experiments.provenance.RunRecord.resume`): the config is read back from ``config.yaml``; an agent whose
artifact is complete is not trained again; one with checkpoints continues from its newest (see
:mod:`agents.online` and :func:`agents.train.train_policy`); the evaluation, cheap next to training, runs again.
Evaluation depends only on the artifacts and the seeds, so a resumed run ends with the same tables.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.config import BANDIT_KINDS, AgentConfig, ExperimentConfig, parse_experiment_config
from experiments.provenance import RunRecord, SeedBook, atomic_write_text
from regsim.config import WorldConfig
from regsim.runoff import covering_months

__all__ = ["RunOutcome", "execute", "read_run_config", "run_logging", "start_run"]

log = logging.getLogger("regsim.run")


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run hands back: its folder, the evaluation table as text, and the report (or None)."""

    run_dir: Path
    table: str
    report: Path | None


# ---------------------------------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------------------------------
@contextmanager
def run_logging(run_dir: Path, *, quiet: bool = False) -> Iterator[logging.Logger]:
    """Log ``regsim.run`` records to ``logs/run.log`` (appending: a resumed run continues its log) and stderr
    (warnings only when ``quiet``); the handlers are removed on exit."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    file = logging.FileHandler(run_dir / "logs" / "run.log", encoding="utf-8")
    file.setFormatter(fmt)
    echo = logging.StreamHandler(sys.stderr)
    echo.setFormatter(fmt)
    echo.setLevel(logging.WARNING if quiet else logging.INFO)
    log.addHandler(file)
    log.addHandler(echo)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log
    finally:
        for h in (file, echo):
            log.removeHandler(h)
            h.close()


# ---------------------------------------------------------------------------------------------------------------
# Starting and resuming
# ---------------------------------------------------------------------------------------------------------------
def start_run(config: ExperimentConfig, run_dir: Path, config_path: str) -> RunRecord:
    """Create ``run_dir`` with ``config.yaml`` and ``run.json`` (status "running").

    Raises:
        FileExistsError: ``run_dir`` holds a run already (resume it, or choose another folder).
    """
    if (run_dir / "run.json").exists() or (run_dir / "config.yaml").exists():
        raise FileExistsError(
            f"{run_dir} holds a run already; resume it with --resume {run_dir} or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    record = RunRecord(path=run_dir / "run.json", config_path=config_path, seed=config.seed, seeds={})
    record.write()
    return record


def read_run_config(run_dir: Path) -> ExperimentConfig:
    """The resolved config of a run folder (``config.yaml``), validated again.

    Raises:
        FileNotFoundError: No run there.
    """
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {path} is missing")
    import yaml

    return parse_experiment_config(yaml.safe_load(path.read_text(encoding="utf-8")), source=str(path))


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
def _artifact_complete(folder: Path) -> bool:
    if not (folder / "manifest.json").is_file():
        return False
    from agents.artifact import read_manifest

    try:
        read_manifest(folder)
    except ValueError:
        return False
    return True


def _train_agent(
    agent: AgentConfig, config: ExperimentConfig, world: WorldConfig, seeds: SeedBook, run_dir: Path, progress: bool
) -> Path:
    """Train one agent into ``agents/<name>/`` (resuming from its checkpoints) and return its artifact folder."""
    folder = run_dir / "agents" / agent.name
    policy_dir = folder / "policy"
    world_seed = seeds.seed("train", agent.name, "world")
    tb = run_dir / "tb" / agent.name if config.outputs.tensorboard else None
    if agent.kind in BANDIT_KINDS:
        seed = seeds.seed("train", agent.name, "bandit")
    else:
        seed = seeds.seed("train", agent.name, "sb3")
    if _artifact_complete(policy_dir):
        log.info("agent %s: trained already (%s); not training again", agent.name, policy_dir)
        return policy_dir
    if policy_dir.exists():  # a save cut short: the checkpoints make it again
        shutil.rmtree(policy_dir)
    started = time.perf_counter()
    log.info("agent %s: training %s for %d decisions", agent.name, agent.kind, agent.train.steps)
    if agent.kind in BANDIT_KINDS:
        _train_bandit(agent, config, world, seed, world_seed, folder, tb, progress)
    else:
        _train_deep(agent, config, world, seed, world_seed, folder, tb, progress)
    log.info("agent %s: trained in %.1f s; artifact %s", agent.name, time.perf_counter() - started, policy_dir)
    return policy_dir


def _train_deep(
    agent: AgentConfig,
    config: ExperimentConfig,
    world: WorldConfig,
    seed: int,
    world_seed: int,
    folder: Path,
    tb: Path | None,
    progress: bool,
) -> None:
    from agents.train import train_policy

    train_policy(
        agent.kind,
        config=world,
        steps=agent.train.steps,
        seed=seed,
        out=folder,
        env_kwargs={"reward": config.env.reward, "months": config.env.months, "world_seed": world_seed},
        reward_kwargs=dict(config.env.reward_kwargs),
        algo_kwargs=dict(agent.hyperparameters),
        progress=progress,
        tensorboard=tb is not None,
        tensorboard_dir=tb,
        eval_arrangements=agent.train.eval_arrangements,
        n_envs=agent.train.n_envs,
        workers=agent.train.workers,
        checkpoint_dir=folder / "checkpoints",
        checkpoint_every=agent.train.checkpoint_every,
        decision=agent.train.decision,
    )


def _train_bandit(
    agent: AgentConfig,
    config: ExperimentConfig,
    world: WorldConfig,
    seed: int,
    world_seed: int,
    folder: Path,
    tb: Path | None,
    progress: bool,
) -> None:
    from agents.online import train_bandit

    train_bandit(
        agent.kind,
        world,
        steps=agent.train.steps,
        seed=seed,
        world_seed=world_seed,
        months=agent.train.months or config.env.months or covering_months(world),
        out=folder,
        hyperparameters=agent.hyperparameters,
        checkpoint_every=agent.train.checkpoint_every,
        tensorboard_dir=tb,
        progress=progress,
        desc=agent.name,
    )


# ---------------------------------------------------------------------------------------------------------------
# Evaluating and writing
# ---------------------------------------------------------------------------------------------------------------
def _evaluated(agent: AgentConfig, folder: Path, world: WorldConfig) -> Any:
    """What the evaluation runs of a trained agent: its artifact folder, or, with ``deterministic`` set, a
    factory loading it with that loading option (:func:`agents.artifact.load_policy`)."""
    if agent.deterministic is None:
        return str(folder)
    from agents.artifact import load_policy

    load_policy(folder, rules_version=world.rules.version, deterministic=agent.deterministic)  # refuse a bad one now
    return functools.partial(load_policy, folder, rules_version=world.rules.version, deterministic=agent.deterministic)


def _nan_to_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _kpis(evaluation: Any) -> dict[str, Any]:
    """``{policy: {kpi: value}}`` of segment "all" plus ``"baseline"``."""
    f = evaluation.frame
    f = f[f["segment"] == "all"]
    out: dict[str, Any] = {}
    for policy in evaluation.policies:
        rows = f[f["policy"] == policy]
        out[policy] = {str(k): _nan_to_none(float(v)) for k, v in zip(rows["kpi"], rows["value"], strict=True)}
    out["baseline"] = evaluation.baseline
    return out


def _evaluate(
    config: ExperimentConfig,
    world: WorldConfig,
    seeds: SeedBook,
    run_dir: Path,
    policies: dict[str, Any],
    progress: bool,
) -> Any:
    from agents.evaluate import DEFAULT_SEGMENTS, evaluate
    from experiments.analysis import RunDetails

    ev = config.evaluation
    if isinstance(ev.seeds, int):
        seed_list = seeds.seed_list(ev.seeds, "evaluation")
    else:
        seed_list = list(ev.seeds)
        seeds.record("evaluation", seed_list)
    details = RunDetails()
    runoff = world.simulation.runoff_cap(ev.cap_factor) if ev.months is None else None
    log.info(
        "evaluating %s on %d seed(s) x %d arrangements x %s against %r",
        list(policies),
        len(seed_list),
        ev.arrangements,
        f"{ev.months} months" if runoff is None else f"run-off (cap x{ev.cap_factor:g})",
        ev.baseline,
    )
    evaluation = evaluate(
        policies,
        world,
        ev.arrangements,
        seed_list,
        months=ev.months,
        runoff=runoff,
        baseline=ev.baseline,
        oracle=ev.oracle,
        segments={name: DEFAULT_SEGMENTS[name] for name in ev.segments},
        level=ev.level,
        progress=progress,
        on_result=details.add,
    )
    out = run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    evaluation.to_parquet(out / "evaluation.parquet")
    evaluation.to_json(out / "evaluation.json")
    details.write(out)
    atomic_write_text(run_dir / "kpis.json", json.dumps(_kpis(evaluation), indent=2, allow_nan=False) + "\n")
    return evaluation


def _feature_importance(
    config: ExperimentConfig, world: WorldConfig, seeds: SeedBook, run_dir: Path, artifacts: dict[str, Path]
) -> Path | None:
    fi = config.outputs.feature_importance
    if not fi.enabled or not artifacts:
        return None
    from agents.artifact import load_policy
    from experiments.analysis import feature_importance

    frames = []
    for name, folder in artifacts.items():
        log.info("feature importance of %s (%d arrangements x %d months)", name, fi.arrangements, fi.months)
        frame = feature_importance(
            load_policy(folder, rules_version=world.rules.version),
            world,
            arrangements=fi.arrangements,
            months=fi.months,
            seed=seeds.seed("feature_importance", name),
            repeats=fi.repeats,
        )
        frames.append(frame.assign(policy=name)[["policy", "feature", "importance", "rank"]])
    table = pd.concat(frames, ignore_index=True)
    table = table.astype({"policy": str, "feature": str, "importance": "float64", "rank": "int64"})
    path = run_dir / "evaluation" / "feature_importance.parquet"
    table.to_parquet(path, index=False)
    return path


def _facts(config: ExperimentConfig, world: WorldConfig, seeds: SeedBook, run_dir: Path) -> Path:
    """``facts.json``: the calibration facts measured on the run's world, so that the report's caveat can name
    those it does not meet; on the evaluation's arrangements per arm (at least the 100 an interval needs)."""
    from experiments.facts import measure_facts, write_facts

    n = max(100, config.evaluation.arrangements)
    log.info("calibration facts of world %s (%d arrangements per arm)", world.name, n)
    return write_facts(measure_facts(world, arrangements=n, seed=seeds.seed("facts")), run_dir / "facts.json")


def execute(
    config: ExperimentConfig, run_dir: Path, record: RunRecord, *, quiet: bool = False, report: bool | None = None
) -> RunOutcome:
    """Train, evaluate and write everything of one run into ``run_dir`` (started by :func:`start_run` or resumed).

    Args:
        config: The experiment (its ``sweep`` section is ignored here: :mod:`experiments.sweep` runs trials).
        run_dir: The run folder.
        record: Its ``run.json`` record; marked finished or failed at the end.
        quiet: No progress bars; only warnings on stderr (the log file has everything).
        report: Write ``report.html`` (default: the config's ``outputs.report``).

    Raises:
        Whatever training or evaluation raises, after marking the run failed in ``run.json``.
    """
    import torch

    # Trained networks decide on small batches: one thread avoids oversubscribing the cores (and other trials).
    torch.set_num_threads(1)
    seeds = SeedBook(config.seed, record.seeds)
    with run_logging(run_dir, quiet=quiet):
        log.info("run %s (%s): %s", config.name, run_dir, config.question)
        try:
            world = config.population.world()
            artifacts: dict[str, Path] = {}
            for agent in config.agents:
                artifacts[agent.name] = _train_agent(agent, config, world, seeds, run_dir, not quiet)
                record.seeds = seeds.seeds
                record.write()
            policies: dict[str, Any] = {a.name: _evaluated(a, artifacts[a.name], world) for a in config.agents}
            policies.update({name: name for name in config.policies})
            evaluation = _evaluate(config, world, seeds, run_dir, policies, not quiet)
            _feature_importance(config, world, seeds, run_dir, artifacts)
            _facts(config, world, seeds, run_dir)
            record.seeds = seeds.seeds
        except BaseException:
            log.exception("run failed")
            record.seeds = seeds.seeds
            record.finish("failed")
            raise
        # The run's results are complete here: run.json says so before the report is drawn, so the report shows
        # a finished run (a failing report leaves the results standing and is raised as it is).
        record.finish("finished")
        log.info("finished in %.1f s", record.wall_seconds or 0.0)
        html: Path | None = None
        if config.outputs.report if report is None else report:
            from experiments.report import write_report

            html = write_report(run_dir)
            log.info("report: %s", html)
    return RunOutcome(run_dir, evaluation.table(), html)
