"""The figures of the product-owner report, shared by ``report.html`` and ``notebooks/evaluation.ipynb``.

Every function takes the tables of a run folder (see :mod:`experiments.report`) and returns a
:class:`matplotlib.figure.Figure` built without ``pyplot``, so it holds no global state, works under any
backend (the report renders it with Agg) and displays inline in a notebook.

One meaning per colour (:mod:`experiments.plot_style`, re-exported here): a colour names a policy, the same
in every figure (:func:`policy_colors`), never a judgement; better and worse are the tables' business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from agents.evaluate import TABLE_KPIS, Evaluation
from agents.incidence import IncidenceCurves
from experiments.plot_style import (
    _CHANNEL_COLORS,
    KPI_LABELS,
    LOWER_IS_BETTER,
    METRIC_LABELS,
    NEUTRAL_KPIS,
    POLICY_COLORS,
    _empty,
    _figure,
    _grid,
    _num,
    _scale_unit,
    _segment_label,
    _whiskers,
    format_diff,
    format_value,
    metric_label,
    policy_colors,
    verdict,
)
from regsim.config import CHANNELS

__all__ = [
    "KPI_LABELS",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "NEUTRAL_KPIS",
    "POLICY_COLORS",
    "burden",
    "channel_mix",
    "cost_per_euro",
    "feature_importance",
    "format_diff",
    "format_value",
    "incidence",
    "kpi_bars",
    "learning_curves",
    "metric_label",
    "policy_colors",
    "portfolio",
    "queues",
    "segment_uplift",
    "send_hour_mix",
    "sweep",
    "verdict",
]


# ---------------------------------------------------------------------------------------------------------------
# Evaluation figures
# ---------------------------------------------------------------------------------------------------------------
def kpi_bars(evaluation: Evaluation, kpis: Sequence[str] = TABLE_KPIS, segment: str = "all") -> Figure:
    """One panel per KPI: each policy's difference to the baseline (bar) with its 95 % paired interval.

    A bar has its policy's colour (:func:`policy_colors`), whatever its sign: whether a difference is better or
    worse is told by the KPI table, not by the bar. The panel's title gives the baseline's own value and says
    which direction is the better one.
    """
    f = evaluation.frame[evaluation.frame["segment"] == segment]
    others = [p for p in evaluation.policies if p != evaluation.baseline]
    if not others:
        return _empty("only the baseline was evaluated: no differences to show")
    colors = policy_colors(evaluation.policies)
    present = set(f["kpi"])
    kpis = [k for k in kpis if k in present]
    fig, axes = _grid(len(kpis), 3, 4.4, 0.45 * len(others) + 1.5)
    for ax, kpi in zip(axes, kpis, strict=True):
        rows = f[f["kpi"] == kpi].set_index("policy")
        scale, unit = _scale_unit(kpi)
        y = np.arange(len(others))[::-1]
        for yi, p in zip(y, others, strict=True):
            d, lo, hi = (_num(rows, p, c) * scale for c in ("diff", "ci_low", "ci_high"))
            if math.isfinite(d):
                ax.barh(yi, d, color=colors[p], height=0.6)
                if math.isfinite(lo) and math.isfinite(hi):
                    ax.errorbar(
                        d, yi, xerr=[[max(0.0, d - lo)], [max(0.0, hi - d)]], fmt="none", ecolor="black", capsize=3
                    )
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, others)
        shown = format_value(kpi, _num(rows, evaluation.baseline, "value"))
        better = (
            "" if kpi in NEUTRAL_KPIS else ("; lower is better" if kpi in LOWER_IS_BETTER else "; higher is better")
        )
        ax.set_title(f"{KPI_LABELS.get(kpi, kpi)}\nbaseline {evaluation.baseline}: {shown}{better}", fontsize=9)
        ax.set_xlabel(f"difference to baseline ({unit})" if unit else "difference to baseline", fontsize=8)
        ax.tick_params(labelsize=8)
    return fig


def portfolio(evaluation: Evaluation, per: int = 10_000) -> Figure:
    """The portfolio in euros: net recovery of ``per`` arrangements per policy, and its difference to the baseline.

    Net recovery is collected minus contact cost, net of concessions once (``net_recovery_eur_per_arrangement``, scaled
    to ``per`` arrangements, in thousands of euros). Left: each policy's value (bar, its colour). Right: each
    policy's difference to the baseline with its 95 % paired interval (the interval of a difference is what
    the pairing measures; a value alone has no paired interval). An evaluation made before net recovery was
    measured shows the euros collected (gross) instead, and says so in the title.
    """
    kpi = "net_recovery_eur_per_arrangement"
    net = kpi in set(evaluation.frame["kpi"])
    if not net:
        kpi = "collected_eur_per_arrangement"
    f = evaluation.frame[(evaluation.frame["kpi"] == kpi) & (evaluation.frame["segment"] == "all")].set_index("policy")
    policies = evaluation.policies
    colors = policy_colors(policies)
    k = per / 1000.0  # thousands of euros per `per` arrangements
    what = "net of contact cost and concessions" if net else "collected (gross; no net recovery in this evaluation)"
    fig = _figure(12, max(2.8, 0.5 * len(policies) + 1.6))
    left, right = fig.subplots(1, 2)
    y = np.arange(len(policies))[::-1]
    for yi, p in zip(y, policies, strict=True):
        v = _num(f, p, "value") * k
        if math.isfinite(v):
            left.barh(yi, v, color=colors[p], height=0.6)
            left.text(v, yi, f"  {v:,.0f}k", va="center", fontsize=8)
    left.set_yticks(y, policies, fontsize=9)
    left.axvline(0, color="black", lw=0.8)
    left.set_xlabel(f"EUR thousand per {per:,} arrangements", fontsize=8)
    left.set_title(f"euros {what}, per {per:,} arrangements", fontsize=9)
    left.margins(x=0.25)
    others = [p for p in policies if p != evaluation.baseline]
    y2 = np.arange(len(others))[::-1]
    for yi, p in zip(y2, others, strict=True):
        d, lo, hi = (_num(f, p, c) * k for c in ("diff", "ci_low", "ci_high"))
        if not math.isfinite(d):
            continue
        err = _whiskers(np.array([d]), np.array([lo]), np.array([hi]))
        right.errorbar([d], [yi], xerr=err, fmt="o", color=colors[p], capsize=4, ms=7)
        label = f"{d:+,.0f}k [{lo:+,.0f}k, {hi:+,.0f}k]" if math.isfinite(lo) else f"{d:+,.0f}k"
        right.annotate(label, (d, yi), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8)
    right.axvline(0, color="black", lw=0.8)
    right.set_yticks(y2, others, fontsize=9)
    right.set_ylim(-0.7, max(0.7, len(others) - 0.3))
    right.set_xlabel(f"difference to {evaluation.baseline}, EUR thousand per {per:,} arrangements", fontsize=8)
    right.set_title(f"difference to {evaluation.baseline} [95 % paired interval]", fontsize=9)
    right.grid(axis="x", alpha=0.3)
    return fig


def incidence(curves: IncidenceCurves, ends: Sequence[str] = ("completed", "broken")) -> Figure:
    """One panel per end (completion, breakdown): its cumulative incidence over months since the start, per policy.

    ``curves`` are the Aalen-Johansen estimates of :func:`agents.incidence.cumulative_incidence` (competing ends,
    censoring at the run-off cap handled); one line per policy in its colour (:func:`policy_colors`), the band
    its pointwise confidence interval. A verdict at any horizon reads from the curves at that month.
    """
    colors = policy_colors(curves.policies)
    fig, axes = _grid(len(ends), 2, 6.2, 3.6)
    words = {"completed": "completed", "broken": "broken down", "referred": "referred"}
    for ax, end in zip(axes, ends, strict=True):
        for p in curves.policies:
            c = curves.curve(p, end)
            m = c["months"].to_numpy(np.float64)
            ax.step(m, c["incidence"].to_numpy(np.float64) * 100, where="post", color=colors[p], label=p, lw=1.5)
            ax.fill_between(
                m,
                c["ci_low"].to_numpy(np.float64) * 100,
                c["ci_high"].to_numpy(np.float64) * 100,
                step="post",
                color=colors[p],
                alpha=0.2,
                lw=0,
            )
        ax.set_title(f"arrangements {words.get(end, end)} by then", fontsize=10)
        ax.set_xlabel("months since the arrangement started", fontsize=8)
        ax.set_ylabel("share of arrangements (%)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=8, loc="upper left")
    return fig


def segment_uplift(evaluation: Evaluation, kpi: str = "completion_rate") -> Figure:
    """Each policy's difference to the baseline on one KPI per segment, with its 95 % paired interval.

    Left: hidden debtor types (simulation only); right: observable debt bands. Points are offset vertically
    by policy; a point right of the zero line is an increase of the KPI.
    """
    others = [p for p in evaluation.policies if p != evaluation.baseline]
    families = [
        (
            "debtor type (hidden: known to the simulator only)",
            [s for s in evaluation.segments if s.startswith("debtor_type=")],
        ),
        ("debt size (observable)", [s for s in evaluation.segments if s.startswith("debt_eur=")]),
    ]
    families = [(t, segs) for t, segs in families if segs]
    if not others or not families:
        return _empty("no segments or no policy besides the baseline: nothing to show")
    colors = policy_colors(evaluation.policies)
    f = evaluation.frame[evaluation.frame["kpi"] == kpi].set_index(["policy", "segment"])
    scale, unit = _scale_unit(kpi)
    n_rows = max(len(segs) for _, segs in families)
    fig = _figure(5.6 * len(families), 0.35 * n_rows * max(1, len(others)) ** 0.5 + 1.6)
    axes = np.atleast_1d(fig.subplots(1, len(families), squeeze=False)).ravel()
    # The first policy on top within each segment's row, as in the legend.
    offsets = np.linspace(0.25, -0.25, len(others)) if len(others) > 1 else np.zeros(1)
    for ax, (title, segs) in zip(axes, families, strict=True):
        y = np.arange(len(segs))[::-1].astype(float)
        for off, p in zip(offsets, others, strict=True):
            d = np.array([_num(f, (p, s), "diff") for s in segs]) * scale
            lo = np.array([_num(f, (p, s), "ci_low") for s in segs]) * scale
            hi = np.array([_num(f, (p, s), "ci_high") for s in segs]) * scale
            err = _whiskers(d, lo, hi)
            ax.errorbar(d, y + off, xerr=err, fmt="o", color=colors[p], capsize=3, label=p, ms=5)
        ax.axvline(0, color="black", lw=0.8)
        n = [int(_num(f, (evaluation.baseline, s), "n_arrangements")) for s in segs]
        ax.set_yticks(y, [f"{_segment_label(s)}\n(n={k:,})" for s, k in zip(segs, n, strict=True)], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"{KPI_LABELS.get(kpi, kpi)}: difference to {evaluation.baseline} ({unit})", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].legend(fontsize=8, loc="best")
    return fig


def cost_per_euro(evaluation: Evaluation) -> Figure:
    """Contact cost per euro collected: each policy overall (left) and per segment (right), in euro cents.

    Bars are the policies' values (lower is cheaper); the left panel writes each policy's difference to the
    baseline and its 95 % paired interval next to its bar.
    """
    kpi = "cost_per_eur_collected"
    f = evaluation.frame[evaluation.frame["kpi"] == kpi]
    colors = policy_colors(evaluation.policies)
    policies = evaluation.policies
    segs = [s for s in evaluation.segments if s != "all"]
    fig = _figure(13, max(3.2, 0.45 * len(policies) + 1.6))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.6])
    overall = f[f["segment"] == "all"].set_index("policy")
    y = np.arange(len(policies))[::-1]
    for yi, p in zip(y, policies, strict=True):
        v = _num(overall, p, "value") * 100
        if math.isfinite(v):
            left.barh(yi, v, color=colors[p])
        if p == evaluation.baseline:
            note = "baseline"
        else:
            d, lo, hi = (_num(overall, p, c) * 100 for c in ("diff", "ci_low", "ci_high"))
            note = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(d) else "n/a"
        left.text(v if math.isfinite(v) else 0, yi, f"  {note}", va="center", fontsize=8)
    left.set_yticks(y, policies, fontsize=8)
    left.set_xlabel("cents of contact cost per euro collected (all arrangements)", fontsize=8)
    left.set_title("overall, difference to baseline [95 % interval] in cents", fontsize=9)
    xmax = float(np.nanmax(overall["value"].to_numpy(np.float64)) * 100) if len(overall) else 1.0
    left.set_xlim(0, (xmax if math.isfinite(xmax) and xmax > 0 else 1.0) * 1.6)
    if segs:
        by = f.set_index(["policy", "segment"])
        x = np.arange(len(segs))
        width = 0.8 / len(policies)
        for k, p in enumerate(policies):
            cents = np.array([_num(by, (p, s), "value") for s in segs]) * 100
            right.bar(x + (k - (len(policies) - 1) / 2) * width, cents, width, color=colors[p], label=p)
        right.set_xticks(x, [_segment_label(s) for s in segs], rotation=30, ha="right", fontsize=8)
        right.set_ylabel("cents per euro collected", fontsize=8)
        right.set_title("by segment (debtor types hidden; debt bands observable)", fontsize=9)
        right.legend(fontsize=7, ncols=2)
    else:
        right.axis("off")
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Per-run details (experiments.analysis.RunDetails)
# ---------------------------------------------------------------------------------------------------------------
def burden(outcomes: pd.DataFrame, policies: Sequence[str] | None = None, baseline: str | None = None) -> Figure:
    """Contacts per debtor: the distribution (left) and the mean by channel (right), per policy.

    Left: share of arrangements that received 0, 1, 2, ... contacts over the horizon (the last bin holds the
    long tail); right: the average number of contacts per arrangement, split by channel.
    """
    if outcomes.empty:
        return _empty("no outcomes recorded")
    order = list(policies) if policies is not None else list(dict.fromkeys(outcomes["policy"]))
    colors = policy_colors(order)
    fig = _figure(13, 4.2)
    left, right = fig.subplots(1, 2)
    top = max(1, int(np.ceil(np.quantile(outcomes["contacts"].to_numpy(), 0.99))))
    edges = np.arange(top + 3) - 0.5  # one bin per count 0..top, and a last one for top + 1 or more
    for p in order:
        counts = outcomes.loc[outcomes["policy"] == p, "contacts"].to_numpy()
        if not len(counts):
            continue
        share = np.bincount(np.minimum(counts, top + 1).astype(np.int64), minlength=top + 2)[: top + 2] / len(counts)
        left.stairs(share * 100, edges, color=colors[p], label=f"{p} (mean {counts.mean():.1f})", lw=1.6)
    left.set_xlabel(f"contacts per arrangement over the horizon (last bin: {top + 1} or more)", fontsize=8)
    left.set_ylabel("% of arrangements", fontsize=8)
    left.set_title("how many times debtors were contacted", fontsize=9)
    left.legend(fontsize=8)
    means = outcomes.groupby("policy")[[f"contacts_{c}" for c in CHANNELS]].mean().reindex(order)
    y = np.arange(len(order))[::-1]
    start = np.zeros(len(order))
    for c in CHANNELS:
        width = means[f"contacts_{c}"].to_numpy(np.float64)
        right.barh(y, width, left=start, color=_CHANNEL_COLORS[c], label=c)
        start += width
    right.set_yticks(y, order, fontsize=8)
    right.set_xlabel("mean contacts per arrangement", fontsize=8)
    right.set_title("by channel", fontsize=9)
    right.legend(fontsize=8, ncols=len(CHANNELS), loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return fig


def _segment_order(values: Sequence[str], kind: str) -> list[str]:
    if kind == "debt_band":
        known = ["<500", "500-1500", ">1500"]
        return [v for v in known if v in values] + sorted(v for v in values if v not in known)
    return sorted(values)


def channel_mix(mix: pd.DataFrame, policies: Sequence[str] | None = None) -> Figure:
    """For each policy, the channels of its messages per segment: stacked bars of the share of messages.

    Rows of each panel are the hidden debtor types and the observable debt bands, each labelled with its
    number of messages; a policy that sent nothing says so.
    """
    order = list(policies) if policies is not None else list(dict.fromkeys(mix["policy"]))
    sending = [p for p in order if mix.loc[mix["policy"] == p, "messages"].sum() > 0]
    if not sending:
        return _empty("no policy sent messages")
    fig, axes = _grid(len(sending), 2, 6.2, 3.4)
    quiet = [p for p in order if p not in sending]
    if quiet:
        fig.suptitle(f"sent no messages: {', '.join(quiet)}", fontsize=9)
    for ax, p in zip(axes, sending, strict=True):
        m = mix[mix["policy"] == p]
        ax.set_title(p, fontsize=10)
        rows: list[tuple[str, pd.Series]] = []
        for kind, label in (("debtor_type", "type"), ("debt_band", "debt")):
            for value in _segment_order(m[kind].unique().tolist(), kind):
                counts = m[m[kind] == value].groupby("channel")["messages"].sum()
                rows.append((f"{label}: {value.replace('_', ' ')}", counts.reindex(list(CHANNELS), fill_value=0)))
        y = np.arange(len(rows))[::-1]
        start = np.zeros(len(rows))
        totals = np.array([float(c.sum()) for _, c in rows])
        for ch in CHANNELS:
            share = np.array([float(c[ch]) for _, c in rows]) / np.maximum(totals, 1) * 100
            ax.barh(y, share, left=start, color=_CHANNEL_COLORS[ch], label=ch)
            start += share
        ax.set_yticks(y, [f"{name} ({int(t):,})" for (name, _), t in zip(rows, totals, strict=True)], fontsize=7)
        ax.set_xlim(0, 100)
        ax.set_xlabel("% of the segment's messages", fontsize=8)
    handles = [Rectangle((0, 0), 1, 1, color=_CHANNEL_COLORS[c]) for c in CHANNELS]
    fig.legend(handles, list(CHANNELS), loc="outside lower center", ncols=len(CHANNELS), fontsize=8)
    return fig


def send_hour_mix(mix: pd.DataFrame, policies: Sequence[str] | None = None) -> Figure:
    """For each policy, when in the day its messages are sent: share of a segment's messages per hour.

    One row of panels per policy; left: hidden debtor types, right: observable debt bands. Bars are side by
    side per hour, one colour per segment.
    """
    order = list(policies) if policies is not None else list(dict.fromkeys(mix["policy"]))
    sending = [p for p in order if mix.loc[mix["policy"] == p, "messages"].sum() > 0]
    if not sending:
        return _empty("no policy sent messages")
    sent_hours = mix.loc[mix["messages"] > 0, "hour"].to_numpy()
    # Only the hours in which anything is sent, widened to a working day, so that the bars stay readable.
    hours = np.arange(min(8, int(sent_hours.min())), max(20, int(sent_hours.max())) + 1)
    fig = _figure(13, 2.6 * len(sending) + 0.6)
    axes = np.atleast_2d(fig.subplots(len(sending), 2, squeeze=False))
    for row, p in zip(axes, sending, strict=True):
        m = mix[mix["policy"] == p]
        for ax, kind, title in ((row[0], "debtor_type", "debtor type (hidden)"), (row[1], "debt_band", "debt band")):
            values = _segment_order(m[kind].unique().tolist(), kind)
            width = 0.8 / max(1, len(values))
            for k, v in enumerate(values):
                counts = m[m[kind] == v].groupby("hour")["messages"].sum().reindex(hours, fill_value=0)
                share = counts.to_numpy(np.float64) / max(1.0, float(counts.sum())) * 100
                ax.bar(hours + (k - (len(values) - 1) / 2) * width, share, width, label=v.replace("_", " "))
            ax.set_xticks(hours, [f"{h:02d}" for h in hours], fontsize=7)
            ax.set_xlim(hours[0] - 0.6, hours[-1] + 0.6)
            ax.set_ylim(0, 100)
            ax.set_ylabel("% of messages", fontsize=8)
            ax.set_title(f"{p}: by {title}", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        row[0].set_xlabel("hour of the day the message is sent", fontsize=8)
        row[1].set_xlabel("hour of the day the message is sent", fontsize=8)
    return fig


def queues(resources: pd.DataFrame, policies: Sequence[str] | None = None, baseline: str | None = None) -> Figure:
    """Queue length of each shared resource over the horizon, per policy (mean over seeds at each sample).

    A queue is work waiting for the resource (calls for a collector or a robocall line, letters for the print
    room); the panel's title gives the resource's capacity.
    """
    if resources.empty:
        return _empty("no queue samples recorded")
    order = list(policies) if policies is not None else list(dict.fromkeys(resources["policy"]))
    colors = policy_colors(order)
    names = list(dict.fromkeys(resources["resource"]))
    fig, axes = _grid(len(names), 3, 4.4, 3.0)
    for ax, name in zip(axes, names, strict=True):
        r = resources[resources["resource"] == name]
        for p in order:
            s = r[r["policy"] == p].groupby("time")["queued"].mean()
            if len(s):
                ax.plot(s.index.to_numpy(), s.to_numpy(), color=colors[p], label=p, lw=1.2)
        caps = r.groupby("policy", sort=False)["capacity"].max()
        cap = (
            f"{int(caps.iloc[0]):,}" if caps.nunique() == 1 else ", ".join(f"{p}: {int(c):,}" for p, c in caps.items())
        )
        peak = float(r["queued"].max())
        ax.set_ylim(0, max(1.0, peak * 1.1))
        if peak == 0:
            ax.text(0.5, 0.5, "nothing ever waited", transform=ax.transAxes, ha="center", fontsize=9, color="#555")
        ax.set_title(f"{name.replace('_', ' ')} (capacity {cap})", fontsize=9)
        ax.set_xlabel("day of the simulation", fontsize=8)
        ax.set_ylabel("waiting in queue", fontsize=8)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=7)
    return fig


# ---------------------------------------------------------------------------------------------------------------
# Training and learned policies
# ---------------------------------------------------------------------------------------------------------------
def learning_curves(curves: Mapping[str, pd.DataFrame], max_metrics: int = 3, policies: Sequence[str] = ()) -> Figure:
    """One row per trained agent: ``reward_per_decision`` first, then up to ``max_metrics - 1`` other metrics.

    Each panel plots a metric of ``learning_curve.parquet`` (columns ``step``, ``metric``, ``value``) against
    the number of training decisions, titled and labelled in words with its unit (:func:`metric_label`), in
    the agent's colour (:func:`policy_colors` of ``policies``, the run's policy list, then the agents: an agent
    is evaluated under its own name).
    """
    if not curves:
        return _empty("no trained agents: no learning curves")
    rows = []
    for agent, frame in curves.items():
        metrics = list(dict.fromkeys(frame["metric"].astype(str)))
        metrics.sort(key=lambda m: (m != "reward_per_decision", m))
        rows.append((agent, frame, metrics[:max_metrics]))
    cols = max(len(m) for _, _, m in rows)
    colors = policy_colors([*policies, *curves])
    fig = _figure(4.4 * cols, 2.9 * len(rows))
    axes = np.atleast_2d(fig.subplots(len(rows), cols, squeeze=False))
    for k, (agent, frame, metrics) in enumerate(rows):
        for j in range(cols):
            ax = axes[k, j]
            if j >= len(metrics):
                ax.set_visible(False)
                continue
            m = frame[frame["metric"].astype(str) == metrics[j]].sort_values("step")
            ax.plot(
                m["step"].to_numpy(),
                m["value"].to_numpy(),
                marker="o" if len(m) < 30 else None,
                ms=3,
                color=colors[agent],
            )
            ax.set_title(f"{agent}: {metric_label(metrics[j])}", fontsize=9)
            label = metric_label(metrics[j])
            ax.set_ylabel(label[label.rfind("(") + 1 : -1] if label.endswith(")") else "", fontsize=8)
            ax.set_xlabel("Decisions trained", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    return fig


def feature_importance(importance: pd.DataFrame, top: int = 12, policies: Sequence[str] = ()) -> Figure:
    """Per learned policy, its ``top`` most important features (share of decisions that change when the
    feature is shuffled across decisions; see :func:`experiments.analysis.feature_importance`)."""
    if importance.empty:
        return _empty("no feature importance recorded")
    order = list(dict.fromkeys(importance["policy"]))
    colors = policy_colors([*policies, *order])
    fig, axes = _grid(len(order), 2, 6.2, 0.28 * top + 1.2)
    xmax = min(100.0, max(5.0, float(importance["importance"].max()) * 100 * 1.15))
    for ax, p in zip(axes, order, strict=True):
        f = importance[importance["policy"] == p].sort_values("rank", kind="stable").head(top)
        y = np.arange(len(f))[::-1]
        ax.barh(y, f["importance"].to_numpy(np.float64) * 100, color=colors[p])
        ax.set_yticks(y, f["feature"].astype(str).tolist(), fontsize=8)
        ax.set_xlabel("% of decisions that change when the feature is shuffled", fontsize=8)
        ax.set_title(p, fontsize=10)
        ax.set_xlim(0, xmax)
    return fig


def sweep(table: pd.DataFrame, kpi: str = "completion_rate", baseline: str | None = None) -> Figure:
    """A sweep's KPI difference to the baseline against each swept parameter, per policy, with intervals.

    ``table`` is ``sweep.parquet`` (one row per trial, policy and KPI; parameters in ``param.*`` columns, the
    trial's top seed in ``seed``). Every trial is one point; trials with the same value and another seed sit
    side by side. The ``baseline`` (difference 0 by definition) is left out.
    """
    params = [c for c in table.columns if c.startswith("param.")]
    t = table[(table["kpi"] == kpi) & (table["policy"] != baseline)]
    if t.empty or not params:
        return _empty(f"no sweep rows for {kpi}")
    order = list(dict.fromkeys(t["policy"]))
    colors = policy_colors(order)
    seeds = sorted(set(t["seed"].tolist())) if "seed" in t else [0]
    fig, axes = _grid(len(params), 2, 6.0, 3.4)
    scale, unit = _scale_unit(kpi)
    width = 0.6 / max(1, len(order) * len(seeds))
    for ax, param in zip(axes, params, strict=True):
        values = list(dict.fromkeys(t[param].tolist()))
        numeric = all(isinstance(v, int | float | np.integer | np.floating) for v in values)
        if numeric:
            values = sorted(values)
        xpos = {v: i for i, v in enumerate(values)}
        for k, p in enumerate(order):
            for j, seed in enumerate(seeds):
                r = t[(t["policy"] == p) & ((t["seed"] == seed) if "seed" in t else True)]
                if r.empty:
                    continue
                slot = k * len(seeds) + j - (len(order) * len(seeds) - 1) / 2
                x = np.array([xpos[v] for v in r[param]], dtype=float) + slot * width
                d = r["diff"].to_numpy(np.float64) * scale
                lo = r["ci_low"].to_numpy(np.float64) * scale
                hi = r["ci_high"].to_numpy(np.float64) * scale
                err = _whiskers(d, lo, hi)
                ax.errorbar(
                    x, d, yerr=err, fmt="os"[j % 2], color=colors[p], capsize=3, ms=4, label=f"{p}, seed {seed}"
                )
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(range(len(values)), [f"{v:g}" if numeric else str(v) for v in values], fontsize=8)
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_xlabel(param.removeprefix("param."), fontsize=8)
        ax.set_ylabel(f"{KPI_LABELS.get(kpi, kpi)}\nvs baseline ({unit})", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig
