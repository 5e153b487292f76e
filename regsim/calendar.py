"""The calendar of a run: simulation days mapped to dates, days of the month and weekdays.

Simulation day 0 is :attr:`regsim.config.SimulationConfig.start_date`. Arrays are precomputed for the horizon
plus a margin, so look-ups in the hot loop are array indexing.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

__all__ = ["Calendar", "calendar_for"]


@lru_cache(maxsize=16)
def calendar_for(start: dt.date, days: int) -> Calendar:
    """A shared, cached calendar (calendars are read-only once built)."""
    return Calendar(start, days)


class Calendar:
    """Days, months and weekdays of a run.

    Args:
        start: Date of simulation day 0.
        days: Days to cover (the horizon plus any margin for plans that run past it).
    """

    def __init__(self, start: dt.date, days: int) -> None:
        self.start = start
        dates = np.arange(np.datetime64(start, "D"), np.datetime64(start, "D") + days)
        self.day_of_month: NDArray[np.int8] = ((dates - dates.astype("datetime64[M]")).astype(np.int64) + 1).astype(
            np.int8
        )
        self.weekday: NDArray[np.int8] = ((dates.astype(np.int64) + 3) % 7).astype(np.int8)  # 1970-01-01: Thu
        months = dates.astype("datetime64[M]")
        self._first_month = months[0]
        self.month_index: NDArray[np.int32] = (months - self._first_month).astype(np.int32)
        n_months = int(self.month_index[-1]) + 2
        month_starts = self._first_month + np.arange(n_months)
        self.month_start_day: NDArray[np.int64] = (
            month_starts.astype("datetime64[D]") - np.datetime64(start, "D")
        ).astype(np.int64)
        self.days_in_month: NDArray[np.int64] = (
            (month_starts + 1).astype("datetime64[D]") - month_starts.astype("datetime64[D]")
        ).astype(np.int64)
        self.days = days
        # The first day on or after each day that falls on each day of the month (``days``: none in range).
        self._next_dom = np.full((32, days + 1), days, dtype=np.int64)
        for dom in range(1, 32):
            on = np.flatnonzero(self.day_of_month == dom)
            self._next_dom[dom, :days] = np.append(on, days)[np.searchsorted(on, np.arange(days))]

    def day_for(self, month: NDArray[np.integer] | int, day_of_month: NDArray[np.integer] | int) -> NDArray[np.int64]:
        """Simulation day of a day of the month in a month (index from the start month), clipped to its length.

        Months beyond the precomputed range are extended with 30.44-day months (only far-future plan dates).
        """
        m = np.asarray(month, dtype=np.int64)
        dom = np.asarray(day_of_month, dtype=np.int64)
        inside = m < len(self.month_start_day)
        mc = np.minimum(m, len(self.month_start_day) - 1)
        start = np.where(inside, self.month_start_day[mc], self.month_start_day[-1] + (m - mc) * 30.44)
        length = np.where(inside, self.days_in_month[mc], 30)
        return (start + np.minimum(dom, length) - 1).astype(np.int64)

    def next_day_of_month(self, day_of_month: NDArray[np.integer], day: NDArray[np.integer] | int) -> NDArray[np.int64]:
        """The first simulation day on or after ``day`` that falls on ``day_of_month`` (element-wise).

        :attr:`days` when none does within the calendar (a day of the month outside 1..31 never does); days at or
        past the end give :attr:`days` too.
        """
        dom = np.clip(np.asarray(day_of_month, dtype=np.int64), 0, 31)
        return self._next_dom[dom, np.clip(day, 0, self.days)]

    def month_of(self, day: NDArray[np.integer] | int) -> NDArray[np.int64]:
        """Month index of a simulation day (days beyond the range extrapolate at 30.44 days a month)."""
        d = np.asarray(day, dtype=np.int64)
        inside = d < self.days
        dc = np.clip(d, 0, self.days - 1)
        beyond = self.month_index[-1] + np.ceil((d - (self.days - 1)) / 30.44)
        return np.where(inside, self.month_index[dc], beyond).astype(np.int64)

    def date(self, day: int) -> dt.date:
        """The calendar date of a simulation day."""
        return self.start + dt.timedelta(days=int(day))
