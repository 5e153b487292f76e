"""Typed, validated configuration of the simulated world.

Every section is a frozen pydantic model that refuses unknown keys. Every field states its unit and either
its source (a row ``F1``..``F10`` of the calibration table in DOMAIN.md) or the word *Assumption* with the
reasoning behind the default. The default world is ``configs/population/default.yaml``; the defaults below
are the same values, so ``WorldConfig()`` is the default world as well.

Errors: :func:`load_world_config` and :func:`parse_world_config` raise :class:`ConfigError`, whose message
names the path of each offending field, what was given and what is allowed.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CHANNELS",
    "DEBTOR_TYPES",
    "INCOME_SCHEDULES",
    "ArrangementConfig",
    "CapacityConfig",
    "ChannelConfig",
    "ChannelsConfig",
    "ConfigError",
    "DebtorTypeConfig",
    "DecisionConfig",
    "HistoryTier",
    "IncomeConfig",
    "PopulationConfig",
    "RulesConfig",
    "SendSlot",
    "SimulationConfig",
    "WorldConfig",
    "load_world_config",
    "parse_world_config",
]

#: Contact channels in their fixed order; index 0 of the action's channel part is "no contact".
CHANNELS: tuple[str, ...] = ("email", "sms", "letter", "robocall", "collector")
#: Hidden debtor types (DOMAIN.md mechanism 7), in their fixed order.
DEBTOR_TYPES: tuple[str, ...] = ("reliable", "forgetful", "liquidity_constrained", "shock_prone", "unwilling")
#: Income schedules (DOMAIN.md mechanism 1).
INCOME_SCHEDULES: tuple[str, ...] = ("monthly", "four_weekly", "weekly", "benefits")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field path and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _check_shares(shares: dict[str, float], allowed: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(shares) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {list(allowed)}")
    total = sum(shares.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{what} shares must sum to 1, got {total:.6f}")
    return shares


# ----------------------------------------------------------------------------------------------------------
# Population
# ----------------------------------------------------------------------------------------------------------
class ChannelNotice(_Section):
    """Probability that a delivered message on each channel is noticed (read, heard) by the debtor.

    Unit: probability per delivered message, before the debtor's hour-of-day availability is applied.
    Source: F6 (SMS ~95-98% read, email ~20% opened); letter, robocall and collector values are assumptions
    (a letter at home is usually opened; a robocall or a collector's call is answered when the debtor is free).
    """

    email: float = Field(0.25, ge=0.0, le=1.0, description="P(notice) of an email. Source: F6 (~20% opened).")
    sms: float = Field(0.9, ge=0.0, le=1.0, description="P(notice) of an SMS. Source: F6 (95-98% read).")
    letter: float = Field(0.8, ge=0.0, le=1.0, description="P(notice) of a letter. Assumption.")
    robocall: float = Field(0.5, ge=0.0, le=1.0, description="P(answer) of a robocall. Assumption.")
    collector: float = Field(0.6, ge=0.0, le=1.0, description="P(answer) of a collector's call. Assumption.")

    def as_tuple(self) -> tuple[float, ...]:
        """The probabilities in :data:`CHANNELS` order."""
        return tuple(float(getattr(self, c)) for c in CHANNELS)


class DebtorTypeConfig(_Section):
    """Parameters of one hidden debtor type (DOMAIN.md mechanisms 1-7).

    The values are assumptions chosen so that each type shows the behaviour DOMAIN.md ascribes to it; their
    combined effect is calibrated against F3 (reminder effect) and F9 (completion by plan length) by the
    tests in ``tests/regsim/test_calibration.py``.
    """

    share: float = Field(ge=0.0, le=1.0, description="Share of the population with this type. Assumption.")
    free_cash_share: float = Field(
        gt=0.0, le=1.0, description="Share of each income left after fixed costs (unit: fraction). Assumption."
    )
    spend_rate: float = Field(gt=0.0, le=1.0, description="Share of free cash spent per day (unit: 1/day). Assumption.")
    attention: float = Field(
        ge=0.0,
        le=10.0,
        description="Daily hazard of attending to a due installment without a reminder (unit: 1/day). "
        "Assumption; forgetful payers low (mechanism 2).",
    )
    willingness: float = Field(
        ge=0.0, le=1.0, description="P(pay | attending and able) (unit: probability). Assumption; low for unwilling."
    )
    reminder_effect: float = Field(
        ge=0.0,
        le=20.0,
        description="Attention hazard added by a noticed reminder, before decay (unit: 1/day). Sized with F3; "
        "small for unwilling debtors (F4).",
    )
    memory_days: float = Field(
        gt=0.0, le=60.0, description="Decay time of a reminder's effect (unit: days). Assumption (F3: 'soon after')."
    )
    fatigue_sensitivity: float = Field(
        ge=0.0, le=10.0, description="Response loss per unit of annoyance (unit: 1/contact). Assumption (F5)."
    )
    shocks_per_year: float = Field(
        ge=0.0, le=12.0, description="Rate of liquidity shocks (unit: 1/year). Assumption (mechanism 5)."
    )
    habit_gain: float = Field(
        ge=0.0,
        le=5.0,
        description="Attention hazard added per on-time installment in the current streak (unit: 1/day). "
        "Assumption (mechanism 6).",
    )
    notice: ChannelNotice = Field(default_factory=ChannelNotice, description="Per-channel notice probabilities.")
    notice_spread: float = Field(
        0.8,
        ge=0.0,
        le=5.0,
        description="Standard deviation of a debtor's own per-channel notice logit around the type's "
        "(unit: logit). Assumption: debtors of one type still differ by channel (mechanism 3).",
    )


def _default_types() -> dict[str, DebtorTypeConfig]:
    t = DebtorTypeConfig
    return {
        "reliable": t(
            share=0.30,
            free_cash_share=0.30,
            spend_rate=0.04,
            attention=0.9,
            willingness=0.98,
            reminder_effect=0.8,
            memory_days=3.0,
            fatigue_sensitivity=0.25,
            shocks_per_year=0.1,
            habit_gain=0.05,
            notice=ChannelNotice(email=0.35, sms=0.95, letter=0.9, robocall=0.55, collector=0.7),
        ),
        "forgetful": t(
            share=0.25,
            free_cash_share=0.25,
            spend_rate=0.05,
            attention=0.06,
            willingness=0.92,
            reminder_effect=1.6,
            memory_days=2.5,
            fatigue_sensitivity=0.25,
            shocks_per_year=0.2,
            habit_gain=0.04,
            notice=ChannelNotice(email=0.2, sms=0.93, letter=0.6, robocall=0.5, collector=0.6),
        ),
        "liquidity_constrained": t(
            share=0.20,
            free_cash_share=0.09,
            spend_rate=0.10,
            attention=0.5,
            willingness=0.9,
            reminder_effect=0.9,
            memory_days=3.0,
            fatigue_sensitivity=0.35,
            shocks_per_year=0.4,
            habit_gain=0.03,
            notice=ChannelNotice(email=0.2, sms=0.9, letter=0.85, robocall=0.5, collector=0.6),
        ),
        "shock_prone": t(
            share=0.15,
            free_cash_share=0.2,
            spend_rate=0.06,
            attention=0.5,
            willingness=0.9,
            reminder_effect=0.9,
            memory_days=3.0,
            fatigue_sensitivity=0.35,
            shocks_per_year=2.5,
            habit_gain=0.03,
            # Assumption: debtors in recurring trouble often change or lose their mobile number (prepaid
            # credit running out), while post still reaches them: the one type for which letters beat SMS.
            notice=ChannelNotice(email=0.25, sms=0.45, letter=0.9, robocall=0.35, collector=0.6),
        ),
        "unwilling": t(
            share=0.10,
            free_cash_share=0.2,
            spend_rate=0.05,
            attention=0.25,
            willingness=0.3,
            reminder_effect=0.3,
            memory_days=2.0,
            fatigue_sensitivity=0.6,
            shocks_per_year=0.3,
            habit_gain=0.01,
            notice=ChannelNotice(email=0.1, sms=0.7, letter=0.6, robocall=0.3, collector=0.55),
        ),
    }


class IncomeConfig(_Section):
    """Income schedules and amounts (DOMAIN.md mechanism 1). All values are assumptions for the Netherlands."""

    schedule_shares: dict[str, float] = Field(
        default_factory=lambda: {"monthly": 0.65, "four_weekly": 0.12, "weekly": 0.05, "benefits": 0.18},
        description="Share of debtors per income schedule (unit: fraction). Assumption: most Dutch salaries are "
        "monthly; benefits are paid on fixed dates.",
    )
    monthly_pay_days: dict[int, float] = Field(
        default_factory=lambda: {20: 0.1, 23: 0.15, 24: 0.15, 25: 0.3, 26: 0.1, 28: 0.1, 1: 0.1},
        description="Distribution of the salary day of the month for monthly earners (unit: day of month). "
        "Assumption: salaries cluster around the 25th.",
    )
    benefits_pay_day: int = Field(
        3, ge=1, le=28, description="Day of the month on which benefits arrive (unit: day of month). Assumption."
    )
    monthly_income_median_eur: float = Field(
        2100.0, gt=0.0, description="Median net monthly income (unit: EUR/month). Assumption."
    )
    monthly_income_sigma: float = Field(
        0.4, ge=0.0, le=2.0, description="Log-normal spread of monthly income (unit: log EUR). Assumption."
    )
    income_noise: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Relative noise of each income's free cash (unit: fraction, sd). Assumption: irregular expenses.",
    )

    @field_validator("schedule_shares")
    @classmethod
    def _schedule_shares(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_shares(v, INCOME_SCHEDULES, "income schedule")

    @field_validator("monthly_pay_days")
    @classmethod
    def _pay_days(cls, v: dict[int, float]) -> dict[int, float]:
        bad = [d for d in v if not 1 <= d <= 28]
        if bad:
            raise ValueError(f"pay days must be in 1..28, got {bad}")
        _check_shares({str(k): p for k, p in v.items()}, tuple(str(k) for k in v), "pay day")
        return v


class ShockConfig(_Section):
    """Liquidity shocks (DOMAIN.md mechanism 5). All values are assumptions."""

    mean_duration_days: float = Field(45.0, gt=0.0, le=365.0, description="Mean shock length (unit: days).")
    income_factor: float = Field(
        0.25, ge=0.0, le=1.0, description="Share of free cash still earned during a shock (unit: fraction)."
    )
    referral_per_day: float = Field(
        0.004,
        ge=0.0,
        le=1.0,
        description="Daily probability that a debtor in a shock with overdue installments turns to debt "
        "counselling, which refers the arrangement (unit: 1/day). Assumption.",
    )


class FatigueConfig(_Section):
    """Contact fatigue and disengagement (DOMAIN.md mechanism 4; F5). All values are assumptions."""

    decay_days: float = Field(14.0, gt=0.0, le=365.0, description="Decay time of annoyance (unit: days).")
    weight: dict[str, float] = Field(
        default_factory=lambda: {"email": 0.3, "sms": 0.8, "letter": 0.7, "robocall": 1.5, "collector": 1.2},
        description="Annoyance added by one delivered contact per channel (unit: contacts).",
    )
    disengage_threshold: float = Field(
        2.5, ge=0.0, description="Annoyance above which a debtor may disengage (unit: contacts)."
    )
    disengage_per_day: float = Field(
        0.03, ge=0.0, le=1.0, description="Daily disengagement probability per unit of annoyance above threshold."
    )
    opt_out_per_contact: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Probability that an annoyed debtor (above threshold) opts out of a channel when contacted "
        "on it (unit: probability per contact).",
    )
    disengaged_notice: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Factor on a disengaged debtor's probability of noticing a message (unit: factor). "
        "Assumption: a debtor who has given up still reads half of what reaches them.",
    )
    disengaged_willingness: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="Factor on a disengaged debtor's willingness to pay (unit: factor). Assumption: "
        "disengagement is the step before the arrangement breaks, so most of the will to pay is gone.",
    )

    @field_validator("weight")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != set(CHANNELS):
            raise ValueError(f"needs exactly the channels {list(CHANNELS)}, got {sorted(v)}")
        return v


class HabitConfig(_Section):
    """Motivation and habit (DOMAIN.md mechanism 6). All values are assumptions."""

    max_streak: int = Field(
        6, ge=0, le=60, description="Streak length beyond which habit grows no more (unit: installments)."
    )
    thank_you_bonus: float = Field(
        1.0, ge=0.0, le=10.0, description="Streak credit added by a noticed thank-you (unit: installments)."
    )
    just_paid_days: float = Field(
        4.0,
        ge=0.0,
        le=60.0,
        description="A reminder noticed this soon after a payment undermines motivation (unit: days).",
    )
    just_paid_penalty: float = Field(
        0.5, ge=0.0, le=1.0, description="Share of the streak lost by such a reminder (unit: fraction)."
    )


class PopulationConfig(_Section):
    """The debtor population: types, income, shocks, fatigue and habit."""

    types: dict[str, DebtorTypeConfig] = Field(default_factory=_default_types, description="Hidden debtor types.")
    income: IncomeConfig = Field(default_factory=IncomeConfig)
    shocks: ShockConfig = Field(default_factory=ShockConfig)
    fatigue: FatigueConfig = Field(default_factory=FatigueConfig)
    habit: HabitConfig = Field(default_factory=HabitConfig)
    hour_profiles: dict[str, float] = Field(
        default_factory=lambda: {"early": 0.25, "office": 0.4, "evening": 0.35},
        description="Share of debtors per daily rhythm, which sets when they answer calls and read texts "
        "(unit: fraction). Assumption (mechanism 3).",
    )
    prior_payments_mean: float = Field(
        3.0,
        ge=0.0,
        le=50.0,
        description="Mean number of earlier payments to the creditor that production knows about before the "
        "arrangement (unit: payments). Assumption.",
    )

    @field_validator("types")
    @classmethod
    def _types(cls, v: dict[str, DebtorTypeConfig]) -> dict[str, DebtorTypeConfig]:
        if set(v) != set(DEBTOR_TYPES):
            raise ValueError(f"needs exactly the types {list(DEBTOR_TYPES)}, got {sorted(v)}")
        _check_shares({k: t.share for k, t in v.items()}, DEBTOR_TYPES, "debtor type")
        return v

    @field_validator("hour_profiles")
    @classmethod
    def _profiles(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_shares(v, ("early", "office", "evening"), "hour profile")


# ----------------------------------------------------------------------------------------------------------
# Arrangements and decisions
# ----------------------------------------------------------------------------------------------------------
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
        "DOMAIN.md mechanism 9; the number is a rule-set choice.",
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


# ----------------------------------------------------------------------------------------------------------
# Channels and capacity
# ----------------------------------------------------------------------------------------------------------
class ChannelConfig(_Section):
    """One contact channel: cost, delay and effect."""

    cost_eur: float = Field(ge=0.0, description="Cost per message sent (unit: EUR).")
    delay_days_min: int = Field(0, ge=0, le=14, description="Shortest delivery delay (unit: days).")
    delay_days_max: int = Field(0, ge=0, le=14, description="Longest delivery delay (unit: days).")
    read_delay_days: float = Field(
        0.0, ge=0.0, le=14.0, description="Mean delay from delivery to being noticed (unit: days)."
    )
    impact: float = Field(
        ge=0.0, le=10.0, description="Multiplier of the debtor's reminder effect for this channel (unit: factor)."
    )
    link_pay_prob: float = Field(
        ge=0.0,
        le=1.0,
        description="P(pay at once through the message's payment link | noticed, able, willing).",
    )
    open_tracking: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="P(an 'opened' event is logged | noticed); 0 where the channel has no open signal.",
    )
    false_open: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="P(an 'opened' event is logged | not noticed), e.g. privacy pre-fetch of email (F6).",
    )

    @model_validator(mode="after")
    def _delays(self) -> ChannelConfig:
        if self.delay_days_min > self.delay_days_max:
            raise ValueError(
                f"delay_days_min ({self.delay_days_min}) must not exceed delay_days_max ({self.delay_days_max})"
            )
        return self


class ChannelsConfig(_Section):
    """The contact channels (DOMAIN.md mechanism 3)."""

    email: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig(
            cost_eur=0.01, read_delay_days=1.0, impact=0.8, link_pay_prob=0.5, open_tracking=0.8, false_open=0.15
        ),
        description="Email: cost assumption; ~20% opened hours-days later, opens noisy (F6).",
    )
    sms: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig(cost_eur=0.08, impact=1.0, link_pay_prob=0.5),
        description="SMS: cost assumption (EUR 0.08); read within minutes (F6).",
    )
    letter: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig(
            cost_eur=1.70, delay_days_min=1, delay_days_max=3, impact=1.3, link_pay_prob=0.35
        ),
        description="Letter with QR code: EUR 1.40 postage 2026 plus ~EUR 0.30 printing, 1-3 days (F7).",
    )
    robocall: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig(cost_eur=0.25, impact=1.2, link_pay_prob=0.4),
        description="Robocall (IVR) with a link by SMS on request: cost assumption.",
    )
    collector: ChannelConfig = Field(
        default_factory=lambda: ChannelConfig(cost_eur=9.0, impact=2.5, link_pay_prob=0.6),
        description="A human collector's call: ~15 minutes at ~EUR 35/hour (assumption).",
    )

    letter_read_hour: float = Field(
        18.0,
        ge=0.0,
        lt=24.0,
        description="Hour of the day at which a delivered letter reaches the debtor (unit: hour of day). "
        "Assumption: post is delivered during the day and read after work.",
    )

    def ordered(self) -> tuple[ChannelConfig, ...]:
        """The channels in :data:`CHANNELS` order."""
        return tuple(getattr(self, c) for c in CHANNELS)


class CapacityConfig(_Section):
    """Shared resources (DOMAIN.md mechanism 8). All values are assumptions for a mid-sized creditor."""

    collectors: int = Field(4, ge=1, le=10_000, description="Human collectors working in parallel (unit: people).")
    collector_minutes_per_call: float = Field(15.0, gt=0.0, description="Collector time per call (unit: minutes).")
    collector_hours: tuple[int, int] = Field(
        (9, 17), description="Working hours of collectors, weekdays only (unit: hour, start and end)."
    )
    robocall_lines: int = Field(4, ge=1, le=10_000, description="Robocall lines in parallel (unit: lines).")
    robocall_minutes_per_call: float = Field(2.0, gt=0.0, description="Line time per robocall (unit: minutes).")
    robocall_hours: tuple[int, int] = Field((9, 20), description="Hours in which robocalls run (unit: hour).")
    letters_per_day: int = Field(
        2_000, ge=1, description="Letters the print room can post per working day (unit: letters/day)."
    )
    letter_post_hour: int = Field(16, ge=0, le=23, description="Hour at which the day's letters are posted.")

    @field_validator("collector_hours", "robocall_hours")
    @classmethod
    def _hours(cls, v: tuple[int, int]) -> tuple[int, int]:
        start, end = v
        if not 0 <= start < end <= 24:
            raise ValueError(f"hours must satisfy 0 <= start < end <= 24, got {list(v)}")
        return v


# ----------------------------------------------------------------------------------------------------------
# Business rules
# ----------------------------------------------------------------------------------------------------------
class HistoryTier(_Section):
    """One tier of a cap that depends on payment history.

    The tier applies when the on-time share is at least ``min_on_time_share``.
    """

    min_on_time_share: float = Field(ge=0.0, le=1.0, description="Lowest on-time share of the tier (unit: fraction).")
    value: float = Field(ge=0.0, description="The cap for this tier (unit: that of the cap).")


class RulesConfig(_Section):
    """Business rules as data (DOMAIN.md "Real-world rules"). Each can be switched off by its ``enabled`` flag."""

    contact_cap_enabled: bool = Field(True, description="Switch for the contact cap.")
    max_contacts_per_week: int = Field(3, ge=0, le=100, description="Contacts per debtor per 7 days (unit: contacts).")
    quiet_hours_enabled: bool = Field(True, description="Switch for quiet hours and days.")
    quiet_before_hour: int = Field(8, ge=0, le=24, description="No contact before this hour (unit: hour).")
    quiet_from_hour: int = Field(21, ge=0, le=24, description="No contact from this hour on (unit: hour).")
    quiet_weekdays: tuple[int, ...] = Field(
        (6,),
        description="Days on which no message goes out (0=Monday .. 6=Sunday); a message planned for one goes "
        "out on the next allowed day at the same hour.",
    )
    opt_out_enabled: bool = Field(True, description="Respect channel opt-outs.")
    paid_installment_enabled: bool = Field(
        True, description="Never remind for an installment already paid (status sync)."
    )
    history_caps_enabled: bool = Field(True, description="Switch for the history-dependent caps below.")
    max_deferral_days: tuple[HistoryTier, ...] = Field(
        default_factory=lambda: (
            HistoryTier(min_on_time_share=0.8, value=28),
            HistoryTier(min_on_time_share=0.5, value=14),
            HistoryTier(min_on_time_share=0.0, value=3),
        ),
        description="Deferral-day cap by on-time share (seeds/002: a reliable payer 10 days, a frequent late "
        "payer 3); a debtor with no due installment yet is in the top tier.",
    )
    max_deferrals: int = Field(3, ge=0, le=100, description="Deferrals per arrangement (unit: deferrals).")
    max_reduction: tuple[HistoryTier, ...] = Field(
        default_factory=lambda: (
            HistoryTier(min_on_time_share=0.5, value=0.5),
            HistoryTier(min_on_time_share=0.0, value=0.25),
        ),
        description="Reduction cap by on-time share (unit: fraction of the installment). Assumption.",
    )
    max_reductions: int = Field(2, ge=0, le=100, description="Reductions per arrangement (unit: reductions).")
    max_total_installments: int = Field(
        24, ge=1, le=240, description="A re-planned arrangement may not exceed this many installments."
    )
    version: str = Field("rules-1", min_length=1, description="Version tag of the rule set, recorded in artifacts.")

    @field_validator("quiet_weekdays")
    @classmethod
    def _weekdays(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= d <= 6 for d in v):
            raise ValueError(f"weekdays must be in 0..6 (0=Monday), got {list(v)}")
        if len(set(v)) == 7:
            raise ValueError("at least one weekday must allow contact; all seven are quiet")
        return v

    @field_validator("max_deferral_days", "max_reduction")
    @classmethod
    def _tiers(cls, v: tuple[HistoryTier, ...]) -> tuple[HistoryTier, ...]:
        if not v or v[-1].min_on_time_share != 0.0:
            raise ValueError("tiers must end with one whose min_on_time_share is 0, so every debtor has a cap")
        shares = [t.min_on_time_share for t in v]
        if shares != sorted(shares, reverse=True):
            raise ValueError(f"tiers must be ordered by decreasing min_on_time_share, got {shares}")
        return v


# ----------------------------------------------------------------------------------------------------------
# Simulation and the whole world
# ----------------------------------------------------------------------------------------------------------
class SimulationConfig(_Section):
    """Run length, size and seed."""

    arrangements: int = Field(2_000, ge=1, le=10_000_000, description="Arrangements in the run (unit: count).")
    months: int = Field(12, ge=1, le=120, description="Simulated horizon (unit: months of 30 days).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="The run seed; every random draw derives from it.")
    start_date: dt.date = Field(dt.date(2026, 1, 5), description="Calendar date of simulation day 0.")

    @property
    def days(self) -> int:
        """The horizon in days."""
        return 30 * self.months


class WorldConfig(_Section):
    """The whole simulated world."""

    name: str = Field("default", description="Name of the world, shown in reports.")
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    arrangements: ArrangementConfig = Field(default_factory=ArrangementConfig)
    decisions: DecisionConfig = Field(default_factory=DecisionConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)

    @model_validator(mode="after")
    def _calls_can_happen(self) -> WorldConfig:
        rules, cap = self.rules, self.capacity
        if rules.quiet_hours_enabled:
            for name, (start, end) in (
                ("collector_hours", cap.collector_hours),
                ("robocall_hours", cap.robocall_hours),
            ):
                if max(start, rules.quiet_before_hour) >= min(end, rules.quiet_from_hour):
                    raise ValueError(
                        f"capacity.{name} {[start, end]} leave no time inside the allowed contact hours "
                        f"[{rules.quiet_before_hour}, {rules.quiet_from_hour}) of rules"
                    )
        if rules.quiet_from_hour <= rules.quiet_before_hour:
            raise ValueError(
                f"rules.quiet_from_hour ({rules.quiet_from_hour}) must be after rules.quiet_before_hour "
                f"({rules.quiet_before_hour})"
            )
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> WorldConfig:
        """A copy with some fields replaced, validated like a loaded file.

        Args:
            **sections: Section name to a mapping of field overrides, nested like the YAML file.

        Raises:
            ConfigError: An override names an unknown field or has an invalid value.
        """
        data = self.model_dump(mode="python")
        for section, values in sections.items():
            if section not in data:
                raise ConfigError(f"{section}: unknown section; allowed: {sorted(data)}")
            _deep_update(data[section], values, section)
        return parse_world_config(data)


def _deep_update(target: dict[str, Any], values: dict[str, Any], path: str) -> None:
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value, f"{path}.{key}")
        else:
            target[key] = value


def _allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The field names allowed at the parent of ``loc``, following nested models, dicts and tuples."""
    current: Any = model
    parts = list(loc[:-1])
    i = 0
    while i < len(parts):
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(parts[i]))
        if field is None:
            return None
        annotation: Any = field.annotation
        if get_origin(annotation) in (dict, tuple):
            annotation = get_args(annotation)[-1 if get_origin(annotation) is dict else 0]
            i += 1  # skip the key or index
        current = annotation
        i += 1
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def _format_error(exc: ValidationError, source: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "<root>"
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(WorldConfig, loc)
            hint = f"; allowed: {allowed}" if allowed else ""
            lines.append(f"{path}: unknown field{hint}")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, dict) else "{...}"
            lines.append(f"{path}: {err['msg']} (got {shown})")
    return ConfigError(f"invalid world config ({source}):\n  " + "\n  ".join(lines))


def parse_world_config(data: dict[str, Any] | None, source: str = "<dict>") -> WorldConfig:
    """Validate a nested mapping as a :class:`WorldConfig`.

    Args:
        data: The mapping, as read from YAML; ``None`` means the default world.
        source: Where the mapping came from, quoted in errors.

    Raises:
        ConfigError: A field is unknown or has a value outside its allowed range; every offending field is
            named with its dotted path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"invalid world config ({source}): the top level must be a mapping of sections")
    try:
        return WorldConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_error(exc, source) from None


def load_world_config(path: str | Path) -> WorldConfig:
    """Load and validate a world config from a YAML file.

    Args:
        path: A YAML file, e.g. ``configs/population/default.yaml``.

    Raises:
        ConfigError: The file is missing, is not YAML, or holds an invalid config.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"population config not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_world_config(data, source=str(p))
