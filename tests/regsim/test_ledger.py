"""The ledger, the one transition of arrangement state: each kind of event and what it implies, and a log's replay.

Small hand-made ledgers check the transitions one by one (what a payment pays off and cancels, when a plan
breaks and what it may charge, how re-plans are logged); simulated logs check that replaying a log through the
ledger derives every event the world logged, and nothing else.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

import agents
from regsim import WorldConfig, simulate
from regsim.arrangement import ArrangementStatus
from regsim.calendar import Calendar
from regsim.clock import Time
from regsim.collection_costs import statutory_collection_costs
from regsim.config import CHANNELS
from regsim.decision import DecisionKind
from regsim.eventlog import EventType
from regsim.ledger import Ledger, LedgerError
from regsim.messages import MessageState
from regsim.replay import morning_booking_day
from tests.regsim.replay_check import assert_replay_rederives_the_log

LETTER, SMS = 1 + CHANNELS.index("letter"), 1 + CHANNELS.index("sms")


class Recorder:
    """An event sink that keeps everything, by event type."""

    def __init__(self) -> None:
        self.events: list[tuple[EventType, Any, np.ndarray, dict[str, Any]]] = []

    def keeps(self, event: EventType) -> bool:
        return True

    def record(self, event: EventType, t: Time, rows: np.ndarray, **columns: Any) -> None:
        self.events.append((event, t, np.asarray(rows).copy(), columns))

    def kinds(self) -> list[EventType]:
        return [e for e, *_ in self.events]

    def of(self, event: EventType) -> list[tuple[Any, np.ndarray, dict[str, Any]]]:
        return [(t, r, c) for e, t, r, c in self.events if e == event]


def ledger_with_plans(n: int = 2, installments: int = 3, debt: float = 300.0) -> tuple[Ledger, Recorder]:
    """``n`` active arrangements of ``installments`` equal installments, created on day 0 (first due day 31)."""
    config = WorldConfig()
    sink = Recorder()
    ledger = Ledger(config, n, Calendar(config.simulation.start_date, 2000), sink)
    rows = np.arange(n)
    ledger.create(
        rows,
        0.0,
        0,
        debt_eur=np.full(n, debt),
        n_installments=np.full(n, installments),
        due_day=5,
        prior_payments=np.zeros(n, dtype=np.int64),
        prior_late_share=np.zeros(n),
        prior_pay_dom=np.full(n, -1),
    )
    decide(ledger, rows, kind=DecisionKind.PLAN_CREATED, channel=0)
    return ledger, sink


def decide(
    ledger: Ledger,
    rows: np.ndarray,
    kind: DecisionKind,
    channel: int,
    t: float = 0.0,
    installment: int = 0,
    **parts: int,
) -> np.ndarray:
    actions = np.zeros((len(rows), 5), dtype=np.int64)
    actions[:, 0] = channel
    for k, name in enumerate(("due_day", "deferral", "reduction")):
        actions[:, 2 + k] = parts.get(name, 0)
    return ledger.decide(
        rows,
        t,
        int(t),
        decision_ids=np.arange(len(rows)) + 100 * int(t),
        kinds=np.full(len(rows), int(kind)),
        installments=np.full(len(rows), installment),
        actions=actions,
        propensity=np.ones(len(rows)),
        send_time=np.full(len(rows), t + 0.5),
        masked_rules=[""] * len(rows),
        policy="test",
        policy_version="1",
    )


def test_a_payment_pays_oldest_first_across_installments_and_completes() -> None:
    ledger, sink = ledger_with_plans(n=1)
    r = np.array([0])
    reminder = decide(ledger, r, DecisionKind.PRE_DUE, channel=SMS, t=26.0, installment=0)
    paid = ledger.pay(r, np.array([150.0]), np.array([27.5]), 27)  # one and a half installments
    assert paid.installments.installment.tolist() == [0]
    assert ledger.sched.first_open[0] == 1 and ledger.sched.paid[0, 1] == pytest.approx(50.0)
    assert ledger.messages.state[reminder[0]] == MessageState.CANCELLED  # its installment is paid
    assert sink.kinds()[-3:] == [EventType.PAYMENT, EventType.INSTALLMENT_PAID, EventType.MESSAGE_CANCELLED]
    assert ledger.history.on_time[0] == 1 and ledger.history.last_payment_time[0] == 27.5
    done = ledger.pay(r, np.array([150.0]), np.array([40.0]), 40)  # the rest: two installments at once
    assert done.installments.installment.tolist() == [1, 2] and done.completed.tolist() == [0]
    assert ledger.status[0] == ArrangementStatus.COMPLETED and ledger.end_time[0] == 40.0
    assert sink.kinds()[-1] == EventType.COMPLETED
    # Installment 1 was due on day 59 and 2 on day 90: paid early, both on time.
    assert ledger.history.on_time[0] == 3


def test_an_overpayment_is_refused_naming_the_amount() -> None:
    ledger, _ = ledger_with_plans(n=1, debt=300.0)
    ledger.balance_check(np.array([0]), np.array([300.004]))  # within half a cent
    with pytest.raises(LedgerError, match=r"amount_eur: 301\.0 exceeds the open balance of 300\.00 EUR") as info:
        ledger.balance_check(np.array([0]), np.array([301.0]))
    assert info.value.field == "amount_eur"


def test_missed_installments_break_the_plan_with_costs_only_after_a_letter_14_days_before() -> None:
    ledger, sink = ledger_with_plans(n=2)
    rows = np.array([0, 1])
    letters = decide(ledger, np.array([1]), DecisionKind.PRE_DUE, channel=LETTER, t=20.0)
    ledger.message_sent(letters, 20.5)  # only arrangement 1 was warned, by a letter
    for day in range(1, 70):
        ledger.book(rows[ledger.status[rows] == ArrangementStatus.ACTIVE], day)
    # Installments due on days 31 and 59, both missed the day after: broken on day 60, with costs for 1 only.
    broken = sink.of(EventType.BROKEN)
    assert [(t, r.tolist()) for t, r, _ in broken] == [(60.0, [0, 1])]
    costs = broken[0][2]["collection_costs_eur"]
    assert costs[0] == 0.0 and costs[1] == statutory_collection_costs(np.array([300.0]))[0] > 0
    assert (ledger.status[rows] == ArrangementStatus.BROKEN).all()
    assert ledger.messages.state[letters[0]] == MessageState.SENT


def test_an_ending_cancels_every_pending_message() -> None:
    ledger, _ = ledger_with_plans(n=2)
    pending = decide(ledger, np.array([0, 1]), DecisionKind.PRE_DUE, channel=SMS, t=26.0)
    ledger.end(np.array([0]), 27.0, ArrangementStatus.REFERRED)
    assert ledger.messages.state[pending].tolist() == [MessageState.CANCELLED, MessageState.PENDING]
    assert not ledger.still_wanted(pending[:1], 27.5).any() and ledger.still_wanted(pending[1:], 27.5).all()
    with pytest.raises(ValueError, match="broken or referred"):
        ledger.end(np.array([1]), 28.0, ArrangementStatus.COMPLETED)


def test_replans_are_logged_with_the_plan_after_them() -> None:
    ledger, sink = ledger_with_plans(n=1, installments=4, debt=400.0)
    r = np.array([0])
    decide(ledger, r, DecisionKind.MISSED, channel=0, t=32.0, deferral=2, reduction=1)
    deferral = sink.of(EventType.DEFERRAL)[0][2]
    reduction = sink.of(EventType.REDUCTION)[0][2]
    days = WorldConfig().decisions.deferral_options[2]
    fraction = WorldConfig().decisions.reduction_options[1]
    assert deferral["deferral_days"].tolist() == [days]
    assert reduction["reduction"].tolist() == [fraction]
    assert reduction["n_installments"][0] == ledger.sched.n[0] > 4  # smaller installments, more of them
    assert reduction["installment_eur"][0] == pytest.approx(100.0 * (1 - fraction))
    assert ledger.history.deferrals[0] == ledger.history.reductions[0] == 1


def test_catching_up_books_what_day_by_day_booking_books() -> None:
    day_by_day, a = ledger_with_plans(n=3, installments=4)
    lazy, b = ledger_with_plans(n=3, installments=4)
    lazy.pay(np.array([1]), np.array([75.0]), np.array([30.5]), 30)
    day_by_day.pay(np.array([1]), np.array([75.0]), np.array([30.5]), 30)
    rows = np.arange(3)
    for day in range(1, 140):
        day_by_day.book(rows[day_by_day.status == ArrangementStatus.ACTIVE], day)
    lazy.catch_up(rows, 139)

    def per_row(sink: Recorder) -> Counter[tuple[Any, ...]]:
        out: Counter[tuple[Any, ...]] = Counter()
        for event, t, rows, _ in sink.events:
            for i, row in enumerate(rows.tolist()):
                out[(event, row, float(t if np.ndim(t) == 0 else t[i]))] += 1
        return out

    assert per_row(a) == per_row(b)
    assert sum(e == EventType.BROKEN for e, *_ in a.events) > 0  # the stretch saw misses and breakdowns
    for name, value in day_by_day.row_arrays().items():
        if name != "booked_day":
            np.testing.assert_array_equal(value, lazy.row_arrays()[name], err_msg=name)


def test_subset_and_assign_move_rows_with_their_messages() -> None:
    ledger, _ = ledger_with_plans(n=3)
    sent = decide(ledger, np.array([0, 2]), DecisionKind.PRE_DUE, channel=SMS, t=26.0)
    copy = ledger.subset(np.array([2]))
    assert copy.n == 1 and copy.messages.n == 1 and copy.messages.row[0] == 0
    copy.pay(np.array([0]), np.array([100.0]), np.array([27.0]), 27)  # cancels its reminder, in the copy only
    assert ledger.messages.state[sent[1]] == MessageState.PENDING
    ledger.assign(np.array([2]), copy)
    mine = ledger.messages.of_rows(np.array([2]), ledger.n)
    assert ledger.messages.state[mine].tolist() == [MessageState.CANCELLED]
    assert ledger.sched.first_open[2] == 1 and ledger.sched.first_open[0] == 0


def test_assigning_a_row_keeps_no_phantom_in_the_pending_pool() -> None:
    """Replacing a row's pending messages (a server's late event merging a re-derived arrangement) must not leave
    a removed position in the pool: as -1 it read the buffer's unused last slot, a pending message of row 0 that
    row 0's next cancellation logged (channel "none"; found as a failed write group in CI)."""
    ledger, _ = ledger_with_plans(n=3)
    decide(ledger, np.array([0, 2]), DecisionKind.PRE_DUE, channel=SMS, t=26.0)
    ledger.assign(np.array([2]), ledger.subset(np.array([2])))
    book = ledger.messages
    assert (book.pending_pool >= 0).all() and sorted(book.pending_pool.tolist()) == [0, 1]
    ledger.pay(np.array([0]), np.array([100.0]), np.array([27.0]), 27)  # cancels row 0's reminder, only it
    assert book.state[: book.n].tolist() == [MessageState.CANCELLED, MessageState.PENDING]
    assert book.state[book.n :].tolist() == [0] * (len(book.state) - book.n)  # no phantom slot touched


@pytest.mark.parametrize(
    ("event", "t", "day"),
    [
        (EventType.PAYMENT, 12.25, 12),
        (EventType.PAYMENT, 12.0, 11),  # a payment at midnight was scheduled the day before
        (EventType.MESSAGE_OPENED, 12.0, 11),
        (EventType.REFERRED, 12.0, 11),  # the morning refers before it books
        (EventType.DECISION, 12.0, 12),  # decisions come after the morning's bookkeeping
        (EventType.BROKEN, 12.0, 12),  # a breakdown is the bookkeeping's
    ],
)
def test_the_bookkeeping_before_an_event_follows_the_days_order(event: EventType, t: float, day: int) -> None:
    assert morning_booking_day(event, t) == day


@pytest.mark.parametrize("policy", ["static-dunning", "random", "one-step-oracle"])
def test_replaying_a_log_rederives_every_event_it_holds(policy: str) -> None:
    """Only the events from outside the ledger are applied; everything else the world logged is derived again."""
    config = WorldConfig()
    result = simulate(config, agents.make(policy), arrangements=300, months=6, seed=4)
    kinds = assert_replay_rederives_the_log(config, result)
    assert {"installment_missed", "installment_paid", "message_cancelled", "broken"} <= kinds
