"""The ledger's transitions of messages: sent, delivered, opened, clicked, opt-outs, and cancellations.

A part of :class:`regsim.ledger.Ledger` (its base class): what happens to a message the ledger scheduled, and
which pending messages a payment or an ending cancels. The messages live in the ledger's
:class:`~regsim.messages.MessageBook`; every transition writes its event to the ledger's :class:`EventSink`,
with the message's columns, and counts it in the observable history.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus, Schedules
from regsim.clock import Time, at
from regsim.config import CHANNELS
from regsim.decision import MessagePurpose
from regsim.eventlog import EventType
from regsim.history import ObservableHistory
from regsim.messages import MessageBook, MessageState

__all__ = ["EventSink", "MessageLedger"]

_LETTER = 1 + CHANNELS.index("letter")
# Plain ints where arrays are compared with enum members (see regsim.ledger).
_ACTIVE = int(ArrangementStatus.ACTIVE)
_PENDING, _SENT, _CANCELLED = (int(s) for s in (MessageState.PENDING, MessageState.SENT, MessageState.CANCELLED))
_REMINDER = int(MessagePurpose.REMINDER)


class EventSink(Protocol):
    """Where a ledger writes the events it applies and derives, in log order."""

    def keeps(self, event: EventType) -> bool:
        """Whether events of this type are written at all (a sink that keeps few spares building their columns)."""
        ...

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        """Write events of one type: one per row, at ``t`` (one time, or one per row), with columns of the log."""
        ...


class MessageLedger:
    """The message transitions of the ledger (see the module docstring)."""

    n: int
    sink: EventSink
    sched: Schedules
    history: ObservableHistory
    status: NDArray[np.int8]
    last_letter_time: NDArray[np.float64]
    book_of_messages: MessageBook
    _cost: NDArray[np.float64]
    _time_of: NDArray[np.float64]

    def message_sent(self, mids: NDArray[np.int64], t: Time, cost_eur: NDArray[np.float64] | None = None) -> None:
        """Messages went out (a letter posted, a call connected, an email or SMS sent): their cost is incurred.

        ``cost_eur`` overrides the channels' configured costs (production knows what it paid).
        """
        m = self.book_of_messages
        m.state[mids] = _SENT
        cost = self._cost[m.channel[mids]] if cost_eur is None else cost_eur
        self._log_messages(EventType.MESSAGE_SENT, mids, t, self.history.sent, amount_eur=cost)
        now = np.broadcast_to(np.asarray(t, dtype=np.float64), mids.shape)
        late = now > m.send_time[mids]
        if late.any():  # the contact cap counts it from its sending from now on
            self.history.move_contacts(m.row[mids[late]], m.send_time[mids[late]], now[late])
        letters = m.channel[mids] == _LETTER
        if letters.all():
            self.last_letter_time[m.row[mids]] = t
        elif letters.any():
            self.last_letter_time[m.row[mids[letters]]] = at(t, letters)

    def message_delivered(self, mids: NDArray[np.int64], t: Time) -> None:
        """Delivery receipts (email, SMS) and answered calls."""
        self._log_messages(EventType.MESSAGE_DELIVERED, mids, t, self.history.delivered)

    def message_opened(self, mids: NDArray[np.int64], t: Time) -> None:
        """'Opened' signals (noisy for email: privacy pre-fetch opens, F6)."""
        self._log_messages(EventType.MESSAGE_OPENED, mids, t, self.history.opened)

    def message_clicked(self, mids: NDArray[np.int64], t: Time) -> None:
        """Clicks on messages' payment links."""
        self._log_messages(EventType.MESSAGE_CLICKED, mids, t, self.history.clicked)

    def opt_out(self, rows: NDArray[np.int64], channel: NDArray[np.int64], t: Time, mids: NDArray[np.int64]) -> None:
        """Debtors opted out of channels (through the message at ``mids``, or ``-1``: not through a message)."""
        self.history.opted_out[rows, channel - 1] = True
        message_id = np.where(mids >= 0, self.book_of_messages.message_id[np.maximum(mids, 0)], -1)
        self.sink.record(EventType.OPT_OUT, t, rows, channel=channel, message_id=message_id)

    def still_wanted(self, mids: NDArray[np.int64], t: Time) -> NDArray[np.bool_]:
        """Whether each message may still go out; those no longer wanted are cancelled (logged at ``t``).

        A message goes out while it is pending, its arrangement active and, for a reminder, its installment
        unpaid.
        """
        m = self.book_of_messages
        rows = m.row[mids]
        pending = m.state[mids] == _PENDING
        active = self.status[rows] == _ACTIVE
        paid = (m.purpose[mids] == _REMINDER) & self.sched.is_paid(rows, m.installment[mids])
        ok = pending & active & ~paid
        dropped = pending & ~ok
        if dropped.any():
            self.cancel(mids[dropped], at(t, dropped))
        return ok

    def cancel(self, mids: NDArray[np.int64], t: Time) -> None:
        """Cancel these pending messages."""
        self.book_of_messages.state[mids] = _CANCELLED
        self._log_messages(EventType.MESSAGE_CANCELLED, mids, t)

    def cancel_pending(self, rows: NDArray[np.int64], t: Time | None, reminders_only: bool) -> None:
        """Cancel pending messages of these rows: reminders of paid installments, or all of them.

        ``t`` is the time of the cancellation (or each row's, aligned with ``rows``); ``None`` means each row's
        own payment time (during :meth:`pay`).
        """
        m = self.book_of_messages
        if not len(m.pending_pool) or not len(rows):
            return
        chosen = np.zeros(self.n, dtype=bool)  # a mask over the rows: cheaper than np.isin on small sets
        chosen[rows] = True
        hit = m.pending_of(chosen)
        if reminders_only:
            hit = hit[(m.purpose[hit] == _REMINDER) & self.sched.is_paid(m.row[hit], m.installment[hit])]
        if not len(hit):
            return
        if t is None:
            when: Time = self._time_of[m.row[hit]]
        elif np.ndim(t) == 0:
            when = t
        else:  # each row's own time (rows with their own clocks)
            order = np.argsort(rows, kind="stable")
            when = np.asarray(t)[order[np.searchsorted(rows[order], m.row[hit])]]
        self.cancel(hit, when)

    def _log_messages(
        self,
        event: EventType,
        mids: NDArray[np.int64],
        t: Time,
        counter: NDArray[np.int64] | None = None,
        **extra: Any,
    ) -> None:
        """Log a message event with the message's columns (if kept), and count it in an observable counter."""
        m = self.book_of_messages
        rows, ch = m.row[mids], m.channel[mids]
        if counter is not None:
            np.add.at(counter, (rows, ch - 1), 1)
        if not self.sink.keeps(event):
            return
        self.sink.record(
            event,
            t,
            rows,
            message_id=m.message_id[mids],
            channel=ch,
            decision_id=m.decision[mids],
            installment=m.installment[mids],
            **extra,
        )
