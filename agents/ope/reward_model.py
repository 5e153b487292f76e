"""The reward model of DM and the DR family: a ridge regression, cross-fitted by arrangement.

The model (a defensible, fast default, not a tuned learner):

.. math:: \\hat q(x, a) = \\beta_0 + x^\\top \\beta_x + \\sum_p e_p(a_p)^\\top \\gamma_p
    + \\sum_p \\sum_g \\mathbb{1}\\{k = g\\}\\, e_p(a_p)^\\top \\delta_{p,g}
    \\;[+ \\sum_p (x \\otimes e_p(a_p))^\\top \\eta_p]

with :math:`x` the standardised context features, :math:`e_p(a_p)` the one-hot code of the action's part ``p``
(channel x send slot, due day, deferral, reduction: sizes ``action_sizes``), :math:`k` the decision's kind
(optional, e.g. which decision of the arrangement's life it is) and, when ``context_interactions``, the context's
interactions with each action part (a linear model per action level; on by default). It is fitted by ridge regression
(penalty ``alpha`` on every coefficient but the intercept) through its normal equations, in numpy.

Because :math:`\\hat q` is linear in its features, the candidate's expectation
:math:`\\hat q(x, \\pi) = \\sum_k \\pi_k \\hat q(x, a_k)` is the model at the *expected* features, whose action
parts are the candidate's marginal probabilities of each level: one matrix product, whatever the number ``K`` of
candidate actions per row.

Cross-fitting (Chernozhukov et al. 2018; in OPE, Narita, Yasui & Yata 2019): arrangements are split into
``folds`` at random; each row is predicted by the model fitted on the other folds, so that no row's reward
(and no decision of its arrangement) shapes its own prediction, which keeps DR's correction term unbiased given
the model.

The normal equations are built without the design matrix. A logged row's design row is a few *slots*: the
intercept and context :math:`u = (1, x)` at fixed columns, and per action part ``p`` the same :math:`u` (or just 1
without the context interactions) at the columns of its level, and a 1 at the column of its (level, kind). So
every block of :math:`X^\\top X` is a sum of :math:`u u^\\top` (or of :math:`u`, or of counts) grouped by the pair of
categories of two slots: one sparse indicator product per pair of slots. Time :math:`O(n (d+1)^2 P^2)` plus one
:math:`D \\times D` solve per fold (``D`` the number of coefficients), instead of :math:`O(n D^2)`; memory
:math:`O(\\text{folds}\\, D^2)` plus one block of rows. Predictions are made from the coefficients block by
block (per coefficient group), also without the design matrix.

The fit does not depend on the candidate: :func:`fit_cross_fitted` fits the folds once
(:class:`CrossFittedModel`), and :meth:`CrossFittedModel.predict` gives any candidate's :math:`\\hat q(x, \\pi)` from
it, so candidates evaluated on one log share one fit. :func:`cross_fitted_rewards` does both for one candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, sparse

__all__ = ["CrossFittedModel", "cross_fitted_rewards", "fit_cross_fitted"]

Array = NDArray[np.float64]


def _encode(actions: NDArray[np.int64], weights: Array, action_sizes: tuple[int, ...]) -> Array:
    """Expected one-hot codes of the action parts: shape ``(n, sum(action_sizes))``.

    ``actions`` has shape ``(n, K, P)`` and ``weights`` ``(n, K)``; a row's code of part ``p`` level ``l`` is the
    weight of its candidate actions whose part ``p`` is ``l``.
    """
    n, k, _ = actions.shape
    blocks = []
    rows = np.repeat(np.arange(n), k)
    for p, size in enumerate(action_sizes):
        flat = rows * size + actions[:, :, p].ravel()
        blocks.append(np.bincount(flat, weights=weights.ravel(), minlength=n * size).reshape(n, size))
    return np.concatenate(blocks, axis=1)


def _design(x: Array, code: Array, kind_onehot: Array | None, context_interactions: bool) -> Array:
    """The design matrix ``[1, x, code, code x kind, x x code]``, written into one preallocated array.

    The fit never builds it (see the module docstring); it defines the column order that :func:`_slots` and
    :func:`_predict` follow, and the tests check both against it.
    """
    n, d = x.shape
    s = code.shape[1]
    g = 0 if kind_onehot is None else kind_onehot.shape[1]
    out = np.empty((n, 1 + d + s + s * g + (d * s if context_interactions else 0)))
    out[:, 0] = 1.0
    out[:, 1 : 1 + d] = x
    out[:, 1 + d : 1 + d + s] = code
    start = 1 + d + s
    blocks: list[tuple[Array, Array]] = []
    if kind_onehot is not None:
        blocks.append((code, kind_onehot))
    if context_interactions:
        blocks.append((x, code))
    for left, right in blocks:
        width = left.shape[1] * right.shape[1]
        view = out[:, start : start + width].reshape(n, left.shape[1], right.shape[1])
        assert np.shares_memory(view, out)  # a view, so that the product lands in ``out``
        np.multiply(left[:, :, None], right[:, None, :], out=view)
        start += width
    return out


def _predict(x: Array, code: Array, kind_onehot: Array | None, context_interactions: bool, beta: Array) -> Array:
    """``_design(...) @ beta`` without building the design: each block's contribution from its coefficients."""
    d = x.shape[1]
    s = code.shape[1]
    q = beta[0] + x @ beta[1 : 1 + d] + code @ beta[1 + d : 1 + d + s]
    start = 1 + d + s
    if kind_onehot is not None:
        g = kind_onehot.shape[1]
        q += np.einsum("ij,ij->i", code @ beta[start : start + s * g].reshape(s, g), kind_onehot)
        start += s * g
    if context_interactions:
        q += np.einsum("ij,ij->i", x @ beta[start : start + d * s].reshape(d, s), code)
    return q


@dataclass(frozen=True)
class _Slot:
    """A group of design columns that a row fills from one category: ``values`` go to ``columns[category]``.

    Every logged row's design row is the sum of its slots (their columns never overlap): the intercept and the
    context (one category), and per action part its level's code column and context interactions, and per part
    its (level, kind) column.
    """

    category: NDArray[np.int64]  # (n,)
    columns: NDArray[np.int64]  # (n_categories, m)
    values: Array  # (n, m)


def _slots(
    z: Array,
    logged: NDArray[np.int64],
    sizes: tuple[int, ...],
    kind: NDArray[np.int64] | None,
    n_kinds: int,
    context_interactions: bool,
) -> list[_Slot]:
    n, d = z.shape
    total = sum(sizes)
    u = np.concatenate([np.ones((n, 1)), z], axis=1)
    code_start, kind_start = 1 + d, 1 + d + total
    inter_start = kind_start + total * (n_kinds if kind is not None else 0)
    slots = [_Slot(np.zeros(n, dtype=np.int64), np.arange(d + 1)[None, :], u)]
    offset = 0
    for p, size in enumerate(sizes):
        level = offset + np.arange(size)
        if context_interactions:
            columns = np.concatenate(
                [code_start + level[:, None], inter_start + np.arange(d)[None, :] * total + level[:, None]], axis=1
            )
            slots.append(_Slot(logged[:, p], columns, u))
        else:
            slots.append(_Slot(logged[:, p], (code_start + level)[:, None], u[:, :1]))
        if kind is not None:
            columns = kind_start + (level[:, None] * n_kinds + np.arange(n_kinds)[None, :]).reshape(-1, 1)
            slots.append(_Slot(logged[:, p] * n_kinds + kind, columns, u[:, :1]))
        offset += size
    return slots


def _pair_sums(a: _Slot, b: _Slot, outer: Array) -> tuple[NDArray[np.int64], Array]:
    """Per joint category ``(i, j)`` of two slots, :math:`\\sum_r a_r b_r^\\top` over its rows.

    Args:
        a: One slot.
        b: Another (or the same) slot.
        outer: The rows' :math:`u u^\\top`, shape ``(n, (d+1)^2)``, for a pair of wide slots (both of values ``u``).

    Returns:
        The joint keys ``i * n_categories(b) + j`` present, shape ``(k,)``, and their sums, shape ``(k, m_a, m_b)``.
    """
    n = len(a.category)
    n_b = len(b.columns)
    key = a.category * n_b + b.category
    m_a, m_b = a.values.shape[1], b.values.shape[1]
    if m_a > 1 and m_b > 1:
        products = outer
    elif m_a > 1:
        products = a.values
    else:
        products = b.values * a.values[:, :1]
    # Grouped sums as one sparse product: the (categories x rows) indicator times the rows' products.
    indicator = sparse.csc_matrix((np.ones(n), key, np.arange(n + 1)), shape=(len(a.columns) * n_b, n))
    sums = np.asarray(indicator @ products, dtype=np.float64)
    keys = np.flatnonzero(np.bincount(key, minlength=len(a.columns) * n_b))
    return keys.astype(np.int64), sums[keys].reshape(len(keys), m_a, m_b)


def _normal_equations(slots: list[_Slot], y: Array, width: int) -> tuple[Array, Array]:
    """:math:`X^\\top X` and :math:`X^\\top y` of the logged design from its slots, without the design matrix.

    Cost :math:`O(n\\,m^2)` per pair of slots (``m`` = 1 + number of features), not :math:`O(n D^2)`.
    """
    gram = np.zeros((width, width))
    moment = np.zeros(width)
    u = slots[0].values
    outer = (u[:, :, None] * u[:, None, :]).reshape(len(u), -1)
    for i, a in enumerate(slots):
        # A slot's columns differ between its categories, so each index below occurs once: plain += is exact.
        for col in range(a.values.shape[1]):
            moment[a.columns[:, col]] += np.bincount(a.category, weights=a.values[:, col] * y, minlength=len(a.columns))
        for b in slots[i:]:
            keys, sums = _pair_sums(a, b, outer)
            rows = a.columns[keys // len(b.columns)]
            cols = b.columns[keys % len(b.columns)]
            gram[rows[:, :, None], cols[:, None, :]] += sums
            if b is not a:
                gram[cols[:, :, None], rows[:, None, :]] += sums.transpose(0, 2, 1)
    return gram, moment


def _check_target(
    target_actions: ArrayLike, target_weights: ArrayLike, n: int, sizes: tuple[int, ...]
) -> tuple[NDArray[np.int64], Array]:
    target = np.asarray(target_actions)
    if target.ndim != 3 or target.shape[0] != n or target.shape[2] != len(sizes):
        raise ValueError(f"target_actions must have shape (n, K, P) with n={n}, P={len(sizes)}, got {target.shape}")
    tw = np.asarray(target_weights, dtype=np.float64)
    if tw.shape != target.shape[:2]:
        raise ValueError(f"target_weights must have shape (n, K) = {target.shape[:2]}, got {tw.shape}")
    if np.any(tw < 0.0) or not np.allclose(tw.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("target_weights must be >= 0 with every row summing to 1")
    _check_levels("target_actions", target, sizes)
    return target.astype(np.int64), tw


def _check_levels(name: str, acts: NDArray[Any], sizes: tuple[int, ...]) -> None:
    if not np.issubdtype(acts.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {acts.dtype}")
    flat = acts.reshape(-1, len(sizes))
    if np.any(flat < 0) or np.any(flat >= np.asarray(sizes)):
        raise ValueError(f"{name}: part p must lie in [0, action_sizes[p]) with action_sizes={list(sizes)}")


@dataclass(frozen=True)
class CrossFittedModel:
    r"""The reward model cross-fitted on ``n`` logged rows: each fold's coefficients and each row's fold.

    Attributes:
        sizes: Levels of each action part.
        context_interactions: Whether the model has the context x action-part interactions.
        z: The standardised features, shape ``(n, d)``.
        kind_onehot: The rows' decision kinds one-hot, shape ``(n, g)``, or ``None``.
        fold_rows: The rows of each fold.
        betas: Each fold's coefficients (fitted on the other folds), shape ``(folds, D)``.
        q_logged: :math:`\hat q(x_i, a_i)` of each row from the model that did not see its arrangement, ``(n,)``.
    """

    sizes: tuple[int, ...]
    context_interactions: bool
    z: Array
    kind_onehot: Array | None
    fold_rows: tuple[NDArray[np.int64], ...]
    betas: Array
    q_logged: Array

    def predict(self, target_actions: ArrayLike, target_weights: ArrayLike) -> Array:
        r""":math:`\sum_k \pi_{ik} \hat q(x_i, a_{ik})` per row, each from the model that did not see its
        arrangement.

        Args:
            target_actions: The candidate's actions per row, shape ``(n, K, P)``, int.
            target_weights: Their probabilities, shape ``(n, K)``, rows summing to 1.

        Raises:
            ValueError: Misshapen arguments, levels outside ``sizes`` or weights that are not probabilities.
        """
        target, tw = _check_target(target_actions, target_weights, len(self.z), self.sizes)
        code = _encode(target, tw, self.sizes)
        out = np.empty(len(self.z))
        for f, rows in enumerate(self.fold_rows):
            kind_rows = None if self.kind_onehot is None else self.kind_onehot[rows]
            out[rows] = _predict(self.z[rows], code[rows], kind_rows, self.context_interactions, self.betas[f])
        return out


def _solve_spd(lhs: Array, rhs: Array) -> Array:
    """``lhs^{-1} rhs`` for a symmetric positive definite ``lhs`` (Cholesky; LU if it is not numerically so)."""
    try:
        factor = linalg.cho_factor(lhs, lower=True, check_finite=False)
        return np.asarray(linalg.cho_solve(factor, rhs, check_finite=False), dtype=np.float64)
    except linalg.LinAlgError:
        return np.asarray(np.linalg.solve(lhs, rhs), dtype=np.float64)


def fit_cross_fitted(
    features: ArrayLike,
    logged_actions: ArrayLike,
    reward: ArrayLike,
    groups: ArrayLike,
    *,
    action_sizes: tuple[int, ...] | list[int],
    folds: int = 5,
    seed: int | np.random.SeedSequence | np.random.Generator,
    kinds: ArrayLike | None = None,
    alpha: float = 1.0,
    context_interactions: bool = True,
) -> CrossFittedModel:
    """Fit the reward model once per fold (on the other folds); the arguments as :func:`cross_fitted_rewards`.

    Raises:
        ValueError: Misshapen or out-of-range arguments, naming the argument.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {x.shape}")
    n = len(x)
    sizes = tuple(int(s) for s in action_sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"action_sizes must be a non-empty list of sizes >= 1, got {list(action_sizes)}")
    logged = np.asarray(logged_actions)
    if logged.shape != (n, len(sizes)):
        raise ValueError(f"logged_actions must have shape (n, P) = ({n}, {len(sizes)}), got {logged.shape}")
    _check_levels("logged_actions", logged, sizes)
    y = np.asarray(reward, dtype=np.float64)
    if y.shape != (n,) or not np.all(np.isfinite(y)):
        raise ValueError(f"reward must be finite with shape ({n},), got shape {y.shape}")
    group = np.asarray(groups)
    if group.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {group.shape}")
    unique, codes = np.unique(group, return_inverse=True)
    if not 2 <= folds <= len(unique):
        raise ValueError(f"folds must lie in [2, number of arrangements = {len(unique)}], got {folds}")
    if not alpha > 0.0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    kind_onehot: Array | None = None
    if kinds is not None:
        kind = np.asarray(kinds)
        if kind.shape != (n,):
            raise ValueError(f"kinds must have shape ({n},), got {kind.shape}")
        _, kind_codes = np.unique(kind, return_inverse=True)
        kind_onehot = np.eye(int(kind_codes.max()) + 1)[kind_codes.reshape(-1)]

    rng = np.random.default_rng(seed)
    fold_of_group = rng.permutation(len(unique)) % folds
    fold = fold_of_group[codes.reshape(-1)]
    # The features are scaled with all rows' moments: they carry no reward, so no row's reward reaches its own
    # prediction, and one scaling lets every fold's fit share the per-fold Gram matrices below.
    mean = x.mean(axis=0)
    sd = x.std(axis=0)
    z = (x - mean) / np.where(sd > 0.0, sd, 1.0)
    logged_code = _encode(logged[:, None, :].astype(np.int64), np.ones((n, 1)), sizes)
    n_kinds = 0 if kind_onehot is None else kind_onehot.shape[1]
    kind_code = None if kind_onehot is None else np.argmax(kind_onehot, axis=1).astype(np.int64)
    width = 1 + x.shape[1] + sum(sizes) * (1 + n_kinds + (x.shape[1] if context_interactions else 0))
    fold_rows = tuple(np.flatnonzero(fold == f) for f in range(folds))
    gram = np.zeros((folds, width, width))
    moment = np.zeros((folds, width))
    logged64 = logged.astype(np.int64)
    # Rows per block of the normal equations: the rows' outer products u u^T stay near 64 MiB.
    block = max(1024, (64 << 20) // (8 * (x.shape[1] + 1) ** 2))
    for f, rows_f in enumerate(fold_rows):
        for lo in range(0, len(rows_f), block):
            rows = rows_f[lo : lo + block]
            kind_rows = None if kind_code is None else kind_code[rows]
            slots = _slots(z[rows], logged64[rows], sizes, kind_rows, n_kinds, context_interactions)
            gram_block, moment_block = _normal_equations(slots, y[rows], width)
            gram[f] += gram_block
            moment[f] += moment_block
    penalty = np.full(width, alpha)
    penalty[0] = 0.0
    total_gram, total_moment = gram.sum(axis=0), moment.sum(axis=0)
    betas = np.empty((folds, width))
    q_logged = np.empty(n)
    for f, rows in enumerate(fold_rows):
        lhs = total_gram - gram[f]
        lhs[np.diag_indices(width)] += penalty
        betas[f] = _solve_spd(lhs, total_moment - moment[f])
        kind_rows = None if kind_onehot is None else kind_onehot[rows]
        q_logged[rows] = _predict(z[rows], logged_code[rows], kind_rows, context_interactions, betas[f])
    return CrossFittedModel(sizes, context_interactions, z, kind_onehot, fold_rows, betas, q_logged)


def cross_fitted_rewards(
    features: ArrayLike,
    logged_actions: ArrayLike,
    target_actions: ArrayLike,
    target_weights: ArrayLike,
    reward: ArrayLike,
    groups: ArrayLike,
    *,
    action_sizes: tuple[int, ...] | list[int],
    folds: int = 5,
    seed: int | np.random.SeedSequence | np.random.Generator,
    kinds: ArrayLike | None = None,
    alpha: float = 1.0,
    context_interactions: bool = True,
) -> tuple[Array, Array]:
    """Cross-fitted predictions of the reward model at the logged actions and under the candidate.

    Args:
        features: Context features, shape ``(n, d)`` (standardised here with the training folds' mean and sd).
        logged_actions: The logged action's parts, shape ``(n, P)``, int, part ``p`` in ``[0, action_sizes[p])``.
        target_actions: The candidate's actions per row, shape ``(n, K, P)``, int (``K = 1`` for a deterministic
            candidate).
        target_weights: The candidate's probability of each of those actions, shape ``(n, K)``, rows summing to 1.
        reward: The logged rewards, shape ``(n,)``.
        groups: Arrangement id per row, shape ``(n,)``: folds split arrangements, never an arrangement's rows.
        action_sizes: Number of levels of each action part, length ``P``.
        folds: Number of cross-fitting folds (>= 2, at most the number of arrangements).
        seed: Seed or generator of the fold assignment.
        kinds: Optional decision kind per row, shape ``(n,)``, int: the action parts' effects may differ by kind.
        alpha: Ridge penalty (> 0) in units of standardised features.
        context_interactions: Whether to add the context x action-part interactions (``d * sum(action_sizes)``
            more coefficients). On by default: without them the action's effect cannot depend on the context, and
            DM then misses most of what a contextual candidate gains.

    Returns:
        ``(q_logged, q_target)``, each shape ``(n,)``: :math:`\\hat q(x_i, a_i)` and
        :math:`\\sum_k \\pi_{ik} \\hat q(x_i, a_{ik})`, each from the model that did not see row ``i``'s arrangement.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {x.shape}")
    n = len(x)
    sizes = tuple(int(s) for s in action_sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"action_sizes must be a non-empty list of sizes >= 1, got {list(action_sizes)}")
    logged = np.asarray(logged_actions)
    if logged.shape != (n, len(sizes)):
        raise ValueError(f"logged_actions must have shape (n, P) = ({n}, {len(sizes)}), got {logged.shape}")
    _check_levels("logged_actions", logged, sizes)  # (before the candidate's, as the arguments come)
    target, tw = _check_target(target_actions, target_weights, n, sizes)
    model = fit_cross_fitted(
        x,
        logged,
        reward,
        groups,
        action_sizes=sizes,
        folds=folds,
        seed=seed,
        kinds=kinds,
        alpha=alpha,
        context_interactions=context_interactions,
    )
    return model.q_logged, model.predict(target, tw)
