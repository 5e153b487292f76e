"""World config of self-service (the "Payment Coach" of seeds/002): the menu, its caps, and the debtor's choice.

:class:`SelfServiceConfig` (the ``self_service`` section) holds, as data: when a debtor visits the self-service
page (:class:`MenuVisitConfig`), the finite levels of every menu option (deferral days, plan lengths, waiver,
discount, debt counselling, custom solution), the business rules that cap them by payment history (tiers, as
the seed describes: a reliable payer ten days of deferral, a frequent late payer at most three), the parameters
of the debtor's choice (a multinomial logit with an outside option, :class:`ChoiceConfig`; equations in
docs/mechanisms.md#mechanism-10), the ownership effect of a chosen solution (:class:`OwnershipConfig`), and how
a custom solution is resolved by staff (:class:`CustomSolutionConfig`).

Self-service is **off by default** (``enabled: false``) until the choice model is calibrated (issue 20): the
default world, its calibration facts and every existing result stay as they were. No number here comes from a
measurement; each is an assumption, stated with its reasoning.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from regsim.config_base import CHANNELS, _Section
from regsim.config_rules import HistoryTier

__all__ = [
    "ChoiceConfig",
    "CustomSolutionConfig",
    "MenuVisitConfig",
    "OptionUtility",
    "OwnershipConfig",
    "SelfServiceConfig",
]


def _tiers(*pairs: tuple[float, float]) -> tuple[HistoryTier, ...]:
    return tuple(HistoryTier(min_on_time_share=s, value=v) for s, v in pairs)


def _check_tiers(v: tuple[HistoryTier, ...]) -> tuple[HistoryTier, ...]:
    if not v or v[-1].min_on_time_share != 0.0:
        raise ValueError("tiers must end with one whose min_on_time_share is 0, so every debtor has a cap")
    shares = [t.min_on_time_share for t in v]
    if shares != sorted(shares, reverse=True):
        raise ValueError(f"tiers must be ordered by decreasing min_on_time_share, got {shares}")
    return v


class MenuVisitConfig(_Section):
    """When a debtor follows a reminder's link to the self-service page (docs/mechanisms.md#mechanism-10).

    A debtor who notices a reminder while in arrears (an installment overdue) and whose free cash does not cover
    what is owed follows the link with probability ``follow_prob * w * exp(-phi * A) * delta`` (their effective
    willingness, as for a link payment, mechanism 3), at most once per ``min_days_between_visits``.
    """

    follow_prob: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="P(follow the link | noticed, in arrears, cannot pay, fully willing) (unit: probability). "
        "Assumption: about as likely as paying through the link when able (channels' link_pay_prob 0.35-0.6).",
    )
    min_days_between_visits: float = Field(
        7.0,
        ge=0.0,
        le=365.0,
        description="Days after a visit before the same debtor visits again (unit: days). Assumption: one "
        "reminder cycle (follow-ups come 7 days apart).",
    )


class OptionUtility(_Section):
    """Systematic utility of one option type: ``alpha + beta_need * need + beta_shock * shock + gamma * term``.

    ``need`` = 1 - min(free cash / owed, 1) (liquidity shortfall, 0..1), ``shock`` = 1 during a shock; ``term``
    is the option's scaled term (deferral days / 30, plan installments / 12, discount fraction; 0 for the options
    without one, whose ``gamma`` must be 0).
    """

    alpha: float = Field(description="Intercept (unit: utility).")
    beta_need: float = Field(description="Weight of the liquidity shortfall (unit: utility per unit of need).")
    beta_shock: float = Field(description="Weight of being in a shock (unit: utility).")
    gamma: float = Field(0.0, description="Weight of the option's scaled term (unit: utility per unit of term).")


class ChoiceConfig(_Section):
    """The debtor's choice among the options shown: a multinomial logit with an outside option (close the page).

    Every value is an assumption, chosen so that a debtor short of cash mostly takes a deferral or a plan, a
    shock-hit debtor turns to counselling more often, and an unwilling debtor mostly closes the page.
    """

    outside_unwillingness: float = Field(
        3.0,
        ge=0.0,
        le=20.0,
        description="Utility of closing the page per unit of unwillingness 1 - w (unit: utility). Assumption.",
    )
    deferral: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=-0.5, beta_need=1.0, beta_shock=1.0, gamma=2.0),
        description="Deferral; term = days / 30. Assumption: a longer deferral is worth more, more so in a shock.",
    )
    plan: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=-0.5, beta_need=1.5, beta_shock=0.3, gamma=1.0),
        description="A new installment plan; term = installments / 12. Assumption: smaller installments attract "
        "those short of cash.",
    )
    waiver: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=0.3, beta_need=0.3, beta_shock=0.0),
        description="Waiver of the extra collection costs (no term). Assumption.",
    )
    discount: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=0.0, beta_need=0.5, beta_shock=0.0, gamma=8.0),
        description="A discount; term = the fraction (0.1 = 10%). Assumption: 10% adds 0.8 units.",
    )
    counselling: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=-3.0, beta_need=1.0, beta_shock=2.5),
        description="Debt counselling (no term). Assumption: rare, mostly for shock-hit debtors.",
    )
    custom: OptionUtility = Field(
        default_factory=lambda: OptionUtility(alpha=-2.0, beta_need=0.8, beta_shock=1.0),
        description="A custom solution with staff (no term). Assumption.",
    )

    @model_validator(mode="after")
    def _no_term_no_gamma(self) -> ChoiceConfig:
        for name in ("waiver", "counselling", "custom"):
            if getattr(self, name).gamma != 0.0:
                raise ValueError(f"{name}.gamma must be 0: the option has no term")
        return self


class OwnershipConfig(_Section):
    """A chosen solution is kept more often (seeds/002's claim, as a mechanism that can be switched off).

    While an arrangement runs on a solution its debtor chose (a deferral, a plan, a waiver, a discount, a custom
    solution), their daily intent to pay (mechanism 2: attention and willingness together) is
    ``pi + theta * (1 - pi)``: they remember and mean to keep their own plan; the money must still be there.
    """

    enabled: bool = Field(True, description="Switch for the ownership effect.")
    theta: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Share of the gap to a sure intent to pay that a chosen solution closes (unit: fraction). "
        "Assumption: the seed claims more kept arrangements without a number.",
    )


class CustomSolutionConfig(_Section):
    """A custom solution waits in the collectors' queue (shared capacity, mechanism 8) and staff resolve it.

    When a collector takes the case, staff agree a deferral and a new plan of the given length (within
    ``rules.max_total_installments``); the case costs a collector call (``channels.collector.cost_eur``).
    """

    deferral_days: int = Field(
        14, ge=0, le=90, description="Deferral staff grant (unit: days). Assumption: two weeks to get on track."
    )
    plan_installments: int = Field(
        12,
        ge=1,
        le=240,
        description="Installments of the plan staff set up over the open balance (unit: installments). "
        "Assumption: staff go beyond the menu's caps, up to a year.",
    )


class SelfServiceConfig(_Section):
    """Self-service: the menu a debtor in arrears is offered, its caps, and how the debtor chooses."""

    enabled: bool = Field(
        False,
        description="Switch for self-service. Off by default until the choice model is calibrated (issue 20), "
        "so the default world is unchanged.",
    )
    visit: MenuVisitConfig = Field(default_factory=MenuVisitConfig)
    deferral_days: tuple[int, ...] = Field(
        (0, 3, 5, 10, 14),
        description="Deferral levels (unit: days); level 0 (0 days) = not offered. seeds/002 names 3 and 10.",
    )
    plan_installments: tuple[int, ...] = Field(
        (0, 3, 6, 12),
        description="New-plan levels: installments over the open balance; level 0 = not offered. Assumption.",
    )
    discounts: tuple[float, ...] = Field(
        (0.0, 0.05, 0.1, 0.2),
        description="Discount levels (unit: fraction of the open balance); level 0 = not offered. Assumption.",
    )
    waiver_share_cap: float = Field(
        0.15,
        ge=0.0,
        le=0.5,
        description="A waiver removes the statutory collection costs of the open balance (F8 scale), at most this "
        "share of it (unit: fraction). Assumption: the balance of a consumer debt in arrears carries such costs; "
        "15% is the scale's rate on the first EUR 2,500.",
    )
    confirmation_channel: str = Field(
        "email", description=f"Channel of the confirmation of a choice; one of {list(CHANNELS)}."
    )
    choice: ChoiceConfig = Field(default_factory=ChoiceConfig)
    ownership: OwnershipConfig = Field(default_factory=OwnershipConfig)
    custom: CustomSolutionConfig = Field(default_factory=CustomSolutionConfig)
    max_deferral_days: tuple[HistoryTier, ...] = Field(
        default_factory=lambda: _tiers((0.8, 10), (0.5, 5), (0.0, 3)),
        description="Menu rule 'menu_deferral_cap': deferral days by on-time share (seeds/002: a reliable payer "
        "10 days, a frequent late payer at most 3); no deferral beyond rules.max_deferrals.",
    )
    max_plan_installments: tuple[HistoryTier, ...] = Field(
        default_factory=lambda: _tiers((0.8, 12), (0.5, 6), (0.0, 3)),
        description="Menu rule 'menu_plan_cap': plan length by on-time share (unit: installments); also the "
        "plan may not pass rules.max_total_installments. Assumption.",
    )
    max_discount: tuple[HistoryTier, ...] = Field(
        default_factory=lambda: _tiers((0.8, 0.1), (0.5, 0.05), (0.0, 0.0)),
        description="Menu rule 'menu_discount_cap': discount by on-time share (unit: fraction). Assumption.",
    )
    waiver_min_on_time_share: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Menu rule 'menu_waiver_rule': a waiver only from this on-time share (unit: fraction). Assumption.",
    )
    max_concessions: int = Field(
        1,
        ge=0,
        le=10,
        description="Menu rule 'menu_concession_cap': discounts and waivers per arrangement (unit: count). "
        "Assumption: the seed's 'keep the number of discounts in hand'.",
    )

    @field_validator("deferral_days", "plan_installments", "discounts")
    @classmethod
    def _levels(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 2 or v[0] != 0 or list(v) != sorted(set(v)):
            raise ValueError(f"levels must start with 0 (not offered) and increase strictly, got {list(v)}")
        return v

    @field_validator("discounts")
    @classmethod
    def _discounts(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if v[-1] >= 1.0:
            raise ValueError(f"a discount must be below 1 (the whole balance), got {v[-1]}")
        return v

    @field_validator("confirmation_channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if v not in CHANNELS:
            raise ValueError(f"unknown channel {v!r}; allowed: {list(CHANNELS)}")
        return v

    @field_validator("max_deferral_days", "max_plan_installments", "max_discount")
    @classmethod
    def _tier_order(cls, v: tuple[HistoryTier, ...]) -> tuple[HistoryTier, ...]:
        return _check_tiers(v)
