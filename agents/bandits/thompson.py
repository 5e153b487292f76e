"""Linear Thompson sampling with Monte Carlo propensities (``linear-ts``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.bandits.base import BanditConfig, CensoredHandling, LinearBandit, masked_argmax
from agents.bandits.design import FeatureSet
from agents.bandits.linear import RidgeArms
from agents.registry import register

__all__ = ["LinearTS", "LinearTSConfig", "win_probability"]

#: Largest number of normal draws held at once while estimating propensities (memory bound, ~4 MiB).
_CHUNK_DRAWS = 1 << 20


@dataclass(frozen=True)
class LinearTSConfig(BanditConfig):
    """Hyperparameters of :class:`LinearTS`."""

    prior_variance: float = 1.0
    """Prior variance sigma0^2 of every reward coefficient (> 0)."""
    noise_variance: float = 1.0
    """Variance sigma^2 of a reward around its mean (> 0); scales the posterior (reward units squared)."""
    propensity_samples: int = 256
    """Posterior draws per row for the Monte Carlo propensity estimate (>= 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive("prior_variance", self.prior_variance)
        self._check_positive("noise_variance", self.noise_variance)
        if isinstance(self.propensity_samples, bool) or not (
            isinstance(self.propensity_samples, int) and self.propensity_samples >= 1
        ):
            raise ValueError(f"propensity_samples must be an integer >= 1, got {self.propensity_samples!r}")


@register("linear-ts")
class LinearTS(LinearBandit):
    """Linear Thompson sampling: per head, the available arm whose reward drawn from the posterior is highest.

    Bayesian linear regression per arm with prior ``theta_k ~ N(0, sigma0^2 I)`` and Gaussian noise of
    variance ``sigma^2``; the posterior is ``N(theta_hat_k, sigma^2 A_k^-1)`` with ``A_k = ridge * I + X_k' X_k``,
    ``ridge = sigma^2 / sigma0^2`` and ``theta_hat_k = A_k^-1 X_k' r_k`` (Agrawal & Goyal 2013, "Thompson
    sampling for contextual bandits with linear payoffs", with ``v^2 = sigma^2``). For a row with design
    ``x``, drawing ``theta_k`` and scoring ``x' theta_k`` is the same in distribution as drawing the score
    directly from ``N(x' theta_hat_k, sigma^2 x' A_k^-1 x)``, which is what is done: one independent draw per
    row and arm, so rows of a batch explore independently, and no ``d x d`` Cholesky factor is needed.

    Propensities: the probability that an arm has the highest draw has no closed form, so it is *estimated
    by Monte Carlo*, as Open Bandit Pipeline does for its Thompson sampling policies
    (``obp.policy.BernoulliTS.compute_batch_action_dist(n_sim=...)``): ``propensity_samples`` (default 256)
    further independent draws of all arms' scores per row, vectorised over rows, draws and arms, and the
    fraction of them in which the chosen arm wins. An arm that wins none of them (it was chosen, so its
    probability is positive, but below about ``1 / propensity_samples``) is reported with ``1 /
    propensity_samples``, so that a propensity is never 0. The standard error of an estimate ``p`` is
    ``sqrt(p (1 - p) / propensity_samples)``; the decision's propensity is the product over the active heads.
    The estimate costs ``rows x propensity_samples x arms`` normal draws (float32), which dominates the cost
    of a decision: a few thousand decisions/s at batch 1,024 with the default 256 samples and 46 contact arms,
    against several 100,000 for LinUCB (``benchmarks/bench_bandits.py``).

    Args:
        prior_variance: Prior variance ``sigma0^2`` of every reward coefficient.
        noise_variance: Reward noise variance ``sigma^2``; larger means more exploration.
        propensity_samples: Posterior draws per row for the propensity estimate.
        feedback_window_days: Outcome window of a decision's reward (days).
        censored: ``"drop"`` (default) or ``"use"`` decisions whose window was cut short.
        feature_set: ``"compact"`` (default) or ``"full"`` (:mod:`agents.bandits.design`).
        seed: Seed of the exploration stream (the decision draws and the propensity draws).

    Version History:
        * v1: Initial version.
    """

    name: ClassVar[str] = "linear-ts"
    version: ClassVar[str] = "1"
    config_class: ClassVar[type[BanditConfig]] = LinearTSConfig
    config: LinearTSConfig

    def __init__(
        self,
        *,
        prior_variance: float = 1.0,
        noise_variance: float = 1.0,
        propensity_samples: int = 256,
        feedback_window_days: float = 14.0,
        censored: CensoredHandling = "drop",
        feature_set: FeatureSet = "compact",
        seed: int = 0,
    ) -> None:
        super().__init__(
            LinearTSConfig(
                prior_variance=prior_variance,
                noise_variance=noise_variance,
                propensity_samples=propensity_samples,
                feedback_window_days=feedback_window_days,
                censored=censored,
                feature_set=feature_set,
                seed=seed,
            )
        )

    def _ridge(self) -> float:
        return self.config.noise_variance / self.config.prior_variance

    def _choose(
        self, arms: RidgeArms, X: NDArray[np.float64], available: NDArray[np.bool_]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        mean = arms.mean(X)
        sd = np.sqrt(self.config.noise_variance * arms.variance(X))
        arm = masked_argmax(mean + sd * self.rng.standard_normal(mean.shape), available)
        return arm, self._propensity(mean, sd, available, arm)

    def _propensity(
        self,
        mean: NDArray[np.float64],
        sd: NDArray[np.float64],
        available: NDArray[np.bool_],
        arm: NDArray[np.int64],
    ) -> NDArray[np.float64]:
        """Monte Carlo estimate of each row's probability of choosing ``arm`` (see the class docstring)."""
        return win_probability(mean, sd, available, arm, self.config.propensity_samples, self.rng)


def win_probability(
    mean: NDArray[np.float64],
    sd: NDArray[np.float64],
    available: NDArray[np.bool_],
    arm: NDArray[np.int64],
    samples: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Monte Carlo estimate of each row's probability that ``arm`` wins a Thompson draw, at least ``1/samples``.

    Args:
        mean: Posterior means, shape ``(n, k)``.
        sd: Posterior standard deviations, shape ``(n, k)``.
        available: Allowed arms, shape ``(n, k)``; the others never win.
        arm: The arm chosen per row, shape ``(n,)``.
        samples: Draws per row (the estimate's standard error is about ``1/sqrt(samples)``).
        rng: The generator the draws come from.

    Returns:
        The estimated probabilities, shape ``(n,)``.
    """
    n, k = mean.shape
    # Unavailable arms get mean -inf, so that they never win; float32 draws halve the cost of the
    # estimate (its standard error, ~1/sqrt(m), dwarfs float32 rounding).
    centre = np.where(available, mean, -np.inf).astype(np.float32)
    scale = sd.astype(np.float32)
    wins = np.zeros(n, dtype=np.int64)
    step = max(1, _CHUNK_DRAWS // (samples * k))
    for lo in range(0, n, step):  # chunks of rows, to bound memory; each chunk is one vectorised draw
        hi = min(n, lo + step)
        draws = rng.standard_normal((hi - lo, samples, k), dtype=np.float32)
        draws *= scale[lo:hi, None, :]
        draws += centre[lo:hi, None, :]
        wins[lo:hi] = (np.argmax(draws, axis=2) == arm[lo:hi, None]).sum(axis=1)
    return np.asarray(np.maximum(wins, 1) / samples, dtype=np.float64)
