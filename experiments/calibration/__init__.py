"""Calibrating a world to a creditor's event log (issue 20): moments, the parameter spec, the fit by the method of
simulated moments, its uncertainty, the back-test and the fit report.

* :mod:`~experiments.calibration.moments`: moments of an event log alone, by observable segment and month, with
  bootstrap standard errors over arrangements.
* :mod:`~experiments.calibration.spec`: ``SPEC``, the declared parameters (dotted world-config path to bounds),
  validated against the world config.
* :mod:`~experiments.calibration.replaying`: the policy that replays the log's own decisions in the simulator.
* :mod:`~experiments.calibration.simulation`: one simulation of the log's treatment at a parameter vector, and
  running many of them on the sweep's executor.
* :mod:`~experiments.calibration.fit`: the MSM objective and its minimisation (optuna's CMA-ES, then a
  Gauss-Newton step).
* :mod:`~experiments.calibration.inference`: parameter intervals by a bootstrap over arrangements refitted with a
  Gauss-Newton step, and identification warnings.
* :mod:`~experiments.calibration.backtest`: held-out months, predictive intervals and their coverage.
* :mod:`~experiments.calibration.report`: ``world.yaml``, ``fit.json`` and ``fit.html``.
* :mod:`~experiments.calibration.cli`: ``regsim calibrate``.
"""
