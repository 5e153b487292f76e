"""Validation by recovery: perturb a world's parameters, simulate a log under a stochastic policy, calibrate, and
check that each true value lies in its interval.

``python -m experiments.calibration.recovery --arrangements 5000 --months 6 --out runs/recovery``
uses ``configs/calibration/recovery.yaml`` (ten parameters) and :data:`RECOVERY_TRUTH` (the perturbed values),
logs under ``epsilon-mixture`` (static dunning mixed with uniform exploration, exact propensities:
:mod:`agents.ope.behaviour`), calibrates from the default world and writes ``recovery.json`` and
``recovery.md`` (parameter, true, default, estimate, interval, identified, covered) beside the calibration's
outputs (and ``calibration.pkl``, the whole :class:`~experiments.calibration.run.Calibration`).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from experiments.calibration.optimiser import OPTIMISERS, OptimiserName
from experiments.calibration.replaying import PAIRING_CHOICES, PairingChoice
from experiments.calibration.run import Calibration, calibrate
from experiments.calibration.spec import Spec, load_spec
from regsim.config import WorldConfig

__all__ = ["RECOVERY_TRUTH", "RecoveryRow", "recover", "recovery_rows"]

_ROOT = Path(__file__).resolve().parents[2]
#: The recovery spec.
RECOVERY_SPEC = _ROOT / "configs" / "calibration" / "recovery.yaml"
#: The true values of the recovery spec's parameters (the default world's in brackets): type shares, attention,
#: shock rates, notice probabilities, income timing (the benefit share moves pay days to the 3rd) and the
#: income left in a shock.
RECOVERY_TRUTH: dict[str, float] = {
    "population.types.forgetful.share": 0.33,  # (0.25)
    "population.types.unwilling.share": 0.15,  # (0.10)
    "population.types.forgetful.attention": 0.25,  # (0.15)
    "population.types.reliable.attention": 0.65,  # (0.9)
    "population.types.shock_prone.shocks_per_year": 3.5,  # (2.5)
    "population.types.liquidity_constrained.shocks_per_year": 1.3,  # (0.8)
    "population.types.forgetful.notice.email": 0.3,  # (0.17)
    "population.types.forgetful.notice.letter": 0.8,  # (0.6)
    "population.income.schedule_shares.benefits": 0.26,  # (0.18)
    "population.shocks.income_factor": 0.4,  # (0.25)
}


@dataclass(frozen=True)
class RecoveryRow:
    """One parameter's recovery: its path, true and default value, estimate, interval, and whether the moments
    identify it and the interval covers the truth."""

    path: str
    true: float
    default: float
    estimate: float
    low: float
    high: float
    identified: bool
    covered: bool


def recovery_rows(cal: Calibration, truth: dict[str, float]) -> list[RecoveryRow]:
    """The recovery table of a calibration against the true values."""
    defaults = cal.spec.values_of(cal.base)
    rows = []
    for j, p in enumerate(cal.spec.params):
        lo, hi = float(cal.inference.low[j]), float(cal.inference.high[j])
        t = truth[p.path]
        rows.append(
            RecoveryRow(
                p.path,
                t,
                float(defaults[j]),
                float(cal.fit.estimate[j]),
                lo,
                hi,
                cal.inference.identification[j].identified,
                lo <= t <= hi,
            )
        )
    return rows


def recover(
    spec: Spec,
    truth: dict[str, float],
    *,
    arrangements: int,
    months: int,
    trials: int | None = None,
    refine: int | None = None,
    seed: int,
    log_seed: int,
    optimiser: OptimiserName = "cma-es",
    holdout_months: int = 0,
    draws: int = 10,
    workers: int = 1,
    quiet: bool = True,
    out: Path | None = None,
    pairing: PairingChoice = "auto",
) -> tuple[Calibration, list[RecoveryRow]]:
    """Simulate a log of the true world under ``epsilon-mixture`` (seed ``log_seed``), calibrate from the default
    world (seed ``seed``, the simulations' treatment ``pairing``), and tabulate the recovery.

    Raises:
        KeyError: ``truth`` lacks a path of the spec.
    """
    import agents
    from regsim.simulate import simulate

    base = WorldConfig()
    true_world = spec.apply(base, [truth[p.path] for p in spec.params])
    logging_policy = agents.make("epsilon-mixture", seed=log_seed)
    log = simulate(true_world, logging_policy, arrangements=arrangements, months=months, seed=log_seed)
    if out is not None:
        log.write(out / "log")
    cal = calibrate(
        log.events,
        base,
        spec,
        trials=trials,
        refine=refine,
        seed=seed,
        optimiser=optimiser,
        holdout_months=holdout_months,
        draws=draws,
        workers=workers,
        quiet=quiet,
        log_path=str(out / "log") if out is not None else "<simulated>",
        pairing=pairing,
    )
    return cal, recovery_rows(cal, truth)


def _markdown(rows: list[RecoveryRow]) -> str:
    lines = [
        "| parameter | true | default | estimate | 95% interval | identified | covered |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r.path}` | {r.true:.4g} | {r.default:.4g} | {r.estimate:.4g} | [{r.low:.4g}, {r.high:.4g}] | "
            f"{'yes' if r.identified else 'no'} | {'yes' if r.covered else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the recovery (module docstring); prints the table."""
    from experiments.calibration.report import write_outputs

    parser = argparse.ArgumentParser(prog="python -m experiments.calibration.recovery", description=__doc__)
    parser.add_argument("--arrangements", type=int, default=5000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--trials", type=int, default=None, help="the optimiser's budget (default: the fit's for P)")
    parser.add_argument(
        "--refine",
        type=int,
        default=None,
        help="the Gauss-Newton refinement's simulations (default 12P; 0: none, one local design and step)",
    )
    parser.add_argument("--optimiser", choices=OPTIMISERS, default="cma-es")
    parser.add_argument("--holdout-months", type=int, default=1)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-seed", type=int, default=101)
    parser.add_argument("--out", default="runs/recovery")
    parser.add_argument(
        "--pairing",
        choices=PAIRING_CHOICES,
        default="auto",
        help="the simulations' treatment: run the logging policy, or replay by arrangement or debtor; auto: the "
        "policy where the log names a registered one (default: auto)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spec = load_spec(RECOVERY_SPEC, WorldConfig())
    started = time.perf_counter()
    cal, rows = recover(
        spec,
        RECOVERY_TRUTH,
        arrangements=args.arrangements,
        months=args.months,
        trials=args.trials,
        refine=args.refine,
        seed=args.seed,
        optimiser=args.optimiser,
        log_seed=args.log_seed,
        holdout_months=args.holdout_months,
        draws=args.draws,
        workers=args.workers,
        quiet=False,
        out=out,
        pairing=args.pairing,
    )
    wall = time.perf_counter() - started
    write_outputs(cal, out)
    # The whole calibration, so its inference can be re-examined without re-running the simulations.
    (out / "calibration.pkl").write_bytes(pickle.dumps(cal, protocol=pickle.HIGHEST_PROTOCOL))
    table = _markdown(rows)
    (out / "recovery.md").write_text(table, encoding="utf-8")
    payload = {
        "command": " ".join(["python -m experiments.calibration.recovery", *(argv or sys.argv[1:])]),
        "wall_seconds": wall,
        "simulations": len(cal.fit.trials) + (cal.backtest.draws if cal.backtest else 0),
        "optimiser": cal.fit.search.optimiser if cal.fit.search else None,
        "stop": cal.fit.search.stop if cal.fit.search else None,
        "objective": cal.fit.objective,
        "objective_dof": cal.fit.objective_dof,
        "covered": int(sum(r.covered for r in rows)),
        "parameters": len(rows),
        "backtest_coverage": cal.backtest.coverage if cal.backtest else None,
        "rows": [r.__dict__ for r in rows],
    }
    (out / "recovery.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(table)
    print(
        f"covered {payload['covered']}/{len(rows)}; wall {wall:.0f} s; "
        f"back-test coverage {payload['backtest_coverage']}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
