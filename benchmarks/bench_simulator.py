"""Throughput, memory and scaling of ``regsim.simulate`` against a bare-SimPy reference.

Run from the repository root::

    python -m benchmarks.bench_simulator [--arrangements 100000] [--months 12] [--small 10000] [--seed 0]
                                         [--repeat 1] [--repeat-small 3]

What it measures (each measurement in a fresh child process pinned to one core, with
``OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=1``, so peak memory and warm caches never leak between
measurements):

* the real run, ``regsim.simulate(WorldConfig(), agents.make("static-dunning"), arrangements=N, months=M,
  seed=0)``, at ``--small`` and at ``--arrangements``: wall time (split into world set-up, the SimPy run and
  output assembly), debtor-months per second, SimPy events processed (counted by wrapping
  ``simpy.Environment.step``), event-log records, both per debtor-month, and the child's peak RSS
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; the RSS right after the imports is reported too);
* a reference: a minimal SimPy model that processes the same number of SimPy events over the same simulated
  horizon (one driver process that, each simulated day, schedules that day's share of trivial timeouts with
  a no-op callback at random times within the day; best of three). Its wall time is what the SimPy kernel
  alone costs for the real run's event count; ``real / reference`` says how much of the simulator's time is
  its own work;
* linearity: time per debtor-month at ``--arrangements`` divided by time per debtor-month at ``--small``.

Each size runs ``--repeat`` / ``--repeat-small`` times and the fastest run counts (other work on the machine
only ever slows a run down); CPU time is reported next to wall time, and the load average at the start is
recorded. A digest of the imported ``regsim`` and ``agents`` sources is recorded with every run.

The same ``step`` counter is installed in the real and the reference children, so its small overhead (one
Python call per event) is on both sides of the ratio. tracemalloc is not used: it slows NumPy-heavy code by
several times and misses memory that NumPy/Arrow take outside the Python allocator; ru_maxrss is exact and free.

Results are printed as a table and written to ``benchmarks/results/simulator.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "simulator.json"

TARGET_DM_PER_S = 20_000.0
TARGET_PEAK_MB = 2048.0  # 2 GiB
TARGET_LINEARITY_MAX = 1.25  # "near 1": at most 25 % more time per debtor-month at the large size
DAYS_PER_MONTH = 30

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


# ==========================================================================================================
# Child side
# ==========================================================================================================
def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _peak_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _pin_one_core() -> int | None:
    """Pin this process to one CPU (the first it may use); returns it, or None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def _count_steps() -> list[int]:
    """Wrap ``simpy.Environment.step`` to count processed events; returns the one-element counter."""
    import simpy

    counter = [0]
    step = simpy.Environment.step

    def counting_step(self: Any) -> None:
        counter[0] += 1
        step(self)

    simpy.Environment.step = counting_step  # type: ignore[method-assign]
    return counter


def _source_digest(*packages: Any) -> str:
    """A short digest of the packages' ``.py`` sources as imported (to tell whether two runs ran the same code)."""
    h = hashlib.sha256()
    for pkg in packages:
        for path in sorted(Path(pkg.__file__).parent.rglob("*.py")):
            h.update(str(path.relative_to(Path(pkg.__file__).parent.parent)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def child_real(arrangements: int, months: int, seed: int) -> dict[str, Any]:
    """One real run of ``regsim.simulate``; returns its measurements."""
    cpu = _pin_one_core()
    import agents
    import regsim

    digest = _source_digest(regsim, agents)
    from regsim import WorldConfig
    from regsim.world import World

    steps = _count_steps()
    # Time the phases of simulate() without changing it: World.__init__ and World.run are wrapped.
    phase: dict[str, float] = {}
    init, run = World.__init__, World.run

    def timed_init(self: Any, *a: Any, **k: Any) -> None:
        t = time.perf_counter()
        init(self, *a, **k)
        phase["init_s"] = time.perf_counter() - t

    def timed_run(self: Any) -> Any:
        t = time.perf_counter()
        out = run(self)
        phase["run_s"] = time.perf_counter() - t
        phase["rss_after_run_mb"] = _rss_mb()
        return out

    World.__init__ = timed_init  # type: ignore[method-assign]
    World.run = timed_run  # type: ignore[method-assign]

    config = WorldConfig()
    policy = agents.make("static-dunning")
    rss_before = _rss_mb()
    peak_before = _peak_mb()
    t0 = time.perf_counter()
    c0 = time.process_time()
    result = regsim.simulate(config, policy, arrangements=arrangements, months=months, seed=seed)
    cpu_s = time.process_time() - c0
    wall = time.perf_counter() - t0
    world = result.world
    out: dict[str, Any] = {
        "arrangements": arrangements,
        "months": months,
        "seed": seed,
        "source_digest": digest,
        "cpu": cpu,
        "wall_s": wall,
        "cpu_s": cpu_s,
        "init_s": phase.get("init_s", float("nan")),
        "run_s": phase.get("run_s", float("nan")),
        "simpy_events": steps[0],
        "simpy_events_scheduled": int(next(world.env._eid)),  # simpy's event id counter
        "log_events": int(result.events.num_rows),
        "sim_days": float(world.env.now),
        "rss_after_imports_mb": rss_before,
        "peak_after_imports_mb": peak_before,
        "rss_after_run_mb": phase.get("rss_after_run_mb", float("nan")),
        "peak_rss_mb": _peak_mb(),
    }
    out["outputs_s"] = wall - phase.get("init_s", float("nan")) - phase.get("run_s", float("nan"))
    return out


def child_reference(events: int, days: int, seed: int, repeats: int = 3) -> dict[str, Any]:
    """A bare SimPy model that processes ``events`` events over ``days`` simulated days."""
    cpu = _pin_one_core()
    import numpy as np
    import simpy

    steps = _count_steps()
    # Fixed events: the driver's Initialize, its daily timeouts (days - 1 of them fall before the horizon:
    # the NORMAL-priority one due at exactly t=days is not processed) and the URGENT "until" event of
    # env.run(until=days), whose step stops the run (counted in the real run too).
    fixed = 1 + (days - 1) + 1
    extra = max(0, events - fixed)
    per_day = np.full(days, extra // days, dtype=np.int64)
    per_day[: extra % days] += 1
    offsets = np.random.default_rng(seed).random(extra).tolist()  # times within the day, drawn before timing
    bounds = np.concatenate([[0], np.cumsum(per_day)]).tolist()

    def noop(_event: Any) -> None:
        return None

    def once() -> tuple[float, int]:
        env = simpy.Environment()

        def driver() -> Any:
            for d in range(days):
                for k in range(bounds[d], bounds[d + 1]):
                    env.timeout(offsets[k]).callbacks.append(noop)
                yield env.timeout(1)

        env.process(driver())
        before = steps[0]
        t0 = time.perf_counter()
        env.run(until=days)
        return time.perf_counter() - t0, steps[0] - before

    runs = [once() for _ in range(repeats)]  # the reference is cheap: best of a few, to damp noise
    wall = min(w for w, _ in runs)
    return {
        "target_events": events,
        "simpy_events": runs[0][1],
        "days": days,
        "wall_s": wall,
        "wall_all_s": [w for w, _ in runs],
        "repeats": repeats,
        "cpu": cpu,
        "peak_rss_mb": _peak_mb(),
    }


# ==========================================================================================================
# Parent side
# ==========================================================================================================
def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def _spawn(args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_simulator", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=_child_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(cmd)}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def _measure(n: int, months: int, seed: int, repeat: int = 1) -> dict[str, Any]:
    runs = []
    for k in range(repeat):
        print(f"  real run: {n:,} arrangements x {months} months ({k + 1}/{repeat}) ...", flush=True)
        runs.append(_spawn(["--child", "real", "--arrangements", str(n), "--months", str(months), "--seed", str(seed)]))
    # Best of the repeats (least disturbed by other work); peak memory is the largest seen.
    real = dict(min(runs, key=lambda r: r["wall_s"]))
    real["repeats"] = repeat
    real["wall_all_s"] = [r["wall_s"] for r in runs]
    real["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    days = DAYS_PER_MONTH * months
    print(f"  reference: {real['simpy_events']:,} SimPy events over {days} days ...", flush=True)
    ref = _spawn(
        ["--child", "reference", "--events", str(real["simpy_events"]), "--days", str(days), "--seed", str(seed)]
    )
    dm = n * months
    real.update(
        debtor_months=dm,
        debtor_months_per_s=dm / real["wall_s"],
        debtor_months_per_s_run_only=dm / real["run_s"],
        debtor_months_per_cpu_s=dm / real["cpu_s"],
        us_per_debtor_month=1e6 * real["wall_s"] / dm,
        simpy_events_per_debtor_month=real["simpy_events"] / dm,
        log_events_per_debtor_month=real["log_events"] / dm,
        us_per_simpy_event=1e6 * real["run_s"] / max(real["simpy_events"], 1),
    )
    ref["us_per_event"] = 1e6 * ref["wall_s"] / max(ref["simpy_events"], 1)
    return {
        "real": real,
        "reference": ref,
        "ratio_real_to_reference": real["wall_s"] / ref["wall_s"],
        "ratio_run_to_reference": real["run_s"] / ref["wall_s"],
        "kernel_share_of_run": ref["wall_s"] / real["run_s"],
    }


def _ok(flag: bool) -> str:
    return "PASS" if flag else "FAIL"


def _table(res: dict[str, Any]) -> str:
    small, large = res["small"], res["large"]
    s, b = small["real"], large["real"]
    rows: list[tuple[str, str, str, str]] = [
        (
            "arrangements x months",
            f"{s['arrangements']:,} x {s['months']}",
            f"{b['arrangements']:,} x {b['months']}",
            "",
        ),
        ("debtor-months", f"{s['debtor_months']:,}", f"{b['debtor_months']:,}", ""),
        (
            f"wall time simulate() [s] (best of {s['repeats']} / {b['repeats']})",
            f"{s['wall_s']:.2f}",
            f"{b['wall_s']:.2f}",
            "",
        ),
        ("  world set-up [s]", f"{s['init_s']:.2f}", f"{b['init_s']:.2f}", ""),
        ("  SimPy run (World.run) [s]", f"{s['run_s']:.2f}", f"{b['run_s']:.2f}", ""),
        ("  outputs (log->Arrow, KPIs) [s]", f"{s['outputs_s']:.2f}", f"{b['outputs_s']:.2f}", ""),
        ("CPU time [s]", f"{s['cpu_s']:.2f}", f"{b['cpu_s']:.2f}", ""),
        (
            "debtor-months / s",
            f"{s['debtor_months_per_s']:,.0f}",
            f"{b['debtor_months_per_s']:,.0f}",
            f">= {TARGET_DM_PER_S:,.0f}  {_ok(b['debtor_months_per_s'] >= TARGET_DM_PER_S)}",
        ),
        ("  (per CPU-second)", f"{s['debtor_months_per_cpu_s']:,.0f}", f"{b['debtor_months_per_cpu_s']:,.0f}", ""),
        (
            "  (World.run only)",
            f"{s['debtor_months_per_s_run_only']:,.0f}",
            f"{b['debtor_months_per_s_run_only']:,.0f}",
            "",
        ),
        ("us / debtor-month", f"{s['us_per_debtor_month']:.1f}", f"{b['us_per_debtor_month']:.1f}", ""),
        ("SimPy events processed", f"{s['simpy_events']:,}", f"{b['simpy_events']:,}", ""),
        (
            "SimPy events / debtor-month",
            f"{s['simpy_events_per_debtor_month']:.4f}",
            f"{b['simpy_events_per_debtor_month']:.4f}",
            "",
        ),
        ("event-log records", f"{s['log_events']:,}", f"{b['log_events']:,}", ""),
        (
            "event-log records / debtor-month",
            f"{s['log_events_per_debtor_month']:.3f}",
            f"{b['log_events_per_debtor_month']:.3f}",
            "",
        ),
        ("RSS after imports [MiB]", f"{s['rss_after_imports_mb']:.0f}", f"{b['rss_after_imports_mb']:.0f}", ""),
        ("RSS after World.run [MiB]", f"{s['rss_after_run_mb']:.0f}", f"{b['rss_after_run_mb']:.0f}", ""),
        (
            "peak RSS [MiB]",
            f"{s['peak_rss_mb']:.0f}",
            f"{b['peak_rss_mb']:.0f}",
            f"<= {TARGET_PEAK_MB:.0f}  {_ok(b['peak_rss_mb'] <= TARGET_PEAK_MB)}",
        ),
        (
            "reference (bare SimPy) wall [s]",
            f"{small['reference']['wall_s']:.3f}",
            f"{large['reference']['wall_s']:.3f}",
            "",
        ),
        (
            "  reference events processed",
            f"{small['reference']['simpy_events']:,}",
            f"{large['reference']['simpy_events']:,}",
            "",
        ),
        (
            "  reference us / event",
            f"{small['reference']['us_per_event']:.2f}",
            f"{large['reference']['us_per_event']:.2f}",
            "",
        ),
        (
            "real / reference (simulate)",
            f"{small['ratio_real_to_reference']:,.0f}x",
            f"{large['ratio_real_to_reference']:,.0f}x",
            "",
        ),
        (
            "real / reference (World.run)",
            f"{small['ratio_run_to_reference']:,.0f}x",
            f"{large['ratio_run_to_reference']:,.0f}x",
            "",
        ),
        (
            "SimPy kernel share of World.run",
            f"{100 * small['kernel_share_of_run']:.1f} %",
            f"{100 * large['kernel_share_of_run']:.1f} %",
            "",
        ),
    ]
    lin = res["linearity"]
    rows.append(
        (
            "linearity: us/dm large / small",
            "",
            f"{lin['ratio']:.2f}",
            f"~1 (<= {TARGET_LINEARITY_MAX})  {_ok(lin['ratio'] <= TARGET_LINEARITY_MAX)}",
        )
    )
    rows.append(("  (World.run only)", "", f"{lin['ratio_run_only']:.2f}", ""))
    rows.append(("  (CPU time)", "", f"{lin['ratio_cpu']:.2f}", ""))
    head = ("measure", "small", "large", "target")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]

    def fmt(r: tuple[str, str, str, str]) -> str:
        return "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]), r[3]]).rstrip()

    sep = "-" * (sum(widths) + 6)
    return "\n".join([fmt(head), sep, *(fmt(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--arrangements", type=int, default=100_000, help="large size (default 100000)")
    p.add_argument("--months", type=int, default=12, help="horizon in months of 30 days (default 12)")
    p.add_argument("--small", type=int, default=10_000, help="small size for the linearity check (default 10000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1, help="runs at the large size; the fastest counts (default 1)")
    p.add_argument("--repeat-small", type=int, default=3, help="runs at the small size; the fastest counts (default 3)")
    p.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    p.add_argument("--child", choices=["real", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--events", type=int, help=argparse.SUPPRESS)
    p.add_argument("--days", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child == "real":
        print(json.dumps(child_real(a.arrangements, a.months, a.seed)))
        return 0
    if a.child == "reference":
        print(json.dumps(child_reference(a.events, a.days, a.seed)))
        return 0

    import numpy as np
    import simpy

    print(f"regsim simulator benchmark: static-dunning, seed {a.seed}, one core per child", flush=True)
    res: dict[str, Any] = {
        "benchmark": "regsim.simulate(WorldConfig(), agents.make('static-dunning'))",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "simpy": simpy.__version__,
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": os.cpu_count(),
        },
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "settings": {
            "repeat_large": a.repeat,
            "repeat_small": a.repeat_small,
            "months": a.months,
            "seed": a.seed,
            "thread_env": dict.fromkeys(_THREAD_VARS, "1"),
            "pinned_to_one_cpu": hasattr(os, "sched_setaffinity"),
            "memory": "peak RSS of a fresh child (ru_maxrss); tracemalloc not used: it slows "
            "NumPy-heavy code several-fold and misses native (NumPy/Arrow) allocations",
        },
    }
    load = res["load_average_at_start"]
    if load and load[0] > 0.5:
        print(
            f"  note: load average {load[0]:.2f} at start; other work on this machine inflates wall times "
            "(CPU time is reported too)",
            flush=True,
        )
    res["small"] = _measure(a.small, a.months, a.seed, a.repeat_small)
    res["large"] = _measure(a.arrangements, a.months, a.seed, a.repeat)
    s, b = res["small"]["real"], res["large"]["real"]
    res["linearity"] = {
        "small": a.small,
        "large": a.arrangements,
        "ratio": b["us_per_debtor_month"] / s["us_per_debtor_month"],
        "ratio_run_only": (b["run_s"] / b["debtor_months"]) / (s["run_s"] / s["debtor_months"]),
        "ratio_cpu": (b["cpu_s"] / b["debtor_months"]) / (s["cpu_s"] / s["debtor_months"]),
    }
    res["source_digest"] = s["source_digest"]
    if s["source_digest"] != b["source_digest"]:
        res["source_digest"] = f"{s['source_digest']} (small) != {b['source_digest']} (large)"
        print("WARNING: regsim/agents sources changed between the small and the large run", file=sys.stderr)
    res["targets"] = {
        "debtor_months_per_s": {
            "target": f">= {TARGET_DM_PER_S:.0f}",
            "value": b["debtor_months_per_s"],
            "pass": b["debtor_months_per_s"] >= TARGET_DM_PER_S,
        },
        "peak_rss_mb": {
            "target": f"<= {TARGET_PEAK_MB:.0f} MiB",
            "value": b["peak_rss_mb"],
            "pass": b["peak_rss_mb"] <= TARGET_PEAK_MB,
        },
        "linearity": {
            "target": f"<= {TARGET_LINEARITY_MAX}",
            "value": res["linearity"]["ratio"],
            "pass": res["linearity"]["ratio"] <= TARGET_LINEARITY_MAX,
        },
    }
    print()
    print(_table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nregsim+agents source digest: {res['source_digest']}")
    print(f"\nwritten: {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
