"""The policies a server runs: loading them once, and deciding under a time budget with a fallback and a shadow.

* The **active** policy answers. It is an artifact folder (checksums, feature layout and rule-set version
  verified by :func:`agents.artifact.load_policy`; a tampered artifact refuses to start) or a registered name.
* The **fallback** (rule-based, default ``static-dunning``) answers when the active policy raises, breaks a
  rule, or exceeds its time budget. The active policy runs on a worker thread; at the deadline the server
  stops waiting and the fallback answers (a late answer is discarded). Python cannot stop a running thread,
  so later calls queue behind a stuck one and fall back too until it returns.
* **Inline once proven fast.** Handing a call to the worker thread and waiting for it costs the caller tens of
  microseconds of CPU per call (a future, two thread wake-ups, the interpreter lock passed back and forth) -
  about a tenth of a small MaskablePPO batch's call. After ``inline_after`` calls in a row that each returned
  within ``inline_below`` of the budget, the active policy is called on the caller's thread, timed; a call
  that takes ``inline_below`` of the budget or more sends the next calls back to the worker thread until as
  many in a row are fast again. What holds on the inline path: an answer that took longer than the budget
  is discarded and the fallback answers, as on the worker thread (reason ``timeout``), but that one call's
  group waits for the whole call instead of the budget - the budget bounds the wait only on the worker
  thread, and a policy that hangs during an inline call hangs its caller. ``inline_after=0`` keeps every
  call on the worker thread.
* The **shadow** policy decides on the same contexts beside the active one; its decisions are logged and never
  returned, and its failures never affect the answer.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
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
        inline_after: Calls in a row within ``inline_below`` of the budget after which the active policy is
            called on the caller's thread (module doc); 0: always on the worker thread.
        inline_below: The share of the budget a call must stay under to count as fast (0 < share <= 1).

    Raises:
        ValueError: ``budget_s`` is not positive, ``inline_after`` is negative or ``inline_below`` is outside
            (0, 1].
    """

    def __init__(
        self,
        active: Policy,
        fallback: Policy,
        shadow: Policy | None,
        rules: RuleSet,
        budget_s: float,
        inline_after: int = 32,
        inline_below: float = 0.1,
    ) -> None:
        if not budget_s > 0:
            raise ValueError(f"budget_s must be > 0 (seconds), got {budget_s!r}")
        if inline_after < 0:
            raise ValueError(f"inline_after must be >= 0 (0: never inline), got {inline_after!r}")
        if not 0 < inline_below <= 1:
            raise ValueError(f"inline_below must be in (0, 1] (a share of the budget), got {inline_below!r}")
        self.active, self.fallback, self.shadow = active, fallback, shadow
        self.rules = rules
        self.budget_s = float(budget_s)
        self.inline_after = int(inline_after)
        self._fast_s = float(inline_below) * self.budget_s
        self._fast = 0  # calls in a row that returned within _fast_s
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
        reason, detail = None, ""
        try:
            started = time.perf_counter()
            if self.inline_after and self._fast >= self.inline_after:
                answer = self.active.decide_batch(batch)
                took = time.perf_counter() - started
                self._fast = self._fast + 1 if took < self._fast_s else 0
                if took > self.budget_s:
                    raise concurrent.futures.TimeoutError  # (its answer came too late: discarded)
            else:
                fast, self._fast = self._fast, 0  # (until this call has returned in time)
                answer = self._pool.submit(self.active.decide_batch, batch).result(timeout=self.budget_s)
                self._fast = fast + 1 if time.perf_counter() - started < self._fast_s else 0
            decisions = self._checked(batch, answer)
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
