"""The product-owner report of a run folder: one self-contained ``report.html``.

:func:`write_report` reads a run folder laid out by ``regsim run`` (the run-folder contract: ``config.yaml``,
``run.json``, ``evaluation/``, ``agents/<agent>/learning_curve.parquet``, ``kpis.json``; for a sweep,
``sweep.parquet`` and ``trials/<trial>/``) and writes ``report.html``: the question and the set-up in plain
words, the KPI table with paired differences to the baseline and their 95 % intervals, uplift per segment, the
figures of :mod:`experiments.plots` (as base64 PNG), and which features drive the learned policies. It opens
with the verdict in words (:func:`experiments.verdict.verdict_text`), the portfolio in euros per 10,000
arrangements, and the caveat that the world is simulated, with the calibration facts of ``facts.json`` (those it
does not meet named). Everything
is inline (CSS, images); the page loads nothing from anywhere and runs no script.

Every section has a stable ``id`` (:data:`SECTION_IDS`; with self-service on, ``self-service`` after ``queues``,
:mod:`experiments.report_menu`); a section whose input is missing (no trained agents:
no learning curves, no feature importance) says so in a sentence instead.

:func:`load_run` returns the folder's tables as a :class:`RunData`, which ``notebooks/evaluation.ipynb`` uses
with the same figure functions.

The folder is read by :mod:`experiments.run_folder`, the sections are built by
:mod:`experiments.report_sections` from the HTML blocks of :mod:`experiments.report_html`; this module puts
them on one page.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from experiments.plots import format_diff, format_value
from experiments.report_html import _e, figure_data_uri
from experiments.report_menu import menu_section
from experiments.report_sections import (
    REPORT_KPIS,
    SEGMENT_KPIS,
    SUMMARY_KPIS,
    _burden,
    _caveat,
    _channel_mix,
    _cost,
    _feature_importance,
    _incidence,
    _kpi_bars,
    _kpi_table,
    _learning_curves,
    _portfolio,
    _queues,
    _segment_uplift,
    _send_hour_mix,
    _setup,
    _summary,
    _sweep,
)
from experiments.run_folder import RunData, load_run, sweep_kpi

__all__ = [
    "REPORT_FILE",
    "SECTION_IDS",
    "REPORT_KPIS",
    "SEGMENT_KPIS",
    "SUMMARY_KPIS",
    "RunData",
    "figure_data_uri",
    "format_diff",
    "format_value",
    "load_run",
    "render_report",
    "sweep_kpi",
    "write_report",
]

#: File name of the report inside the run folder.
REPORT_FILE = "report.html"

#: The ``id`` of every section of the report, in page order (``sweep`` only for a sweep folder).
SECTION_IDS: tuple[str, ...] = (
    "summary",
    "portfolio",
    "caveat",
    "setup",
    "kpi-table",
    "kpi-bars",
    "incidence",
    "segment-uplift",
    "burden",
    "cost-per-euro",
    "channel-mix",
    "send-hour-mix",
    "queues",
    "learning-curves",
    "feature-importance",
    "sweep",
)

#: Sections that hold a figure whenever their input exists.
PLOT_SECTIONS: tuple[str, ...] = (
    "portfolio",
    "kpi-bars",
    "incidence",
    "incidence",
    "segment-uplift",
    "burden",
    "cost-per-euro",
    "channel-mix",
    "send-hour-mix",
    "queues",
    "learning-curves",
    "feature-importance",
)


_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em;
margin-top: 2em; } h3 { font-size: 1.05em; margin-top: 1.4em; }
section p { max-width: 60em; }
.question { font-size: 1.25em; font-weight: 600; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.35em 0.6em; text-align: left; vertical-align: top; }
table.kpi td { text-align: right; white-space: nowrap; }
.value { font-weight: 600; } .note { color: #777; font-size: 0.85em; }
.diff { font-size: 0.85em; } .better { color: #1a7f37; } .worse { color: #c0392b; } .unclear { color: #777; }
.verdict { font-size: 1.1em; max-width: 60em; padding: 0.6em 0.9em; background: #f6f8fa;
           border-left: 4px solid #555; }
.missing { color: #8a6d3b; background: #fcf8e3; padding: 0.5em 0.8em; border-left: 4px solid #e0c36a; }
tr.best td { background: #eef7ee; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 0.8em; } code { font-size: 0.95em; }
"""


def _nav(ids: Iterable[str]) -> str:
    return "<nav>" + "".join(f'<a href="#{i}">{_e(i.replace("-", " "))}</a>' for i in ids) + "</nav>"


def render_report(data: RunData) -> str:
    """The report's HTML for a loaded run folder (see the module docstring)."""
    sections = [
        _summary(data),
        _portfolio(data),
        _caveat(data),
        _setup(data),
        _kpi_table(data),
        _kpi_bars(data),
        _incidence(data),
        _segment_uplift(data),
        _burden(data),
        _cost(data),
        _channel_mix(data),
        _send_hour_mix(data),
        _queues(data),
        menu := menu_section(data),  # only when the run's world had self-service on
        _learning_curves(data),
        _feature_importance(data),
        _sweep(data),
    ]
    ids = [i for i in SECTION_IDS if i != "sweep" or data.sweep is not None]
    if menu:
        ids.insert(ids.index("queues") + 1, "self-service")
    name = data.config.get("name") or data.run_dir.name
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>regsim report: {_e(name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>regsim report: {_e(name)}</h1>\n{_nav(ids)}\n"
        + "\n".join(s for s in sections if s)
        + "\n</body>\n</html>\n"
    )


def write_report(run_dir: str | Path) -> Path:
    """Write ``report.html`` into a run folder (or a sweep folder) and return its path.

    Raises:
        FileNotFoundError: ``run_dir`` is not a folder.
    """
    data = load_run(run_dir)
    path = data.run_dir / REPORT_FILE
    path.write_text(render_report(data), encoding="utf-8")
    return path
