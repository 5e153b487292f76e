"""The event engine: the order of a day's events, the clock arithmetic, and the event queue of rows with own clocks.

**The order of a day.** Every arrangement lives the same day, in both worlds (:class:`regsim.world.World`, one
SimPy clock for the population; :class:`regsim.vector_world.VectorWorld`, a clock per row):

1. *Morning* (time ``d``; :meth:`regsim.world.World._begin_day`): the debtors' mornings (income, spending,
   shocks, decay: :func:`regsim.behaviour.advance_day`), then referrals of debtors in a shock with overdue
   installments and disengagement; then arrivals of new arrangements and the day's bookkeeping
   (:meth:`regsim.ledger.Ledger.book`: installments falling due and missed, breakdowns); then the day's
   decision points, answered by the policy at that moment (:meth:`regsim.world.World._apply`).
2. *Payment draws* (:meth:`regsim.payments.PaymentBehaviour._draw_payments`): who sets out to pay today, and
   at what hour.
3. *The day's events* in time order (SimPy's order: time, then creation): messages sent, delivered, read,
   opened; letters posted; calls connected; each first settling the debtor's payment if its hour has come.
4. *Evening* (time :func:`evening_of` ``(d)``, just before midnight; :meth:`regsim.world.World._end_day`): the
   payments planned for today that no event settled yet.

A policy-driven or externally driven population world runs this as one SimPy process; the vector world runs
it per row on the row's own clock, with the same arithmetic for the moments (:func:`until_morning`,
:func:`until_evening`, :func:`after`) and the same queue order (:class:`EventQueue`), so a row behaves exactly
as the lone arrangement of a one-arrangement world.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EVENING_OFFSET",
    "Action",
    "EventQueue",
    "after",
    "distinct_rank",
    "evening_of",
    "until_evening",
    "until_morning",
]

#: The evening of day ``d`` is ``d + 1 - EVENING_OFFSET``: the last moment of the day, after every event that
#: falls on it (hour marks are multiples of 1/24) and before the next morning.
EVENING_OFFSET = 1e-6

Action = Callable[[NDArray[np.int64], Any], None]
"""What an event does: called with the messages it concerns and their time (one, or one per message)."""


def until_morning(now: Any, day: Any) -> Any:
    """The day process's sleep from ``now`` to the morning of ``day`` (taken only when ``now`` is earlier)."""
    return day - now


def evening_of(day: Any) -> Any:
    """The evening of ``day``: its last moment (after every event that falls on the day)."""
    return day + 1 - EVENING_OFFSET


def until_evening(now: Any, day: Any) -> Any:
    """The day process's sleep from ``now`` to the evening of ``day``."""
    return evening_of(day) - now


def after(now: Any, delay: Any) -> Any:
    """The moment a timeout of ``delay`` created at ``now`` fires: SimPy's arithmetic, ``now + delay``."""
    return now + delay


def distinct_rank(values: NDArray[np.float64]) -> tuple[NDArray[np.int64], int]:
    """Each value's rank among the distinct values (``np.unique(values, return_inverse=True)``'s inverse), and
    how many distinct values there are, at less overhead than ``np.unique`` on the few values of an event.

    ``values`` are non-empty and never NaN (times).
    """
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    step = np.empty(len(ordered), dtype=np.int64)
    step[0] = 0
    np.not_equal(ordered[1:], ordered[:-1], out=step[1:])  # (a new distinct value: 1)
    rank = np.cumsum(step)
    which = np.empty(len(ordered), dtype=np.int64)
    which[order] = rank
    return which, int(rank[-1]) + 1


class EventQueue:
    """Pending events of all rows as columns, one entry per message of an event, in SimPy's order.

    An event is the entries of one row with the same time and creation number; a row's events run in SimPy's
    order (time, then creation), and an event's messages in the order they were scheduled. New entries are
    buffered and joined to the columns when the queue is next read (scheduling costs a list append).
    """

    def __init__(self) -> None:
        self.time = np.zeros(0)
        self.made = np.zeros(0, dtype=np.int64)
        self.row = np.zeros(0, dtype=np.int64)
        self.mid = np.zeros(0, dtype=np.int64)
        self.kind = np.zeros(0, dtype=np.int64)
        #: The actions, indexed by :attr:`kind`.
        self.actions: list[Action] = []
        self._kind_of: dict[Action, int] = {}
        self._made = 0
        self._new: list[tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], int]] = []

    def new_numbers(self, k: int) -> int:
        """Reserve ``k`` consecutive creation numbers; returns the first."""
        first = self._made
        self._made += k
        return first

    def push(
        self,
        when: NDArray[np.float64],
        made: NDArray[np.int64],
        rows: NDArray[np.int64],
        mids: NDArray[np.int64],
        action: Action,
    ) -> None:
        """Schedule ``action`` on each message ``mids[i]`` of row ``rows[i]`` at ``when[i]``."""
        kind = self._kind_of.get(action)
        if kind is None:
            kind = self._kind_of[action] = len(self.actions)
            self.actions.append(action)
        self._new.append((when, made, rows, mids, kind))

    def _join(self) -> None:
        if not self._new:
            return
        new, self._new = self._new, []
        self.time = np.concatenate([self.time, *(p[0] for p in new)])
        self.made = np.concatenate([self.made, *(p[1] for p in new)])
        self.row = np.concatenate([self.row, *(p[2] for p in new)])
        self.mid = np.concatenate([self.mid, *(p[3] for p in new)])
        kinds = np.repeat([p[4] for p in new], [len(p[3]) for p in new])
        self.kind = np.concatenate([self.kind, kinds.astype(np.int64)])

    def heads(
        self, active: NDArray[np.bool_], rank: NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None:
        """The next event of each ``active`` row that has one, rows ordered by ``rank``.

        Returns:
            ``None`` when no active row has an event, else ``(rows, times, creation numbers, entries, group)``:
            per row its next event's time and creation number; ``entries`` the positions of all the active
            rows' entries, sorted by (rank, time, creation, scheduling order); ``group[i]`` the index of the
            row of ``entries[i]`` in ``rows``.
        """
        self._join()
        entries = np.flatnonzero(active[self.row])
        if not len(entries):
            return None
        rank_of = rank[self.row[entries]]
        # A stable sort keeps the scheduling order among an event's messages.
        entries = entries[np.lexsort((self.made[entries], self.time[entries], rank_of))]
        rows = self.row[entries]
        head = np.empty(len(entries), dtype=bool)
        head[0] = True
        np.not_equal(rows[1:], rows[:-1], out=head[1:])
        group = np.cumsum(head) - 1
        first = entries[head]
        return self.row[first], self.time[first], self.made[first], entries, group

    def remove(self, positions: NDArray[np.int64]) -> None:
        """Forget the entries at these positions (their events ran)."""
        keep = np.ones(len(self.time), dtype=bool)
        keep[positions] = False
        self._keep(keep)

    def drop_rows(self, gone: NDArray[np.bool_]) -> None:
        """Forget every event of the rows marked in ``gone``."""
        self._join()
        self._keep(~gone[self.row])

    def _keep(self, keep: NDArray[np.bool_]) -> None:
        self.time, self.made, self.row = self.time[keep], self.made[keep], self.row[keep]
        self.mid, self.kind = self.mid[keep], self.kind[keep]

    def messages(self) -> NDArray[np.int64]:
        """The messages of all pending events."""
        self._join()
        return self.mid

    def renumber(self, new_id: NDArray[np.int64]) -> None:
        """Renumber the messages (``new_id[old]``), after the message store was compacted."""
        self._join()
        self.mid = new_id[self.mid]
