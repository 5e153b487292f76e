"""``one-step-oracle``: a policy that reads the simulator's ground truth, as an upper reference for learned policies.

It sees what no production policy can (hidden type, free cash, income days, shocks, per-channel and per-hour
responsiveness) and plans one step ahead with it:

* **Due day** (plan creation): for debtors paid monthly or on benefit dates whose money runs short, the first
  option just after the pay day, so the due date's cue meets fresh money.
* **Relief** (before a due date and after a miss), only under a breakdown threat: if a shock will outlast the
  due date by ``threat_days``, the smallest allowed deferral past its end (the largest otherwise, plus the
  largest allowed reduction when even that falls short). A debtor merely short of cash pays late at the next
  income, and a longer plan only delays completion.
* **Contact**: the expected value of each allowed (channel, send slot) is
  ``P(no payment anyway) * P(noticed at that hour) * P(acts) * willingness * owed * urgency - cost``, where
  ``P(acts)`` is paying at once by link when the money is there, else the reminder's lasting effect on
  attention (``1 - exp(-effect * impact * memory)``), and ``urgency`` grows with the overdue installments (a
  breakdown loses the balance); the best one is sent if its value is positive, else nothing.
* **Thank-you** by SMS after an installment is paid when the debtor reads SMS.

It is refused outside simulation: it needs the :class:`~regsim.ground_truth.GroundTruthView` that only a
running World hands out.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import BasePolicy
from agents.registry import register
from regsim.config import CHANNELS, INCOME_SCHEDULES
from regsim.decision import (
    CHANNEL,
    DEFERRAL,
    DUE_DAY,
    REDUCTION,
    REMINDER_KINDS,
    SEND_SLOT,
    ContextBatch,
    DecisionBatch,
    DecisionKind,
)
from regsim.ground_truth import GroundTruthView
from regsim.population import hour_availability

__all__ = ["Oracle"]

_SMS = 1 + CHANNELS.index("sms")
_REMINDER_KINDS = np.array(sorted(REMINDER_KINDS), dtype=np.int64)
# Incomes on a fixed day of the month: a due day just after it meets fresh money.
_MONTHLY_SCHEDULES = (INCOME_SCHEDULES.index("monthly"), INCOME_SCHEDULES.index("benefits"))


@register("one-step-oracle")
class Oracle(BasePolicy):
    """Reads ground truth and plans one step ahead (an upper reference; simulation only).

    Args:
        thank_you: Send an SMS thank-you after paid installments to debtors who read SMS.
        urgency_per_overdue: Extra weight of a payment per overdue installment (a breakdown is near).
        threat_days: Relief is given when a shock lasts this many days past the due date (a second miss and
            a breakdown would follow).
        tight_cash_factor: The due day is aligned with payday only for debtors whose free cash per income is
            below this many installments (money runs short before the next income).
    """

    name: ClassVar[str] = "one-step-oracle"
    version: ClassVar[str] = "1"
    requires_ground_truth: ClassVar[bool] = True

    def __init__(
        self,
        *,
        thank_you: bool = True,
        urgency_per_overdue: float = 1.5,
        threat_days: int = 20,
        tight_cash_factor: float = 2.0,
    ) -> None:
        if urgency_per_overdue < 0:
            raise ValueError(f"urgency_per_overdue must be >= 0, got {urgency_per_overdue}")
        if threat_days < 0:
            raise ValueError(f"threat_days must be >= 0, got {threat_days}")
        self.thank_you = thank_you
        self.threat_days = threat_days
        if tight_cash_factor < 0:
            raise ValueError(f"tight_cash_factor must be >= 0, got {tight_cash_factor}")
        self.tight_cash_factor = tight_cash_factor
        self.urgency_per_overdue = urgency_per_overdue
        self.truth: GroundTruthView | None = None

    def bind_ground_truth(self, view: GroundTruthView) -> None:
        """Called by the World: the latent state the oracle may read."""
        self.truth = view

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        if self.truth is None:
            raise RuntimeError(
                "the oracle reads the simulator's ground truth and is refused outside simulation "
                "(no World has bound a GroundTruthView to it)"
            )
        b, t = contexts, self.truth
        n = len(b)
        ids = b.columns["arrangement_id"].astype(np.int64)
        day = int(b.columns["day"][0]) if n else 0
        kind = b.columns["kind"].astype(np.int64)
        actions = np.zeros((n, 5), dtype=np.int64)
        actions[:, DUE_DAY] = self._due_day(b, t, ids, kind)
        deferral, reduction, due_after = self._relief(b, t, ids, kind, day)
        actions[:, DEFERRAL], actions[:, REDUCTION] = deferral, reduction
        channel, slot = self._contact(b, t, ids, kind, day, due_after)
        actions[:, CHANNEL], actions[:, SEND_SLOT] = channel, slot
        return DecisionBatch(actions, np.ones(n))

    # -- the parts ----------------------------------------------------------------------------------------
    def _due_day(
        self, b: ContextBatch, t: GroundTruthView, ids: NDArray[np.int64], kind: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        options = np.array(b.space.due_day_options, dtype=np.int64)
        target = (t.pay_day(ids).astype(np.int64)) % 28 + 1  # the day after income
        ahead = (options[None, :] - target[:, None]) % 28
        best = 1 + np.argmin(ahead, axis=1)
        monthly = np.isin(t.income_schedule(ids), _MONTHLY_SCHEDULES)
        # Only debtors whose money runs short benefit; moving a comfortable payer's plan only delays it.
        tight = t.free_cash_per_income(ids) < self.tight_cash_factor * b.columns["installment_eur"]
        ok = b.part_mask(DUE_DAY)[np.arange(len(b)), best]
        return np.where((kind == DecisionKind.PLAN_CREATED) & monthly & tight & ok, best, 0)

    def _relief(
        self, b: ContextBatch, t: GroundTruthView, ids: NDArray[np.int64], kind: NDArray[np.int64], day: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """Defer (and reduce) only under a breakdown threat: a shock that outlasts the next due date.

        A debtor merely short of cash pays late at the next income without breaking, and a longer plan
        only delays completion, so no relief is given then.
        """
        n = len(b)
        due = np.maximum(day + b.columns["days_to_due"].astype(np.int64), day)
        days = np.array(b.space.deferral_days, dtype=np.int64)
        allowed = b.part_mask(DEFERRAL)
        shock_end = t.shock_until(ids)
        threat = shock_end > due + self.threat_days
        wanted = shock_end + 3 - due
        fits = allowed & (days[None, :] >= wanted[:, None]) & (days[None, :] > 0)
        smallest = np.where(fits.any(axis=1), np.argmax(fits, axis=1), -1)
        largest = np.where(allowed[:, 1:].any(axis=1), allowed.shape[1] - 1 - np.argmax(allowed[:, ::-1], axis=1), 0)
        applies = np.isin(kind, _REMINDER_KINDS)
        need = applies & threat
        deferral = np.where(need, np.where(smallest >= 0, smallest, largest), 0)
        deferral = np.where(allowed[np.arange(n), deferral], deferral, 0)
        # A shock longer than any deferral: also reduce the installment as far as allowed.
        red_allowed = b.part_mask(REDUCTION)
        largest_red = red_allowed.shape[1] - 1 - np.argmax(red_allowed[:, ::-1], axis=1)
        reduction = np.where(need & (smallest < 0), largest_red, 0)
        return deferral.astype(np.int64), reduction.astype(np.int64), due + days[deferral]

    def _contact(
        self,
        b: ContextBatch,
        t: GroundTruthView,
        ids: NDArray[np.int64],
        kind: NDArray[np.int64],
        day: int,
        due_after: NDArray[np.int64],
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        n = len(b)
        space = b.space
        world_channels = t.config.channels.ordered()
        cost = np.array([0.0, *(c.cost_eur for c in world_channels)])
        link = np.array([0.0, *(c.link_pay_prob for c in world_channels)])
        slots = space.send_slots
        hours = np.array([s.hour for s in slots], dtype=np.float64)
        offsets = np.array([s.day_offset for s in slots], dtype=np.int64)
        n_ch, n_slot = space.nvec[CHANNEL], space.nvec[SEND_SLOT]
        # P(noticed) for every (row, channel, slot).
        notice = np.concatenate([np.zeros((n, 1)), t.notice(ids)], axis=1)
        profile = np.repeat(t.hour_profile(ids)[:, None, None], n_ch, axis=1).repeat(n_slot, axis=2)
        ch_grid = np.broadcast_to(np.arange(n_ch)[None, :, None], (n, n_ch, n_slot))
        hour_grid = np.broadcast_to(hours[None, None, :], (n, n_ch, n_slot))
        p_notice = notice[:, :, None] * hour_availability(profile, hour_grid, ch_grid)
        p_notice = (
            p_notice * np.where(t.disengaged(ids), t.config.population.fatigue.disengaged_notice, 1.0)[:, None, None]
        )
        # Value of a payment now, and whether it would happen anyway.
        owed = np.maximum(t.owed_now(ids, day), b.columns["installment_eur"])
        able = t.cash(ids) >= owed
        will = t.willingness(ids)
        days_left = np.maximum(due_after - day, 1)
        p_anyway = 1.0 - np.exp(-t.attention(ids) * days_left / 2.0)
        urgency = 1.0 + self.urgency_per_overdue * b.columns["overdue"].astype(np.float64)
        gain = (1.0 - p_anyway) * will * owed * urgency
        impact = np.array([0.0, *(c.impact for c in world_channels)])
        # A noticed reminder pays at once by link (if the money is there) or raises attention for days.
        p_later = 1.0 - np.exp(-t.reminder_effect(ids)[:, None] * impact[None, :] * t.memory_days(ids)[:, None])
        p_act = able[:, None] * link[None, :] + (1.0 - able[:, None] * link[None, :]) * p_later
        value = p_notice * p_act[:, :, None] * gain[:, None, None] - cost[None, :, None]
        # Later slots for announcements: prefer arriving near the due date (a day earlier is as good).
        late = np.where(kind == DecisionKind.PRE_DUE, 0.0, 0.05)[:, None] * offsets[None, :]
        value = value - (late * owed[:, None])[:, None, :]
        allowed = b.part_mask(CHANNEL)[:, :, None] & b.part_mask(SEND_SLOT)[:, None, :]
        value = np.where(allowed, value, -np.inf)
        value[:, 0, :] = np.where(b.part_mask(SEND_SLOT), 0.0, -np.inf)  # no contact is worth 0
        flat = value.reshape(n, -1).argmax(axis=1)
        channel, slot = np.divmod(flat, n_slot)
        is_reminder = np.isin(kind, _REMINDER_KINDS)
        channel = np.where(is_reminder, channel, 0)
        if self.thank_you:
            thanks = (kind == DecisionKind.PAYMENT_RECEIVED) & (t.notice(ids)[:, _SMS - 1] > 0.5)
            thanks &= b.part_mask(CHANNEL)[:, _SMS]
            channel = np.where(thanks, _SMS, channel)
        first_slot = np.argmax(b.part_mask(SEND_SLOT), axis=1)
        best_slot_for_channel = np.argmax(
            np.where(allowed[np.arange(n), channel], p_notice[np.arange(n), channel], -1.0), axis=1
        )
        slot = np.where(channel == 0, first_slot, np.where(is_reminder, slot, best_slot_for_channel))
        return channel.astype(np.int64), slot.astype(np.int64)
