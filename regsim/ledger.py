"""The ledger: the one place where an arrangement's state changes.

Every consequence of an event for an arrangement is worked out here and nowhere else: what a payment pays off
(oldest installment first, partly, several at once; never more than the balance), which installments fall due
or are missed as the days pass, when a plan breaks and which statutory collection costs that may charge,
how a deferral, a reduction or a new due day re-plans the installments, when an arrangement completes, what
an opt-out or a message event adds to the observable history, and which pending reminders a payment or an
ending cancels. The simulated world (:mod:`regsim.world`, :mod:`regsim.vector_world`), the replay of an event
log (:mod:`regsim.replay`) and the policy server (``serving``) all change arrangements only by calling a
:class:`Ledger`.

State is a struct of arrays, one row per arrangement (the plan in :class:`~regsim.arrangement.Schedules`, the
observable counters in :class:`~regsim.history.ObservableHistory`, the status, and every message in a
:class:`~regsim.messages.MessageBook`, whose transitions are :mod:`regsim.ledger_messages`'), so each transition
is vectorised over rows and is at once the
simulator's hot path and the server's per-request path. A transition takes the event (rows, time and what
happened) and writes the event together with every event it implies to the ledger's :class:`EventSink`, in
the order the event log records them; it returns what the caller's model needs next (e.g. the installments a
payment completed, for the debtor's habit and the thank-you decision point).

Nothing here is latent: a ledger rebuilt from an event log alone is the ledger that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus, PaidInstallments, Schedules
from regsim.calendar import Calendar
from regsim.clock import Day, Time, at
from regsim.collection_costs import statutory_collection_costs
from regsim.config import WorldConfig
from regsim.decision import ActionSpace, DecisionKind, message_purpose
from regsim.eventlog import EventType
from regsim.history import ObservableHistory
from regsim.ledger_menu import MenuLedger
from regsim.ledger_messages import EventSink, MessageLedger
from regsim.messages import MessageBook

__all__ = ["OPEN_STATUSES", "EventSink", "Ledger", "LedgerError", "Payments"]


#: Statuses in which an arrangement can still change (the others are final).
OPEN_STATUSES = (ArrangementStatus.PENDING, ArrangementStatus.OFFERED, ArrangementStatus.ACTIVE)
#: Days between a reminder letter and the first day statutory collection costs may be charged (F8).
COLLECTION_COSTS_NOTICE_DAYS = 14.0

# Plain ints where arrays are compared with enum members: NumPy probes an IntEnum operand's class for its array
# protocol, and in Python 3.11 each probe is a slow miss of ``EnumType.__getattr__`` (the same values).
_ACTIVE = int(ArrangementStatus.ACTIVE)
_PLAN_CREATED = int(DecisionKind.PLAN_CREATED)


class LedgerError(ValueError):
    """An event the state makes impossible (overpayment, a message that is not pending, ...).

    Attributes:
        field: The event's field at fault (e.g. ``"amount_eur"``), for an error naming it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Payments:
    """What a batch of payments did: the installments it completed, and the arrangements it completed."""

    installments: PaidInstallments
    completed: NDArray[np.int64]


class Ledger(MessageLedger, MenuLedger):
    """The state of ``n`` arrangements and its one transition.

    Args:
        config: The world config (plan rules, decision options, channel costs, breakdown rule).
        n: Number of arrangement rows.
        calendar: The calendar that due days of the month are laid on.
        sink: Where applied and derived events go.
    """

    def __init__(self, config: WorldConfig, n: int, calendar: Calendar, sink: EventSink) -> None:
        self.config = config
        self.calendar = calendar
        self.sink = sink
        self.space = ActionSpace.from_config(config.decisions)
        self.capacity = max(config.rules.max_total_installments, config.arrangements.max_installments)
        self._cost = np.array([0.0, *(c.cost_eur for c in config.channels.ordered())])
        self._due_day_options = np.array(config.decisions.due_day_options, dtype=np.int64)
        self._deferral_days = np.array(config.decisions.deferral_options, dtype=np.int64)
        self._reductions = np.array(config.decisions.reduction_options, dtype=np.float64)
        self._slot_hours = np.array([slot.hour for slot in self.space.send_slots], dtype=np.int64)
        self._setup(int(n))

    def _setup(self, n: int) -> None:
        self.n = n
        arr = self.config.arrangements
        self.sched = Schedules(n, self.capacity, self.calendar, arr.grace_days, arr.replan_days_to_first_due)
        self.history = ObservableHistory(n)
        self.status = np.zeros(n, dtype=np.int8)
        self.end_time = np.full(n, np.nan)
        self.last_letter_time = np.full(n, -np.inf)
        """When the last letter was posted to each arrangement (collection costs need one, F8)."""
        self.booked_day = np.full(n, -1, dtype=np.int64)
        """The last day whose bookkeeping (:meth:`book`) a row had through :meth:`catch_up`."""
        self.costs_waived = np.zeros(n, dtype=bool)
        """Self-service: the debtor chose a waiver of collection costs (a later breakdown charges none)."""
        self.chosen = np.zeros(n, dtype=bool)
        """Self-service: the arrangement runs on a solution its debtor chose (mechanism 10's ownership)."""
        self.concessions = np.zeros(n, dtype=np.int64)
        """Self-service: discounts and waivers granted."""
        self.book_of_messages = MessageBook()
        self._time_of = np.zeros(n)  # each row's moment while a batch of payments is applied

    @property
    def messages(self) -> MessageBook:
        """Every message of the arrangements."""
        return self.book_of_messages

    # ======================================================================================================
    # Plans
    # ======================================================================================================
    def create(
        self,
        rows: NDArray[np.int64],
        t: Time,
        day: Day,
        *,
        debt_eur: NDArray[np.float64],
        n_installments: NDArray[np.integer],
        due_day: NDArray[np.integer] | int,
        prior_payments: NDArray[np.integer],
        prior_late_share: NDArray[np.float64],
        prior_pay_dom: NDArray[np.integer],
    ) -> None:
        """Arrangements agreed: equal installments on a day of the month; the plan waits for its decision."""
        arr, h = self.config.arrangements, self.history
        self.sched.create(rows, day, n_installments, debt_eur, due_day, arr.min_days_to_first_due)
        self.status[rows] = ArrangementStatus.OFFERED
        h.created_day[rows] = day
        h.debt[rows] = debt_eur
        h.prior_payments[rows] = prior_payments
        h.prior_late_share[rows] = prior_late_share
        h.prior_pay_dom[rows] = prior_pay_dom
        self.booked_day[rows] = day
        self.sink.record(
            EventType.ARRANGEMENT_CREATED,
            t,
            rows,
            amount_eur=debt_eur,
            n_installments=self.sched.n[rows],
            installment_eur=self.sched.amount[rows, 0],
            due_day=self.sched.due_dom[rows],
            prior_payments=prior_payments,
            prior_late_share=prior_late_share,
            prior_pay_dom=prior_pay_dom,
        )

    def decide(
        self,
        rows: NDArray[np.int64],
        t: Time,
        day: Day,
        *,
        decision_ids: NDArray[np.int64],
        kinds: NDArray[np.int64],
        installments: NDArray[np.int64],
        actions: NDArray[np.int64],
        propensity: NDArray[np.float64],
        send_time: NDArray[np.float64],
        masked_rules: NDArray[np.object_] | list[str],
        policy: str,
        policy_version: str,
        message_ids: NDArray[np.int64] | None = None,
    ) -> NDArray[np.int64]:
        """Decisions taken (rows distinct): logged, the plan set up or re-planned, and their messages scheduled.

        Re-plans follow the action's order (due day, then deferral, then reduction), each logged with the plan
        as it stands after it. A contacting decision schedules one pending message (counted against the contact
        cap from now on).

        Args:
            rows: The arrangements (distinct).
            t: The moment of the decisions (one, or one per row).
            day: Their day (one, or one per row).
            decision_ids: Ids of the decisions.
            kinds: :class:`~regsim.decision.DecisionKind` of each.
            installments: The installment each is about.
            actions: The checked, normalised actions, shape ``(B, 5)``.
            propensity: The policy's probability of each action.
            send_time: When a contacting decision's message goes out (ignored without contact).
            masked_rules: Per decision, the comma-separated rules that masked options.
            policy: The deciding policy's name.
            policy_version: Its version.
            message_ids: Ids to log the new messages under, aligned with ``rows`` (read where a decision
                contacts; default: their positions in the message book).

        Returns:
            The book positions of the messages scheduled, in the order of the contacting rows.
        """
        cfg, s, h = self.config, self.sched, self.history
        a = actions
        contact = a[:, 0] > 0
        if self.sink.keeps(EventType.DECISION):  # its columns take some building: only when the event is kept
            self.sink.record(
                EventType.DECISION,
                t,
                rows,
                decision_id=decision_ids,
                decision_kind=kinds,
                installment=installments,
                a_channel=a[:, 0],
                a_send_slot=a[:, 1],
                a_due_day=a[:, 2],
                a_deferral=a[:, 3],
                a_reduction=a[:, 4],
                propensity=propensity,
                send_time=np.where(contact, send_time, np.nan),
                masked_rules=masked_rules,
                policy=policy,
                policy_version=policy_version,
            )
        self.status[rows[kinds == _PLAN_CREATED]] = ArrangementStatus.ACTIVE
        m = a[:, 2] > 0
        if m.any():
            dom = self._due_day_options[a[m, 2] - 1]
            s.set_due_day(rows[m], dom, at(day, m), cfg.arrangements.min_days_to_first_due)
            self.sink.record(
                EventType.DUE_DAY_SET,
                at(t, m),
                rows[m],
                due_day=dom,
                n_installments=s.n[rows[m]],
                installment_eur=s.current_amount(rows[m]),
            )
        m = a[:, 3] > 0
        if m.any():
            days = self._deferral_days[a[m, 3]]
            s.defer(rows[m], days)
            np.add.at(h.deferrals, rows[m], 1)
            self._log_replan(EventType.DEFERRAL, at(t, m), rows[m], deferral_days=days)
        m = a[:, 4] > 0
        if m.any():
            fraction = self._reductions[a[m, 4]]
            s.reduce(rows[m], fraction, at(day, m))
            np.add.at(h.reductions, rows[m], 1)
            self._log_replan(EventType.REDUCTION, at(t, m), rows[m], reduction=fraction)
        if not contact.any():
            return np.zeros(0, dtype=np.int64)
        c = np.flatnonzero(contact)
        h.add_contacts(rows[c], send_time[c])
        return self.book_of_messages.add(
            rows[c],
            a[c, 0],
            message_purpose(kinds[c]),
            np.asarray(installments, dtype=np.int64)[c],
            np.asarray(decision_ids, dtype=np.int64)[c],
            self._slot_hours[a[c, 1]],
            send_time[c],
            None if message_ids is None else np.asarray(message_ids, dtype=np.int64)[c],
        )

    def _log_replan(self, event: EventType, t: Time, rows: NDArray[np.int64], **extra: Any) -> None:
        """Log a re-plan with the plan as it stands afterwards (what a replay needs to follow it)."""
        s = self.sched
        self.sink.record(
            event,
            t,
            rows,
            n_installments=s.n[rows],
            installment_eur=s.current_amount(rows),
            installment=s.first_open[rows],
            **extra,
        )

    # ======================================================================================================
    # The calendar moving on
    # ======================================================================================================
    def book(self, rows: NDArray[np.int64], day: Day) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The bookkeeping of a day for these active rows: installments falling due, missed, and breakdowns.

        An installment falls due on its due day (logged once) and is missed when it is still unpaid ``grace``
        days after it; a plan breaks when ``breakdown_after_missed`` installments are overdue at once, or when
        its oldest open installment is overdue more than ``breakdown_after_overdue_days`` days, back to
        collection (:meth:`end`). ``day`` is the day, or each row's own (aligned with ``rows``); the events are
        logged at the start of that day.

        Returns:
            The installments missed today (rows, installments), oldest first per row; rows may repeat.
        """
        s = self.sched
        t = day if np.ndim(day) == 0 else np.asarray(day, dtype=np.float64)
        due_rows, due_j = s.advance_due(rows, day)
        if len(due_rows) and self.sink.keeps(EventType.INSTALLMENT_DUE):
            self.sink.record(
                EventType.INSTALLMENT_DUE,
                _at_rows(t, rows, due_rows),
                due_rows,
                installment=due_j,
                amount_eur=s.amount[due_rows, due_j],
            )
        missed_rows, missed_j = s.advance_missed(rows, day)
        if len(missed_rows):
            self.sink.record(
                EventType.INSTALLMENT_MISSED, _at_rows(t, rows, missed_rows), missed_rows, installment=missed_j
            )
            np.add.at(self.history.missed, missed_rows, 1)
        arr = self.config.arrangements
        overdue = s.overdue(rows)
        # Too many installments overdue at once, or the oldest one overdue too long (the last one included).
        too_late = (overdue > 0) & (day - s.open_due(rows) > arr.breakdown_after_overdue_days)
        broken = (overdue >= arr.breakdown_after_missed) | too_late
        if broken.any():
            self.end(rows[broken], at(float(t) if np.ndim(t) == 0 else t, broken), ArrangementStatus.BROKEN)
        return missed_rows, missed_j

    def catch_up(self, rows: NDArray[np.int64], day: Day) -> None:
        """Run :meth:`book` on every day of these rows up to ``day`` on which something can be booked.

        For a ledger that is not advanced day by day (a log replay, the server): each active row is booked on
        each of its next due and miss days in turn, up to ``day`` (one, or one per row), so the events carry
        the days on which the world would have booked them.
        """
        rows = np.asarray(rows, dtype=np.int64)
        target = np.broadcast_to(np.asarray(day, dtype=np.int64), rows.shape)
        s = self.sched
        last = s.capacity - 1
        while True:
            live = (self.status[rows] == _ACTIVE) & (self.booked_day[rows] < target)
            r, until = rows[live], target[live]
            if not len(r):
                break
            nxt_due = np.where(s.came_due[r] < s.n[r], s.due[r, np.minimum(s.came_due[r], last)], _FAR)
            miss_at = s.due[r, np.minimum(s.miss_ptr[r], last)].astype(np.int64) + s.grace_days + 1
            nxt_miss = np.where(s.miss_ptr[r] < s.n[r], miss_at, _FAR)
            limit = self.config.arrangements.breakdown_after_overdue_days
            nxt_late = np.where(s.overdue(r) > 0, s.open_due(r) + limit + 1, _FAR)
            nxt = np.maximum(np.minimum.reduce([nxt_due, nxt_miss, nxt_late]), self.booked_day[r] + 1)
            now = nxt <= until
            if not now.any():
                break
            r, nxt = r[now], nxt[now]
            self.book(r, nxt)
            self.booked_day[r] = nxt
        self.booked_day[rows] = np.maximum(self.booked_day[rows], target)

    # ======================================================================================================
    # Payments
    # ======================================================================================================
    def balance_check(self, rows: NDArray[np.int64], amounts: NDArray[np.float64]) -> None:
        """Refuse payments of more than the open balance (a payment is never more than is owed).

        Raises:
            LedgerError: On the field ``amount_eur``, for the first payment above its arrangement's balance.
        """
        over = np.asarray(amounts) > self.sched.balance[rows] + _CENT_TOLERANCE
        if over.any():
            k = int(np.argmax(over))
            raise LedgerError(
                "amount_eur",
                f"amount_eur: {float(amounts[k])} exceeds the open balance of {self.sched.balance[rows[k]]:.2f} EUR",
            )

    def pay(
        self,
        rows: NDArray[np.int64],
        amounts: NDArray[np.float64],
        times: NDArray[np.float64],
        day: Day,
        channel: NDArray[np.int64] | int = 0,
    ) -> Payments:
        """Payments received (rows distinct, active): oldest installment first, completions, cancelled reminders.

        Each payment is logged, then the installments it completed (with their days late), then the arrangements
        it completed (all their pending messages cancelled), then the pending reminders of installments now
        paid are cancelled.

        Args:
            rows: The paying arrangements (distinct).
            amounts: What each paid (at most its balance: see :meth:`balance_check`).
            times: When (one per row).
            day: The day of the payments (one, or one per row): installments paid after their due day are late.
            channel: Channel option of a payment made through a message's link (0: not through a message).
        """
        h, s = self.history, self.sched
        done = s.pay(rows, amounts, day)
        self.sink.record(EventType.PAYMENT, times, rows, amount_eur=amounts, channel=channel)
        h.last_payment_time[rows] = times
        self._time_of[rows] = times  # rows are distinct within one call
        if len(done.ids):
            self.sink.record(
                EventType.INSTALLMENT_PAID,
                self._time_of[done.ids],
                done.ids,
                installment=done.installment,
                deferral_days=done.days_late,
                amount_eur=s.amount[done.ids, done.installment],
            )
            np.add.at(h.on_time, done.ids[done.days_late <= 0], 1)
        complete = rows[s.first_open[rows] >= s.n[rows]]
        if len(complete):
            complete = np.unique(complete)
            self.status[complete] = ArrangementStatus.COMPLETED
            self.end_time[complete] = self._time_of[complete]
            self.sink.record(EventType.COMPLETED, self._time_of[complete], complete)
            self.cancel_pending(complete, None, reminders_only=False)
        self.cancel_pending(rows, None, reminders_only=True)
        return Payments(done, complete)

    # ======================================================================================================
    # Endings
    # ======================================================================================================
    def end(
        self,
        rows: NDArray[np.int64],
        t: Time,
        status: ArrangementStatus,
        collection_costs_eur: NDArray[np.float64] | None = None,
    ) -> None:
        """Arrangements broken (back to collection) or referred (to debt counselling); pending messages cancelled.

        A breakdown charges the statutory collection costs on the balance (F8) only when a reminder letter went
        out at least :data:`COLLECTION_COSTS_NOTICE_DAYS` days before; ``collection_costs_eur`` gives the costs
        instead (a breakdown declared by the creditor, who knows what was charged).
        """
        if not len(rows):
            return
        if status not in (ArrangementStatus.BROKEN, ArrangementStatus.REFERRED):
            raise ValueError(f"status: an arrangement ends broken or referred, not {status.name.lower()}")
        self.status[rows] = status
        self.end_time[rows] = t
        balance = self.sched.balance[rows]
        if status == ArrangementStatus.BROKEN:
            if collection_costs_eur is None:
                letter = self.last_letter_time[rows]  # (-inf: no letter was ever posted, so no notice was given)
                warned = np.isfinite(letter) & (letter <= t - COLLECTION_COSTS_NOTICE_DAYS)
                warned &= ~self.costs_waived[rows]  # (a waiver chosen on the self-service page)
                costs = np.where(warned, statutory_collection_costs(balance), 0.0)
            else:
                costs = np.asarray(collection_costs_eur, dtype=np.float64)
            self.sink.record(EventType.BROKEN, t, rows, amount_eur=balance, collection_costs_eur=costs)
        else:
            self.sink.record(EventType.REFERRED, t, rows, amount_eur=balance)
        self.cancel_pending(rows, t, reminders_only=False)

    # ======================================================================================================
    # Rows
    # ======================================================================================================
    def reset(self, rows: NDArray[np.int64]) -> None:
        """Give these rows fresh state (no arrangement yet); their messages leave the pending pool."""
        fresh = Ledger.__new__(Ledger)
        fresh.config, fresh.calendar, fresh.capacity = self.config, self.calendar, self.capacity
        fresh._setup(len(rows))
        for (mine, name), (theirs, _) in zip(self._row_state(), fresh._row_state(), strict=True):
            getattr(mine, name)[rows] = getattr(theirs, name)
        gone = np.zeros(self.n, dtype=bool)
        gone[rows] = True
        self.book_of_messages.forget_rows(gone)

    def row_arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        """Every per-row array of the state by name (``sched.due``, ``history.on_time``, ``status``, ...)."""
        out: dict[str, np.ndarray[Any, Any]] = {}
        for owner, name in self._row_state():
            prefix = "sched." if owner is self.sched else "history." if owner is self.history else ""
            out[prefix + name] = getattr(owner, name)
        return out

    def _row_state(self) -> list[tuple[Any, str]]:
        """(owner, attribute) of every per-row array: the ledger's own, the plan's and the history's."""
        out: list[tuple[Any, str]] = [
            (self, name)
            for name in (
                "status",
                "end_time",
                "last_letter_time",
                "booked_day",
                "_time_of",
                "costs_waived",
                "chosen",
                "concessions",
            )
        ]
        for owner in (self.sched, self.history):
            out += [(owner, k) for k, v in vars(owner).items() if isinstance(v, np.ndarray) and not k.startswith("_")]
        return out

    def subset(self, rows: NDArray[np.int64]) -> Ledger:
        """An independent copy of these rows' state (row ``k`` of the copy is ``rows[k]``), messages included."""
        rows = np.asarray(rows, dtype=np.int64)
        out = Ledger.__new__(Ledger)
        out.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _PER_LEDGER})
        out._setup(len(rows))
        for (theirs, name), (mine, _) in zip(out._row_state(), self._row_state(), strict=True):
            getattr(theirs, name)[:] = getattr(mine, name)[rows]
        new_row = np.full(self.n, -1, dtype=np.int64)
        new_row[rows] = np.arange(len(rows))
        m = self.book_of_messages
        out.book_of_messages = m.subset(m.of_rows(rows, self.n), new_row)
        return out

    def assign(self, rows: NDArray[np.int64], other: Ledger) -> None:
        """Write ``other``'s state (row ``k``) into these rows (row ``rows[k]``), its messages replacing theirs."""
        rows = np.asarray(rows, dtype=np.int64)
        for (mine, name), (theirs, _) in zip(self._row_state(), other._row_state(), strict=True):
            getattr(mine, name)[rows] = getattr(theirs, name)[: len(rows)]
        m = self.book_of_messages
        m.remove(m.of_rows(rows, self.n))
        m.extend(other.book_of_messages, rows)

    def grow(self, n: int) -> None:
        """Room for ``n`` rows (at least the current number); new rows are fresh."""
        if n <= self.n:
            return
        bigger = Ledger.__new__(Ledger)
        bigger.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _PER_LEDGER})
        bigger._setup(n)
        for (theirs, name), (mine, _) in zip(bigger._row_state(), self._row_state(), strict=True):
            getattr(theirs, name)[: self.n] = getattr(mine, name)
        bigger.book_of_messages = self.book_of_messages
        self.__dict__.update(bigger.__dict__)


#: Attributes :meth:`Ledger._setup` makes (per ledger); the others (config, tables) are shared by copies.
_PER_LEDGER = frozenset(
    {
        "n",
        "sched",
        "history",
        "status",
        "end_time",
        "last_letter_time",
        "booked_day",
        "book_of_messages",
        "_time_of",
        "costs_waived",
        "chosen",
        "concessions",
    }
)
_FAR = np.iinfo(np.int64).max // 4  # a day no row reaches
_CENT_TOLERANCE = 0.005  # amounts are in cents: half a cent is rounding


def _at_rows(t: float | NDArray[Any], rows: NDArray[np.int64], sub: NDArray[np.int64]) -> Any:
    """The time of each of ``sub`` (rows among ``rows``): a shared time as it is, else looked up by row."""
    if np.ndim(t) == 0:
        return t
    order = np.argsort(rows, kind="stable")
    return np.asarray(t)[order[np.searchsorted(rows[order], sub)]]
