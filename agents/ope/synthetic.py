"""A synthetic logged bandit with a known true value, for tests, benchmarks and checks of the estimators.

Arrangements ``c = 1..C`` have :math:`1 + \\mathrm{Poisson}(\\bar m - 1)` decisions each and a shared effect
:math:`u_c \\sim N(0, \\sigma_u^2)` (so decisions within an arrangement are correlated, as in the real log).
Decision ``i`` of arrangement ``c`` has features :math:`x_i \\sim N(0, I_d)` and ``K`` actions with expected reward
:math:`\\mu(x_i, a) = u_c + b_a + x_i^\\top \\beta_a`; the logged reward adds :math:`N(0, \\sigma^2)` noise. The
logging policy is a softmax of :math:`x^\\top \\theta_0` mixed with ``epsilon`` uniform exploration (optionally
never taking the last action: failed support); the candidate is a sharper softmax of :math:`x^\\top \\theta_1`.

The true value on the log's contexts is :math:`V = \\frac{1}{n} \\sum_i \\sum_a \\pi(a|x_i) \\mu(x_i, a)`, the
quantity every unbiased estimator targets given the contexts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agents.ope.inputs import BanditFeedback

__all__ = ["SyntheticBandit", "synthetic_bandit"]


@dataclass(frozen=True)
class SyntheticBandit:
    """A synthetic log and its ground truth.

    Attributes:
        feedback: The logged decisions, with ``q_logged``/``q_target`` from the exact expected reward (shifted
            by ``model_bias``) when ``with_model``.
        true_value: The candidate's true mean per-decision reward on the log's contexts.
        features: Per-decision features, shape ``(n, d)``.
        action: Logged action, shape ``(n,)``.
        logging_probs: :math:`\\pi_0(\\cdot|x_i)`, shape ``(n, K)``.
        target_probs: :math:`\\pi(\\cdot|x_i)`, shape ``(n, K)``.
        expected_reward: :math:`\\mu(x_i, \\cdot)`, shape ``(n, K)``.
    """

    feedback: BanditFeedback
    true_value: float
    features: NDArray[np.float64]
    action: NDArray[np.int64]
    logging_probs: NDArray[np.float64]
    target_probs: NDArray[np.float64]
    expected_reward: NDArray[np.float64]


def _softmax(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def synthetic_bandit(
    rng: np.random.Generator,
    *,
    n_clusters: int = 1000,
    mean_decisions: float = 10.0,
    n_actions: int = 8,
    dim: int = 5,
    epsilon: float = 0.2,
    cluster_sd: float = 1.0,
    noise_sd: float = 1.0,
    target_sharpness: float = 2.0,
    unsupported_action: bool = False,
    deterministic_logger: bool = False,
    with_model: bool = True,
    model_bias: float = 0.0,
) -> SyntheticBandit:
    """Draw a synthetic log (see the module docstring).

    Args:
        rng: The generator of every draw.
        n_clusters: Number of arrangements ``C``.
        mean_decisions: Mean number of decisions per arrangement (>= 1).
        n_actions: Number of actions ``K`` (>= 2).
        dim: Number of features ``d``.
        epsilon: Logger's uniform exploration share in [0, 1].
        cluster_sd: Standard deviation of the arrangement effect :math:`u_c`.
        noise_sd: Standard deviation of the reward noise.
        target_sharpness: Scale of the candidate's softmax scores (larger: closer to deterministic).
        unsupported_action: If True the logger never takes the last action (the candidate still does).
        deterministic_logger: If True the logger takes its argmax with probability 1.
        with_model: Whether to fill ``q_logged``/``q_target`` from :math:`\\mu + ` ``model_bias``.
        model_bias: Constant error of that reward model (0: exact).
    """
    if n_actions < 2:
        raise ValueError(f"n_actions must be >= 2, got {n_actions}")
    if mean_decisions < 1.0:
        raise ValueError(f"mean_decisions must be >= 1, got {mean_decisions}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    sizes = 1 + rng.poisson(mean_decisions - 1.0, size=n_clusters)
    cluster = np.repeat(np.arange(n_clusters, dtype=np.int64), sizes)
    n = len(cluster)
    effect = rng.normal(0.0, cluster_sd, size=n_clusters)[cluster]
    features = rng.normal(size=(n, dim))
    beta = rng.normal(0.0, 0.5, size=(dim, n_actions))
    intercept = rng.normal(0.0, 0.5, size=n_actions)
    expected = effect[:, None] + intercept[None, :] + features @ beta
    scores0 = features @ rng.normal(size=(dim, n_actions))
    available = np.ones(n_actions, dtype=bool)
    if unsupported_action:
        available[-1] = False
    if deterministic_logger:
        logging = np.zeros((n, n_actions))
        logging[np.arange(n), np.argmax(np.where(available, scores0, -np.inf), axis=1)] = 1.0
    else:
        greedy = _softmax(np.where(available, scores0, -np.inf))
        uniform = available / available.sum()
        logging = (1.0 - epsilon) * greedy + epsilon * uniform[None, :]
    target = _softmax(target_sharpness * (features @ beta + intercept[None, :]) / max(1e-9, float(beta.std())))
    cumulative = np.cumsum(logging, axis=1)
    action = np.minimum((cumulative < rng.random(n)[:, None]).sum(axis=1), n_actions - 1)
    action = np.where(logging[np.arange(n), action] > 0.0, action, np.argmax(logging, axis=1)).astype(np.int64)
    rows = np.arange(n)
    reward = expected[rows, action] + rng.normal(0.0, noise_sd, size=n)
    unsupported = (target * (logging == 0.0)).sum(axis=1)
    q = expected + model_bias
    feedback = BanditFeedback(
        cluster=cluster,
        reward=reward,
        pscore=logging[rows, action],
        target_prob=target[rows, action],
        q_logged=q[rows, action] if with_model else None,
        q_target=(target * q).sum(axis=1) if with_model else None,
        unsupported_mass=unsupported,
    )
    return SyntheticBandit(
        feedback=feedback,
        true_value=float((target * expected).sum(axis=1).mean()),
        features=features,
        action=action,
        logging_probs=logging,
        target_probs=target,
        expected_reward=expected,
    )
