"""Reading a run folder into tables: :class:`RunData` and :func:`load_run`.

A run folder is laid out by ``regsim run`` (``config.yaml``, ``run.json``, ``evaluation/``,
``agents/<agent>/learning_curve.parquet``; for a sweep, ``sweep.parquet`` and ``trials/<trial>/``).
:func:`load_run` reads one, or the best trial of a sweep (:func:`sweep_kpi` says by which KPI), into a
:class:`RunData`, which the report (:mod:`experiments.report`) and ``notebooks/evaluation.ipynb`` use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from agents.evaluate import Evaluation

__all__ = ["RunData", "load_run", "sweep_kpi"]


@dataclass
class RunData:
    """The tables of a run folder (optional ones None or empty when the folder lacks them).

    Attributes:
        run_dir: The folder.
        config: ``config.yaml`` (the resolved experiment config) as plain data; ``{}`` if missing.
        run: ``run.json`` (provenance); ``{}`` if missing.
        evaluation: ``evaluation/evaluation.parquet``.
        outcomes: ``evaluation/outcomes.parquet`` (:class:`experiments.analysis.RunDetails`).
        mix: ``evaluation/mix.parquet``.
        resources: ``evaluation/resources.parquet``.
        importance: ``evaluation/feature_importance.parquet``.
        curves: ``agents/<agent>/learning_curve.parquet`` by agent.
        sweep: ``sweep.parquet`` of a sweep folder.
        best_trial: For a sweep, the trial whose tables fill the evaluation sections.
    """

    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    outcomes: pd.DataFrame | None = None
    mix: pd.DataFrame | None = None
    resources: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    sweep: pd.DataFrame | None = None
    best_trial: str | None = None

    @property
    def policies(self) -> list[str]:
        """Policies in evaluation order (empty without an evaluation)."""
        return self.evaluation.policies if self.evaluation is not None else []

    @property
    def baseline(self) -> str | None:
        """The baseline's name (None without an evaluation)."""
        return self.evaluation.baseline if self.evaluation is not None else None


def _parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _read_tables(data: RunData, folder: Path) -> None:
    ev = folder / "evaluation"
    if (ev / "evaluation.parquet").is_file():
        data.evaluation = Evaluation.read_parquet(ev / "evaluation.parquet")
    data.outcomes = _parquet(ev / "outcomes.parquet")
    data.mix = _parquet(ev / "mix.parquet")
    data.resources = _parquet(ev / "resources.parquet")
    data.importance = _parquet(ev / "feature_importance.parquet")
    data.curves = {}
    for path in sorted((folder / "agents").glob("*/learning_curve.parquet")):
        frame = pd.read_parquet(path)
        if len(frame):
            data.curves[path.parent.name] = frame


def _trial_column(sweep: pd.DataFrame) -> str:
    for c in ("trial", "trial_id"):
        if c in sweep.columns:
            return c
    raise ValueError(f"sweep.parquet has no trial column (trial or trial_id); columns: {list(sweep.columns)}")


def sweep_kpi(sweep: pd.DataFrame, baseline: str | None) -> str:
    """The KPI a sweep is judged by: the completion rate, or the euros collected per arrangement when most of
    the baseline's arrangements are still open at the horizon (completions then say little)."""
    open_share = sweep.loc[(sweep["kpi"] == "active_rate") & (sweep["policy"] == baseline), "value"]
    return "collected_eur_per_arrangement" if len(open_share) and float(open_share.mean()) > 0.5 else "completion_rate"


def _best_trial(sweep: pd.DataFrame, baseline: str | None) -> str | None:
    """The trial in which a non-baseline policy has the largest difference to the baseline on the sweep's KPI."""
    kpi = sweep_kpi(sweep, baseline)
    t = sweep[(sweep["kpi"] == kpi) & (sweep["policy"] != baseline)].dropna(subset=["diff"])
    if t.empty:
        return None
    best = t.sort_values("diff", ascending=False, kind="stable").iloc[0]
    return str(best[_trial_column(sweep)])


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder (or a sweep folder) into a :class:`RunData`.

    For a sweep folder (``sweep.parquet`` at the top) the evaluation tables are those of its best trial
    (largest completion-rate difference to the baseline), read from ``trials/<trial>/``.

    Raises:
        FileNotFoundError: ``run_dir`` is not a folder.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    data = RunData(run_dir=folder)
    if (folder / "config.yaml").is_file():
        data.config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    if (folder / "run.json").is_file():
        data.run = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    sweep = _parquet(folder / "sweep.parquet")
    if sweep is not None:
        data.sweep = sweep
        baseline = (data.config.get("evaluation") or {}).get("baseline")
        data.best_trial = _best_trial(sweep, baseline)
        if data.best_trial is not None and (folder / "trials" / data.best_trial).is_dir():
            _read_tables(data, folder / "trials" / data.best_trial)
    else:
        _read_tables(data, folder)
    return data
