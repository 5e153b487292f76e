"""Diagnostics that gate every off-policy estimate: the weights' health, the candidate's support, the logger.

Three numbers describe whether importance weighting can be trusted on a log (Owen 2013, ch. 9; Swaminathan &
Joachims 2015; Sachdeva, Su & Joachims 2020):

* the effective sample size :math:`\\mathrm{ESS} = (\\sum_i w_i)^2 / \\sum_i w_i^2` of the raw weights
  :math:`w_i = \\pi(a_i|x_i)/\\pi_0(a_i|x_i)` (``n`` when all weights are equal, near 1 when one dominates);
* the largest weight :math:`\\max_i w_i`;
* the candidate's *unsupported mass*, its probability on actions the logging policy never takes. No weight on
  the log can see those actions, so every weighting estimator is biased by up to that mass times the reward
  range, whatever the sample size.

The unsupported mass is the larger of two measurements: the mean of the logged ``unsupported_mass`` (the caller
knows the logger's support from its masks and propensities) and the weights' own evidence. Since
:math:`\\mathbb{E}_{\\pi_0}[w] = \\sum_{a:\\,\\pi_0(a|x)>0} \\pi(a|x) = 1 - \\text{unsupported mass}`,
:math:`1 - \\bar w` estimates it where the caller left it at 0 (unknown). The gate uses that estimate's lower
confidence bound, :math:`1 - \\bar w - z\\,\\widehat{\\mathrm{se}}(\\bar w)` with the standard error clustered by
arrangement, so that the noise of heavy weights alone does not refuse an estimate.

:func:`gate` turns these into a verdict for one estimator: failed support (unsupported mass above
``max_unsupported``, default 5%) or a deterministic logger (every ``pscore`` is 1) *refuses* the weighting
estimators (``ips``, ``snips``, ``dr``, ``sndr``, ``switch-dr``, ``dros``: value ``nan``, the reason in
``refused``) and leaves ``dm`` with a warning; a low effective sample size or one dominant weight gives a
warning. Nothing is silent: every refusal and caveat is a sentence in the returned :class:`Diagnostics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agents.ope.inputs import BanditFeedback, Diagnostics

__all__ = [
    "GateSettings",
    "SupportEvidence",
    "effective_sample_size",
    "gate",
    "support_evidence",
    "weight_diagnostics",
]


@dataclass(frozen=True)
class GateSettings:
    """Thresholds of the gate.

    Attributes:
        max_unsupported: Largest unsupported mass (probability, mean over decisions) at which the weighting
            estimators are still given; above it they are refused. Default 0.05.
        z: Standard errors subtracted from the weights' estimate :math:`1 - \\bar w` of the unsupported mass
            before it is compared with ``max_unsupported`` (the logged ``unsupported_mass`` is used as it is).
            Default 2.
        min_ess: Effective sample size below which a weighting estimate gets a warning. Default 100.
        max_weight_share: Share of the total weight carried by the largest weight above which a weighting
            estimate gets a warning. Default 0.05.
    """

    max_unsupported: float = 0.05
    z: float = 2.0
    min_ess: float = 100.0
    max_weight_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_unsupported <= 1.0:
            raise ValueError(f"max_unsupported must lie in [0, 1], got {self.max_unsupported}")
        if not (self.z >= 0.0 and math.isfinite(self.z)):
            raise ValueError(f"z must be a finite number >= 0, got {self.z}")
        if not self.min_ess >= 0.0:
            raise ValueError(f"min_ess must be >= 0, got {self.min_ess}")
        if not 0.0 < self.max_weight_share <= 1.0:
            raise ValueError(f"max_weight_share must lie in (0, 1], got {self.max_weight_share}")


@dataclass(frozen=True)
class SupportEvidence:
    """What the log says about the candidate's mass on actions the logger never takes.

    Attributes:
        logged: Mean of the logged ``unsupported_mass``.
        from_weights: :math:`\\max(0, 1 - \\bar w)`, the weights' point estimate.
        from_weights_low: :math:`\\max(0, 1 - \\bar w - z\\,\\mathrm{se})`, its lower confidence bound (clustered se).
    """

    logged: float
    from_weights: float
    from_weights_low: float

    @property
    def estimate(self) -> float:
        """The unsupported mass reported: the larger of the logged mean and the weights' point estimate."""
        return max(self.logged, self.from_weights)

    @property
    def gated(self) -> float:
        """The unsupported mass the gate compares with its threshold: logged mean or the weights' lower bound."""
        return max(self.logged, self.from_weights_low)


def effective_sample_size(weight: NDArray[np.float64]) -> float:
    """Kish's effective sample size :math:`(\\sum_i w_i)^2 / \\sum_i w_i^2` of weights, shape ``(n,)``.

    ``nan`` when every weight is zero.
    """
    total_sq = float(np.dot(weight, weight))
    if total_sq == 0.0:
        return math.nan
    return float(weight.sum()) ** 2 / total_sq


def support_evidence(feedback: BanditFeedback, *, z: float = 2.0) -> SupportEvidence:
    """The logged and the weight-based measurements of the candidate's unsupported mass (see the module docstring).

    The standard error of :math:`\\bar w` is clustered by arrangement:
    :math:`\\mathrm{se} = \\sqrt{\\sum_c (W_c - n_c \\bar w)^2} / n`, with :math:`W_c` the sum of the weights and
    :math:`n_c` the number of decisions of arrangement ``c``.
    """
    weight = feedback.weight
    n = feedback.n
    mean_w = float(weight.mean())
    _, codes = np.unique(feedback.cluster, return_inverse=True)
    w_c = np.bincount(codes, weights=weight)
    n_c = np.bincount(codes).astype(np.float64)
    se = math.sqrt(float(np.sum((w_c - n_c * mean_w) ** 2))) / n
    return SupportEvidence(
        logged=float(feedback.support_gap.mean()),
        from_weights=max(0.0, 1.0 - mean_w),
        from_weights_low=max(0.0, 1.0 - mean_w - z * se),
    )


def weight_diagnostics(feedback: BanditFeedback, *, z: float = 2.0) -> Diagnostics:
    """ESS, largest weight, unsupported mass and sizes of a feedback, with no verdict (``refused``/``warning`` None)."""
    weight = feedback.weight
    return Diagnostics(
        ess=effective_sample_size(weight),
        max_weight=float(weight.max()),
        unsupported_mass=support_evidence(feedback, z=z).estimate,
        n=feedback.n,
        n_clusters=feedback.n_clusters,
    )


def gate(
    feedback: BanditFeedback,
    *,
    weighted: bool,
    needs_model: bool,
    settings: GateSettings | None = None,
    base: Diagnostics | None = None,
    evidence: SupportEvidence | None = None,
) -> Diagnostics:
    """The verdict for one estimator on one feedback: its diagnostics with a refusal or a warning if any.

    Args:
        feedback: The logged decisions.
        weighted: Whether the estimator uses importance weights (all but ``dm``).
        needs_model: Whether it needs the reward model's ``q_logged``/``q_target`` (``dm`` and the DR family).
        settings: The thresholds (defaults: :class:`GateSettings`).
        base: Precomputed :func:`weight_diagnostics` of ``feedback`` (computed here when None).
        evidence: Precomputed :func:`support_evidence` of ``feedback`` with ``settings.z`` (computed when None).

    Returns:
        The diagnostics, with ``refused`` set (a sentence) when the estimator must not be given on this log,
        and ``warning`` set when it is given with a caveat.
    """
    settings = settings or GateSettings()
    base = base or weight_diagnostics(feedback, z=settings.z)
    refused: str | None = None
    warnings: list[str] = []
    deterministic = bool(np.all(feedback.pscore == 1.0))
    evidence = evidence or support_evidence(feedback, z=settings.z)
    if needs_model and feedback.q_target is None:
        refused = "no reward model: q_target was not given"
    elif needs_model and weighted and feedback.q_logged is None:
        refused = "no reward model at the logged actions: q_logged was not given"
    if weighted and refused is None:
        if deterministic:
            refused = (
                "the logging policy is deterministic (every pscore is 1): the log holds no evidence about the "
                "actions it did not take, so importance weighting cannot correct for them; use dm, with care"
            )
        elif evidence.gated > settings.max_unsupported:
            refused = (
                f"failed support: the candidate puts {evidence.estimate:.1%} of its probability on actions the "
                f"logging policy never takes (logged {evidence.logged:.1%}, from the weights "
                f"{evidence.from_weights:.1%}, lower bound {evidence.from_weights_low:.1%}), above the "
                f"threshold {settings.max_unsupported:.1%}"
            )
        else:
            if math.isnan(base.ess) or base.ess < settings.min_ess:
                warnings.append(
                    f"effective sample size {base.ess:.0f} of {base.n} decisions is below {settings.min_ess:.0f}: "
                    "the weighted estimate rests on few decisions"
                )
            total = float(feedback.weight.sum())
            if total > 0.0 and base.max_weight / total > settings.max_weight_share:
                warnings.append(
                    f"the largest weight ({base.max_weight:.3g}) carries {base.max_weight / total:.1%} of the "
                    "total weight"
                )
            if evidence.gated > 0.0:
                warnings.append(
                    f"the candidate puts about {evidence.estimate:.1%} of its probability on unsupported actions"
                    " (within the threshold): the weighted estimate misses their reward"
                )
    if not weighted and refused is None:
        if deterministic:
            warnings.append(
                "the logging policy is deterministic (every pscore is 1): dm extrapolates the reward model to "
                "actions never logged, and no weighting estimator can check it"
            )
        elif evidence.gated > settings.max_unsupported:
            warnings.append(
                f"the candidate puts {evidence.estimate:.1%} of its probability on actions the logger never takes: "
                "dm extrapolates the reward model there"
            )
    return Diagnostics(
        ess=base.ess,
        max_weight=base.max_weight,
        unsupported_mass=base.unsupported_mass,
        n=base.n,
        n_clusters=base.n_clusters,
        refused=refused,
        warning="; ".join(warnings) or None,
    )
