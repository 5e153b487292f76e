"""Off-policy evaluation of logged decisions: estimators, diagnostics, intervals and reward models.

The inputs are typed (:mod:`agents.ope.inputs`); the estimators are stateless functions of them
(:mod:`agents.ope.estimators`). :mod:`regsim` never imports this package.
"""

from agents.ope.inputs import BanditFeedback, Diagnostics, EstimatorResult, TrajectoryFeedback

__all__ = ["BanditFeedback", "Diagnostics", "EstimatorResult", "TrajectoryFeedback"]
