"""The calibration's objective at the log's TRUE parameters, per treatment: is the model right at the truth?

Run from the repository root::

    python -m benchmarks.calibrate_truth [--arrangements 50000] [--months 6] [--params 20] [--seeds 0,2,3,4]
                                         [--pairings arrangement,policy] [--workers 2] [--out-dir DIR]

The log and the job are the benchmark's (:mod:`benchmarks.bench_calibrate`): ``--arrangements`` x ``--months``
under ``epsilon-mixture`` (seed 1) in the default world with the recovery spec's true values (written to
``DIR/log/events.parquet`` and read back from there on a later run), its ``--params`` first parameters, the log's
moments and weights as ``regsim calibrate`` builds them with ``--seed 0`` and no months held out (bootstrap
stream ``[0, "BOOT"]``, 200 draws, min count 30), simulations of the command's default size (or ``--sim-arrangements``)
with the capacity scaled to it (:func:`experiments.calibration.simulation.sized_world`). Each treatment (``--pairings``:
:class:`experiments.calibration.replaying.ReplayingPolicy`'s pairings, ``policy`` the logging policy itself)
is simulated at the true parameters at each seed (seed 1 is the log's own: its first debtors are the log's).

At a correct model ``Q`` at the truth is about chi-square with ``K`` degrees of freedom (``K +- sqrt(2K)``).
Written to ``DIR/truth.json`` (the simulated moments to ``DIR/truth_<pairing>.npz``) and printed: per treatment
and seed ``Q``; per treatment ``Q`` of the mean over the ``S`` seeds weighted by the variance of such a mean,
``s^2 (1 + A_log / (S A_sim))`` (also about ``K`` at a correct model, with the simulation's noise averaged away,
so a bias shows more); the moments of largest ``|z|`` of that mean
(``z = (m_sim - m_log) / sqrt(s^2 (1 + A_log / (S A_sim)))``); the deferral moments' ``z``; and the simulated
moments' variance across seeds against the weights' assumption ``s^2 A_log / A_sim`` (mean and median ratio
over the moments).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Run the measurement (module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibrate_truth", description=__doc__)
    parser.add_argument("--arrangements", type=int, default=50_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--params", type=int, default=20)
    parser.add_argument("--seeds", default="0,2,3,4")
    parser.add_argument("--pairings", default="arrangement,policy")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--sim-arrangements", type=int, default=None)
    parser.add_argument("--out-dir", default="runs/calibrate-truth")
    args = parser.parse_args(argv)

    import agents
    from benchmarks.bench_calibrate import _MORE
    from experiments.calibration.fit import Objective
    from experiments.calibration.moments import log_moments
    from experiments.calibration.recovery import RECOVERY_SPEC, RECOVERY_TRUTH
    from experiments.calibration.replaying import PAIRINGS, LoggedDecisions
    from experiments.calibration.run import default_sim_arrangements
    from experiments.calibration.simulation import SimulationJob, run_points, sized_world
    from experiments.calibration.spec import Spec, load_spec
    from regsim import WorldConfig, simulate
    from regsim.eventlog import read_events, write_events

    seeds = [int(s) for s in args.seeds.split(",")]
    pairings = [p.strip() for p in args.pairings.split(",")]
    bad = [p for p in pairings if p not in PAIRINGS]
    if bad:
        parser.error(f"--pairings: expected a comma-separated subset of {', '.join(PAIRINGS)}, got {bad}")
    base = WorldConfig()
    recovery = load_spec(RECOVERY_SPEC, base)
    truth = recovery.apply(base, [RECOVERY_TRUTH[p.path] for p in recovery.params])
    import yaml

    mapping = {p.path: {"low": p.low, "high": p.high} for p in recovery.params}
    mapping.update({path: {"low": lo, "high": hi} for path, lo, hi in _MORE})
    out = Path(args.out_dir)
    (out / "log").mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(dict(list(mapping.items())[: args.params]), sort_keys=False), "utf-8")
    spec: Spec = load_spec(spec_path, base)
    log_file = out / "log" / "events.parquet"
    if log_file.exists():
        events = read_events(log_file)
    else:
        started = time.perf_counter()
        log = simulate(
            truth, agents.make("epsilon-mixture", seed=1), arrangements=args.arrangements, months=args.months, seed=1
        )
        events = log.events
        write_events(events, log_file)
        print(f"log: {args.arrangements:,} x {args.months} months in {time.perf_counter() - started:.0f} s")

    # As experiments.calibration.run.calibrate builds them with --seed 0 and no holdout.
    moments = log_moments(events, rng=np.random.default_rng([0, 0x424F4F54]), min_count=30, n_boot=200)
    decisions = LoggedDecisions.from_log(events)
    n_log = len(decisions.arrangement_ids)
    n_sim = args.sim_arrangements or default_sim_arrangements(n_log)
    objective = Objective.from_log(moments, n_sim)
    theta = np.asarray(spec.values_of(truth), float)
    lows = np.array([p.low for p in spec.params], float)
    highs = np.array([p.high for p in spec.params], float)
    signs = np.where(np.arange(len(theta)) % 2 == 0, 1.0, -1.0)
    stepped = np.clip(theta + signs * args.step * (highs - lows), lows, highs)
    keys = [k.name for k in moments.design.keys]
    k_moments = len(keys)
    report: dict[str, object] = {
        "arrangements": n_log,
        "sim_arrangements": n_sim,
        "moments": k_moments,
        "dof": k_moments - len(spec),
        "seeds": seeds,
        "treatments": {},
    }
    print(f"{k_moments} moments, {len(spec)} parameters, {n_log:,} logged, {n_sim:,} simulated; seeds {seeds}")
    for pairing in pairings:
        job = SimulationJob(
            sized_world(base, n_log, n_sim), spec, moments.design, decisions, n_sim, args.months, None, pairing
        )
        started = time.perf_counter()
        points = [(theta, s) for s in seeds] + ([(stepped, s) for s in seeds] if args.step > 0 else [])
        every = run_points(job, points, workers=args.workers, desc=pairing)
        wall = time.perf_counter() - started
        results = every[: len(seeds)]
        sims = np.stack([r.values for r in results])
        np.savez(out / f"truth_{pairing}.npz", sims=sims, seeds=np.asarray(seeds), log=moments.values, se=moments.se)
        qs = [objective.value(v) for v in sims]
        mean = np.nanmean(sims, axis=0)
        s2 = moments.se**2
        var_mean = s2 * (1.0 + moments.arrangements / (len(seeds) * n_sim))
        z = (mean - moments.values) / np.sqrt(var_mean)
        q_mean = float(np.nansum(z**2) + np.isnan(mean).sum())
        order = np.argsort(-np.abs(np.nan_to_num(z)))
        worst: list[dict[str, Any]] = [
            {"moment": keys[i], "log": float(moments.values[i]), "sim": float(mean[i]), "z": float(z[i])}
            for i in order[:12]
        ]
        deferral: list[dict[str, Any]] = sorted(
            (
                {"moment": keys[i], "log": float(moments.values[i]), "sim": float(mean[i]), "z": float(z[i])}
                for i in range(k_moments)
                if keys[i].startswith("deferral/")
            ),
            key=lambda d: -abs(d["z"]),
        )
        ratio = None
        if len(seeds) > 1:
            var_sim = np.nanvar(sims, axis=0, ddof=1)
            r = var_sim / (s2 * moments.arrangements / n_sim)
            r = r[np.isfinite(r)]
            ratio = {"mean": float(r.mean()), "median": float(np.median(r))}
        step: dict[str, Any] | None = None
        if args.step > 0:
            dq = [objective.value(r.values) - q for r, q in zip(every[len(seeds) :], qs, strict=True)]
            step = {
                "fraction": args.step,
                "dq": dict(zip(map(str, seeds), dq, strict=True)),
                "dq_mean": float(np.mean(dq)),
                "dq_sd": float(np.std(dq, ddof=1)) if len(dq) > 1 else None,
            }
        fall = [r.replay.fallback / max(r.replay.total, 1) for r in results]
        entry = {
            "q": dict(zip(map(str, seeds), qs, strict=True)),
            "q_of_mean": q_mean,
            "worst": worst,
            "deferral": deferral,
            "variance_ratio": ratio,
            "step": step,
            "fallback_share": fall,
            "wall_seconds": wall,
        }
        report["treatments"][pairing] = entry  # type: ignore[index]
        print(
            f"{pairing}: Q {', '.join(f'{q:.1f}' for q in qs)} (seeds {seeds}); Q of the mean {q_mean:.1f}; "
            f"variance ratio {ratio}; fallback share {np.mean(fall):.3f}; {wall:.0f} s"
        )
        if step is not None:
            print(
                f"  a {args.step:g} step: dQ {', '.join(f'{d:+.1f}' for d in step['dq'].values())}; "
                f"mean {step['dq_mean']:+.1f}, sd {step['dq_sd']}"
            )
        for w in worst[:6]:
            print(f"    {w['moment']:<55} log {w['log']:.4f} sim {w['sim']:.4f} z {w['z']:+.2f}")
        print("  deferral, largest |z|:")
        for w in deferral[:4]:
            print(f"    {w['moment']:<55} log {w['log']:.4f} sim {w['sim']:.4f} z {w['z']:+.2f}")
    (out / "truth.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out / 'truth.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
