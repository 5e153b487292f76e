"""LinUCB with disjoint linear models (``linucb``)."""

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

__all__ = ["LinUCB", "LinUCBConfig"]


@dataclass(frozen=True)
class LinUCBConfig(BanditConfig):
    """Hyperparameters of :class:`LinUCB`."""

    alpha: float = 1.0
    """Width of the confidence bound, in standard errors of the estimate (>= 0)."""
    ridge: float = 1.0
    """Ridge penalty of the per-arm regressions (> 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha}")
        self._check_positive("ridge", self.ridge)


@register("linucb")
class LinUCB(LinearBandit):
    """LinUCB (disjoint models): per head, the available arm of highest upper confidence bound.

    Li, Chu, Langford & Schapire (2010), "A contextual-bandit approach to personalized news article
    recommendation", Algorithm 1. With ``A_k``, ``theta_k`` the ridge statistics of arm ``k``
    (:mod:`agents.bandits.linear`) and ``x`` the design row, each head picks::

        argmax over available k of   x' theta_k + alpha * sqrt(x' A_k^-1 x)

    (ties to the lowest arm index). ``sqrt(x' A_k^-1 x)`` is the standard error of the estimate for unit
    reward noise, so ``alpha`` should grow with the noise's standard deviation. The world's default reward
    (euros / 100) has a standard deviation of about 0.6 per decision in the default world; in the tests'
    synthetic problem, where each head also sees the other heads' contributions as noise, ``alpha = 1``
    leaves a few contexts on a second-best arm and ``alpha = 2`` does not. The choice is a deterministic
    function of the context and the statistics, so the propensity is 1.0; to log data for off-policy
    evaluation, use a stochastic bandit instead. Scoring is ``O(B * arms * d^2)`` in BLAS; see
    ``benchmarks/bench_bandits.py`` for decisions per second.

    Args:
        alpha: Width of the confidence bound in standard errors (0 = greedy on the ridge estimate).
        ridge: Ridge penalty of the per-arm regressions.
        feedback_window_days: Outcome window of a decision's reward (days).
        censored: ``"drop"`` (default) or ``"use"`` decisions whose window was cut short.
        feature_set: ``"compact"`` (default) or ``"full"`` (:mod:`agents.bandits.design`).
        seed: Seed of the exploration stream (LinUCB draws nothing; kept for a uniform interface).

    Version History:
        * v1: Initial version.
    """

    name: ClassVar[str] = "linucb"
    version: ClassVar[str] = "1"
    config_class: ClassVar[type[BanditConfig]] = LinUCBConfig
    config: LinUCBConfig

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        ridge: float = 1.0,
        feedback_window_days: float = 14.0,
        censored: CensoredHandling = "drop",
        feature_set: FeatureSet = "compact",
        seed: int = 0,
    ) -> None:
        super().__init__(
            LinUCBConfig(
                alpha=alpha,
                ridge=ridge,
                feedback_window_days=feedback_window_days,
                censored=censored,
                feature_set=feature_set,
                seed=seed,
            )
        )

    def _ridge(self) -> float:
        return self.config.ridge

    def _choose(
        self, arms: RidgeArms, X: NDArray[np.float64], available: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        score = arms.mean(X)
        if self.config.alpha > 0:
            score += self.config.alpha * np.sqrt(arms.variance(X))
        return masked_argmax(score, available), np.ones(X.shape[0])
