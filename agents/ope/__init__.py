"""Off-policy evaluation of logged decisions: estimators, diagnostics, intervals and reward models.

The inputs are typed (:mod:`agents.ope.inputs`); the per-decision estimators are stateless functions of them
(:mod:`agents.ope.estimators`), gated by :mod:`agents.ope.diagnostics`, with clustered-bootstrap and
empirical-Bernstein intervals (:mod:`agents.ope.intervals`); :func:`estimate` runs them all. :mod:`regsim` never
imports this package.
"""

from agents.ope.diagnostics import GateSettings
from agents.ope.estimators import ESTIMATOR_NAMES, EstimatorParams, estimate
from agents.ope.inputs import BanditFeedback, Diagnostics, EstimatorResult, TrajectoryFeedback

__all__ = [
    "ESTIMATOR_NAMES",
    "BanditFeedback",
    "Diagnostics",
    "EstimatorParams",
    "EstimatorResult",
    "GateSettings",
    "TrajectoryFeedback",
    "estimate",
]
