"""``LogReplay.contexts_at`` on one day (the server's usual group) gives what it gives for those rows among
decision points of several days: the same columns, dtypes, rows in order, and masks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

import agents
from regsim import simulate
from regsim.arrangement import ArrangementStatus
from regsim.config import load_world_config
from regsim.replay import LogReplay


def test_contexts_of_one_day_are_those_of_the_same_rows_among_several_days() -> None:
    config = load_world_config(Path(__file__).resolve().parents[2] / "configs" / "population" / "default.yaml")
    result = simulate(config, agents.make("static-dunning"), arrangements=120, months=1, seed=3)
    ids = sorted(set(result.events.column("arrangement_id").to_pylist()))
    replay = LogReplay(config, ids, 400)
    replay.feed(result.events, contexts=False)
    active = [a for a in ids if replay.ledger.status[replay.row[a]] == int(ArrangementStatus.ACTIVE)][:12]
    assert len(active) >= 6, "too few active arrangements in the run"
    day = int(max(result.events.column("time").to_pylist())) + 1
    kinds = [3 if k % 2 else 4 for k in range(len(active))]
    installments = [-1] * len(active)
    # Rows on day, day + 2, day, ...: the several-days path; those on ``day`` alone: the one-day path.
    days = [day + 2 * (k % 2) for k in range(len(active))]
    mixed = replay.subset(active).contexts_at(active, kinds, installments, days)
    on_day = [k for k in range(len(active)) if days[k] == day]
    alone = replay.subset(active).contexts_at(
        [active[k] for k in on_day], [kinds[k] for k in on_day], [-1] * len(on_day), [day] * len(on_day)
    )
    got, want = cast(dict[str, Any], alone.columns), cast(dict[str, Any], mixed.columns)
    assert list(got) == list(want)
    for name, values in got.items():
        assert values.dtype == want[name].dtype, name
        assert np.array_equal(values, want[name][on_day], equal_nan=True), name
    assert np.array_equal(alone.mask, mixed.mask[on_day])
