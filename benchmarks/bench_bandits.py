"""Benchmark of the contextual bandits' ``decide_batch``: decisions per second on one core.

Run from the repository root::

    python -m benchmarks.bench_bandits [--seconds 3]

Contexts come from a real run (a world driven by static dunning), the bandits are first trained online on a
simulated population so that their statistics are not the prior's, and then each ``decide_batch`` call is
timed on batches of 1 and 1,024 rows drawn from those contexts (features, scoring and the masked choice
included). LinUCB with the default (compact) features is the one with a target
(>= 100,000 decisions/s at batch 1,024); the full feature set and the other two bandits are reported for
comparison. Results go to ``benchmarks/results/bandits.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import agents  # noqa: E402
from regsim import ContextBatch, World, WorldConfig, simulate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bandits.json"
TARGET = 100_000
CASES: list[tuple[str, dict[str, Any]]] = [
    ("linucb", {}),
    ("linucb", {"feature_set": "full"}),
    ("epsilon-greedy", {}),
    ("linear-ts", {}),
]


def real_contexts(arrangements: int = 1_000, months: int = 3, seed: int = 0) -> ContextBatch:
    """Every decision context of a run driven by static dunning, as one batch."""
    world = World(WorldConfig(), None, arrangements=arrangements, months=months, seed=seed)
    driver = agents.make("static-dunning")
    batches = []
    while (batch := world.next_decision()) is not None:
        batches.append(batch)
        world.submit(driver.decide_batch(batch))
    return ContextBatch.concat(batches)


def decisions_per_second(policy: Any, pool: ContextBatch, batch_size: int, seconds: float) -> dict[str, float]:
    """Time ``decide_batch`` on batches of ``batch_size`` rows drawn from ``pool`` for about ``seconds``."""
    rng = np.random.default_rng(1)
    batches = [pool.take(rng.integers(0, len(pool), batch_size)) for _ in range(32)]
    policy.decide_batch(batches[0])  # warm-up
    calls = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        policy.decide_batch(batches[calls % len(batches)])
        calls += 1
    return {
        "batch_size": batch_size,
        "calls": calls,
        "seconds": elapsed,
        "decisions_per_second": calls * batch_size / elapsed,
        "ms_per_call": 1e3 * elapsed / calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing duration per case and batch size")
    parser.add_argument("--train-arrangements", type=int, default=1_000, help="population of the training run")
    args = parser.parse_args()
    pool = real_contexts()
    results: list[dict[str, Any]] = []
    print(f"decide_batch on one core ({len(pool):,} real contexts)")
    for name, kwargs in CASES:
        policy = agents.make(name, **kwargs)
        simulate(WorldConfig(), policy, arrangements=args.train_arrangements, months=3, seed=1)
        label = name + "".join(f" {k}={v}" for k, v in kwargs.items())
        for batch_size in (1, 1_024):
            r = decisions_per_second(policy, pool, batch_size, args.seconds)
            results.append({"policy": name, "kwargs": kwargs, **r})
            target = f"target >= {TARGET:,}" if name == "linucb" and not kwargs and batch_size == 1_024 else ""
            print(
                f"  {label:<28} batch {batch_size:>5,}  {r['decisions_per_second']:>11,.0f} decisions/s  "
                f"{r['ms_per_call']:>8.3f} ms/call  {target}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "contexts": len(pool),
    }
    payload = {"results": results, "target": {"policy": "linucb", "batch_size": 1_024, "decisions_per_second": TARGET}}
    RESULTS.write_text(json.dumps({**payload, "environment": meta}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
