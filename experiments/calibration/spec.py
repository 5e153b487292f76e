"""``SPEC``: the parameters a calibration fits, each a dotted world-config path with its bounds.

A spec file is a YAML mapping from a dotted path of :class:`regsim.config.WorldConfig` to ``low`` and ``high``::

    population.types.forgetful.attention: {low: 0.05, high: 0.5}
    population.types.unwilling.share: {low: 0.05, high: 0.2}
    population.income.schedule_shares.benefits: {low: 0.1, high: 0.3}

A path goes through sections and, for mapping fields (``types``, ``schedule_shares``, ``hour_profiles``,
``monthly_pay_days``), through their keys. It must end at a numeric field; an integer field is fitted on the
continuum and rounded when applied. Validated at load (:func:`parse_spec`): an unknown path, a non-numeric field,
``low >= high`` and bounds outside the field's own range are refused with :class:`SpecError`, naming the path and
what is allowed.

Shares. A path to a share (``population.types.<type>.share``, or a key of ``schedule_shares``,
``hour_profiles`` or ``monthly_pay_days``) sets that share; the shares of the same family that the spec does not
name are rescaled proportionally so the family sums to 1 again (:meth:`Spec.apply`). A parameter vector whose
named shares of one family exceed 1 is refused with a :class:`regsim.config.ConfigError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import annotated_types as at
import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel

from regsim.config import ConfigError, WorldConfig, parse_world_config

__all__ = ["ParamBound", "Spec", "SpecError", "load_spec", "parse_spec"]

#: Mapping fields whose values are shares of one family summing to 1 (dotted path of the mapping).
_SHARE_MAPS = ("population.income.schedule_shares", "population.hour_profiles", "population.income.monthly_pay_days")
_TYPE_SHARE = "population.types"


class SpecError(ValueError):
    """An invalid parameter spec; the message names the path and what is allowed."""


@dataclass(frozen=True)
class ParamBound:
    """One fitted parameter.

    Attributes:
        path: Dotted world-config path.
        low: Lower bound of the search.
        high: Upper bound of the search.
        integer: The field is an integer (values are rounded when applied).
        field_low: The field's own lower bound (``-inf`` if none).
        field_high: The field's own upper bound (``inf`` if none).
        share_family: The share family the field belongs to (its mapping's path), or ``None``.
    """

    path: str
    low: float
    high: float
    integer: bool
    field_low: float
    field_high: float
    share_family: str | None

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low


@dataclass(frozen=True)
class Spec:
    """The fitted parameters, in file order."""

    params: tuple[ParamBound, ...]

    @property
    def paths(self) -> list[str]:
        """The dotted paths."""
        return [p.path for p in self.params]

    @property
    def lows(self) -> NDArray[np.float64]:
        """Lower bounds, shape ``(P,)``."""
        return np.array([p.low for p in self.params], dtype=float)

    @property
    def highs(self) -> NDArray[np.float64]:
        """Upper bounds, shape ``(P,)``."""
        return np.array([p.high for p in self.params], dtype=float)

    def __len__(self) -> int:
        return len(self.params)

    def clip(self, values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
        """Values clipped into the bounds."""
        return np.clip(np.asarray(values, dtype=float), self.lows, self.highs)

    def values_of(self, config: WorldConfig) -> NDArray[np.float64]:
        """The current values of the parameters in a world, shape ``(P,)``."""
        data = config.model_dump(mode="python")
        return np.array([float(_get(data, p.path.split("."))) for p in self.params], dtype=float)

    def apply(self, base: WorldConfig, values: Sequence[float] | NDArray[np.float64]) -> WorldConfig:
        """The world ``base`` with the parameters set to ``values`` (shares renormalised, see the module
        docstring), validated like a loaded file.

        Raises:
            ValueError: ``values`` has the wrong length.
            ConfigError: The resulting world is invalid (e.g. named shares of one family above 1).
        """
        vals = np.asarray(values, dtype=float).reshape(-1)
        if len(vals) != len(self.params):
            raise ValueError(f"values: expected {len(self.params)} numbers ({self.paths}), got {len(vals)}")
        data = config_data(base)
        named: dict[str, dict[str, float]] = {}
        for p, v in zip(self.params, vals, strict=True):
            value: float | int = round(float(v)) if p.integer else float(v)
            parts = p.path.split(".")
            _set(data, parts, value)
            if p.share_family is not None:
                named.setdefault(p.share_family, {})[_share_key(p)] = float(value)
        for family, shares in named.items():
            _renormalise(data, family, shares)
        return parse_world_config(data, source="calibration parameters " + ", ".join(self.paths))


def config_data(config: WorldConfig) -> dict[str, Any]:
    """A world as the nested mapping :func:`regsim.config.parse_world_config` reads back."""
    return config.model_dump(mode="python")


def _share_key(p: ParamBound) -> str:
    parts = p.path.split(".")
    return parts[2] if p.share_family == _TYPE_SHARE else parts[-1]


def _renormalise(data: dict[str, Any], family: str, named: dict[str, float]) -> None:
    total_named = sum(named.values())
    if total_named > 1.0 + 1e-9:
        raise ConfigError(f"{family}: the fitted shares {named} sum to {total_named:.4f} > 1")
    if family == _TYPE_SHARE:
        types = data["population"]["types"]
        shares = {k: float(t["share"]) for k, t in types.items()}
    else:
        shares = {str(k): float(v) for k, v in _get(data, family.split(".")).items()}
    others = {k: v for k, v in shares.items() if k not in named}
    rest = sum(others.values())
    if rest <= 0.0:
        if abs(total_named - 1.0) > 1e-6:
            raise ConfigError(f"{family}: the fitted shares sum to {total_named:.4f} and no other share can fill 1")
        scale = 0.0
    else:
        scale = (1.0 - total_named) / rest
    new = {**{k: v * scale for k, v in others.items()}, **named}
    if family == _TYPE_SHARE:
        for k, v in new.items():
            types[k]["share"] = v
    else:
        mapping = _get(data, family.split("."))
        for k in list(mapping):
            mapping[k] = new[str(k)]


def _get(data: Any, parts: list[str]) -> Any:
    node = data
    for part in parts:
        node = node[_key(node, part)]
    return node


def _key(node: dict[Any, Any], part: str) -> Any:
    if part in node:
        return part
    for k in node:
        if str(k) == part:
            return k
    raise KeyError(part)


def _set(data: dict[str, Any], parts: list[str], value: float | int) -> None:
    parent = _get(data, parts[:-1])
    parent[_key(parent, parts[-1])] = value


def _bounds(metadata: list[Any]) -> tuple[float, float]:
    low, high = -math.inf, math.inf
    for m in metadata:
        if isinstance(m, at.Ge):
            low = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, at.Gt):
            low = float(m.gt)  # type: ignore[arg-type]
        elif isinstance(m, at.Le):
            high = float(m.le)  # type: ignore[arg-type]
        elif isinstance(m, at.Lt):
            high = float(m.lt)  # type: ignore[arg-type]
    return low, high


@dataclass(frozen=True)
class _Resolved:
    integer: bool
    low: float
    high: float
    share_family: str | None


def _resolve(path: str, world: WorldConfig) -> _Resolved:
    """The type and own range of the field at ``path``, or :class:`SpecError` naming what is allowed there."""
    parts = path.split(".")
    node: Any = config_data(world)
    model: Any = WorldConfig
    metadata: list[Any] = []
    expect_key = False  # the previous part was a mapping field: this part is one of its keys
    for i, part in enumerate(parts):
        here = ".".join(parts[:i]) or "<root>"
        if expect_key:
            keys = sorted(str(k) for k in node)
            if part not in keys:
                raise SpecError(f"{path}: unknown key {part!r} at {here}; allowed: {keys}")
            node, metadata, expect_key = node[_key(node, part)], [], False
        elif isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            if field is None:
                raise SpecError(f"{path}: unknown field {part!r} at {here}; allowed: {sorted(model.model_fields)}")
            node, metadata = node[part], list(field.metadata)
            annotation: Any = field.annotation
            expect_key = get_origin(annotation) is dict
            model = get_args(annotation)[1] if expect_key else annotation
        else:
            raise SpecError(f"{path}: {here} is a value, not a section; the path must end there")
    if isinstance(node, dict | list | tuple):
        raise SpecError(f"{path}: a section, not a numeric field; name one of its fields")
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise SpecError(f"{path}: not a numeric field (it holds {node!r}); only int and float fields can be fitted")
    parent = ".".join(parts[:-1])
    share_family: str | None = None
    low, high = _bounds(metadata)
    if parent in _SHARE_MAPS:
        share_family, low, high = parent, 0.0, 1.0
    elif len(parts) == 4 and parent.startswith(_TYPE_SHARE + ".") and parts[-1] == "share":
        share_family = _TYPE_SHARE
    return _Resolved(isinstance(node, int), low, high, share_family)


def parse_spec(mapping: Any, world: WorldConfig, source: str = "<spec>") -> Spec:
    """Validate a spec mapping against a world.

    Args:
        mapping: ``{path: {"low": x, "high": y}}`` as read from YAML.
        world: The world the paths refer to.
        source: Where the mapping came from, quoted in errors.

    Raises:
        SpecError: The mapping is empty or not a mapping; a path is unknown, not numeric, or its bounds are not
            numbers, not ``low < high``, or outside the field's own range. Every problem is named.
    """
    if not isinstance(mapping, Mapping) or not mapping:
        raise SpecError(f"{source}: expected a non-empty mapping of dotted world-config paths to {{low, high}}")
    problems: list[str] = []
    params: list[ParamBound] = []
    for path, bounds in mapping.items():
        path = str(path)
        if not isinstance(bounds, Mapping) or set(bounds) != {"low", "high"}:
            got = sorted(bounds) if isinstance(bounds, Mapping) else repr(bounds)
            problems.append(f"{path}: expected exactly the keys ['high', 'low'], got {got}")
            continue
        low, high = bounds["low"], bounds["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
            problems.append(f"{path}: low and high must be finite numbers, got low={low!r}, high={high!r}")
            continue
        try:
            r = _resolve(path, world)
        except SpecError as exc:
            problems.append(str(exc))
            continue
        if not low < high:
            problems.append(f"{path}: low ({low}) must be below high ({high})")
            continue
        if low < r.low or high > r.high:
            problems.append(f"{path}: bounds [{low}, {high}] outside the field's allowed range [{r.low}, {r.high}]")
            continue
        params.append(ParamBound(path, float(low), float(high), r.integer, r.low, r.high, r.share_family))
    families: dict[str, float] = {}
    for p in params:
        if p.share_family is not None:
            families[p.share_family] = families.get(p.share_family, 0.0) + p.low
    for family, total in families.items():
        if total >= 1.0:
            problems.append(f"{family}: the lower bounds of its fitted shares sum to {total:g}; they must be below 1")
    if problems:
        raise SpecError(f"invalid parameter spec ({source}):\n  " + "\n  ".join(problems))
    return Spec(tuple(params))


def load_spec(path: str | Path, world: WorldConfig) -> Spec:
    """Load and validate a spec file (see the module docstring).

    Raises:
        SpecError: The file is missing, is not YAML, or holds an invalid spec.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"parameter spec not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    return parse_spec(data, world, source=str(p))
