"""Parameter intervals by a bootstrap over arrangements, each draw refitted with one Gauss-Newton step, and
warnings for parameters the moments do not identify.

Method. The log's moments were bootstrapped over arrangements (:func:`experiments.calibration.moments.log_moments`:
draws :math:`m^{(b)}`). Refitting the whole MSM problem per draw would cost a calibration per draw, so each draw
is refitted by one Gauss-Newton step from the optimum :math:`\\hat\\theta`, linear in the draw's deviation:

.. math:: \\theta^{(b)} = \\hat\\theta + \\sqrt{1 + A_{log}/A_{sim}}\\; D H_s^{+} D J^\\top W\\,(m^{(b)} - \\hat m),

with ``J`` the Jacobian of the fit's local linear model (:class:`experiments.calibration.fit.LocalModel`), ``W``
the fit's weights, ``D`` the spec's ranges and :math:`H_s` the noise-corrected curvature in range units
(:func:`experiments.calibration.fit.scaled_curvature`), inverted over its identified directions only (eigenvalues
of at least :data:`WEAK_EIGENVALUE`; along a weaker direction the regression's Jacobian is mostly noise). The factor
:math:`\\sqrt{1 + A_{log}/A_{sim}}` adds the simulation's own sampling noise (the fitted simulation's moments
vary like the log's scaled by ``A_log / A_sim``, independently). The interval is the draws' 2.5%-97.5%
percentiles, clipped into the spec's bounds. This is the sandwich covariance of MSM evaluated by resampling (it
keeps the moments' correlation, which the diagonal weights ignore); it holds near the optimum where the moments
are close to linear in the parameters, and says nothing about a second, distant optimum. A linearisation cannot
say how far an unidentified parameter may go, so a parameter with any warning gets the spec's bounds as its
interval. sbi's neural posterior was not used: it needs thousands of simulations where this needs none beyond
the fit's.

Identification warnings (:class:`Identification`), each on the scaled curvature
:math:`H_s = D J^\\top W J D` with ``D`` the spec's ranges (so a unit of :math:`H_s` is a move across the whole range):

* ``flat``: :math:`(H_s)_{jj} < 4`: moving the parameter alone across its entire range changes Q by less than
  4 (two standard errors), i.e. the moments barely see it.
* ``wide``: the interval covers more than half of the spec's range.
* ``confounded``: the parameter loads (|loading| > 0.3) on an eigenvector of :math:`H_s` whose eigenvalue is
  below 4 or :math:`10^{-3}` of the largest (a direction in which the Jacobian is nearly rank deficient: moving
  the parameters together along it barely changes Q); the others loaded on it are named.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from experiments.calibration.fit import FitResult, Objective, scaled_curvature
from experiments.calibration.moments import LogMoments
from experiments.calibration.spec import Spec

__all__ = ["Identification", "Inference", "infer"]

#: Interval level.
LEVEL = 0.95
#: An eigenvalue of the scaled curvature below this is a direction the moments do not identify (a move across the
#: whole range along it changes Q by less than two standard errors).
WEAK_EIGENVALUE = 4.0
#: A parameter whose loading on a weak direction exceeds this is confounded along it.
WEAK_LOADING = 0.3


@dataclass(frozen=True)
class Identification:
    """Whether the moments identify one parameter, and why not if they do not.

    Attributes:
        identified: No warning applies.
        curvature: :math:`(H_s)_{jj}`, the rise of Q across the whole range with the parameter moved alone.
        warnings: Sentences, one per warning.
    """

    identified: bool
    curvature: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Inference:
    """The parameters' uncertainty.

    Attributes:
        draws: Refitted parameters per bootstrap draw, shape ``(B, P)`` (clipped into the bounds).
        low: Lower interval bound, shape ``(P,)``.
        high: Upper interval bound, shape ``(P,)``.
        se: Standard deviation of the draws, shape ``(P,)``.
        identification: Per parameter.
        moment_low: Interval of the fitted moments (``m(theta_hat) + J (theta_b - theta_hat)``), shape ``(K,)``.
        moment_high: Its upper bound, shape ``(K,)``.
        eigenvalues: Eigenvalues of the scaled curvature, ascending, shape ``(P,)``.
        level: The intervals' level.
        method: One sentence naming the method.
    """

    draws: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    se: NDArray[np.float64]
    identification: tuple[Identification, ...]
    moment_low: NDArray[np.float64]
    moment_high: NDArray[np.float64]
    eigenvalues: NDArray[np.float64]
    level: float = LEVEL
    method: str = (
        "bootstrap over arrangements of the log's moments, each draw refitted by one Gauss-Newton step from the "
        "optimum with the local linear model's Jacobian (independent seeds), inflated by sqrt(1 + A_log/A_sim) "
        "for simulation noise"
    )


def infer(spec: Spec, moments: LogMoments, fit: FitResult, sim_arrangements: int) -> Inference:
    """The intervals and identification warnings of a fit (module docstring)."""
    objective = Objective.from_log(moments, sim_arrangements)
    model = fit.model
    widths = spec.highs - spec.lows
    scaled = scaled_curvature(objective, model, widths)
    values, vectors = np.linalg.eigh((scaled + scaled.T) / 2.0)
    top = max(float(values[-1]), 1e-12)
    weak = [k for k, e in enumerate(values) if e < max(1e-3 * top, WEAK_EIGENVALUE)]
    strong = np.array([k not in weak for k in range(len(values))])
    # The pseudo-inverse over the identified directions only: along a weak one the regression's Jacobian is mostly
    # noise, and dividing by its (floored) eigenvalue would throw every parameter across its range.
    inverse = (vectors[:, strong] / values[strong]) @ vectors[:, strong].T
    js = model.jacobian * widths[None, :]
    gain = widths[:, None] * (inverse @ (js.T * objective.weights[None, :]))  # (P, K)
    inflate = np.sqrt(1.0 + moments.arrangements / sim_arrangements)
    raw = fit.estimate[None, :] + inflate * (moments.draws - moments.values[None, :]) @ gain.T
    draws = np.clip(raw, spec.lows, spec.highs)
    alpha = (1.0 - LEVEL) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha], axis=0)
    moved = fit.simulated[None, :] + (raw - fit.estimate[None, :]) @ model.jacobian.T
    m_low, m_high = np.clip(np.nanquantile(moved, [alpha, 1.0 - alpha], axis=0), 0.0, 1.0)  # moments are shares
    ident = []
    for j, p in enumerate(spec.params):
        notes = []
        curvature = float(scaled[j, j])
        if curvature < 4.0:
            notes.append(
                f"flat: moved alone across its range [{p.low:g}, {p.high:g}] it changes the objective by about "
                f"{max(curvature, 0.0):.2g} (less than 4, two standard errors)"
            )
        if high[j] - low[j] > 0.5 * widths[j]:
            notes.append(
                f"wide: the {LEVEL:.0%} interval [{low[j]:.4g}, {high[j]:.4g}] covers "
                f"{(high[j] - low[j]) / widths[j]:.0%} of the range"
            )
        for k in weak:
            if abs(vectors[j, k]) > WEAK_LOADING and not notes:
                others = [spec.params[i].path for i in range(len(spec)) if i != j and abs(vectors[i, k]) > WEAK_LOADING]
                with_ = f" with {', '.join(others)}" if others else ""
                notes.append(f"confounded{with_}: a direction along which the objective is nearly flat")
        if notes:
            low[j], high[j] = p.low, p.high  # the moments bound it no better than the spec does
        ident.append(Identification(not notes, curvature, tuple(notes)))
    return Inference(
        draws=draws,
        low=low,
        high=high,
        se=np.std(draws, axis=0, ddof=1),
        identification=tuple(ident),
        moment_low=m_low,
        moment_high=m_high,
        eigenvalues=values,
    )
