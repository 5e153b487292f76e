"""experiments.report: the product-owner report.html of a run folder made by ``regsim run``."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.colors
import numpy as np
import pandas as pd
import pytest

from agents.evaluate import Evaluation
from experiments.report import (
    PLOT_SECTIONS,
    REPORT_KPIS,
    SECTION_IDS,
    format_diff,
    format_value,
    load_run,
    write_report,
)

ROOT = Path(__file__).resolve().parents[2]

#: Tiny budgets for the quickstart: the whole run takes about 10 s on the 2-core machine.
TINY = (
    "agents.linucb.train.steps=400",
    "agents.linucb.train.checkpoint_every=200",
    "agents.mppo.train.steps=256",
    "agents.mppo.train.checkpoint_every=128",
    "agents.mppo.hyperparameters.n_steps=16",
    "agents.mppo.train.n_envs=16",
    "agents.mppo.hyperparameters.batch_size=64",
    "agents.mppo.hyperparameters.n_epochs=1",
    "evaluation.arrangements=150",
    "evaluation.months=2",
    "outputs.feature_importance.arrangements=80",
    "outputs.feature_importance.months=1",
    "outputs.tensorboard=false",
)


def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart run with tiny budgets, made once per session (and per xdist worker).

    A plain function rather than a fixture, so that the notebook tests share the folder: the first caller
    builds it under the session's base temp folder, later callers find it there.
    """
    out = tmp_path_factory.getbasetemp() / "quickstart-tiny"
    if (out / "report.html").is_file():
        return out
    if out.exists():
        shutil.rmtree(out)
    sets = [arg for s in TINY for arg in ("--set", s)]
    config = str(ROOT / "configs" / "experiments" / "quickstart.yaml")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", config, "--out", str(out), "--quiet", *sets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"regsim run failed:\n{proc.stdout}\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quickstart_run(tmp_path_factory)


@pytest.fixture(scope="session")
def report(run_dir: Path) -> str:
    """The report ``regsim run`` wrote at the end of the run (through :func:`write_report`)."""
    return (run_dir / "report.html").read_text(encoding="utf-8")


class _Sections(HTMLParser):
    """Section ids, with the images and the KPI cells (data attributes) inside each."""

    def __init__(self) -> None:
        super().__init__()
        self.current: str | None = None
        self.images: dict[str, list[str]] = {}
        self.cells: list[dict[str, str]] = []
        self.cell_text: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.current = a.get("id")
            self.images.setdefault(str(self.current), [])
        elif tag == "img" and self.current:
            self.images[self.current].append(a.get("src", ""))
        elif tag == "td" and "data-kpi" in a:
            self.cells.append({**a, "section": str(self.current)})
            self.cell_text.append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cell_text[-1] += data


def parse(html: str) -> _Sections:
    p = _Sections()
    p.feed(html)
    return p


def test_every_section_is_there_with_its_plots(report: str) -> None:
    sections = parse(report)
    expected = [s for s in SECTION_IDS if s != "sweep"]
    assert [s for s in sections.images if s in SECTION_IDS] == expected
    for sid in PLOT_SECTIONS:
        pngs = [src for src in sections.images[sid] if src.startswith("data:image/png;base64,")]
        assert pngs, f"section {sid!r} has no inline PNG"
        assert all(len(src) > 2_000 for src in pngs), f"section {sid!r} has an empty image"
    missing = re.findall(r'<section id="([^"]+)">(?:(?!</section>).)*class="missing"', report, re.S)
    assert not missing, f"a full quickstart run (facts.json included) lacks inputs of {missing}"
    assert "Facts this world does not meet" in report or "This world meets all" in report


def test_the_report_is_self_contained(report: str) -> None:
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", report, re.IGNORECASE), "an external URL"
    assert "<script" not in report.lower()
    assert "<link" not in report.lower()
    srcs = re.findall(r'src="([^"]*)"', report)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_kpi_table_numbers_are_the_evaluation(run_dir: Path, report: str) -> None:
    ev = Evaluation.read_parquet(run_dir / "evaluation" / "evaluation.parquet")
    sections = parse(report)
    table = [
        (c, text) for c, text in zip(sections.cells, sections.cell_text, strict=True) if c["section"] == "kpi-table"
    ]
    shown_kpis = [k for k in REPORT_KPIS if k in set(ev.frame["kpi"])]
    assert len(table) == len(ev.policies) * len(shown_kpis)
    for cell, text in table:
        row = ev.row(cell["data-policy"], cell["data-kpi"], cell["data-segment"])
        for attr, column in (("data-value", "value"), ("data-diff", "diff"), ("data-ci-low", "ci_low")):
            shown, stored = float(cell[attr]), float(row[column])
            assert shown == stored or (math.isnan(shown) and math.isnan(stored)), (cell, column)
        kpi = cell["data-kpi"]
        assert format_value(kpi, float(row["value"])) in text
        if cell["data-policy"] != ev.baseline:
            assert f"{format_diff(kpi, float(row['diff']))} [{format_diff(kpi, float(row['ci_low']))}, " in text
    # The segment tables cover every segment of the evaluation.
    segs = {c["data-segment"] for c in sections.cells if c["section"] == "segment-uplift"}
    assert segs == set(ev.segments) - {"all"}


def test_setup_says_what_was_run(run_dir: Path, report: str) -> None:
    ev = Evaluation.read_parquet(run_dir / "evaluation" / "evaluation.parquet")
    setup = report[report.index('<section id="setup">') :]
    setup = setup[: setup.index("</section>")]
    n = int(ev.meta["arrangements_per_seed"])
    assert f"<b>{n:,}</b> payment arrangements" in setup
    assert f"<b>{ev.meta['months']} months</b>" in setup
    for policy in ev.policies:
        assert f"<b>{policy}</b>" in setup
    assert "trained for 400 decisions" in setup, "the linucb agent's training budget from config.yaml"
    assert "hidden in production" in report


def test_report_of_a_folder_without_agents_says_so(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("agents", "feature_importance.parquet", "*.html"))
    html = write_report(bare).read_text(encoding="utf-8")
    sections = parse(html)
    for sid in ("learning-curves", "feature-importance"):
        assert not sections.images[sid], sid
        assert re.search(rf'<section id="{sid}">.*?class="missing">[^<]*no', html, re.S | re.IGNORECASE), sid
    assert sections.images["kpi-bars"], "the evaluation sections do not depend on agents"


def test_report_of_a_sweep_folder(run_dir: Path, tmp_path: Path) -> None:
    """A sweep folder: sweep.parquet at the top, trials below; the best trial fills the evaluation sections."""
    sweep = tmp_path / "sweep"
    rows = []
    for trial, alpha in (("t0", 0.5), ("t1", 2.0)):
        # A trial folder with its evaluation only (enough for the sections; the others say what is missing).
        (sweep / "trials" / trial / "evaluation").mkdir(parents=True)
        shutil.copy(run_dir / "evaluation" / "evaluation.parquet", sweep / "trials" / trial / "evaluation")
        f = Evaluation.read_parquet(run_dir / "evaluation" / "evaluation.parquet").frame
        f = f[f["segment"] == "all"].drop(columns=["segment", "gap_closed", "n_arrangements"]).copy()
        if trial == "t1":  # make t1 the better trial on every KPI
            f[["diff", "ci_low", "ci_high"]] = f[["diff", "ci_low", "ci_high"]] + 0.5
        f.insert(0, "trial", trial)
        f.insert(1, "seed", 7)
        f.insert(2, "param.agents.linucb.hyperparameters.alpha", alpha)
        rows.append(f)
    pd.concat(rows).to_parquet(sweep / "sweep.parquet", index=False)
    shutil.copy(run_dir / "config.yaml", sweep / "config.yaml")
    html = write_report(sweep).read_text(encoding="utf-8")
    sections = parse(html)
    assert sections.images["sweep"] and sections.images["kpi-bars"]
    assert load_run(sweep).best_trial == "t1"
    assert "<b>t1</b>" in html


def test_write_report_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nowhere")


# -- the verdict, colours, labels and facts, on hand-built inputs (no simulation) ----------------------------------
def _evaluation(rows: dict[tuple[str, str, str], tuple[float, float, float, float]], runoff: bool = True) -> Evaluation:
    """An Evaluation from ``{(policy, segment, kpi): (value, diff, ci_low, ci_high)}``, baseline static-dunning."""
    frame = pd.DataFrame(
        [
            {"policy": p, "segment": s, "kpi": k, "value": v, "diff": d, "ci_low": lo, "ci_high": hi}
            | {"gap_closed": math.nan, "n_arrangements": 1000}
            for (p, s, k), (v, d, lo, hi) in rows.items()
        ]
    )
    meta = {"months": None, "runoff": {"months_after_plan": 12} if runoff else None, "seeds": [1], "level": 0.95}
    if not runoff:
        meta["months"] = 6
    return Evaluation(frame, "static-dunning", None, meta)


def _two_policies(ppo_completion: tuple[float, float, float], ppo_net: tuple[float, float, float]) -> Evaluation:
    base = "static-dunning"
    rows = {
        (base, "all", "completion_rate"): (0.60, 0.0, 0.0, 0.0),
        (base, "all", "net_recovery_eur_per_arrangement"): (500.0, 0.0, 0.0, 0.0),
        (base, "all", "cost_per_eur_collected"): (0.02, 0.0, 0.0, 0.0),
        (base, "all", "censored_rate"): (0.05, 0.0, 0.0, 0.0),
        ("mppo", "all", "completion_rate"): (0.6 + ppo_completion[0], *ppo_completion),
        ("mppo", "all", "net_recovery_eur_per_arrangement"): (500 + ppo_net[0], *ppo_net),
        ("mppo", "all", "cost_per_eur_collected"): (0.015, -0.005, -0.006, -0.004),
        ("mppo", "all", "censored_rate"): (0.05, 0.0, -0.01, 0.01),
        ("silent", "all", "completion_rate"): (0.55, -0.05, -0.06, -0.04),
        ("silent", "all", "net_recovery_eur_per_arrangement"): (450.0, -50.0, -60.0, -40.0),
        ("silent", "all", "cost_per_eur_collected"): (0.0, -0.02, -0.021, -0.019),
        ("silent", "all", "censored_rate"): (0.05, 0.0, -0.01, 0.01),
        ("hindsight-oracle", "all", "completion_rate"): (0.9, 0.3, 0.28, 0.32),
        ("hindsight-oracle", "all", "net_recovery_eur_per_arrangement"): (900.0, 400.0, 390.0, 410.0),
        ("hindsight-oracle", "all", "cost_per_eur_collected"): (0.01, -0.01, -0.011, -0.009),
        ("hindsight-oracle", "all", "censored_rate"): (0.0, -0.05, -0.06, -0.04),
    }
    for p, d in (("static-dunning", (0.0, 0.0, 0.0)), ("mppo", (-0.04, -0.07, -0.01)), ("silent", (0.0, -0.01, 0.01))):
        rows[(p, "debtor_type=forgetful", "completion_rate")] = (0.5 + d[0], *d)
        rows[(p, "debtor_type=forgetful", "net_recovery_eur_per_arrangement")] = (400.0, 0.0, -5.0, 5.0)
    for p in ("static-dunning", "mppo", "silent", "hindsight-oracle"):
        for s in ("debtor_type=forgetful",):
            for k in ("cost_per_eur_collected", "censored_rate"):
                rows.setdefault((p, s, k), (0.0, 0.0, -0.01, 0.01))
            rows.setdefault((p, s, "completion_rate"), (0.5, 0.0, -0.01, 0.01))
            rows.setdefault((p, s, "net_recovery_eur_per_arrangement"), (400.0, 0.0, -5.0, 5.0))
    return _evaluation(rows)


def test_verdict_names_the_best_policy_its_gains_per_10000_and_where_the_baseline_is_better() -> None:
    from experiments.verdict import verdict_text

    text = verdict_text(_two_policies((0.012, 0.005, 0.019), (3.0, 1.5, 4.5)))
    assert text.startswith("Verdict at run-off (each arrangement followed to its end; 5.0 % still open at the cap")
    assert "mppo does best of the evaluated policies" in text, "the oracle is a reference, never the verdict"
    assert "mppo completes 120 more arrangements (95 % interval +50 to +190)" in text
    assert "EUR 30,000 more net of contact cost and concessions (95 % interval +EUR 15,000 to +EUR 45,000)" in text
    assert "static-dunning is better than mppo on arrangements completed (share) for forgetful debtors (-4.0 pp" in text
    assert "cost" not in text.split("static-dunning is better")[1].split(".")[0], "a lower cost is no loss"
    assert "silent: -500 completions (-600 to -400) and -EUR 500,000" in text
    assert "hindsight-oracle" not in text


def test_verdict_says_plainly_when_no_difference_is_significant() -> None:
    from experiments.verdict import verdict_text

    ev = _two_policies((0.001, -0.004, 0.006), (2.0, -1.0, 5.0))
    silent = ev.frame["policy"] == "silent"
    ev.frame.loc[silent, "ci_low"] = ev.frame.loc[silent, "diff"] - 1e3
    ev.frame.loc[silent, "ci_high"] = ev.frame.loc[silent, "diff"] + 1e3
    text = verdict_text(ev)
    assert "no difference to static-dunning is significant" in text
    assert "does best" not in text


def test_policy_colours_are_keyed_by_name_and_never_green_or_red() -> None:
    from experiments import plots

    a = plots.policy_colors(["static-dunning", "linucb", "mppo", "my-agent"])
    b = plots.policy_colors(["mppo", "linucb", "static-dunning", "my-agent"])
    assert all(a[p] == b[p] for p in a), "a policy's colour must not depend on its place in the list"
    assert len(set(a.values())) == len(a)
    judgement = {"#59a14f", "#e15759", "#2ca02c", "#d62728", "#1a7f37", "#c0392b"}
    assert not judgement & set(plots.POLICY_COLORS.values())
    ev = _two_policies((0.012, 0.005, 0.019), (3.0, 1.5, 4.5))
    colors = plots.policy_colors(ev.policies)
    fig = plots.kpi_bars(ev, ("completion_rate", "cost_per_eur_collected"))
    others = [p for p in ev.policies if p != ev.baseline]
    for ax in fig.axes:  # a lower cost (a negative difference) is drawn in the policy's colour, not red
        shown = [matplotlib.colors.to_hex(bar.get_facecolor()) for bar in ax.patches]
        assert shown == [colors[p] for p in others]


def test_a_lower_cost_is_green_in_the_table() -> None:
    from experiments.report_sections import _kpi_cell

    ev = _two_policies((0.012, 0.005, 0.019), (3.0, 1.5, 4.5))
    assert 'class="diff better"' in _kpi_cell(ev, "mppo", "cost_per_eur_collected")
    assert 'class="diff worse"' in _kpi_cell(ev, "silent", "completion_rate")
    assert 'class="diff unclear"' in _kpi_cell(ev, "hindsight-oracle", "censored_rate"), "neutral: never judged"


def test_learning_curves_are_labelled_in_words_with_units() -> None:
    from experiments import plots

    curve = pd.DataFrame(
        {
            "step": [100, 200, 100, 200],
            "metric": ["reward_per_decision"] * 2 + ["rollout/ep_rew_mean"] * 2,
            "value": [0.1, 0.2, 1.0, 1.5],
        }
    )
    fig = plots.learning_curves({"mppo": curve})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [
        "mppo: Mean reward per decision (EUR 100)",
        "mppo: Mean reward per finished arrangement (EUR 100)",
    ]
    assert all(ax.get_xlabel() == "Decisions trained" for ax in fig.axes if ax.get_visible())
    assert all(ax.get_ylabel() == "EUR 100" for ax in fig.axes if ax.get_visible())
    assert not any("reward_per_decision" in t or "/" in t for t in titles)


def test_the_caveat_shows_the_facts_and_names_those_not_met(tmp_path: Path) -> None:
    import json

    from experiments.report_sections import _caveat
    from experiments.run_folder import load_run

    facts = [
        {
            "id": "F3",
            "fact": "pre-due SMS vs none",
            "source_value": "+7 to 9 points",
            "sim_value": 0.081,
            "ci_low": 0.07,
            "ci_high": 0.092,
            "in_range": True,
        },
        {
            "id": "F6-sms",
            "fact": "share of delivered SMS read",
            "source_value": "95-98%",
            "sim_value": 0.72,
            "ci_low": 0.71,
            "ci_high": 0.73,
            "in_range": False,
        },
    ]
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    html = _caveat(load_run(tmp_path))
    assert "The world is simulated." in html
    assert html.count("<tr class=") == 2
    assert (
        "<td>F6-sms</td><td>share of delivered SMS read</td><td>95-98%</td><td>0.720</td><td>[0.710, 0.730]</td>"
        in html
    )
    unmet = html.split("Facts this world does not meet (1 of 2):")[1].split("</p>")[0]
    assert "F6-sms" in unmet and "F3" not in unmet
    (tmp_path / "facts.json").write_text(json.dumps([{"id": "F3"}]))
    with pytest.raises(ValueError, match="entry 0 lacks the field"):
        load_run(tmp_path)


def test_verdict_says_when_the_runner_up_is_not_clearly_behind() -> None:
    from experiments.verdict import verdict_text

    ev = _two_policies((0.012, 0.005, 0.019), (3.0, 1.5, 4.5))
    silent = ev.frame["policy"] == "silent"
    for column, value in (("diff", 2.0), ("ci_low", 0.5), ("ci_high", 3.5)):
        ev.frame.loc[silent & (ev.frame["kpi"] == "net_recovery_eur_per_arrangement"), column] = value
    assert "silent is not clearly behind mppo: the intervals overlap." in verdict_text(ev)


def test_incidence_curves_are_drawn_in_the_policies_colours() -> None:
    from agents.incidence import cumulative_incidence
    from experiments import plots

    rng = np.random.default_rng(0)
    frames = {
        p: pd.DataFrame(
            {
                "end_kind": rng.choice(["completed", "broken", "censored"], size=200),
                "months_to_end": rng.uniform(1, 12, size=200),
            }
        )
        for p in ("static-dunning", "mppo")
    }
    fig = plots.incidence(cumulative_incidence(frames))
    colors = plots.policy_colors(["static-dunning", "mppo"])
    assert [ax.get_xlabel() for ax in fig.axes] == ["months since the arrangement started"] * 2
    assert all(ax.get_ylabel() == "share of arrangements (%)" for ax in fig.axes)
    for ax in fig.axes:
        assert [matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()] == list(colors.values())
