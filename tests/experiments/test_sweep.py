"""Sweeps: trials from grids, random ranges and seeds; local processes and Ray give the same table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from experiments.config import ExperimentConfigError, parse_experiment_config
from experiments.provenance import SeedBook
from experiments.sweep import SWEEP_COLUMNS, expand_trials
from tests.experiments.conftest import regsim

SWEEP: dict[str, Any] = {
    "name": "tiny-sweep",
    "question": "Does the width of LinUCB's bound matter?",
    "seed": 2,
    "env": {"months": 2},
    "agents": [{"name": "ucb", "kind": "linucb", "train": {"steps": 200, "checkpoint_every": 100, "months": 2}}],
    "evaluation": {"arrangements": 60, "months": 2, "seeds": 1},
    "outputs": {"tensorboard": False, "report": False, "feature_importance": {"enabled": False}},
    "sweep": {"grid": {"agents.ucb.hyperparameters.alpha": [0.5, 2.0]}, "seeds": [0]},
}


def _config(**sweep: Any) -> Any:
    return parse_experiment_config({**SWEEP, "sweep": sweep})


def test_trials_are_the_grid_times_the_draws_times_the_seeds() -> None:
    config = _config(
        grid={"agents.ucb.hyperparameters.alpha": [0.5, 2.0]},
        random={
            "agents.ucb.hyperparameters.feedback_window_days": {"low": 7, "high": 28, "integer": True},
            "agents.ucb.hyperparameters.ridge": {"low": 0.1, "high": 10, "log": True},
        },
        samples=3,
        seeds=[5, 6],
    )
    book = SeedBook(config.seed)
    trials = expand_trials(config, book)
    assert len(trials) == 2 * 3 * 2
    assert [t.id for t in trials[:3]] == ["t000", "t001", "t002"]
    assert [t.seed for t in trials[:4]] == [5, 6, 5, 6]
    for t in trials:
        agent = t.config.agent("ucb")
        assert agent.hyperparameters["alpha"] == t.params["agents.ucb.hyperparameters.alpha"]
        window = agent.hyperparameters["feedback_window_days"]
        assert isinstance(window, int) and 7 <= window <= 28
        assert 0.1 <= agent.hyperparameters["ridge"] <= 10
        assert t.config.seed == t.seed and t.config.sweep is None
    # The draws are the same for every grid point and seed, and the same again from the same config.
    assert len({t.params["agents.ucb.hyperparameters.ridge"] for t in trials}) == 3
    again = expand_trials(config, SeedBook(config.seed))
    assert [t.params for t in again] == [t.params for t in trials]
    assert "sweep/random" in book.seeds and book.seeds["sweep/seeds"] == [5, 6]


def test_without_seeds_every_trial_shares_one_derived_seed() -> None:
    trials = expand_trials(_config(grid={"evaluation.arrangements": [40, 50, 60]}), SeedBook(2))
    assert len({t.seed for t in trials}) == 1 and [t.config.evaluation.arrangements for t in trials] == [40, 50, 60]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ({"grid": {"agents.ucb.hyperparameters.alpha": [-1.0]}}, "agents.ucb.hyperparameters"),
        ({"grid": {"evaluation.arangements": [5]}}, "sweep.grid.evaluation.arangements"),
        ({"grid": {"agents.nobody.train.steps": [5]}}, "sweep.grid.agents.nobody.train.steps"),
        ({"random": {"evaluation.months": {"low": 0, "high": 0.4, "integer": True}}}, "evaluation.months"),
    ],
)
def test_bad_sweep_fields_are_named(sweep: dict[str, Any], expected: str) -> None:
    config = _config(**sweep)
    with pytest.raises(ExperimentConfigError, match=expected.replace(".", r"\.")):
        expand_trials(config, SeedBook(config.seed))


@pytest.fixture(scope="module")
def sweep_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def local_sweep(sweep_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "sweep"
    done = regsim("run", str(sweep_config), "--out", str(out), "--workers", "2", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_local_sweep_writes_trials_and_one_table(local_sweep: Path) -> None:
    table = pd.read_parquet(local_sweep / "sweep.parquet")
    assert list(table.columns) == [*SWEEP_COLUMNS[:2], "param.agents.ucb.hyperparameters.alpha", *SWEEP_COLUMNS[2:]]
    assert sorted(table["trial"].unique()) == ["t000", "t001"]
    assert set(table["policy"]) == {"ucb", "static-dunning"}
    assert sorted(table["param.agents.ucb.hyperparameters.alpha"].unique()) == [0.5, 2.0]
    run = json.loads((local_sweep / "run.json").read_text())
    assert run["status"] == "finished" and set(run["seeds"]["trials"]) == {"t000", "t001"}
    for trial in ("t000", "t001"):
        folder = local_sweep / "trials" / trial
        assert json.loads((folder / "run.json").read_text())["status"] == "finished"
        assert (folder / "kpis.json").is_file() and (folder / "agents" / "ucb" / "policy" / "manifest.json").is_file()
        assert not (folder / "report.html").exists()
    # The trials differ in what was swept: the two widths give different LinUCB results.
    ucb = table[(table["policy"] == "ucb") & (table["kpi"] == "contacts_per_arrangement")]
    assert ucb["value"].nunique() == 2


@pytest.mark.statistical  # not statistical, but slow: a local Ray instance takes ~20 s to start on 2 busy cores
def test_ray_executor_gives_the_local_table(sweep_config: Path, local_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "ray"
    done = regsim(
        "run", str(sweep_config), "--out", str(out), "--executor", "ray", "--workers", "2", "--quiet", timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "sweep.parquet"), pd.read_parquet(local_sweep / "sweep.parquet"), check_exact=True
    )


def test_a_finished_sweep_resumes_without_rerunning_trials(local_sweep: Path) -> None:
    before = (local_sweep / "trials" / "t000" / "kpis.json").stat().st_mtime_ns
    done = regsim("run", "--resume", str(local_sweep), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (local_sweep / "trials" / "t000" / "kpis.json").stat().st_mtime_ns == before
