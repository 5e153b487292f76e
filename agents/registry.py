"""Making any policy by name, with validated keyword arguments.

Policies register a factory (usually the class) under a name; :func:`make` validates the keyword arguments
against the factory's signature (unknown names and wrongly typed values are refused with the allowed ones
listed), so configs and the server make policies the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from regsim.decision import Policy

__all__ = ["PolicySpec", "UnknownPolicyError", "available", "make", "register"]

F = TypeVar("F", bound=Callable[..., Any])


class UnknownPolicyError(ValueError):
    """No policy is registered under that name, or an argument is not one it takes."""


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy: its name, factory, summary and keyword arguments (name -> default or None)."""

    name: str
    factory: Callable[..., Policy]
    summary: str
    arguments: dict[str, str]


_REGISTRY: dict[str, PolicySpec] = {}


def register(name: str) -> Callable[[F], F]:
    """Register a policy factory under ``name`` (a class decorator)."""

    def deco(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"a policy named {name!r} is already registered")
        doc = inspect.getdoc(factory) or ""
        params = {
            p.name: ("required" if p.default is inspect.Parameter.empty else repr(p.default))
            for p in inspect.signature(factory, eval_str=True).parameters.values()
            if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
        }
        _REGISTRY[name] = PolicySpec(name, factory, doc.splitlines()[0] if doc else "", params)
        return factory

    return deco


def available() -> dict[str, PolicySpec]:
    """All registered policies by name."""
    return dict(sorted(_REGISTRY.items()))


def make(name: str, **kwargs: Any) -> Policy:
    """Make a registered policy.

    Raises:
        UnknownPolicyError: The name is not registered, or an argument is unknown or invalid; the message
            lists the allowed names or arguments.
    """
    spec = _REGISTRY.get(name)
    if spec is None:
        raise UnknownPolicyError(f"unknown policy {name!r}; allowed: {sorted(_REGISTRY)}")
    signature = inspect.signature(spec.factory, eval_str=True)
    unknown = sorted(set(kwargs) - set(spec.arguments))
    if unknown:
        raise UnknownPolicyError(
            f"policy {name!r} takes no argument(s) {unknown}; allowed: {sorted(spec.arguments) or 'none'}"
        )
    fields: dict[str, Any] = {}
    for p in signature.parameters.values():
        if p.name in spec.arguments:
            annotation = Any if p.annotation is inspect.Parameter.empty else p.annotation
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (annotation, default)
    model = create_model(
        f"{name}_arguments", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
    )
    try:
        validated = model(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UnknownPolicyError(f"invalid arguments for policy {name!r}: {problems}") from None
    return spec.factory(**{k: getattr(validated, k) for k in kwargs})
