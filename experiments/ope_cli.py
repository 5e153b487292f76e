"""The command line of off-policy evaluation: ``regsim ope`` and ``regsim ope-validate``.

Parsers only, so that building the ``regsim`` parser stays cheap; the work is in :mod:`experiments.ope` and
:mod:`experiments.ope_validation`, imported when a command runs. Bad arguments exit with status 2 and a message
naming the flag and what it allows.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.ope_validation import PolicyFactory

__all__ = ["add_ope_parser", "add_validate_parser", "cmd_ope", "cmd_validate"]

#: The per-decision feedback window by default (days): :data:`agents.ope.logged.DEFAULT_WINDOW_DAYS`.
DEFAULT_WINDOW_DAYS = 14.0


def _positive(flag: str, value: float, integer: bool = False) -> None:
    if not (math.isfinite(value) and value > 0) or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{flag}: expected {kind} > 0, got {value}")


def cmd_ope(args: argparse.Namespace) -> int:
    """``regsim ope``: evaluate, write ``ope.json`` and ``ope.html``, print the verdict (exit 2 on bad input)."""
    from experiments.cli import _population_path
    from experiments.ope import run_ope
    from experiments.ope_report import write_report
    from regsim import ConfigError, load_world_config

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        _positive("--window-days", args.window_days)
        if args.bootstrap < 1:
            raise ValueError(f"--bootstrap: expected an integer >= 1, got {args.bootstrap}")
        if args.recommend_seeds < 2:
            raise ValueError(f"--recommend-seeds: expected an integer >= 2, got {args.recommend_seeds}")
        if not 0 < args.level < 1:
            raise ValueError(f"--level: expected a number in (0, 1), got {args.level}")
        config = load_world_config(_population_path(args.population))
        report = run_ope(
            args.log,
            args.policy,
            config=config,
            baseline=args.baseline,
            window_days=args.window_days,
            n_bootstrap=args.bootstrap,
            level=args.level,
            seed=args.seed,
            recommend=not args.no_recommend,
            recommend_seeds=args.recommend_seeds,
            interactions=args.reward_model == "interactions",
            validation=args.validation,
            say=say,
        )
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    js, page = write_report(report, args.out)
    print(f"\n{report.gate.sentence}")
    print(f"\n{'estimator':<10} {'value':>10} {'ci_low':>10} {'ci_high':>10}  note")
    for name, r in report.estimators.items():
        note = f"refused: {r.refused}" if r.refused else (r.diagnostics.warning or "")
        print(f"{name:<10} {r.value:>10.2f} {r.ci_low:>10.2f} {r.ci_high:>10.2f}  {note[:90]}")
    if report.recommendation is not None:
        print(f"\n{report.recommendation.sentence}")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"\nwrote {js} and {page} ({time.perf_counter() - started:.1f} s)")
    return 0


def add_ope_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``regsim ope`` to the ``regsim`` command's subparsers."""
    p = sub.add_parser("ope", help="off-policy evaluation of a policy on an event log, with a deploy gate")
    p.add_argument("--log", required=True, help="folder with events.parquet (regsim simulate or regsim export-log)")
    p.add_argument("--policy", required=True, help="the candidate: a registered name, an artifact folder, or 'shadow'")
    p.add_argument(
        "--baseline", default=None, help="policy to beat (name, artifact or 'shadow'; default: the logging policy)"
    )
    p.add_argument("--out", required=True, help="output folder for ope.json and ope.html")
    p.add_argument("--population", default="default", help="the world config the log was made under (default: default)")
    p.add_argument(
        "--window-days", type=float, default=DEFAULT_WINDOW_DAYS, help="per-decision feedback window (default: 14)"
    )
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples (default: 200)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the reward model (default: 0)")
    p.add_argument(
        "--reward-model",
        choices=("interactions", "linear"),
        default="interactions",
        help="DM/DR's reward model: with context x action interactions (default) or linear (faster)",
    )
    p.add_argument("--no-recommend", action="store_true", help="skip the estimator recommendation (validation)")
    p.add_argument("--recommend-seeds", type=int, default=3, help="seeds of that validation (default: 3)")
    p.add_argument(
        "--validation",
        default=None,
        help="recommend the estimator from this ope_validation.json (regsim ope-validate) instead of a small run",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_ope)


#: Candidates the command knows by default.
DEFAULT_CANDIDATES = ("static-dunning", "payday-aligned", "silent")
DEFAULT_BEHAVIOURS = ("epsilon-mixture", "epsilon-greedy", "random")


def _behaviour(name: str) -> PolicyFactory:
    """A logging policy by name: ``epsilon-mixture`` (static dunning, epsilon 0.3), ``epsilon-greedy`` (the
    bandit, epsilon 0.2, learning online), ``random``; or ``epsilon-mixture:BASE:EPSILON``."""
    import agents
    from agents.ope.behaviour import EpsilonMixture

    if name == "epsilon-mixture" or name.startswith("epsilon-mixture:"):
        parts = name.split(":")
        base = parts[1] if len(parts) > 1 else "static-dunning"
        eps = float(parts[2]) if len(parts) > 2 else 0.3
        EpsilonMixture(base=base, epsilon=eps)  # (validates now, not in the loop)
        return lambda seed: EpsilonMixture(base=base, epsilon=eps, seed=seed)
    if name == "epsilon-greedy":
        return lambda seed: agents.make("epsilon-greedy", epsilon=0.2, seed=seed)
    if name == "random":
        return lambda seed: agents.make("random", seed=seed)
    raise ValueError(
        f"--behaviours: unknown logging policy {name!r}; allowed: epsilon-mixture[:BASE:EPSILON], epsilon-greedy, "
        "random"
    )


def _candidate(name: str) -> PolicyFactory:
    import agents
    from experiments.ope import make_policy

    make_policy(name, "--candidates")  # (validates now)
    if name in agents.available() and "seed" in agents.available()[name].arguments:
        return lambda seed: agents.make(name, seed=seed)
    return lambda seed: make_policy(name, "--candidates")


def _label(policy: object) -> str:
    """A policy's label as a log records it (``"name version"``)."""
    return f"{getattr(policy, 'name', '')} {getattr(policy, 'version', '')}"


def cmd_validate(args: argparse.Namespace) -> int:
    """``regsim ope-validate``: run the validation, print and write the table (CSV and JSON)."""
    import json
    from pathlib import Path

    from experiments.cli import _population_path
    from experiments.ope_validation import ValidationResult, ValidationSpec, parse_sizes, run_validation, seeds_from
    from regsim import ConfigError, load_world_config

    try:
        sizes = parse_sizes(args.sizes)
        if args.seeds < 2:
            raise ValueError(f"--seeds: expected an integer >= 2, got {args.seeds}")
        if args.bootstrap < 1:
            raise ValueError(f"--bootstrap: expected an integer >= 1, got {args.bootstrap}")
        if not (math.isfinite(args.runoff_months) and args.runoff_months >= 0):
            raise ValueError(f"--runoff-months: expected a number of months >= 0, got {args.runoff_months}")
        behaviours = {b: _behaviour(b) for b in args.behaviours.split(",") if b}
        candidates = {c: _candidate(c) for c in args.candidates.split(",") if c}
        config = load_world_config(_population_path(args.population))
        world = config.model_copy(
            update={"simulation": config.simulation.model_copy(update={"runoff_months_after_plan": args.runoff_months})}
        )
        spec = ValidationSpec(
            behaviours=behaviours,
            candidates=candidates,
            sizes=sizes,
            seeds=seeds_from(args.first_seed, args.seeds),
            n_bootstrap=args.bootstrap,
            interactions=args.reward_model == "interactions",
        )
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    labels = {b: _label(make(0)) for b, make in behaviours.items()}

    def write(result: ValidationResult, complete: bool) -> None:
        """``ope_validation.csv`` and ``.json`` of the seeds done (rewritten after each seed: a checkpoint)."""
        result.frame().to_csv(out / "ope_validation.csv", index=False)
        payload = result.to_json(
            world=f"{config.name}, run off with cap plan + {args.runoff_months:g} months",
            reward_model=args.reward_model,
            sizes=list(sizes),
            behaviour_labels=labels,
            complete=complete,
        )
        (out / "ope_validation.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
        (out / "ope_validation.md").write_text(result.markdown() + "\n")

    result = run_validation(
        world,
        spec,
        progress=None if args.quiet else lambda s: print(s, file=sys.stderr),
        on_seed=lambda partial: write(partial, complete=False),
    )
    write(result, complete=True)
    frame = result.frame()
    shown = frame.assign(
        relative_error=frame["relative_error"].map(lambda x: f"{x:.1%}"),
        relative_bias=frame["relative_bias"].map(lambda x: f"{x:+.1%}"),
        coverage=frame["coverage"].map(lambda x: f"{x:.0%}"),
    )
    cols = ["behaviour", "candidate", "estimand", "estimator", "arrangements", "truth", "mean_estimate"]
    cols += ["relative_error", "relative_bias", "coverage", "runs", "refused"]
    print(shown[cols].to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    print()
    for line in result.statements():
        print(line)
    print(f"\n{len(result.seeds)} seeds, {result.wall_s:.0f} s; wrote {out}/ope_validation.csv, .json and .md")
    return 0


def add_validate_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``regsim ope-validate`` to the ``regsim`` command's subparsers."""
    p = sub.add_parser("ope-validate", help="check the OPE estimators against on-policy simulations (the truth)")
    p.add_argument("--population", default="default", help="world config (default: default)")
    p.add_argument(
        "--behaviours",
        default=",".join(DEFAULT_BEHAVIOURS),
        help="logging policies: epsilon-mixture[:BASE:EPSILON], epsilon-greedy, random (default: all three)",
    )
    p.add_argument(
        "--candidates",
        default=",".join(DEFAULT_CANDIDATES),
        help="candidates (default: static-dunning,payday-aligned,silent)",
    )
    p.add_argument("--sizes", default="100,300,1000", help="log sizes in arrangements (default: 100,300,1000)")
    p.add_argument("--seeds", type=int, default=20, help="seeds (default: 20)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default: 0)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples per estimate (default: 200)")
    p.add_argument("--runoff-months", type=float, default=2.0, help="run-off cap after the plan, months (default: 2)")
    p.add_argument(
        "--reward-model",
        choices=("interactions", "linear"),
        default="interactions",
        help="DM/DR's reward model, as in regsim ope: with context x action interactions (default) or linear",
    )
    p.add_argument("--out", default="runs/ope-validation", help="output folder (default: runs/ope-validation)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_validate)
