"""What every section of the world config shares: the fixed vocabularies, the section base and ConfigError.

:data:`CHANNELS`, :data:`DEBTOR_TYPES` and :data:`INCOME_SCHEDULES` fix the names and order of channels, hidden
debtor types and income schedules; ``_Section`` is the frozen pydantic base that refuses unknown keys; and
:class:`ConfigError` is what loading an invalid config raises. Everything here is re-exported by
:mod:`regsim.config`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["CHANNELS", "DEBTOR_TYPES", "INCOME_SCHEDULES", "ConfigError"]

#: Contact channels in their fixed order; index 0 of the action's channel part is "no contact".
CHANNELS: tuple[str, ...] = ("email", "sms", "letter", "robocall", "collector")
#: Hidden debtor types (mechanism 7, docs/mechanisms.md), in their fixed order.
DEBTOR_TYPES: tuple[str, ...] = ("reliable", "forgetful", "liquidity_constrained", "shock_prone", "unwilling")
#: Income schedules (mechanism 1, docs/mechanisms.md).
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
