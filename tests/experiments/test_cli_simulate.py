"""The ``regsim`` command line, run as a subprocess like a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from regsim import KPI_NAMES, WorldConfig
from regsim.eventlog import EVENT_SCHEMA

REPO = Path(__file__).resolve().parents[2]


def regsim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("simulate") / "run"
    done = regsim("simulate", "--arrangements", "300", "--months", "3", "--seed", "1", "--out", str(out), "--quiet")
    return done, out


def test_simulate_exits_zero_and_writes_outputs(simulated: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    done, out = simulated
    assert done.returncode == 0, done.stderr
    for name in ("events.parquet", "ground_truth.parquet", "kpis.json"):
        assert (out / name).is_file(), name
    assert "KPIs" in done.stdout and "completion_rate" in done.stdout


def test_simulate_kpis_json_has_exactly_the_kpi_names(simulated: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, out = simulated
    values = json.loads((out / "kpis.json").read_text())
    # The KPIs of a log, then the mean per-decision reward an on-policy run gives as OPE's truth (issue 19).
    assert list(values) == [*KPI_NAMES, "decision_value_eur"]
    assert all(isinstance(v, float) for v in values.values())
    assert 0.0 <= values["completion_rate"] <= 1.0


def test_simulate_outputs_are_an_event_log_and_its_ground_truth(
    simulated: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = simulated
    events = pq.read_table(out / "events.parquet")
    assert events.column_names == EVENT_SCHEMA.names
    frame = events.select(["event", "arrangement_id", "policy"]).to_pandas()
    assert (frame.event.astype(str) == "arrangement_created").sum() == 300
    assert set(frame.policy.dropna()) == {"static-dunning"}  # the default policy
    truth = pq.read_table(out / "ground_truth.parquet").to_pandas()
    assert len(truth) == 300 and "debtor_type" in truth.columns
    assert not set(truth.columns) - {"arrangement_id"} & set(events.column_names)


def test_simulate_is_reproducible(tmp_path: Path, simulated: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, first = simulated
    done = regsim(
        "simulate", "--arrangements", "300", "--months", "3", "--seed", "1", "--out", str(tmp_path), "--quiet"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "kpis.json").read_text()) == json.loads((first / "kpis.json").read_text())


def test_bad_policy_exits_2_listing_the_policies(tmp_path: Path) -> None:
    done = regsim(
        "simulate",
        "--policy",
        "loud-dunning",
        "--arrangements",
        "10",
        "--months",
        "1",
        "--out",
        str(tmp_path / "x"),
        "--quiet",
    )
    assert done.returncode == 2
    assert "loud-dunning" in done.stderr
    for name in ("silent", "static-dunning", "payday-aligned"):
        assert repr(name) in done.stderr, done.stderr
    assert not (tmp_path / "x").exists()


def test_bad_population_file_exits_2_naming_the_field(tmp_path: Path) -> None:
    data = WorldConfig().model_dump(mode="json")
    data["rules"]["quiet_weekdays"] = [7]
    data["population"]["types"]["reliable"]["foo"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = regsim(
        "simulate",
        "--population",
        str(bad),
        "--arrangements",
        "10",
        "--months",
        "1",
        "--out",
        str(tmp_path / "x"),
        "--quiet",
    )
    assert done.returncode == 2
    for fragment in ("rules.quiet_weekdays", "0..6", "population.types.reliable.foo", "allowed", str(bad)):
        assert fragment in done.stderr, done.stderr


def test_unknown_population_name_exits_2(tmp_path: Path) -> None:
    done = regsim(
        "simulate",
        "--population",
        "atlantis",
        "--arrangements",
        "10",
        "--months",
        "1",
        "--out",
        str(tmp_path / "x"),
        "--quiet",
    )
    assert done.returncode == 2
    assert "not found" in done.stderr and "atlantis.yaml" in done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--months", "0"], "--months"),
        (["--arrangements", "-5"], "--arrangements"),
        (["--seed", "-1"], "--seed"),
        (["--months", "three"], "--months"),
    ],
    ids=["zero_months", "negative_arrangements", "negative_seed", "months_not_a_number"],
)
def test_bad_numbers_exit_2(args: list[str], fragment: str, tmp_path: Path) -> None:
    done = regsim("simulate", *args, "--out", str(tmp_path / "x"), "--quiet")
    assert done.returncode == 2
    assert fragment in done.stderr


def test_policies_lists_the_rule_based_policies() -> None:
    done = regsim("policies")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"silent", "static-dunning", "payday-aligned"} <= listed
    assert "announce_days_before=3" in done.stdout


def test_policies_as_json() -> None:
    done = regsim("policies", "--json")
    assert done.returncode == 0, done.stderr
    specs = json.loads(done.stdout)
    assert {"silent", "static-dunning", "payday-aligned"} <= set(specs)
    assert specs["static-dunning"]["arguments"] == {"announce_days_before": "3", "send_hour": "10"}
    assert specs["silent"]["summary"]


def test_no_command_exits_2() -> None:
    done = regsim()
    assert done.returncode == 2
    assert "simulate" in done.stderr
