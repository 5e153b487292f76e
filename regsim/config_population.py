"""World config of the debtor population: hidden debtor types, income, shocks, fatigue and habit.

:class:`PopulationConfig` (the ``population`` section of :class:`regsim.config.WorldConfig`) holds one
:class:`DebtorTypeConfig` per hidden type (with its per-channel :class:`ChannelNotice`), the
:class:`IncomeConfig`, :class:`ShockConfig`, :class:`FatigueConfig` and :class:`HabitConfig` (docs/mechanisms.md,
mechanisms 1-7).

Every section is a frozen pydantic model that refuses unknown keys; every field states its unit and either its
source (a fact ``F1``..``F10`` of docs/calibration.md) or the word *Assumption* with the reasoning
behind the default (see :mod:`regsim.config`).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from regsim.config_base import CHANNELS, DEBTOR_TYPES, INCOME_SCHEDULES, _check_shares, _Section

__all__ = [
    "ChannelNotice",
    "DebtorTypeConfig",
    "FatigueConfig",
    "HabitConfig",
    "IncomeConfig",
    "PopulationConfig",
    "ShockConfig",
]


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
    """Parameters of one hidden debtor type (mechanisms 1-7, docs/mechanisms.md).

    The values are assumptions chosen so that each type shows the behaviour docs/mechanisms.md ascribes to it; their
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
    debt_factor: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description="Multiplier of the debt drawn for this type (unit: factor of ``arrangements.debt_median_eur``). "
        "Assumption: debtors who cannot or will not pay have let larger arrears build up before an arrangement, so "
        "long plans hold more of them; with it the world reaches F9's completion gap by plan length (3-6 months "
        "~88% vs 12+ ~52%), which one shared debt distribution cannot (a constant hazard gives too small a gap).",
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
            shocks_per_year=0.3,
            habit_gain=0.05,
            debt_factor=0.85,
            notice=ChannelNotice(email=0.3, sms=0.99, letter=0.9, robocall=0.55, collector=0.7),
        ),
        "forgetful": t(
            share=0.25,
            free_cash_share=0.25,
            spend_rate=0.05,
            attention=0.15,
            willingness=0.92,
            reminder_effect=0.7,
            memory_days=2.5,
            fatigue_sensitivity=0.25,
            shocks_per_year=0.4,
            habit_gain=0.04,
            debt_factor=0.95,
            notice=ChannelNotice(email=0.17, sms=0.985, letter=0.6, robocall=0.5, collector=0.6),
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
            shocks_per_year=0.8,
            habit_gain=0.03,
            debt_factor=1.15,
            notice=ChannelNotice(email=0.17, sms=0.98, letter=0.85, robocall=0.5, collector=0.6),
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
            # Assumption: debtors in recurring trouble sometimes change or lose their mobile number (prepaid
            # credit running out), while post still reaches them: the one type for which letters beat SMS
            # (kept high enough that SMS read over the population stays in F6's 95-98%).
            debt_factor=1.05,
            notice=ChannelNotice(email=0.21, sms=0.95, letter=0.9, robocall=0.35, collector=0.6),
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
            debt_factor=1.3,
            notice=ChannelNotice(email=0.085, sms=0.96, letter=0.6, robocall=0.3, collector=0.55),
        ),
    }


class IncomeConfig(_Section):
    """Income schedules and amounts (mechanism 1, docs/mechanisms.md): assumptions for the Netherlands."""

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
    benefits_income_median_eur: float = Field(
        1400.0,
        gt=0.0,
        description="Median net monthly benefit (unit: EUR/month). Assumption: Dutch benefits are set by law near "
        "the social minimum (social assistance for a single adult is about EUR 1,400 a month net in 2026, the state "
        "pension somewhat more), well below the median wage, so benefit incomes have their own distribution.",
    )
    benefits_income_sigma: float = Field(
        0.15,
        ge=0.0,
        le=2.0,
        description="Log-normal spread of benefit incomes (unit: log EUR). Assumption: statutory amounts vary only "
        "with household situation and supplements, far less than wages.",
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
    """Liquidity shocks (mechanism 5, docs/mechanisms.md). All values are assumptions."""

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
    """Contact fatigue and disengagement (mechanism 4, docs/mechanisms.md; F5). All values are assumptions."""

    decay_days: float = Field(14.0, gt=0.0, le=365.0, description="Decay time of annoyance (unit: days).")
    weight: dict[str, float] = Field(
        default_factory=lambda: {"email": 0.3, "sms": 0.8, "letter": 0.7, "robocall": 1.5, "collector": 1.2},
        description="Annoyance added by one delivered contact per channel (unit: contacts).",
    )
    disengage_threshold: float = Field(
        2.0, ge=0.0, description="Annoyance above which a debtor may disengage (unit: contacts)."
    )
    disengage_per_day: float = Field(
        0.05, ge=0.0, le=1.0, description="Daily disengagement probability per unit of annoyance above threshold."
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
    """Motivation and habit (mechanism 6, docs/mechanisms.md). All values are assumptions."""

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
