"""The bandits' design matrix: a bias term and a named subset of the shared features.

Every head of every bandit sees the same row vector ``x = (1, f_1(context), ..., f_m(context))`` with the
``f_i`` taken from :func:`regsim.features.features` (the feature module that training and serving share),
selected by name so that a change of the shared layout cannot silently shift columns.

Two feature sets:

* ``"compact"`` (default, :data:`COMPACT_FEATURES`, 21 features + bias = 22 columns): the decision kind, where
  the arrangement stands (timing, amount, progress, payment history, relief so far) and recent contact. It
  leaves out the weekday indicators, amounts other than the installment, the per-channel message counters
  and the opt-out flags (opt-outs already act through the mask). The reason is cost and sample efficiency:
  the disjoint linear bandits keep one ``d x d`` matrix per arm, and scoring a batch costs
  ``O(B * arms * d^2)``. Measured on one core at batch 1,024 (``benchmarks/bench_bandits.py``), LinUCB makes
  about 300,000 decisions/s with the compact set and about 90,000 with the full one (target: 100,000).
  Fewer columns also means each of the 46 contact arms needs fewer observations before its estimate is
  useful.
* ``"full"``: every feature of :data:`regsim.features.FEATURE_LAYOUT`.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from regsim.decision import ContextBatch
from regsim.features import feature_names, features

__all__ = ["COMPACT_FEATURES", "FeatureSet", "design_columns", "design_matrix", "design_names"]

FeatureSet = Literal["compact", "full"]

#: The compact feature set, by name (see the module docstring for what is left out and why).
COMPACT_FEATURES: tuple[str, ...] = (
    "kind_plan_created",
    "kind_pre_due",
    "kind_missed",
    "kind_follow_up",
    "kind_payment_received",
    "day_of_month",
    "days_to_due",
    "target_paid",
    "log_installment",
    "progress",
    "on_time_share",
    "missed",
    "overdue",
    "deferrals",
    "has_paid",
    "days_since_payment",
    "prior_late_share",
    "has_prior_pay_dom",
    "due_after_payday",
    "contacts_7d",
    "days_since_contact",
)


@cache
def design_columns(feature_set: FeatureSet) -> NDArray[np.intp]:
    """Indices into :func:`regsim.features.features`'s columns of a feature set (read-only)."""
    names = feature_names()
    wanted = names if feature_set == "full" else COMPACT_FEATURES
    missing = [n for n in wanted if n not in names]
    if missing:
        raise ValueError(f"feature_set {feature_set!r} names features the shared layout lacks: {missing}")
    out = np.array([names.index(n) for n in wanted], dtype=np.intp)
    out.flags.writeable = False
    return out


def design_names(feature_set: FeatureSet) -> tuple[str, ...]:
    """Names of the design matrix's columns: ``"bias"``, then the features of the set."""
    names = feature_names()
    return ("bias", *(names[i] for i in design_columns(feature_set)))


def design_matrix(batch: ContextBatch, feature_set: FeatureSet) -> NDArray[np.float64]:
    """The design matrix of a batch, shape ``(B, 1 + len(feature set))``, float64, bias column first."""
    f = features(batch)
    cols = design_columns(feature_set)
    out = np.empty((f.shape[0], 1 + len(cols)), dtype=np.float64)
    out[:, 0] = 1.0
    out[:, 1:] = f[:, cols] if feature_set != "full" else f
    return out
