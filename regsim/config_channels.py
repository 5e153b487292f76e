"""World config of the contact channels and of the shared capacity behind them.

:class:`ChannelsConfig` (the ``channels`` section) holds one :class:`ChannelConfig` per channel of
:data:`~regsim.config_base.CHANNELS` (cost, delay, effect; mechanism 3, docs/mechanisms.md); :class:`CapacityConfig`
(the ``capacity`` section) the collectors, robocall lines and print room that all debtors share (mechanism 8).

Every section is a frozen pydantic model that refuses unknown keys; every field states its unit and either its
source (a fact ``F1``..``F10`` of docs/calibration.md) or the word *Assumption* with the reasoning
behind the default (see :mod:`regsim.config`).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from regsim.config_base import CHANNELS, _Section

__all__ = ["CapacityConfig", "ChannelConfig", "ChannelsConfig"]


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
    """The contact channels (mechanism 3, docs/mechanisms.md)."""

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
    """Shared resources (mechanism 8, docs/mechanisms.md). All values are assumptions for a mid-sized creditor."""

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
