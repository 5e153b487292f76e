"""The report's self-service section (issue 18, item 5): what debtors chose from the menus, and what it brought.

Shown only when the run's world had self-service on, i.e. when the evaluation wrote ``evaluation/menus.parquet``
(:func:`menu_rows`, collected by :class:`experiments.analysis.RunDetails`). It holds:

* **uptake** per option: the share of menus that offered it and the share in which the debtor chose it, per
  policy and per observable segment (debt band), with a figure;
* **paired comparisons** against the imposed plan (``no-menu``) and against the rule-based menu
  (``rule-based-menu``), whichever of them the run evaluated: net recovery per arrangement (EUR, concessions and
  staff cases charged), completion (share), concessions given (EUR per arrangement) and custom-solution cases
  sent to staff (per 1,000 arrangements), each as the mean paired difference over the same debtors (seed,
  arrangement) with its 95 % interval (:func:`agents.paired_differences.paired_mean_difference`).

Net recovery and completion are at run-off as the evaluation censors them (``outcomes.parquet``); concessions
and cases count every event of the arrangement in the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from agents.paired_differences import paired_mean_difference
from experiments.plot_style import _figure, _num, policy_colors
from experiments.report_html import _e, _img, _p, _section
from experiments.run_folder import RunData
from regsim.eventlog import EventType, event_codes
from regsim.ledger_menu import levels_from_log
from regsim.menu import SLOT_NAMES
from regsim.simulate import SimulationResult

__all__ = ["MENU_COLUMNS", "MENU_FILE", "REFERENCES", "menu_rows", "menu_section", "paired_menu_table", "uptake"]

#: The file the evaluation writes with self-service on (under ``evaluation/``).
MENU_FILE = "menus.parquet"
#: The options of a menu, in :class:`regsim.menu.MenuOption` order after "close".
OPTIONS: tuple[str, ...] = SLOT_NAMES
#: Columns of ``menus.parquet``, one row per (policy, seed, arrangement).
MENU_COLUMNS: tuple[str, ...] = (
    "policy",
    "seed",
    "arrangement_id",
    "debt_band",
    "menus",
    *(f"offered_{o}" for o in OPTIONS),
    "chose_close",
    *(f"chose_{o}" for o in OPTIONS),
    "concessions_eur",
    "custom_cases",
)
#: The policies the section pairs against, when the run evaluated them: the imposed plan, today's menu.
REFERENCES: tuple[str, ...] = ("no-menu", "rule-based-menu")

_COMPARED = (
    ("net_recovery_eur", "net recovery (EUR per arrangement)", 1.0),
    ("completed", "completed (percentage points)", 100.0),
    ("concessions_eur", "concessions given (EUR per arrangement)", 1.0),
    ("custom_cases", "custom cases sent to staff (per 1,000 arrangements)", 1000.0),
)


def menu_rows(key: tuple[str, int], result: SimulationResult, labels: pd.DataFrame) -> pd.DataFrame:
    """Per arrangement of one run: menus shown, options offered and chosen, concessions and custom cases.

    Args:
        key: (policy, seed) of the run.
        result: The run (self-service on).
        labels: Per arrangement id, ``debt_band`` (:func:`experiments.analysis._labels`).

    Returns:
        A frame with :data:`MENU_COLUMNS`, every arrangement of the run (zeros where no menu was shown).
    """
    ev = result.events
    codes = event_codes(ev)
    arr = ev.column("arrangement_id").to_numpy()
    o = result.outcomes()
    index = o.index
    out = pd.DataFrame(index=index)
    out["debt_band"] = labels["debt_band"].reindex(index).fillna("other").astype(str)
    shown = codes == EventType.MENU_SHOWN

    def column(name: str, m: np.ndarray) -> np.ndarray:
        return np.asarray(ev.column(name).to_numpy(zero_copy_only=False)[m], dtype=np.float64)

    out["menus"] = pd.Series(arr[shown]).value_counts().reindex(index, fill_value=0).to_numpy(np.int64)

    def ints(name: str, m: np.ndarray) -> np.ndarray:
        return np.nan_to_num(column(name, m)).astype(np.int64)

    levels = levels_from_log(
        ints("a_deferral", shown), ints("a_reduction", shown), ints("a_due_day", shown), ints("a_channel", shown)
    )
    for k, name in enumerate(OPTIONS):
        offered = pd.Series((levels[:, k] > 0).astype(np.int64), index=arr[shown]).groupby(level=0).sum()
        out[f"offered_{name}"] = offered.reindex(index, fill_value=0).to_numpy(np.int64)
    chose = codes == EventType.MENU_CHOICE
    option = ints("a_channel", chose)
    for k, name in enumerate(("close", *OPTIONS)):
        counts = pd.Series(arr[chose][option == k]).value_counts()
        out[f"chose_{name}"] = counts.reindex(index, fill_value=0).to_numpy(np.int64)
    out["concessions_eur"] = o["concessions_eur"].to_numpy(np.float64)
    out["custom_cases"] = o["custom_cases"].to_numpy(np.int64)
    out = out.reset_index()
    out.insert(0, "seed", np.int64(key[1]))
    out.insert(0, "policy", key[0])
    return out[list(MENU_COLUMNS)]


def uptake(menus: pd.DataFrame, by: Sequence[str] = ("policy",)) -> pd.DataFrame:
    """Per group, each option's share of menus offering it (``offered_<o>``) and chosen (``chose_<o>``), and
    the number of menus; shares are of all menus shown in the group (NaN without menus)."""
    cols = [c for c in menus.columns if c.startswith(("offered_", "chose_"))]
    sums = menus.groupby(list(by), sort=False)[["menus", *cols]].sum()
    shares = sums[cols].div(sums["menus"].where(sums["menus"] > 0), axis=0)
    shares.insert(0, "menus", sums["menus"])
    return shares


def paired_menu_table(outcomes: pd.DataFrame, menus: pd.DataFrame, policies: Sequence[str]) -> pd.DataFrame:
    """Each policy against each reference of :data:`REFERENCES` it is not, paired on (seed, arrangement).

    Returns:
        Rows (policy, reference, measure) with ``value`` (the policy's mean), ``diff``, ``ci_low``, ``ci_high``
        (95 %), ``n`` (pairs), in the units of the measure's label.
    """
    keys = ["policy", "seed", "arrangement_id"]
    frame = outcomes[[*keys, "net_recovery_eur", "completed"]].merge(
        menus[[*keys, "concessions_eur", "custom_cases"]], on=keys, how="left"
    )
    frame[["concessions_eur", "custom_cases"]] = frame[["concessions_eur", "custom_cases"]].fillna(0.0)
    by_policy = {p: g.set_index(["seed", "arrangement_id"]).sort_index() for p, g in frame.groupby("policy")}
    rows = []
    for ref in REFERENCES:
        if ref not in by_policy:
            continue
        base = by_policy[ref]
        for p in policies:
            if p == ref or p not in by_policy:
                continue
            mine = by_policy[p]
            common = mine.index.intersection(base.index)
            for col, label, scale in _COMPARED:
                y, y0 = mine.loc[common, col].to_numpy(np.float64), base.loc[common, col].to_numpy(np.float64)
                d = paired_mean_difference(y, y0).scaled(scale)
                rows.append((p, ref, label, scale * float(y.mean()), d.diff, d.ci_low, d.ci_high, len(common)))
    cols = ["policy", "reference", "measure", "value", "diff", "ci_low", "ci_high", "n"]
    return pd.DataFrame(rows, columns=cols)


def uptake_figure(menus: pd.DataFrame, policies: Sequence[str]) -> Figure:
    """Bars: per option, the share of menus in which debtors chose it (%), one bar per policy in its colour."""
    u = uptake(menus)
    shown = [p for p in policies if p in u.index]
    colors = policy_colors(policies)
    fig = _figure(9.0, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    names = ("close", *OPTIONS)
    x = np.arange(len(names))
    width = 0.8 / max(len(shown), 1)
    for i, p in enumerate(shown):
        values = [100.0 * _num(u, p, f"chose_{n}") for n in names]
        ax.bar(x + (i - (len(shown) - 1) / 2) * width, values, width, color=colors[p], label=p)
    ax.set_xticks(x)
    ax.set_xticklabels(["closed the page", *OPTIONS])
    ax.set_xlabel("what the debtor chose on the self-service page")
    ax.set_ylabel("share of menus shown (%)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _fmt(v: float, lo: float, hi: float) -> str:
    cls = "unclear" if lo <= 0 <= hi else ("better" if lo > 0 else "worse")
    return f'<span class="{cls}">{v:+.1f} [{lo:+.1f}, {hi:+.1f}]</span>'


def menu_section(data: RunData) -> str:
    """The ``self-service`` section, or "" when the run's world had self-service off (no ``menus.parquet``)."""
    path = data.run_dir / "evaluation" / MENU_FILE
    if not path.is_file() or data.outcomes is None:
        return ""
    menus = pd.read_parquet(path)
    policies = data.policies or sorted(menus["policy"].unique())
    u = uptake(menus)
    names = ("close", *OPTIONS)
    head = "".join(f"<th>{_e(n)}: offered / chosen</th>" for n in OPTIONS)
    body = []
    for p in [p for p in policies if p in u.index]:
        cells = "".join(
            f"<td>{100 * _num(u, p, f'offered_{n}'):.0f}% / {100 * _num(u, p, f'chose_{n}'):.1f}%</td>" for n in OPTIONS
        )
        body.append(
            f"<tr><td>{_e(p)}</td><td>{_num(u, p, 'menus'):.0f}</td>"
            f"<td>{100 * _num(u, p, 'chose_close'):.0f}%</td>{cells}</tr>"
        )
    uptake_table = (
        f"<table><tr><th>policy</th><th>menus shown</th><th>closed the page</th>{head}</tr>{''.join(body)}</table>"
    )
    seg = uptake(menus, ("policy", "debt_band"))
    seg_rows = []
    for idx in seg.index:
        policy, band = cast(tuple[str, str], idx)
        cells = "".join(f"<td>{100 * _num(seg, idx, f'chose_{n}'):.1f}%</td>" for n in names)
        seg_rows.append(
            f"<tr><td>{_e(policy)}</td><td>{_e(band)}</td><td>{_num(seg, idx, 'menus'):.0f}</td>{cells}</tr>"
        )
    seg_table = (
        "<table><tr><th>policy</th><th>debt band</th><th>menus</th>"
        + "".join(f"<th>chose {_e(n)}</th>" for n in names)
        + f"</tr>{''.join(seg_rows)}</table>"
    )
    paired = paired_menu_table(data.outcomes, menus, policies)
    if len(paired):
        rows = [
            f"<tr><td>{_e(r['policy'])}</td><td>{_e(r['reference'])}</td><td>{_e(r['measure'])}</td>"
            f"<td>{r['value']:.1f}</td><td>{_fmt(r['diff'], r['ci_low'], r['ci_high'])}</td><td>{r['n']}</td></tr>"
            for r in paired.to_dict("records")
        ]
        paired_html = (
            "<table><tr><th>policy</th><th>against</th><th>measure</th><th>value</th>"
            "<th>difference [95% paired interval]</th><th>pairs</th></tr>" + "".join(rows) + "</table>"
        )
    else:
        paired_html = _p("The run evaluated neither the imposed plan (no-menu) nor the rule-based menu.")
    return _section(
        "self-service",
        "Self-service menus",
        _p(
            "A debtor in arrears who cannot pay may follow a reminder's link and choose from a menu. Per policy: "
            "how often each option was offered and chosen (shares of the menus shown); then each policy paired on "
            "the same debtors against the imposed plan (no menu) and today's rule-based menu. Net recovery "
            "charges the concessions (discounts, waived costs) and staff's custom cases; a difference whose "
            "interval holds 0 could be chance. The debtors' choice model is an assumption of the simulated world."
        ),
        uptake_table,
        _img(uptake_figure(menus, policies), "share of menus in which each option was chosen, per policy"),
        "<h3>Uptake by debt band (observable segment)</h3>",
        seg_table,
        "<h3>Paired against the imposed plan and the rule-based menu</h3>",
        paired_html,
    )
