"""``ope.json`` and ``ope.html``: what ``regsim ope`` found, as data and as a section in the style of the report.

``ope.json`` is one object: ``estimand`` (both estimands named, with the window and the unit), ``candidate``,
``baseline``, ``estimators`` (each of ``dm``, ``ips``, ``snips``, ``dr``, ``sndr``, ``switch-dr``, ``dros`` to its
``value``, ``ci_low``, ``ci_high``, the empirical-Bernstein ``bound_low``/``bound_high`` and ``diagnostics``),
``per_arrangement`` (the sequential estimators, the same fields, and the logging policy's value), ``excluded``
(the counts of :class:`agents.ope.logged.LogSummary`), ``gate``, ``recommendation`` and ``warnings``. Numbers
that are not defined (a refused estimate) are ``null``.

``ope.html`` is a self-contained page with one section (id ``ope``) built from the report's blocks
(:mod:`experiments.report_html`) and its style sheet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agents.ope.inputs import EstimatorResult
from experiments.ope import OpeReport
from experiments.report import _CSS
from experiments.report_html import _e, _p, _section

__all__ = ["ESTIMAND_PER_ARRANGEMENT", "ESTIMAND_PER_DECISION", "report_json", "render_html", "write_report"]

ESTIMAND_PER_DECISION = (
    "the candidate's mean per-decision reward on the logged contexts: euros paid within the feedback window after "
    "a decision minus the cost of the messages that decision sent (EUR per decision)"
)
ESTIMAND_PER_ARRANGEMENT = (
    "the candidate's mean run-off net recovery per arrangement: euros collected minus contact costs from the "
    "arrangement's start to its end or its run-off cap (EUR per arrangement)"
)


def _clean(value: Any) -> Any:
    """JSON-safe: ``nan``/``inf`` become ``None``; tuples lists; recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _result(r: EstimatorResult) -> dict[str, Any]:
    return {
        "value": r.value,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "bound_low": r.bound_low,
        "bound_high": r.bound_high,
        "level": r.level,
        "n_bootstrap": r.n_bootstrap,
        "diagnostics": asdict(r.diagnostics),
    }


def report_json(report: OpeReport) -> dict[str, Any]:
    """The report as the ``ope.json`` object (see the module docstring)."""
    s = report.summary
    out = {
        "log": report.log,
        "population": report.population,
        "estimand": {
            "per_decision": ESTIMAND_PER_DECISION,
            "per_arrangement": ESTIMAND_PER_ARRANGEMENT,
            "window_days": report.window_days,
            "unit": "EUR",
        },
        "candidate": {"policy": report.candidate, "probabilities": s.candidate_source},
        "baseline": report.baseline,
        "estimators": {name: _result(r) for name, r in report.estimators.items()},
        "per_arrangement": {
            "estimators": {name: _result(r) for name, r in report.per_arrangement.items()},
            "logging_policy_value": report.logged_per_arrangement,
        },
        "excluded": asdict(s),
        "gate": asdict(report.gate),
        "recommendation": None if report.recommendation is None else asdict(report.recommendation),
        "warnings": list(report.warnings),
    }
    return dict(_clean(out))


def _num(x: float, digits: int = 2) -> str:
    return "&ndash;" if not math.isfinite(x) else f"{x:,.{digits}f}"


def _table(results: dict[str, EstimatorResult], best: str | None) -> str:
    head = (
        "<tr><th>estimator</th><th>value</th><th>interval (bootstrap)</th><th>interval (Bernstein)</th>"
        "<th>ESS</th><th>largest weight</th><th>unsupported mass</th><th>note</th></tr>"
    )
    rows = []
    for name, r in results.items():
        d = r.diagnostics
        note = f"refused: {r.refused}" if r.refused else (d.warning or "")
        cls = ' class="best"' if name == best else ""
        rows.append(
            f"<tr{cls}><td>{_e(name)}</td><td class='value'>{_num(r.value)}</td>"
            f"<td>{_num(r.ci_low)} to {_num(r.ci_high)}</td><td>{_num(r.bound_low)} to {_num(r.bound_high)}</td>"
            f"<td>{_num(d.ess, 0)}</td><td>{_num(d.max_weight, 1)}</td><td>{d.unsupported_mass:.1%}</td>"
            f"<td class='note'>{_e(note)}</td></tr>"
        )
    return "<table class='kpi'>" + head + "".join(rows) + "</table>"


def render_html(report: OpeReport) -> str:
    """``ope.html``: one page with the section ``ope``."""
    s = report.summary
    g = report.gate
    cls = {"better": "better", "worse": "worse"}.get(g.verdict, "unclear")
    rec = report.recommendation
    best = rec.estimator if rec else None
    parts = [
        f'<p class="verdict"><span class="{cls}">{_e(g.sentence)}</span></p>',
        _p(
            f"Candidate <code>{_e(report.candidate)}</code> on the log <code>{_e(report.log)}</code> (world "
            f"{_e(report.population)}), against {_e(report.baseline)}. The candidate's probabilities of the logged "
            f"actions are {_e(s.candidate_source)}."
        ),
        "<h3>Per decision</h3>",
        _p(_e("Estimand: " + ESTIMAND_PER_DECISION + f"; window {report.window_days:g} days.")),
        _table(report.estimators, best),
        "<h3>Per arrangement</h3>",
        _p(
            _e(
                "Estimand: "
                + ESTIMAND_PER_ARRANGEMENT
                + f". The logging policy's own value on the counted arrangements: "
                f"{_num(report.logged_per_arrangement)} EUR."
            )
        ),
        _table(report.per_arrangement, None) if report.per_arrangement else _p("No per-arrangement estimate."),
        "<h3>What was counted</h3>",
        _p(
            _e(
                f"{s.decisions_counted:,} of {s.decisions:,} decisions ({s.decisions_open:,} with an open window, "
                f"{s.decisions_without_propensity:,} without a propensity, {s.decisions_without_candidate:,} "
                f"without a candidate action); {s.arrangements_counted:,} of {s.arrangements:,} arrangements "
                f"({s.arrangements_open:,} still open at the log's end). Logging policies: "
                + "; ".join(f"{name} ({n:,} decisions)" for name, n in s.logging_policies)
                + "."
            )
        ),
        "<h3>Which estimator to trust</h3>",
        _p(_e(rec.sentence)) if rec else _p("No recommendation was made (skipped)."),
    ]
    if report.warnings:
        parts.append("<h3>Warnings and refusals</h3><ul>" + "".join(f"<li>{_e(w)}</li>" for w in report.warnings))
        parts.append("</ul>")
    section = _section("ope", f"Off-policy evaluation: {report.candidate}", *parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>regsim ope: {_e(report.candidate)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>regsim ope: {_e(report.candidate)}</h1>\n{section}\n</body>\n</html>\n"
    )


def write_report(report: OpeReport, out: str | Path) -> tuple[Path, Path]:
    """Write ``ope.json`` and ``ope.html`` into ``out`` (created); returns both paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    js = folder / "ope.json"
    js.write_text(json.dumps(report_json(report), indent=2) + "\n", encoding="utf-8")
    page = folder / "ope.html"
    page.write_text(render_html(report), encoding="utf-8")
    return js, page
