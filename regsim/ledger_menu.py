"""The ledger's transitions of self-service: a menu shown, the debtor's choice and its consequences, staff cases.

A part of :class:`regsim.ledger.Ledger` (a base class, as :mod:`regsim.ledger_messages` is). Every consequence of
a choice on the self-service page (docs/mechanisms.md#mechanism-10) is worked out here, so the world, the log's
replay and the server derive the same events from the same choice:

* **deferral** of the level's days: every open installment later (a ``deferral`` event, as a bot's deferral);
* **plan** of the level's installments: the open balance re-spread (a ``new_plan`` event);
* **waiver**: the statutory collection costs of the open balance (F8 scale, at most
  ``self_service.waiver_share_cap`` of it) come off the balance, and a later breakdown charges none
  (a ``concession`` event);
* **discount** of the level's fraction of the open balance (a ``concession`` event);
* **counselling**: the arrangement ends as *referred* (a ``referred`` event);
* **custom**: nothing yet; the world queues the case for the collectors, and staff's solution comes back as
  :meth:`MenuLedger.case_resolved` (a new plan and a deferral);
* every choice but closing the page and counselling sends a confirmation (a message on
  ``self_service.confirmation_channel``, scheduled at once, under the menu's id).

A chosen solution (everything but closing the page and counselling) marks the arrangement ``chosen``, which the
ownership effect reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus, Schedules
from regsim.clock import Day, Time, at
from regsim.collection_costs import statutory_collection_costs
from regsim.config import CHANNELS, WorldConfig
from regsim.decision import MessagePurpose
from regsim.eventlog import EventType
from regsim.history import ObservableHistory
from regsim.ledger_messages import EventSink
from regsim.menu import DEFERRAL_SLOT, DISCOUNT_SLOT, PLAN_SLOT, MenuOption
from regsim.messages import MessageBook

__all__ = ["MenuLedger", "levels_from_log", "menu_flags"]

_CONFIRMATION = int(MessagePurpose.CONFIRMATION)
_CENT = 0.01
# The choices that keep the arrangement going on a solution the debtor chose.
_OWNED = np.array([int(o) for o in (MenuOption.DEFERRAL, MenuOption.PLAN, MenuOption.WAIVER, MenuOption.DISCOUNT)])


def menu_flags(levels: NDArray[np.int64]) -> NDArray[np.int64]:
    """The yes/no slots of menus as the bits of ``a_channel`` (1 waiver, 2 counselling, 4 custom)."""
    lv = np.asarray(levels, dtype=np.int64)
    return (lv[:, 2] > 0) * 1 + (lv[:, 4] > 0) * 2 + (lv[:, 5] > 0) * 4


def levels_from_log(
    a_deferral: NDArray[np.int64],
    a_reduction: NDArray[np.int64],
    a_due_day: NDArray[np.int64],
    flags: NDArray[np.int64],
) -> NDArray[np.int64]:
    """Menus' slot levels from the columns of their ``menu_shown`` events (the inverse of the logging)."""
    flags = np.asarray(flags, dtype=np.int64)
    return np.stack(
        [a_deferral, a_reduction, (flags & 1) > 0, a_due_day, (flags & 2) > 0, (flags & 4) > 0], axis=1
    ).astype(np.int64)


class MenuLedger:
    """The self-service transitions of the ledger (see the module docstring)."""

    config: WorldConfig
    sink: EventSink
    sched: Schedules
    history: ObservableHistory
    book_of_messages: MessageBook
    costs_waived: NDArray[np.bool_]
    chosen: NDArray[np.bool_]
    concessions: NDArray[np.int64]

    def end(
        self,
        rows: NDArray[np.int64],
        t: Time,
        status: ArrangementStatus,
        collection_costs_eur: NDArray[np.float64] | None = None,
    ) -> None:
        raise NotImplementedError  # (the ledger's)

    def _log_replan(self, event: EventType, t: Time, rows: NDArray[np.int64], **extra: Any) -> None:
        raise NotImplementedError  # (the ledger's)

    def menu_shown(
        self,
        rows: NDArray[np.int64],
        t: Time,
        *,
        menu_ids: NDArray[np.int64],
        installments: NDArray[np.int64],
        levels: NDArray[np.int64],
        propensity: NDArray[np.float64],
        masked_rules: list[str],
        policy: str,
        policy_version: str,
    ) -> None:
        """Menus shown (logged only: a menu changes nothing until the debtor chooses)."""
        lv = np.asarray(levels, dtype=np.int64)
        self.sink.record(
            EventType.MENU_SHOWN,
            t,
            rows,
            decision_id=menu_ids,
            installment=installments,
            a_deferral=lv[:, DEFERRAL_SLOT],
            a_reduction=lv[:, PLAN_SLOT],
            a_due_day=lv[:, DISCOUNT_SLOT],
            a_channel=menu_flags(lv),
            propensity=propensity,
            masked_rules=np.asarray(masked_rules, dtype=object),
            policy=policy,
            policy_version=policy_version,
        )

    def menu_chosen(
        self,
        rows: NDArray[np.int64],
        t: Time,
        day: Day,
        *,
        menu_ids: NDArray[np.int64],
        installments: NDArray[np.int64],
        levels: NDArray[np.int64],
        options: NDArray[np.int64],
        message_ids: NDArray[np.int64] | None = None,
    ) -> NDArray[np.int64]:
        """The debtors' choices (rows distinct, active): logged, then their consequences (module docstring).

        Args:
            rows: The arrangements.
            t: The moment of the choices (one, or one per row).
            day: Their day.
            menu_ids: Ids of the menus answered.
            installments: The installment each menu was about.
            levels: The menus' slot levels, ``(B, 6)``.
            options: The :class:`~regsim.menu.MenuOption` chosen (0: closed the page).
            message_ids: Ids to log the confirmations under, aligned with ``rows`` (default: book positions).

        Returns:
            The book positions of the confirmations scheduled (send time ``t``), in row order.
        """
        ss = self.config.self_service
        s, h = self.sched, self.history
        opt = np.asarray(options, dtype=np.int64)
        lv = np.asarray(levels, dtype=np.int64)
        self.sink.record(EventType.MENU_CHOICE, t, rows, decision_id=menu_ids, a_channel=opt, installment=installments)
        m = opt == MenuOption.DEFERRAL
        if m.any():
            days = np.asarray(ss.deferral_days, dtype=np.int64)[lv[m, DEFERRAL_SLOT]]
            s.defer(rows[m], days)
            np.add.at(h.deferrals, rows[m], 1)
            self._log_replan(EventType.DEFERRAL, at(t, m), rows[m], deferral_days=days)
        m = opt == MenuOption.PLAN
        if m.any():
            n = np.asarray(ss.plan_installments, dtype=np.int64)[lv[m, PLAN_SLOT]]
            s.new_plan(rows[m], n, at(day, m))
            self._log_replan(EventType.NEW_PLAN, at(t, m), rows[m])
        m = opt == MenuOption.WAIVER
        if m.any():
            balance = s.balance[rows[m]]
            waived = np.minimum(statutory_collection_costs(balance), ss.waiver_share_cap * balance)
            self._concede(rows[m], at(t, m), waived, np.full(int(m.sum()), np.nan))
            self.costs_waived[rows[m]] = True
        m = opt == MenuOption.DISCOUNT
        if m.any():
            fraction = np.asarray(ss.discounts, dtype=np.float64)[lv[m, DISCOUNT_SLOT]]
            self._concede(rows[m], at(t, m), fraction * s.balance[rows[m]], fraction)
        self.chosen[rows[np.isin(opt, _OWNED)]] = True
        m = opt == MenuOption.COUNSELLING
        if m.any():
            self.end(rows[m], at(t, m), ArrangementStatus.REFERRED)
        confirm = (opt != MenuOption.CLOSE) & (opt != MenuOption.COUNSELLING)
        if not confirm.any():
            return np.zeros(0, dtype=np.int64)
        c = np.flatnonzero(confirm)
        when = np.broadcast_to(np.asarray(t, dtype=np.float64), rows.shape)[c]
        h.add_contacts(rows[c], when)
        channel = 1 + CHANNELS.index(ss.confirmation_channel)
        return self.book_of_messages.add(
            rows[c],
            np.full(len(c), channel, dtype=np.int64),
            np.full(len(c), _CONFIRMATION, dtype=np.int64),
            np.asarray(installments, dtype=np.int64)[c],
            np.asarray(menu_ids, dtype=np.int64)[c],
            np.floor((when - np.floor(when)) * 24.0 + 1e-9).astype(np.int64),
            when,
            None if message_ids is None else np.asarray(message_ids, dtype=np.int64)[c],
        )

    def _concede(self, rows: NDArray[np.int64], t: Time, amounts: NDArray[np.float64], fraction: Any) -> None:
        """A concession of ``amounts`` (rounded to cents, leaving at least a cent of the balance), logged."""
        s = self.sched
        amounts = np.maximum(np.minimum(np.round(amounts, 2), np.round(s.balance[rows] - _CENT, 2)), 0.0)
        s.concede(rows, amounts)
        np.add.at(self.concessions, rows, 1)
        self.sink.record(
            EventType.CONCESSION,
            t,
            rows,
            amount_eur=amounts,
            reduction=fraction,
            n_installments=s.n[rows],
            installment_eur=s.current_amount(rows),
            installment=s.first_open[rows],
        )

    def case_resolved(
        self,
        rows: NDArray[np.int64],
        t: Time,
        day: Day,
        *,
        menu_ids: NDArray[np.int64],
        deferral_days: NDArray[np.int64],
        n_installments: NDArray[np.int64],
        cost_eur: NDArray[np.float64],
    ) -> None:
        """Staff resolved custom-solution cases (rows distinct, active): a new plan, then a deferral, logged."""
        days = np.asarray(deferral_days, dtype=np.int64)
        n = np.asarray(n_installments, dtype=np.int64)
        self.sink.record(
            EventType.CASE_RESOLVED,
            t,
            rows,
            decision_id=menu_ids,
            amount_eur=cost_eur,
            deferral_days=days,
            n_installments=n,
        )
        m = n > 0
        if m.any():
            self.sched.new_plan(rows[m], n[m], at(day, m))
            self._log_replan(EventType.NEW_PLAN, at(t, m), rows[m])
        m = days > 0
        if m.any():
            self.sched.defer(rows[m], days[m])
            np.add.at(self.history.deferrals, rows[m], 1)
            self._log_replan(EventType.DEFERRAL, at(t, m), rows[m], deferral_days=days[m])
        self.chosen[rows] = True
