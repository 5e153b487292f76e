"""What the parts of the world (:mod:`regsim.payments`, :mod:`regsim.delivery`) read of it: its state and hooks.

:class:`regsim.world.World` is built from parts, each a mixin holding one concept of the model (how debtors pay,
how messages reach them); :class:`WorldParts` declares, once, the world's state they share and the hooks the
world defines (its clock, its event queue), so each part type-checks on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus
from regsim.behaviour import DebtorState
from regsim.calendar import Calendar
from regsim.clock import Day, Time
from regsim.config import WorldConfig
from regsim.engine import Action
from regsim.ledger import Ledger
from regsim.population import Population
from regsim.random import Streams

if TYPE_CHECKING:
    from regsim.capacity import DedicatedCapacity, SharedCapacity
    from regsim.self_service import SelfServiceDesk

__all__ = ["WorldParts"]


class WorldParts:
    """The world's state and hooks that its parts use (defined by :class:`regsim.world.World`)."""

    config: WorldConfig
    calendar: Calendar
    """Days of the run mapped to dates and weekdays."""
    ledger: Ledger
    """Every arrangement's state; the only code that changes it."""
    pop: Population
    state: DebtorState
    """The debtors' latent, changing state."""
    streams: Streams
    gid: NDArray[np.int64]
    """Each row's arrangement id."""
    pay_time: NDArray[np.float64]
    """When each debtor pays today (``inf``: not today)."""
    pay_partial: NDArray[np.bool_]
    """Whether today's payment may be partial (drawn with the decision to pay)."""
    thank: NDArray[np.bool_]
    """An installment was paid: a thank-you decision point is due."""
    thank_installment: NDArray[np.int64]
    capacity: SharedCapacity
    dedicated: DedicatedCapacity | None
    desk: SelfServiceDesk | None
    """Self-service (mechanism 10), ``None`` unless ``self_service.enabled``."""
    _ownership: float | None
    """The ownership effect's theta on chosen solutions (mechanism 10), ``None`` when off."""
    _by_channel: dict[str, NDArray[np.float64]]
    _fatigue_weight: NDArray[np.float64]

    def _rows_with(self, status: ArrangementStatus, rows: NDArray[np.int64] | None) -> NDArray[np.int64]:
        raise NotImplementedError

    def _day_of(self, ids: NDArray[np.int64] | None) -> Day:
        raise NotImplementedError

    def _payment_day(self, times: NDArray[np.float64]) -> Day:
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    def _at_each(self, times: NDArray[np.float64], action: Action, mids: NDArray[np.int64]) -> None:
        raise NotImplementedError

    def _settle(self, debtors: NDArray[np.int64], t: Time) -> None:
        raise NotImplementedError

    def _pay(
        self,
        debtors: NDArray[np.int64],
        amounts: NDArray[np.float64],
        t: NDArray[np.float64] | float,
        channel: NDArray[np.int64] | None,
    ) -> None:
        raise NotImplementedError
