"""The sections of the product-owner report, each a function of a :class:`~experiments.run_folder.RunData`.

One function per section of :data:`experiments.report.SECTION_IDS`: the question and the answer in short, the
set-up, the KPI table, the figures of :mod:`experiments.plots` with a plain-words reading guide each, uplift per
segment, feature importance and (for a sweep) the results by parameter value. A section whose input is missing
says so in a sentence instead. :func:`experiments.report.render_report` puts them on the page.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import yaml

from agents.evaluate import Evaluation
from agents.incidence import cumulative_incidence
from agents.registry import available
from experiments import plots
from experiments.plot_style import _segment_label, format_diff, format_value, verdict
from experiments.report_html import _e, _img, _missing, _p, _section
from experiments.run_folder import RunData, _trial_column, sweep_kpi
from experiments.verdict import PER_ARRANGEMENTS, euro_kpi, verdict_text
from regsim.features import FEATURE_LAYOUT

__all__ = ["REPORT_KPIS", "SEGMENT_KPIS", "SUMMARY_KPIS"]

#: KPIs of the key-figures table and the differences figure, in order (those the evaluation has).
REPORT_KPIS: tuple[str, ...] = (
    "completion_rate",
    "net_recovery_eur_per_arrangement",
    "recovered_share",
    "on_time_installment_rate",
    "breakdown_rate",
    "contacts_per_arrangement",
    "collected_eur_per_arrangement",
    "cost_per_eur_collected",
    "censored_rate",
)

#: The KPIs the verdict speaks of (kept for callers of the former one-line-per-policy summary).
SUMMARY_KPIS: tuple[str, ...] = ("completion_rate", "net_recovery_eur_per_arrangement")

#: KPIs whose differences are shown per segment (tables of the segment-uplift section), those the evaluation has;
#: without net recovery (an older evaluation) the euros collected stand in.
SEGMENT_KPIS: tuple[str, ...] = (
    "completion_rate",
    "net_recovery_eur_per_arrangement",
    "collected_eur_per_arrangement",
    "contacts_per_arrangement",
)


def _present(ev: Evaluation, kpis: Sequence[str]) -> list[str]:
    have = set(ev.frame["kpi"])
    return [k for k in kpis if k in have]


def _segment_kpis(ev: Evaluation) -> list[str]:
    kpis = _present(ev, SEGMENT_KPIS)
    if "net_recovery_eur_per_arrangement" in kpis:
        kpis.remove("collected_eur_per_arrangement")
    return kpis


_GROUP_DESCRIPTIONS = {
    "decision_kind": "which kind of decision point it is (plan offered, before a due date, after a miss, ...)",
    "weekday": "day of the week of the decision",
}


def _summary(data: RunData) -> str:
    cfg = data.config
    question = cfg.get("question") or "How do the evaluated policies compare with the baseline?"
    parts = [f'<p class="question">{_e(question)}</p>']
    ev = data.evaluation
    if data.best_trial is not None:
        parts.append(_p(f"This is a sweep; the sections below show its best trial, <b>{_e(data.best_trial)}</b>."))
    if ev is None:
        parts.append('<p class="missing">This run folder holds no evaluation, so there is nothing to summarise.</p>')
        return _section("summary", "The question and the answer in short", *parts)
    parts.append(f'<p class="verdict" id="verdict">{_e(verdict_text(ev))}</p>')
    parts.append(
        _p(
            "Every number is a difference to the baseline measured on the same simulated debtors (paired), with "
            "its 95 % interval; a difference is called significant when that interval excludes zero. The key "
            "figures below give every KPI; the caveat says how far the simulated world is true to its facts."
        )
    )
    open_kpi = "censored_rate" if ev.meta.get("runoff") is not None else "active_rate"
    try:
        open_share = float(ev.row(ev.baseline, open_kpi)["value"])
    except KeyError:
        open_share = math.nan
    if math.isfinite(open_share) and open_share > 0.2:
        when = "at the run-off cap" if open_kpi == "censored_rate" else f"after {_e(ev.meta.get('months', '?'))} months"
        parts.append(
            _p(
                f"<b>Read with care:</b> {format_value(open_kpi, open_share)} of the arrangements under the "
                f"baseline are still open {when}, so completion rates say little yet; euros and installments "
                "paid on time are the better guides."
            )
        )
    return _section("summary", "The question and the answer in short", *parts)


def _portfolio(data: RunData) -> str:
    ev = data.evaluation
    if ev is None:
        return _missing("portfolio", "The portfolio in euros", "No evaluation in this run folder.")
    net = "net_recovery_eur_per_arrangement" in set(ev.frame["kpi"])
    what = (
        "collected minus contact cost (emails, SMS, letters, calls); collected is net of concessions (discounts, "
        "waived costs), which come off what the debtor owes"
        if net
        else "collected (gross: this evaluation was made before net recovery was measured)"
    )
    return _section(
        "portfolio",
        f"The portfolio in euros: per {PER_ARRANGEMENTS:,} arrangements",
        _p(
            f"What a portfolio of {PER_ARRANGEMENTS:,} arrangements brings in under each policy, in thousands of "
            f"euros {_e(what)}. Left: each policy's total. Right: its difference to the baseline "
            f"<b>{_e(ev.baseline)}</b> with the 95 % paired interval; a point right of the line is more money. "
            "Colours name policies (the same in every figure), not better or worse."
        ),
        _img(plots.portfolio(ev, PER_ARRANGEMENTS), "net recovery per 10,000 arrangements per policy"),
    )


def _caveat(data: RunData) -> str:
    facts = data.facts
    parts = [
        _p(
            "<b>The world is simulated.</b> Every debtor, payment, read message and breakdown in this report comes "
            "from regsim's model of debtors, not from real people. The model is calibrated to published facts "
            "(trials, vendor figures, collection data, the law; docs/calibration.md); a ranking here is a reason "
            "to run a real, controlled trial, not a substitute for one."
        )
    ]
    if facts is None:
        parts.append(
            '<p class="missing">This run folder has no facts.json, so the report cannot say how far this world '
            "meets its calibration facts; <code>regsim facts --population &lt;world&gt; --out &lt;this run "
            "folder&gt;</code> measures them and writes it here (then <code>regsim report</code> again).</p>"
        )
        return _section("caveat", "Caveat: a simulated world, and the facts it is calibrated to", *parts)
    missed = [f for f in facts if not f.in_range]
    if missed:
        names = "; ".join(
            f"{_e(f.id)} ({_e(f.fact)}: simulated {_fact_number(f.sim_value)}, source {_e(f.source_value)})"
            for f in missed
        )
        parts.append(_p(f"<b>Facts this world does not meet ({len(missed)} of {len(facts)}):</b> {names}."))
    else:
        parts.append(_p(f"This world meets all {len(facts)} measured facts (each interval meets the fact's range)."))
    rows = "".join(
        f'<tr class="{"met" if f.in_range else "unmet"}"><td>{_e(f.id)}</td><td>{_e(f.fact)}</td>'
        f"<td>{_e(f.source_value)}</td><td>{_fact_number(f.sim_value)}</td>"
        f"<td>[{_fact_number(f.ci_low)}, {_fact_number(f.ci_high)}]</td>"
        f'<td class="{"better" if f.in_range else "worse"}">{"yes" if f.in_range else "no"}</td></tr>'
        for f in facts
    )
    parts.append(
        "<table class='plain facts'><tr><th>fact</th><th>what is measured</th><th>source</th><th>simulated</th>"
        f"<th>95 % interval</th><th>met</th></tr>{rows}</table>"
    )
    parts.append(
        _p(
            "A fact is met when the simulated value's 95 % interval meets the source's range. Shares are shown "
            "as fractions (0.07 = 7 points); the letters' delay in days."
        )
    )
    return _section("caveat", "Caveat: a simulated world, and the facts it is calibrated to", *parts)


def _fact_number(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else "n/a"


def _describe_policy(name: str, cfg: dict[str, Any], baseline: str | None) -> str:
    agents_cfg = {a.get("name"): a for a in cfg.get("agents") or [] if isinstance(a, dict)}
    if name in agents_cfg:
        a = agents_cfg[name]
        train = a.get("train") or {}
        steps = train.get("steps")
        env = cfg.get("env") or {}
        budget = f"trained for {int(steps):,} decisions" if steps is not None else "trained"
        reward = f" with the reward <code>{_e(env['reward'])}</code>" if env.get("reward") else ""
        text = f"a learned policy ({_e(a.get('kind', '?'))}), {budget}{reward} in the simulator"
    else:
        spec = available().get(name)
        text = _e(spec.summary) if spec is not None else "a policy from an artifact folder"
    role = " <b>(baseline: every difference is taken to it)</b>" if name == baseline else ""
    return f"<li><b>{_e(name)}</b>: {text}{role}</li>"


def _setup(data: RunData) -> str:
    cfg, run, ev = data.config, data.run, data.evaluation
    parts = []
    if ev is not None:
        meta = ev.meta
        seeds = list(meta.get("seeds", []))
        n = int(meta.get("arrangements_per_seed", 0))
        months = meta.get("months")
        runoff = meta.get("runoff")
        if months is None and runoff is not None:
            horizon = (
                "<b>to each arrangement's end</b> (completed, broken or referred; a run-off, capped at the plan's "
                f"length + {_e(runoff.get('months_after_plan', '?'))} months)"
            )
            still_open = "Arrangements still open at their cap are censored there (counted as neither ended way)."
        else:
            horizon = f"for <b>{_e(months if months is not None else '?')} months</b>"
            still_open = "Arrangements still open at the end of the horizon count as neither completed nor broken."
        parts.append(
            _p(
                f"Each policy managed the same <b>{n:,}</b> payment arrangements per run {horizon} "
                f"in the simulated population <b>{_e(meta.get('population', '?'))}</b>, in "
                f"<b>{len(seeds)}</b> independent run(s) (seeds {_e(', '.join(map(str, seeds)))}): "
                f"{n * len(seeds):,} arrangements per policy in all. Every policy faced the same debtors, incomes "
                "and shocks (common random numbers), so differences are measured arrangement by arrangement "
                f"(paired); the intervals are {float(meta.get('level', 0.95)):.0%} intervals of those paired "
                f"differences. {still_open}"
            )
        )
        oracle = meta.get("hindsight_oracle")
        if isinstance(oracle, dict):
            parts.append(
                _p(
                    f"<b>{_e(oracle.get('name', ev.oracle))}</b> is an upper reference, not a policy one could "
                    "deploy: with hindsight of each debtor's random numbers it plays candidate actions forward and "
                    f"keeps the best by {_e(oracle.get('objective', 'the run-off value'))}. Its compute: "
                    f"{float(oracle.get('wall_s', math.nan)):,.1f} s, {int(oracle.get('lives_simulated', 0)):,} "
                    "simulated lives. The share of the gap closed is taken against it only."
                )
            )
        parts.append("<p>The policies:</p><ul>")
        parts.extend(_describe_policy(p, cfg, ev.baseline) for p in ev.policies)
        parts.append("</ul>")
    else:
        parts.append('<p class="missing">This run folder holds no evaluation (evaluation/evaluation.parquet).</p>')
    rows = []
    for label, key in (
        ("command", "command"),
        ("seed", "seed"),
        ("status", "status"),
        ("started", "started"),
        ("finished", "finished"),
        ("wall time (s)", "wall_seconds"),
        ("python", "python"),
        ("platform", "platform"),
    ):
        if key in run and run[key] is not None:
            value = " ".join(map(str, run[key])) if isinstance(run[key], list) else run[key]
            if key == "wall_seconds":
                value = f"{float(value):,.1f}"
            if key == "status" and value == "running":
                value = "running (the report was written before the run was marked finished)"
            rows.append(f"<tr><th>{_e(label)}</th><td><code>{_e(value)}</code></td></tr>")
    git = run.get("git") or {}
    if git:
        dirty = {True: " (uncommitted changes)", False: "", None: ""}.get(git.get("dirty"), "")
        rows.append(f"<tr><th>git commit</th><td><code>{_e(git.get('commit') or 'unknown')}</code>{dirty}</td></tr>")
    if rows:
        parts.append("<p>How it was made (for reproducing it):</p><table class='plain'>" + "".join(rows) + "</table>")
    if run.get("seeds"):
        parts.append(
            "<details><summary>All derived seeds</summary><pre>"
            + _e(json.dumps(run["seeds"], indent=2))
            + "</pre></details>"
        )
    if run.get("packages"):
        pk = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in sorted(run["packages"].items()))
        parts.append(f"<details><summary>Package versions</summary><table class='plain'>{pk}</table></details>")
    if cfg:
        parts.append(
            "<details><summary>The resolved experiment config (config.yaml)</summary><pre>"
            + _e(yaml.safe_dump(cfg, sort_keys=False))
            + "</pre></details>"
        )
    return _section("setup", "The set-up", *parts)


def _kpi_cell(ev: Evaluation, policy: str, kpi: str, segment: str = "all", show_value: bool = True) -> str:
    r = ev.row(policy, kpi, segment)
    value, diff, lo, hi = (float(r[c]) for c in ("value", "diff", "ci_low", "ci_high"))
    attrs = (
        f'data-policy="{_e(policy)}" data-kpi="{_e(kpi)}" data-segment="{_e(segment)}" '
        f'data-value="{value!r}" data-diff="{diff!r}" data-ci-low="{lo!r}" data-ci-high="{hi!r}"'
    )
    top = f'<span class="value">{format_value(kpi, value)}</span>' if show_value else ""
    if policy == ev.baseline:
        return f'<td {attrs}>{top}<br><span class="note">baseline</span></td>'
    judged = verdict(kpi, lo, hi)
    diff_text = (
        f'<span class="diff {judged}">{format_diff(kpi, diff)} [{format_diff(kpi, lo)}, {format_diff(kpi, hi)}]</span>'
    )
    return f"<td {attrs}>{top}{'<br>' if show_value else ''}{diff_text}</td>"


def _kpi_table(data: RunData, kpis: Sequence[str] = REPORT_KPIS) -> str:
    ev = data.evaluation
    if ev is None:
        return _missing("kpi-table", "Key figures", "No evaluation in this run folder: no KPI table.")
    kpis = _present(ev, kpis)
    gap_kpi = euro_kpi(ev)  # the oracle maximises the run-off value: net recovery plus a completion bonus
    head = "".join(f"<th>{_e(plots.KPI_LABELS.get(k, k))}</th>" for k in kpis)
    if ev.oracle is not None:
        head += f"<th>gap to {_e(ev.oracle)} closed ({_e(plots.KPI_LABELS.get(gap_kpi, gap_kpi))})</th>"
    body = []
    for p in ev.policies:
        cells = "".join(_kpi_cell(ev, p, k) for k in kpis)
        if ev.oracle is not None:
            g = float(ev.row(p, gap_kpi)["gap_closed"])
            cells += f"<td>{'n/a' if not math.isfinite(g) else f'{g:.0%}'}</td>"
        body.append(f"<tr><th>{_e(p)}</th>{cells}</tr>")
    table = f'<table class="kpi"><tr><th>policy</th>{head}</tr>{"".join(body)}</table>'
    return _section(
        "kpi-table",
        "Key figures",
        _p(
            "Each cell shows the policy's value over all arrangements and, below it, its difference to the "
            f"baseline <b>{_e(ev.baseline)}</b> with the 95 % interval in brackets. Green: better than the "
            "baseline (the whole interval on the good side of zero); red: worse; grey: not distinguishable. "
            "For contacts, cost, breakdowns and days, lower is better, so a decrease is green. The share still "
            "open at the cap is never coloured: it says how much the evaluation could follow, not how good a "
            "policy is. Shares are in %, their differences in percentage points (pp); cost per euro collected in "
            "euro cents (ct)."
        ),
        table,
    )


def _kpi_bars(data: RunData) -> str:
    ev = data.evaluation
    if ev is None:
        return _missing("kpi-bars", "Differences at a glance", "No evaluation in this run folder.")
    return _section(
        "kpi-bars",
        "Differences at a glance",
        _p(
            "One panel per key figure. Each bar is a policy's difference to the baseline (the baseline's own "
            "value, and which direction is better, are in the panel title); the black whisker is the 95 % "
            "interval. A whisker that crosses the zero line means the difference could be chance. Bars have "
            "their policy's colour; whether a difference is better or worse is marked in the key figures table."
        ),
        _img(plots.kpi_bars(ev, _present(ev, REPORT_KPIS)), "differences to the baseline per KPI"),
    )


def _incidence(data: RunData) -> str:
    title = "How arrangements end, month by month"
    o = data.outcomes
    if o is None or o.empty or "end_kind" not in o.columns:
        return _missing(
            "incidence", title, "No per-arrangement ends recorded in this run folder (made before run-off)."
        )
    order = [p for p in data.policies if p in set(o["policy"])] or list(dict.fromkeys(o["policy"]))
    curves = cumulative_incidence({p: o[o["policy"] == p] for p in order})
    censored = ", ".join(f"{_e(p)} {curves.censored_share[p]:.1%}" for p in order)
    return _section(
        "incidence",
        title,
        _p(
            "The share of arrangements that have completed (left) and broken down (right) by each month since "
            "they started, one line per policy, the band its 95 % confidence interval (Aalen-Johansen: a plan "
            "that broke can no longer complete, and plans still open when no longer followed count until "
            "then). The answer at any horizon reads from the curves at that month. Still open when no longer "
            f"followed: {censored}."
        ),
        _img(plots.incidence(curves), "cumulative incidence of completion and breakdown per policy"),
    )


def _segment_table(ev: Evaluation, kpi: str) -> str:
    segs = [s for s in ev.segments if s != "all"]
    others = [p for p in ev.policies if p != ev.baseline]
    head = "".join(f"<th>{_e(p)}</th>" for p in others)
    rows = []
    for s in segs:
        n = int(ev.row(ev.baseline, kpi, s)["n_arrangements"])
        base = format_value(kpi, float(ev.row(ev.baseline, kpi, s)["value"]))
        cells = "".join(_kpi_cell(ev, p, kpi, s, show_value=False) for p in others)
        rows.append(f"<tr><th>{_e(_segment_label(s))}</th><td>{n:,}</td><td>{base}</td>{cells}</tr>")
    return (
        f"<h3>{_e(plots.KPI_LABELS.get(kpi, kpi))}: difference to {_e(ev.baseline)} [95 % interval]</h3>"
        f'<table class="kpi"><tr><th>segment</th><th>arrangements</th><th>{_e(ev.baseline)}</th>{head}</tr>'
        + "".join(rows)
        + "</table>"
    )


def _segment_uplift(data: RunData) -> str:
    ev = data.evaluation
    if ev is None or len(ev.segments) <= 1:
        return _missing("segment-uplift", "Who gains: uplift per segment", "No per-segment results in this run.")
    return _section(
        "segment-uplift",
        "Who gains: uplift per segment",
        _p(
            "The same comparison within groups of debtors. <b>Debtor type</b> is what the simulator knows about "
            "each debtor (reliable, forgetful, liquidity-constrained, shock-prone, unwilling); it is <b>hidden in "
            "production</b>, where no system can see it, and is shown here only to explain where a policy wins "
            "or loses. <b>Debt size</b> bands are observable and could be used to target a policy. Small "
            "segments have wide intervals."
        ),
        _img(plots.segment_uplift(ev, "completion_rate"), "uplift of the completion rate per segment"),
        _img(plots.segment_uplift(ev, _segment_kpis(ev)[1]), "uplift of the euros per arrangement per segment"),
        *(_segment_table(ev, k) for k in _segment_kpis(ev)),
    )


def _burden(data: RunData) -> str:
    if data.outcomes is None or data.outcomes.empty:
        return _missing("burden", "Burden on debtors: contacts per debtor", "No per-arrangement outcomes recorded.")
    return _section(
        "burden",
        "Burden on debtors: contacts per debtor",
        _p(
            "Left: how many times each debtor was contacted over the whole horizon, as a share of arrangements "
            "(a curve further left is a lighter touch; the legend gives the mean). Right: the average number of "
            "contacts per arrangement, split by channel."
        ),
        _img(plots.burden(data.outcomes, data.policies or None, data.baseline), "contacts per debtor"),
    )


def _cost(data: RunData) -> str:
    ev = data.evaluation
    if ev is None:
        return _missing("cost-per-euro", "Cost per euro collected", "No evaluation in this run folder.")
    return _section(
        "cost-per-euro",
        "Cost per euro collected",
        _p(
            "What contacting debtors costs (emails, SMS, letters, calls) per euro that comes in, in euro cents: "
            "lower is cheaper. Left: all arrangements, with each policy's difference to the baseline and its "
            "95 % interval. Right: the same per segment. A policy that never contacts anyone costs nothing, "
            "but usually collects less; read this together with the key figures."
        ),
        _img(plots.cost_per_euro(ev), "cost per euro collected"),
    )


def _channel_mix(data: RunData) -> str:
    if data.mix is None or data.mix.empty:
        return _missing("channel-mix", "Which channels each policy uses", "No message mix recorded.")
    return _section(
        "channel-mix",
        "Which channels each policy uses",
        _p(
            "One panel per policy: for each segment (debtor types, then debt bands), the share of its messages "
            "sent by email, SMS, letter, robocall and personal collector call. The number in brackets is the "
            "segment's count of messages over all runs. Differences between rows show a policy treating "
            "groups differently."
        ),
        _img(plots.channel_mix(data.mix, data.policies or None), "channel mix per policy and segment"),
    )


def _send_hour_mix(data: RunData) -> str:
    if data.mix is None or data.mix.empty:
        return _missing("send-hour-mix", "When in the day messages go out", "No message mix recorded.")
    return _section(
        "send-hour-mix",
        "When in the day messages go out",
        _p(
            "One row per policy that sends messages: the share of a segment's messages sent at each hour of "
            "the day (left: debtor types, right: debt bands). Quiet hours are enforced by the business rules, "
            "so no message goes out at night."
        ),
        _img(plots.send_hour_mix(data.mix, data.policies or None), "send-hour mix per policy and segment"),
    )


def _queues(data: RunData) -> str:
    if data.resources is None or data.resources.empty:
        return _missing("queues", "Queues at shared resources", "No queue samples recorded.")
    return _section(
        "queues",
        "Queues at shared resources",
        _p(
            "Collectors, robocall lines and the print room are shared by all debtors. Each panel shows how "
            "much work was waiting for a resource over the horizon (averaged over runs). A queue that keeps "
            "growing means a policy asks for more than the resource can do: its calls or letters go out late."
        ),
        _img(plots.queues(data.resources, data.policies or None, data.baseline), "queue lengths"),
    )


def _learning_curves(data: RunData) -> str:
    if not data.curves:
        return _missing(
            "learning-curves",
            "How the learned policies trained",
            "No agent was trained in this run, so there are no learning curves.",
        )
    return _section(
        "learning-curves",
        "How the learned policies trained",
        _p(
            "One row per trained agent: the average reward per decision while it trained, in units of EUR 100 "
            "(rising means it learned something), and further training metrics where the agent records them, "
            "against the number of decisions it has trained on. The reward is the one the agent optimises, not "
            "a KPI."
        ),
        _img(plots.learning_curves(data.curves, policies=data.policies), "learning curves"),
    )


def _feature_description(name: str) -> str:
    if name in _GROUP_DESCRIPTIONS:
        return _GROUP_DESCRIPTIONS[name]
    for f in FEATURE_LAYOUT:
        if f.name == name:
            return f.description
    return ""


def _feature_importance(data: RunData) -> str:
    fi = data.importance
    if fi is None or fi.empty:
        return _missing(
            "feature-importance",
            "What drives the learned policies' choices",
            "No learned policy was evaluated in this run, so there is no feature importance.",
        )
    tables = []
    for p in dict.fromkeys(fi["policy"]):
        top = fi[fi["policy"] == p].sort_values("rank", kind="stable").head(5)
        rows = "".join(
            f"<tr><td>{int(r['rank'])}</td><td><code>{_e(r['feature'])}</code></td>"
            f"<td>{_e(_feature_description(str(r['feature'])))}</td><td>{float(r['importance']):.0%}</td></tr>"
            for r in top.to_dict("records")
        )
        tables.append(
            f"<h3>{_e(p)}</h3><table class='plain'><tr><th>rank</th><th>feature</th><th>what it is</th>"
            f"<th>decisions changed</th></tr>{rows}</table>"
        )
    return _section(
        "feature-importance",
        "What drives the learned policies' choices",
        _p(
            "For each learned policy, the facts about an arrangement that its choices depend on most. Measured "
            "by shuffling one fact at a time across many decisions and counting how often the policy's choice "
            "(channel, send time, due day, deferral, reduction) changes: 0 % means the policy ignores it. "
            "Only observable facts are inputs; the hidden debtor type is never one."
        ),
        _img(plots.feature_importance(fi, policies=data.policies), "feature importance"),
        *tables,
    )


def _sweep(data: RunData) -> str:
    sw = data.sweep
    if sw is None:
        return ""
    trial = _trial_column(sw)
    params = [c for c in sw.columns if c.startswith("param.")]
    baseline = data.baseline or (data.config.get("evaluation") or {}).get("baseline")
    kpi = sweep_kpi(sw, baseline)
    label = plots.KPI_LABELS.get(kpi, kpi)
    t = sw[(sw["kpi"] == kpi) & (sw["policy"] != baseline)]
    rows = []
    for r in t.sort_values("diff", ascending=False, na_position="last").to_dict("records"):
        values = "".join(f"<td>{_e(r[c])}</td>" for c in params)
        mark = " class='best'" if str(r[trial]) == data.best_trial else ""
        rows.append(
            f"<tr{mark}><td>{_e(r[trial])}</td><td>{_e(r.get('seed', ''))}</td>{values}<td>{_e(r['policy'])}</td>"
            f"<td>{format_value(kpi, float(r['value']))}</td><td>{format_diff(kpi, float(r['diff']))} "
            f"[{format_diff(kpi, float(r['ci_low']))}, {format_diff(kpi, float(r['ci_high']))}]</td></tr>"
        )
    head = "".join(f"<th>{_e(c.removeprefix('param.'))}</th>" for c in params)
    table = (
        f"<table class='plain'><tr><th>trial</th><th>seed</th>{head}<th>policy</th><th>{_e(label)}</th>"
        f"<th>difference to {_e(baseline)} [95 % interval]</th></tr>{''.join(rows)}</table>"
    )
    best = (
        f"The best trial is <b>{_e(data.best_trial)}</b> (largest difference in {_e(label)}); the sections "
        "above show its evaluation."
        if data.best_trial is not None
        else "No trial has a finite difference to the baseline."
    )
    return _section(
        "sweep",
        "The sweep: results by parameter value",
        _p(
            "Each trial is a full run with other parameter values (and, where listed, another top seed). The "
            f"figure shows each policy's difference in {_e(label)} to the baseline against each swept "
            "parameter, one point per trial, with its 95 % interval. " + best
        ),
        _img(plots.sweep(sw, kpi, baseline), "sweep results"),
        table,
    )
