"""Epsilon-greedy over per-arm ridge estimates (``epsilon-greedy``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.bandits.base import BanditConfig, CensoredHandling, LinearBandit, masked_argmax
from agents.bandits.design import FeatureSet
from agents.bandits.linear import RidgeArms
from agents.registry import register

__all__ = ["EpsilonGreedy", "EpsilonGreedyConfig"]


@dataclass(frozen=True)
class EpsilonGreedyConfig(BanditConfig):
    """Hyperparameters of :class:`EpsilonGreedy`."""

    epsilon: float = 0.1
    """Probability of exploring, per head and decision (in [0, 1])."""
    epsilon_decay_decisions: float | None = None
    """Decay scale tau (decisions): epsilon_t = epsilon * tau / (tau + t) after t decisions; None: constant."""
    ridge: float = 1.0
    """Ridge penalty of the per-arm regressions (> 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.epsilon) and 0.0 <= self.epsilon <= 1.0):
            raise ValueError(f"epsilon must be a probability in [0, 1], got {self.epsilon}")
        if self.epsilon_decay_decisions is not None:
            self._check_positive("epsilon_decay_decisions", self.epsilon_decay_decisions)
        self._check_positive("ridge", self.ridge)


@register("epsilon-greedy")
class EpsilonGreedy(LinearBandit):
    """Epsilon-greedy linear bandit: per head, a random available arm with probability epsilon, else the best.

    "The best" is the available arm of highest ridge-estimated reward (:mod:`agents.bandits.linear`). Each
    head (:mod:`agents.bandits.heads`) explores independently. With ``epsilon_t`` the exploration rate of the
    batch, ``g`` the greedy arm and ``m`` the number of available arms of a row, the head gives arm ``a``
    probability ``epsilon_t / m + (1 - epsilon_t) * [a == g]`` -- exact, and the decision's propensity is its
    product over the active heads. A constant epsilon keeps exploring forever (regret linear in time, with
    slope epsilon times the mean gap: right for a drifting world); ``epsilon_decay_decisions`` makes it decay
    as ``1/t`` (Auer, Cesa-Bianchi & Fischer 2002, "epsilon_n-greedy"), counted in decisions taken.

    Args:
        epsilon: Probability of exploring, per head and decision.
        epsilon_decay_decisions: Decay scale ``tau`` in decisions: ``epsilon_t = epsilon * tau / (tau + t)``
            after ``t`` decisions (constant within a batch); ``None`` keeps epsilon constant.
        ridge: Ridge penalty of the per-arm regressions.
        feedback_window_days: Outcome window of a decision's reward (days).
        censored: ``"drop"`` (default) or ``"use"`` decisions whose window was cut short.
        feature_set: ``"compact"`` (default) or ``"full"`` (:mod:`agents.bandits.design`).
        seed: Seed of the exploration stream.

    Version History:
        * v1: Initial version.
    """

    name: ClassVar[str] = "epsilon-greedy"
    version: ClassVar[str] = "1"
    config_class: ClassVar[type[BanditConfig]] = EpsilonGreedyConfig
    config: EpsilonGreedyConfig

    def __init__(
        self,
        *,
        epsilon: float = 0.1,
        epsilon_decay_decisions: float | None = None,
        ridge: float = 1.0,
        feedback_window_days: float = 14.0,
        censored: CensoredHandling = "drop",
        feature_set: FeatureSet = "compact",
        seed: int = 0,
    ) -> None:
        super().__init__(
            EpsilonGreedyConfig(
                epsilon=epsilon,
                epsilon_decay_decisions=epsilon_decay_decisions,
                ridge=ridge,
                feedback_window_days=feedback_window_days,
                censored=censored,
                feature_set=feature_set,
                seed=seed,
            )
        )

    @property
    def current_epsilon(self) -> float:
        """The exploration rate of the next batch."""
        tau = self.config.epsilon_decay_decisions
        eps = self.config.epsilon
        return eps if tau is None else eps * tau / (tau + self.decisions)

    def _ridge(self) -> float:
        return self.config.ridge

    def _choose(
        self, arms: RidgeArms, X: NDArray[np.float64], available: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        n = X.shape[0]
        eps = self.current_epsilon
        greedy = masked_argmax(arms.mean(X), available)
        count = available.sum(axis=1)
        explore = self.rng.random(n) < eps
        # The k-th available arm, k uniform in [0, count): a vectorised draw over rows (as agents.reference).
        k = np.floor(self.rng.random(n) * count).astype(np.int64)
        uniform = np.argmax(np.cumsum(available, axis=1) > k[:, None], axis=1).astype(np.int64)
        arm = np.where(explore, uniform, greedy)
        return arm, eps / count + (1.0 - eps) * (arm == greedy)
