"""experiments.report_menu: the report's self-service section (issue 18, item 5), shown only with self-service on.

A small evaluation with self-service on (the rule-based menu, no menu, an untrained learning menu) is written as a
run folder's ``evaluation/``; the section must report uptake per option and debt band, and pair each policy on the
same debtors against the imposed plan and the rule-based menu, with numbers that match the per-arrangement
tables; a run without self-service has no such section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import Rectangle

import agents
from agents.evaluate import evaluate
from experiments.analysis import RunDetails
from experiments.report import render_report
from experiments.report_menu import MENU_COLUMNS, menu_section, paired_menu_table, uptake, uptake_figure
from experiments.run_folder import load_run
from regsim import WorldConfig

POLICIES = ["rule-based-menu", "no-menu", "menu-ts"]


def _run_folder(root: Path, config: WorldConfig, n: int = 150) -> Path:
    details = RunDetails()
    policies = {p: (lambda p=p: agents.make(p, **({"seed": 1} if p == "menu-ts" else {}))) for p in POLICIES}
    ev = evaluate(policies, config, n, [0], months=6, baseline="rule-based-menu", on_result=details.add)
    folder = root / "evaluation"
    details.write(folder)
    ev.to_parquet(folder / "evaluation.parquet")
    return root


@pytest.fixture(scope="module")
def menu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = WorldConfig().with_overrides(self_service={"enabled": True, "visit": {"follow_prob": 1.0}})
    return _run_folder(tmp_path_factory.mktemp("menu-run"), config)


def test_menus_parquet_holds_every_arrangement_and_what_was_offered_and_chosen(menu_run: Path) -> None:
    menus = pd.read_parquet(menu_run / "evaluation" / "menus.parquet")
    outcomes = pd.read_parquet(menu_run / "evaluation" / "outcomes.parquet")
    assert list(menus.columns) == list(MENU_COLUMNS)
    assert len(menus) == len(outcomes) and set(menus["policy"]) == set(POLICIES)
    chose = menus[[c for c in menus.columns if c.startswith("chose_")]].sum(axis=1)
    assert (chose == menus["menus"]).all()  # every menu shown was answered once
    none = menus[menus["policy"] == "no-menu"]
    assert none["menus"].sum() > 20 and (none["chose_close"] == none["menus"]).all()
    assert not none[[c for c in menus.columns if c.startswith("offered_")]].to_numpy().any()
    rule = menus[menus["policy"] == "rule-based-menu"]
    assert rule["offered_plan"].sum() > 0 and rule["concessions_eur"].sum() > 0


def test_uptake_and_the_paired_table_match_the_per_arrangement_rows(menu_run: Path) -> None:
    menus = pd.read_parquet(menu_run / "evaluation" / "menus.parquet")
    outcomes = pd.read_parquet(menu_run / "evaluation" / "outcomes.parquet")
    u = uptake(menus)
    rule = menus[menus["policy"] == "rule-based-menu"]
    assert u.loc["rule-based-menu", "chose_plan"] == pytest.approx(rule["chose_plan"].sum() / rule["menus"].sum())
    assert u.loc["no-menu", "chose_close"] == 1.0
    by_band = uptake(menus, ("policy", "debt_band"))
    assert by_band["menus"].sum() == menus["menus"].sum()
    table = paired_menu_table(outcomes, menus, POLICIES)
    # Each policy against each reference it is not: rule vs no-menu, menu-ts vs both, no-menu vs rule.
    pairs = set(zip(table["policy"], table["reference"], strict=True))
    assert pairs == {
        ("rule-based-menu", "no-menu"),
        ("menu-ts", "no-menu"),
        ("no-menu", "rule-based-menu"),
        ("menu-ts", "rule-based-menu"),
    }
    row = table[
        (table["policy"] == "rule-based-menu")
        & (table["reference"] == "no-menu")
        & (table["measure"].str.startswith("concessions"))
    ].iloc[0]
    none = menus[menus["policy"] == "no-menu"].set_index(["seed", "arrangement_id"])["concessions_eur"]
    mine = rule.set_index(["seed", "arrangement_id"])["concessions_eur"]
    assert row["diff"] == pytest.approx(float((mine - none.reindex(mine.index)).mean()))
    assert row["ci_low"] < row["diff"] < row["ci_high"] and row["n"] == len(mine)
    net = table[(table["policy"] == "menu-ts") & (table["reference"] == "rule-based-menu")]
    o = outcomes.set_index(["policy", "seed", "arrangement_id"])["net_recovery_eur"]
    expected = float((o.loc["menu-ts"] - o.loc["rule-based-menu"]).mean())
    assert net[net["measure"].str.startswith("net recovery")]["diff"].iloc[0] == pytest.approx(expected)


def test_the_section_is_in_the_report_only_with_self_service_on(menu_run: Path, tmp_path: Path) -> None:
    page = render_report(load_run(menu_run))
    assert 'id="self-service"' in page and 'href="#self-service"' in page
    section = menu_section(load_run(menu_run))
    for words in ("closed the page", "debt band", "against", "custom cases sent to staff", "<img"):
        assert words in section
    fig = uptake_figure(pd.read_parquet(menu_run / "evaluation" / "menus.parquet"), POLICIES)
    ax = fig.axes[0]
    assert "(%)" in ax.get_ylabel() and ax.get_xlabel()
    heights = np.array([p.get_height() for p in ax.patches if isinstance(p, Rectangle)])
    assert len(heights) == 7 * len(POLICIES) and heights.max() <= 100.0
    off = _run_folder(tmp_path / "off", WorldConfig(), n=40)  # (the whole report without it: test_report.py)
    assert not (off / "evaluation" / "menus.parquet").exists()
    assert menu_section(load_run(off)) == ""
