"""``regsim run``: the run-folder contract, identical results from the same config and seed, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from agents.artifact import load_policy
from experiments.cli import main
from tests.experiments.conftest import read_tables, regsim


@pytest.fixture(scope="module")
def reference(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    done = regsim("run", str(tiny_config), "--out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_run_folder_follows_the_contract(reference: Path) -> None:
    out = reference
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["evaluation"]["level"] == 0.95  # defaults filled in
    run = json.loads((out / "run.json").read_text())
    for key in ("command", "config_path", "seed", "seeds", "packages", "git", "python", "platform", "started"):
        assert key in run
    assert run["status"] == "finished" and run["finished"] and run["wall_seconds"] > 0
    assert run["seed"] == 4 and set(run["git"]) == {"commit", "dirty"}
    assert {"train/ucb/bandit", "train/ucb/world", "train/mppo/sb3", "train/mppo/world", "evaluation"} <= set(
        run["seeds"]
    )
    assert len(run["seeds"]["evaluation"]) == 2
    log = (out / "logs" / "run.log").read_text()
    assert "agent ucb: training linucb for 400 decisions" in log and "finished in" in log
    for agent in ("ucb", "mppo"):
        assert list((out / "tb" / agent).rglob("events.out.tfevents.*")), agent
        policy = load_policy(out / "agents" / agent / "policy")
        assert policy.name in ("linucb", "sb3-maskable-ppo")
        assert any((out / "agents" / agent / "checkpoints").iterdir())
        curve = pd.read_parquet(out / "agents" / agent / "learning_curve.parquet")
        assert list(curve.columns) == ["step", "metric", "value"]
        assert curve["step"].dtype == "int64" and curve["value"].dtype == "float64"
        assert "reward_per_decision" in set(curve["metric"])
        assert curve["step"].is_monotonic_increasing
    tables = read_tables(out)
    assert {"evaluation.parquet", "outcomes.parquet", "mix.parquet", "resources.parquet"} <= set(tables)
    importance = tables["feature_importance.parquet"]
    assert list(importance.columns) == ["policy", "feature", "importance", "rank"]
    assert set(importance["policy"]) == {"ucb", "mppo"}
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["baseline"] == "static-dunning"
    assert set(kpis) == {"baseline", "static-dunning", "ucb", "mppo", "silent"}


def test_same_config_and_seed_give_identical_results(reference: Path, tiny_config: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    done = regsim("run", str(tiny_config), "--out", str(again), "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (again / "kpis.json").read_text() == (reference / "kpis.json").read_text()
    ref = (reference / "evaluation" / "evaluation.json").read_text()
    assert (again / "evaluation" / "evaluation.json").read_text() == ref
    a, b = read_tables(reference), read_tables(again)
    assert set(a) == set(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    for agent in ("ucb", "mppo"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(reference / "agents" / agent / "learning_curve.parquet"),
            pd.read_parquet(again / "agents" / agent / "learning_curve.parquet"),
            check_exact=True,
        )


def test_another_seed_gives_other_results(reference: Path, tiny_config: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    done = regsim("run", str(tiny_config), "--out", str(other), "--quiet", "--set", "seed=5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (other / "kpis.json").read_text() != (reference / "kpis.json").read_text()


def _checkpoints(run_dir: Path, agent: str) -> int:
    return sum(1 for p in (run_dir / "agents" / agent / "checkpoints").iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("where", ["bandit", "maskable-ppo"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(
    where: str, reference: Path, tiny_config: Path, tmp_path: Path
) -> None:
    # Killed (SIGKILL, by tests.experiments.killed_run) right after the first checkpoint of the bandit, or of
    # MaskablePPO (after all of the bandit's), mid-training in both cases.
    assert _checkpoints(reference, "ucb") >= 2 and _checkpoints(reference, "mppo") >= 2
    kill_after = 1 if where == "bandit" else _checkpoints(reference, "ucb") + 1
    out = tmp_path / "killed"
    done = regsim("run", str(tiny_config), "--out", str(out), "--quiet", kill_after_checkpoints=kill_after)
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    assert not (out / "kpis.json").exists()
    agent = "ucb" if where == "bandit" else "mppo"
    assert _checkpoints(out, agent) == 1 and not (out / "agents" / agent / "policy").exists()

    resumed = regsim("run", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and len(run["resumed"]) == 1
    assert run["command"][-1] == "--quiet" and "--resume" in run["resumed"][0]["command"]
    assert run["command"][1:3] == ["run", str(tiny_config)]
    assert (out / "kpis.json").read_text() == (reference / "kpis.json").read_text()
    a, b = read_tables(reference), read_tables(out)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)
    for agent in ("ucb", "mppo"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(reference / "agents" / agent / "learning_curve.parquet"),
            pd.read_parquet(out / "agents" / agent / "learning_curve.parquet"),
            check_exact=True,
        )
    ref_weights = (reference / "agents" / "mppo" / "policy" / "weights.pt").read_bytes()
    assert (out / "agents" / "mppo" / "policy" / "weights.pt").read_bytes() == ref_weights


def test_report_rewrites_the_report_of_a_run_folder(reference: Path, tmp_path: Path) -> None:
    done = regsim("report", str(reference))
    assert done.returncode == 0, done.stderr[-3000:]
    html = (reference / "report.html").read_text()
    assert "Does the runner reproduce itself?" in html and "mppo" in html
    assert regsim("report", str(tmp_path)).returncode == 2


def test_an_existing_run_folder_is_refused_and_resume_needs_a_run(
    reference: Path, tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tiny_config), "--out", str(reference), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["run", "--resume", str(reference / "nothing-here")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["run", str(tiny_config), "--resume", str(reference)]) == 2
    assert "give no CONFIG" in capsys.readouterr().err
