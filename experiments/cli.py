"""The ``regsim`` command line.

Subcommands:

* ``regsim simulate``: simulate a population under a registered policy and write the event log, ground truth
  and KPIs.
* ``regsim policies``: list the registered policies and their arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

DEFAULT_POPULATION = Path(__file__).resolve().parent.parent / "configs" / "population" / "default.yaml"


def _population_path(value: str) -> Path:
    """A population config: a YAML path, or the name of a file under ``configs/population/``."""
    p = Path(value)
    if p.suffix in (".yaml", ".yml"):
        return p
    return DEFAULT_POPULATION.parent / f"{value}.yaml"


def _format_kpis(kpis: dict[str, float]) -> str:
    width = max(len(k) for k in kpis)
    lines = []
    for k, v in kpis.items():
        shown = f"{v:,.2f}" if abs(v) >= 100 else f"{v:.4f}"
        lines.append(f"  {k:<{width}}  {shown:>16}")
    return "\n".join(lines)


def _cmd_simulate(args: argparse.Namespace) -> int:
    import agents
    from regsim import ConfigError, load_world_config, simulate

    try:
        config = load_world_config(_population_path(args.population))
        policy = agents.make(args.policy)
    except (ConfigError, agents.UnknownPolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    months = args.months if args.months is not None else config.simulation.months
    n = args.arrangements if args.arrangements is not None else config.simulation.arrangements
    seed = args.seed if args.seed is not None else config.simulation.seed
    print(
        f"simulating {n:,} arrangements for {months} months under {policy.name!r} (world {config.name!r}, seed {seed})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    with tqdm(total=30 * months, unit="day", disable=args.quiet, file=sys.stderr) as bar:

        def advance(days_done: int) -> None:
            bar.update(days_done - bar.n)

        result = simulate(config, policy, arrangements=n, months=months, seed=seed, progress=advance)
    elapsed = time.perf_counter() - started
    out = result.write(args.out)
    print(
        f"\nKPIs ({n:,} arrangements, {len(result.events):,} events, {elapsed:.1f} s, "
        f"{n * months / elapsed:,.0f} debtor-months/s):"
    )
    print(_format_kpis(result.kpis))
    print("\nBy debtor type (ground truth):")
    cols = [
        "arrangements",
        "completion_rate",
        "on_time_installment_rate",
        "breakdown_rate",
        "contacts_per_arrangement",
        "collected_eur_per_arrangement",
    ]
    print(result.kpis_by_type[cols].to_string(float_format=lambda x: f"{x:,.3f}"))
    print(f"\nwrote {out}/events.parquet, ground_truth.parquet, resources.parquet, kpis.json")
    return 0


def _cmd_policies(args: argparse.Namespace) -> int:
    import agents

    specs = agents.available()
    if args.json:
        print(json.dumps({n: {"summary": s.summary, "arguments": s.arguments} for n, s in specs.items()}, indent=2))
        return 0
    for name, spec in specs.items():
        arguments = ", ".join(f"{k}={v}" for k, v in spec.arguments.items()) or "no arguments"
        print(f"{name:<18} {spec.summary}\n{'':<18} {arguments}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``regsim`` command."""
    parser = argparse.ArgumentParser(prog="regsim", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="simulate a population under a policy")
    sim.add_argument(
        "--population",
        default="default",
        help="population config: a YAML file or a name under configs/population/ (default: default)",
    )
    sim.add_argument("--policy", default="static-dunning", help="registered policy name (see `regsim policies`)")
    sim.add_argument("--arrangements", type=int, default=None, help="number of arrangements (default: config)")
    sim.add_argument("--months", type=int, default=None, help="horizon in months of 30 days (default: config)")
    sim.add_argument("--seed", type=int, default=None, help="run seed (default: config)")
    sim.add_argument("--out", default="runs/simulate", help="output folder (default: runs/simulate)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_cmd_simulate)

    pol = sub.add_parser("policies", help="list the registered policies")
    pol.add_argument("--json", action="store_true", help="as JSON")
    pol.set_defaults(func=_cmd_policies)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``regsim`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("arrangements", "months"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name} must be >= 1, got {value}")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
