"""Durability: kill the server with SIGKILL under load; every acknowledged decision is in the store.

The real server runs as production runs it (``uvicorn --factory serving.app:app_from_env``, one worker,
settings from ``REGSIM_*`` variables) on SQLite (WAL, ``synchronous=FULL``) and on a real PostgreSQL server
(``fsync=on``). Client threads post decisions (single and small batches, each with an ``Idempotency-Key``)
and record every decision acknowledged with a 2xx. Mid-load the server gets SIGKILL: no shutdown handler runs,
whatever was in flight is lost. After a restart on the same store:

* every acknowledged decision id is in the event log the operator exports (``python -m serving.cli export-log``),
  as a ``decision`` event of the right arrangement;
* each arrangement's overview (``GET /v1/arrangements/{id}``) shows a last decision at least as recent as the
  last one acknowledged for it;
* replaying acknowledged requests with their ``Idempotency-Key`` returns the first response byte for byte
  (the key was committed with the effect), and the server takes new decisions.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.compute as pc

from benchmarks.server_process import REPO, UvicornProcess
from regsim.eventlog import read_events
from tests.serving.conftest import AUTH, TOKEN

#: Arrangements under load, and the client threads posting decisions for them.
ARRANGEMENTS = 24
SINGLE_CLIENTS = 4
BATCH_SIZE = 4
#: Acknowledged decisions to wait for before the kill (the load keeps running until then).
ACKS_BEFORE_KILL = 40
#: Day of the pre-due decision points: after registration (day 0), before the first due date (day >= 7).
DAY = 3.0


@dataclass
class Ack:
    """An acknowledged request: what was sent, with which key, and what came back."""

    path: str
    key: str
    body: dict[str, Any]
    response: bytes
    decisions: list[tuple[int, int]]  # (decision_id, arrangement_id)


@dataclass
class Load:
    """Shared state of the client threads."""

    base_url: str
    acks: list[Ack] = field(default_factory=list)
    transport_errors: int = 0
    other_statuses: list[tuple[int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: Iterator[int] = field(default_factory=itertools.count)

    def post(self, client: httpx.Client, path: str, body: dict[str, Any]) -> None:
        with self.lock:
            key = f"durability-{next(self.keys)}"
        try:
            response = client.post(path, json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            # The server died with this request in flight (or refused the next): nothing was acknowledged.
            with self.lock:
                self.transport_errors += 1
            self.stop.wait(0.05)
            return
        with self.lock:
            if response.status_code == 200:
                out = response.json()
                decided = out.get("decisions", [out])
                pairs = [(int(d["decision_id"]), int(d["arrangement_id"])) for d in decided]
                self.acks.append(Ack(path, key, body, response.content, pairs))
            else:
                self.other_statuses.append((response.status_code, response.text[:300]))

    def single_client(self, ids: list[int]) -> None:
        with httpx.Client(base_url=self.base_url, headers=AUTH, timeout=30) as client:
            for aid in itertools.cycle(ids):
                if self.stop.is_set():
                    return
                self.post(client, "/v1/decisions", {"arrangement_id": aid, "kind": "pre_due", "time": DAY})

    def batch_client(self, ids: list[int]) -> None:
        with httpx.Client(base_url=self.base_url, headers=AUTH, timeout=30) as client:
            for k in itertools.cycle(range(0, len(ids), BATCH_SIZE)):
                if self.stop.is_set():
                    return
                asks = [{"arrangement_id": a, "kind": "pre_due", "time": DAY} for a in ids[k : k + BATCH_SIZE]]
                self.post(client, "/v1/decisions/batch", {"decisions": asks})


def _server(store_url: str, policy: Path) -> UvicornProcess:
    env = {"REGSIM_POLICY": str(policy), "REGSIM_STORE": store_url, "REGSIM_TOKENS": TOKEN}
    return UvicornProcess("serving.app:app_from_env", env=env, health_path="/readyz", start_timeout_s=120)


def _prepare(base_url: str, ids: list[int]) -> None:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=60) as client:
        for aid in ids:
            body = {
                "arrangement_id": aid,
                "time": 0.0,
                "debt_eur": 900.0 + 50 * aid,
                "n_installments": 3 + aid % 6,
                "due_day": 1 + aid % 28,
            }
            assert client.post("/v1/arrangements", json=body).status_code == 201
        asks = [{"arrangement_id": a, "kind": "plan_created", "time": 0.0} for a in ids]
        response = client.post("/v1/decisions/batch", json={"decisions": asks})
        assert response.status_code == 200, response.text


def _exported_decisions(store_url: str, out: Path) -> dict[int, int]:
    """decision_id -> arrangement_id of every decision event in the log exported by the operator's command."""
    proc = subprocess.run(
        [sys.executable, "-m", "serving.cli", "export-log", "--store", store_url, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = read_events(out / "events.parquet")
    decisions = events.filter(pc.equal(pc.cast(events.column("event"), "string"), "decision"))
    ids = decisions.column("decision_id").to_pylist()
    aids = decisions.column("arrangement_id").to_pylist()
    return {int(d): int(a) for d, a in zip(ids, aids, strict=True)}


def test_acknowledged_decisions_survive_sigkill_under_load(
    store_url: str, linucb_artifact: Path, tmp_path: Path
) -> None:
    ids = list(range(1, ARRANGEMENTS + 1))
    server = _server(store_url, linucb_artifact).start()
    try:
        _prepare(server.base_url, ids)
        load = Load(server.base_url)
        # Each single client owns a slice of the arrangements, the batch client cycles over all of them:
        # decisions of one arrangement then race between two clients, as retries and parallel workers do.
        threads = [
            threading.Thread(target=load.single_client, args=(ids[c::SINGLE_CLIENTS],), daemon=True)
            for c in range(SINGLE_CLIENTS)
        ]
        threads.append(threading.Thread(target=load.batch_client, args=(ids,), daemon=True))
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 90
        while len(load.acks) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        acks_at_kill = len(load.acks)
        server.kill()
        killed_at = time.monotonic()
        # Let the clients notice: each is now failing to connect.
        while load.transport_errors < len(threads) and time.monotonic() - killed_at < 10:
            time.sleep(0.01)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        server.close()

    assert acks_at_kill >= ACKS_BEFORE_KILL, f"only {acks_at_kill} decisions acknowledged before the deadline"
    assert load.transport_errors >= len(threads), "the kill did not interrupt the load"
    assert not load.other_statuses, load.other_statuses[:5]
    acknowledged = {d: a for ack in load.acks for d, a in ack.decisions}
    assert len(acknowledged) == sum(len(ack.decisions) for ack in load.acks), "a decision id was given twice"

    restarted = _server(store_url, linucb_artifact).start()
    try:
        stored = _exported_decisions(store_url, tmp_path / "export")
        print(
            f"{len(acknowledged)} decisions acknowledged in {len(load.acks)} requests before SIGKILL; "
            f"{len(stored)} decisions in the store after restart; {load.transport_errors} failed requests"
        )
        missing = sorted(set(acknowledged) - set(stored))
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged decisions lost, e.g. {missing[:10]}"
        wrong = {d: (a, stored[d]) for d, a in acknowledged.items() if stored[d] != a}
        assert not wrong, f"decisions stored under another arrangement: {wrong}"

        with httpx.Client(base_url=restarted.base_url, headers=AUTH, timeout=30) as client:
            last_acked: dict[int, int] = {}
            for d, a in acknowledged.items():
                last_acked[a] = max(d, last_acked.get(a, d))
            for aid, decision_id in last_acked.items():
                overview = client.get(f"/v1/arrangements/{aid}")
                assert overview.status_code == 200, overview.text
                assert overview.json()["last_decision"]["decision_id"] >= decision_id

            # A retry of an acknowledged request after the crash gets the first answer, not a second decision.
            for ack in load.acks[:: max(1, len(load.acks) // 10)]:
                replay = client.post(ack.path, json=ack.body, headers={"Idempotency-Key": ack.key})
                assert replay.status_code == 200, replay.text
                assert replay.content == ack.response

            after = client.post("/v1/decisions", json={"arrangement_id": ids[0], "kind": "pre_due", "time": DAY})
            assert after.status_code == 200, after.text
            assert after.json()["decision_id"] > max(stored)
    finally:
        restarted.close()
