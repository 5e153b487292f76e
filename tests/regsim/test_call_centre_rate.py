"""A call centre's hourly capacity where ``servers * 60 / minutes_per_call`` is not a whole number
(``regsim/capacity.py``): the fraction carries from one served hour to the next, so a saturated centre serves
the rate on average; a whole rate serves exactly that many every hour."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import simpy

from regsim.calendar import Calendar
from regsim.capacity import _CallCentre


def _served_per_hour(servers: int, minutes: float, calls: int, hours: int) -> list[int]:
    """Calls connected in each served hour of a centre working around the clock, its queue never empty."""
    env = simpy.Environment()
    served: list[int] = []
    centre = _CallCentre(
        env,
        "collectors",
        servers,
        minutes,
        (0.0, 24.0),
        frozenset(),
        Calendar(dt.date(2026, 1, 5), 60),
        lambda ids, at: served.append(len(ids)),
        lambda ids: np.ones(len(ids), dtype=bool),
    )
    centre.submit(np.arange(calls, dtype=np.int64))
    env.run(until=hours / 24.0 - 1e-9)
    return served


@pytest.mark.parametrize(("servers", "minutes"), [(4, 37.5), (3, 25.0), (1, 90.0), (7, 11.0)])
def test_a_fractional_rate_is_served_on_average(servers: int, minutes: float) -> None:
    """Over 200 saturated hours the centre serves the rate times the hours (within one call), each hour the
    rate rounded down or up."""
    rate = servers * 60.0 / minutes
    hours = 200
    per_hour = _served_per_hour(servers, minutes, calls=10 * int(rate * hours) + 10, hours=hours)
    total = sum(per_hour)
    assert abs(total - rate * hours) <= 1.0
    assert set(per_hour) <= {int(np.floor(rate)), int(np.ceil(rate))}


def test_a_whole_rate_serves_that_many_every_hour() -> None:
    """4 collectors at 15 minutes: 16 calls in every hour."""
    per_hour = _served_per_hour(4, 15.0, calls=16 * 50 + 5, hours=50)
    assert per_hour == [16] * 50
