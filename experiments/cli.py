"""The ``regsim`` command line.

Subcommands:

* ``regsim simulate``: simulate a population under a registered policy and write the event log, ground truth
  and KPIs.
* ``regsim policies``: list the registered policies and their arguments.
* ``regsim evaluate``: run several policies on the same debtors and shocks, compare each with a baseline
  (paired confidence intervals, per segment) and write ``evaluation.parquet`` and ``evaluation.json``.
* ``regsim train``: train a deep-RL policy (``agents.train``) or a contextual bandit (online, on the
  population simulator) and save it to a folder.
* ``regsim run CONFIG``: an experiment from a config file (``configs/experiments/``): train its agents,
  evaluate them paired against the baseline, write a run folder with provenance and ``report.html``
  (:mod:`experiments.runner`); a config with a ``sweep`` section runs its trials in parallel, locally or on
  Ray (:mod:`experiments.sweep`); ``--resume RUN_DIR`` finishes a run that was stopped.
* ``regsim report RUN_DIR``: (re)write a run folder's ``report.html``.
* ``regsim facts``: measure every calibration fact of docs/calibration.md on a world and write ``facts.json``
  (:mod:`experiments.facts`).
* ``regsim ope``: off-policy evaluation of a policy on an event log, with a deploy gate (:mod:`experiments.ope`);
  ``regsim ope-validate``: the estimators checked against on-policy simulations (:mod:`experiments.ope_validation`).
* ``regsim calibrate``: a world's parameters fitted to an event log, with intervals and a back-test
  (:mod:`experiments.calibration`).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

if TYPE_CHECKING:
    from regsim import WorldConfig

DEFAULT_POPULATION = Path(__file__).resolve().parent.parent / "configs" / "population" / "default.yaml"

#: ``regsim train`` names trained by ``agents.train.train_policy`` (Stable-Baselines3).
DEEP_RL = ("ppo", "maskable-ppo", "dqn")
#: ``regsim train`` names trained online on the population simulator (registered bandit policies).
BANDITS = ("epsilon-greedy", "linucb", "linear-ts")


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
    from agents.ope.logged import decision_rewards  # the per-decision value OPE estimates (issue 19)

    result.kpis["decision_value_eur"] = decision_rewards(result.events, horizon_days=result.horizon_days).value
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
    table = result.kpis_by_type[cols].copy()
    table["arrangements"] = table["arrangements"].astype(int)
    print(table.to_string(float_format=lambda x: f"{x:,.3f}"))
    print(f"\nwrote {out}/events.parquet, ground_truth.parquet, resources.parquet, kpis.json")
    return 0


def _cmd_policies(args: argparse.Namespace) -> int:
    import agents

    specs = agents.available()
    trained = _trained_algorithms()
    if args.json:
        listed: dict[str, dict[str, object]] = {
            n: {"summary": s.summary, "arguments": s.arguments} for n, s in specs.items()
        }
        listed |= {n: {"summary": s, "arguments": {}, "trained": True} for n, s in trained.items()}
        print(json.dumps(listed, indent=2))
        return 0
    for name, spec in specs.items():
        arguments = ", ".join(f"{k}={v}" for k, v in spec.arguments.items()) or "no arguments"
        print(f"{name:<18} {spec.summary}\n{'':<18} {arguments}")
    if trained:
        print("\ntrained first (regsim train --policy NAME --out DIR), then used as the artifact DIR/policy:")
    for name, summary in trained.items():
        print(f"{name:<18} {summary}")
    return 0


def _trained_algorithms() -> dict[str, str]:
    """The SB3 algorithms ``regsim train`` trains, with the first line of their docstring ({} without torch)."""
    try:
        from agents.sb3 import POLICIES
    except ImportError:  # the rl extra is not installed
        return {}
    return {name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in POLICIES.items()}


def _provenance(args: argparse.Namespace, config: WorldConfig, **extra: Any) -> dict[str, Any]:
    """What a run folder records about how it was made."""
    versions = {}
    for package in ("regsim", "numpy", "pandas", "scipy", "simpy", "stable-baselines3", "torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "arguments": {k: v for k, v in vars(args).items() if k != "func"},
        "python": platform.python_version(),
        "versions": versions,
        **extra,
        "config": config.model_dump(mode="json"),
    }


def _seed_list(args: argparse.Namespace) -> list[int]:
    if args.seed_list is not None:
        return [int(s) for s in args.seed_list.split(",") if s.strip()]
    return list(range(args.seeds))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import agents
    from agents.evaluate import evaluate, resolve_policy
    from agents.hindsight import HINDSIGHT_ORACLE
    from regsim import ConfigError, load_world_config

    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    folders = []
    for n in dict.fromkeys([args.baseline, *names]):
        try:
            ref = agents.policy_reference(n)
        except agents.UnknownPolicyError:
            continue  # (refused below, with the other checks)
        if ref.notice is not None:
            print(f"note: {ref.notice}", file=sys.stderr)
        if ref.folder is not None:
            folders.append(ref.folder)
    if folders:
        # Trained networks decide on small batches; one thread avoids oversubscribing the cores (measured:
        # a 100-row forward pass 0.2 ms with one thread, 12-70 ms with two on a busy 2-core machine).
        import torch

        torch.set_num_threads(1)
    try:
        config = load_world_config(_population_path(args.population))
        for name in dict.fromkeys([args.baseline, *names]):
            resolve_policy(name, rules_version=config.rules.version)
        if args.oracle not in (None, HINDSIGHT_ORACLE):
            raise agents.UnknownPolicyError(
                f"--oracle: {args.oracle!r} is not an upper reference; allowed: {HINDSIGHT_ORACLE!r} (compare a "
                "policy such as 'one-step-oracle' with --policies)"
            )
    except (ConfigError, agents.UnknownPolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    months: int | None = args.months  # None: a run-off (the default), each arrangement to its end or its cap
    if months is not None and args.cap_factor is not None:
        print("error: --cap-factor stretches the run-off cap; it does not go with --months", file=sys.stderr)
        return 2
    try:
        runoff = None if months is not None else config.simulation.runoff_cap(args.cap_factor or 1.0)
    except ValueError as exc:
        print(f"error: --cap-factor: {exc}", file=sys.stderr)
        return 2
    n = args.arrangements if args.arrangements is not None else config.simulation.arrangements
    seeds = _seed_list(args)
    runs = len(dict.fromkeys([args.baseline, *names])) * len(seeds)
    horizon = (
        f"for {months} months"
        if runoff is None
        else f"to run-off (cap: plan length + {runoff.months_after_plan:g} months, x{runoff.cap_factor:g})"
    )
    print(
        f"evaluating {runs} runs of {n:,} arrangements {horizon} (world {config.name!r}, seeds {seeds}, "
        f"baseline {args.baseline!r})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    result = evaluate(
        names,
        config,
        n,
        seeds,
        months=months,
        runoff=runoff,
        baseline=args.baseline,
        oracle=args.oracle,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result.to_parquet(out / "evaluation.parquet")
    result.to_json(out / "evaluation.json")
    provenance = _provenance(args, config, seeds=seeds, months=months, arrangements=n, elapsed_s=elapsed)
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(f"\n{result.table()}")
    if args.segment != "all":
        try:
            print(f"\n{result.table(args.segment)}")
        except KeyError as exc:
            print(f"error: --segment: {exc.args[0]} (the results were written to {out})", file=sys.stderr)
            return 2
    print("\nintervals: paired t over arrangements pooled across seeds (means, per-seed totals); delta method (ratios)")
    print(f"wrote {out}/evaluation.parquet, evaluation.json, provenance.json ({elapsed:.1f} s)")
    return 0


def _train_bandit(args: argparse.Namespace, config: WorldConfig, out: Path) -> int:
    from agents.online import train_bandit

    try:
        folder, training = train_bandit(
            args.policy,
            config,
            steps=args.steps,
            seed=args.seed,
            world_seed=args.seed,
            months=args.months,
            out=out,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    runs = [
        {"seed": r.seed, "arrangements": r.arrangements, "months": r.months, "decisions": r.decisions}
        for r in training.runs
    ]
    decisions = training.decisions
    provenance = _provenance(args, config, decisions=decisions, runs=runs, policy_folder=str(folder))
    (out / "train.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
    print(f"trained {args.policy!r} online on {decisions:,} decisions in {len(runs)} run(s); wrote {folder}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from regsim import ConfigError, load_world_config

    allowed = (*DEEP_RL, *BANDITS)
    if args.policy not in allowed:
        print(f"error: --policy {args.policy!r} cannot be trained; allowed: {list(allowed)}", file=sys.stderr)
        return 2
    try:
        config = load_world_config(_population_path(args.population))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if (out / "policy").exists():
        print(f"error: --out {out}: {out / 'policy'} exists already; train into a new folder", file=sys.stderr)
        return 2
    if args.policy in BANDITS:
        return _train_bandit(args, config, out)
    if args.decision == "menu":  # the menu exists only with self-service on (as in regsim/SelfServiceVec-v0)
        config = config.with_overrides(self_service={"enabled": True})
    try:
        # Imported here: torch and Stable-Baselines3 are optional (the `rl` extra).
        from agents.train import train_policy
    except ImportError as exc:
        print(
            f"error: training {args.policy!r} needs agents.train and the rl extra "
            f"(pip install -e '.[rl]'); import failed: {exc}",
            file=sys.stderr,
        )
        return 1
    try:
        algo_kwargs = json.loads(args.algo_kwargs) if args.algo_kwargs else None
    except json.JSONDecodeError as exc:
        print(f"error: --algo-kwargs is not JSON: {exc}", file=sys.stderr)
        return 2
    if algo_kwargs is not None and not isinstance(algo_kwargs, dict):
        print("error: --algo-kwargs must be a JSON object of SB3 constructor arguments", file=sys.stderr)
        return 2
    try:
        folder = train_policy(
            args.policy,
            config=config,
            steps=args.steps,
            seed=args.seed,
            out=out,
            env_kwargs={"reward": args.reward},
            algo_kwargs=algo_kwargs,
            progress=not args.quiet,
            tensorboard=not args.no_tensorboard,
            n_envs=args.n_envs,
            workers=args.workers,
            decision=args.decision,
        )
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {args.policy!r} for {args.steps:,} steps; wrote {folder}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from experiments.config import ExperimentConfigError, load_experiment_config
    from experiments.provenance import RunRecord
    from experiments.runner import execute, read_run_config, start_run

    try:
        if args.resume is not None:
            if args.config is not None or args.set:
                print("error: --resume RUN_DIR reads the config from RUN_DIR; give no CONFIG or --set", file=sys.stderr)
                return 2
            run_dir = Path(args.resume)
            config = read_run_config(run_dir)
            if not (run_dir / "run.json").is_file():
                print(f"error: --resume {run_dir}: no run.json there", file=sys.stderr)
                return 2
            record = RunRecord.resume(run_dir / "run.json")
        else:
            if args.config is None:
                print(
                    "error: give CONFIG (a YAML file under configs/experiments/) or --resume RUN_DIR", file=sys.stderr
                )
                return 2
            config = load_experiment_config(args.config, args.set)
            run_dir = Path(args.out) if args.out else Path("runs") / config.name
            record = start_run(config, run_dir, config_path=str(args.config))
    except (ExperimentConfigError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config.sweep is not None:
        from experiments.sweep import run_sweep

        table, html = run_sweep(
            config,
            run_dir,
            record,
            executor=args.executor,
            workers=args.workers,
            ray_address=args.ray_address,
            quiet=args.quiet,
        )
        kpis = ("completion_rate", "collected_eur_per_arrangement")
        shown = table[table["kpi"].isin(kpis) & (table["policy"] != config.evaluation.baseline)]
        print(f"sweep {config.name}: {table['trial'].nunique()} trials; difference to {config.evaluation.baseline!r}:")
        print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        print(f"\nwrote {run_dir}/sweep.parquet" + (f"\nreport: {html}" if html else ""))
        return 0
    outcome = execute(config, run_dir, record, quiet=args.quiet)
    print(outcome.table)
    print(f"\nrun folder: {run_dir}" + (f"\nreport: {outcome.report}" if outcome.report else ""))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        if (run_dir / "evaluation.json").is_file():
            # An evaluate folder holds the comparison only: the report also needs each policy's event log.
            print(
                f"error: {run_dir} is a `regsim evaluate` folder (evaluation.json: the paired comparison, already "
                "readable as it is); `regsim report` needs a `regsim run` folder (config.yaml and each policy's "
                "event log): run `regsim run CONFIG --out DIR` (configs/experiments/*.yaml), then `regsim report DIR`",
                file=sys.stderr,
            )
            return 2
        print(f"error: {run_dir} is not a run folder (no config.yaml; `regsim run` writes one)", file=sys.stderr)
        return 2
    from experiments.report import write_report

    print(f"report: {write_report(run_dir)}")
    return 0


def _cmd_facts(args: argparse.Namespace) -> int:
    from experiments.facts import format_facts, measure_facts, write_facts
    from regsim import ConfigError, load_world_config

    try:
        config = load_world_config(_population_path(args.population))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def say(run: str) -> None:
        if not args.quiet:
            print(f"  simulating: {run}", file=sys.stderr)

    checks = measure_facts(config, arrangements=args.arrangements, seed=args.seed, progress=say)
    print(
        f"calibration facts on world {config.name!r} ({args.arrangements:,} arrangements per arm, seed {args.seed}, "
        f"{time.perf_counter() - started:.1f} s):"
    )
    print(format_facts(checks))
    print(f"\n{sum(c.in_range for c in checks)} of {len(checks)} in range; wrote {write_facts(checks, args.out)}")
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

    ev = sub.add_parser("evaluate", help="compare policies on the same debtors, paired, against a baseline")
    ev.add_argument(
        "--population",
        default="default",
        help="population config: a YAML file or a name under configs/population/ (default: default)",
    )
    ev.add_argument(
        "--policies",
        required=True,
        help="comma-separated registered names or artifact folders (the baseline is added if missing)",
    )
    ev.add_argument("--baseline", default="static-dunning", help="policy to compare with (default: static-dunning)")
    ev.add_argument(
        "--oracle",
        default=None,
        help="'hindsight-oracle': the upper reference of the gap closed, computed from the evaluated policies' "
        "outcomes and a rollout search on the same random numbers; its compute is in the evaluation's meta "
        "(default: none)",
    )
    ev.add_argument("--arrangements", type=int, default=None, help="arrangements per run (default: config)")
    ev.add_argument(
        "--months",
        type=int,
        default=None,
        help="a fixed horizon in months of 30 days (default: run-off, each arrangement followed to its end or to "
        "its cap, plan length + simulation.runoff_months_after_plan, and the censored share reported)",
    )
    ev.add_argument(
        "--cap-factor",
        type=float,
        default=None,
        help="stretch the run-off cap by this factor, e.g. 1.5 to check that a verdict does not hinge on the cap "
        "(default: 1)",
    )
    seeds = ev.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, default=5, help="number of seeds: runs use seeds 0..K-1 (default: 5)")
    seeds.add_argument("--seed-list", default=None, help="explicit comma-separated seeds instead of --seeds")
    ev.add_argument("--segment", default="all", help="also print the table of this segment (e.g. reliable, <500)")
    ev.add_argument("--out", default="runs/evaluate", help="output folder (default: runs/evaluate)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_evaluate)

    tr = sub.add_parser("train", help="train a deep-RL policy or a bandit and save it to a folder")
    tr.add_argument("--policy", required=True, help=f"one of {', '.join((*DEEP_RL, *BANDITS))}")
    tr.add_argument(
        "--population",
        default="default",
        help="population config: a YAML file or a name under configs/population/ (default: default)",
    )
    tr.add_argument("--steps", type=int, required=True, help="decisions to train on (environment steps)")
    tr.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    tr.add_argument("--months", type=int, default=12, help="horizon of each online bandit run (default: 12)")
    tr.add_argument("--out", required=True, help="output folder; the trained policy goes to OUT/policy")
    tr.add_argument(
        "--reward",
        default="runoff_value",
        help="deep RL: reward name, one of regsim.rewards.REWARDS (default: runoff_value, net recovery x 0.01 plus 3.0 "
        "per completed plan: the run-off verdict's objective)",
    )
    tr.add_argument(
        "--algo-kwargs",
        default=None,
        help='deep RL: SB3 constructor arguments as JSON, e.g. \'{"n_steps": 8, "batch_size": 512}\' '
        "(n_steps is per slot of the vector env)",
    )
    tr.add_argument(
        "--n-envs",
        type=int,
        default=None,
        help="deep RL: slots of regsim/ArrangementVec-v0 stepped together (default: 2048 for PPO and MaskablePPO, "
        "16 for DQN)",
    )
    tr.add_argument(
        "--workers",
        type=int,
        default=None,
        help="deep RL: processes the slots are split over (default: one per 2048 slots, at most one per core; the "
        "result is the same for any number)",
    )
    tr.add_argument(
        "--decision",
        choices=("arrangement", "menu"),
        default="arrangement",
        help="deep RL: the decision learned (default: arrangement); menu: maskable-ppo on the self-service menu "
        "(regsim/SelfServiceVec-v0, self-service switched on in the population, n-envs default 256)",
    )
    tr.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs (deep RL)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    run = sub.add_parser(
        "run",
        help="run an experiment config: train, evaluate, write a run folder and report",
        description="Run an experiment config (configs/experiments/*.yaml). --set KEY=VALUE overrides a field "
        "by its dotted path (VALUE parsed as YAML); agents are addressed by name, e.g. "
        "--set agents.mppo.train.steps=2048 (or by position, agents.0.train.steps).",
    )
    run.add_argument("config", nargs="?", default=None, help="experiment YAML (omit with --resume)")
    run.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)"
    )
    run.add_argument("--out", default=None, help="run folder (default: runs/<config name>); must not hold a run")
    run.add_argument("--resume", default=None, metavar="RUN_DIR", help="finish a stopped run from its checkpoints")
    run.add_argument(
        "--executor", choices=("local", "ray"), default="local", help="sweeps: local processes or Ray tasks"
    )
    run.add_argument("--workers", type=int, default=None, help="sweeps: parallel trials (default: the cores)")
    run.add_argument(
        "--ray-address", default=None, help="sweeps: Ray cluster address (default: $RAY_ADDRESS, else a local one)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars; only warnings on stderr")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="(re)write the report.html of a run folder")
    rep.add_argument("run_dir", help="a run folder written by `regsim run`")
    rep.set_defaults(func=_cmd_report)

    facts = sub.add_parser("facts", help="measure the calibration facts (docs/calibration.md) on a world")
    facts.add_argument("--population", default="default", help="population config: a YAML file or a name")
    facts.add_argument("--arrangements", type=int, default=4_000, help="arrangements per arm (default: 4000)")
    facts.add_argument("--seed", type=int, default=0, help="run seed, shared by every arm (default: 0)")
    facts.add_argument("--out", default="runs/facts", help="output folder for facts.json (default: runs/facts)")
    facts.add_argument("--quiet", action="store_true", help="no progress lines")
    facts.set_defaults(func=_cmd_facts)

    from experiments.ope_cli import add_ope_parser, add_validate_parser

    add_ope_parser(sub)
    add_validate_parser(sub)
    from experiments.calibration.cli import add_calibrate_parser

    add_calibrate_parser(sub)
    try:
        from serving.cli import register as _register_serving
    except ImportError:
        pass  # the server's extra is not installed: no `regsim serve` / `regsim export-log`
    else:
        _register_serving(sub)
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
    if getattr(args, "steps", None) is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if getattr(args, "workers", None) is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.command == "evaluate":
        if args.seed_list is None and args.seeds < 1:
            parser.error(f"--seeds must be >= 1, got {args.seeds}")
        if args.seed_list is not None:
            try:
                listed = [int(s) for s in args.seed_list.split(",") if s.strip()]
            except ValueError:
                parser.error(f"--seed-list must be comma-separated integers >= 0, got {args.seed_list!r}")
            if not listed or min(listed) < 0 or len(set(listed)) != len(listed):
                parser.error(f"--seed-list must be distinct comma-separated integers >= 0, got {args.seed_list!r}")
        names = [n.strip() for n in args.policies.split(",") if n.strip()]
        if not names:
            parser.error("--policies must name at least one policy")
        if len(set(names)) != len(names):
            parser.error(f"--policies names a policy more than once: {args.policies!r}")
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
