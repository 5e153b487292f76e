"""Typed, validated configuration of the simulated world.

Every section is a frozen pydantic model that refuses unknown keys. Every field states its unit and either
its source (a fact ``F1``..``F10`` of docs/calibration.md) or the word *Assumption* with the
reasoning behind the default. The default world is ``configs/population/default.yaml``; the defaults below
are the same values, so ``WorldConfig()`` is the default world as well.

Errors: :func:`load_world_config` and :func:`parse_world_config` raise :class:`ConfigError`, whose message
names the path of each offending field, what was given and what is allowed.
The sections live in modules by family and are all importable from here: the shared vocabularies
(:data:`CHANNELS`, :data:`DEBTOR_TYPES`, :data:`INCOME_SCHEDULES`) and :class:`ConfigError` in
:mod:`regsim.config_base`; the population in :mod:`regsim.config_population`; arrangements and decisions in
:mod:`regsim.config_arrangements`; channels and capacity in :mod:`regsim.config_channels`; business rules in
:mod:`regsim.config_rules`; self-service (off by default) in
:mod:`regsim.config_self_service`. This module holds the simulation section, the whole :class:`WorldConfig` and its
loading and error reporting.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from regsim.config_arrangements import ArrangementConfig, DecisionConfig, SendSlot
from regsim.config_base import CHANNELS, DEBTOR_TYPES, INCOME_SCHEDULES, ConfigError, _Section
from regsim.config_channels import CapacityConfig, ChannelConfig, ChannelsConfig
from regsim.config_population import (
    ChannelNotice,
    DebtorTypeConfig,
    FatigueConfig,
    HabitConfig,
    IncomeConfig,
    PopulationConfig,
    ShockConfig,
)
from regsim.config_rules import HistoryTier, RulesConfig
from regsim.config_self_service import SelfServiceConfig
from regsim.runoff import RunoffCap

__all__ = [
    "CHANNELS",
    "DEBTOR_TYPES",
    "INCOME_SCHEDULES",
    "ArrangementConfig",
    "CapacityConfig",
    "ChannelConfig",
    "ChannelNotice",
    "ChannelsConfig",
    "ConfigError",
    "DebtorTypeConfig",
    "DecisionConfig",
    "FatigueConfig",
    "HabitConfig",
    "HistoryTier",
    "IncomeConfig",
    "PopulationConfig",
    "RulesConfig",
    "SelfServiceConfig",
    "SendSlot",
    "ShockConfig",
    "SimulationConfig",
    "WorldConfig",
    "load_world_config",
    "parse_world_config",
]


class SimulationConfig(_Section):
    """Run length, size and seed."""

    arrangements: int = Field(2_000, ge=1, le=10_000_000, description="Arrangements in the run (unit: count).")
    months: int = Field(12, ge=1, le=120, description="Simulated horizon (unit: months of 30 days).")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="The run seed; every random draw derives from it.")
    start_date: dt.date = Field(dt.date(2026, 1, 5), description="Calendar date of simulation day 0.")
    runoff_months_after_plan: float = Field(
        12.0,
        ge=0.0,
        le=120.0,
        description="A run-off follows each arrangement at most its plan length plus this long after its creation "
        "(unit: months of 30 days). Assumption: a kept plan ends with its last installment and an unkept one "
        "breaks within two missed installments, so a year beyond the plan leaves room for deferrals and re-plans "
        "(see regsim.runoff).",
    )

    @property
    def days(self) -> int:
        """The horizon in days."""
        return 30 * self.months

    def runoff_cap(self, cap_factor: float = 1.0) -> RunoffCap:
        """The run-off cap of this world, optionally stretched by ``cap_factor`` (e.g. 1.5 to check a verdict)."""
        return RunoffCap(months_after_plan=self.runoff_months_after_plan, cap_factor=cap_factor)


class WorldConfig(_Section):
    """The whole simulated world."""

    name: str = Field("default", description="Name of the world, shown in reports.")
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    arrangements: ArrangementConfig = Field(default_factory=ArrangementConfig)
    decisions: DecisionConfig = Field(default_factory=DecisionConfig)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    self_service: SelfServiceConfig = Field(default_factory=SelfServiceConfig)
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
