"""Every experiment config in ``configs/experiments/`` runs end to end through ``regsim run`` on a tiny budget."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.experiments.conftest import EXPERIMENTS, regsim, tiny_overrides

CONFIGS = sorted(EXPERIMENTS.glob("*.yaml"))
#: Configs whose smoke run also writes report.html (it takes ~10 s on 2 cores; the report module's own tests
#: cover its content): the README's main command and the sweep (a sweep folder's report).
WITH_REPORT = ("quickstart", "sweep")


def test_the_examples_named_by_the_issue_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {
        "quickstart",
        "channel_timing_bandits",
        "deferral_reduction",
        "ppo_full",
        "saturated_capacity",
        "sweep",
    } <= names


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_smoke_runs_through_the_command_line(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = config.stem in WITH_REPORT
    done = regsim("run", str(config), "--out", str(out), "--quiet", *tiny_overrides(config, report=report))
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["wall_seconds"] > 0
    assert (out / "report.html").is_file() == report
    assert ("report:" in done.stdout) == report
    if "sweep" in (out / "config.yaml").read_text() and (out / "sweep.parquet").exists():
        table = pd.read_parquet(out / "sweep.parquet")
        assert table["trial"].nunique() >= 1 and {"value", "diff", "ci_low", "ci_high"} <= set(table.columns)
        assert any(c.startswith("param.") for c in table.columns)
        return
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["baseline"] in kpis
    assert "completion_rate" in kpis[kpis["baseline"]]
    assert "segment 'all'" in done.stdout  # the KPI table is printed
