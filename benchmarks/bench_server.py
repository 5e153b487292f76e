"""Load test of the policy server against a bare FastAPI app measured in the same run.

Run from the repository root (``wrk`` installed: ``apt-get install -y wrk``)::

    python -m benchmarks.bench_server [--seconds 10] [--connections 32] [--arrangements 2000] [--batch-size 1000]

1. Trains two tiny artifacts into a temporary folder: a MaskablePPO (``agents.train.train_policy``) and a
   linear bandit (``regsim train --policy linucb``). Their quality is irrelevant here; their cost per decision
   (an MLP forward pass; a LinUCB score per head) is the real one.
2. The reference: ``benchmarks.bare_app`` (FastAPI returning a constant) under uvicorn, one worker, loaded by
   ``--connections`` closed-loop clients posting the same request bodies, single and batch.
3. For each artifact: the real server as users run it, ``regsim serve --policy ARTIFACT --store URL --port P``
   with its shipped defaults (the token from ``REGSIM_TOKENS``; ``--access-log`` here adds ``--access-log``
   there), a fresh SQLite store in WAL mode with ``synchronous=FULL``, or PostgreSQL with ``--store postgresql``.
   ``--arrangements`` arrangements are registered and their plan-creation decisions
   taken first, then the clients post ``pre_due`` decisions for them in turn (``POST /v1/decisions``), then
   batches of ``--batch-size`` distinct arrangements (``POST /v1/decisions/batch``). Every acknowledged
   decision was committed to the store.
4. The bare app is measured again at the end; the reference is the faster of its two runs (the machine is
   shared, so this keeps the ratios conservative).
5. Beside the rates, the server process's CPU time (user + system, from ``/proc``) during each measured run:
   CPU per request and its ratio to the bare app's (the ratio a server would reach on a core of its own), and
   batch decisions per CPU-second. On a machine shared with other work, a rate says how much of its core a
   server got as much as how fast it is; CPU per request says the second.

The server runs on core 0 and the load generator on core 1 (``taskset``) when the machine has two cores or
more; with ``--store postgresql`` the database server shares the generator's core. Targets:
>= 70% of the bare app's requests/s, p99 < 50 ms, batch >= 20,000 decisions/s. Results go to
``benchmarks/results/server.json``. Any non-2xx answer during a run makes the benchmark fail rather than report
a rate of errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import httpx  # noqa: E402

from benchmarks.loadgen import LoadResult, run_load, run_slow_requests, wrk_available  # noqa: E402
from benchmarks.server_process import REPO, UvicornProcess, free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "server.json"
POPULATION = REPO / "configs" / "population" / "default.yaml"
TOKEN = "bench-token-0123456789"
#: Day (since the epoch) of the pre-due decision points: after registration at day 0, before the first due date
#: (the default world puts it at least ``min_days_to_first_due`` = 7 days after creation).
PRE_DUE_DAY = 3.0
TARGETS = {"throughput_ratio": 0.70, "p99_ms": 50.0, "batch_decisions_per_second": 20_000.0}


def regsim_command() -> str:
    """The installed ``regsim`` console script beside this interpreter (what ``pip install`` puts on PATH)."""
    script = Path(sys.executable).with_name("regsim")
    if not script.exists():
        raise RuntimeError(f"{script} is missing: install the project (pip install -e '.[serve]') first")
    return str(script)


# --------------------------------------------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------------------------------------------
def train_artifacts(folder: Path, seed: int) -> dict[str, Path]:
    """A tiny MaskablePPO and a tiny LinUCB artifact under ``folder``; returns name -> artifact folder."""
    import torch

    from agents.train import train_policy
    from regsim import load_world_config

    torch.set_num_threads(1)
    mppo = train_policy(
        "maskable-ppo",
        config=load_world_config(POPULATION),
        steps=256,
        seed=seed,
        out=folder / "mppo",
        progress=False,
        tensorboard=False,
        eval_arrangements=0,
        algo_kwargs={"n_steps": 128, "batch_size": 64, "n_epochs": 1},
    )
    linucb_out = folder / "linucb"
    cmd = [sys.executable, "-m", "experiments.cli", "train", "--policy", "linucb", "--steps", "300"]
    cmd += ["--seed", str(seed), "--population", str(POPULATION), "--out", str(linucb_out), "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"regsim train --policy linucb failed:\n{proc.stdout}\n{proc.stderr}")
    return {"maskable-ppo": mppo, "linucb": linucb_out / "policy"}


# --------------------------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------------------------
def arrangement_body(aid: int) -> dict[str, Any]:
    """A plausible registration: 3..12 installments, debts of 600..2,500 EUR, due days 1..28."""
    return {
        "arrangement_id": aid,
        "time": 0.0,
        "debt_eur": 600.0 + 100.0 * (aid % 20),
        "n_installments": 3 + aid % 10,
        "due_day": 1 + aid % 28,
        "prior_payments": aid % 7,
        "prior_late_share": (aid % 5) / 5,
        "prior_pay_dom": None if aid % 7 == 0 else 1 + aid % 28,
        "opted_out": ["sms"] if aid % 11 == 0 else [],
    }


def decision_body(aid: int, kind: str, time_days: float) -> dict[str, Any]:
    return {"arrangement_id": aid, "kind": kind, "time": time_days}


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def single_bodies(ids: Sequence[int]) -> list[bytes]:
    return [dumps(decision_body(a, "pre_due", PRE_DUE_DAY)) for a in ids]


def batch_bodies(ids: Sequence[int], size: int) -> list[bytes]:
    """Batches of ``size`` distinct arrangements (the API takes one decision point per arrangement per batch)."""
    if size > len(ids):
        raise ValueError(f"--batch-size {size} exceeds --arrangements {len(ids)}")
    return [
        dumps({"decisions": [decision_body(a, "pre_due", PRE_DUE_DAY) for a in ids[k : k + size]]})
        for k in range(0, len(ids) - size + 1, size)
    ]


# --------------------------------------------------------------------------------------------------------------
# Set-up of a server under test
# --------------------------------------------------------------------------------------------------------------
def _headers(key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def prepare_arrangements(base_url: str, ids: Sequence[int], workers: int = 8) -> None:
    """Register every arrangement and take its plan-creation decision (so that it is active)."""

    def register(chunk: Sequence[int]) -> None:
        with httpx.Client(base_url=base_url, headers=_headers(), timeout=60) as client:
            for aid in chunk:
                r = client.post("/v1/arrangements", json=arrangement_body(aid))
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"POST /v1/arrangements {aid}: {r.status_code} {r.text}")

    chunks = [ids[k::workers] for k in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(register, chunks))
    with httpx.Client(base_url=base_url, headers=_headers(), timeout=120) as client:
        for k in range(0, len(ids), 500):
            body = {"decisions": [decision_body(a, "plan_created", 0.0) for a in ids[k : k + 500]]}
            r = client.post("/v1/decisions/batch", json=body)
            if r.status_code != 200:
                raise RuntimeError(f"POST /v1/decisions/batch (plan_created): {r.status_code} {r.text[:2000]}")


def check_decision(base_url: str, aid: int, policy_name: str) -> dict[str, Any]:
    """One real decision through the API: 200, a decision id, and the expected policy (not the fallback)."""
    with httpx.Client(base_url=base_url, headers=_headers(), timeout=30) as client:
        r = client.post("/v1/decisions", json=decision_body(aid, "pre_due", PRE_DUE_DAY))
    if r.status_code != 200:
        raise RuntimeError(f"POST /v1/decisions: {r.status_code} {r.text}")
    out: dict[str, Any] = r.json()
    if not isinstance(out.get("decision_id"), int) or out.get("fallback"):
        raise RuntimeError(f"unexpected decision (fallback or no id): {out}")
    if policy_name not in str(out.get("policy")):
        raise RuntimeError(f"decision by {out.get('policy')!r}, expected {policy_name!r}")
    return out


@contextlib.contextmanager
def store_url(kind: str, folder: Path, name: str) -> Iterator[str]:
    """A fresh store: a SQLite file under ``folder``, or a database on a throwaway PostgreSQL server."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / (name + '.db')}"
        return
    from tests.serving.postgres import PostgresServer, postgres_available

    reason = postgres_available()
    if reason is not None:
        raise RuntimeError(f"--store postgresql: {reason}")
    with PostgresServer() as server:
        yield server.create_database(name.replace("-", "_"))


# --------------------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------------------
def _load(
    args: argparse.Namespace, server: UvicornProcess, bodies: Sequence[bytes], cpu: int | None
) -> tuple[LoadResult, float]:
    """``POST /v1/decisions`` from ``args.connections`` clients: a short warm-up, then the measured run; returns
    what the clients measured and the server's CPU seconds during the measured run."""
    base_url, path, keys = server.base_url, "/v1/decisions", args.idempotency_keys
    common: dict[str, Any] = {"headers": _headers(), "connections": args.connections, "cpu": cpu}
    # The warm-up opens the connections and fills caches and lazy imports.
    run_load(base_url, path, bodies, seconds=min(2.0, args.seconds), unique_idempotency_keys=keys, **common)
    used = server.cpu_seconds()
    result = run_load(base_url, path, bodies, seconds=args.seconds, unique_idempotency_keys=keys, **common)
    used = server.cpu_seconds() - used
    if result.errors:
        raise RuntimeError(f"{path} at {base_url}: {result.errors} errors of {result.requests} requests")
    return result, used


def _load_batches(
    server: UvicornProcess, bodies: Sequence[bytes], connections: int, seconds: float
) -> tuple[LoadResult, float]:
    # Batches take long enough that wrk's deadline would drop much of the work in flight; see run_slow_requests.
    # One request warms up; then every client posts for at least ``seconds`` and at least one batch.
    base_url, path = server.base_url, "/v1/decisions/batch"
    run_slow_requests(base_url, path, bodies, headers=_headers(), connections=1, seconds=0.0, min_requests=1)
    used = server.cpu_seconds()
    result = run_slow_requests(
        base_url, path, bodies, headers=_headers(), connections=connections, seconds=seconds, min_requests=1
    )
    used = server.cpu_seconds() - used
    if result.errors:
        raise RuntimeError(f"/v1/decisions/batch at {base_url}: {result.errors} errors of {result.requests} requests")
    return result, used


def _runs(args: argparse.Namespace, server: UvicornProcess, single: list[bytes], batch: list[bytes], core: int | None):
    decisions, decisions_cpu = _load(args, server, single, core)
    batches, batch_cpu = _load_batches(server, batch, args.batch_connections, args.seconds)
    return {
        "decisions": decisions,
        "batch": batches,
        "decisions_cpu_us_per_request": decisions_cpu / max(decisions.requests, 1) * 1e6,
        "batch_cpu_us_per_decision": batch_cpu / max(batches.requests * args.batch_size, 1) * 1e6,
    }


def bench_bare(args: argparse.Namespace, single: list[bytes], batch: list[bytes], cores: tuple[int | None, int | None]):
    with UvicornProcess("benchmarks.bare_app:create_app", cpu=cores[0]) as server:
        return _runs(args, server, single, batch, cores[1])


def bench_regsim(
    args: argparse.Namespace,
    name: str,
    artifact: Path,
    ids: list[int],
    single: list[bytes],
    batch: list[bytes],
    folder: Path,
    cores: tuple[int | None, int | None],
) -> dict[str, Any]:
    with store_url(args.store, folder, f"bench_{name}") as url:
        port = free_port()
        argv = [regsim_command(), "serve", "--policy", str(artifact), "--store", url, "--port", str(port)]
        argv += ["--population", str(POPULATION)] + (["--access-log"] if args.access_log else [])
        env = {"REGSIM_TOKENS": TOKEN}
        with UvicornProcess(
            "regsim serve", env=env, port=port, cpu=cores[0], health_path="/readyz", argv=argv
        ) as server:
            started = time.perf_counter()
            prepare_arrangements(server.base_url, ids)
            setup_s = time.perf_counter() - started
            sample = check_decision(server.base_url, ids[0], name)
            runs = _runs(args, server, single, batch, cores[1])
    return {
        "policy": sample["policy"],
        "policy_version": sample["policy_version"],
        "setup_seconds": setup_s,
        **runs,
        "batch_decisions_per_second": runs["batch"].requests_per_second * args.batch_size,
    }


def _cores() -> tuple[int | None, int | None]:
    """(server core, generator core): 0 and 1 when two cores are available to this process, else unpinned."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (available[0], available[1]) if len(available) >= 2 else (None, None)


def _plain(value: Any) -> Any:
    if isinstance(value, LoadResult):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measured run (s)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent clients for POST /v1/decisions")
    parser.add_argument("--batch-connections", type=int, default=4, help="concurrent clients for the batch endpoint")
    parser.add_argument("--arrangements", type=int, default=2000, help="registered arrangements the load cycles over")
    parser.add_argument("--batch-size", type=int, default=1000, help="decision points per batch request")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite", help="the server's store")
    parser.add_argument(
        "--idempotency-keys",
        action="store_true",
        help="send a fresh Idempotency-Key with every single decision, as a production client would",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="serve with `regsim serve --access-log` (the default is off)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the artifacts' training")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the JSON results (default: benchmarks/results/server.json, server_postgresql.json "
        "with --store postgresql)",
    )
    args = parser.parse_args(argv)
    if args.out is None:  # (one file per store: a PostgreSQL run must not overwrite SQLite's figures)
        args.out = RESULTS if args.store == "sqlite" else RESULTS.with_name(f"server_{args.store}.json")
    if not wrk_available():
        print("WARNING: wrk is missing; the Python fallback generator may be the bottleneck", file=sys.stderr)

    cores = _cores()
    ids = list(range(1, args.arrangements + 1))
    single, batch = single_bodies(ids), batch_bodies(ids, args.batch_size)
    with tempfile.TemporaryDirectory(prefix="regsim-bench-server-") as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        artifacts = train_artifacts(folder, args.seed)
        print(f"trained {', '.join(artifacts)} in {time.perf_counter() - t:.1f} s")
        if cores[1] is not None:
            # This process only generates load from here on (the batch clients, the set-up requests): keep it off
            # the server's core. The servers are pinned by taskset, which overrides the inherited affinity.
            os.sched_setaffinity(0, {cores[1]})
        bare_first = bench_bare(args, single, batch, cores)
        regsim = {
            name: bench_regsim(args, name, path, ids, single, batch, folder, cores) for name, path in artifacts.items()
        }
        bare_last = bench_bare(args, single, batch, cores)

    ref_single = max(bare_first["decisions"], bare_last["decisions"], key=lambda r: r.requests_per_second)
    ref_batch = max(bare_first["batch"], bare_last["batch"], key=lambda r: r.requests_per_second)
    # The CPU reference: the bare app's least CPU per request of its two runs (conservative, as above).
    ref_cpu = min(bare_first["decisions_cpu_us_per_request"], bare_last["decisions_cpu_us_per_request"])
    generator = ref_single.generator
    print(
        f"\nPOST /v1/decisions: {args.connections} clients, {args.seconds:.0f} s per run, one uvicorn worker "
        f"(server core {cores[0]}, {generator} on core {cores[1]}), store {args.store}"
    )
    print(f"  {'':<26}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}{'CPU ratio':>11}")
    print(
        f"  {'bare FastAPI (reference)':<26}{ref_single.requests_per_second:>10,.0f}{1:>8.2f}"
        f"{ref_single.p50_ms:>9.2f}{ref_single.p99_ms:>9.2f}{ref_cpu:>12.0f}{1:>11.2f}"
    )
    summary: dict[str, Any] = {}
    for name, res in regsim.items():
        single_res: LoadResult = res["decisions"]
        ratio = single_res.requests_per_second / ref_single.requests_per_second
        cpu_ratio = ref_cpu / res["decisions_cpu_us_per_request"]
        print(
            f"  {'regsim ' + name:<26}{single_res.requests_per_second:>10,.0f}{ratio:>8.2f}"
            f"{single_res.p50_ms:>9.2f}{single_res.p99_ms:>9.2f}{res['decisions_cpu_us_per_request']:>12.0f}"
            f"{cpu_ratio:>11.2f}"
        )
        summary[name] = {
            "throughput_ratio": ratio,
            "cpu_ratio": cpu_ratio,
            "batch_decisions_per_cpu_second": 1e6 / res["batch_cpu_us_per_decision"],
            "p99_ms": single_res.p99_ms,
            "batch_decisions_per_second": res["batch_decisions_per_second"],
            "batch_ratio": res["batch"].requests_per_second / ref_batch.requests_per_second,
            "meets": {
                "throughput_ratio": ratio >= TARGETS["throughput_ratio"],
                "p99_ms": single_res.p99_ms < TARGETS["p99_ms"],
                "batch_decisions_per_second": res["batch_decisions_per_second"]
                >= TARGETS["batch_decisions_per_second"],
            },
        }
    print(f"\nPOST /v1/decisions/batch: {args.batch_size} decisions per request, {args.batch_connections} clients")
    print(f"  {'':<26}{'decisions/s':>12}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'per CPU-s':>11}")
    print(
        f"  {'bare FastAPI (reference)':<26}{ref_batch.requests_per_second * args.batch_size:>12,.0f}{1:>8.2f}"
        f"{ref_batch.p50_ms:>9.1f}{ref_batch.p99_ms:>9.1f}"
    )
    for name, res in regsim.items():
        print(
            f"  {'regsim ' + name:<26}{res['batch_decisions_per_second']:>12,.0f}{summary[name]['batch_ratio']:>8.2f}"
            f"{res['batch'].p50_ms:>9.1f}{res['batch'].p99_ms:>9.1f}"
            f"{summary[name]['batch_decisions_per_cpu_second']:>11,.0f}"
        )
    print(
        "\n(CPU: the server process's user + system time during the measured run. On a shared machine requests/s "
        "depend on how much of its core a server got; CPU per request much less. CPU ratio: the bare app's CPU "
        "per request over the server's, the ratio on a core of its own; per CPU-s: batch decisions per second of "
        "the server's CPU. With PostgreSQL the database's own CPU is not counted.)"
    )
    print(
        f"\ntargets: ratio >= {TARGETS['throughput_ratio']:.0%}, p99 < {TARGETS['p99_ms']:.0f} ms, "
        f"batch >= {TARGETS['batch_decisions_per_second']:,.0f} decisions/s"
    )
    for name, s in summary.items():
        print(f"  {name:<14}" + "  ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in s["meets"].items()))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": {
            "seconds": args.seconds,
            "connections": args.connections,
            "batch_connections": args.batch_connections,
            "arrangements": args.arrangements,
            "batch_size": args.batch_size,
            "store": args.store,
            "idempotency_keys": args.idempotency_keys,
            "access_log": args.access_log,
            "server_command": "regsim serve --policy ARTIFACT --store URL --port PORT --population DEFAULT",
            "generator": generator,
            "server_core": cores[0],
            "generator_core": cores[1],
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.bench_server", *(argv or sys.argv[1:])]),
        },
        "bare": {"first": _plain(bare_first), "last": _plain(bare_last)},
        "regsim": _plain(regsim),
        "summary": summary,
        "targets": TARGETS,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
