"""Cumulative incidence by Aalen-Johansen: the crude share without censoring, below the naive 1-KM with rivals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lifelines")

import agents
from agents.incidence import ENDS, IncidenceCurves, cumulative_incidence, naive_incidence
from regsim import WorldConfig, simulate
from regsim.runoff import RunoffCap


def outcomes(n: int, censor: float, seed: int) -> pd.DataFrame:
    """Ends drawn with known shares; a share ``censor`` censored at uniform times before their end."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(np.array(["completed", "broken", "referred"], dtype=object), size=n, p=[0.6, 0.3, 0.1])
    months = np.where(kind == "completed", rng.uniform(3, 12, n), rng.uniform(1, 8, n))
    cut = rng.uniform(size=n) < censor
    months = np.where(cut, months * rng.uniform(size=n), months)
    kind = np.where(cut, "censored", kind)
    return pd.DataFrame({"end_kind": kind, "months_to_end": np.round(months, 1)})  # (rounded: ties, as in logs)


def test_without_censoring_the_curve_at_the_cap_is_the_crude_share() -> None:
    o = outcomes(2000, censor=0.0, seed=1)
    curves = cumulative_incidence(o)
    assert isinstance(curves, IncidenceCurves) and curves.censored_share == {"all": 0.0}
    top = float(o.months_to_end.max())
    for end in ENDS:
        assert curves.at("all", end, top) == pytest.approx((o.end_kind == end).mean(), abs=1e-9), end
    total = sum(curves.at("all", end, top) for end in ENDS)
    assert total == pytest.approx(1.0)
    c = curves.curve("all", "completed")
    assert (np.diff(c.incidence) >= -1e-12).all() and (c.ci_low <= c.incidence + 1e-12).all()
    assert (c.ci_high >= c.incidence - 1e-12).all() and (c.ci_high - c.ci_low).iloc[-1] > 0


def test_under_competing_risks_it_differs_from_the_naive_one_minus_km() -> None:
    o = outcomes(2000, censor=0.2, seed=2)
    curves = cumulative_incidence(o)
    top = float(o.months_to_end.max())
    aj = curves.at("all", "completed", top)
    naive = naive_incidence(o, "completed", top)
    assert naive > aj + 0.05  # 1-KM counts broken plans as if they could still complete
    # Censoring hides ends: the crude share of observed completions understates the incidence.
    assert aj > (o.end_kind == "completed").mean() + 0.02
    assert sum(curves.at("all", end, top) for end in ENDS) <= 1.0 + 1e-9


def test_per_policy_from_a_runoff_and_reproducible() -> None:
    world, cap = WorldConfig(), RunoffCap()
    runs = {
        name: simulate(world, agents.make(name), arrangements=120, runoff=cap, seed=3).outcomes()
        for name in ("static-dunning", "silent")
    }
    curves = cumulative_incidence(runs)
    assert curves.policies == ["static-dunning", "silent"]
    for name, o in runs.items():
        if (o.end_kind == "censored").any():
            continue
        top = float(o.months_to_end.max())
        assert curves.at(name, "completed", top) == pytest.approx(o.completed.mean(), abs=1e-9)
    again = cumulative_incidence(runs)
    pd.testing.assert_frame_equal(curves.frame, again.frame)
    with pytest.raises(KeyError, match="allowed"):
        curves.curve("silent", "paid")
    with pytest.raises(ValueError, match="end_kind"):
        cumulative_incidence(pd.DataFrame({"end_kind": ["done"], "months_to_end": [1.0]}))
