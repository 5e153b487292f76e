"""Closed-loop HTTP load generator: N concurrent clients POST JSON bodies for a fixed time.

The generator must not be the bottleneck on a 2-core machine, so it runs ``wrk`` (C, one event loop per
thread) with a Lua script that cycles through a file of request bodies and adds the headers; when ``wrk`` is
missing it falls back to an asyncio + httpx generator and warns that the numbers then partly measure the
generator itself.

Each client sends its next request as soon as the previous answer arrives (closed loop), so requests per
second is the server's throughput at that concurrency and the latency percentiles are those the clients saw.
Any non-2xx answer or socket error is counted in :attr:`LoadResult.errors`; a benchmark must refuse a run with
errors instead of reporting its rate.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

__all__ = ["LoadResult", "run_load", "run_slow_requests", "wrk_available"]

#: Marker of the JSON line that the Lua ``done`` hook prints.
_MARK = "REGSIM_WRK_RESULT "

# wrk runs one Lua state per thread plus one for setup/done. Bodies are read once per thread in ``init``;
# ``request`` cycles through them (each thread from its own offset) and, when asked, adds a fresh
# Idempotency-Key per request, as a production client would.
_LUA = r"""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local bodies = {}
local i = 0
local n = 0
local path, headers, unique_keys, tid_str

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then table.insert(bodies, line) end
  end
  f:close()
  path = args[2]
  unique_keys = args[3] == "1"
  headers = {}
  headers["Content-Type"] = "application/json"
  for k = 4, #args, 2 do headers[args[k]] = args[k + 1] end
  tid_str = tostring(tid)
  i = (tid * 7919) % #bodies
end

function request()
  i = i % #bodies + 1
  n = n + 1
  if unique_keys then
    headers["Idempotency-Key"] = "wrk-" .. tid_str .. "-" .. n .. "-" .. os.time()
  end
  return wrk.format("POST", path, headers, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "REGSIM_WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"mean_us\": %f, \"max_us\": %d, \"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, " ..
    "\"timeout\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What the clients measured in one run.

    Attributes:
        generator: ``"wrk"`` or ``"httpx"`` (the fallback).
        connections: Concurrent clients.
        requests: Completed requests (any status).
        seconds: Wall time of the run.
        requests_per_second: ``requests / seconds``.
        p50_ms: Median latency (milliseconds).
        p99_ms: 99th percentile latency (milliseconds).
        mean_ms: Mean latency (milliseconds).
        errors: Non-2xx answers plus socket errors and timeouts.
    """

    generator: str
    connections: int
    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_available() -> bool:
    """Whether the ``wrk`` binary is on ``PATH``."""
    return shutil.which("wrk") is not None


def run_load(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    *,
    headers: Mapping[str, str] | None = None,
    connections: int = 32,
    seconds: float = 10.0,
    cpu: int | None = None,
    unique_idempotency_keys: bool = False,
    timeout_s: float = 30.0,
) -> LoadResult:
    """POST ``bodies`` (cycled) to ``base_url + path`` from ``connections`` clients for ``seconds``.

    Args:
        base_url: ``http://host:port``.
        path: Request path, e.g. ``/v1/decisions``.
        bodies: JSON request bodies (one line each: no newline inside a body).
        headers: Extra request headers (e.g. ``Authorization``); ``Content-Type: application/json`` is added.
        connections: Concurrent closed-loop clients.
        seconds: Duration of the run.
        cpu: Pin the generator to this core (``taskset``; the httpx fallback pins the current process).
        unique_idempotency_keys: Send a fresh ``Idempotency-Key`` with every request.
        timeout_s: Per-request timeout.

    Returns:
        The run's :class:`LoadResult`.

    Raises:
        ValueError: ``bodies`` is empty or a body contains a newline.
    """
    if not bodies:
        raise ValueError("bodies must not be empty")
    if any(b"\n" in body for body in bodies):
        raise ValueError("bodies must be single-line JSON (no newline inside a body)")
    if wrk_available():
        return _run_wrk(base_url, path, bodies, dict(headers or {}), connections, seconds, cpu, unique_idempotency_keys)
    print(
        "WARNING: wrk not found (apt-get install -y wrk); falling back to a Python asyncio+httpx load generator, "
        "which on 2 cores may itself be the bottleneck",
        file=sys.stderr,
    )
    return _run_httpx(
        base_url, path, bodies, dict(headers or {}), connections, seconds, cpu, unique_idempotency_keys, timeout_s
    )


def run_slow_requests(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    *,
    headers: Mapping[str, str] | None = None,
    connections: int = 4,
    seconds: float = 10.0,
    min_requests: int = 3,
    timeout_s: float = 300.0,
) -> LoadResult:
    """Closed-loop clients in threads, for slow requests (large batches): every started request is counted.

    ``wrk`` stops at its deadline and drops the requests in flight, which is right for requests of a few
    milliseconds but loses most of the work when one request takes seconds. Here each client keeps posting
    until ``seconds`` have passed *and* it has completed ``min_requests``; the rate is completed requests over
    the wall time until the last one finished. At tens of requests per second, Python threads are far from
    being the bottleneck.

    Args:
        base_url: ``http://host:port``.
        path: Request path.
        bodies: JSON request bodies, cycled (each client from its own offset).
        headers: Extra request headers; ``Content-Type: application/json`` is added.
        connections: Concurrent clients.
        seconds: Minimum duration.
        min_requests: Minimum completed requests per client.
        timeout_s: Per-request timeout.

    Returns:
        The run's :class:`LoadResult` (``generator="threads"``).
    """
    import threading

    if not bodies:
        raise ValueError("bodies must not be empty")
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    base_headers = {"Content-Type": "application/json", **(headers or {})}
    start = time.perf_counter()

    def client_loop(cid: int) -> None:
        nonlocal errors
        done = 0
        with httpx.Client(base_url=base_url, headers=base_headers, timeout=timeout_s) as client:
            while done < min_requests or time.perf_counter() - start < seconds:
                t = time.perf_counter()
                try:
                    ok = 200 <= client.post(path, content=bodies[(cid * 7919 + done) % len(bodies)]).status_code < 300
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - t
                done += 1
                with lock:
                    latencies.append(elapsed)
                    errors += not ok

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    lat_ms = np.asarray(latencies) * 1e3
    return LoadResult(
        generator="threads",
        connections=connections,
        requests=len(latencies),
        seconds=wall,
        requests_per_second=len(latencies) / wall,
        p50_ms=float(np.percentile(lat_ms, 50)),
        p99_ms=float(np.percentile(lat_ms, 99)),
        mean_ms=float(lat_ms.mean()),
        errors=errors,
    )


def _run_wrk(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
    cpu: int | None,
    unique_keys: bool,
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="regsim-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_LUA)
        body_file = Path(tmp) / "bodies.jsonl"
        body_file.write_bytes(b"\n".join(bodies) + b"\n")
        # One wrk thread: on a 2-core box the generator gets one core; more threads would only contend.
        argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
        argv += ["-s", str(script), base_url, "--", str(body_file), path, "1" if unique_keys else "0"]
        for name, value in headers.items():
            argv += [name, value]
        if cpu is not None and shutil.which("taskset") is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(lines[-1][len(_MARK) :])
    duration = raw["duration_us"] / 1e6
    errors = sum(int(raw[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        generator="wrk",
        connections=connections,
        requests=int(raw["requests"]),
        seconds=duration,
        requests_per_second=raw["requests"] / duration,
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        mean_ms=raw["mean_us"] / 1e3,
        errors=errors,
    )


def _run_httpx(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
    cpu: int | None,
    unique_keys: bool,
    timeout_s: float,
) -> LoadResult:
    import os

    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cpu is not None and previous is not None and cpu in previous:
        os.sched_setaffinity(0, {cpu})
    try:
        return asyncio.run(
            _httpx_clients(base_url, path, bodies, headers, connections, seconds, unique_keys, timeout_s)
        )
    finally:
        if previous is not None and cpu is not None:
            os.sched_setaffinity(0, previous)


async def _httpx_clients(
    base_url: str,
    path: str,
    bodies: Sequence[bytes],
    headers: dict[str, str],
    connections: int,
    seconds: float,
    unique_keys: bool,
    timeout_s: float,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    base_headers = {"Content-Type": "application/json", **headers}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def client_loop(cid: int) -> None:
            nonlocal errors
            i = cid * 7919
            n = 0
            while time.perf_counter() < deadline:
                i, n = i + 1, n + 1
                request_headers = dict(base_headers)
                if unique_keys:
                    request_headers["Idempotency-Key"] = f"httpx-{cid}-{n}-{start}"
                t = time.perf_counter()
                try:
                    response = await client.post(path, content=bodies[i % len(bodies)], headers=request_headers)
                    if not 200 <= response.status_code < 300:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(client_loop(c) for c in range(connections)))
        elapsed = time.perf_counter() - start
    lat_ms = np.asarray(latencies) * 1e3
    return LoadResult(
        generator="httpx",
        connections=connections,
        requests=len(latencies),
        seconds=elapsed,
        requests_per_second=len(latencies) / elapsed,
        p50_ms=float(np.percentile(lat_ms, 50)) if len(lat_ms) else float("nan"),
        p99_ms=float(np.percentile(lat_ms, 99)) if len(lat_ms) else float("nan"),
        mean_ms=float(lat_ms.mean()) if len(lat_ms) else float("nan"),
        errors=errors,
    )
