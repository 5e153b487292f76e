"""The observable history of each arrangement: what production knows, kept as arrays.

The world updates it as events happen; :meth:`ObservableHistory.context_columns` turns it, with the plan
(:class:`~regsim.arrangement.Schedules`) and the calendar, into the columns of a
:class:`~regsim.decision.ContextBatch`. Nothing here is latent: every counter follows from the event log.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import Schedules
from regsim.calendar import Calendar
from regsim.config import CHANNELS
from regsim.context import ContextColumns

__all__ = ["CONTACT_RING", "ObservableHistory"]

#: Recent contacts remembered per arrangement, enough for any weekly cap up to this size.
CONTACT_RING = 16


class ObservableHistory:
    """Observable per-arrangement counters for ``n`` arrangements."""

    def __init__(self, n: int) -> None:
        c = len(CHANNELS)
        self.created_day = np.full(n, -1, dtype=np.int64)
        self.debt = np.zeros(n)
        self.on_time = np.zeros(n, dtype=np.int64)
        self.missed = np.zeros(n, dtype=np.int64)
        self.deferrals = np.zeros(n, dtype=np.int64)
        self.reductions = np.zeros(n, dtype=np.int64)
        self.last_payment_time = np.full(n, -np.inf)
        self.contact_times = np.full((n, CONTACT_RING), -np.inf)
        self.contact_ptr = np.zeros(n, dtype=np.int64)
        self.sent = np.zeros((n, c), dtype=np.int64)
        self.delivered = np.zeros((n, c), dtype=np.int64)
        self.opened = np.zeros((n, c), dtype=np.int64)
        self.clicked = np.zeros((n, c), dtype=np.int64)
        self.opted_out = np.zeros((n, c), dtype=bool)
        self.prior_payments = np.zeros(n, dtype=np.int64)
        self.prior_late_share = np.zeros(n)
        self.prior_pay_dom = np.full(n, -1, dtype=np.int64)

    def add_contacts(self, ids: NDArray[np.integer], times: NDArray[np.float64]) -> None:
        """Remember planned contacts (the cap counts a contact from the moment it is planned).

        ``ids`` may repeat; each occurrence takes the next ring slot.
        """
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        ids_s, times_s = ids[order], np.asarray(times)[order]
        first = np.searchsorted(ids_s, ids_s, side="left")
        rank = np.arange(len(ids_s)) - first
        slot = (self.contact_ptr[ids_s] + rank) % CONTACT_RING
        self.contact_times[ids_s, slot] = times_s
        np.add.at(self.contact_ptr, ids_s, 1)

    def move_contacts(self, ids: NDArray[np.integer], planned: NDArray[np.float64], sent: NDArray[np.float64]) -> None:
        """Contacts made later than planned (a letter the print room posted late) count from when they were made.

        Each ``(ids[i], planned[i])`` names a remembered contact; its time becomes ``sent[i]``, so that a weekly
        cap checked after the sending counts it. ``ids`` may repeat (two messages planned at the same moment move
        two ring slots); a contact no longer in the ring is left alone.
        """
        ids, planned, sent = np.asarray(ids, dtype=np.int64), np.asarray(planned), np.asarray(sent)
        while len(ids):
            _, first = np.unique(ids, return_index=True)
            rows = ids[first]
            match = self.contact_times[rows] == planned[first][:, None]
            found = match.any(axis=1)
            self.contact_times[rows[found], np.argmax(match[found], axis=1)] = sent[first][found]
            rest = np.ones(len(ids), dtype=bool)
            rest[first] = False
            ids, planned, sent = ids[rest], planned[rest], sent[rest]

    def contacts_within(
        self, ids: NDArray[np.integer], now: float | NDArray[np.float64], days: float = 7.0
    ) -> NDArray[np.int64]:
        """Contacts planned or made in the ``days`` before ``now`` (and any planned after it).

        ``now`` is a time, or each arrangement's own time aligned with ``ids``.
        """
        since = now - days if np.ndim(now) == 0 else (np.asarray(now) - days)[:, None]
        return (self.contact_times[ids] > since).sum(axis=1)

    def context_columns(
        self,
        ids: NDArray[np.int64],
        kinds: NDArray[np.integer],
        installments: NDArray[np.integer],
        day: int | NDArray[np.int64],
        schedules: Schedules,
        calendar: Calendar,
    ) -> ContextColumns:
        """Columns of a context batch (see :data:`regsim.context.CONTEXT_COLUMNS`) for a decision day.

        ``day`` is the day, or each arrangement's own day aligned with ``ids`` (arrangements with own clocks).
        """
        s = schedules
        now = float(day) if np.ndim(day) == 0 else np.asarray(day, dtype=np.float64)
        target = np.where(installments >= 0, installments, np.minimum(s.first_open[ids], s.n[ids] - 1))
        target_c = np.clip(target, 0, s.capacity - 1)
        last_pay = self.last_payment_time[ids]
        paid_ever = np.isfinite(last_pay)
        last_pay_day = np.where(paid_ever, np.floor(np.where(paid_ever, last_pay, 0)), 0).astype(np.int64)
        last_contact = self.contact_times[ids].max(axis=1)
        contacted = np.isfinite(last_contact) & (last_contact <= now)
        dom = calendar.day_of_month
        return {
            "arrangement_id": ids,
            "kind": np.asarray(kinds, dtype=np.int8),
            "day": np.full(len(ids), day, dtype=np.int32),
            "day_of_month": np.full(len(ids), dom[day], dtype=np.int8),
            "weekday": np.full(len(ids), calendar.weekday[day], dtype=np.int8),
            "installment": np.asarray(installments, dtype=np.int16),
            "target_paid": s.is_paid(ids, installments),
            "n_installments": s.n[ids].astype(np.int16),
            "installment_eur": s.amount[ids, target_c],
            "debt_eur": self.debt[ids],
            "balance_eur": s.balance[ids],
            "installments_paid": s.first_open[ids].astype(np.int16),
            "installments_due": s.came_due[ids].astype(np.int16),
            "on_time": self.on_time[ids].astype(np.int16),
            "missed": self.missed[ids].astype(np.int16),
            "overdue": s.overdue(ids).astype(np.int16),
            "days_to_due": (s.due[ids, target_c].astype(np.int64) - day).astype(np.int32),
            "due_day": s.due_dom[ids].astype(np.int8),
            "deferrals": self.deferrals[ids].astype(np.int16),
            "reductions": self.reductions[ids].astype(np.int16),
            "days_since_payment": np.where(paid_ever, day - last_pay_day, -1).astype(np.int32),
            "last_payment_dom": np.where(paid_ever, dom[np.minimum(last_pay_day, len(dom) - 1)], -1).astype(np.int8),
            "age_days": (day - self.created_day[ids]).astype(np.int32),
            "prior_payments": self.prior_payments[ids].astype(np.int16),
            "prior_late_share": self.prior_late_share[ids],
            "prior_pay_dom": self.prior_pay_dom[ids].astype(np.int8),
            "contacts_7d": self.contacts_within(ids, now).astype(np.int16),
            "days_since_contact": np.where(contacted, np.floor(now - np.where(contacted, last_contact, 0)), -1).astype(
                np.int32
            ),
            "sent": self.sent[ids].astype(np.int16),
            "delivered": self.delivered[ids].astype(np.int16),
            "opened": self.opened[ids].astype(np.int16),
            "clicked": self.clicked[ids].astype(np.int16),
            "opted_out": self.opted_out[ids].copy(),
        }
