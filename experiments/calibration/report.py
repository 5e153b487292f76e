"""The outputs of a calibration: ``world.yaml``, ``fit.json`` and ``fit.html``.

* ``world.yaml``: the calibrated world, every section written out, loadable by
  :func:`regsim.config.load_world_config` and by ``regsim simulate --population OUT/world.yaml``.
* ``fit.json``: the set-up; each parameter (path, bounds, estimate, interval, standard deviation, identified,
  warnings); each moment (name, family, segment, month, cell, log value and standard error, log interval, fitted
  value and interval, count, term of Q); the objective; the replay's counts; the back-test's held-out moments
  with predictive intervals and coverage.
* ``fit.html``: one page in the style of the report (:mod:`experiments.report_html`): the parameters, the
  warnings, a plot of log vs fitted moments with their intervals, the worst-fitted moments and the back-test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from experiments.calibration.fit import FitResult, Objective
from experiments.calibration.ranking import Ranking
from experiments.calibration.run import Calibration
from experiments.calibration.spec import config_data
from experiments.report_html import _e, _img, _p, _section
from regsim.config import parse_world_config

__all__ = ["fit_json", "ranking_sentence", "render_html", "write_outputs"]

_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.warn{color:#a40}.ok{color:#270}img{max-width:100%}"
)


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def fit_json(cal: Calibration) -> dict[str, Any]:
    """The contents of ``fit.json`` (module docstring)."""
    spec, inf, res, m = cal.spec, cal.inference, cal.fit, cal.moments
    search = res.search
    objective = Objective.from_log(m, cal.sim_arrangements)
    terms = objective.contributions(res.simulated)
    z = 1.959963984540054
    params = [
        {
            "path": p.path,
            "low": p.low,
            "high": p.high,
            "estimate": float(res.estimate[j]),
            "interval": [float(inf.low[j]), float(inf.high[j])],
            "sd": _num(inf.se[j]),
            "identified": inf.identification[j].identified,
            "curvature": _num(inf.identification[j].curvature),
            "warnings": list(inf.identification[j].warnings),
        }
        for j, p in enumerate(spec.params)
    ]
    moments = [
        {
            "name": k.name,
            "family": k.family,
            "segment": k.segment,
            "month": k.month,
            "cell": k.cell,
            "log": float(m.values[i]),
            "log_se": float(m.se[i]),
            "log_interval": [float(m.values[i] - z * m.se[i]), float(m.values[i] + z * m.se[i])],
            "fitted": _num(res.simulated[i]),
            "fitted_interval": [_num(inf.moment_low[i]), _num(inf.moment_high[i])],
            "count": float(m.counts[i]),
            "objective_term": float(terms[i]),
        }
        for i, k in enumerate(m.design.keys)
    ]
    out: dict[str, Any] = {
        "log": cal.log_path,
        "arrangements": cal.arrangements,
        "sim_arrangements": cal.sim_arrangements,
        "months_fitted": cal.months,
        "holdout_months": cal.holdout_months,
        "seed": res.seed,
        "seconds": cal.seconds,
        "estimator": (
            f"method of simulated moments, inverse-variance weights, {search.optimiser if search else 'cma-es'} "
            + (
                "then iterated Gauss-Newton on local linear models over independent seeds in a trust region"
                if res.refinement is not None
                else "then a local linear model over independent seeds and one Gauss-Newton step"
            )
        ),
        "pairing": res.pairing,
        "optimiser": None
        if search is None
        else {
            "name": search.optimiser,
            "settings": dict(search.settings),
            "budget": search.budget,
            "simulations": search.evaluations,
            "stop": search.stop,
            "message": search.message,
            "objective": search.objective,
        },
        "moment_errors": m.method,
        "uncertainty": inf.method,
        "level": inf.level,
        "objective": res.objective,
        "objective_dof": res.objective_dof,
        "evaluations": len(res.trials),
        "gauss_newton_accepted": res.gauss_newton_accepted,
        "refinement": _refinement(res),
        "replay": {
            "replayed": res.replay.replayed,
            "partly_fallback": res.replay.partly_fallback,
            "fallback": res.replay.fallback,
            "fallback_by_kind": dict(res.replay.by_kind),
        },
        "parameters": params,
        "moments": moments,
        "trials": [{"values": list(t.values), "objective": t.objective, "source": t.source} for t in res.trials],
        "backtest": None,
    }
    bt = cal.backtest
    if bt is not None:
        out["backtest"] = {
            "cutoff_days": bt.cutoff_days,
            "level": bt.level,
            "draws": bt.draws,
            "coverage": _num(bt.coverage),
            "by_family": {f: {"moments": n, "coverage": c} for f, (n, c) in bt.by_family().items()},
            "moments": [
                {
                    "name": k.name,
                    "log": float(bt.log_values[i]),
                    "predictive": [_num(bt.low[i]), _num(bt.high[i])],
                    "median": _num(bt.median[i]),
                    "covered": bool(bt.covered[i]),
                }
                for i, k in enumerate(bt.keys)
            ],
            "ranking": None if cal.ranking is None else ranking_json(cal.ranking),
        }
    return out


def ranking_json(r: Ranking) -> dict[str, Any]:
    """The back-test's ranking of candidate policies as JSON (EUR per decision)."""
    return {
        "what": "mean per-decision reward (EUR paid within the feedback window minus contact cost) of each candidate "
        "over the held-out decisions: OPE (doubly robust) on the log against the calibrated world's simulation",
        "cutoff_days": r.cutoff_days,
        "level": r.level,
        "kendall_tau": _num(r.kendall_tau),
        "pair_agreement": _num(r.pair_agreement),
        "same_best": r.same_best,
        "separated_pairs": r.separated_pairs,
        "separated_agreement": _num(r.separated_agreement),
        "world_inside_ope_interval": r.inside,
        "candidates": [
            {
                "policy": c.policy,
                "ope_dr": _num(c.ope),
                "ope_interval": [_num(c.ope_low), _num(c.ope_high)],
                "ope_snips": _num(c.ope_snips),
                "ope_refused": c.ope_refused,
                "world": _num(c.world),
                "world_se": _num(c.world_se),
                "decisions": c.decisions,
            }
            for c in r.candidates
        ],
    }


def ranking_sentence(rk: dict[str, Any]) -> str:
    """The back-test ranking's summary line, from :func:`ranking_json`'s payload.

    Its agreement measures are ``None`` where fewer than two candidates have a finite value on both sides (one
    candidate, or OPE without support for the others): those read "n/a".
    """

    def share(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.0%}"

    tau = rk["kendall_tau"]
    return (
        f"Per-decision reward (EUR) over the held-out decisions. Kendall's tau "
        f"{'n/a' if tau is None else f'{tau:.2f}'}; pairs ordered alike {share(rk['pair_agreement'])}; "
        f"of the {rk['separated_pairs']} pairs OPE separates, {share(rk['separated_agreement'])} ordered alike; "
        f"same best: {'yes' if rk['same_best'] else 'no'}; world value inside OPE's {rk['level']:.0%} interval "
        f"for {rk['world_inside_ope_interval']} of {len(rk['candidates'])}."
    )


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


def _moment_plot(cal: Calibration) -> Figure:
    m, res, inf = cal.moments, cal.fit, cal.inference
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(1, 1, 1)
    families = sorted({k.family for k in m.design.keys})
    cmap = [f"C{i % 10}" for i in range(len(families))]
    for family, color in zip(families, cmap, strict=True):
        sel = np.array([k.family == family for k in m.design.keys]) & ~np.isnan(res.simulated)
        x, y = m.values[sel], res.simulated[sel]
        yerr = np.abs(np.vstack([y - inf.moment_low[sel], inf.moment_high[sel] - y]))
        ax.errorbar(x, y, xerr=1.96 * m.se[sel], yerr=yerr, fmt="o", ms=3, lw=0.6, color=color, label=family, alpha=0.7)
    ax.plot([0, 1], [0, 1], color="#888", lw=0.8, ls="--")
    ax.set_xlabel("log moment (share, 0-1), with its 95% bootstrap interval")
    ax.set_ylabel("fitted world's moment (share, 0-1), with its 95% interval")
    ax.set_title("Moments: log vs calibrated world")
    ax.legend(fontsize=7, loc="upper left")
    return fig


def render_html(cal: Calibration, payload: dict[str, Any]) -> str:
    """``fit.html`` (module docstring)."""
    rows = "".join(
        f"<tr><td><code>{_e(p['path'])}</code></td><td>{p['low']:g}</td><td>{p['high']:g}</td>"
        f"<td>{p['estimate']:.4g}</td><td>[{p['interval'][0]:.4g}, {p['interval'][1]:.4g}]</td>"
        f"<td class='{'ok' if p['identified'] else 'warn'}'>{'yes' if p['identified'] else 'no'}</td></tr>"
        for p in payload["parameters"]
    )
    params = (
        "<table><tr><th>parameter</th><th>low</th><th>high</th><th>estimate</th>"
        f"<th>{cal.inference.level:.0%} interval</th><th>identified</th></tr>{rows}</table>"
    )
    warnings = [f"<li><code>{_e(p['path'])}</code>: {_e(w)}</li>" for p in payload["parameters"] for w in p["warnings"]]
    worst = sorted(payload["moments"], key=lambda r: -r["objective_term"])[:15]
    worst_rows = "".join(
        f"<tr><td>{_e(r['name'])}</td><td>{r['log']:.3f} &plusmn; {1.96 * r['log_se']:.3f}</td>"
        f"<td>{_fmt(r['fitted'])}</td><td>{r['count']:.0f}</td><td>{r['objective_term']:.1f}</td></tr>"
        for r in worst
    )
    parts = [
        _p(
            _e(
                f"Log {cal.log_path}: {cal.arrangements:,} arrangements, {cal.months} months fitted"
                f"{f', {cal.holdout_months} held out' if cal.holdout_months else ''}; "
                f"{len(cal.moments.values)} moments; {len(cal.spec)} parameters; simulations of "
                f"{cal.sim_arrangements:,} arrangements under the log's own decisions, seed {cal.fit.seed} for every "
                f"parameter vector. Objective Q = {cal.fit.objective:.1f} "
                f"on {cal.fit.objective_dof} degrees of freedom "
                f"after {len(cal.fit.trials)} simulations ({cal.seconds:.0f} s)." + _refinement_sentence(cal)
            )
        ),
        "<h3>Parameters</h3>",
        params,
        _p(_e("Intervals: " + cal.inference.method + ". Moment errors: " + cal.moments.method + ".")),
    ]
    if warnings:
        parts += ["<h3>Not identified</h3><ul>" + "".join(warnings) + "</ul>"]
    parts += [
        "<h3>Log vs fitted moments</h3>",
        _img(_moment_plot(cal), "log vs fitted moments, one point per moment, coloured by family"),
        "<h3>The worst-fitted moments</h3>",
        "<table><tr><th>moment</th><th>log (95%)</th><th>fitted</th><th>count</th><th>term of Q</th></tr>"
        + worst_rows
        + "</table>",
    ]
    bt = payload["backtest"]
    if bt is not None:
        fam = "".join(
            f"<tr><td>{_e(f)}</td><td>{v['moments']}</td><td>{v['coverage']:.0%}</td></tr>"
            for f, v in bt["by_family"].items()
        )
        parts += [
            "<h3>Back-test</h3>",
            _p(
                _e(
                    f"Held out from day {bt['cutoff_days']:.0f}: {len(bt['moments'])} moments; "
                    f"{bt['level']:.0%} predictive intervals from {bt['draws']} simulations with parameter draws; "
                    f"coverage {bt['coverage']:.0%} (nominal {bt['level']:.0%})."
                )
            ),
            f"<table><tr><th>family</th><th>moments</th><th>coverage</th></tr>{fam}</table>",
        ]
        rk = bt["ranking"]
        if rk is not None:
            rows_rk = "".join(
                f"<tr><td>{_e(c['policy'])}</td><td>{_fmt(c['ope_dr'])}</td>"
                f"<td>[{_fmt(c['ope_interval'][0])}, {_fmt(c['ope_interval'][1])}]</td>"
                f"<td>{_fmt(c['world'])} &plusmn; {_fmt(c['world_se'])}</td></tr>"
                for c in rk["candidates"]
            )
            parts += [
                "<h4>Candidate policies: calibrated world against OPE on the held-out months</h4>",
                _p(_e(ranking_sentence(rk))),
                "<table><tr><th>candidate</th><th>OPE (DR)</th><th>interval</th><th>calibrated world</th></tr>"
                + rows_rk
                + "</table>",
            ]
    section = _section("calibration", "Calibration to the log", *parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>regsim calibrate: {_e(cal.world.name)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>regsim calibrate: {_e(cal.world.name)}</h1>\n{section}\n</body>\n</html>\n"
    )


def write_outputs(cal: Calibration, out: str | Path) -> tuple[Path, Path, Path]:
    """Write ``world.yaml``, ``fit.json`` and ``fit.html`` into ``out`` (created); returns the three paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    data = config_data(cal.world)
    data["name"] = f"{cal.base.name}-calibrated"
    parse_world_config(data)  # what is written must load
    world = folder / "world.yaml"
    header = (
        f"# Calibrated by regsim calibrate to {cal.log_path}: the parameters of the spec set to their estimates\n"
        "# (fit.json has their intervals); every other field is the base world's.\n"
    )
    text = yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False)
    world.write_text(header + text, encoding="utf-8")
    payload = fit_json(cal)
    js = folder / "fit.json"
    js.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    page = folder / "fit.html"
    page.write_text(render_html(cal, payload), encoding="utf-8")
    return world, js, page


def _refinement(res: FitResult) -> dict[str, Any] | None:
    """fit.json's record of the iterated Gauss-Newton stage (``None`` when it did not run)."""
    ref = res.refinement
    if ref is None:
        return None
    return {
        "stop": ref.stop,
        "simulations": ref.simulations,
        "interval_top_up": ref.top_up,
        "box": ref.box,
        "objective": ref.objective,
        "interval_model_points": res.model.points,
        "iterations": [
            {
                "box": it.box,
                "points": it.points,
                "center_objective": it.center_objective,
                "predicted_gain": it.predicted_gain,
                "actual_gain": it.actual_gain,
                "checked_gains": list(it.checked_gains),
                "judged_gain": it.judged_gain,
                "accepted": it.accepted,
            }
            for it in ref.iterations
        ],
    }


def _refinement_sentence(cal: Calibration) -> str:
    """The fit report's sentence on the search's two stages."""
    ref, search = cal.fit.refinement, cal.fit.search
    if ref is None:
        return ""
    first = (
        ""
        if search is None
        else f" {search.optimiser} ran {search.evaluations} simulations (best Q {search.objective:.1f}); "
    )
    return (
        f"{first}iterated Gauss-Newton then ran {len(ref.iterations)} iterations ({ref.simulations} simulations, "
        f"{ref.top_up} of them the intervals' top-up; {sum(it.accepted for it in ref.iterations)} steps accepted) "
        f"and stopped ({ref.stop}) at Q {ref.objective:.1f}, its trust region {ref.box:.3g} of each range."
    )
