"""Benchmark of the SB3 policy wrapper: decisions per second of ``decide_batch`` against bare ``model.predict``.

Run from the repository root (one core)::

    python -m benchmarks.bench_sb3 [--seconds 2] [--rounds 3] [--artifact runs/x/policy]

For a MaskablePPO network (default architecture, untrained, or the weights of ``--artifact``), on real contexts
of the default world, at batch sizes 1 and 1,024, in deterministic and sampled mode:

* ``decide``: :meth:`agents.sb3.SB3MaskablePPOPolicy.decide_batch` on a :class:`~regsim.decision.ContextBatch`
  (features, forward pass, masked choice, propensities);
* ``predict``: SB3's ``model.predict(obs, action_masks=mask)`` of the same network on the precomputed feature
  rows (no features, no propensities);
* ``ratio`` = predict rate / decide rate (how many times slower the wrapper is). Target: <= 1.5.

Each measurement is repeated ``--rounds`` times, interleaved, and the best rate kept (the machine may be
shared). Results go to ``benchmarks/results/sb3.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sb3_contrib import MaskablePPO  # noqa: E402

from agents.artifact import load_policy  # noqa: E402
from agents.rules_based import StaticDunning  # noqa: E402
from agents.sb3 import SB3MaskablePPOPolicy  # noqa: E402
from envs.arrangement import ArrangementEnv  # noqa: E402
from regsim import World, WorldConfig  # noqa: E402
from regsim.decision import ContextBatch  # noqa: E402
from regsim.features import features  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sb3.json"
TARGET_RATIO = 1.5


def real_contexts(n: int) -> ContextBatch:
    """The first ``n`` decision points of a default world run by today's dunning process."""
    world = World(WorldConfig(), None, arrangements=max(200, n // 2), months=4, seed=0)
    policy = StaticDunning()
    batches: list[ContextBatch] = []
    while sum(len(b) for b in batches) < n and (batch := world.next_decision()) is not None:
        batches.append(batch)
        world.submit(policy.decide_batch(batch))
    out = ContextBatch.concat(batches)
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} decision points, {n} wanted")
    return out.take(np.arange(n))


def rate(fn: Callable[[int], Any], rows: int, seconds: float) -> float:
    """Decisions per second of ``fn(i)`` (one call decides ``rows`` rows), over about ``seconds``."""
    fn(0)  # warm-up
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn(calls)
        calls += 1
    return calls * rows / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions; the best rate is kept")
    parser.add_argument("--artifact", type=Path, default=None, help="a sb3-maskable-ppo artifact to time instead")
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = ArrangementEnv()
    model = MaskablePPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]})
    if args.artifact is not None:
        loaded = load_policy(args.artifact)
        if not isinstance(loaded, SB3MaskablePPOPolicy):
            raise SystemExit(f"{args.artifact}: not a sb3-maskable-ppo artifact")
        model.policy.load_state_dict(loaded.network.state_dict())
    policies = {
        mode: SB3MaskablePPOPolicy.from_model(model, space=env.space, deterministic=mode == "deterministic", seed=0)
        for mode in ("deterministic", "sampled")
    }
    contexts = real_contexts(1024)
    obs, mask = features(contexts), contexts.mask
    singles = [contexts.take(np.array([i])) for i in range(len(contexts))]

    # The wrapper decides exactly what SB3 predicts (deterministic mode).
    predicted, _ = model.predict(obs, action_masks=mask, deterministic=True)
    agree = bool(np.array_equal(policies["deterministic"].decide_batch(contexts).actions, predicted))

    cases: dict[str, dict[str, Callable[[int], Any]]] = {}
    for mode, policy in policies.items():
        det = mode == "deterministic"

        def decide_1(i: int, p: SB3MaskablePPOPolicy = policy) -> Any:
            return p.decide_batch(singles[i % 1024])

        def predict_1(i: int, d: bool = det) -> Any:
            j = i % 1024
            return model.predict(obs[j : j + 1], action_masks=mask[j : j + 1], deterministic=d)

        def decide_all(i: int, p: SB3MaskablePPOPolicy = policy) -> Any:
            return p.decide_batch(contexts)

        def predict_all(i: int, d: bool = det) -> Any:
            return model.predict(obs, action_masks=mask, deterministic=d)

        cases[f"batch_1/{mode}"] = {
            "decide": decide_1,
            "predict": predict_1,
            "features": lambda i: features(singles[i % 1024]),
        }
        cases[f"batch_1024/{mode}"] = {
            "decide": decide_all,
            "predict": predict_all,
            "features": lambda i: features(contexts),
        }
    best: dict[str, dict[str, float]] = {case: {} for case in cases}
    for _ in range(args.rounds):
        for case, fns in cases.items():
            rows = 1 if case.startswith("batch_1/") else 1024
            for what, fn in fns.items():
                best[case][what] = max(best[case].get(what, 0.0), rate(fn, rows, args.seconds))

    print(f"MaskablePPO decisions/s on one core (best of {args.rounds} x {args.seconds:.0f} s); target ratio <= 1.5")
    print(f"  deterministic decisions equal model.predict's: {agree}")
    results: dict[str, Any] = {}
    for case, r in best.items():
        ratio = r["predict"] / r["decide"]
        results[case] = {
            "decide_per_second": r["decide"],
            "predict_per_second": r["predict"],
            "features_per_second": r["features"],
            "ratio_predict_over_decide": ratio,
            "within_target": ratio <= TARGET_RATIO,
        }
        print(
            f"  {case:<26} decide {r['decide']:>12,.0f}/s   predict {r['predict']:>12,.0f}/s   "
            f"ratio {ratio:5.2f}   (features alone {r['features']:>12,.0f}/s)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "network": {"algorithm": "maskable-ppo", "net_arch": [64, 64], "artifact": str(args.artifact or "")},
        "decisions_equal_predict": agree,
        "threads": torch.get_num_threads(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
        "results": results,
        "target_ratio": TARGET_RATIO,
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
