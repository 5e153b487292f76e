"""Per-arm ridge regression of reward on features: the statistics every bandit of this package keeps.

For each arm ``k`` of a head, with ``X_k`` the design rows of the decisions that chose it and ``r_k`` their
rewards (Li et al. 2010, "A contextual-bandit approach to personalized news article recommendation", the
"disjoint" model of Algorithm 1)::

    A_k = ridge * I + X_k' X_k          (d x d)
    b_k = X_k' r_k                      (d,)
    m = (r_bar, 0, ..., 0)              (d,)     prior mean: the intercept at the head's mean reward so far
    theta_k = A_k^-1 (b_k + ridge * m)  (d,)     ridge estimate of the arm's reward coefficients
    mean_k(x) = x' theta_k                       estimated reward of the arm at context x
    var_k(x) = x' A_k^-1 x                       its uncertainty (times the noise variance)

The prior mean ``m`` shrinks every arm towards the average reward ``r_bar`` of all the head's observations
(an empirical-Bayes prior on the intercept; design column 0 is the bias) instead of towards 0. Rewards are
euros collected, mostly positive and, since one reward is shared by all heads of a decision, offset by the
other heads' contributions; shrinking towards 0 would make every arm without data look worse than the arms
already tried, and greedy or upper-confidence choices would then rarely try it. With ``m`` an arm without
data is expected to be average, and LinUCB's bonus (or Thompson sampling's spread) makes it worth a try.
``r_bar`` changes with every update, so every arm's ``theta`` is recomputed then (``O(arms * d^2)``).

Updates accumulate ``A`` and ``b`` for a whole batch of feedback and then re-invert the touched arms' ``A``
(one batched ``numpy.linalg.inv``), rather than applying Sherman-Morrison rank-one updates row by row:
feedback arrives in daily batches of hundreds to thousands of rows, a rank-one loop would be a Python loop
per row, and repeated rank-one updates accumulate rounding error in ``A^-1`` that a fresh inverse does not.
The cost per update is ``O(n d^2 + arms_touched * d^3)``.

``A^-1`` and ``theta`` are kept (and saved) alongside ``A`` and ``b`` so that a restored model scores bit for
bit as the saved one did.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["RidgeArms"]


class RidgeArms:
    """Ridge regressions of reward on a ``dim``-column design, one per arm.

    Args:
        n_arms: Number of arms.
        dim: Number of design columns (including the bias).
        ridge: Ridge penalty ``lambda > 0`` (the prior precision relative to the noise precision).
    """

    #: Names of the saved arrays.
    STATE_KEYS: tuple[str, ...] = ("A", "b", "n", "A_inv", "theta", "reward_sum")
    #: Those of them without a dimension (the shapes :meth:`load_state_dict` checks).
    SCALAR_KEYS: tuple[str, ...] = ("reward_sum",)

    def __init__(self, n_arms: int, dim: int, ridge: float) -> None:
        if n_arms < 1 or dim < 1:
            raise ValueError(f"n_arms and dim must be >= 1, got {n_arms} and {dim}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge}")
        self.n_arms, self.dim, self.ridge = n_arms, dim, float(ridge)
        eye = np.eye(dim)
        self.A: NDArray[np.float64] = np.repeat(ridge * eye[None], n_arms, axis=0)
        self.b: NDArray[np.float64] = np.zeros((n_arms, dim))
        self.n: NDArray[np.int64] = np.zeros(n_arms, dtype=np.int64)
        self.A_inv: NDArray[np.float64] = np.repeat(eye[None] / ridge, n_arms, axis=0)
        self.theta: NDArray[np.float64] = np.zeros((n_arms, dim))
        self.reward_sum: NDArray[np.float64] = np.zeros(())
        """Sum of all rewards observed (0-d), for the prior mean ``r_bar = reward_sum / n.sum()``."""
        self._stacked: NDArray[np.float64] | None = None

    @property
    def prior_mean(self) -> float:
        """The head's mean reward so far, ``r_bar`` (0 before any observation)."""
        total = int(self.n.sum())
        return float(self.reward_sum) / total if total else 0.0

    def mean(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Estimated reward of every arm at every row, ``X theta'``, shape ``(n, n_arms)``."""
        return X @ self.theta.T

    def variance(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``x' A_k^-1 x`` for every row and arm, shape ``(n, n_arms)`` (clipped at 0).

        One matrix product with all arms' inverses side by side, ``X [A_1^-1 ... A_K^-1]``, then a row-wise
        dot product with ``x``: ``O(n K d^2)`` flops in BLAS.
        """
        if self._stacked is None:
            self._stacked = np.ascontiguousarray(self.A_inv.transpose(1, 0, 2).reshape(self.dim, -1))
        n = X.shape[0]
        q = (X @ self._stacked).reshape(n, self.n_arms, self.dim)
        return np.maximum(np.einsum("nkj,nj->nk", q, X), 0.0)

    def update(self, arms: NDArray[np.int64], X: NDArray[np.float64], rewards: NDArray[np.float64]) -> None:
        """Add observations: row ``i`` chose arm ``arms[i]`` at design row ``X[i]`` and earned ``rewards[i]``."""
        if not len(arms):
            return
        order = np.argsort(arms, kind="stable")
        arms, X, rewards = arms[order], X[order], rewards[order]
        touched, starts, counts = np.unique(arms, return_index=True, return_counts=True)
        # One BLAS product per touched arm (at most n_arms iterations, never one per row).
        for k, s, c in zip(touched.tolist(), starts.tolist(), counts.tolist(), strict=True):
            Xk = X[s : s + c]
            self.A[k] += Xk.T @ Xk
            self.b[k] += Xk.T @ rewards[s : s + c]
            self.n[k] += c
        self.reward_sum = np.asarray(self.reward_sum + rewards.sum(), dtype=np.float64)
        inv = np.linalg.inv(self.A[touched])
        inv = 0.5 * (inv + inv.transpose(0, 2, 1))  # exactly symmetric, so that x' A^-1 x >= 0 up to rounding
        self.A_inv[touched] = inv
        rhs = self.b.copy()
        rhs[:, 0] += self.ridge * self.prior_mean
        self.theta = np.einsum("kij,kj->ki", self.A_inv, rhs)
        self._stacked = None

    def state_dict(self, prefix: str, arrays: bool = True) -> dict[str, NDArray[np.float64] | NDArray[np.int64]]:
        """The statistics named ``f"{prefix}.{key}"`` (copies); without ``arrays`` only the 0-d ones."""
        keys = self.STATE_KEYS if arrays else self.SCALAR_KEYS
        return {f"{prefix}.{key}": getattr(self, key).copy() for key in keys}

    def load_state_dict(self, state: dict[str, NDArray[np.float64] | NDArray[np.int64]], prefix: str) -> None:
        """Restore the statistics saved by :meth:`state_dict` under ``prefix``.

        Raises:
            ValueError: An array is missing or has the wrong shape.
        """
        shapes = {
            "A": (self.n_arms, self.dim, self.dim),
            "b": (self.n_arms, self.dim),
            "n": (self.n_arms,),
            "A_inv": (self.n_arms, self.dim, self.dim),
            "theta": (self.n_arms, self.dim),
            "reward_sum": (),
        }
        for key, shape in shapes.items():
            name = f"{prefix}.{key}"
            if name not in state:
                raise ValueError(f"state lacks {name!r}")
            value = np.asarray(state[name])
            if value.shape != shape:
                raise ValueError(f"state {name!r} has shape {value.shape}, expected {shape}")
            dtype = np.int64 if key == "n" else np.float64
            setattr(self, key, np.array(value, dtype=dtype, copy=True))
        self._stacked = None
