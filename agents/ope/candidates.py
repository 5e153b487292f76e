"""A candidate policy's probability of logged actions, and the actions it would take, on rebuilt contexts.

Off-policy evaluation needs, for each logged decision, the candidate's probability of the *logged* action in the
logged context (``target_prob``) and, for the reward model's term of DM/DR, the actions the candidate would take
there with their weights (``support``, ``weights``: :math:`\\hat q_\\pi(x) = \\sum_k w_k \\hat q(x, a_k)`).

Actions are compared as the log records them: *effective* actions (:func:`effective_actions`, the world's
:meth:`~regsim.decision.ActionSpace.normalise`): the send slot of a decision without contact is the first
allowed one, and a part that does not apply at the decision kind is 0. So "no contact" is one action whatever slot
a policy drew for it, and its probability sums over the slots (:func:`uniform_probabilities` does so).

How the probability is obtained, in this order (:func:`probability_source`):

* ``exact``: the policy has an ``action_probabilities(contexts, actions) -> (B,)`` method (the protocol
  :class:`GivesProbabilities`; :class:`agents.ope.behaviour.EpsilonMixture` has one), or it is a class whose
  distribution is known here (``random``: uniform over allowed options per part; ``epsilon-greedy``: epsilon
  over the available arms of each head plus the greedy arm, from the bandit's current statistics);
* ``deterministic``: the policy's decisions have propensity 1 on these contexts: 1 where its effective decision
  equals the logged action, else 0;
* ``sampled``: any other stochastic policy: the mean over ``samples`` draws of ``[draw == logged]``, an unbiased
  estimate of the probability (so IPS stays unbiased; its variance grows), with the draws as the support.

For the registered policies: ``silent``, ``static-dunning``, ``payday-aligned``, ``linucb`` and the SB3 policies
in their default deterministic mode are ``deterministic``; ``random``, ``epsilon-greedy`` and
``epsilon-mixture`` are ``exact``; ``linear-ts`` (and SB3 policies loaded with ``deterministic=False``) are
``sampled``; ``one-step-oracle`` reads the simulator's ground truth and is refused (no log has it).
A candidate that learns online is evaluated as it is (frozen): OPE never calls its ``update``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from agents.base import first_allowed
from regsim.decision import CHANNEL, PART_NAMES, SEND_SLOT, ContextBatch, Policy

__all__ = [
    "CandidateOnLog",
    "GivesProbabilities",
    "ProbabilitySource",
    "candidate_on_log",
    "effective_actions",
    "policy_probabilities",
    "probability_source",
    "uniform_choice",
    "uniform_draw",
    "uniform_probabilities",
]

ProbabilitySource = Literal["exact", "deterministic", "sampled"]


@runtime_checkable
class GivesProbabilities(Protocol):
    """A policy that states its probability of any action (the exact route of this module)."""

    def action_probabilities(self, contexts: ContextBatch, actions: NDArray[np.int64]) -> NDArray[np.float64]:
        """The probability of each row's effective action ``actions[i]`` (shape ``(B, 5)``) in ``contexts[i]``,
        shape ``(B,)``; 0 for an action the policy never takes there (a masked option included)."""
        ...


def effective_actions(contexts: ContextBatch, actions: NDArray[np.int64]) -> NDArray[np.int64]:
    """Actions as the world applies and logs them (:meth:`~regsim.decision.ActionSpace.normalise`)."""
    acts = np.asarray(actions, dtype=np.int64).reshape(len(contexts), len(PART_NAMES))
    return contexts.space.normalise(contexts.columns["kind"], acts, first_allowed(contexts, SEND_SLOT))


def uniform_probabilities(contexts: ContextBatch, actions: NDArray[np.int64]) -> NDArray[np.float64]:
    """Probability of each effective action under "uniform over the allowed options of each part, independently".

    The product over parts of ``1 / (allowed options)``, the send slot left out where the channel is "none"
    (every slot gives the same effective action); 0 where an option is masked. Shape ``(B,)``.
    """
    acts = np.asarray(actions, dtype=np.int64).reshape(len(contexts), len(PART_NAMES))
    rows = np.arange(len(contexts))
    p = np.ones(len(contexts))
    for part in range(len(PART_NAMES)):
        mask = contexts.part_mask(part)
        chosen = acts[:, part]
        inside = (chosen >= 0) & (chosen < mask.shape[1])
        allowed = inside & mask[rows, np.clip(chosen, 0, mask.shape[1] - 1)]
        factor = np.where(allowed, 1.0 / np.maximum(mask.sum(axis=1), 1), 0.0)
        if part == SEND_SLOT:
            factor = np.where(acts[:, CHANNEL] == 0, 1.0, factor)
        p *= factor
    return p


def uniform_draw(contexts: ContextBatch, rng: np.random.Generator) -> NDArray[np.int64]:
    """One effective action per row, uniform over the allowed options of each part (:func:`uniform_probabilities`),
    from ``rng``'s next ``parts x B`` uniforms (part by part)."""
    return uniform_choice(contexts, rng.random((len(PART_NAMES), len(contexts))).T)


def uniform_choice(contexts: ContextBatch, units: NDArray[np.float64]) -> NDArray[np.int64]:
    """:func:`uniform_draw` from given uniforms ``units`` in [0, 1), shape ``(B, parts)``: part ``j`` of row ``i``
    takes the ``floor(units[i, j] * allowed)``-th allowed option (so keyed draws give the same action wherever the
    same uniforms meet the same masks)."""
    n = len(contexts)
    actions = np.zeros((n, len(PART_NAMES)), dtype=np.int64)
    for part in range(len(PART_NAMES)):
        mask = contexts.part_mask(part)
        k = np.floor(units[:, part] * mask.sum(axis=1)).astype(np.int64)  # the k-th allowed option
        actions[:, part] = np.argmax(np.cumsum(mask, axis=1) > k[:, None], axis=1)
    return effective_actions(contexts, actions)


# -- the distributions known here, of policy classes that do not state them themselves --------------------------
def _random_probabilities(policy: object, contexts: ContextBatch, actions: NDArray[np.int64]) -> NDArray[np.float64]:
    return uniform_probabilities(contexts, actions)


def _epsilon_greedy_probabilities(
    policy: object, contexts: ContextBatch, actions: NDArray[np.int64]
) -> NDArray[np.float64]:
    """``agents.bandits.EpsilonGreedy``: per active head, ``epsilon / m + (1 - epsilon) [arm == greedy]``."""
    from agents.bandits import EpsilonGreedy
    from agents.bandits.base import masked_argmax
    from agents.bandits.design import design_matrix
    from agents.bandits.heads import first_allowed_options

    assert isinstance(policy, EpsilonGreedy)
    policy._ensure_space(contexts.space)  # (the heads exist once the action space is known)
    X = design_matrix(contexts, policy.config.feature_set)
    kinds = np.asarray(contexts.columns["kind"], dtype=np.intp)
    first = first_allowed_options(contexts.mask, contexts.space)
    eps = policy.current_epsilon
    p = np.ones(len(contexts))
    for head in policy.heads:
        rows = np.flatnonzero(head.active_at[kinds])
        if not len(rows):
            continue
        available = head.available(contexts.mask[rows], kinds[rows], first[rows])
        greedy = masked_argmax(policy.arms[head.name].mean(X[rows]), available)
        arm = head.arms_of(actions[rows])
        ok = (arm >= 0) & available[np.arange(len(rows)), np.maximum(arm, 0)]
        count = available.sum(axis=1)
        p[rows] *= np.where(ok, eps / count + (1.0 - eps) * (arm == greedy), 0.0)
    return p


def _known() -> dict[type, Callable[[object, ContextBatch, NDArray[np.int64]], NDArray[np.float64]]]:
    from agents.bandits import EpsilonGreedy
    from agents.reference import RandomPolicy

    return {RandomPolicy: _random_probabilities, EpsilonGreedy: _epsilon_greedy_probabilities}


def policy_probabilities(
    policy: Policy, contexts: ContextBatch, actions: NDArray[np.int64]
) -> NDArray[np.float64] | None:
    """The exact probability of each effective action under ``policy``, or ``None`` if it is not known here."""
    if isinstance(policy, GivesProbabilities):
        return np.asarray(policy.action_probabilities(contexts, actions), dtype=np.float64)
    fn = _known().get(type(policy))
    return None if fn is None else fn(policy, contexts, actions)


def probability_source(policy: Policy, contexts: ContextBatch) -> ProbabilitySource:
    """How :func:`candidate_on_log` obtains the policy's probabilities (see the module docstring).

    Raises:
        ValueError: The policy reads the simulator's ground truth (no log has it).
    """
    if policy.requires_ground_truth:
        raise ValueError(
            f"policy {policy.name!r} reads the simulator's ground truth, which no event log holds; "
            "it cannot be evaluated off-policy"
        )
    if isinstance(policy, GivesProbabilities) or type(policy) in _known():
        return "exact"
    if not len(contexts):
        return "deterministic"
    return "deterministic" if bool(np.all(policy.decide_batch(contexts).propensity == 1.0)) else "sampled"


@dataclass(frozen=True)
class CandidateOnLog:
    """What a candidate does on ``n`` logged contexts.

    Attributes:
        source: How ``target_prob`` was obtained (:data:`ProbabilitySource`).
        target_prob: The candidate's probability of each logged action, shape ``(n,)`` (for ``sampled``, an
            unbiased estimate).
        support: Actions the candidate takes in each context, shape ``(n, K, 5)`` (effective actions).
        weights: Their weights, shape ``(n, K)``, each row summing to 1.
    """

    source: ProbabilitySource
    target_prob: NDArray[np.float64]
    support: NDArray[np.int64]
    weights: NDArray[np.float64]

    def take(self, rows: NDArray[np.int64]) -> CandidateOnLog:
        """The candidate on the contexts at ``rows``."""
        return CandidateOnLog(self.source, self.target_prob[rows], self.support[rows], self.weights[rows])


def candidate_on_log(
    policy: Policy,
    contexts: ContextBatch,
    logged_actions: NDArray[np.int64],
    *,
    rng: np.random.Generator,
    samples: int = 16,
) -> CandidateOnLog:
    """The candidate's probability of each logged action and its own actions, on the rebuilt contexts.

    Args:
        policy: The candidate (never updated).
        contexts: The logged decisions' contexts, ``n`` rows (:func:`regsim.replay.contexts_from_log`).
        logged_actions: The logged (effective) actions, shape ``(n, 5)``.
        rng: Draws of the support of a stochastic candidate with exact probabilities (uniform parts of an
            :class:`~agents.ope.behaviour.EpsilonMixture`); a policy's own draws use its own stream.
        samples: Draws per context of a stochastic candidate (the support; and the estimate of ``sampled``).

    Raises:
        ValueError: ``samples < 1``; the candidate reads ground truth; ``logged_actions`` is misshapen.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    n = len(contexts)
    logged = np.asarray(logged_actions, dtype=np.int64)
    if logged.shape != (n, len(PART_NAMES)):
        raise ValueError(f"logged_actions must have shape {(n, len(PART_NAMES))}, got {logged.shape}")
    source = probability_source(policy, contexts)
    if source == "exact":
        prob = policy_probabilities(policy, contexts, logged)
        assert prob is not None
        support_of = getattr(policy, "action_support", None)
        if callable(support_of):
            support, weights = support_of(contexts, rng, samples)
        else:
            support, weights = _draws(policy, contexts, samples)
        return CandidateOnLog(source, np.clip(prob, 0.0, 1.0), support, weights)
    if source == "deterministic":
        own = effective_actions(contexts, policy.decide_batch(contexts).actions)
        return CandidateOnLog(
            source, np.all(own == logged, axis=1).astype(np.float64), own[:, None, :], np.ones((n, 1))
        )
    support, weights = _draws(policy, contexts, samples)
    hits = np.all(support == logged[:, None, :], axis=2).mean(axis=1)
    return CandidateOnLog(source, hits.astype(np.float64), support, weights)


def _draws(policy: Policy, contexts: ContextBatch, samples: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    draws = [effective_actions(contexts, policy.decide_batch(contexts).actions) for _ in range(samples)]
    support = np.stack(draws, axis=1) if draws else np.zeros((len(contexts), 0, len(PART_NAMES)), dtype=np.int64)
    return support, np.full((len(contexts), samples), 1.0 / samples)
