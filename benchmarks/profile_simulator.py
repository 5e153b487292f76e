"""Profile one ``regsim.simulate`` run (static-dunning) with cProfile and summarise it.

Run from the repository root::

    OMP_NUM_THREADS=1 python -m cProfile -o /tmp/prof.out -m benchmarks.profile_simulator --arrangements 100000
    python -m benchmarks.profile_simulator --report /tmp/prof.out [--top 15]

or both at once (profiles in-process, then reports)::

    python -m benchmarks.profile_simulator --arrangements 100000 --profile /tmp/prof.out

The report lists the top functions by own time (tottime) and by cumulative time, each with its share of the
profiled total. cProfile adds a cost per Python call, so pure-Python per-item loops look somewhat worse than
they are; NumPy kernels are timed at their C entry points.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path


def run(arrangements: int, months: int, seed: int) -> None:
    import agents
    import regsim
    from regsim import WorldConfig

    regsim.simulate(WorldConfig(), agents.make("static-dunning"), arrangements=arrangements, months=months, seed=seed)


def _where(func: tuple[str, int, str]) -> str:
    file, line, name = func
    for marker in ("/regsim/", "/agents/", "/site-packages/", "/lib/python"):
        if marker in file:
            file = file[file.index(marker) + 1 :]
            break
    return f"{file}:{line}({name})" if line else name


def report(path: str | Path, top: int = 15, out: io.TextIOBase | None = None) -> str:
    """The top functions by tottime and by cumtime, with their share of the total, as text."""
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    lines = [f"profile {path}: total {total:.2f} s in {stats.total_calls:,} calls"]  # type: ignore[attr-defined]
    for key, label in ((2, "tottime (own time)"), (3, "cumtime (including callees)")):
        lines.append("")
        lines.append(f"top {top} by {label}")
        lines.append(f"{'calls':>10} {'tottime':>8} {'tot%':>6} {'cumtime':>8} {'cum%':>6}  function")
        rows = sorted(raw.items(), key=lambda kv: kv[1][key], reverse=True)[:top]
        for func, (_cc, nc, tt, ct, _callers) in rows:
            lines.append(
                f"{nc:>10,} {tt:>8.2f} {100 * tt / total:>5.1f}% {ct:>8.2f} {100 * ct / total:>5.1f}%  {_where(func)}"
            )
    text = "\n".join(lines)
    if out is not None:
        out.write(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Profile regsim.simulate (static-dunning) with cProfile.")
    p.add_argument("--arrangements", type=int, default=100_000)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", help="profile in-process and write the stats here, then report")
    p.add_argument("--report", help="only report an existing cProfile output file")
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args(argv)
    if a.report:
        print(report(a.report, a.top))
        return 0
    if a.profile:
        prof = cProfile.Profile()
        prof.runcall(run, a.arrangements, a.months, a.seed)
        prof.dump_stats(a.profile)
        print(report(a.profile, a.top))
        return 0
    run(a.arrangements, a.months, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
