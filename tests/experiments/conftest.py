"""Helpers of the ``regsim run`` tests: the command as a subprocess, and tiny budgets for any experiment config."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "configs" / "experiments"

#: A tiny MaskablePPO/PPO rollout (8 steps x _SLOTS vector slots), and DQN's smallest sensible replay settings.
_SLOTS = 8
_SB3_TINY = {
    "maskable-ppo": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
    "ppo": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
    "dqn": {"learning_starts": 32, "batch_size": 16, "buffer_size": 1000},
}


def regsim(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300, kill_after_checkpoints: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the ``regsim`` command line in a subprocess from the repository root, as a user would.

    With ``kill_after_checkpoints=N`` the process kills itself (SIGKILL) right after its N-th checkpoint
    (:mod:`tests.experiments.killed_run`), as a crash would.
    """
    full_env = {**os.environ, **(env or {})}
    entry = ["-m", "experiments.cli"]
    if kill_after_checkpoints is not None:
        entry = ["-m", "tests.experiments.killed_run", str(kill_after_checkpoints)]
    return subprocess.run(
        [sys.executable, *entry, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def tiny_overrides(config: Path, *, steps: int = 256, report: bool = True) -> list[str]:
    """``--set KEY=VALUE`` arguments that shrink any experiment config to a smoke-test budget (seconds).

    Every agent trains ``steps`` decisions with a checkpoint halfway, SB3 agents on tiny rollouts; evaluation
    runs 60 arrangements x 2 months on one seed; feature importance on 40 arrangements; a sweep keeps its
    first two trials' worth (its first grid value per field and its first top seed, one random draw).
    """
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    sets: list[str] = []
    for agent in data.get("agents") or []:
        name = agent["name"]
        sets += [f"agents.{name}.train.steps={steps}", f"agents.{name}.train.checkpoint_every={steps // 2}"]
        if agent["train"].get("months"):
            sets.append(f"agents.{name}.train.months=2")
        if agent["train"].get("eval_arrangements"):
            sets.append(f"agents.{name}.train.eval_arrangements=20")
        for key, value in _SB3_TINY.get(agent["kind"], {}).items():
            sets.append(f"agents.{name}.hyperparameters.{key}={value}")
        if agent["kind"] in ("maskable-ppo", "ppo"):
            sets.append(f"agents.{name}.train.n_envs={_SLOTS}")
    sets += [
        "env.months=2",
        "evaluation.arrangements=60",
        "evaluation.months=2",
        "evaluation.seeds=1",
        "outputs.feature_importance.arrangements=40",
        "outputs.feature_importance.months=1",
        "outputs.feature_importance.repeats=1",
        f"outputs.report={str(report).lower()}",
    ]
    sweep = data.get("sweep")
    if sweep:
        for key, values in (sweep.get("grid") or {}).items():
            sets.append(f"sweep.grid.{key}={yaml.safe_dump(values[:2], default_flow_style=True).strip()}")
        if sweep.get("random"):
            sets.append("sweep.samples=1")
        sets.append("sweep.seeds=[0]")
    return [arg for s in sets for arg in ("--set", s)]


def read_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The Parquet tables of a run folder's evaluation, by file name."""
    return {p.name: pd.read_parquet(p) for p in sorted((run_dir / "evaluation").glob("*.parquet"))}


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small experiment with a bandit and MaskablePPO, each checkpointing twice, for the run tests."""
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "question": "Does the runner reproduce itself?",
                "seed": 4,
                "env": {"reward": "completion_value", "months": 2},
                "agents": [
                    {
                        "name": "ucb",
                        "kind": "linucb",
                        "hyperparameters": {"alpha": 1.5},
                        "train": {"steps": 400, "checkpoint_every": 150, "months": 2},
                    },
                    {
                        "name": "mppo",
                        "kind": "maskable-ppo",
                        "hyperparameters": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
                        "train": {"steps": 192, "n_envs": _SLOTS, "checkpoint_every": 64},
                    },
                ],
                "policies": ["silent"],
                "evaluation": {"arrangements": 80, "months": 2, "seeds": 2, "baseline": "static-dunning"},
                "outputs": {
                    "tensorboard": True,
                    "report": False,
                    "feature_importance": {"enabled": True, "arrangements": 40, "months": 1, "repeats": 1},
                },
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    return path
