"""Time in the simulated world: days since the epoch, one clock for all rows or one clock per row.

Times are days since the epoch (the run's start; production: a fixed date), fractions of a day are hours.
A population :class:`~regsim.world.World` has one clock; a :class:`~regsim.vector_world.VectorWorld` gives
each row its own, so a day or a time is either one number shared by the rows at hand or an array aligned with
them. These helpers take either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Day", "Time", "at", "whole_day"]

Time = float | NDArray[np.float64]
"""A moment (days since the epoch), or one per row when rows keep their own clocks."""
Day = int | NDArray[np.int64]
"""A day (days since the epoch), or one per row when rows keep their own clocks."""


def at(value: Any, positions: NDArray[np.integer] | NDArray[np.bool_]) -> Any:
    """A day or time of some of the rows: a shared one as it is; per-row ones (one clock per row) at ``positions``."""
    # (A Python or NumPy scalar is recognised without ``np.ndim``: these run for every event of the world.)
    if isinstance(value, (float, int)) or np.ndim(value) == 0:
        return value
    return np.asarray(value)[positions]


def whole_day(t: Time) -> Day:
    """The day a time falls on (times are never negative), one or per element."""
    return int(t) if isinstance(t, float) or np.ndim(t) == 0 else np.floor(t).astype(np.int64)
