"""Benchmark of off-policy evaluation: all seven estimators with a 200-resample clustered bootstrap on 1M decisions.

Run from the repository root (two cores)::

    python -m benchmarks.bench_ope [--arrangements 100000] [--decisions 10] [--bootstrap 200] \\
        [--naive-arrangements 10000] [--naive-resamples 20] [--skip-reward-model]

1. A synthetic log (:func:`agents.ope.synthetic.synthetic_bandit`) of ``--arrangements`` arrangements with
   1 + Poisson(``--decisions`` - 1) decisions each (about 1,000,000 decisions at the defaults), 8 actions, a
   cross-fitted-shaped reward model (``q_logged``/``q_target``) and the logged unsupported mass.
2. :func:`agents.ope.estimate` with the seven estimators (``dm``, ``ips``, ``snips``, ``dr``, ``sndr``,
   ``switch-dr``, ``dros``), the gate, ``--bootstrap`` resamples of arrangements and the empirical-Bernstein
   bounds: the wall time (target: under 60 s on 2 cores).
3. References measured in the same run, so that the ratios compare across machines: (a) one plain
   ``np.mean`` of the rewards, times ``--bootstrap`` (the floor: one pass over the rewards per resample); (b) a
   naive bootstrap, which gathers each resample's rows (``BanditFeedback.take``) and calls the seven plain
   estimator functions on them, timed on the first ``--naive-arrangements`` arrangements for ``--naive-resamples``
   resamples and scaled linearly to the full log and ``--bootstrap`` resamples.
4. The cross-fitted reward model (:func:`agents.ope.reward_model.cross_fitted_rewards`, 5 folds) on the same
   number of decisions with the arrangement model's shapes: 20 context features, a factorised action of 4 parts
   (12 channel x send slots, 5 due days, 3 deferrals, 3 reductions: 573 coefficients; and a wider action of
   48 x 20 x 10 x 12 levels: 2,181 coefficients), 3 decision kinds and a stochastic candidate with 4 actions
   per row; timed apart.

Results go to ``benchmarks/results/ope.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import numpy as np  # noqa: E402

from agents.ope import ESTIMATOR_NAMES, BanditFeedback, estimate  # noqa: E402
from agents.ope.estimators import dm, dr, dros, ips, sndr, snips, switch_dr  # noqa: E402
from agents.ope.reward_model import cross_fitted_rewards  # noqa: E402
from agents.ope.synthetic import synthetic_bandit  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ope.json"
TARGET_SECONDS = 60.0
ACTION_SIZES = ((12, 5, 3, 3), (48, 20, 10, 12))


def naive_bootstrap_seconds(fb: BanditFeedback, n_clusters: int, resamples: int, seed: int) -> float:
    """Wall time of a per-resample loop (gather rows, call the seven functions) on the first ``n_clusters``."""
    sub = fb.take(fb.cluster < n_clusters)
    order = np.argsort(sub.cluster, kind="stable")
    starts = np.searchsorted(sub.cluster[order], np.arange(n_clusters + 1))
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(resamples):
        drawn = rng.integers(0, n_clusters, size=n_clusters)
        rows = np.concatenate([order[starts[c] : starts[c + 1]] for c in drawn])
        resample = sub.take(rows)
        for fn in (dm, ips, snips, dr, sndr, switch_dr, dros):
            fn(resample)
    return time.perf_counter() - start


def reward_model_seconds(n: int, sizes: tuple[int, ...], seed: int) -> dict[str, float]:
    """Wall time of the 5-fold cross-fitted reward model on ``n`` rows, action parts of ``sizes`` levels."""
    rng = np.random.default_rng(seed)
    d, k = 20, 4
    features = rng.normal(size=(n, d))
    logged = np.stack([rng.integers(0, s, size=n) for s in sizes], axis=1)
    target = np.stack([rng.integers(0, s, size=(n, k)) for s in sizes], axis=2)
    weights = rng.dirichlet(np.ones(k), size=n)
    reward = features[:, 0] + 0.1 * logged[:, 0] + rng.normal(size=n)
    groups = np.repeat(np.arange(n // 10 + 1), 10)[:n]
    kinds = rng.integers(0, 3, size=n)
    start = time.perf_counter()
    cross_fitted_rewards(
        features, logged, target, weights, reward, groups, action_sizes=sizes, folds=5, seed=0, kinds=kinds
    )
    elapsed = time.perf_counter() - start
    coefficients = 1 + d + sum(sizes) * (1 + 3 + d)
    return {"rows": n, "seconds": elapsed, "coefficients": coefficients, "candidate_actions_per_row": k}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arrangements", type=int, default=100_000, help="arrangements in the synthetic log")
    parser.add_argument("--decisions", type=float, default=10.0, help="mean decisions per arrangement")
    parser.add_argument("--bootstrap", type=int, default=200, help="clustered bootstrap resamples")
    parser.add_argument("--naive-arrangements", type=int, default=10_000, help="arrangements of the naive reference")
    parser.add_argument("--naive-resamples", type=int, default=20, help="resamples timed for the naive reference")
    parser.add_argument("--skip-reward-model", action="store_true", help="do not time the reward model")
    args = parser.parse_args()

    t = time.perf_counter()
    log = synthetic_bandit(
        np.random.default_rng(0), n_clusters=args.arrangements, mean_decisions=args.decisions, model_bias=0.3
    )
    fb = log.feedback
    build = time.perf_counter() - t
    print(f"synthetic log: {fb.n:,} decisions in {args.arrangements:,} arrangements (built in {build:.1f} s)")

    start, cpu = time.perf_counter(), time.process_time()
    results = estimate(fb, ESTIMATOR_NAMES, seed=1, n_bootstrap=args.bootstrap)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu

    start = time.perf_counter()
    for _ in range(args.bootstrap):
        np.mean(fb.reward)
    mean_seconds = time.perf_counter() - start

    naive = naive_bootstrap_seconds(fb, args.naive_arrangements, args.naive_resamples, seed=2)
    naive_scaled = naive * (args.bootstrap / args.naive_resamples) * (args.arrangements / args.naive_arrangements)

    verdict = "PASS" if seconds < TARGET_SECONDS else "FAIL"
    print(
        f"all {len(results)} estimators + {args.bootstrap} clustered bootstrap resamples: {seconds:.2f} s wall "
        f"({cpu:.2f} s CPU), target < {TARGET_SECONDS:.0f} s on 2 cores: {verdict}"
    )
    print(
        f"  ratio to {args.bootstrap} x np.mean(reward) ({mean_seconds:.3f} s): {seconds / mean_seconds:,.0f}x; "
        f"naive per-resample loop ({naive:.2f} s for {args.naive_resamples} resamples of "
        f"{args.naive_arrangements:,} arrangements, scaled: {naive_scaled:,.0f} s): {naive_scaled / seconds:,.0f}x "
        "faster"
    )
    print(f"  truth {log.true_value:.4f}")
    for name, r in results.items():
        print(f"  {name:<10} {r.value:8.4f}  [{r.ci_low:8.4f}, {r.ci_high:8.4f}]  ESS {r.diagnostics.ess:,.0f}")

    models: list[dict[str, Any]] = []
    if not args.skip_reward_model:
        for sizes in ACTION_SIZES:
            model = reward_model_seconds(fb.n, sizes, seed=3)
            models.append({"action_sizes": list(sizes), **model})
            print(
                f"cross-fitted reward model (5 folds, action parts {sizes}, {model['coefficients']:.0f} "
                f"coefficients, {model['candidate_actions_per_row']:.0f} candidate actions per row) on "
                f"{model['rows']:,.0f} rows: {model['seconds']:.2f} s"
            )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak_mib:,.0f} MiB")

    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "threads": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    payload = {
        "decisions": fb.n,
        "arrangements": args.arrangements,
        "bootstrap": args.bootstrap,
        "estimators": list(results),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "target_seconds": TARGET_SECONDS,
        "mean_reference_seconds": mean_seconds,
        "ratio_to_mean_reference": seconds / mean_seconds,
        "naive_reference": {
            "arrangements": args.naive_arrangements,
            "resamples": args.naive_resamples,
            "seconds": naive,
            "scaled_seconds": naive_scaled,
            "speed_up": naive_scaled / seconds,
        },
        "reward_model": models,
        "peak_memory_mib": peak_mib,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**payload, "environment": meta}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
