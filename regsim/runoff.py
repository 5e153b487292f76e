"""The run-off cap: how long after its creation an arrangement is followed before it counts as censored.

A run-off evaluation follows every arrangement of a cohort from its creation to its end (completed, broken,
referred). A few never end (a debtor who pays late but never falls two installments behind), so each is
followed at most ``cap_factor * 30 * (n_installments + months_after_plan)`` days, where ``n_installments`` is
the plan's length at creation (the ``arrangement_created`` event). An arrangement still open at its cap is
*censored* there: what happens to it later does not count (:func:`regsim.metrics.arrangement_outcomes`).

The default, plan length + 12 months, is an assumption: a plan that is kept ends with its last installment; one
that is not breaks within two missed installments (``arrangements.breakdown_after_missed``), so a year beyond
the plan leaves room for deferrals and re-plans, while a longer follow-up only adds the few plans that drag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # (regsim.config imports this module)
    from regsim.config import WorldConfig

__all__ = ["DAYS_PER_MONTH", "RunoffCap", "covering_months"]

#: Days in a month of the simulation's horizon (as in ``simulation.months``).
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class RunoffCap:
    """Per arrangement, the longest follow-up after its creation.

    Attributes:
        months_after_plan: Months of 30 days beyond the plan's length (unit: months). Assumption: see the
            module docstring.
        cap_factor: Multiplier of the whole cap (unit: factor); 1.5 follows each arrangement half as long
            again, which checks that a verdict does not depend on where the cap lies.

    Raises:
        ValueError: ``months_after_plan`` is negative or ``cap_factor`` not positive (naming the field).
    """

    months_after_plan: float = 12.0
    cap_factor: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.months_after_plan) and self.months_after_plan >= 0):
            raise ValueError(f"months_after_plan must be a finite number >= 0, got {self.months_after_plan!r}")
        if not (math.isfinite(self.cap_factor) and self.cap_factor > 0):
            raise ValueError(f"cap_factor must be a finite number > 0, got {self.cap_factor!r}")

    def days(self, n_installments: ArrayLike) -> NDArray[np.float64]:
        """The cap in days after creation of plans with these lengths (installments at creation)."""
        n = np.asarray(n_installments, dtype=np.float64)
        return self.cap_factor * DAYS_PER_MONTH * (n + self.months_after_plan)


def covering_months(config: WorldConfig, cap: RunoffCap | None = None) -> int:
    """The whole months of 30 days that hold every arrangement's run-off cap in this world: the last arrival
    plus the cap of the longest plan a new arrangement can have (``arrangements.max_installments``).

    A horizon for whatever follows arrangements one by one and cannot stop each at its own cap (a training
    episode, an online bandit run): no arrangement is cut before its cap; one that drags on past its own cap may
    run on up to this horizon.
    """
    cap = cap or config.simulation.runoff_cap()
    days = config.arrangements.arrival_days + float(cap.days(config.arrangements.max_installments))
    return max(1, math.ceil(days / DAYS_PER_MONTH))
