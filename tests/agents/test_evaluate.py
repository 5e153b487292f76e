"""Paired evaluation of policies (agents.evaluate): shape, exact zeros, pairing, determinism, outputs, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import agents
from agents.base import BasePolicy
from agents.evaluate import (
    COLUMNS,
    DEFAULT_SEGMENTS,
    KPI_KINDS,
    DebtBands,
    Evaluation,
    evaluate,
    paired_mean_difference,
    paired_ratio_difference,
)
from agents.hindsight import HINDSIGHT_ORACLE, HindsightSettings
from agents.rules_based import StaticDunning
from regsim import KPI_NAMES, WorldConfig, kpis_by_segment, simulate
from regsim.decision import ContextBatch, DecisionBatch

WORLD = WorldConfig()
SEEDS = (0, 1)
N, MONTHS = 400, 6
POLICIES = ("static-dunning", "silent", "payday-aligned", "random", "static-dunning-again")
DEBTOR_TYPES = ("forgetful", "liquidity_constrained", "reliable", "shock_prone", "unwilling")


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    # "static-dunning-again" is the same deterministic policy made by a factory: its diffs must be exactly 0.
    # The hindsight oracle with a shallow search (a few seconds): the gap arithmetic does not care how deep.
    policies = {name: name for name in POLICIES[:-1]} | {"static-dunning-again": StaticDunning}
    return evaluate(
        policies, WORLD, N, SEEDS, months=MONTHS, oracle=HINDSIGHT_ORACLE, hindsight=HindsightSettings(max_decisions=1)
    )


def finite(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    keep = np.isfinite(frame[list(columns)].to_numpy()).all(axis=1)
    return frame.loc[keep]


# -- shape --------------------------------------------------------------------------------------------------------
def test_frame_has_one_row_per_policy_segment_and_kpi(evaluation: Evaluation) -> None:
    f = evaluation.frame
    assert tuple(f.columns) == COLUMNS
    assert evaluation.policies == [*POLICIES, HINDSIGHT_ORACLE]
    assert evaluation.segments == [
        "all",
        *(f"debtor_type={t}" for t in DEBTOR_TYPES),
        "debt_eur=<500",
        "debt_eur=500-1500",
        "debt_eur=>1500",
    ]
    assert len(f) == (len(POLICIES) + 1) * len(evaluation.segments) * len(KPI_NAMES)
    assert list(f[(f.policy == "silent") & (f.segment == "all")].kpi) == list(KPI_NAMES)
    assert f["n_arrangements"].dtype == np.int64
    assert all(f[c].dtype == np.float64 for c in ("value", "diff", "ci_low", "ci_high", "gap_closed"))


def test_segment_sizes_add_up_to_the_pooled_population(evaluation: Evaluation) -> None:
    f = evaluation.frame[(evaluation.frame.policy == "silent") & (evaluation.frame.kpi == "completion_rate")]
    sizes = dict(zip(f.segment, f.n_arrangements, strict=True))
    assert sizes["all"] == N * len(SEEDS)
    for prefix in ("debtor_type=", "debt_eur="):
        assert sum(v for k, v in sizes.items() if k.startswith(prefix)) == N * len(SEEDS)


def test_every_kpi_has_a_kind() -> None:
    assert set(KPI_KINDS) == set(KPI_NAMES)


# -- exact zeros and intervals ------------------------------------------------------------------------------------
def test_baseline_differences_are_exactly_zero_with_zero_width(evaluation: Evaluation) -> None:
    base = evaluation.frame[evaluation.frame.policy == "static-dunning"]
    assert (base["diff"] == 0.0).all() and (base["ci_low"] == 0.0).all() and (base["ci_high"] == 0.0).all()


def test_a_policy_compared_with_itself_differs_by_exactly_zero(evaluation: Evaluation) -> None:
    f = evaluation.frame
    again = f[f.policy == "static-dunning-again"].reset_index(drop=True)
    base = f[f.policy == "static-dunning"].reset_index(drop=True)
    pd.testing.assert_series_equal(again["value"], base["value"])
    defined = again[np.isfinite(again["value"])]
    assert (defined[["diff", "ci_low", "ci_high"]] == 0.0).all().all()


def test_intervals_contain_the_point_estimate(evaluation: Evaluation) -> None:
    f = finite(evaluation.frame, "diff", "ci_low", "ci_high")
    assert len(f) > 0.9 * len(evaluation.frame)
    assert ((f["ci_low"] <= f["diff"]) & (f["diff"] <= f["ci_high"])).all()
    whole = evaluation.frame[(evaluation.frame.segment == "all") & (evaluation.frame.policy == "random")]
    assert np.isfinite(whole[["value", "diff", "ci_low", "ci_high"]]).all().all()
    assert (whole["ci_high"] > whole["ci_low"]).all()  # random differs from static-dunning everywhere


def test_differences_are_value_differences(evaluation: Evaluation) -> None:
    """For every KPI kind the point difference is the difference of the reported values."""
    for policy in POLICIES:
        for kpi in KPI_NAMES:
            mine, base = evaluation.row(policy, kpi), evaluation.row("static-dunning", kpi)
            assert mine["diff"] == pytest.approx(mine["value"] - base["value"], rel=1e-9, abs=1e-9), (policy, kpi)


def test_static_dunning_beats_silent_on_completion(evaluation: Evaluation) -> None:
    silent = evaluation.row("silent", "completion_rate")
    assert silent["diff"] < 0 and silent["ci_high"] < 0


def test_gap_closed_is_the_share_of_the_oracles_difference(evaluation: Evaluation) -> None:
    f = evaluation.frame
    oracle = f[f.policy == HINDSIGHT_ORACLE]
    moved = oracle[(oracle["diff"] != 0) & np.isfinite(oracle["diff"])]
    assert len(moved) > 0 and (moved["gap_closed"] == 1.0).all()
    assert oracle[oracle["diff"] == 0]["gap_closed"].isna().all()
    base = f[(f.policy == "static-dunning") & f["gap_closed"].notna()]
    assert (base["gap_closed"] == 0.0).all()
    row = evaluation.row("random", "contacts_per_arrangement")
    expected = row["diff"] / evaluation.row(HINDSIGHT_ORACLE, "contacts_per_arrangement")["diff"]
    assert row["gap_closed"] == pytest.approx(expected)


# -- agreement with regsim.metrics and determinism ----------------------------------------------------------------
def test_values_on_one_seed_are_the_simulators_kpis() -> None:
    result = simulate(WORLD, agents.make("payday-aligned"), arrangements=150, months=3, seed=5)
    ev = evaluate(["payday-aligned"], WORLD, 150, [5], months=3)
    got = ev.frame[(ev.frame.policy == "payday-aligned")].set_index(["segment", "kpi"])["value"]
    for kpi, value in result.kpis.items():
        assert got[("all", kpi)] == pytest.approx(value, rel=1e-12, nan_ok=True), kpi
    segment = dict(zip(result.ground_truth.arrangement_id, result.ground_truth.debtor_type.astype(str), strict=True))
    by_type = kpis_by_segment(result.events, segment)
    for debtor_type, row in by_type.iterrows():
        for kpi in KPI_NAMES:
            assert got[(f"debtor_type={debtor_type}", kpi)] == pytest.approx(row[kpi], rel=1e-12, nan_ok=True)


def test_same_seeds_give_identical_results() -> None:
    def run() -> Evaluation:
        return evaluate(["random", "silent"], WORLD, 150, [2, 3], months=2)

    first, second = run(), run()
    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.meta == second.meta


class CountingPolicy(BasePolicy):
    """Silent, counting its calls: shows whether a run got a fresh copy."""

    name: ClassVar[str] = "counting"
    version: ClassVar[str] = "1"

    def __init__(self) -> None:
        self.calls = 0

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        self.calls += 1
        return agents.make("silent").decide_batch(contexts)


def test_every_run_starts_from_a_fresh_policy() -> None:
    instance = CountingPolicy()
    made: list[CountingPolicy] = []

    def factory() -> CountingPolicy:
        made.append(CountingPolicy())
        return made[-1]

    evaluate({"copied": instance, "made": factory}, WORLD, 60, [0, 1, 2], months=1, segments={})
    assert instance.calls == 0  # deep-copied, never run itself
    assert len(made) == 3 and all(p.calls > 0 for p in made)


def test_baseline_is_added_when_missing_and_segments_can_be_dropped() -> None:
    ev = evaluate(["silent"], WORLD, 60, [0], months=1, segments={})
    assert ev.policies == ["static-dunning", "silent"] and ev.segments == ["all"]
    assert ev.frame["gap_closed"].isna().all()


# -- outputs ------------------------------------------------------------------------------------------------------
def test_parquet_round_trip(evaluation: Evaluation, tmp_path: Path) -> None:
    back = Evaluation.read_parquet(evaluation.to_parquet(tmp_path / "e.parquet"))
    pd.testing.assert_frame_equal(back.frame, evaluation.frame)
    assert (back.baseline, back.oracle, back.meta) == (evaluation.baseline, evaluation.oracle, evaluation.meta)


def test_json_round_trip_and_layout(evaluation: Evaluation, tmp_path: Path) -> None:
    path = evaluation.to_json(tmp_path / "e.json")
    data = json.loads(path.read_text())  # strict JSON: no NaN literals
    assert data["baseline"] == "static-dunning" and data["oracle"] == HINDSIGHT_ORACLE
    silent = data["policies"]["silent"]
    assert list(silent) == [*KPI_NAMES, "segments"]
    assert set(silent["completion_rate"]) == {"value", "diff", "ci_low", "ci_high", "gap_closed", "n_arrangements"}
    assert silent["segments"]["debtor_type=reliable"]["completion_rate"]["n_arrangements"] > 0
    back = Evaluation.read_json(path)
    pd.testing.assert_frame_equal(back.frame, evaluation.frame)
    assert (back.baseline, back.oracle, back.meta) == (evaluation.baseline, evaluation.oracle, evaluation.meta)


def test_table_shows_policies_as_rows_with_paired_cells(evaluation: Evaluation) -> None:
    text = evaluation.table()
    lines = text.splitlines()
    assert "800 arrangements over 2 seed(s)" in lines[0]
    for policy in POLICIES:
        assert any(line.startswith(policy + " ") for line in lines), policy
    assert "(baseline)" in text and "gap closed (completion_rate)" in text
    silent = evaluation.row("silent", "completion_rate")
    assert f"({silent['diff']:+.3f} [{silent['ci_low']:+.3f}, {silent['ci_high']:+.3f}])" in text
    assert evaluation.table("reliable") == evaluation.table("debtor_type=reliable")
    with pytest.raises(KeyError, match="allowed"):
        evaluation.table("nobody")


# -- invalid inputs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"policies": ["silent", "loud-dunning"]}, agents.UnknownPolicyError, "'static-dunning'"),
        ({"baseline": "nobody"}, agents.UnknownPolicyError, "'nobody'"),
        ({"oracle": "nobody"}, agents.UnknownPolicyError, "'nobody'"),
        ({"policies": ["silent", "silent"]}, ValueError, "more than once"),
        ({"policies": "silent"}, TypeError, "not one string"),
        ({"policies": {"x": 3}}, TypeError, "expected a Policy"),
        ({"n_arrangements": 0}, ValueError, "n_arrangements"),
        ({"months": 0}, ValueError, "months"),
        ({"seeds": []}, ValueError, "seeds"),
        ({"seeds": [1, 1]}, ValueError, "seeds"),
        ({"seeds": [-1]}, ValueError, "seeds"),
        ({"level": 1.5}, ValueError, "level"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_invalid_inputs_are_refused_before_simulating(kwargs: dict, error: type[Exception], fragment: str) -> None:
    args: dict = {"policies": ["silent"], "population": WORLD, "n_arrangements": 10, "seeds": [0], "months": 1}
    with pytest.raises(error, match=fragment):
        evaluate(**(args | kwargs))


def test_debt_bands() -> None:
    assert DebtBands().labels == ("<500", "500-1500", ">1500")
    assert DebtBands((100.0, 250.5, 1000.0)).labels == ("<100", "100-250.5", "250.5-1000", ">1000")
    assert set(DEFAULT_SEGMENTS) == {"debtor_type", "debt_eur"}
    for bad in ((), (500.0, 500.0), (1500.0, 500.0)):
        with pytest.raises(ValueError, match="edges"):
            DebtBands(bad)


# -- the estimators -----------------------------------------------------------------------------------------------
def test_paired_mean_difference_is_the_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=300)
    y = base + 0.1 + rng.normal(scale=0.5, size=300)
    got = paired_mean_difference(y, base)
    ci = stats.ttest_rel(y, base).confidence_interval(0.95)
    assert got.diff == pytest.approx(float(np.mean(y - base)))
    assert (got.ci_low, got.ci_high) == pytest.approx((ci.low, ci.high))
    scaled = got.scaled(10.0)
    assert (scaled.diff, scaled.ci_low, scaled.ci_high) == pytest.approx(
        (10 * got.diff, 10 * got.ci_low, 10 * got.ci_high)
    )


def test_estimators_degenerate_cases() -> None:
    one = paired_mean_difference([1.0], [0.0])
    assert one.diff == 1.0 and math.isnan(one.ci_low)
    assert math.isnan(paired_mean_difference([], []).diff)
    assert math.isnan(paired_ratio_difference([1.0, 2.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]).diff)
    same = paired_ratio_difference([1.0, 3.0], [2.0, 2.0], [1.0, 3.0], [2.0, 2.0])
    assert (same.diff, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="equal length"):
        paired_mean_difference([1.0, 2.0], [1.0])


def test_delta_method_agrees_with_a_paired_bootstrap() -> None:
    """The delta-method standard error of a ratio difference is close to a paired bootstrap's."""
    rng = np.random.default_rng(1)
    n = 2000
    x = rng.poisson(3.0, n).astype(float) + 1.0
    xb = x + rng.poisson(0.5, n)
    y = rng.binomial(x.astype(int), 0.7).astype(float)
    yb = rng.binomial(xb.astype(int), 0.6).astype(float)
    got = paired_ratio_difference(y, x, yb, xb)
    assert got.diff == pytest.approx(y.sum() / x.sum() - yb.sum() / xb.sum())
    idx = rng.integers(0, n, size=(1000, n))
    boot = y[idx].sum(1) / x[idx].sum(1) - yb[idx].sum(1) / xb[idx].sum(1)
    assert got.se == pytest.approx(float(boot.std(ddof=1)), rel=0.1)


# -- statistical checks -------------------------------------------------------------------------------------------
@pytest.mark.statistical
def test_static_dunning_beats_silent_at_full_size() -> None:
    ev = evaluate(["silent"], WORLD, 2000, [10, 11], months=12, segments={})
    row = ev.row("silent", "completion_rate")
    assert row["ci_high"] < 0
    assert ev.row("silent", "breakdown_rate")["ci_low"] > 0


@pytest.mark.statistical
@pytest.mark.parametrize("kind", ["mean", "ratio"])
def test_intervals_cover_the_truth_95_percent_of_the_time(kind: str) -> None:
    """Coverage on synthetic paired data with known expected difference (skewed, correlated, count-like)."""
    rng = np.random.default_rng(2)
    reps, n, hits = 2000, 400, 0
    for _ in range(reps):
        shared = rng.gamma(2.0, 1.0, n)  # the debtor, common to both policies
        if kind == "mean":
            y, yb = rng.poisson(shared * 1.2), rng.poisson(shared)
            truth = 0.2 * 2.0  # E[1.2 s] - E[s], E[s] = 2
            d = paired_mean_difference(y, yb)
        else:
            x, xb = rng.poisson(shared) + 1.0, rng.poisson(shared) + 1.0
            y, yb = rng.binomial(x.astype(int), 0.7), rng.binomial(xb.astype(int), 0.6)
            truth = 0.1  # E[Y] / E[X] = p for each policy
            d = paired_ratio_difference(y, x, yb, xb)
        hits += d.ci_low <= truth <= d.ci_high
    assert 0.93 <= hits / reps <= 0.97
