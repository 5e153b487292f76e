"""World config of the business rules: contact caps, quiet hours, opt-outs and history-dependent caps.

:class:`RulesConfig` (the ``rules`` section) holds every rule as data, each with its ``enabled`` switch; caps
that depend on payment history are tuples of :class:`HistoryTier`.

Every section is a frozen pydantic model that refuses unknown keys; every field states its unit and either its
source (a fact ``F1``..``F10`` of docs/calibration.md) or the word *Assumption* with the reasoning
behind the default (see :mod:`regsim.config`).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from regsim.config_base import _Section

__all__ = ["HistoryTier", "RulesConfig"]


class HistoryTier(_Section):
    """One tier of a cap that depends on payment history.

    The tier applies when the on-time share is at least ``min_on_time_share``.
    """

    min_on_time_share: float = Field(ge=0.0, le=1.0, description="Lowest on-time share of the tier (unit: fraction).")
    value: float = Field(ge=0.0, description="The cap for this tier (unit: that of the cap).")


class RulesConfig(_Section):
    """Business rules as data (docs/calibration.md, "Real-world rules"); each is switched by its ``enabled`` flag."""

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
