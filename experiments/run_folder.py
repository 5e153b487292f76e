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

__all__ = ["FACTS_FILE", "FactRow", "RunData", "load_run", "read_facts", "sweep_kpi"]

#: The calibration facts of the run's world, written by ``regsim facts`` (:mod:`experiments.facts`).
FACTS_FILE = "facts.json"


@dataclass(frozen=True)
class FactRow:
    """One object of ``facts.json``: a calibration fact, the source's value and the simulator's.

    Attributes:
        id: The fact's id (``F3``, ``F9a-short``, ...).
        fact: What is measured, in words.
        source_value: The source's value, in words.
        sim_value: The simulated value.
        ci_low: Lower end of its 95 % interval.
        ci_high: Upper end of its 95 % interval.
        in_range: Whether the interval meets the fact's range.
    """

    id: str
    fact: str
    source_value: str
    sim_value: float
    ci_low: float
    ci_high: float
    in_range: bool


def _float(v: Any) -> float:
    return float("nan") if v is None else float(v)


def read_facts(path: str | Path) -> list[FactRow]:
    """Read ``facts.json``: a JSON list of objects with the fields of :class:`FactRow` (null numbers as NaN).

    Raises:
        ValueError: The file is not such a list, naming the entry and the missing or ill-typed field.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: facts.json must hold a list of objects, got {type(data).__name__}")
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: entry {i} must be an object, got {type(entry).__name__}")
        missing = [k for k in FactRow.__dataclass_fields__ if k not in entry]
        if missing:
            raise ValueError(f"{path}: entry {i} lacks the field(s) {missing}")
        if not isinstance(entry["in_range"], bool):
            raise ValueError(f"{path}: entry {i}: in_range must be true or false, got {entry['in_range']!r}")
        try:
            rows.append(
                FactRow(
                    str(entry["id"]),
                    str(entry["fact"]),
                    str(entry["source_value"]),
                    _float(entry["sim_value"]),
                    _float(entry["ci_low"]),
                    _float(entry["ci_high"]),
                    entry["in_range"],
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: entry {i}: sim_value, ci_low and ci_high must be numbers ({exc})") from exc
    return rows


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
        facts: ``facts.json`` (the world's calibration facts), None if the folder has none.
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
    facts: list[FactRow] | None = None

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
    if (folder / FACTS_FILE).is_file():
        data.facts = read_facts(folder / FACTS_FILE)
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
