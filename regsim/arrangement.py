"""Arrangements: lifecycle states and installment schedules, with re-planning on deferral and reduction.

All arrangements' schedules live in ``(N, K)`` arrays (``K`` = the most installments a plan may reach), so
that payments, due dates and re-plans are vectorised over arrangements. Installments are paid oldest first;
three pointers per arrangement summarise the schedule:

* ``first_open``: the oldest installment not yet paid in full (``== n`` when all are paid);
* ``came_due``: how many installments have reached their due date at least once (for ``installment_due``);
* ``miss_ptr``: the next installment to test for being missed (unpaid at ``due + grace`` days). Installments
  in ``[first_open, miss_ptr)`` are therefore overdue, and ``miss_ptr - first_open`` is the overdue count.

Re-planning (documented contract, used identically by the server):

* **Deferral** by ``d`` days moves every open installment ``d`` days later, and re-arms their missed test.
* **Reduction** by fraction ``r`` re-spreads the open balance over installments of ``(1 - r)`` times the
  current installment, on the same due day of the month; the first keeps its due date, or falls due
  ``replan_days`` days from now when that date has passed (``arrangements.replan_days_to_first_due``: a fresh
  plan gives a week). The plan may not exceed ``K`` installments:
  the last one absorbs any remainder.
* **Due day** (at plan creation) moves all installments to that day of the month.
* **A new plan** of ``m`` installments (self-service, staff): the open balance over ``m`` installments of the
  balance over ``m`` rounded up to the cent, dated as a reduction dates them.
* **A concession** (a discount, a waiver) lowers the balance, taken off the last open installments.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from regsim.calendar import Calendar
from regsim.clock import at

__all__ = ["ArrangementStatus", "PaidInstallments", "Schedules"]

_NEVER = np.iinfo(np.int32).max // 2
_EPS = 1e-6


class ArrangementStatus(IntEnum):
    """Lifecycle of an arrangement."""

    PENDING = 0
    """Not yet arrived in the run."""
    OFFERED = 1
    """Agreed in principle; the plan is being set up at the PLAN_CREATED decision."""
    ACTIVE = 2
    COMPLETED = 3
    BROKEN = 4
    """Too many overdue installments: back to collection."""
    REFERRED = 5
    """Handed to debt counselling."""


@dataclass(frozen=True)
class PaidInstallments:
    """Installments completed by a batch of payments (one entry per completed installment)."""

    ids: NDArray[np.int64]
    installment: NDArray[np.int64]
    days_late: NDArray[np.int64]


def _cat(parts: list[NDArray[np.int64]]) -> NDArray[np.int64]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _round_cents(x: NDArray[np.float64]) -> NDArray[np.float64]:
    # (An array's own method: np.round's result without its dispatch wrapper; anything else through np.round.)
    return x.round(2) if type(x) is np.ndarray else np.round(x, 2)


class Schedules:
    """Installment schedules of ``n`` arrangements with room for ``capacity`` installments each.

    Args:
        n: Number of arrangements.
        capacity: Most installments a plan can reach (``K``).
        calendar: The run's calendar (due days of the month to simulation days).
        grace_days: Days after the due date before an unpaid installment counts as missed.
        replan_days: Days a reduced plan gives for its next installment when that one is already past due.
    """

    def __init__(self, n: int, capacity: int, calendar: Calendar, grace_days: int, replan_days: int = 7) -> None:
        self.capacity = capacity
        self.calendar = calendar
        self.grace_days = grace_days
        self.replan_days = replan_days
        self.due = np.full((n, capacity), _NEVER, dtype=np.int32)
        self.amount = np.zeros((n, capacity), dtype=np.float64)
        self.paid = np.zeros((n, capacity), dtype=np.float64)
        self.n = np.zeros(n, dtype=np.int64)
        self.first_open = np.zeros(n, dtype=np.int64)
        self.came_due = np.zeros(n, dtype=np.int64)
        self.miss_ptr = np.zeros(n, dtype=np.int64)
        self.due_dom = np.zeros(n, dtype=np.int64)
        self.balance = np.zeros(n, dtype=np.float64)
        self._cols = np.arange(capacity)

    # -- queries ------------------------------------------------------------------------------------------
    def due_of(self, ids: NDArray[np.integer], j: NDArray[np.integer]) -> NDArray[np.int32]:
        """Due day of installment ``j[k]`` of row ``ids[k]`` (1-D, aligned): ``due[ids, j]`` as one gather at
        flat positions, cheaper than the 2-D fancy index the day's bookkeeping would run on every active row."""
        return self.due.ravel()[np.asarray(ids, dtype=np.int64) * self.capacity + j]

    def overdue(self, ids: NDArray[np.integer]) -> NDArray[np.int64]:
        """Installments overdue now (unpaid past due date + grace)."""
        return self.miss_ptr[ids] - self.first_open[ids]

    def open_due(self, ids: NDArray[np.integer]) -> NDArray[np.int64]:
        """Due day of the oldest open installment (a far-future sentinel when none is open)."""
        j = np.minimum(self.first_open[ids], self.capacity - 1)
        return np.where(self.first_open[ids] < self.n[ids], self.due_of(ids, j), _NEVER).astype(np.int64)

    def current_amount(self, ids: NDArray[np.integer]) -> NDArray[np.float64]:
        """Full amount of the oldest open installment (of the last one when all are paid)."""
        j = np.minimum(self.first_open[ids], np.maximum(self.n[ids] - 1, 0))
        return self.amount[ids, j]

    def is_paid(self, ids: NDArray[np.integer], installment: NDArray[np.integer]) -> NDArray[np.bool_]:
        """Whether the given installments are paid in full."""
        return (installment >= 0) & (installment < self.first_open[ids])

    def owed_now(self, ids: NDArray[np.integer], day: int | NDArray[np.int64], window: int) -> NDArray[np.float64]:
        """What a debtor paying today would pay: open installments due by ``day + window``, oldest first."""
        owed = np.zeros(len(ids))
        fo, n = self.first_open[ids], self.n[ids]
        last_day = day + window
        # Flat positions into the (row, installment) tables: one gather each rather than a 2-D fancy index.
        row_start = np.asarray(ids, dtype=np.int64) * self.capacity
        due, amount, paid = self.due.ravel(), self.amount.ravel(), self.paid.ravel()
        for k in range(self.capacity):
            j = fo + k
            inside = j < n
            if not inside.any():
                break
            at = row_start + np.minimum(j, self.capacity - 1)
            take = inside & (due[at] <= last_day)
            if not take.any():
                break
            owed += np.where(take, amount[at] - paid[at], 0.0)
        return _round_cents(owed)

    # -- plan changes -------------------------------------------------------------------------------------
    def create(
        self,
        ids: NDArray[np.integer],
        day: int | NDArray[np.int64],
        n_installments: NDArray[np.integer],
        debt: NDArray[np.float64],
        due_dom: NDArray[np.integer] | int,
        min_days_to_first_due: int,
    ) -> None:
        """Set up equal installments (the last absorbs rounding) on a day of the month."""
        n_inst = np.minimum(np.asarray(n_installments, dtype=np.int64), self.capacity)
        amount = _round_cents(debt / n_inst)
        cols = self._cols[None, :]
        inside = cols < n_inst[:, None]
        last = cols == (n_inst[:, None] - 1)
        amounts = np.where(inside, amount[:, None], 0.0)
        amounts = np.where(last, _round_cents(debt - amount * (n_inst - 1))[:, None], amounts)
        self.amount[ids] = amounts
        self.paid[ids] = 0.0
        self.n[ids] = n_inst
        self.first_open[ids] = 0
        self.came_due[ids] = 0
        self.miss_ptr[ids] = 0
        self.balance[ids] = _round_cents(debt)
        self._set_dates(
            ids,
            np.broadcast_to(np.asarray(due_dom, dtype=np.int64), (len(ids),)),
            day,
            min_days_to_first_due,
            first=np.zeros(len(ids), dtype=np.int64),
        )

    def set_due_day(
        self,
        ids: NDArray[np.integer],
        due_dom: NDArray[np.integer],
        day: int | NDArray[np.int64],
        min_days_to_first_due: int,
    ) -> None:
        """Move all open installments to a new day of the month (first at least the minimum days away)."""
        self._set_dates(
            ids, np.asarray(due_dom, dtype=np.int64), day, min_days_to_first_due, first=self.first_open[ids]
        )

    def _set_dates(
        self,
        ids: NDArray[np.integer],
        dom: NDArray[np.int64],
        day: int | NDArray[np.int64],
        min_days: int,
        first: NDArray[np.int64],
    ) -> None:
        earliest = day + min_days
        m = self.calendar.month_of(earliest)
        m = np.where(self.calendar.day_for(m, dom) < earliest, m + 1, m)
        rel = self._cols[None, :] - first[:, None]
        months = m[:, None] + np.maximum(rel, 0)
        new_due = self.calendar.day_for(months, dom[:, None])
        keep = (rel < 0) | (self._cols[None, :] >= self.n[ids][:, None])
        self.due[ids] = np.where(keep, self.due[ids], new_due).astype(np.int32)
        self.due_dom[ids] = dom

    def defer(self, ids: NDArray[np.integer], days: NDArray[np.integer]) -> None:
        """Move every open installment ``days`` later and re-arm their missed test."""
        cols = self._cols[None, :]
        shift = (cols >= self.first_open[ids][:, None]) & (cols < self.n[ids][:, None])
        self.due[ids] = self.due[ids] + np.where(shift, np.asarray(days, dtype=np.int32)[:, None], 0)
        self.miss_ptr[ids] = self.first_open[ids]

    def reduce(self, ids: NDArray[np.integer], fraction: NDArray[np.float64], day: int | NDArray[np.int64]) -> None:
        """Re-spread the open balance over smaller installments (see the module docstring)."""
        if len(ids) == 0:
            return
        new_amount = _round_cents(self.current_amount(ids) * (1.0 - fraction))
        self._respread(ids, np.maximum(new_amount, 0.01), day)

    def new_plan(self, ids: NDArray[np.integer], n_open: NDArray[np.integer], day: int | NDArray[np.int64]) -> None:
        """Re-spread the open balance over ``n_open`` installments (a plan the debtor chose, or staff set up).

        The installment is the balance over ``n_open`` rounded up to the cent (so the plan has ``n_open``
        installments, the last one the remainder), laid out as a reduction lays them out (first due date kept,
        or ``replan_days`` from now when it has passed); at most ``K`` installments in all.
        """
        if len(ids) == 0:
            return
        n_open = np.maximum(np.asarray(n_open, dtype=np.float64), 1.0)
        amount = np.ceil(self.balance[ids] / n_open * 100.0 - 1e-6) / 100.0
        self._respread(ids, np.maximum(amount, 0.01), day)

    def concede(self, ids: NDArray[np.integer], amounts: NDArray[np.float64]) -> None:
        """Lower the open balance by ``amounts`` (a discount, a waiver), taken off the last open installments.

        Installments left with nothing to pay drop off the end of the plan. Each amount must leave at least a
        cent of the balance (callers cap it), so the arrangement stays open.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        left = np.asarray(amounts, dtype=np.float64).copy()
        self.balance[ids] = _round_cents(self.balance[ids] - left)
        fo, n = self.first_open[ids], self.n[ids]
        for j in range(self.capacity - 1, -1, -1):
            live = (left > _EPS) & (j < n) & (j >= fo)
            if not live.any():
                continue
            r = ids[live]
            cut = np.minimum(left[live], self.amount[r, j] - self.paid[r, j])
            self.amount[r, j] = _round_cents(self.amount[r, j] - cut)
            left[live] -= cut
        cols = self._cols[None, :]
        open_part = np.where((cols >= fo[:, None]) & (cols < n[:, None]), self.amount[ids] - self.paid[ids], 0.0)
        has = open_part > _EPS
        new_n = np.where(has.any(axis=1), self.capacity - np.argmax(has[:, ::-1], axis=1), n)
        gone = cols >= new_n[:, None]
        self.amount[ids] = np.where(gone, 0.0, self.amount[ids])
        self.due[ids] = np.where(gone, _NEVER, self.due[ids]).astype(np.int32)
        self.n[ids] = new_n
        self.came_due[ids] = np.minimum(self.came_due[ids], new_n)
        self.miss_ptr[ids] = np.minimum(self.miss_ptr[ids], new_n)

    def _respread(
        self, ids: NDArray[np.integer], new_amount: NDArray[np.float64], day: int | NDArray[np.int64]
    ) -> None:
        """The open balance over installments of ``new_amount`` (the last the remainder), dated as a reduction."""
        fo = self.first_open[ids]
        balance = self.balance[ids]
        n_open = np.ceil(balance / new_amount - _EPS).astype(np.int64)
        n_new = np.minimum(fo + n_open, self.capacity)
        cols = self._cols[None, :]
        rel = cols - fo[:, None]
        inside = (rel >= 0) & (cols < n_new[:, None])
        last = cols == (n_new[:, None] - 1)
        remainder = _round_cents(balance - new_amount * (n_new - fo - 1))
        amounts = np.where(inside, new_amount[:, None], self.amount[ids])
        amounts = np.where(last, remainder[:, None], amounts)
        amounts = np.where(cols >= n_new[:, None], 0.0, amounts)
        paid = np.where(rel >= 0, 0.0, self.paid[ids])
        first_due = self.open_due(ids)
        first_due = np.where(first_due < day, day + self.replan_days, first_due)
        month0 = self.calendar.month_of(first_due)
        later = self.calendar.day_for(month0[:, None] + np.maximum(rel, 0), self.due_dom[ids][:, None])
        # Later installments fall on the regular due day, strictly after the first one.
        later = np.where(
            later <= first_due[:, None],
            self.calendar.day_for(month0[:, None] + rel + 1, self.due_dom[ids][:, None]),
            later,
        )
        dues = np.where(rel == 0, first_due[:, None], later)
        dues = np.where(inside, dues, np.where(rel < 0, self.due[ids], _NEVER))
        self.amount[ids] = amounts
        self.paid[ids] = paid
        self.due[ids] = dues.astype(np.int32)
        self.n[ids] = n_new
        self.miss_ptr[ids] = fo
        self.came_due[ids] = np.minimum(self.came_due[ids], fo)

    # -- the calendar moving on ----------------------------------------------------------------------------
    def advance_due(
        self, ids: NDArray[np.int64], day: int | NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Book installments whose due date has come (once each); returns their (rows, installments).

        ``day`` is the day, or each row's own day aligned with ``ids`` (rows with their own clocks).
        """
        out_ids, out_j = [], []
        rows = ids
        while len(rows):
            j = np.minimum(self.came_due[rows], self.capacity - 1)
            keep = (self.came_due[rows] < self.n[rows]) & (self.due_of(rows, j) <= day)
            rows, day = rows[keep], at(day, keep)
            if len(rows):
                out_ids.append(rows)
                out_j.append(self.came_due[rows].copy())
                self.came_due[rows] += 1
        return _cat(out_ids), _cat(out_j)

    def advance_missed(
        self, ids: NDArray[np.int64], day: int | NDArray[np.int64]
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Test installments whose due date + grace has passed; returns the unpaid ones (rows, installments).

        ``day`` is the day, or each row's own day aligned with ``ids``.
        """
        out_ids, out_j = [], []
        rows = ids
        while len(rows):
            j = np.minimum(self.miss_ptr[rows], self.capacity - 1)
            passed = self.due_of(rows, j).astype(np.int64) + self.grace_days + 1 <= day
            keep = (self.miss_ptr[rows] < self.n[rows]) & passed
            rows, day = rows[keep], at(day, keep)
            if len(rows):
                unpaid = rows[self.miss_ptr[rows] >= self.first_open[rows]]
                out_ids.append(unpaid)
                out_j.append(self.miss_ptr[unpaid].copy())
                self.miss_ptr[rows] += 1
        return _cat(out_ids), _cat(out_j)

    # -- payments -----------------------------------------------------------------------------------------
    def pay(
        self, ids: NDArray[np.integer], amounts: NDArray[np.float64], day: int | NDArray[np.int64]
    ) -> PaidInstallments:
        """Apply payments oldest installment first; return the installments they completed.

        Overpayment beyond the balance is not accepted (callers never pay more than :meth:`owed_now`). ``day``
        is the day of payment, or each payment's own day aligned with ``ids``.
        """
        rows = np.asarray(ids, dtype=np.int64)
        left = np.asarray(amounts, dtype=np.float64).copy()
        self.balance[rows] = _round_cents(self.balance[rows] - left)
        done_ids, done_j, done_late = [], [], []
        while True:
            live = (left > _EPS) & (self.first_open[rows] < self.n[rows])
            if not live.any():
                break
            r, remaining, day_r = rows[live], left[live], at(day, live)
            j = self.first_open[r]
            need = self.amount[r, j] - self.paid[r, j]
            p = np.minimum(remaining, need)
            self.paid[r, j] += p
            left[live] = remaining - p
            full = p >= need - _EPS
            done_ids.append(r[full])
            done_j.append(j[full])
            done_late.append(at(day_r, full) - self.due[r[full], j[full]].astype(np.int64))
            self.first_open[r[full]] += 1
            left[live] = np.where(full, left[live], 0.0)
        self.miss_ptr[rows] = np.maximum(self.miss_ptr[rows], self.first_open[rows])
        cat = np.concatenate
        if not done_ids:
            empty = np.zeros(0, dtype=np.int64)
            return PaidInstallments(empty, empty, empty)
        return PaidInstallments(cat(done_ids), cat(done_j), cat(done_late))
