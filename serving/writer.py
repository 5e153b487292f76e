"""The single writer: every POST's effect runs here, requests that arrive together share one transaction.

Group commit. Requests are queued by the event loop; one writer task takes everything queued (up to a limit)
and runs it as one transaction on a dedicated thread, while the event loop goes on reading and validating the
next requests, which form the next group. Each request is answered only after the transaction holding its
effect has committed, so "acknowledged = committed" holds as before; what the group shares is the commit
(one fsync on SQLite with ``synchronous=FULL``, one WAL flush on PostgreSQL), the lease check, the idempotency
look-up and the online learner's save. Consecutive single decisions of distinct arrangements on the same day
are decided as one batch (:meth:`serving.service.DecisionService.decide_each`): one context build, one policy
call, bulk inserts.

Isolation inside a group. A request the service refuses (404, 409, 422) is refused before it writes anything,
and the replayed state it touched is restored, so it does not affect the others. Any other failure rolls the
transaction back and the group's requests are retried one transaction each, so a single bad request fails
alone. The replay cache (:mod:`serving.cache`) takes the group's state only after the commit; a group of single
decisions alone works on the cache's own state instead (:meth:`serving.cache.ReplayCache.in_place`: no copy out
and merge back), a refused point put back from a copy of what its bookkeeping could change, and a failed
transaction makes the writer forget the cache (it is reloaded from the store as needed).

Ids and the lease. A group takes its decision and message ids from the writer's copy of the id counters
(:class:`serving.store.IdCounters`, exact while this process holds the lease) and ends with one statement that
writes the counters' new values and confirms the lease, failing in the database unless both are as this
process expects (:meth:`serving.lease.WriterLease.confirm_with_ids`): no round trip for ids, and no row lock
taken before the group's last statement. On the overlapped path (PostgreSQL) that statement and the ``COMMIT``
go as one simple query, on the committer thread: one round trip for both (:class:`_Confirming`).

Overlap (PostgreSQL). A commit waits for the database's WAL flush (about 4 ms on the benchmark's disk), during
which the writer would sit idle while the next clients wait to be served. With ``overlap`` (the default on
PostgreSQL), the writer works on the next group, in its own transaction on another connection, while the
previous group's commit runs on a committer thread: it decides, writes its rows, then waits for that commit
before writing the learner's state and its lease confirmation and handing its own commit over. Only groups of
decisions overlap (they read the arrangements' state from the cache, which holds the previous group's
effects); a group with a registration, an event, a clock tick or another request, which may read rows the
previous transaction wrote and cannot yet be seen by another, waits for that commit first. Each group's
answers go out only when its own commit has returned, so "acknowledged = committed" holds. If a commit fails,
the group worked on top of it is rolled back, the cache and the id counters forget what the two took, and both
are run again one transaction at a time (:meth:`Writer._redo`). Commits stay in order: a group's commit is sent
only after the previous one has returned. SQLite allows one writing transaction at a time, so there the writer
stays serial. The overlapped path keeps its connections open between groups (:class:`_HeldConnections`): no
pool checkout, and no pre-ping round trip, per group.

Lingering. Much of a group's cost is fixed (the transaction, the lease check, one context build, one policy
call, one insert per table), so larger groups mean fewer fixed costs per request. Closed-loop clients send
their next request as soon as their answer arrives; taking the next group the moment the previous one commits
would catch only the requests that happened to be parsed by then, and split the clients into two alternating
halves. So, before taking a group, the writer lets the event loop run (read the sockets that are ready, run
the handlers of the requests read) until ``linger_rounds`` rounds in a row queue nothing new, the group is full
or ``linger_max_s`` has passed: the analogue of PostgreSQL's ``commit_delay``. Idle rounds cost a few
microseconds each, so a lone request waits next to nothing; under load (benchmarks/bench_server.py, 32
clients) groups grow from ~12 to ~22 requests and throughput by about a third.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection, Engine

from serving import db, schemas
from serving.cache import ReplayCache, Workspace
from serving.idempotency import (
    IdempotencyConflictError,
    StoredResponse,
    lookup_many,
    purge,
    remember_many,
    request_hash,
)
from serving.lease import LOST, LeaseLostError, WriterLease, confirm_and_commit
from serving.metrics import Metrics
from serving.responses import answer_json, batch_json
from serving.service import DecisionService, ServiceError
from serving.store import IdCounters

__all__ = ["Outcome", "WriteOp", "Writer"]

log = logging.getLogger("regsim.serving")

OpKind = Literal["register", "decide", "batch", "event", "clock", "apply"]
#: A request handled by a service outside this module (``apply`` ops): its effect and answer, in the transaction.
Apply = Callable[[Connection, Workspace, Any], "Outcome"]
_OPEN = ("offered", "active")


@dataclass(frozen=True)
class Outcome:
    """A committed answer: HTTP status and JSON body."""

    status_code: int
    body: str


@dataclass
class WriteOp:
    """One POST's effect, queued for the writer.

    Attributes:
        kind: ``register`` (arrangement), ``decide`` (one decision point), ``batch`` (decision points),
            ``event``, ``clock`` (every open arrangement) or ``apply`` (run by ``apply``).
        body: The validated request body.
        key: Its ``Idempotency-Key`` (or ``None``).
        method: HTTP method (for the idempotency record).
        path: Request path (for the idempotency record).
        digest: Hash of the request (:func:`serving.idempotency.request_hash`; only with a key).
        apply: For ``apply``: the effect and answer (e.g. :mod:`serving.menu_service`'s), refused with a
            :class:`~serving.service.ServiceError` as the others.
    """

    kind: OpKind
    body: Any
    key: str | None = None
    method: str = "POST"
    path: str = ""
    digest: str = ""
    apply: Apply | None = None
    future: asyncio.Future[Outcome] | None = field(default=None, repr=False)

    def arrangement_ids(self, conn: Connection) -> list[int]:
        """The arrangements this request touches."""
        if self.kind == "batch":
            return [int(d.arrangement_id) for d in self.body.decisions]
        if self.kind == "clock":
            stmt = sa.select(db.arrangements.c.arrangement_id).where(db.arrangements.c.status.in_(_OPEN))
            return [int(a) for (a,) in conn.execute(stmt)]
        return [int(self.body.arrangement_id)]


Result = Outcome | Exception


class Writer:
    """Runs write requests in groups, one transaction per group, on one thread.

    Args:
        engine: The store.
        service: The decision service.
        cache: The replay cache (takes each group's state after its commit).
        lease: This process's lease on the store.
        metrics: The app's metrics.
        max_group: Most decision points (a single request counts one) in one group.
        linger_rounds: Rounds of the event loop without a new request before a group is taken (0: at once).
        linger_max_s: Longest wait for more requests before a group is taken (seconds).
        idempotency_retention_s: How long idempotency keys are kept (seconds); older ones are purged, inside a
            write transaction, at most once every ``purge_every_s``.
        purge_every_s: Least time between two purges (seconds).
        overlap: Work on a group while the one before it commits (see the module doc); ``None``: on
            PostgreSQL only.
    """

    def __init__(
        self,
        engine: Engine,
        service: DecisionService,
        cache: ReplayCache,
        lease: WriterLease,
        metrics: Metrics,
        max_group: int = 2_000,
        linger_rounds: int = 0,
        linger_max_s: float = 0.002,
        idempotency_retention_s: float = 72 * 3600.0,
        purge_every_s: float = 60.0,
        overlap: bool | None = None,
    ) -> None:
        self.engine, self.service, self.cache, self.lease, self.metrics = engine, service, cache, lease, metrics
        self.retention = dt.timedelta(seconds=idempotency_retention_s)
        self.purge_every_s = purge_every_s
        self._next_purge = 0.0  # the first group purges what expired while the server was down
        self.max_group = max_group
        self.linger_rounds, self.linger_max_s = linger_rounds, linger_max_s
        self._queue: collections.deque[WriteOp] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="regsim-writer")
        # The commits of overlapped groups, one at a time, in order.
        self._committer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="regsim-commit")
        self.overlap = engine is not None and engine.dialect.name == "postgresql" if overlap is None else overlap
        self.ids = IdCounters()
        self._connections = _HeldConnections(engine)
        self._inflight: _InFlight | None = None
        # The learner changes in memory while a transaction works; after a rollback it must take the state the
        # store holds before the next transaction (see _forget_learned).
        self._learner_stale = False

    # -- the event loop's side ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer task on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="regsim-writer")

    async def stop(self) -> None:
        """Finish the queued requests, then stop."""
        if self._task is not None:
            while self._queue or self._inflight is not None:
                await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._thread.shutdown(wait=True)
        self._committer.shutdown(wait=True)
        self._connections.close()

    async def write(
        self, kind: OpKind, body: BaseModel, key: str | None, method: str, path: str, apply: Apply | None = None
    ) -> Outcome:
        """Queue a validated POST (with its ``Idempotency-Key``, hashed here); its answer once committed."""
        digest = request_hash(method, path, body.model_dump(mode="json")) if key is not None else ""
        return await self.submit(WriteOp(kind, body, key, method, path, digest, apply))

    async def submit(self, op: WriteOp) -> Outcome:
        """Queue a request; return its answer once its transaction has committed (or raise its error)."""
        assert self._wake is not None, "Writer.start() was not called"
        op.future = asyncio.get_running_loop().create_future()
        self._queue.append(op)
        self._wake.set()
        return await op.future

    async def _loop(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._inflight is not None:  # nothing new to work on: see the group in flight through
                    await self._settle(loop)
                    continue
                self._wake.clear()
                await self._wake.wait()
            await self._linger()
            group = self._take()
            self.metrics.write_group.observe(len(group))
            try:
                if self.overlap:
                    await self._overlapped(loop, group)
                else:
                    self._answer(group, await loop.run_in_executor(self._thread, self._run, group))
            except Exception as exc:  # the writer must survive anything; each request gets the error
                log.exception("write group failed")
                self._answer(group, [exc] * len(group))

    def _answer(self, group: list[WriteOp], results: list[Result]) -> None:
        for op, res in zip(group, results, strict=True):
            assert op.future is not None
            if op.future.done():  # the client went away; its effect (if any) is committed all the same
                continue
            if isinstance(res, Exception):
                op.future.set_exception(res)
            else:
                op.future.set_result(res)

    async def _overlapped(self, loop: asyncio.AbstractEventLoop, group: list[WriteOp]) -> None:
        """Work on ``group`` while the group before it commits; its answers go out once its own commit returns."""
        before = self._inflight
        if before is not None and not all(op.kind in _OVERLAPPING for op in group):
            # It may read what the group in flight wrote, which another transaction cannot see before its
            # commit (a late event reads its arrangement's log, a clock tick the open arrangements): wait.
            await self._settle(loop)
            before = None
        try:
            results, commit = await loop.run_in_executor(
                self._thread, self._prepare, group, None if before is None else before.commit
            )
        except Exception as exc:
            # Rolled back: the group before it failed to commit (_RedoError), or this one failed. See the one before
            # through first, then run this one on its own, as without overlap.
            if not isinstance(exc, _RedoError):
                log.warning("overlapped write group of %d failed (%s: %s)", len(group), type(exc).__name__, exc)
            if self._inflight is not None:
                await self._settle(loop)
            self._answer(group, await loop.run_in_executor(self._thread, self._redo, group))
            return
        # The group before has committed (_prepare waited for it) and was answered when it did.
        flight = self._inflight = _InFlight(group, results, commit)

        def committed(done: concurrent.futures.Future[None]) -> None:
            if done.exception() is None:
                loop.call_soon_threadsafe(self._answer, flight.group, flight.results)

        commit.add_done_callback(committed)

    async def _settle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the group in flight to commit; if its commit failed, run it again without overlap."""
        flight, self._inflight = self._inflight, None
        assert flight is not None
        try:
            await asyncio.wrap_future(flight.commit)
        except Exception as exc:
            log.warning(
                "write group of %d failed to commit (%s: %s); running it again",
                len(flight.group),
                type(exc).__name__,
                exc,
            )
            self._answer(flight.group, await loop.run_in_executor(self._thread, self._redo, flight.group))
            return
        # The writer thread is idle here (every call handed to it has returned): no hop for a few assignments.
        self.service.committed()
        self._answer(flight.group, flight.results)  # (already answered by its callback, unless that is queued)

    async def _linger(self) -> None:
        """Let the event loop queue the requests already on their way, then return (see the module doc)."""
        if self.linger_rounds <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_max_s
        quiet, queued = 0, len(self._queue)
        while quiet < self.linger_rounds and len(self._queue) < self.max_group and loop.time() < deadline:
            await asyncio.sleep(0)  # one round of the event loop: ready sockets read, ready handlers run
            if len(self._queue) == queued:
                quiet += 1
            else:
                quiet, queued = 0, len(self._queue)

    def _take(self) -> list[WriteOp]:
        """The next group: queued requests in order, up to ``max_group`` points, no key twice."""
        group: list[WriteOp] = []
        keys: set[str] = set()
        size = 0
        while self._queue:
            op = self._queue[0]
            n = len(op.body.decisions) if op.kind == "batch" else 1
            if group and (size + n > self.max_group or (op.key is not None and op.key in keys)):
                break
            self._queue.popleft()
            group.append(op)
            size += n
            if op.key is not None:
                keys.add(op.key)
        return group

    # -- the writer thread's side ---------------------------------------------------------------------------
    def _run(self, group: list[WriteOp]) -> list[Result]:
        try:
            return self._transaction(group)
        except LeaseLostError as exc:
            return [exc] * len(group)
        except Exception as exc:
            if len(group) == 1:
                return [exc]
            log.warning("write group of %d failed (%s: %s); retrying one by one", len(group), type(exc).__name__, exc)
        out: list[Result] = []
        for op in group:
            try:
                out += self._transaction([op])
            except Exception as exc:  # this request's own failure
                out.append(exc)
        return out

    def _transaction(self, group: list[WriteOp]) -> list[Result]:
        """The group in one transaction, committed before this returns (the serial path)."""
        try:
            with self.engine.begin() as conn, self.ids.allocating(conn) as ids:
                self._reload_stale_learner(conn)
                results, ws, keep = self._work(conn, group)
                self.service.save_online(conn)
                self.lease.confirm_with_ids(conn, ids.start, ids.now)
        except BaseException as exc:
            self.service.take_counts()  # (not committed: nothing counted; a run again counts once)
            self.service.rolled_back()
            self.ids.forget()
            if _in_place(group):  # it changed the cache's own state, which the store does not hold
                self.cache.clear()
            self._forget_learned()
            if isinstance(exc, Exception) and not isinstance(exc, LeaseLostError) and not self._holds_lease():
                raise LeaseLostError(LOST) from exc
            raise
        # Committed: only now may the cache, the id counters, the learner's save flags and the metrics move on.
        _count(self.service.take_counts())
        self.ids.committed(ids)
        if keep:
            self.cache.commit(ws)
        self.service.committed()
        return results

    def _prepare(
        self, group: list[WriteOp], before: concurrent.futures.Future[None] | None
    ) -> tuple[list[Result], concurrent.futures.Future[None]]:
        """The overlapped path: the group's work in a transaction of its own, while ``before`` commits.

        The group's metric counts are applied when the returned commit succeeds (dropped if it fails: the redo
        counts again).

        Waits for ``before`` (the previous group's commit) only after the work, before writing the learner's
        state and the lease confirmation; if it failed, this transaction is rolled back and :class:`_RedoError`
        raised. Otherwise the group's effects go into the cache and the id counters at once, so that the next
        group works on top of them, and its commit is handed to the committer thread (the future returned).
        If that commit fails, :meth:`_redo` forgets what the cache and the counters took.
        """
        conn = self._connections.take()
        try:
            tx = conn.begin()
            with self.ids.allocating(conn) as ids:
                self._reload_stale_learner(conn)
                results, ws, keep = self._work(conn, group)
                if before is not None:
                    try:
                        before.result()
                    except BaseException as exc:
                        raise _RedoError from exc
                    self.service.committed()  # (the previous group's)
                self.service.save_online(conn)
                if conn.dialect.name == "postgresql":  # confirmed with the commit, in its round trip
                    finish: str | None = self.lease.confirm_and_commit_sql(ids.start, ids.now)
                else:
                    finish = None
                    self.lease.confirm_with_ids(conn, ids.start, ids.now)
        except BaseException:
            conn.close()  # (rolls the transaction back)
            self.service.take_counts()
            self.service.rolled_back()
            # Not reloaded here: the group before may still be committing, and what the learner took from it is
            # not in the store yet. _overlapped sees that commit through and then _redo forgets this group's part
            # (and clears the cache, which a group worked on in place has changed).
            raise
        self.ids.committed(ids)
        if keep:
            self.cache.commit(ws)
        counts = self.service.take_counts()
        commit = self._committer.submit(self._connections.commit, conn, _Confirming(conn, tx, finish))
        commit.add_done_callback(lambda done: None if done.exception() is not None else _count(counts))
        return results, commit

    def _redo(self, group: list[WriteOp]) -> list[Result]:
        """Run a group again, without overlap, after a failed overlapped transaction.

        What the failed transactions put into the cache, the id counters and the online learner is forgotten
        first: the cache is reloaded from the store as needed, the counters read again, the learner takes the
        state the store holds (no commit is in flight here: the caller saw the one before through).
        """
        self.cache.clear()
        self.ids.forget()
        self.service.rolled_back()
        self._forget_learned()
        return self._run(group)

    def _forget_learned(self) -> None:
        """After a rollback: the learner takes the state the store holds, so that the requests' next run (the
        redo, or the client's retry after an error) does not teach it the same things twice. If the store cannot
        be read now, the next transaction reloads it first (:meth:`_reload_stale_learner`)."""
        if self.service.online is None:
            return
        self._learner_stale = True
        try:
            with self.engine.connect() as conn:
                self._reload_stale_learner(conn)
        except Exception:  # the store is failing too; the next transaction tries again
            log.warning("the online learner could not be reloaded after a rollback; the next write reloads it")

    def _reload_stale_learner(self, conn: Connection) -> None:
        if self._learner_stale and self.service.online is not None:
            self.service.online.reload(conn)
            self._learner_stale = False

    def _holds_lease(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return self.lease.held(conn)
        except Exception:  # the store cannot tell: report the original failure
            return True

    def _work(self, conn: Connection, group: list[WriteOp]) -> tuple[list[Result], Workspace, bool]:
        """The group's effects inside ``conn``'s transaction: each request's answer, the workspace, and
        whether the cache may take it."""
        results: list[Result | None] = [None] * len(group)
        keep = True
        ids = [a for op in group for a in op.arrangement_ids(conn)]
        ws = self.cache.in_place(conn, ids) if _in_place(group) else self.cache.workspace(conn, ids)
        keyed = [(op.key, op.method, op.path, op.digest) for op in group if op.key is not None]
        stored = lookup_many(conn, keyed) if keyed else {}
        run: list[int] = []
        run_ids: set[int] = set()
        run_day: list[int | None] = [None]
        touched: set[int] = set()  # arrangements the group's earlier requests worked on
        reworked: set[int] = set()  # those of the run's arrangements among them

        def flush() -> None:
            if run:
                restore = (
                    self._in_place_restorer(ws, [group[i].body for i in run], run_day[0])
                    if ws.in_place
                    else self._restorer(conn, ws, reworked)
                )
                decided = self.service.decide_each(conn, ws, [group[i].body for i in run], restore)
                for i, res in zip(run, decided, strict=True):
                    results[i] = res if isinstance(res, Exception) else Outcome(200, answer_json(res))
                run.clear()
                run_ids.clear()
                reworked.clear()

        for i, op in enumerate(group):
            if op.key is not None and op.key in stored:
                results[i] = _replayed(stored[op.key])
            elif op.kind == "decide":
                # A run: distinct arrangements (one point each per batch), one decision day.
                day = self._day(op.body)
                if run and (op.body.arrangement_id in run_ids or day != run_day[0]):
                    flush()
                run.append(i)
                run_ids.add(op.body.arrangement_id)
                if op.body.arrangement_id in touched:
                    reworked.add(op.body.arrangement_id)
                touched.add(op.body.arrangement_id)
                run_day[0] = day
            else:
                # In arrival order: the decisions before this request are taken first.
                flush()
                ids = op.arrangement_ids(conn)
                fresh = touched.isdisjoint(ids)
                touched.update(ids)
                results[i] = self._one(conn, ws, op, alone=len(group) == 1, fresh=fresh)
                # A refused request alone in its group left its changes in the workspace: drop it.
                keep = not (len(group) == 1 and isinstance(results[i], ServiceError))
        flush()
        remember_many(
            conn,
            [
                (op.key, op.method, op.path, op.digest, StoredResponse(res.status_code, res.body))
                for op, res in zip(group, results, strict=True)
                if op.key is not None and isinstance(res, Outcome) and op.key not in stored
            ],
        )
        if time.monotonic() >= self._next_purge:
            purge(conn, dt.datetime.now(dt.UTC) - self.retention)
            self._next_purge = time.monotonic() + self.purge_every_s
        assert all(r is not None for r in results)
        return [r for r in results if r is not None], ws, keep

    def _restorer(self, conn: Connection, ws: Workspace, reworked: set[int]) -> Callable[[int], None]:
        """How to undo a refused decision point: from the cache, which holds every arrangement as it was before
        the group, or, for the few that earlier requests of the group worked on, from a copy taken now."""
        snap = ws.snapshot(reworked) if reworked else None

        def restore(aid: int) -> None:
            if snap is not None and aid in snap.info:
                ws.restore(snap.snapshot([aid]))
            else:
                ws.restore(self.cache.workspace(conn, [aid]))

        return restore

    def _in_place_restorer(
        self, ws: Workspace, reqs: list[schemas.DecisionIn], day: int | None
    ) -> Callable[[int], None]:
        """How to undo a refused decision point on the cache's own state (:meth:`ReplayCache.in_place`).

        Before its refusal a point changes only what its bookkeeping books (:meth:`DecisionOps._points`:
        the ledger's ``catch_up`` to the decision's day, a no-op for an arrangement booked through that day
        already), so a copy is taken now of the arrangements booked through an earlier day, and only those are
        put back. ``day`` is the run's decision day (``None``: its time is refused before any booking).
        """
        rp = ws.replay
        if day is None:
            at_risk: list[int] = []
        else:
            booked_day = rp.ledger.booked_day
            at_risk = [
                r.arrangement_id
                for r in reqs
                if r.arrangement_id in ws.info and booked_day[rp.row[r.arrangement_id]] < day
            ]
        snap = ws.snapshot(at_risk) if at_risk else None

        def restore(aid: int) -> None:
            if snap is not None and aid in snap.info:
                ws.restore(snap.snapshot([aid]))

        return restore

    def _one(self, conn: Connection, ws: Workspace, op: WriteOp, alone: bool, fresh: bool) -> Result:
        """A registration, an event or a batch of decisions: all or nothing, refused without side effects.

        A refused request's changes to the workspace are undone: alone in its group, the workspace is dropped;
        on arrangements no earlier request of the group touched (``fresh``), their state is taken again from
        the cache (or the store); otherwise from a copy taken before.
        """
        ids = op.arrangement_ids(conn)
        snap = ws.snapshot(ids) if not (alone or fresh) else None
        try:
            model: BaseModel
            if op.apply is not None:
                return op.apply(conn, ws, op.body)
            if op.kind == "register":
                model, created = self.service.register(conn, ws, op.body)
                return Outcome(201 if created else 200, model.model_dump_json())
            if op.kind == "event":
                model = self.service.record(conn, ws, op.body)
                return Outcome(200, model.model_dump_json())
            if op.kind == "clock":
                model = self.service.tick(conn, ws, op.body)
                return Outcome(200, model.model_dump_json())
            return Outcome(200, batch_json(self.service.decide(conn, ws, op.body.decisions)))
        except ServiceError as exc:
            if snap is not None:
                ws.restore(snap)
            elif not alone:
                ws.restore(self.cache.workspace(conn, ids))
            return exc

    def _day(self, body: schemas.DecisionIn) -> int | None:
        try:
            return math.floor(self.service.time_of(body))
        except ServiceError:
            return None  # decide_each refuses it with its own error


def _in_place(group: list[WriteOp]) -> bool:
    """Whether a group works on the cache's own state (:meth:`ReplayCache.in_place`): single decisions only,
    which change registered arrangements and are refused, each on its own, before changing more than their
    bookkeeping (see :meth:`Writer._in_place_restorer`)."""
    return all(op.kind == "decide" for op in group)


#: Requests that may be worked on while the previous group commits: decisions read nothing from the store
#: but what the cache holds (the arrangements the previous group touched are there, with its effects), and
#: their writes (inserts; updates of rows by key, which wait for the previous commit's row locks) need nothing
#: the previous group's transaction has not shown them.
_OVERLAPPING = frozenset({"decide", "batch"})


class _RedoError(Exception):
    """The previous group's commit failed; the group working on top of it was rolled back."""


def _count(counts: list[tuple[Any, float]]) -> None:
    """Apply a committed transaction's metric counts (:meth:`serving.service.DecisionService.take_counts`)."""
    for counter, n in counts:
        counter.inc(n)


@dataclass
class _InFlight:
    """An overlapped group whose commit is under way: its answers, given once ``commit`` has returned."""

    group: list[WriteOp]
    results: list[Result]
    commit: concurrent.futures.Future[None]


class _HeldConnections:
    """The overlapped path's connections, kept open between groups instead of checked out of the pool each time.

    A checkout costs the pool's pre-ping (a round trip to PostgreSQL) and SQLAlchemy's set-up of a connection,
    once per group. A connection whose commit succeeded is kept here and used again if it was given back less
    than ``fresh_s`` ago; an older one is closed and a checked-out (pinged) one used instead, so that one the
    database server dropped while idle is not met by a group. A connection whose group failed is closed (the
    pool invalidates a broken one); if a kept connection broke all the same, its group fails before its
    commit, is rolled back and run again on the serial path (:meth:`Writer._redo`), as any failed group.
    """

    def __init__(self, engine: Engine, fresh_s: float = 5.0) -> None:
        self.engine, self.fresh_s = engine, fresh_s
        self._kept: collections.deque[tuple[Connection, float]] = collections.deque()  # (appended by the committer)

    def take(self) -> Connection:
        """A connection for a group's transaction (on the writer thread)."""
        while self._kept:
            conn, since = self._kept.popleft()
            if time.monotonic() - since < self.fresh_s and not conn.invalidated and not conn.closed:
                return conn
            conn.close()
        return self.engine.connect()

    def commit(self, conn: Connection, tx: _Confirming) -> None:
        """Commit a group's transaction (on the committer thread); keep its connection if it succeeded."""
        try:
            _commit(conn, tx)
        except BaseException:
            conn.close()
            raise
        self._kept.append((conn, time.monotonic()))

    def close(self) -> None:
        """Give every kept connection back to the pool."""
        while self._kept:
            self._kept.popleft()[0].close()


@dataclass
class _Confirming:
    """An overlapped group's transaction; on PostgreSQL its commit carries the lease's confirmation.

    Attributes:
        conn: Its connection.
        tx: The transaction.
        finish: The lease's confirmation and the ``COMMIT`` as one simple query
            (:meth:`serving.lease.WriterLease.confirm_and_commit_sql`), or ``None``: confirmed already.
    """

    conn: Connection
    tx: sa.RootTransaction
    finish: str | None

    def commit(self) -> None:
        """Confirm and commit (one round trip); if the confirmation fails, nothing is committed and the error
        is the commit's (the group is run again, :meth:`Writer._redo`, where a lost lease is told apart)."""
        if self.finish is not None:
            confirm_and_commit(self.conn, self.finish)
        self.tx.commit()  # (after finish: SQLAlchemy's bookkeeping; the driver finds nothing left to commit)

    def rollback(self) -> None:
        """Roll the transaction back (nothing of it is committed)."""
        self.tx.rollback()


def _commit(conn: Connection, tx: _Confirming) -> None:
    """Commit an overlapped group's transaction (on the committer thread; its connection stays open)."""
    tx.commit()


def _replayed(stored: StoredResponse | IdempotencyConflictError) -> Result:
    if isinstance(stored, IdempotencyConflictError):
        return stored
    return Outcome(stored.status_code, stored.body)
