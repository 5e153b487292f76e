"""The hindsight oracle: no policy beats it, its search lifts it above the floor, and its rollouts are exact."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

import agents
from agents.evaluate import evaluate
from agents.hindsight import HINDSIGHT_ORACLE, HindsightResult, HindsightSettings, hindsight_oracle
from agents.hindsight_rollouts import Script, play
from regsim import WorldConfig, simulate
from regsim.metrics import arrangement_outcomes, runoff_value
from regsim.runoff import RunoffCap, covering_months

WORLD = WorldConfig()
N, MONTHS, SEED = 200, 12, 3
EVALUATED = ("static-dunning", "payday-aligned", "random", "silent", "one-step-oracle")


@cache
def _evaluated() -> dict[str, pd.DataFrame]:
    return {
        name: arrangement_outcomes(simulate(WORLD, agents.make(name), arrangements=N, months=MONTHS, seed=SEED).events)
        for name in EVALUATED
    }


@cache
def _oracle() -> HindsightResult:
    return hindsight_oracle(WORLD, SEED, MONTHS, _evaluated(), HindsightSettings(max_decisions=2))


def test_no_evaluated_policy_beats_it_on_any_arrangement_or_on_the_mean() -> None:
    oracle = _oracle()
    assert np.allclose(oracle.value, runoff_value(oracle.outcomes))  # its outcomes are what it is scored on
    for name, outcomes in _evaluated().items():
        value = runoff_value(outcomes)
        assert (value <= oracle.value + 1e-9).all(), name
        assert value.mean() < oracle.value.mean(), name


def test_the_search_lifts_it_above_the_floor() -> None:
    oracle = _oracle()
    assert (oracle.value >= oracle.floor - 1e-9).all()
    assert oracle.value.mean() > oracle.floor.mean() + 1.0  # euros per arrangement
    assert (oracle.source == "lookahead").mean() > 0.05


def test_the_search_never_falls_below_where_it_started() -> None:
    """A rollout algorithm improves on its base: the life so far is always among the candidates."""
    oracle = _oracle()
    assert (oracle.lookahead >= oracle.start - 1e-9).all()
    assert oracle.lookahead.mean() > oracle.start.mean()


def test_deeper_search_finds_at_least_as_much() -> None:
    shallow = hindsight_oracle(WORLD, SEED, MONTHS, _evaluated(), HindsightSettings(max_decisions=1))
    assert (_oracle().lookahead >= shallow.lookahead - 1e-9).all()
    assert shallow.cost.lives < _oracle().cost.lives


def test_a_rollout_row_lives_the_same_life_whatever_the_other_rows_do() -> None:
    debtors = _evaluated()["silent"].index.to_numpy()[:20].astype(np.int64)
    bases = [agents.make("static-dunning"), agents.make("silent")]
    alone = play(
        WORLD, SEED, MONTHS, Script(debtors, np.zeros(20, np.int64), np.zeros((20, 0, 5), np.int64), None), bases
    )
    # The same debtors beside copies of themselves played by another base policy.
    both = play(
        WORLD,
        SEED,
        MONTHS,
        Script(np.tile(debtors, 2), np.repeat([0, 1], 20), np.zeros((40, 0, 5), np.int64), None),
        bases,
    )
    pd.testing.assert_frame_equal(alone.outcomes, both.outcomes.iloc[:20])
    assert not both.outcomes.iloc[20:].reset_index(drop=True).equals(alone.outcomes.reset_index(drop=True))


def test_evaluation_reports_the_oracle_its_gap_and_its_cost() -> None:
    ev = evaluate(
        ["silent"], WORLD, 60, [0], months=6, oracle=HINDSIGHT_ORACLE, hindsight=HindsightSettings(max_decisions=1)
    )
    assert ev.oracle == HINDSIGHT_ORACLE and HINDSIGHT_ORACLE in ev.policies
    row = ev.row(HINDSIGHT_ORACLE, "completion_rate")
    assert row["gap_closed"] == 1.0 or np.isnan(row["gap_closed"])
    cost = ev.meta["hindsight_oracle"]
    assert cost["wall_s"] > 0 and cost["lives_simulated"] >= 60 * 3


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"bases": ("one-step-oracle",)}, "bases"), ({"bases": ()}, "bases"), ({"max_decisions": -1}, "max_decisions")],
)
def test_invalid_settings_are_refused(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        HindsightSettings(**kwargs)


@pytest.mark.parametrize("oracle", ["one-step-oracle", "oracle", "payday-aligned"])
def test_only_the_hindsight_oracle_defines_the_gap(oracle: str) -> None:
    with pytest.raises(agents.UnknownPolicyError, match=HINDSIGHT_ORACLE):
        evaluate(["silent"], WORLD, 10, [0], months=1, oracle=oracle)


def test_rollout_rows_score_a_policy_as_the_world_does_at_run_off() -> None:
    """With a run-off cap, a base policy's rows give the World's outcomes (capacity does not bind at this size).

    The cap is short (half the plan), so that many arrangements are censored at it and what lies past it shows.
    """
    cap = RunoffCap(months_after_plan=0.0, cap_factor=0.5)
    world = simulate(WORLD, agents.make("static-dunning"), arrangements=N, runoff=cap, seed=SEED).outcomes()
    debtors = world.index.to_numpy().astype(np.int64)
    rows = play(
        WORLD,
        SEED,
        covering_months(WORLD, cap),
        Script(debtors, np.zeros(N, np.int64), np.zeros((N, 0, 5), np.int64), None),
        [agents.make("static-dunning")],
        cap=cap,
    )
    columns = ["completed", "broken", "collected_eur", "net_recovery_eur", "end_kind", "months_to_end"]
    pd.testing.assert_frame_equal(rows.outcomes.set_axis(world.index)[columns], world[columns])
