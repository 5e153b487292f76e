"""A synthetic contextual-bandit problem with a known best arm per context and head (tests only).

The problem has ``n_contexts`` fixed decision contexts (hand-made rows through the world's rules, so that masks
are real ones), covering every decision kind, in a small action space (2 send slots, 2 due days, 2 deferrals,
2 reductions: 11 contact arms, 3 due-day arms, 4 relief arms). For every head ``h`` active at a context ``c``
one available arm is the best, worth 1.0; the others are worth ``U(0, 0.5)``, so every gap is at least 0.5.
Rewards are *realisable* by the bandits' linear model: the mean table ``mu_h[c, a]`` is reproduced exactly by
``x_c' theta*_{h,a}`` with ``x_c`` the bandits' design row (``agents.bandits.design``), which needs the design
rows of the contexts to be linearly independent (checked).

A decision's reward is the sum over its active heads of ``mu_h[c, a_h]`` plus Gaussian noise, one scalar per
decision as the world gives it; its regret is the sum of the heads' gaps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agents.bandits import LinearBandit, build_heads
from agents.bandits.design import design_matrix
from agents.bandits.heads import Head, first_allowed_options
from regsim import ContextBatch, DecisionKind, Feedback, WorldConfig
from tests.regsim.test_rules import make_batch

__all__ = ["SMALL_SPACE", "BanditRun", "SyntheticProblem", "play"]

#: Decision-config overrides of the problem's small action space.
SMALL_SPACE: dict[str, Any] = {
    "decisions": {
        "send_slots": [{"day_offset": 0, "hour": 9}, {"day_offset": 0, "hour": 19}],
        "due_day_options": [1, 15],
        "deferral_options": [0, 7],
        "reduction_options": [0.0, 0.25],
    }
}


def _rows(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        kind = DecisionKind(i % len(DecisionKind))
        due = int(rng.integers(0, 4))
        paid = int(rng.integers(0, 6))
        overdue_kind = kind in (DecisionKind.MISSED, DecisionKind.FOLLOW_UP)
        rows.append(
            {
                "kind": int(kind),
                "day_of_month": int(rng.integers(1, 29)),
                "days_to_due": int(rng.integers(-14, -1)) if overdue_kind else int(rng.integers(1, 28)),
                "installment_eur": float(rng.uniform(20.0, 300.0)),
                "n_installments": 12,
                "installments_paid": paid,
                "installments_due": due + paid,
                "on_time": paid,
                "missed": int(rng.integers(0, 2)) if overdue_kind else 0,
                "overdue": int(rng.integers(1, 3)) if overdue_kind else 0,
                "deferrals": int(rng.integers(0, 2)),
                "days_since_payment": -1 if rng.random() < 0.3 else int(rng.integers(0, 60)),
                "prior_late_share": float(rng.uniform(0, 1)),
                "prior_pay_dom": int(rng.choice([-1, int(rng.integers(1, 29))])),
                "contacts_7d": int(rng.integers(0, 2)),
                "days_since_contact": int(rng.integers(-1, 20)),
                "opted_out": (rng.random(5) < 0.1).tolist(),
            }
        )
    return rows


@dataclass
class SyntheticProblem:
    """The problem (see the module docstring).

    Args:
        n_contexts: Number of fixed contexts (at most the design's rank).
        noise: Standard deviation of the reward noise.
        seed: Seed of the problem (contexts, best arms, mean table).
    """

    n_contexts: int = 20
    noise: float = 0.1
    seed: int = 0
    contexts: ContextBatch = field(init=False)
    heads: tuple[Head, ...] = field(init=False)
    mu: dict[str, NDArray[np.float64]] = field(init=False)
    """Per head, the mean reward of every arm at every context, shape ``(n_contexts, n_arms)``."""
    best: dict[str, NDArray[np.int64]] = field(init=False)
    """Per head, the best arm at every context (-1 where the head is inactive)."""

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        config = WorldConfig().with_overrides(**SMALL_SPACE)
        self.contexts, _ = make_batch(_rows(self.n_contexts, rng), config)
        X = design_matrix(self.contexts, "compact")
        rank = np.linalg.matrix_rank(X)
        assert rank == self.n_contexts, f"design rank {rank} < {self.n_contexts} contexts: not realisable"
        self.heads = build_heads(self.contexts.space)
        kinds = self.contexts.columns["kind"].astype(np.intp)
        first = first_allowed_options(self.contexts.mask, self.contexts.space)
        self.mu, self.best = {}, {}
        for head in self.heads:
            mu = rng.uniform(0.0, 0.5, size=(self.n_contexts, head.n_arms))
            available = head.available(self.contexts.mask, kinds, first)
            active = head.active_at[kinds]
            best = np.full(self.n_contexts, -1, dtype=np.int64)
            for c in np.flatnonzero(active):
                best[c] = rng.choice(np.flatnonzero(available[c]))
                mu[c, best[c]] = 1.0
            # Realisable: theta* solves X theta* = mu exactly (X has full row rank), so x_c' theta*_a = mu[c, a].
            theta = np.linalg.lstsq(X, mu, rcond=None)[0]
            np.testing.assert_allclose(X @ theta, mu, atol=1e-8)
            self.mu[head.name], self.best[head.name] = mu, best

    def evaluate(self, rows: NDArray[np.intp], actions: NDArray[np.int64]) -> tuple[NDArray[np.float64], float]:
        """Mean reward of each decision (actions taken at contexts ``rows``) and their total regret."""
        kinds = self.contexts.columns["kind"].astype(np.intp)[rows]
        mean = np.zeros(len(rows))
        regret = 0.0
        for head in self.heads:
            active = head.active_at[kinds]
            arms = head.arms_of(actions[active])
            mu = self.mu[head.name]
            got = mu[rows[active], arms]
            mean[active] += got
            regret += float((mu[rows[active], self.best[head.name][rows[active]]] - got).sum())
        return mean, regret

    def greedy_accuracy(self, policy: LinearBandit) -> float:
        """Share of (context, active head) pairs at which the policy's greedy choice is the best arm."""
        actions = policy.exploit(self.contexts).actions
        hits = total = 0
        for head in self.heads:
            best = self.best[head.name]
            active = best >= 0
            hits += int((head.arms_of(actions[active]) == best[active]).sum())
            total += int(active.sum())
        return hits / total


@dataclass
class BanditRun:
    """A bandit played on the problem for some rounds, with feedback ``delay`` rounds late."""

    regret: NDArray[np.float64]
    """Regret of each round."""
    accuracy: float
    """Final greedy accuracy (:meth:`SyntheticProblem.greedy_accuracy`)."""


def play(
    problem: SyntheticProblem, policy: LinearBandit, rounds: int, batch: int = 16, delay: int = 0, seed: int = 1
) -> BanditRun:
    """Play ``rounds`` rounds of ``batch`` decisions each; feedback of round ``t`` arrives after round ``t + delay``."""
    rng = np.random.default_rng(seed)
    pending: deque[Feedback] = deque()
    regret = np.zeros(rounds)
    next_id = 0
    for t in range(rounds):
        rows = rng.integers(0, problem.n_contexts, batch)
        contexts = problem.contexts.take(rows)
        decisions = policy.decide_batch(contexts)
        mean, regret[t] = problem.evaluate(rows, decisions.actions)
        rewards = mean + problem.noise * rng.standard_normal(batch)
        pending.append(
            Feedback(
                decision_ids=np.arange(next_id, next_id + batch),
                contexts=contexts,
                actions=decisions.actions,
                propensity=decisions.propensity,
                rewards=rewards,
                censored=np.zeros(batch, dtype=bool),
            )
        )
        next_id += batch
        while len(pending) > delay:
            policy.update(pending.popleft())
    return BanditRun(regret=regret, accuracy=problem.greedy_accuracy(policy))
