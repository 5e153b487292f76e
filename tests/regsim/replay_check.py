"""A check shared by the replay tests: a log replayed through the ledger derives every event it holds again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from regsim import WorldConfig
from regsim.replay import LogReplay
from regsim.simulate import SimulationResult

_COMPARED = ("arrangement_id", "time", "installment", "amount_eur", "deferral_days", "collection_costs_eur")


def _key(event: str, row: dict[str, Any]) -> tuple[Any, ...]:
    def value(n: str) -> float | None:
        v = row.get(n)
        unset = v is None or v != v or (n in ("installment", "deferral_days") and v == -1)
        return None if unset else round(float(v), 9)

    return (event, *(value(n) for n in _COMPARED))


def assert_replay_rederives_the_log(config: WorldConfig, result: SimulationResult) -> set[str]:
    """Replay ``result``'s log from its outside events only; assert that the events the replay's ledger writes
    are exactly the logged ones and that it ends in the world's state. Returns the logged event kinds."""
    ids = result.world.gid.tolist()
    replay = LogReplay(config, ids, result.world.days, keep_events=True)
    replay.feed(result.events, contexts=False)
    replay.ledger.catch_up(np.arange(len(ids)), result.world.days - 1)
    logged = Counter(_key(r["event"], r) for r in result.events.to_pylist())
    derived: Counter[tuple[Any, ...]] = Counter()
    for event, rows, cols in replay.events:
        for i in range(len(rows)):
            row = {n: (v if np.ndim(v) == 0 else v[i]) for n, v in cols.items() if n != "channel"}
            derived[_key(event.name.lower(), {n: v for n, v in row.items() if not isinstance(v, str)})] += 1
    assert derived == logged
    # And the state it ends in is the world's.
    for name, value in result.world.ledger.row_arrays().items():
        if name not in ("booked_day", "_time_of"):
            np.testing.assert_array_equal(replay.ledger.row_arrays()[name], value, err_msg=name)
    return {k[0] for k in logged}
