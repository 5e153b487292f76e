"""OPE validated against the simulator's truth: the table's shape and statements (fast), and interval coverage
near 95% for a candidate close to the logger (statistical: ``-m statistical``)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import agents
from agents.ope.behaviour import EpsilonMixture
from experiments.cli import main
from experiments.ope_validation import ValidationResult, ValidationSpec, coverage_band, parse_sizes, run_validation
from regsim import load_world_config
from tests.experiments.conftest import REPO

WORLD = load_world_config(REPO / "configs" / "population" / "default.yaml")
#: A short run-off (each arrangement to its end or plan + 1 month), so that validation logs are cheap.
SHORT = WORLD.model_copy(update={"simulation": WORLD.simulation.model_copy(update={"runoff_months_after_plan": 1.0})})


def test_coverage_band_is_the_binomial_range_around_the_level() -> None:
    assert coverage_band(20) == (0.85, 1.0)
    lo, hi = coverage_band(200)
    assert 0.91 < lo < 0.95 < hi <= 0.98


def test_the_validation_table_has_a_row_per_cell_and_says_what_it_shows() -> None:
    spec = ValidationSpec(
        behaviours={"random": lambda seed: agents.make("random", seed=seed)},
        candidates={"static-dunning": lambda seed: agents.make("static-dunning")},
        sizes=(6, 12),
        seeds=(0, 1),
        n_bootstrap=20,
        estimators=("ips", "dr"),
        interactions=False,
    )
    result = run_validation(SHORT, spec)
    frame = result.frame()
    per_decision = frame[frame["estimand"] == "per-decision"]
    assert set(per_decision["estimator"]) == {"ips", "dr"}
    assert set(per_decision["arrangements"]) == {6, 12}
    assert (per_decision["runs"] + per_decision["refused"] == 2).all()
    assert set(frame["estimand"]) <= {"per-decision", "per-arrangement"}
    truth = per_decision["truth"].unique()
    assert len(truth) == 1 and truth[0] > 0  # one truth per logger and candidate, pooled over the seeds
    assert set(per_decision["truth_kind"]) == {"branched"}  # (a fixed logger: the candidate on the logged contexts)
    assert (per_decision["truth_se"] > 0).all()
    assert set(frame.loc[frame["estimand"] == "per-arrangement", "truth_kind"]) <= {"on-policy"}
    statements = result.statements()
    assert len(statements) == frame.groupby(["behaviour", "candidate", "estimand", "estimator"]).ngroups
    assert all(("arrangements" in s and "coverage" in s) or "refused" in s for s in statements)
    assert result.best() in {"ips", "dr"}
    # Saved and read back (regsim ope --validation), the table is the same; its Markdown has a row per estimator.
    back = ValidationResult.from_json(json.loads(json.dumps(result.to_json(world="short"), default=float)))
    pd.testing.assert_frame_equal(back.frame(), frame)
    assert back.seeds == result.seeds and back.best() == result.best()
    assert back.size_for(8) == 6 and back.size_for(100) == 12 and back.size_for(3) == 6
    text = result.markdown()
    assert "| `ips` | branched |" in text and "| `dr` | static-dunning |" in text and "static-dunning 12" in text


@pytest.mark.parametrize("text", ["", "100,50", "1,2", "a,b", "10,10"])
def test_bad_sizes_are_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--sizes"):
        parse_sizes(text)


def test_the_command_refuses_an_unknown_logging_policy(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    assert main(["ope-validate", "--behaviours", "linucb", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--behaviours" in err and "epsilon-mixture" in err


@pytest.mark.statistical
def test_intervals_cover_the_truth_of_each_estimand_for_a_candidate_close_to_the_logger() -> None:
    """Logged by static dunning mixed with uniform draws half of the time, a candidate that mixes 40% of the time
    is estimated over 20 seeds of 300 arrangements. Each estimator is held against the truth of its own estimand:

    * per-decision ``ips`` and ``dr`` against the branched truth (the candidate's reward on the logged contexts,
      :mod:`experiments.ope_truth`);
    * per-arrangement ``pdis`` and ``pddr`` against the on-policy run-off net recovery.

    Each must cover its truth as often as a 95% interval should (the binomial band: at least 17 of 20) with a small
    bias. Fails if a propensity, a reward, the step order or the replay of a context is wrong (the weights then
    bias the estimates), if the bootstrap over arrangements is too narrow, or if the truth is the wrong estimand
    (the on-policy per-decision mean, which the previous version of this validation used, is not what IPS/DR
    estimate)."""
    spec = ValidationSpec(
        behaviours={"mix-0.5": lambda seed: EpsilonMixture(base="static-dunning", epsilon=0.5, seed=seed)},
        candidates={"mix-0.4": lambda seed: EpsilonMixture(base="static-dunning", epsilon=0.4, seed=1_000 + seed)},
        sizes=(300,),
        seeds=tuple(range(20)),
        n_bootstrap=200,
        estimators=("ips", "dr"),
        interactions=False,
        truth_sample=2_000,
    )
    result = run_validation(SHORT, spec)
    print(result.frame().to_string())
    rows = {(r.estimand, r.estimator): r for r in result.rows}
    lo, _ = coverage_band(20)
    for cell in (
        ("per-decision", "ips"),
        ("per-decision", "dr"),
        ("per-arrangement", "pdis"),
        ("per-arrangement", "pddr"),
    ):
        row = rows[cell]
        assert row.truth_kind == ("branched" if cell[0] == "per-decision" else "on-policy"), row
        assert row.runs == 20, row
        assert row.coverage >= lo, row
        assert abs(row.relative_bias) < 0.05, row
