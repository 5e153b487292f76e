"""Making any policy by name, with validated keyword arguments.

Policies register a factory (usually the class) under a name; :func:`make` validates the keyword arguments
against the factory's signature (unknown names and wrongly typed values are refused with the allowed ones
listed), so configs and the server make policies the same way.

:func:`policy_reference` tells a registered name from an artifact folder where a command line takes either
(``--policy NAME_OR_PATH``): a bare registered name is always the policy, never a folder of that name in the
working directory; a folder needs a path form (``./silent``, ``runs/x/policy``) or a name no policy has.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError, create_model

from regsim.decision import Policy

__all__ = ["PolicyReference", "PolicySpec", "UnknownPolicyError", "available", "make", "policy_reference", "register"]

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


@dataclass(frozen=True)
class PolicyReference:
    """What a ``NAME_OR_PATH`` names: a registered policy or an artifact folder.

    Attributes:
        name: The registered name (``None`` for a folder).
        folder: The artifact folder (``None`` for a registered name).
        shadowed: For a name, a folder of the same name that exists in the working directory and is *not*
            used (a caller may say so: "write ./NAME for the folder").
    """

    name: str | None
    folder: Path | None
    shadowed: Path | None = None

    @property
    def notice(self) -> str | None:
        """A sentence naming the clash between a registered name and a folder of that name, if there is one."""
        if self.shadowed is None:
            return None
        return (
            f"{self.name!r} is the registered policy, not the folder {str(self.shadowed)!r} in the working "
            f"directory; write {os.path.join('.', str(self.shadowed))!r} to use the folder"
        )


def _has_path_form(spec: str) -> bool:
    seps = {"/", os.sep, *([os.altsep] if os.altsep else [])}
    return any(sep in spec for sep in seps) or spec.startswith("~") or spec in (".", "..")


def policy_reference(spec: str) -> PolicyReference:
    """Tell a registered policy name from an artifact folder.

    A spec with a path form (a separator, ``~``, ``.``) is a folder; otherwise a registered name is the policy
    (a folder of that name in the working directory does not hide it: see :attr:`PolicyReference.shadowed`),
    and any other name that is an existing folder is that folder.

    Raises:
        UnknownPolicyError: Neither a registered name nor a folder; the message lists the registered names.
    """
    if _has_path_form(spec):
        return PolicyReference(name=None, folder=Path(spec).expanduser())
    if spec in _REGISTRY:
        shadow = Path(spec)
        return PolicyReference(name=spec, folder=None, shadowed=shadow if shadow.exists() else None)
    if Path(spec).is_dir():
        return PolicyReference(name=None, folder=Path(spec))
    raise UnknownPolicyError(
        f"unknown policy {spec!r}: neither a registered name nor an artifact folder; allowed: {sorted(_REGISTRY)}"
    )


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
