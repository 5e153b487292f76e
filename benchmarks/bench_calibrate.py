"""Wall time of a calibration: a 20-parameter fit of a log of many arrangements (issue 20's target: 50,000
arrangements in under 30 minutes on 2 cores).

Run from the repository root::

    python -m benchmarks.bench_calibrate [--arrangements 50000] [--months 12] [--sim-arrangements 10000]
                                         [--trials 24] [--workers 2] [--params 20]

It simulates a log of ``--arrangements`` under ``epsilon-mixture`` (static dunning with 30% exploration) in the
default world with the recovery spec's true values, then calibrates ``--params`` parameters (the ten of
``configs/calibration/recovery.yaml``, then further attentions, willingness and notice probabilities of the
other types) from the default world with ``--trials`` CMA-ES simulations, a local design of ``3P`` and one
Gauss-Newton step, ``--workers`` simulations at a time, each of ``--sim-arrangements`` arrangements (the weights
account for the smaller simulations). Reported: the log's simulation time, the calibration's wall time, the
simulations it ran and their mean wall time, and the projection of the wall time to other sizes from that mean.
Results go to ``benchmarks/results/calibrate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

#: The parameters beyond the recovery spec's ten, in order, with their bounds.
_MORE: tuple[tuple[str, float, float], ...] = (
    ("population.types.liquidity_constrained.attention", 0.1, 1.2),
    ("population.types.shock_prone.attention", 0.1, 1.2),
    ("population.types.unwilling.attention", 0.05, 0.8),
    ("population.types.unwilling.willingness", 0.1, 0.7),
    ("population.types.forgetful.willingness", 0.6, 1.0),
    ("population.types.reliable.notice.email", 0.1, 0.6),
    ("population.types.liquidity_constrained.notice.email", 0.05, 0.5),
    ("population.types.forgetful.reminder_effect", 0.2, 2.0),
    ("population.types.reliable.reminder_effect", 0.2, 2.0),
    ("population.shocks.mean_duration_days", 15.0, 120.0),
)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_calibrate", description=__doc__)
    parser.add_argument("--arrangements", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--sim-arrangements", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/calibrate.json")
    args = parser.parse_args(argv)

    import agents
    from experiments.calibration.recovery import RECOVERY_SPEC, RECOVERY_TRUTH
    from experiments.calibration.run import calibrate
    from experiments.calibration.spec import load_spec, parse_spec
    from regsim import WorldConfig, simulate

    base = WorldConfig()
    recovery = load_spec(RECOVERY_SPEC, base)
    mapping = {p.path: {"low": p.low, "high": p.high} for p in recovery.params}
    mapping.update({path: {"low": lo, "high": hi} for path, lo, hi in _MORE})
    if not 1 <= args.params <= len(mapping):
        parser.error(f"--params: expected 1..{len(mapping)}, got {args.params}")
    spec = parse_spec(dict(list(mapping.items())[: args.params]), base)
    truth = recovery.apply(base, [RECOVERY_TRUTH[p.path] for p in recovery.params])
    started = time.perf_counter()
    log = simulate(
        truth, agents.make("epsilon-mixture", seed=1), arrangements=args.arrangements, months=args.months, seed=1
    )
    log_seconds = time.perf_counter() - started
    started = time.perf_counter()
    cal = calibrate(
        log.events,
        base,
        spec,
        trials=args.trials,
        seed=args.seed,
        sim_arrangements=min(args.sim_arrangements, args.arrangements),
        workers=args.workers,
        quiet=False,
    )
    wall = time.perf_counter() - started
    sims = len(cal.fit.trials)
    result = {
        "command": "python -m benchmarks.bench_calibrate " + " ".join(argv or []),
        "arrangements": args.arrangements,
        "months": args.months,
        "sim_arrangements": cal.sim_arrangements,
        "parameters": len(spec),
        "moments": len(cal.moments.values),
        "trials": args.trials,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "log_simulation_seconds": log_seconds,
        "calibration_seconds": wall,
        "simulations": sims,
        "seconds_per_simulation_per_worker": wall * args.workers / sims,
        "identified": int(sum(i.identified for i in cal.inference.identification)),
        "under_30_minutes": wall < 1800.0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for k, v in result.items():
        print(f"{k:>36}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
