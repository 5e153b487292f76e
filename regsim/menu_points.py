"""A menu point's :class:`~regsim.menu.MenuBatch` from the ledger's state: the one builder of the world and the server.

The world builds one when a debtor follows a reminder's link (:meth:`regsim.self_service.SelfServiceDesk.show`),
the server when the self-service page or ``POST /v1/menus`` asks for a menu (:mod:`serving.menu_service`); both
from the ledger's observable state, so a menu asked over HTTP sees what the simulated one saw.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from regsim.calendar import Calendar
from regsim.ledger import Ledger
from regsim.menu import MenuBatch, MenuSpace
from regsim.rules import MenuRuleSet

__all__ = ["in_arrears", "menu_batch"]


def in_arrears(ledger: Ledger, rows: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Whether each arrangement has an installment overdue (the world offers the page only then)."""
    return np.asarray(ledger.sched.overdue(rows) > 0)


def menu_batch(
    ledger: Ledger,
    rows: NDArray[np.int64],
    arrangement_ids: NDArray[np.int64],
    day: NDArray[np.int64],
    menu_ids: NDArray[np.int64],
    space: MenuSpace,
    rules: MenuRuleSet,
    calendar: Calendar,
) -> MenuBatch:
    """Menu points of ledger ``rows`` (their ids ``arrangement_ids``) on ``day``, masked by the menu rules.

    The context columns are the arrangement decision's (``kind`` -1, the first open installment), plus the
    concessions granted so far and whether collection costs were waived; ``mask`` and ``forbidden`` are filled
    by ``rules`` (every capped level names its rule).
    """
    inst = ledger.sched.first_open[rows]
    columns = ledger.history.context_columns(rows, np.full(len(rows), -1), inst, day, ledger.sched, calendar)
    columns["arrangement_id"] = np.asarray(arrangement_ids, dtype=np.int64)
    batch = MenuBatch(
        space,
        np.asarray(menu_ids, dtype=np.int64),
        columns,
        ledger.concessions[rows].copy(),
        ledger.costs_waived[rows].copy(),
        np.ones((len(rows), space.mask_size), dtype=bool),
    )
    return rules.apply(batch)
