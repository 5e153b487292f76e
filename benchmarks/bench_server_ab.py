"""Interleaved A/B comparison of two versions of the server: CPU per decision, same run, several rounds.

Run from the repository root (``wrk`` installed)::

    python -m benchmarks.bench_server_ab --a HEAD~3 [--b WORKTREE] [--store sqlite|postgresql] [--rounds 3]

On a machine shared with other work, a server's requests per second say how much of its core it got as much as
how fast it is, and two runs minutes apart see different loads. This harness compares two versions of the code
by what depends least on the load, in a run where both see the same conditions:

1. ``--a`` and ``--b`` name the versions: a git revision (exported with ``git archive`` into a temporary folder;
   the repository itself is not touched), ``WORKTREE``, this checkout as it is now (the default of ``--b``), or
   a folder holding a copy of the source tree (e.g. one with an experimental change).
2. The artifacts (a tiny MaskablePPO and a tiny LinUCB, as :mod:`benchmarks.bench_server` trains them) are
   trained once, by this checkout, and served by both versions.
3. Each round runs every policy under each version, in alternating order (A then B in odd rounds, B then A in
   even ones, so a drift of the machine's load does not favour one side): the version's ``regsim serve``
   (``python -m experiments.cli serve`` from its own tree, the shipped defaults), a fresh store (a SQLite file,
   or a new database on one throwaway PostgreSQL server), the arrangements registered and planned, then
   ``POST /v1/decisions`` from ``--connections`` clients and ``POST /v1/decisions/batch`` from
   ``--batch-connections``, as in :mod:`benchmarks.bench_server`.
4. Per run: the server process's CPU time (user + system, from ``/proc``) per single decision and per batch
   decision, requests per second and p99. Per round: B's CPU per decision over A's (a paired ratio: both ran
   minutes apart at most). The report gives each ratio's mean, minimum and maximum over the rounds.

A ratio below 1 means B uses less CPU per decision than A. Results go to ``--out`` (JSON). Any non-2xx answer
during a run makes the harness fail, as in :mod:`benchmarks.bench_server`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from benchmarks import bench_server as bs  # noqa: E402
from benchmarks.server_process import REPO, UvicornProcess, free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "server_ab.json"
WORKTREE = "WORKTREE"


@dataclass(frozen=True)
class RunFigures:
    """One measured run of one version with one policy.

    Attributes:
        version: ``"A"`` or ``"B"``.
        policy: The artifact's name (``maskable-ppo`` or ``linucb``).
        round: The round (0-based).
        single_cpu_us: Server CPU microseconds per single decision.
        single_rps: Single decisions per second (wall).
        single_p99_ms: Their p99 latency.
        batch_cpu_us: Server CPU microseconds per batch decision.
        batch_dps: Batch decisions per second (wall).
    """

    version: str
    policy: str
    round: int
    single_cpu_us: float
    single_rps: float
    single_p99_ms: float
    batch_cpu_us: float
    batch_dps: float


def export_tree(revision: str, folder: Path) -> Path:
    """The files of ``revision`` under ``folder`` (``git archive``; the repository is only read).

    Raises:
        RuntimeError: ``git`` cannot resolve or export the revision.
    """
    proc = subprocess.run(["git", "archive", "--format=tar", revision], cwd=REPO, capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"--a/--b {revision!r}: git archive failed: {proc.stderr.decode(errors='replace')}")
    tar_path = folder / "tree.tar"
    tar_path.write_bytes(proc.stdout)
    tree = folder / "tree"
    with tarfile.open(tar_path) as tar:
        tar.extractall(tree, filter="data")
    tar_path.unlink()
    return tree


@contextlib.contextmanager
def store_factory(kind: str, folder: Path) -> Iterator[Callable[[str], str]]:
    """A function name -> fresh store URL: SQLite files under ``folder``, or databases on one PostgreSQL server."""
    if kind == "sqlite":
        yield lambda name: f"sqlite:///{folder / (name + '.db')}"
        return
    from tests.serving.postgres import PostgresServer, postgres_available

    reason = postgres_available()
    if reason is not None:
        raise RuntimeError(f"--store postgresql: {reason}")
    with PostgresServer() as server:
        yield server.create_database


def measure(
    args: argparse.Namespace,
    tree: Path,
    artifact: Path,
    url: str,
    ids: list[int],
    single: list[bytes],
    batch: list[bytes],
    cores: tuple[int | None, int | None],
) -> dict[str, Any]:
    """One version's ``regsim serve`` (from ``tree``) on a fresh store: set up, then the single and batch runs."""
    port = free_port()
    argv = [sys.executable, "-m", "experiments.cli", "serve", "--policy", str(artifact), "--store", url]
    argv += ["--port", str(port), "--population", str(bs.POPULATION)]
    env = {"REGSIM_TOKENS": bs.TOKEN}
    with UvicornProcess(
        "regsim serve", env=env, port=port, cpu=cores[0], health_path="/readyz", argv=argv, root=tree
    ) as server:
        bs.prepare_arrangements(server.base_url, ids)
        return bs._runs(args, server, single, batch, cores[1])


def _artifacts(folder: Path, seed: int) -> dict[str, Path]:
    """The two artifacts under ``folder``: those trained there before, else trained now."""
    known = {"maskable-ppo": folder / "mppo" / "policy", "linucb": folder / "linucb" / "policy"}
    if all((path / "manifest.json").exists() for path in known.values()):
        return known
    return bs.train_artifacts(folder, seed)


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--a", required=True, help="version A: a git revision, WORKTREE or a source folder")
    parser.add_argument("--b", default=WORKTREE, help="version B (default: this checkout as it is, WORKTREE)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--policies", default="maskable-ppo,linucb", help="comma-separated artifacts to serve")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (each runs A and B once per policy)")
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each measured run (s)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch-connections", type=int, default=4)
    parser.add_argument("--arrangements", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the artifacts' training")
    parser.add_argument(
        "--artifacts", type=Path, default=None, help="keep the trained artifacts in this folder and reuse them"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.idempotency_keys = False  # (bench_server's runs read it)
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - {"maskable-ppo", "linucb"}
    if unknown or not policies:
        parser.error(f"--policies: {sorted(unknown) or 'none'}; allowed: maskable-ppo, linucb")
    if args.rounds < 1:
        parser.error(f"--rounds: {args.rounds}; must be >= 1")

    cores = bs._cores()
    ids = list(range(1, args.arrangements + 1))
    single, batch = bs.single_bodies(ids), bs.batch_bodies(ids, args.batch_size)
    figures: list[RunFigures] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="regsim-bench-ab-") as tmp:
        folder = Path(tmp)
        trees: dict[str, Path] = {}
        for name, rev in (("A", args.a), ("B", args.b)):
            if rev == WORKTREE:
                trees[name] = REPO
            elif Path(rev).is_dir():
                trees[name] = Path(rev).resolve()
            else:
                (folder / name).mkdir()
                trees[name] = export_tree(rev, folder / name)
        artifacts = _artifacts(args.artifacts or folder / "artifacts", args.seed)
        if cores[1] is not None:
            os.sched_setaffinity(0, {cores[1]})
        with store_factory(args.store, folder) as new_store:
            for rnd in range(args.rounds):
                order = ("A", "B") if rnd % 2 == 0 else ("B", "A")
                for policy in policies:
                    for version in order:
                        name = f"ab_{version.lower()}_{policy.replace('-', '_')}_{rnd}"
                        url = new_store(name)
                        runs = measure(args, trees[version], artifacts[policy], url, ids, single, batch, cores)
                        single_res, batch_res = runs["decisions"], runs["batch"]
                        fig = RunFigures(
                            version,
                            policy,
                            rnd,
                            float(runs["decisions_cpu_us_per_request"]),
                            single_res.requests_per_second,
                            single_res.p99_ms,
                            float(runs["batch_cpu_us_per_decision"]),
                            batch_res.requests_per_second * args.batch_size,
                        )
                        figures.append(fig)
                        print(
                            f"round {rnd} {version} {policy:<13} single {fig.single_cpu_us:6.0f} us/req "
                            f"{fig.single_rps:7,.0f} req/s p99 {fig.single_p99_ms:5.1f} ms | batch "
                            f"{fig.batch_cpu_us:5.1f} us/decision {fig.batch_dps:8,.0f} decisions/s",
                            flush=True,
                        )

    print(
        f"\nA = {args.a}, B = {args.b}, store {args.store}, {args.rounds} rounds, {time.perf_counter() - started:.0f} s"
    )
    print("B / A per round (paired), mean [min, max]; below 1: B uses less CPU per decision")
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for policy in policies:
        by = {(f.version, f.round): f for f in figures if f.policy == policy}
        rounds = range(args.rounds)
        single_ratio = [by["B", r].single_cpu_us / by["A", r].single_cpu_us for r in rounds]
        batch_ratio = [by["B", r].batch_cpu_us / by["A", r].batch_cpu_us for r in rounds]
        summary[policy] = {
            "single_cpu_ratio": _spread(single_ratio),
            "batch_cpu_ratio": _spread(batch_ratio),
            "single_cpu_us_A": _spread([by["A", r].single_cpu_us for r in rounds]),
            "single_cpu_us_B": _spread([by["B", r].single_cpu_us for r in rounds]),
            "batch_cpu_us_A": _spread([by["A", r].batch_cpu_us for r in rounds]),
            "batch_cpu_us_B": _spread([by["B", r].batch_cpu_us for r in rounds]),
        }
        for label, key in (("single CPU/decision", "single_cpu_ratio"), ("batch CPU/decision", "batch_cpu_ratio")):
            s = summary[policy][key]
            print(f"  {policy:<13} {label:<20} {s['mean']:.3f} [{s['min']:.3f}, {s['max']:.3f}]")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": {
            "a": args.a,
            "b": args.b,
            "store": args.store,
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "batch_connections": args.batch_connections,
            "arrangements": args.arrangements,
            "batch_size": args.batch_size,
            "server_core": cores[0],
            "generator_core": cores[1],
            "command": " ".join(["python", "-m", "benchmarks.bench_server_ab", *(argv or sys.argv[1:])]),
        },
        "runs": [asdict(f) for f in figures],
        "summary": summary,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
