"""The fast paths of the draws and of event scheduling give exactly what the general code gives."""

from __future__ import annotations

import numpy as np

from regsim.engine import distinct_rank as _distinct_rank
from regsim.random import Purpose, Streams, _to_unit

_PURPOSES = (Purpose.NOTICE, Purpose.READ_DELAY, Purpose.OPEN_SIGNAL)
_EDGE = np.array([0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63)], dtype=np.int64)


def _general(streams: Streams, which: tuple[Purpose, ...], ids, day, index) -> np.ndarray:
    """The broadcasting path of ``Streams._bits`` (ids as a column), reshaped back to the ids' shape."""
    keys = streams._keys(which)
    column = lambda x: x.reshape(-1, 1) if isinstance(x, np.ndarray) else x  # noqa: E731
    words = streams._bits(keys, column(ids), column(day), column(index))
    return _to_unit(words).reshape((len(which), *np.shape(ids)))


def test_aligned_draws_equal_the_broadcasting_path() -> None:
    """Int64 ids with Python-integer or aligned int64 days and indexes (the no-broadcasting path, in Python
    integers for a few words and in NumPy otherwise) give the general path's draws bit for bit."""
    streams = Streams(99)
    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 4, 5, 13, 64, 500):
        ids = rng.integers(-(2**62), 2**62, size)
        ids[: min(size, len(_EDGE))] = _EDGE[: min(size, len(_EDGE))]
        days = rng.integers(-5, 10**6, size)
        index = rng.integers(-(2**63), 2**63 - 1, size, endpoint=True)
        for day, idx in ((days, index), (days, 0), (17, index), (0, 0), (-3, 2**43), (2**62, -7)):
            for which in (_PURPOSES, (Purpose.ATTEND,)):
                got = streams.uniforms(which, ids, day, idx)
                assert got.shape == (len(which), size) and got.dtype == np.float64
                np.testing.assert_array_equal(got, _general(streams, which, ids, day, idx))
            one = streams.uniform(Purpose.SHOCK_START, ids, day, idx)
            np.testing.assert_array_equal(one, _general(streams, (Purpose.SHOCK_START,), ids, day, idx)[0])


def test_two_dimensional_aligned_draws_equal_broadcast_ones() -> None:
    """A grid of ids aligned with a grid of days gives the draws of the ids broadcast against the days."""
    streams = Streams(5)
    rng = np.random.default_rng(4)
    gid = rng.integers(0, 10**9, 7)
    days = rng.integers(0, 900, (7, 16))
    aligned = np.repeat(gid, 16).reshape(days.shape)
    np.testing.assert_array_equal(
        streams.uniforms(_PURPOSES, aligned, days), streams.uniforms(_PURPOSES, gid[:, None], days)
    )
    np.testing.assert_array_equal(
        streams.uniform(Purpose.ATTEND, aligned, days), streams.uniform(Purpose.ATTEND, gid[:, None], days)
    )


def test_distinct_rank_is_the_inverse_of_unique() -> None:
    """Event creation numbers: each time's rank among the distinct times, as ``np.unique`` numbers them."""
    rng = np.random.default_rng(6)
    for _ in range(500):
        values = rng.choice(rng.random(int(rng.integers(1, 6))) * 100, int(rng.integers(1, 30)))
        if rng.random() < 0.3:
            values[0] = -0.0
            values[-1] = 0.0
        distinct, inverse = np.unique(values, return_inverse=True)
        which, count = _distinct_rank(values)
        assert count == len(distinct)
        np.testing.assert_array_equal(which, inverse)


def test_next_payday_is_the_first_day_with_income() -> None:
    """``Population.next_payday`` agrees with ``income_today`` tried day by day, for every income schedule (within
    the calendar: past its end a monthly payday is given as its last day + 1, never later than the real one)."""
    import datetime as dt

    from regsim.calendar import Calendar
    from regsim.config import INCOME_SCHEDULES, WorldConfig
    from regsim.population import draw_population

    config = WorldConfig()
    ids = np.arange(400, dtype=np.int64)
    pop = draw_population(config, ids, Streams(5))
    assert set(np.unique(pop.schedule).tolist()) == set(range(len(INCOME_SCHEDULES)))
    calendar = Calendar(dt.date(2025, 1, 29), 120)
    for day in (0, 1, 17, 30, 61, 100, 119, 120):
        days = np.full(len(ids), day, dtype=np.int64)
        expected = np.full(len(ids), calendar.days, dtype=np.int64)
        for d in range(calendar.days - 1, day - 1, -1):
            expected[pop.income_today(np.full(len(ids), d), calendar, ids)] = d
        np.testing.assert_array_equal(np.minimum(pop.next_payday(days, calendar, ids), calendar.days), expected)
