"""``regsim calibrate`` end to end on a tiny log (150 arrangements, 2 months): world.yaml loads as a world,
fit.json holds every parameter and moment with intervals and the back-test, fit.html has the moment plot; bad
input exits 2 naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agents
from experiments.cli import main
from regsim import WorldConfig, load_world_config, simulate

SPEC = (
    "population.types.forgetful.attention: {low: 0.05, high: 0.5}\n"
    "population.shocks.income_factor: {low: 0.05, high: 0.6}\n"
)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("log")
    simulate(WorldConfig(), agents.make("epsilon-mixture", seed=2), arrangements=150, months=2, seed=2).write(folder)
    (folder / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return folder


def test_calibrate_writes_a_world_and_a_fit_report(log_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cal"
    args = ["calibrate", "--log", str(log_dir), "--world", "default", "--params", str(log_dir / "spec.yaml")]
    args += ["--out", str(out), "--trials", "6", "--holdout-months", "1", "--draws", "2", "--bootstrap", "20"]
    assert main([*args, "--refine", "10", "--quiet"]) == 0
    world = load_world_config(out / "world.yaml")
    fit = json.loads((out / "fit.json").read_text(encoding="utf-8"))
    assert world.name == "default-calibrated"
    assert fit["pairing"] == "policy"  # the default, auto: the log names a registered logging policy
    opt = fit["optimiser"]  # the default optimiser, its settings, what it ran and why it stopped
    assert opt["name"] == "cma-es" and opt["budget"] == 6 and opt["simulations"] == 6  # one generation of 6
    assert opt["stop"] in ("budget", "converged") and opt["settings"]["popsize"] == 6
    assert sum(t["source"] == "cma-es" for t in fit["trials"]) == opt["simulations"]
    ref = fit["refinement"]  # the iterated Gauss-Newton stage: its iterations and why it stopped
    assert (
        ref["stop"] in ("converged", "trust-region", "budget")
        and 1 <= ref["simulations"] - ref["interval_top_up"] <= 10
    )
    assert ref["iterations"] and {"box", "predicted_gain", "actual_gain", "accepted"} <= set(ref["iterations"][0])
    assert sum(t["source"] in ("local", "gauss-newton", "check") for t in fit["trials"]) == ref["simulations"]
    # Each simulated step was checked at a fresh seed with its centre (two simulations, source "check").
    steps = [it for it in ref["iterations"] if it["actual_gain"] is not None]
    assert sum(t["source"] == "check" for t in fit["trials"]) == 2 * len(steps)
    assert all(len(it["checked_gains"]) == 1 and it["judged_gain"] is not None for it in steps)
    assert "iterated Gauss-Newton" in fit["estimator"]
    assert [p["path"] for p in fit["parameters"]] == [
        "population.types.forgetful.attention",
        "population.shocks.income_factor",
    ]
    assert world.population.types["forgetful"].attention == pytest.approx(fit["parameters"][0]["estimate"])
    for p in fit["parameters"]:
        assert p["low"] <= p["interval"][0] <= p["estimate"] <= p["interval"][1] <= p["high"] or not p["identified"]
    assert fit["moments"] and {"log", "log_se", "fitted", "fitted_interval", "count"} <= set(fit["moments"][0])
    bt = fit["backtest"]
    assert bt["moments"] and all(m["name"].split("/")[2] == "m1" for m in bt["moments"])
    assert 0.0 <= bt["coverage"] <= 1.0
    rk = bt["ranking"]  # the log's policy explores: the back-test ranks the default candidates
    assert [c["policy"] for c in rk["candidates"]] == ["static-dunning", "payday-aligned", "silent", "random"]
    assert all(c["decisions"] > 0 and c["world"] is not None for c in rk["candidates"])
    assert 0.0 <= rk["pair_agreement"] <= 1.0
    html = (out / "fit.html").read_text(encoding="utf-8")
    assert "iterated Gauss-Newton then ran" in html
    assert "data:image/png;base64," in html and "Back-test" in html and "calibrated world against OPE" in html


@pytest.mark.parametrize(
    ("optimiser", "refine"), [("dfo-ls", []), ("cma-es", []), ("cma-es", ["--refine", "12"])], ids=str
)
def test_the_same_seed_gives_the_same_fit_to_the_bit(
    log_dir: Path, tmp_path: Path, optimiser: str, refine: list[str]
) -> None:
    args = ["calibrate", "--log", str(log_dir), "--world", "default", "--params", str(log_dir / "spec.yaml")]
    args += ["--trials", "5", "--bootstrap", "20", "--quiet", "--optimiser", optimiser, "--pairing", "debtor"]
    args += refine  # the refinement: its designs, steps, fresh-seed checks and the intervals' top-up
    fits = []
    for run in ("a", "b"):
        assert main([*args, "--out", str(tmp_path / run)]) == 0
        fit = json.loads((tmp_path / run / "fit.json").read_text(encoding="utf-8"))
        fits.append(fit)
    assert fits[0]["optimiser"]["name"] == optimiser and fits[0]["pairing"] == "debtor"
    assert fits[0]["trials"] == fits[1]["trials"]
    assert [p["estimate"] for p in fits[0]["parameters"]] == [p["estimate"] for p in fits[1]["parameters"]]
    assert [p["interval"] for p in fits[0]["parameters"]] == [p["interval"] for p in fits[1]["parameters"]]
    assert fits[0]["refinement"] == fits[1]["refinement"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trials", "0"], "--trials: expected an integer >= 1"),
        (["--holdout-months", "2"], "--holdout-months: expected 0..1"),
        (["--sim-arrangements", "100000"], "--sim-arrangements: expected 1..150"),
        (["--candidates", "static-dunning,no-such-policy"], "--candidates: expected comma-separated registered"),
    ],
)
def test_bad_arguments_exit_2(log_dir: Path, tmp_path: Path, extra: list[str], message: str, capsys) -> None:
    args = ["calibrate", "--log", str(log_dir), "--world", "default", "--params", str(log_dir / "spec.yaml")]
    assert main([*args, "--out", str(tmp_path), "--quiet", *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_spec_exits_2_naming_the_path(log_dir: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("population.types.forgetful.atention: {low: 0.1, high: 0.2}\n", encoding="utf-8")
    args = ["calibrate", "--log", str(log_dir), "--world", "default", "--params", str(bad), "--out", str(tmp_path)]
    assert main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "population.types.forgetful.atention: unknown field 'atention'" in err and "'attention'" in err


@pytest.mark.statistical  # with the other Ray check: starting Ray takes tens of seconds
def test_ray_and_a_process_pool_give_the_in_process_fit(log_dir: Path, tmp_path: Path) -> None:
    args = ["calibrate", "--log", str(log_dir), "--world", "default", "--params", str(log_dir / "spec.yaml")]
    args += ["--trials", "6", "--refine", "6", "--bootstrap", "20", "--quiet"]  # a short refinement, through each
    fits = {}
    for name, extra in {
        "inline": ["--workers", "1"],
        "pool": ["--workers", "2"],
        "ray": ["--executor", "ray", "--workers", "2"],
    }.items():
        assert main([*args, "--out", str(tmp_path / name), *extra]) == 0
        fit = json.loads((tmp_path / name / "fit.json").read_text(encoding="utf-8"))
        fits[name] = ([p["estimate"] for p in fit["parameters"]], fit["objective"])
    assert fits["pool"] == fits["inline"] == fits["ray"]
