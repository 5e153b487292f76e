"""``regsim evaluate`` and ``regsim train`` run as a subprocess like a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from agents.evaluate import Evaluation
from experiments.cli import main
from regsim import WorldConfig

REPO = Path(__file__).resolve().parents[2]
TINY = ("--arrangements", "80", "--months", "2")


def regsim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("evaluate") / "run"
    done = regsim(
        "evaluate", "--policies", "silent,payday-aligned", *TINY, "--seeds", "2", "--out", str(out), "--quiet"
    )
    return done, out


def test_evaluate_exits_zero_prints_the_table_and_writes_both_files(
    evaluated: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = evaluated
    assert done.returncode == 0, done.stderr
    for name in ("evaluation.parquet", "evaluation.json", "provenance.json"):
        assert (out / name).is_file(), name
    lines = done.stdout.splitlines()
    for policy in ("static-dunning", "silent", "payday-aligned"):
        assert any(line.startswith(policy + " ") for line in lines), done.stdout
    assert "(baseline)" in done.stdout and "completion_rate" in done.stdout


def test_evaluate_outputs_agree_and_record_the_run(evaluated: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = evaluated
    from_parquet = Evaluation.read_parquet(out / "evaluation.parquet")
    from_json = Evaluation.read_json(out / "evaluation.json")
    pd.testing.assert_frame_equal(from_parquet.frame, from_json.frame)
    assert from_json.policies == ["static-dunning", "silent", "payday-aligned"]  # the baseline is added
    assert from_json.meta["seeds"] == [0, 1] and from_json.meta["arrangements_per_seed"] == 80
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["seeds"] == [0, 1] and provenance["config"]["name"] == "default"
    assert "evaluate" in provenance["command"]


def test_evaluate_takes_an_explicit_seed_list(tmp_path: Path) -> None:
    done = regsim(
        "evaluate", "--policies", "silent", "--arrangements", "40", "--months", "1", "--seed-list", "3,7",
        "--out", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert Evaluation.read_json(tmp_path / "evaluation.json").meta["seeds"] == [3, 7]


def in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``regsim ARGS`` run in this process (argument errors are fast to check here)."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_evaluate_bad_policy_exits_2_in_a_subprocess(tmp_path: Path) -> None:
    done = regsim("evaluate", "--policies", "loud-dunning", *TINY, "--out", str(tmp_path / "x"), "--quiet")
    assert done.returncode == 2
    assert "loud-dunning" in done.stderr and "'static-dunning'" in done.stderr
    assert not (tmp_path / "x").exists()


def bad_population(tmp_path: Path) -> str:
    data = WorldConfig().model_dump(mode="json")
    data["rules"]["quiet_weekdays"] = [7]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(bad)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--policies", "silent,loud-dunning"], ["loud-dunning", "'silent'", "'static-dunning'", "'payday-aligned'"]),
        (["--policies", "silent", "--baseline", "nobody"], ["'nobody'", "allowed"]),
        (["--policies", "silent", "--oracle", "nobody"], ["'nobody'", "allowed"]),
        (["--policies", "silent,silent"], ["more than once"]),
        (["--policies", ","], ["--policies"]),
        ([], ["--policies"]),
        (["--policies", "silent", "--seeds", "0"], ["--seeds"]),
        (["--policies", "silent", "--seed-list", "1,1"], ["--seed-list"]),
        (["--policies", "silent", "--seed-list", "one"], ["--seed-list"]),
        (["--policies", "silent", "--seeds", "2", "--seed-list", "1"], ["--seed-list", "not allowed"]),
        (["--policies", "silent", "--arrangements", "0"], ["--arrangements"]),
        (["--policies", "silent", "--months", "-1"], ["--months"]),
        (["--policies", "silent", "--population", "BAD"], ["rules.quiet_weekdays", "0..6"]),
        (["--policies", "silent", "--population", "atlantis"], ["not found", "atlantis.yaml"]),
    ],
    ids=[
        "unknown_policy",
        "unknown_baseline",
        "unknown_oracle",
        "duplicate_policy",
        "empty_policies",
        "missing_policies",
        "zero_seeds",
        "duplicate_seed_list",
        "seed_list_not_numbers",
        "seeds_and_seed_list",
        "zero_arrangements",
        "negative_months",
        "bad_population_field",
        "unknown_population",
    ],
)
def test_evaluate_bad_inputs_exit_2_naming_the_field(
    args: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [bad_population(tmp_path) if a == "BAD" else a for a in args]
    code, err = in_process(
        ["evaluate", "--arrangements", "10", "--months", "1", *args, "--out", str(tmp_path / "x"), "--quiet"], capsys
    )
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--policy", "sarsa", "--steps", "10"], ["'sarsa'", "'ppo'", "'maskable-ppo'", "'dqn'", "'linucb'"]),
        (["--policy", "ppo", "--steps", "0"], ["--steps"]),
        (["--policy", "ppo"], ["--steps"]),
        (["--steps", "10"], ["--policy"]),
        (["--policy", "ppo", "--steps", "10", "--seed", "-1"], ["--seed"]),
        (["--policy", "linucb", "--steps", "10", "--population", "BAD"], ["rules.quiet_weekdays", "0..6"]),
        (["--policy", "ppo", "--steps", "10", "--n-envs", "0"], ["n_envs"]),
        (["--policy", "ppo", "--steps", "10", "--n-envs", "4", "--workers", "8"], ["workers", "n_envs=4"]),
    ],
    ids=[
        "unknown_algorithm",
        "zero_steps",
        "missing_steps",
        "missing_policy",
        "negative_seed",
        "bad_population",
        "no_slots",
        "more_workers_than_slots",
    ],
)
def test_train_bad_inputs_exit_2_naming_the_field(
    args: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [bad_population(tmp_path) if a == "BAD" else a for a in args]
    code, err = in_process(["train", *args, "--out", str(tmp_path / "x"), "--quiet"], capsys)
    assert code == 2, err
    for fragment in fragments:
        assert fragment in err, err
    assert not (tmp_path / "x").exists()


def test_simulate_and_policies_still_work(tmp_path: Path) -> None:
    assert regsim("policies").returncode == 0
    done = regsim("simulate", "--arrangements", "20", "--months", "1", "--out", str(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--reward", "nope"], "reward"),
        (["--algo-kwargs", "{not json"], "--algo-kwargs"),
        (["--algo-kwargs", "[1, 2]"], "JSON object"),
    ],
)
def test_train_refuses_a_bad_reward_or_algo_kwargs(tmp_path: Path, extra: list[str], needle: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "train",
            "--policy",
            "maskable-ppo",
            "--steps",
            "10",
            "--out",
            str(tmp_path / "t"),
            "--quiet",
            "--no-tensorboard",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
