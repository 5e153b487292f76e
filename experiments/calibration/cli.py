"""``regsim calibrate``: the parser (cheap to build) and the command, which imports the work when it runs.

Bad arguments exit with status 2 and a message naming the flag and what it allows.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

__all__ = ["add_calibrate_parser", "cmd_calibrate"]

#: ``experiments.calibration.replaying.PAIRING_CHOICES``, written out so that building the parser imports no model
#: code (a test checks they agree).
PAIRING_CHOICES = ("auto", "arrangement", "debtor", "policy")


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Calibrate, write ``world.yaml``, ``fit.json`` and ``fit.html``, print a summary (exit 2 on bad input)."""
    from experiments.calibration.report import write_outputs
    from experiments.calibration.run import calibrate, read_log
    from experiments.calibration.spec import SpecError, load_spec
    from experiments.cli import _population_path
    from regsim import ConfigError, load_world_config

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started = time.perf_counter()
    try:
        for flag, value, least in (
            ("--trials", 1 if args.trials is None else args.trials, 1),
            ("--workers", args.workers, 1),
            ("--bootstrap", args.bootstrap, 2),
            ("--min-count", args.min_count, 1),
            ("--draws", args.draws, 2),
            ("--refine", 0 if args.refine is None else args.refine, 0),
        ):
            if value < least:
                raise ValueError(f"{flag}: expected an integer >= {least}, got {value}")
        if args.seed < 0:
            raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
        candidates = {} if args.candidates is None else {"candidates": _candidates(args.candidates)}
        world = load_world_config(_population_path(args.world))
        spec = load_spec(args.params, world)
        events = read_log(args.log)
        cal = calibrate(
            events,
            world,
            spec,
            trials=args.trials,
            refine=args.refine,
            seed=args.seed,
            optimiser=args.optimiser,
            holdout_months=args.holdout_months,
            sim_arrangements=args.sim_arrangements,
            n_boot=args.bootstrap,
            min_count=args.min_count,
            draws=args.draws,
            executor=args.executor,
            workers=args.workers,
            ray_address=args.ray_address,
            quiet=args.quiet,
            log_path=str(args.log),
            pairing=args.pairing,
            **candidates,
        )
    except (ConfigError, SpecError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(cal, args.out)
    print(
        f"calibrated {len(cal.spec)} parameters in {time.perf_counter() - started:.0f} s "
        f"(Q = {cal.fit.objective:.1f} on {cal.fit.objective_dof} degrees of freedom):"
    )
    width = max(len(p.path) for p in cal.spec.params)
    for j, p in enumerate(cal.spec.params):
        ident = cal.inference.identification[j]
        flag = "" if ident.identified else "  NOT IDENTIFIED: " + "; ".join(ident.warnings)
        print(
            f"  {p.path:<{width}}  {cal.fit.estimate[j]:10.4g}  "
            f"[{cal.inference.low[j]:.4g}, {cal.inference.high[j]:.4g}]{flag}"
        )
    if cal.backtest is not None:
        bt = cal.backtest
        print(f"back-test: {len(bt.keys)} held-out moments, {bt.level:.0%} predictive coverage {bt.coverage:.0%}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _candidates(value: str) -> tuple[str, ...]:
    """``--candidates``: comma-separated registered policy names, or ``none``."""
    if value.strip().lower() == "none":
        return ()
    import agents

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in agents.available()]
    if not names or unknown:
        raise ValueError(
            f"--candidates: expected comma-separated registered policy names or 'none', got {value!r}; "
            f"registered: {', '.join(sorted(agents.available()))}"
        )
    return names


def add_calibrate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``regsim calibrate``."""
    cal = sub.add_parser(
        "calibrate",
        help="fit a world's parameters to an event log (method of simulated moments), with intervals and a back-test",
    )
    cal.add_argument("--log", required=True, help="event log: a folder with events.parquet, or the file")
    cal.add_argument("--world", required=True, help="world config: a YAML path or a name under configs/population/")
    cal.add_argument("--params", required=True, help="SPEC: YAML of dotted world-config paths to {low, high}")
    cal.add_argument("--out", required=True, help="output folder: world.yaml, fit.json, fit.html")
    cal.add_argument(
        "--optimiser",
        choices=("cma-es", "dfo-ls"),
        default="cma-es",
        help="minimiser of the objective: CMA-ES (generations in parallel) or DFO-LS (trust-region Gauss-Newton on "
        "the residuals, down to the simulation's roughness scale), then the Gauss-Newton refinement (default: cma-es)",
    )
    cal.add_argument(
        "--trials",
        type=int,
        default=None,
        help="the optimiser's simulations at most (default: 4P for cma-es before the refinement, 10P with --refine 0; "
        "5P+1 for dfo-ls; P parameters)",
    )
    cal.add_argument(
        "--refine",
        type=int,
        default=None,
        help="simulations of the iterated Gauss-Newton refinement after the optimiser (local regression models over "
        "independent seeds in a trust region; default 12P, e.g. 240 for 20 parameters); 0: none, one local design "
        "of 6P and one Gauss-Newton step instead",
    )
    cal.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or Ray tasks")
    cal.add_argument("--workers", type=int, default=1, help="parallel simulations (default: 1)")
    cal.add_argument("--ray-address", default=None, help="Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    cal.add_argument("--holdout-months", type=int, default=0, help="hold out the log's last months (default: 0)")
    cal.add_argument(
        "--sim-arrangements",
        type=int,
        default=None,
        help="arrangements per simulation (default: the log's, up to 20000; the intervals carry 1 + log/simulated)",
    )
    cal.add_argument(
        "--pairing",
        choices=PAIRING_CHOICES,
        default="auto",
        help="how simulated arrangements take the log's decisions: policy, run the log's logging policy itself on "
        "the simulated states (the log must name a registered policy, e.g. epsilon-mixture); arrangement or debtor, "
        "replay the logged actions of the same-numbered log arrangement, or of the same plan length and nearest "
        "debt; auto: policy where the log names a registered policy, else arrangement (default: auto)",
    )
    cal.add_argument("--bootstrap", type=int, default=200, help="bootstrap draws of the moments (default: 200)")
    cal.add_argument("--min-count", type=int, default=30, help="smallest log denominator of a moment (default: 30)")
    cal.add_argument("--draws", type=int, default=20, help="back-test simulations (default: 20)")
    cal.add_argument(
        "--candidates",
        default=None,
        help="policies the back-test ranks, calibrated world against OPE on the held-out months, when the log's "
        "policy is stochastic: comma-separated names, or none (default: static-dunning,payday-aligned,silent,random)",
    )
    cal.add_argument("--seed", type=int, default=0, help="top seed; every simulation of the fit uses it (default: 0)")
    cal.add_argument("--quiet", action="store_true", help="no progress output")
    cal.set_defaults(func=cmd_calibrate)
