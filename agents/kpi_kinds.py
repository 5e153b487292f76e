"""How each KPI is compared between paired runs: its kind, its per-arrangement terms, its value and difference.

Every KPI of :data:`regsim.metrics.KPI_NAMES` is one of three kinds (:data:`KPI_KINDS`): a **mean** over
arrangements (paired t interval), a **ratio** of sums (delta-method interval) or a per-seed **total** (the
per-arrangement mean's interval scaled by arrangements per seed). The formulas are in the docstring of
:mod:`agents.evaluate`; the estimators in :mod:`agents.paired_differences`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from agents.paired_differences import PairedDifference, paired_mean_difference, paired_ratio_difference

__all__ = ["KPI_KINDS", "KpiKind"]

KpiKind = Literal["mean", "ratio", "total"]

#: How each KPI aggregates arrangements, which decides its interval (see the module docstring).
KPI_KINDS: dict[str, KpiKind] = {
    "completion_rate": "mean",
    "on_time_installment_rate": "ratio",
    "collected_eur": "total",
    "contact_cost_eur": "total",
    "cost_per_eur_collected": "ratio",
    "contacts_per_arrangement": "mean",
    "breakdown_rate": "mean",
    "mean_days_to_completion": "ratio",
    "referral_rate": "mean",
    "active_rate": "mean",
    "collected_eur_per_arrangement": "mean",
    "net_recovery_eur_per_arrangement": "mean",
    "recovered_share": "ratio",
    "censored_rate": "mean",
}


def _terms(o: pd.DataFrame) -> dict[str, tuple[NDArray[np.float64], NDArray[np.float64] | None]]:
    """Per KPI, the per-arrangement numerator and (for ratios) denominator, matching regsim.metrics."""

    def col(name: str) -> NDArray[np.float64]:
        return o[name].to_numpy(dtype=np.float64)

    completed = col("completed")
    ended = completed + col("broken") + col("referred")
    days = np.nan_to_num(col("days_to_completion"), nan=0.0) * completed
    return {
        "completion_rate": (completed, None),
        "on_time_installment_rate": (col("installments_on_time"), col("installments_due")),
        "collected_eur": (col("collected_eur"), None),
        "contact_cost_eur": (col("contact_cost_eur"), None),
        "cost_per_eur_collected": (col("contact_cost_eur"), col("collected_eur")),
        "contacts_per_arrangement": (col("contacts"), None),
        "breakdown_rate": (col("broken"), None),
        "mean_days_to_completion": (days, completed),
        "referral_rate": (col("referred"), None),
        "active_rate": ((ended == 0).astype(np.float64), None),
        "collected_eur_per_arrangement": (col("collected_eur"), None),
        "net_recovery_eur_per_arrangement": (col("net_recovery_eur"), None),
        "recovered_share": (col("collected_eur"), col("debt_eur")),
        "censored_rate": ((o["end_kind"] == "censored").to_numpy(dtype=np.float64), None),
    }


def _value(kind: KpiKind, num: NDArray[np.float64], den: NDArray[np.float64] | None, n_seeds: int) -> float:
    if len(num) == 0:
        return math.nan
    if kind == "ratio":
        assert den is not None
        total = float(den.sum())
        return float(num.sum()) / total if total else math.nan
    return float(num.sum()) / n_seeds if kind == "total" else float(num.mean())


def _difference(
    kind: KpiKind,
    terms: tuple[NDArray[np.float64], NDArray[np.float64] | None],
    base: tuple[NDArray[np.float64], NDArray[np.float64] | None],
    per_seed: float,
    level: float,
) -> PairedDifference:
    if kind == "ratio":
        assert terms[1] is not None and base[1] is not None
        return paired_ratio_difference(terms[0], terms[1], base[0], base[1], level=level)
    d = paired_mean_difference(terms[0], base[0], level=level)
    return d.scaled(per_seed) if kind == "total" else d
