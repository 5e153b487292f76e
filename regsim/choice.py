"""The debtor's choice on the self-service page: a multinomial logit with an outside option, and its fit.

Mechanism 10 (docs/mechanisms.md#mechanism-10). Option 0 is the outside option (close the page); options
1..6 are the :class:`regsim.menu.MenuOption` types in order (deferral, plan, waiver, discount, counselling,
custom). With ``need`` the liquidity shortfall (1 - min(cash / owed, 1)), ``shock`` 1 during a shock and
``unwill`` = 1 - w (the hidden type's willingness), the systematic utilities are

.. math::

    V_{i0} = \\omega \\, (1 - w_i), \\qquad
    V_{ij} = \\alpha_k + \\beta^{need}_k \\, n_i + \\beta^{shock}_k \\, s_i + \\gamma_k \\, x_j \\quad (k = k(j))

with :math:`x_j` the option's scaled term, and the debtor takes the option of highest :math:`V_{ij} + \\epsilon_{ij}`
among those shown and the outside option, :math:`\\epsilon` i.i.d. standard Gumbel. So

.. math::

    P(j \\mid S_i) = \\frac{e^{V_{ij}}}{e^{V_{i0}} + \\sum_{l \\in S_i} e^{V_{il}}}, \\quad j \\in S_i \\cup \\{0\\}.

The model is linear in its parameters, :math:`V_{ij} = x_{ij}^\\top \\theta`, with :data:`N_PARAMS` parameters
(:func:`design`); :func:`fit_mnl` maximises the log-likelihood of logged choices (McFadden 1974) with
:func:`scipy.optimize.minimize` (Newton steps in a trust region, with the exact gradient and Hessian), and
reports standard errors from the exact Hessian. A creditor calibrating to their own log does the same with
observable proxies for the latent covariates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from regsim.config_self_service import ChoiceConfig

__all__ = [
    "N_OPTIONS",
    "N_PARAMS",
    "OPTION_TYPES",
    "TERM_TYPES",
    "MnlFit",
    "MnlParams",
    "choice_probabilities",
    "design",
    "draw_choice",
    "fit_mnl",
    "utilities",
]

#: The option types after the outside option, in order (option code k + 1).
OPTION_TYPES: tuple[str, ...] = ("deferral", "plan", "waiver", "discount", "counselling", "custom")
#: The option types that have a term (and so a ``gamma``).
TERM_TYPES: tuple[str, ...] = ("deferral", "plan", "discount")
#: Choices per row: the outside option and the six option types.
N_OPTIONS = 1 + len(OPTION_TYPES)
_K = len(OPTION_TYPES)
_TERM_INDEX = np.array([OPTION_TYPES.index(t) for t in TERM_TYPES])
#: Parameters: alpha, beta_need, beta_shock per type, gamma per term type, and the outside option's weight.
N_PARAMS = 3 * _K + len(TERM_TYPES) + 1


@dataclass(frozen=True)
class MnlParams:
    """The choice model's parameters (see the module docstring for the equations).

    Attributes:
        alpha: Intercept per option type, shape ``(6,)`` in :data:`OPTION_TYPES` order.
        beta_need: Weight of the liquidity shortfall per type, ``(6,)``.
        beta_shock: Weight of a shock per type, ``(6,)``.
        gamma: Weight of the scaled term per type, ``(6,)`` (0 for the types without a term).
        outside: Weight of unwillingness in the outside option's utility.
    """

    alpha: NDArray[np.float64]
    beta_need: NDArray[np.float64]
    beta_shock: NDArray[np.float64]
    gamma: NDArray[np.float64]
    outside: float

    @classmethod
    def from_config(cls, config: ChoiceConfig) -> MnlParams:
        """The parameters of a world's ``self_service.choice`` section."""
        u = [getattr(config, t) for t in OPTION_TYPES]
        return cls(
            alpha=np.array([o.alpha for o in u]),
            beta_need=np.array([o.beta_need for o in u]),
            beta_shock=np.array([o.beta_shock for o in u]),
            gamma=np.array([o.gamma for o in u]),
            outside=float(config.outside_unwillingness),
        )

    def vector(self) -> NDArray[np.float64]:
        """The parameters as the vector :math:`\\theta` of :func:`design` (length :data:`N_PARAMS`)."""
        return np.concatenate([self.alpha, self.beta_need, self.beta_shock, self.gamma[_TERM_INDEX], [self.outside]])

    @classmethod
    def from_vector(cls, theta: NDArray[np.float64]) -> MnlParams:
        """The inverse of :meth:`vector`."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (N_PARAMS,):
            raise ValueError(f"theta must have shape ({N_PARAMS},), got {theta.shape}")
        gamma = np.zeros(_K)
        gamma[_TERM_INDEX] = theta[3 * _K : 3 * _K + len(TERM_TYPES)]
        return cls(theta[:_K].copy(), theta[_K : 2 * _K].copy(), theta[2 * _K : 3 * _K].copy(), gamma, float(theta[-1]))

    @staticmethod
    def names() -> tuple[str, ...]:
        """The name of each entry of :meth:`vector`."""
        return (
            *(f"{t}.alpha" for t in OPTION_TYPES),
            *(f"{t}.beta_need" for t in OPTION_TYPES),
            *(f"{t}.beta_shock" for t in OPTION_TYPES),
            *(f"{t}.gamma" for t in TERM_TYPES),
            "outside_unwillingness",
        )


def _check(
    terms: NDArray[np.float64], need: NDArray[np.float64], shock: NDArray[np.float64], unwill: NDArray[np.float64]
) -> int:
    b = len(need)
    if terms.shape != (b, N_OPTIONS):
        raise ValueError(f"terms must have shape (B, {N_OPTIONS}) with B = len(need) = {b}, got {terms.shape}")
    if shock.shape != (b,) or unwill.shape != (b,):
        raise ValueError(f"shock and unwill must have shape ({b},), got {shock.shape} and {unwill.shape}")
    return b


def design(
    terms: NDArray[np.float64], need: NDArray[np.float64], shock: NDArray[np.float64], unwill: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The covariates :math:`x_{ij}` with :math:`V_{ij} = x_{ij}^\\top\\theta`, shape ``(B, 7, N_PARAMS)``.

    Args:
        terms: Each option's scaled term, shape ``(B, 7)`` (column 0, the outside option, is ignored).
        need: Liquidity shortfall per row, ``(B,)``.
        shock: 1.0 in a shock, else 0.0, ``(B,)``.
        unwill: 1 - willingness, ``(B,)``.
    """
    terms, need = np.asarray(terms, dtype=np.float64), np.asarray(need, dtype=np.float64)
    shock, unwill = np.asarray(shock, dtype=np.float64), np.asarray(unwill, dtype=np.float64)
    b = _check(terms, need, shock, unwill)
    x = np.zeros((b, N_OPTIONS, N_PARAMS))
    for k in range(_K):
        x[:, 1 + k, k] = 1.0
        x[:, 1 + k, _K + k] = need
        x[:, 1 + k, 2 * _K + k] = shock
    for g, k in enumerate(_TERM_INDEX):
        x[:, 1 + k, 3 * _K + g] = terms[:, 1 + k]
    x[:, 0, -1] = unwill
    return x


def utilities(
    params: MnlParams,
    terms: NDArray[np.float64],
    need: NDArray[np.float64],
    shock: NDArray[np.float64],
    unwill: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Systematic utilities :math:`V_{ij}`, shape ``(B, 7)`` (column 0: close the page)."""
    terms = np.asarray(terms, dtype=np.float64)
    need, shock, unwill = (np.asarray(a, dtype=np.float64) for a in (need, shock, unwill))
    _check(terms, need, shock, unwill)
    v = np.empty_like(terms)
    v[:, 0] = params.outside * unwill
    v[:, 1:] = (
        params.alpha[None, :]
        + params.beta_need[None, :] * need[:, None]
        + params.beta_shock[None, :] * shock[:, None]
        + params.gamma[None, :] * terms[:, 1:]
    )
    return v


def _available(shown: NDArray[np.bool_]) -> NDArray[np.bool_]:
    shown = np.asarray(shown, dtype=bool)
    if shown.ndim != 2 or shown.shape[1] != N_OPTIONS:
        raise ValueError(f"shown must have shape (B, {N_OPTIONS}), got {shown.shape}")
    out = shown.copy()
    out[:, 0] = True  # the outside option is always there
    return out


def choice_probabilities(v: NDArray[np.float64], shown: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The closed-form MNL probabilities over the shown options and the outside option, shape ``(B, 7)``.

    Args:
        v: Systematic utilities (:func:`utilities`), ``(B, 7)``.
        shown: Which option types the menu shows, ``(B, 7)`` (column 0 is taken as True).
    """
    avail = _available(shown)
    z = np.where(avail, v, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def draw_choice(v: NDArray[np.float64], shown: NDArray[np.bool_], u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Choices by the Gumbel-max trick: ``argmax_j V_ij - log(-log u_ij)`` over the available options.

    With ``u`` i.i.d. uniform on (0, 1), the result follows :func:`choice_probabilities` exactly. Each option type
    has its own uniform (its own column), so adding or removing one option leaves the others' taste shocks as
    they were (common random numbers across menus).

    Returns:
        The chosen option code per row (0 = closed the page).
    """
    u = np.asarray(u, dtype=np.float64)
    if u.shape != np.shape(v):
        raise ValueError(f"u must have the shape of v {np.shape(v)}, got {u.shape}")
    score = np.where(_available(shown), v - np.log(-np.log(u)), -np.inf)
    return np.argmax(score, axis=1).astype(np.int64)


@dataclass(frozen=True)
class MnlFit:
    """A maximum-likelihood fit of the choice model.

    Attributes:
        params: The estimates.
        theta: The estimates as a vector (:meth:`MnlParams.vector` order).
        std_errors: Their standard errors, from the inverse of the exact Hessian, same order.
        log_likelihood: The maximised log-likelihood.
        n: Choices fitted.
        converged: Whether the optimiser reported success.
    """

    params: MnlParams
    theta: NDArray[np.float64]
    std_errors: NDArray[np.float64]
    log_likelihood: float
    n: int
    converged: bool


def fit_mnl(
    shown: NDArray[np.bool_],
    terms: NDArray[np.float64],
    need: NDArray[np.float64],
    shock: NDArray[np.float64],
    unwill: NDArray[np.float64],
    chosen: NDArray[np.integer],
) -> MnlFit:
    """Fit the choice model to logged choices by maximum likelihood.

    Args:
        shown: The options each menu showed, ``(B, 7)``.
        terms: Their scaled terms, ``(B, 7)``.
        need: Liquidity shortfall at each visit, ``(B,)``.
        shock: 1.0 in a shock, ``(B,)``.
        unwill: 1 - willingness, ``(B,)``.
        chosen: The option chosen (0 = closed the page), ``(B,)``; it must have been available.

    Raises:
        ValueError: Shapes disagree, or a chosen option was not shown.

    Identification needs variation: each option type shown to some debtors and not others, its term varied, and
    need, shock and unwillingness varied across visits; parameters of a type never shown are not identified
    (their standard errors come out huge).
    """
    x = design(terms, need, shock, unwill)
    avail = _available(shown)
    chosen = np.asarray(chosen, dtype=np.int64)
    b = len(chosen)
    if chosen.shape != (b,) or x.shape[0] != b:
        raise ValueError(f"chosen must have shape ({x.shape[0]},), got {chosen.shape}")
    if not avail[np.arange(b), chosen].all():
        raise ValueError("a chosen option was not shown")
    rows = np.arange(b)
    x_sum_chosen = x[rows, chosen].sum(axis=0)
    flat = x.reshape(b * N_OPTIONS, N_PARAMS)  # one row per (choice, option): every step is a product with it

    def probs(theta: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        v = np.where(avail, (flat @ theta).reshape(b, N_OPTIONS), -np.inf)
        m = v.max(axis=1, keepdims=True)
        e = np.exp(v - m)
        s = e.sum(axis=1, keepdims=True)
        return e / s, (m + np.log(s))[:, 0]

    def objective(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        p, lse = probs(theta)
        ll = float(x_sum_chosen @ theta - lse.sum())
        grad = x_sum_chosen - flat.T @ p.reshape(-1)
        return -ll / b, -grad / b

    def information(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """The negative Hessian of the log-likelihood: sum over choices of the covariance of x under p."""
        p, _ = probs(theta)
        mean_x = (p[:, :, None] * x).sum(axis=1)
        return np.asarray(flat.T @ (p.reshape(-1, 1) * flat) - mean_x.T @ mean_x, dtype=np.float64)

    # The log-likelihood is concave: Newton steps in a trust region converge in a few iterations.
    res = minimize(
        objective,
        np.zeros(N_PARAMS),
        jac=True,
        hess=lambda theta: information(theta) / b,
        method="trust-exact",
        options={"gtol": 1e-9, "maxiter": 200},
    )
    theta = np.asarray(res.x, dtype=np.float64)
    _, lse = probs(theta)
    hessian = information(theta)
    std = np.sqrt(np.clip(np.diag(np.linalg.pinv(hessian)), 0.0, None))
    ll = float(x_sum_chosen @ theta - lse.sum())
    return MnlFit(MnlParams.from_vector(theta), theta, std, ll, b, bool(res.success))
