"""The one-step oracle: simulation only, never masked, and an upper reference that beats today's process."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import agents
from regsim import WorldConfig, simulate
from regsim.metrics import arrangement_outcomes
from regsim.world import World


def test_refused_outside_simulation() -> None:
    world = World(WorldConfig(), None, arrangements=50, months=1, seed=0)
    batch = world.next_decision()
    assert batch is not None
    with pytest.raises(RuntimeError, match="refused outside simulation"):
        agents.make("one-step-oracle").decide_batch(batch)


def test_never_chooses_a_masked_option_and_runs_in_the_population() -> None:
    oracle = agents.make("one-step-oracle")
    result = simulate(WorldConfig(), oracle, arrangements=400, months=6, seed=1)  # the world checks every rule
    assert result.kpis["completion_rate"] > 0


@cache
def _outcomes(name: str) -> pd.DataFrame:
    return arrangement_outcomes(
        simulate(WorldConfig(), agents.make(name), arrangements=8_000, months=12, seed=0).events
    )


@pytest.mark.statistical
@pytest.mark.parametrize(("better", "worse"), [("one-step-oracle", "static-dunning"), ("static-dunning", "silent")])
@pytest.mark.parametrize("column", ["completed", "collected_eur"])
def test_oracle_beats_static_dunning_beats_silent(better: str, worse: str, column: str) -> None:
    """Paired over the same 8,000 debtors and shocks: the 99% interval of the difference excludes zero."""
    diff = (_outcomes(better)[column] - _outcomes(worse)[column]).to_numpy(dtype=float)
    low = diff.mean() - stats.t.ppf(0.995, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    assert low > 0, (better, worse, column, diff.mean(), low)
