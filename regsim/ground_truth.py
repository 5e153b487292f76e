"""Read access to the simulator's latent state, for simulation-only consumers (the oracle, env ``info``).

A :class:`GroundTruthView` is handed out only by a running :class:`~regsim.world.World`; production has no such
object, so a policy that needs one (``requires_ground_truth = True``) cannot run outside simulation.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import Schedules
from regsim.behaviour import DebtorState
from regsim.calendar import Calendar
from regsim.config import WorldConfig
from regsim.population import Population

__all__ = ["GroundTruthView", "LatentWorld"]


class _Plans(Protocol):
    sched: Schedules


class LatentWorld(Protocol):
    """What a view reads of a running world (:class:`regsim.world.World` is one)."""

    config: WorldConfig
    calendar: Calendar
    first_id: int
    n: int
    pop: Population
    state: DebtorState

    @property
    def ledger(self) -> _Plans:
        """The arrangements' state (:class:`regsim.ledger.Ledger`); its plans are read."""
        ...


class GroundTruthView:
    """Latent facts of a world's debtors, looked up by arrangement id (read-only).

    Args:
        world: The world whose debtors are exposed.
    """

    def __init__(self, world: LatentWorld) -> None:
        self._world = world
        self.config = world.config
        self.calendar = world.calendar

    def rows(self, arrangement_ids: NDArray[np.integer]) -> NDArray[np.int64]:
        """Row index of each arrangement in the world's arrays."""
        rows = np.asarray(arrangement_ids, dtype=np.int64) - self._world.first_id
        if rows.size and (rows.min() < 0 or rows.max() >= self._world.n):
            raise KeyError("arrangement ids outside this world")
        return rows

    # -- static traits -------------------------------------------------------------------------------------
    def debtor_type(self, ids: NDArray[np.integer]) -> NDArray[np.int8]:
        """Hidden type index (order of :data:`regsim.config.DEBTOR_TYPES`)."""
        return self._world.pop.type[self.rows(ids)]

    def income_schedule(self, ids: NDArray[np.integer]) -> NDArray[np.int8]:
        """Income schedule index (order of :data:`regsim.config.INCOME_SCHEDULES`)."""
        return self._world.pop.schedule[self.rows(ids)]

    def pay_day(self, ids: NDArray[np.integer]) -> NDArray[np.int16]:
        """Pay day of the month (monthly, benefits) or phase (four-weekly, weekly)."""
        return self._world.pop.pay_day[self.rows(ids)]

    def notice(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Per-channel notice probabilities, shape ``(B, len(CHANNELS))``."""
        return self._world.pop.notice[self.rows(ids)]

    def hour_profile(self, ids: NDArray[np.integer]) -> NDArray[np.int8]:
        """Daily rhythm index (order of :data:`regsim.population.HOUR_PROFILES`)."""
        return self._world.pop.hour_profile[self.rows(ids)]

    def attention(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Attention hazard without reminders (1/day)."""
        return self._world.pop.attention[self.rows(ids)]

    def willingness(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Willingness to pay when attending and able."""
        return self._world.pop.willingness[self.rows(ids)]

    def reminder_effect(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Attention hazard a noticed reminder adds (1/day, before channel impact)."""
        return self._world.pop.reminder_effect[self.rows(ids)]

    def memory_days(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Decay time of a reminder's effect (days)."""
        return self._world.pop.memory_days[self.rows(ids)]

    def free_cash_per_income(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Free cash each income brings (EUR, before noise and shocks)."""
        r = self.rows(ids)
        return self._world.pop.income_per_pay[r] * self._world.pop.free_cash_share[r]

    # -- changing state ------------------------------------------------------------------------------------
    def cash(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Free cash now (EUR)."""
        return self._world.state.cash[self.rows(ids)]

    def shock_until(self, ids: NDArray[np.integer]) -> NDArray[np.int64]:
        """Day on which the current shock ends (in the past when there is none)."""
        return self._world.state.shock_until[self.rows(ids)]

    def disengaged(self, ids: NDArray[np.integer]) -> NDArray[np.bool_]:
        """Whether the debtor has disengaged."""
        return self._world.state.disengaged[self.rows(ids)]

    def annoyance(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Accumulated contact annoyance."""
        return self._world.state.annoyance[self.rows(ids)]

    def owed_now(self, ids: NDArray[np.integer], day: int) -> NDArray[np.float64]:
        """What the debtor would pay today (EUR)."""
        return self._world.ledger.sched.owed_now(self.rows(ids), day, self.config.arrangements.pay_window_days)

    def days_to_income(self, ids: NDArray[np.integer], day: int, horizon: int = 40) -> NDArray[np.int64]:
        """Days from ``day`` until the next income (``horizon`` if none within it)."""
        rows = self.rows(ids)
        out = np.full(len(rows), horizon, dtype=np.int64)
        pending = np.ones(len(rows), dtype=bool)
        for k in range(horizon):
            d = day + k
            if d >= self.calendar.days:
                break
            paid = self._world.pop.income_today(d, self.calendar, rows) & pending
            out[paid] = k
            pending &= ~paid
            if not pending.any():
                break
        return out
