"""Wall time of a calibration as users run it: ``regsim calibrate`` with its shipped defaults, 20 parameters, a log
of 50,000 arrangements (issue 20's target: under 30 minutes on 2 cores).

Run from the repository root::

    python -m benchmarks.bench_calibrate [--arrangements 50000] [--months 6] [--workers 2] [--params 20]
                                         [--out-dir runs/bench-calibrate] [--refine N]
                                         [--pairing P]

Steps, in one run:

1. The log: ``--arrangements`` simulated for ``--months`` under ``epsilon-mixture`` (static dunning with 30%
   exploration) in the default world with the recovery spec's true values, written to ``OUT_DIR/log``.
2. The reference, measured in the same run and process: one ``regsim.simulate`` of the default world under
   ``epsilon-mixture`` at the calibration's simulation size (the log's up to 20,000, the command's default) and
   horizon, i.e. what one simulation of the world costs without the replay or the moments.
3. The command: ``regsim calibrate --log OUT_DIR/log --world default --params OUT_DIR/spec.yaml --out
   OUT_DIR/fit --workers W`` in a child process (its progress and summary in ``OUT_DIR/calibrate.stderr`` and
   ``.stdout``): only the flags a user must give and the machine's core count; every other setting (optimiser
   CMA-ES with ``4P`` simulations in whole generations, then the iterated Gauss-Newton refinement of ``12P`` and
   the intervals' top-up of at most ``6P`` on top, the log's logging policy simulated where the log names a
   registered one, simulation size with the capacity scaled to it, bootstrap) is the command's default: at 20
   parameters and 2 workers, 7 generations of 12 (84) + 240 + at most 120 simulations. ``--refine N`` adds
   ``--refine N`` to the command (``--refine 0``: CMA-ES's ``10P`` in 17 generations, 204, and one local design of
   ``6P`` with one step: 325 simulations); ``--pairing P`` adds ``--pairing P`` (how the
   simulations take the log's decisions; ``policy``: the log's logging policy decides). The spec is the ten
   parameters of ``configs/calibration/recovery.yaml`` then further attentions, willingness, notice
   probabilities, reminder effects and the shock duration (:data:`_MORE`), ``--params`` of them.

Reported (printed and written to ``benchmarks/results/calibrate.json``): the command's wall time against the
30-minute target (ratio), its CPU seconds (the child and the process pool it waited for, ``RUSAGE_CHILDREN``),
the 1-minute load average sampled every 15 s while it ran (min, mean, max: other work on the 2 cores slows a
wall-time measurement), the simulations it ran (``fit.json``'s evaluations), the wall time per simulation and
worker, the calibration's wall time in reference simulations (how many plain world runs it costs), the
optimiser's simulations and why it stopped, the refinement's iterations, simulations and stop, and how many
identified parameters' intervals cover the log's true values.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "calibrate.json"
TARGET_SECONDS = 1800.0

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


class _LoadSampler(threading.Thread):
    """Samples the 1-minute load average every ``every`` seconds until stopped."""

    def __init__(self, every: float) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(os.getloadavg()[0])
            self._halt.wait(self.every)

    def stop(self) -> list[float]:
        self._halt.set()
        self.join()
        return self.samples


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_calibrate", description=__doc__)
    parser.add_argument("--arrangements", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--params", type=int, default=20)
    parser.add_argument("--out-dir", default="runs/bench-calibrate")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--refine", type=int, default=None, help="pass --refine N to the command (default: none)")
    parser.add_argument("--pairing", default=None, help="pass --pairing P to the command (default: none)")
    args = parser.parse_args(argv)

    import yaml

    import agents
    from experiments.calibration.recovery import RECOVERY_SPEC, RECOVERY_TRUTH
    from experiments.calibration.run import default_sim_arrangements
    from experiments.calibration.spec import load_spec
    from regsim import WorldConfig, simulate
    from regsim.eventlog import write_events

    base = WorldConfig()
    recovery = load_spec(RECOVERY_SPEC, base)
    mapping = {p.path: {"low": p.low, "high": p.high} for p in recovery.params}
    mapping.update({path: {"low": lo, "high": hi} for path, lo, hi in _MORE})
    if not 1 <= args.params <= len(mapping):
        parser.error(f"--params: expected 1..{len(mapping)}, got {args.params}")
    out = Path(args.out_dir)
    (out / "log").mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(dict(list(mapping.items())[: args.params]), sort_keys=False), "utf-8")

    truth = recovery.apply(base, [RECOVERY_TRUTH[p.path] for p in recovery.params])
    started = time.perf_counter()
    log = simulate(
        truth, agents.make("epsilon-mixture", seed=1), arrangements=args.arrangements, months=args.months, seed=1
    )
    write_events(log.events, out / "log" / "events.parquet")
    log_seconds = time.perf_counter() - started
    print(f"log: {args.arrangements:,} arrangements x {args.months} months in {log_seconds:.1f} s", flush=True)

    n_sim = default_sim_arrangements(args.arrangements)
    started, cpu = time.perf_counter(), time.process_time()
    simulate(base, agents.make("epsilon-mixture", seed=0), arrangements=n_sim, months=args.months, seed=0)
    ref_seconds, ref_cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"reference: one plain simulation of {n_sim:,} arrangements: {ref_seconds:.1f} s", flush=True)

    command = [
        sys.executable,
        "-m",
        "experiments.cli",
        "calibrate",
        "--log",
        str(out / "log"),
        "--world",
        "default",
        "--params",
        str(spec_path),
        "--out",
        str(out / "fit"),
        "--workers",
        str(args.workers),
        *([] if args.refine is None else ["--refine", str(args.refine)]),
        *([] if args.pairing is None else ["--pairing", args.pairing]),
    ]
    sampler = _LoadSampler(15.0)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    sampler.start()
    started = time.perf_counter()
    with (out / "calibrate.stdout").open("w") as so, (out / "calibrate.stderr").open("w") as se:
        done = subprocess.run(command, cwd=ROOT, stdout=so, stderr=se, check=False)
    wall = time.perf_counter() - started
    load = sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        print((out / "calibrate.stderr").read_text("utf-8")[-4000:], file=sys.stderr)
        return done.returncode
    fit = json.loads((out / "fit" / "fit.json").read_text("utf-8"))
    sims = int(fit["evaluations"])
    fitted = load_spec(spec_path, base)
    true_values = fitted.values_of(truth)  # the log's world: the recovery truth, the default elsewhere
    # the recovery table, so a run's verdict on each parameter outlives its output folder
    rows = [
        {
            "path": p["path"],
            "true": round(float(true_values[j]), 6),
            "estimate": round(float(p["estimate"]), 6),
            "interval": [round(float(b), 6) for b in p["interval"]],
            "identified": bool(p["identified"]),
            "covers_truth": bool(p["interval"][0] <= true_values[j] <= p["interval"][1]),
        }
        for j, p in enumerate(fit["parameters"])
    ]
    identified = [r for r in rows if r["identified"]]
    opt = fit.get("optimiser") or {}
    result = {
        "command": " ".join(["regsim", *command[3:]]),
        "arrangements": args.arrangements,
        "months": args.months,
        "parameters": args.params,
        "sim_arrangements": fit["sim_arrangements"],
        "moments": len(fit["moments"]),
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "log_simulation_seconds": round(log_seconds, 1),
        "reference_simulation_seconds": round(ref_seconds, 2),
        "reference_simulation_cpu_seconds": round(ref_cpu, 2),
        "calibration_seconds": round(wall, 1),
        "calibration_cpu_seconds": round(cpu_seconds, 1),
        "load_average_1min_during": {
            "min": round(min(load), 2),
            "mean": round(sum(load) / len(load), 2),
            "max": round(max(load), 2),
            "samples": len(load),
        },
        "simulations": sims,
        "seconds_per_simulation_per_worker": round(wall * args.workers / sims, 2),
        "cpu_seconds_per_simulation": round(cpu_seconds / sims, 2),
        "calibration_in_reference_simulations": round(wall / ref_seconds, 1),
        "pairing": fit.get("pairing"),
        "objective": fit["objective"],
        "objective_dof": fit["objective_dof"],
        "optimiser": opt.get("name"),
        "optimiser_simulations": opt.get("simulations"),
        "optimiser_budget": opt.get("budget"),
        "optimiser_stop": opt.get("stop"),
        "refinement_stop": (fit.get("refinement") or {}).get("stop"),
        "refinement_simulations": (fit.get("refinement") or {}).get("simulations"),
        "refinement_iterations": len((fit.get("refinement") or {}).get("iterations", [])),
        "refinement_interval_top_up": (fit.get("refinement") or {}).get("interval_top_up"),
        "identified": len(identified),
        "identified_covering_truth": sum(r["covers_truth"] for r in identified),
        "identified_missing_truth": [r["path"] for r in identified if not r["covers_truth"]],
        "recovery": rows,
        "target_seconds": TARGET_SECONDS,
        "ratio_to_target": round(wall / TARGET_SECONDS, 3),
        "under_target": wall < TARGET_SECONDS,
    }
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for k, v in result.items():
        if k != "recovery":
            print(f"{k:>38}: {v}")
    for row in result["recovery"]:
        lo, hi = row["interval"]
        print(
            f"{row['path']:>56}: true {row['true']:.4g}, estimate {row['estimate']:.4g} [{lo:.4g}, {hi:.4g}]"
            f"{'' if row['identified'] else ' (not identified)'}{'' if row['covers_truth'] else ' MISSES'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
