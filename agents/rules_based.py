"""Rule-based policies: today's fixed process and simple heuristics (pure Python and NumPy, no torch).

* ``silent`` never contacts and changes nothing: the floor any policy must beat.
* ``static-dunning`` is today's fixed dunning process: an email a few days before each due date, an SMS the
  day after a miss, a letter after a week, a robocall after two weeks; the world breaks the arrangement after
  the rule set's number of overdue installments.
* ``payday-aligned`` sets the due day just after the debtor's usual payment day (an observable proxy for
  payday), announces by SMS in the evening, and on a miss defers to just after the next payday.

All respect the rules: a masked channel falls back to the next acceptable one or to no contact, and a masked
send slot to the nearest allowed one.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import BasePolicy, channel_with_fallback, first_allowed, preferred_allowed, slot_index
from agents.registry import register
from regsim.decision import CHANNEL, DEFERRAL, DUE_DAY, ContextBatch, DecisionBatch, DecisionKind

__all__ = ["PaydayAligned", "Silent", "StaticDunning"]

NONE, EMAIL, SMS, LETTER, ROBOCALL, COLLECTOR = range(6)


def _assemble(
    batch: ContextBatch,
    channel: NDArray[np.int64],
    slot: NDArray[np.int64],
    due_day: NDArray[np.int64] | None = None,
    deferral: NDArray[np.int64] | None = None,
) -> DecisionBatch:
    n = len(batch)
    zeros = np.zeros(n, dtype=np.int64)
    actions = np.stack(
        [channel, slot, zeros if due_day is None else due_day, zeros if deferral is None else deferral, zeros], axis=1
    )
    return DecisionBatch(actions, np.ones(n))


@register("silent")
class Silent(BasePolicy):
    """Never contacts, never re-plans (the floor)."""

    name: ClassVar[str] = "silent"
    version: ClassVar[str] = "1"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        return _assemble(contexts, np.zeros(len(contexts), dtype=np.int64), first_allowed(contexts, 1))


@register("static-dunning")
class StaticDunning(BasePolicy):
    """Today's fixed process: email before due, SMS after a miss, letter after a week, robocall after two.

    Args:
        announce_days_before: How many days before the due date the announcement should arrive (the nearest
            allowed send slot is used).
        send_hour: Hour at which messages go out.
    """

    name: ClassVar[str] = "static-dunning"
    version: ClassVar[str] = "1"

    def __init__(self, *, announce_days_before: int = 3, send_hour: int = 10) -> None:
        if not 0 <= announce_days_before <= 60:
            raise ValueError(f"announce_days_before must be in 0..60, got {announce_days_before}")
        if not 0 <= send_hour <= 23:
            raise ValueError(f"send_hour must be in 0..23, got {send_hour}")
        self.announce_days_before = announce_days_before
        self.send_hour = send_hour

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        kind = b.columns["kind"]
        overdue_days = -b.columns["days_to_due"].astype(np.int64)
        pre = kind == DecisionKind.PRE_DUE
        follow = kind == DecisionKind.FOLLOW_UP
        want = np.full(len(b), NONE)
        want = np.where(kind == DecisionKind.PLAN_CREATED, EMAIL, want)
        want = np.where(pre, EMAIL, want)
        want = np.where(kind == DecisionKind.MISSED, SMS, want)
        want = np.where(follow & (overdue_days < 14), LETTER, want)
        want = np.where(follow & (overdue_days >= 14), ROBOCALL, want)
        # If the wanted channel is masked (opt-out), fall back along the escalation ladder.
        ladder = np.array([[EMAIL, SMS, LETTER], [SMS, EMAIL, LETTER], [LETTER, SMS, EMAIL], [ROBOCALL, SMS, LETTER]])
        row_ladder = np.select([want == EMAIL, want == SMS, want == LETTER, want == ROBOCALL], [0, 1, 2, 3], default=0)
        channel = np.where(want == NONE, NONE, channel_with_fallback(b, ladder[row_ladder]))
        offset = np.where(pre, np.maximum(b.columns["days_to_due"] - self.announce_days_before, 0), 0)
        slot = slot_index(b, offset, self.send_hour)
        return _assemble(b, channel.astype(np.int64), slot)


@register("payday-aligned")
class PaydayAligned(BasePolicy):
    """Due day just after the usual payment day; evening SMS; deferral to just after the next payday.

    Args:
        lag_days: Days after the usual payment day to put the due day.
        send_hour: Hour at which reminders go out.
        max_deferral_days: Longest deferral it asks for.
    """

    name: ClassVar[str] = "payday-aligned"
    version: ClassVar[str] = "1"

    def __init__(self, *, lag_days: int = 1, send_hour: int = 19, max_deferral_days: int = 14) -> None:
        if not 0 <= lag_days <= 27:
            raise ValueError(f"lag_days must be in 0..27, got {lag_days}")
        if not 0 <= send_hour <= 23:
            raise ValueError(f"send_hour must be in 0..23, got {send_hour}")
        if max_deferral_days < 0:
            raise ValueError(f"max_deferral_days must be >= 0, got {max_deferral_days}")
        self.lag_days = lag_days
        self.send_hour = send_hour
        self.max_deferral_days = max_deferral_days

    def _payday(self, b: ContextBatch) -> NDArray[np.int64]:
        """The usual payment day: from payments in this arrangement if any, else from earlier bills; -1."""
        last = b.columns["last_payment_dom"].astype(np.int64)
        prior = b.columns["prior_pay_dom"].astype(np.int64)
        return np.where(last > 0, last, prior)

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        n = len(b)
        kind = b.columns["kind"]
        payday = self._payday(b)
        known = payday > 0
        # Due day: the first option on or after payday + lag (cyclically).
        options = np.array(b.space.due_day_options, dtype=np.int64)
        target = (payday + self.lag_days - 1) % 28 + 1
        ahead = (options[None, :] - target[:, None]) % 28
        prefs = 1 + np.argsort(ahead, axis=1, kind="stable")
        due = preferred_allowed(b, DUE_DAY, prefs)
        due = np.where(known & (kind == DecisionKind.PLAN_CREATED) & (due > 0), due, 0)
        # Deferral on a miss: to just after the next payday.
        days_to_payday = (payday - b.columns["day_of_month"].astype(np.int64)) % 30 + self.lag_days
        deferral_days = np.array(b.space.deferral_days, dtype=np.int64)
        ok = (deferral_days[None, :] >= days_to_payday[:, None]) & (deferral_days[None, :] <= self.max_deferral_days)
        ok &= b.part_mask(DEFERRAL) & (deferral_days[None, :] > 0)
        deferral = np.where(ok.any(axis=1), np.argmax(ok, axis=1), 0)
        missed = kind == DecisionKind.MISSED
        deferral = np.where(missed & known, deferral, 0)
        overdue_days = -b.columns["days_to_due"].astype(np.int64)
        want = np.full(n, NONE)
        want = np.where(kind == DecisionKind.PLAN_CREATED, SMS, want)
        want = np.where(kind == DecisionKind.PRE_DUE, SMS, want)
        want = np.where(missed, SMS, want)
        want = np.where((kind == DecisionKind.FOLLOW_UP) & (overdue_days < 14), LETTER, want)
        want = np.where((kind == DecisionKind.FOLLOW_UP) & (overdue_days >= 14), SMS, want)
        want = np.where(kind == DecisionKind.PAYMENT_RECEIVED, SMS, want)
        ladder = np.where(want[:, None] == LETTER, np.array([[LETTER, SMS, EMAIL]]), np.array([[SMS, EMAIL, LETTER]]))
        channel = np.where(want == NONE, NONE, channel_with_fallback(b, ladder))
        offset = np.where(kind == DecisionKind.PRE_DUE, np.maximum(b.columns["days_to_due"] - 1, 0), 0)
        slot = slot_index(b, offset, self.send_hour)
        _ = CHANNEL
        return _assemble(b, channel.astype(np.int64), slot, due.astype(np.int64), deferral.astype(np.int64))
