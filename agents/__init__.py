"""Policies for the decision contract of :mod:`regsim`: rule-based baselines now, bandits and deep RL later.

Importing this package registers every policy; make one with :func:`agents.make`.
"""

from agents import artifact as _artifact  # noqa: F401  (registers make("artifact", path=...))
from agents import bandits as _bandits  # noqa: F401  (registers the contextual bandits)
from agents import menus as _menus  # noqa: F401  (registers the self-service menu policies)
from agents import oracle as _oracle  # noqa: F401  (registers the one-step oracle)
from agents import reference as _reference  # noqa: F401  (registers the reference policies)
from agents import rules_based as _rules_based  # noqa: F401  (registers the rule-based policies)
from agents.base import BasePolicy
from agents.ope import behaviour as _behaviour  # noqa: F401  (registers the epsilon-mixture logging policy)
from agents.registry import PolicyReference, PolicySpec, UnknownPolicyError, available, make, policy_reference, register

__all__ = [
    "BasePolicy",
    "PolicyReference",
    "PolicySpec",
    "UnknownPolicyError",
    "available",
    "make",
    "policy_reference",
    "register",
]
