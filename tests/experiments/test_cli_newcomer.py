"""What a newcomer meets at the command line: every policy the README names is listed, and a refusal says why."""

from __future__ import annotations

import json
from pathlib import Path

from tests.experiments.conftest import regsim


def test_policies_lists_the_sb3_algorithms_that_regsim_train_trains() -> None:
    done = regsim("policies")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"ppo", "maskable-ppo", "dqn"} <= listed
    assert "regsim train --policy NAME" in done.stdout
    specs = json.loads(regsim("policies", "--json").stdout)
    assert all(specs[name]["trained"] for name in ("ppo", "maskable-ppo", "dqn"))


def test_report_on_an_evaluate_folder_says_why_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "evaluation.json").write_text("{}\n", encoding="utf-8")
    done = regsim("report", str(tmp_path))
    assert done.returncode == 2
    assert "`regsim evaluate` folder" in done.stderr and "regsim run" in done.stderr
