"""The policies a server runs: loading them once, and deciding under a time budget with a fallback and a shadow.

* The **active** policy answers. It is an artifact folder (checksums, feature layout and rule-set version
  verified by :func:`agents.artifact.load_policy`; a tampered artifact refuses to start) or a registered name.
* The **fallback** (rule-based, default ``static-dunning``) answers when the active policy raises, breaks a
  rule, or exceeds its time budget. The active policy runs on a worker thread; at the deadline the server
  stops waiting and the fallback answers (a late answer is discarded). Python cannot stop a running thread,
  so later calls queue behind a stuck one and fall back too until it returns.
* The **shadow** policy decides on the same contexts beside the active one; its decisions are logged and never
  returned, and its failures never affect the answer.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

import agents
from agents.artifact import MANIFEST, load_policy
from regsim.decision import ContextBatch, DecisionBatch, Policy, RuleViolation
from regsim.rules import RuleSet

__all__ = ["LoadedPolicy", "PolicyRunner", "RunResult", "ShadowResult", "load"]


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy and where it came from.

    Attributes:
        policy: The policy.
        origin: ``sha256:<digest of manifest.json>`` for an artifact, ``registry:<name>`` for a registered one.
    """

    policy: Policy
    origin: str


def load(spec: str, rules_version: str) -> LoadedPolicy:
    """Load a policy from an artifact folder (verified) or make a registered one by name (a bare registered
    name is the registered policy even if a folder of that name exists; write ``./NAME`` for the folder).

    Raises:
        agents.artifact.ArtifactError: The artifact fails verification (modified file, other rule set, ...).
        agents.UnknownPolicyError: ``spec`` is neither a folder nor a registered policy name.
    """
    # A bare registered name is the policy, never a folder of that name (agents.registry.policy_reference).
    ref = agents.policy_reference(spec)
    if ref.name is not None:
        return LoadedPolicy(agents.make(ref.name), f"registry:{ref.name}")
    assert ref.folder is not None
    path = ref.folder
    if not path.is_dir():
        raise agents.UnknownPolicyError(f"policy {spec!r}: no such artifact folder")
    policy = load_policy(path, rules_version=rules_version)
    digest = hashlib.sha256((path / MANIFEST).read_bytes()).hexdigest()
    return LoadedPolicy(policy, f"sha256:{digest}")


@dataclass(frozen=True)
class RunResult:
    """Checked decisions for a batch and who made them.

    Attributes:
        decisions: Normalised decisions that break no rule.
        policy: Name of the policy that decided.
        version: Its version.
        fallback_reason: ``None`` if the active policy answered, else ``"error"``, ``"timeout"`` or
            ``"rule_violation"``.
        detail: What went wrong (empty if nothing did).
    """

    decisions: DecisionBatch
    policy: str
    version: str
    fallback_reason: str | None
    detail: str


@dataclass(frozen=True)
class ShadowResult:
    """The shadow policy's decisions (``None`` and an error message if it failed)."""

    actions: NDArray[np.int64] | None
    propensity: NDArray[np.float64] | None
    error: str | None


class PolicyRunner:
    """Decides batches with the active policy under a time budget, the fallback behind it, and the shadow.

    Args:
        active: The policy that answers.
        fallback: The rule-based policy that answers when the active one cannot.
        shadow: A policy that decides beside the active one (logged only), or ``None``.
        rules: The rule set (decisions are normalised and checked against it).
        budget_s: Time budget of one call of the active policy (seconds).
    """

    def __init__(
        self, active: Policy, fallback: Policy, shadow: Policy | None, rules: RuleSet, budget_s: float
    ) -> None:
        self.active, self.fallback, self.shadow = active, fallback, shadow
        self.rules = rules
        self.budget_s = float(budget_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="regsim-policy")

    def close(self) -> None:
        """Stop the worker thread (without waiting for a stuck call)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _checked(self, batch: ContextBatch, decisions: DecisionBatch) -> DecisionBatch:
        decisions = self.rules.normalise(batch, DecisionBatch.from_decisions(decisions))
        self.rules.check(batch, decisions)
        return decisions

    def decide(self, batch: ContextBatch) -> RunResult:
        """Decisions for a batch: the active policy's if it answers in time with valid ones, else the fallback's.

        Raises:
            RuleViolation: The fallback's decisions break a rule too (a configuration error).
        """
        future = self._pool.submit(self.active.decide_batch, batch)
        reason, detail = None, ""
        try:
            decisions = self._checked(batch, future.result(timeout=self.budget_s))
            return RunResult(decisions, self.active.name, self.active.version, None, "")
        except concurrent.futures.TimeoutError:
            reason, detail = "timeout", f"no answer within the budget of {self.budget_s * 1000:.0f} ms"
        except RuleViolation as exc:
            reason, detail = "rule_violation", str(exc)
        except Exception as exc:  # the policy's own failure, whatever it is: the fallback answers
            reason, detail = "error", f"{type(exc).__name__}: {exc}"
        decisions = self._checked(batch, self.fallback.decide_batch(batch))
        return RunResult(decisions, self.fallback.name, self.fallback.version, reason, detail)

    def decide_shadow(self, batch: ContextBatch) -> ShadowResult | None:
        """The shadow policy's checked decisions for a batch (``None`` without a shadow); never raises."""
        if self.shadow is None:
            return None
        try:
            decisions = self._checked(batch, self.shadow.decide_batch(batch))
        except Exception as exc:  # a shadow's failure is logged, never propagated
            return ShadowResult(None, None, f"{type(exc).__name__}: {exc}")
        return ShadowResult(decisions.actions, decisions.propensity, None)
