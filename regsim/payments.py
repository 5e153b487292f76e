"""How debtors pay: each morning's decision to pay (and at what hour), the payment itself, and its effects.

A part of :class:`regsim.world.World` (a mixin: it reads the world's debtors and ledger). Every day, a debtor
whose oldest open installment is due within the pay window (or overdue) sets out to pay with the probability
of :func:`regsim.behaviour.pay_intent_probability`, at a uniform hour of ``arrangements.pay_hours``; when that
hour comes (:meth:`PaymentBehaviour._settle`) they pay what is owed if their free cash covers it, else, with
``arrangements.partial_payment_prob``, what they can (whole euros, at least
``arrangements.min_partial_payment_eur``). What a payment does to the arrangement is the ledger's
(:meth:`regsim.ledger.Ledger.pay`); what it does to the debtor (less cash, a longer on-time streak or a broken
one, a thank-you decision point) is here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from regsim import behaviour
from regsim.arrangement import ArrangementStatus
from regsim.clock import Day, Time, at
from regsim.random import Purpose
from regsim.world_parts import WorldParts

__all__ = ["PAY_TOLERANCE_EUR", "PaymentBehaviour"]

#: A debtor pays in full when their cash reaches what is owed less this (half a cent: amounts are in cents).
PAY_TOLERANCE_EUR = 0.005
_ACTIVE = int(ArrangementStatus.ACTIVE)  # (a plain int: see regsim.ledger)
# Draws made together (same keys), each a pure function of its purpose and keys as ever.
_PAYMENT_DRAWS = (Purpose.ATTEND, Purpose.PARTIAL, Purpose.PAY_HOUR)


class PaymentBehaviour(WorldParts):
    """The paying part of the world (see the module docstring)."""

    def _draw_payments(self, among: NDArray[np.int64] | None = None) -> None:
        """Who sets out to pay today, and at what hour (``pay_time``)."""
        active = self._rows_with(ArrangementStatus.ACTIVE, among)
        arr = self.config.arrangements
        # Only a row whose oldest open installment is due within the pay window owes something today (the open
        # installments fall due in order): the others are left out before the costlier probability.
        active = active[self.ledger.sched.open_due(active) <= self._day_of(active) + arr.pay_window_days]
        if not len(active):
            return
        p, owed = self.payment_probability(active, self._day_of(active))
        owes = owed > 0
        rows, p, owed = active[owes], p[owes], owed[owes]
        d = self._day_of(rows)
        gid = self.gid[rows]
        u_go, u_partial, u_hour = self.streams.uniforms(_PAYMENT_DRAWS, gid, d)
        go = u_go < p
        # A debtor short of the full amount this morning set out to pay with the chance q of paying part already
        # in ``p``: they may pay part. The draw decides only for one who could pay in full now but is short at
        # the payment hour, so that q is charged once on either path.
        short = self.state.cash[rows] < owed - PAY_TOLERANCE_EUR
        partial = short | (u_partial < arr.partial_payment_prob)
        first, until = arr.pay_hours
        hour = first + (until - first) * u_hour
        self.pay_time[rows[go]] = at(d, go) + hour[go] / 24.0
        self.pay_partial[rows[go]] = partial[go]

    def payment_probability(self, ids: NDArray[np.int64], d: Day) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Latent: P(the debtor sets out to pay on day ``d``) and what they owe then (ground truth, oracle, info).

        ``d`` is a day, or each debtor's own day aligned with ``ids``.
        """
        arr, sched = self.config.arrangements, self.ledger.sched
        owed = sched.owed_now(ids, d, arr.pay_window_days)
        days_to_due = sched.open_due(ids) - d
        p = behaviour.pay_intent_probability(self.state, self.pop, self.config.population, arr, ids, days_to_due)
        able = self.state.cash[ids] >= owed - PAY_TOLERANCE_EUR
        partial = arr.partial_payment_prob * (self.state.cash[ids] >= arr.min_partial_payment_eur)
        if self._ownership is not None:  # mechanism 10: a chosen solution is kept more often
            owned = self.ledger.chosen[ids]
            if owned.any():
                p = np.where(owned, p + self._ownership * (1.0 - p), p)
        p_effective = p * np.where(able, 1.0, partial)
        return p_effective, owed

    def _settle(self, debtors: NDArray[np.int64], t: Time) -> None:
        """Carry out today's planned payments of these debtors whose hour has come."""
        if not len(debtors):
            return
        when = self.pay_time[debtors]
        self.pay_time[debtors] = np.inf
        alive = self.ledger.status[debtors] == _ACTIVE
        debtors, when = debtors[alive], when[alive]
        if not len(debtors):
            return
        arr = self.config.arrangements
        owed = self.ledger.sched.owed_now(debtors, self._payment_day(when), arr.pay_window_days)
        cash = self.state.cash[debtors]
        full = cash >= owed - PAY_TOLERANCE_EUR
        partial_amount = np.where(
            self.pay_partial[debtors] & (cash >= arr.min_partial_payment_eur), np.floor(np.minimum(cash, owed)), 0.0
        )
        amount = np.where(full, owed, partial_amount)
        ok = amount > 0
        order = np.argsort(when[ok], kind="stable")
        self._pay(debtors[ok][order], amount[ok][order], when[ok][order], channel=None)

    def _pay(
        self,
        debtors: NDArray[np.int64],
        amounts: NDArray[np.float64],
        t: NDArray[np.float64] | float,
        channel: NDArray[np.int64] | None,
    ) -> None:
        """Debtors (distinct) pay: the ledger books it; their cash, streaks and thank-you points follow."""
        if not len(debtors):
            return
        times = np.broadcast_to(np.asarray(t, dtype=np.float64), debtors.shape)
        self.state.cash[debtors] -= amounts
        paid = self.ledger.pay(debtors, amounts, times, self._payment_day(times), 0 if channel is None else channel)
        done = paid.installments
        if len(done.ids):
            on_time = done.days_late <= 0
            self.state.streak[done.ids[on_time]] += 1.0
            self.state.streak[done.ids[~on_time]] = 0.0
            self.thank[done.ids] = True
            self.thank_installment[done.ids] = done.installment
        self.thank[paid.completed] = False
