"""experiments.report: the product-owner report.html of a run folder made by ``regsim run``."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from agents.evaluate import TABLE_KPIS, Evaluation
from experiments.report import PLOT_SECTIONS, SECTION_IDS, format_diff, format_value, load_run, write_report

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
    assert 'class="missing"' not in report, "a full quickstart run lacks none of the report's inputs"


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
    assert len(table) == len(ev.policies) * len(TABLE_KPIS)
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
