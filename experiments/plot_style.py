"""The look of the report's figures and tables: KPI names and units, the policy palette, better or worse.

One meaning per colour: in a figure a colour names a policy, never a judgement. :data:`POLICY_COLORS` keys
the colour by the policy's name (static dunning, the usual baseline, grey; the hindsight oracle black), and
:func:`policy_colors` gives a name outside it the next spare colour in the order of the run's policy list, so a
policy has the same colour in every figure of a report. Better and worse (green, red) belong to the tables only:
:func:`verdict` names the judgement, the report's CSS colours it. The small figure helpers shared by
:mod:`experiments.plots` live here too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from regsim.config import CHANNELS

__all__ = [
    "KPI_LABELS",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "NEUTRAL_KPIS",
    "POLICY_COLORS",
    "format_diff",
    "format_value",
    "metric_label",
    "policy_colors",
    "verdict",
]

#: Plain-words names of the KPIs of :data:`regsim.metrics.KPI_NAMES`.
KPI_LABELS: dict[str, str] = {
    "completion_rate": "arrangements completed (share)",
    "on_time_installment_rate": "installments paid on time (share)",
    "collected_eur": "euros collected per run",
    "contact_cost_eur": "contact cost per run (EUR)",
    "cost_per_eur_collected": "contact cost per euro collected",
    "contacts_per_arrangement": "contacts per arrangement",
    "breakdown_rate": "arrangements broken (share)",
    "mean_days_to_completion": "days to completion (mean)",
    "referral_rate": "arrangements referred (share)",
    "active_rate": "arrangements still open at the end (share)",
    "collected_eur_per_arrangement": "euros collected per arrangement",
    "net_recovery_eur_per_arrangement": "net recovery per arrangement (EUR, after contact cost and concessions)",
    "recovered_share": "share of the original debt recovered",
    "censored_rate": "arrangements censored at the end of follow-up (share)",
}

#: KPIs for which a smaller value is the better one.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "contact_cost_eur",
        "cost_per_eur_collected",
        "contacts_per_arrangement",
        "breakdown_rate",
        "mean_days_to_completion",
        "referral_rate",
    }
)

#: KPIs that are neither better nor worse when they move (how much of the cohort is still open): never
#: coloured as a judgement.
NEUTRAL_KPIS: frozenset[str] = frozenset({"active_rate", "censored_rate"})

_EURO_KPIS = frozenset(
    {"collected_eur", "contact_cost_eur", "collected_eur_per_arrangement", "net_recovery_eur_per_arrangement"}
)

#: Plain-words titles and axis labels of the learning-curve metrics (``learning_curve.parquet``), with units.
#: A reward of 1 is EUR 100 (``regsim.rewards``, ``scale = 0.01``).
METRIC_LABELS: dict[str, str] = {
    "reward_per_decision": "Mean reward per decision (EUR 100)",
    "rollout/reward_per_decision": "Mean reward per decision (EUR 100)",
    "rollout/ep_rew_mean": "Mean reward per finished arrangement (EUR 100)",
    "online/completion_rate": "Arrangements completed while training (share)",
    "online/collected_eur_per_arrangement": "Euros collected per arrangement while training (EUR)",
    "online/net_recovery_eur_per_arrangement": "Net recovery per arrangement while training (EUR)",
    "train/loss": "Training loss (no unit)",
    "train/entropy_loss": "Policy entropy loss (no unit)",
    "train/value_loss": "Value-function loss (EUR 100 squared)",
    "train/approx_kl": "Approximate KL divergence per update (nats)",
}

# Channel colours appear only in the channel figures, where no policy is coloured.
_CHANNEL_COLORS = dict(zip(CHANNELS, ("#4e79a7", "#59a14f", "#f28e2b", "#b07aa1", "#e15759"), strict=False))

#: The colour of each known policy, by name: the one place a policy's colour is set. Neither green nor red is
#: among them, so that no bar reads as a judgement.
POLICY_COLORS: dict[str, str] = {
    "static-dunning": "#7f7f7f",
    "silent": "#bcbd22",
    "random": "#8c564b",
    "payday-aligned": "#17becf",
    "linucb": "#1f77b4",
    "epsilon-greedy": "#9467bd",
    "linear-ts": "#e377c2",
    "mppo": "#ff7f0e",
    "maskable-ppo": "#ff7f0e",
    "one-step-oracle": "#555555",
    "hindsight-oracle": "#000000",
}

# Colours for policies outside POLICY_COLORS (learned agents under their own names), in order of appearance.
_SPARE = ("#aec7e8", "#ffbb78", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939")


def policy_colors(policies: Sequence[str]) -> dict[str, str]:
    """A colour per policy, keyed by name: :data:`POLICY_COLORS` where the name is known, else the next colour
    of a spare palette in the order of ``policies``.

    Pass the run's whole policy list (``Evaluation.policies``) from every figure, so that a policy outside
    :data:`POLICY_COLORS` gets the same colour everywhere too.
    """
    out: dict[str, str] = {}
    k = 0
    for p in policies:
        if p in POLICY_COLORS:
            out[p] = POLICY_COLORS[p]
        elif p not in out:
            out[p] = _SPARE[k % len(_SPARE)]
            k += 1
    return out


def metric_label(metric: str) -> str:
    """A learning-curve metric in words with its unit (:data:`METRIC_LABELS`; an unknown id made readable)."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    _, _, name = metric.rpartition("/")
    return name.replace("_", " ").capitalize()


def format_value(kpi: str, value: float) -> str:
    """A KPI value as the report shows it: shares in %, cost per euro in cents, euros without decimals."""
    if not math.isfinite(value):
        return "n/a"
    if kpi.endswith("_rate"):
        return f"{value * 100:.1f} %"
    if kpi == "cost_per_eur_collected":
        return f"{value * 100:.2f} ct"
    if kpi == "recovered_share":
        return f"{value * 100:.1f} %"
    if kpi in _EURO_KPIS:
        return f"{value:,.0f} EUR"
    if kpi == "mean_days_to_completion":
        return f"{value:.0f} days"
    return f"{value:.2f}"


def format_diff(kpi: str, value: float) -> str:
    """A difference to the baseline (signed): shares in percentage points, cost per euro in cents."""
    if not math.isfinite(value):
        return "n/a"
    if kpi.endswith("_rate"):
        return f"{value * 100:+.1f} pp"
    if kpi == "cost_per_eur_collected":
        return f"{value * 100:+.2f} ct"
    if kpi == "recovered_share":
        return f"{value * 100:+.1f} pp"
    if kpi in _EURO_KPIS:
        return f"{value:+,.0f} EUR"
    if kpi == "mean_days_to_completion":
        return f"{value:+.1f} days"
    return f"{value:+.2f}"


def verdict(kpi: str, lo: float, hi: float) -> str:
    """``"better"``/``"worse"`` than the baseline when the interval ``[lo, hi]`` of the difference excludes 0 on
    one side (:data:`LOWER_IS_BETTER` decides the direction), else ``"unclear"``; always ``"unclear"`` for the
    :data:`NEUTRAL_KPIS`."""
    if kpi in NEUTRAL_KPIS or not (math.isfinite(lo) and math.isfinite(hi)):
        return "unclear"
    lower_better = kpi in LOWER_IS_BETTER
    if lo > 0:
        return "worse" if lower_better else "better"
    if hi < 0:
        return "better" if lower_better else "worse"
    return "unclear"


def _scale_unit(kpi: str) -> tuple[float, str]:
    """Factor and unit in which differences of a KPI are plotted (the units of :func:`format_diff`)."""
    if kpi.endswith("_rate") or kpi == "recovered_share":
        return 100.0, "percentage points"
    if kpi == "cost_per_eur_collected":
        return 100.0, "euro cents"
    if kpi in _EURO_KPIS:
        return 1.0, "EUR"
    if kpi == "mean_days_to_completion":
        return 1.0, "days"
    if kpi == "contacts_per_arrangement":
        return 1.0, "contacts"
    return 1.0, ""


def _num(frame: pd.DataFrame, index: Any, column: str) -> float:
    """One cell of a frame as a float."""
    return float(cast(Any, frame.at[index, column]))


def _whiskers(d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Error-bar lengths ``(2, n)`` below and above ``d`` (0 where an interval is missing)."""
    return np.clip(np.vstack([np.nan_to_num(d - lo), np.nan_to_num(hi - d)]), 0.0, None)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _grid(n: int, cols: int, panel_w: float, panel_h: float) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    fig = _figure(panel_w * cols, panel_h * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _empty(message: str) -> Figure:
    fig = _figure(6, 1.2)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11)
    return fig


def _is_share(kpi: str) -> bool:
    return kpi.endswith("_rate")


def _segment_label(segment: str) -> str:
    name, _, label = segment.partition("=")
    return f"debt {label} EUR" if name == "debt_eur" else label.replace("_", " ")
