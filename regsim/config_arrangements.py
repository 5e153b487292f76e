"""World config of arrangements and decisions: plans, due dates, breakdowns, decision points and action options.

:class:`ArrangementConfig` (the ``arrangements`` section) sets arrivals, debts, plan lengths and when a plan
breaks; :class:`DecisionConfig` (the ``decisions`` section) sets when decisions are taken and the options of
each part of an action, among them the :class:`SendSlot` send times.

Every section is a frozen pydantic model that refuses unknown keys; every field states its unit and either its
source (a fact ``F1``..``F10`` of docs/calibration.md) or the word *Assumption* with the reasoning
behind the default (see :mod:`regsim.config`).
"""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator, model_validator

from regsim.config_base import _Section

__all__ = ["ArrangementConfig", "DecisionConfig", "SendSlot"]


class ArrangementConfig(_Section):
    """Arrangements: arrivals, debts, plans and when they break."""

    arrival_days: int = Field(
        30,
        ge=1,
        le=365,
        description="Arrangements arrive uniformly over this many first days of the run (unit: days). Assumption.",
    )
    debt_median_eur: float = Field(900.0, gt=0.0, description="Median debt in arrears (unit: EUR). Assumption.")
    debt_sigma: float = Field(0.6, ge=0.0, le=3.0, description="Log-normal spread of the debt (unit: log EUR).")
    target_installment_eur: float = Field(
        100.0, gt=0.0, description="Installment the creditor aims at when splitting a debt (unit: EUR). Assumption."
    )
    min_installments: int = Field(3, ge=1, le=120, description="Fewest installments in a new plan. Assumption (F9).")
    max_installments: int = Field(12, ge=1, le=120, description="Most installments in a new plan. Assumption (F9).")
    default_due_day: int = Field(
        1, ge=1, le=28, description="Due day of the month when the policy keeps the default (unit: day of month)."
    )
    min_days_to_first_due: int = Field(
        7, ge=0, le=60, description="First installment falls due at least this many days after creation (unit: days)."
    )
    grace_days: int = Field(
        0, ge=0, le=30, description="Days after the due date before an unpaid installment counts as missed."
    )
    breakdown_after_missed: int = Field(
        2,
        ge=1,
        le=12,
        description="The arrangement breaks when this many installments are overdue at once (unit: installments). "
        "mechanism 9, docs/mechanisms.md; the number is a rule-set choice.",
    )
    breakdown_after_overdue_days: int = Field(
        35,
        ge=1,
        le=365,
        description="The arrangement also breaks when its oldest open installment is unpaid more than this many "
        "days after its due date (unit: days). Without it the last installment could never break a plan (no "
        "second installment falls due behind it), so an unwilling debtor paying it months late completed. 35 "
        "days: a monthly plan breaks about a month after a miss under ``breakdown_after_missed`` = 2, so this "
        "holds the last installment to the same standard and binds little before it. A rule-set choice.",
    )
    pay_window_days: int = Field(
        10,
        ge=0,
        le=60,
        description="Debtors start to think about an installment this many days before it is due (unit: days). "
        "Assumption.",
    )
    overdue_attention: float = Field(
        1.0,
        ge=0.0,
        le=10.0,
        description="Multiplier of the attention hazard once an installment is overdue (unit: factor). Assumption.",
    )
    partial_payment_prob: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="P(pay what one can) when attending and willing but short of the full amount. Assumption.",
    )
    min_partial_payment_eur: float = Field(
        10.0,
        ge=0.0,
        description="Least free cash with which a debtor short of the full amount pays part of it (unit: EUR). "
        "Assumption: smaller transfers are not worth the debtor's effort.",
    )
    pay_hours: tuple[float, float] = Field(
        (7.0, 23.0),
        description="Hours of the day between which a debtor who sets out to pay does so, uniformly (unit: hour "
        "of day, [from, until)). Assumption: banking apps are used from waking to bedtime.",
    )
    replan_days_to_first_due: int = Field(
        7,
        ge=0,
        le=60,
        description="A reduced plan whose next installment is already past due gives the debtor this many days "
        "for it (unit: days). Assumption: a fresh plan gives a week, as min_days_to_first_due does.",
    )
    breakdown_cost_eur: float = Field(
        150.0,
        ge=0.0,
        description="Creditor's cost of a breakdown: handing over to collection (unit: EUR). Assumption.",
    )

    @field_validator("pay_hours")
    @classmethod
    def _pay_hours(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] < v[1] <= 24.0:
            raise ValueError(f"must be [from, until) hours with 0 <= from < until <= 24, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _order(self) -> ArrangementConfig:
        if self.min_installments > self.max_installments:
            raise ValueError(
                f"min_installments ({self.min_installments}) must not exceed max_installments ({self.max_installments})"
            )
        return self


class SendSlot(_Section):
    """When a message is sent, relative to the decision: a day offset and an hour."""

    day_offset: int = Field(ge=0, le=14, description="Days after the decision day (unit: days).")
    hour: int = Field(ge=0, le=23, description="Hour of the day (unit: hour, local time).")


def _default_slots() -> tuple[SendSlot, ...]:
    return tuple(SendSlot(day_offset=d, hour=h) for d in (0, 1, 2) for h in (9, 13, 19))


class DecisionConfig(_Section):
    """Decision points and the options of each part of an action (the decision contract's action space)."""

    pre_due_days: int = Field(
        5, ge=1, le=28, description="The pre-due decision is taken this many days before each due date (unit: days)."
    )
    follow_up_days: tuple[int, ...] = Field(
        (7, 14),
        description="Further decisions this many days after a missed due date while it stays unpaid (unit: days).",
    )
    send_slots: tuple[SendSlot, ...] = Field(default_factory=_default_slots, description="Send-time options.")
    due_day_options: tuple[int, ...] = Field(
        (1, 5, 10, 15, 20, 25, 28),
        description="Due days of the month the policy may choose at plan creation (unit: day of month).",
    )
    deferral_options: tuple[int, ...] = Field(
        (0, 3, 7, 14, 28), description="Deferral options (unit: days); the first must be 0 (no deferral)."
    )
    reduction_options: tuple[float, ...] = Field(
        (0.0, 0.25, 0.5),
        description="Installment reduction options (unit: fraction of the installment); the first must be 0.",
    )

    @field_validator("deferral_options", "reduction_options")
    @classmethod
    def _first_is_none(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or v[0] != 0:
            raise ValueError(f"the first option must be 0 (no change), got {list(v)}")
        if any(b <= a for a, b in itertools.pairwise(v)):
            raise ValueError(f"options must increase strictly, got {list(v)}")
        return v

    @field_validator("reduction_options")
    @classmethod
    def _reduction_range(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 <= r < 1 for r in v):
            raise ValueError(f"reductions must lie in [0, 1), got {list(v)}")
        return v

    @field_validator("due_day_options")
    @classmethod
    def _due_days(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 1 <= d <= 28 for d in v):
            raise ValueError(f"due days must be in 1..28, got {list(v)}")
        return v

    @field_validator("follow_up_days")
    @classmethod
    def _follow_ups(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 2 for d in v) or list(v) != sorted(set(v)):
            raise ValueError(f"follow-up days must be distinct, increasing and >= 2, got {list(v)}")
        return v

    @field_validator("send_slots")
    @classmethod
    def _slots(cls, v: tuple[SendSlot, ...]) -> tuple[SendSlot, ...]:
        if not v:
            raise ValueError("at least one send slot is needed")
        return v
