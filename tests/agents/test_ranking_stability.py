"""A run-off verdict does not hinge on where the cap lies: the paired ranking of the rule-based policies on
completion and net recovery per arrangement is the same at run-off and with a cap half as long again."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import agents
from agents.paired_differences import paired_mean_difference
from regsim import WorldConfig, simulate

POLICIES = ("static-dunning", "payday-aligned", "random", "silent")
KPIS = {"completion": "completed", "net recovery per arrangement": "net_recovery_eur"}
N, SEEDS = 2000, (0, 1)


def _pooled(cap_factor: float) -> dict[str, pd.DataFrame]:
    world = WorldConfig()
    cap = world.simulation.runoff_cap(cap_factor)
    return {
        name: pd.concat(
            [simulate(world, agents.make(name), arrangements=N, runoff=cap, seed=s).outcomes() for s in SEEDS],
            ignore_index=True,
        )
        for name in POLICIES
    }


def _ranking(pooled: dict[str, pd.DataFrame], column: str) -> tuple[list[str], dict[tuple[str, str], int]]:
    """The policies best first, and per pair the sign of the paired difference where its 95% interval excludes
    0 (0 where it does not: no verdict)."""
    means = {name: float(o[column].mean()) for name, o in pooled.items()}
    order = sorted(means, key=lambda n: -means[n])
    signs = {}
    for a, b in itertools.combinations(POLICIES, 2):
        d = paired_mean_difference(pooled[a][column].to_numpy(), pooled[b][column].to_numpy())
        signs[(a, b)] = int(np.sign(d.diff)) if d.ci_low > 0 or d.ci_high < 0 else 0
    return order, signs


@pytest.mark.statistical
def test_paired_ranking_is_the_same_at_runoff_and_with_a_longer_cap() -> None:
    runoff, longer = _pooled(1.0), _pooled(1.5)
    for kpi, column in KPIS.items():
        order, signs = _ranking(runoff, column)
        order_long, signs_long = _ranking(longer, column)
        assert order == order_long, kpi
        assert signs == signs_long, kpi
        # A ranking, not a tie: every neighbour in the order is told apart by its paired interval.
        for better, worse in itertools.pairwise(order):
            key = (better, worse) if (better, worse) in signs else (worse, better)
            assert signs[key] != 0, (kpi, better, worse)
