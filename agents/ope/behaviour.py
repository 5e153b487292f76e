"""Logging policies with exact propensities, for validating off-policy evaluation in the simulator.

``epsilon-mixture`` (:class:`EpsilonMixture`): with probability ``epsilon`` a decision is drawn uniformly over the
allowed options of each part, independently (from the context's masks), else it is the base policy's. Its
probability of an effective action ``a`` (:func:`agents.ope.candidates.effective_actions`) in context ``x`` is

.. math:: \\mu(a|x) = (1 - \\epsilon)\\, \\pi_{base}(a|x) + \\epsilon\\, U(a|x),
    \\qquad U(a|x) = \\prod_{j} 1 / |A_j(x)|

over the parts ``j`` that matter (the send slot left out where the channel is "none"), with ``pi_base`` 0/1 for
a deterministic base. The logged propensity is that probability, exact, so every action allowed by the masks has
propensity at least ``epsilon U(a|x) > 0``: full support for any candidate (IPS and DR are unbiased).

The policy's name and arguments are recorded in its logged ``policy_version``
(``2;base=static-dunning;epsilon=0.3``), so that :func:`logged_behaviour` can rebuild the logging policy of a log
(for the estimator choice of ``regsim ope``, and for the calibration's treatment by the logging policy).

Its draws are keyed, as the world's are (:mod:`regsim.random`): whether a decision explores, and which uniform
option it takes, are pure functions of (the mixture's seed, arrangement id, day, decision kind, installment), and
not the next numbers of one sequential stream. A decision point is unique in a log by those keys (measured on the
calibration benchmark's 561,111 decisions: no two share them). Why it matters: two simulations of the same
debtors at nearby world parameters (the calibration's common random numbers) reach mostly the same decision
points, and with keyed draws those decide alike; with one stream, one decision more or fewer anywhere shifts
every later draw, and the two simulations' exploration differs everywhere (the calibration's objective then
varied twice as much over a 5% step: 53 against 24 under replay).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

import agents.registry as registry
from agents.base import FixedPolicy
from agents.ope.candidates import (
    effective_actions,
    policy_probabilities,
    uniform_choice,
    uniform_draw,
    uniform_probabilities,
)
from regsim.decision import PART_NAMES, ContextBatch, DecisionBatch, Feedback, Policy
from regsim.random import Purpose, Streams

__all__ = ["EpsilonMixture", "logged_behaviour"]

_TAG = 0x4D495854  # ASCII "MIXT": the high bits of every draw's index, so no other POLICY stream meets these
_EXPLORE = len(PART_NAMES)  # the draw index of "explore or not"; 0..parts-1 are the uniform option's parts


@registry.register("epsilon-mixture")
class EpsilonMixture(FixedPolicy):
    """A base policy mixed with the uniform distribution over allowed options (exact propensities; a logger).

    Args:
        base: The base policy: a registered name (made with its defaults) whose decisions are deterministic or
            which states its probabilities (``action_probabilities``).
        epsilon: Probability of a uniform draw, in (0, 1].
        seed: Seed of the mixture's own draws (independent of the world's and the base's), below 2**63.

    Raises:
        ValueError: ``epsilon`` outside (0, 1], a negative seed, or a base that reads ground truth.

    Version History:
        * v1: Initial version (one sequential exploration stream).
        * v2: Keyed draws (module docstring); the same distribution, hence the same propensities.
    """

    def __init__(self, *, base: str = "static-dunning", epsilon: float = 0.3, seed: int = 0) -> None:
        if not (math.isfinite(epsilon) and 0.0 < epsilon <= 1.0):
            raise ValueError(f"epsilon must lie in (0, 1], got {epsilon}")
        if isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        if base == "epsilon-mixture":
            raise ValueError("base must be another policy than epsilon-mixture")
        policy = registry.make(base)
        if policy.requires_ground_truth:
            raise ValueError(f"base {base!r} reads the simulator's ground truth; a logger must run in production")
        self.base: Policy = policy
        self.base_name = base
        self.epsilon = float(epsilon)
        self.seed = int(seed)
        self.name = "epsilon-mixture"
        self.version = f"2;base={base};epsilon={self.epsilon!r}"
        self.feedback_window_days = policy.feedback_window_days
        self.feedback_reward = policy.feedback_reward
        self.streams = Streams(self.seed)

    def __repr__(self) -> str:
        return f"EpsilonMixture(base={self.base_name!r}, epsilon={self.epsilon})"

    def _base_probabilities(
        self, contexts: ContextBatch, actions: NDArray[np.int64], base: DecisionBatch | None = None
    ) -> NDArray[np.float64]:
        exact = policy_probabilities(self.base, contexts, actions)
        if exact is not None:
            return exact
        decided = base if base is not None else self.base.decide_batch(contexts)
        if np.any(decided.propensity != 1.0):
            raise ValueError(
                f"base {self.base_name!r} is stochastic and states no action_probabilities; "
                "the mixture's propensities would not be exact"
            )
        own = effective_actions(contexts, decided.actions)
        return np.all(own == actions, axis=1).astype(np.float64)

    def action_probabilities(self, contexts: ContextBatch, actions: NDArray[np.int64]) -> NDArray[np.float64]:
        """:math:`(1-\\epsilon)\\pi_{base}(a|x) + \\epsilon U(a|x)` of each row's effective action, shape ``(B,)``."""
        acts = np.asarray(actions, dtype=np.int64)
        base = self._base_probabilities(contexts, acts)
        return (1.0 - self.epsilon) * base + self.epsilon * uniform_probabilities(contexts, acts)

    def action_support(
        self, contexts: ContextBatch, rng: np.random.Generator, samples: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """The base's action with weight ``1 - epsilon`` and ``samples`` uniform draws with ``epsilon / samples``
        each: shapes ``(B, 1 + samples, 5)`` and ``(B, 1 + samples)`` (a deterministic base only)."""
        base = effective_actions(contexts, self.base.decide_batch(contexts).actions)
        draws = [uniform_draw(contexts, rng) for _ in range(samples)]
        support = np.stack([base, *draws], axis=1)
        weights = np.concatenate(
            [
                np.full((len(contexts), 1), 1.0 - self.epsilon),
                np.full((len(contexts), samples), self.epsilon / samples),
            ],
            axis=1,
        )
        return support, weights

    def _units(self, contexts: ContextBatch) -> NDArray[np.float64]:
        """The keyed uniforms of each row's decision point (module docstring), shape ``(B, parts + 1)``: one per
        part of the uniform option, then "explore or not"."""
        cols = contexts.columns
        point = (cols["installment"].astype(np.int64) + 1) * 16 + cols["kind"].astype(np.int64)
        index = (_TAG << 32) + point[:, None] * 8 + np.arange(_EXPLORE + 1, dtype=np.int64)
        ids = cols["arrangement_id"].astype(np.int64)[:, None]
        day = cols["day"].astype(np.int64)[:, None]
        return self.streams.uniform(Purpose.POLICY, ids, day, index)

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        """The base's decision, or with probability ``epsilon`` a uniform one; the propensity is exact."""
        base = self.base.decide_batch(contexts)
        units = self._units(contexts)
        explore = units[:, _EXPLORE] < self.epsilon
        uniform = uniform_choice(contexts, units[:, :_EXPLORE])
        actions = np.where(explore[:, None], uniform, effective_actions(contexts, base.actions))
        p = (1.0 - self.epsilon) * self._base_probabilities(contexts, actions, base)
        p += self.epsilon * uniform_probabilities(contexts, actions)
        return DecisionBatch(actions, p)

    def update(self, feedback: Feedback) -> None:
        """A learning base learns from the mixture's decisions (their propensities stay exact at decision time)."""
        self.base.update(feedback)


def logged_behaviour(policy: str, version: str) -> Policy | None:
    """The logging policy of a log's decisions, rebuilt from the logged name and version, if it is one of the
    registered policies whose arguments are known: an ``epsilon-mixture`` (arguments in its version) or a
    registered policy made with its defaults whose version matches; ``None`` otherwise (an artifact, a server's
    policy: the log does not say which weights)."""
    if policy == "epsilon-mixture":
        fields = dict(part.split("=", 1) for part in version.split(";")[1:] if "=" in part)
        try:
            return EpsilonMixture(base=fields["base"], epsilon=float(fields["epsilon"]))
        except (KeyError, ValueError, registry.UnknownPolicyError):
            return None
    if policy not in registry.available():
        return None
    try:
        made = registry.make(policy)
    except (registry.UnknownPolicyError, ValueError, TypeError):
        return None
    return made if getattr(made, "version", None) == version else None
