"""Decisions at live decision points: store -> context (the ledger's state) -> rules -> policy -> ledger -> store.

A part of :class:`serving.service.DecisionService` (a mixin). For each decision point the arrangement is
caught up to the decision's day (the ledger's bookkeeping), its context is built with the code that builds a
simulated one (:meth:`regsim.replay.LogReplay.contexts_at`), the policy decides, and the ledger applies the
decisions (:meth:`regsim.ledger.Ledger.decide`: the decision logged, the plan re-planned, the messages
scheduled), exactly as in simulation. Single decisions that arrive together are decided as one batch
(:meth:`DecisionOps.decide_each`: one context build, one policy call, bulk inserts), each accepted or refused on
its own.
"""

from __future__ import annotations

import math
import time as _time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray

from regsim.config import CHANNELS, WorldConfig
from regsim.decision import PART_NAMES, DecisionKind, MessagePurpose
from regsim.eventlog import EventType
from regsim.replay import LogReplay, morning_booking_day
from serving import db, schemas
from serving.cache import ArrangementInfo, Workspace
from serving.late_events import mark_arrived
from serving.metrics import Metrics
from serving.online import OnlineLearner
from serving.policies import PolicyRunner, ShadowResult
from serving.refusals import ConflictError, InvalidFieldError, ServiceError
from serving.responses import DecisionAnswer, ResponseParts
from serving.store import execute_many, insert_events, next_decision_and_message_ids, pipelined
from serving.store_rows import rows_of

__all__ = ["DecisionOps"]

_CHANNEL_NAMES = ("none", *CHANNELS)
_PURPOSE_NAMES = tuple(p.name.lower() for p in MessagePurpose)
_INSERT_MESSAGES = sa.insert(db.messages)
_DECISION_EVENTS = frozenset({"decision"})


@dataclass
class _Point:
    """A validated decision point: the request, its time, kind and installment, and the bookings before it."""

    index: int
    req: schemas.DecisionIn
    time: float
    kind: DecisionKind
    installment: int
    booked: list[dict[str, Any]] = field(default_factory=list)


class DecisionOps:
    """The deciding part of the service (see the module docstring)."""

    config: WorldConfig
    runner: PolicyRunner
    metrics: Metrics
    online: OnlineLearner | None
    max_batch: int
    dirty: bool
    learned: bool
    _responses: ResponseParts

    # (defined by the service)
    def time_of(self, req: schemas._Timed, where: tuple[str | int, ...] = ("body",)) -> float:
        raise NotImplementedError

    def _info(self, ws: Workspace, arrangement_id: int) -> ArrangementInfo:
        raise NotImplementedError

    def _check_time(self, info: ArrangementInfo, t: float, field: str = "time") -> None:
        raise NotImplementedError

    def _touch(self, conn: sa.Connection, ws: Workspace, ids: Sequence[int], times: Sequence[float]) -> None:
        raise NotImplementedError

    def _default_installment(self, ws: Workspace, aid: int, kind: DecisionKind) -> int:
        s, row = ws.replay.ledger.sched, ws.replay.row[aid]
        if kind == DecisionKind.PLAN_CREATED:
            return 0
        if kind == DecisionKind.PRE_DUE:
            return int(s.came_due[row])
        if kind == DecisionKind.PAYMENT_RECEIVED:
            return max(int(s.first_open[row]) - 1, 0)
        return int(s.first_open[row])

    def _points(
        self, ws: Workspace, reqs: Sequence[schemas.DecisionIn], single: bool
    ) -> tuple[list[_Point], dict[int, ServiceError]]:
        """Validate decision points of distinct arrangements and book what time implies before each (changes
        ``ws``); returns the valid points in order and the refusal of each invalid one by its index.

        Each point is checked on its own (its time, its arrangement, then, once booked, the arrangement's status
        and the installment), exactly as if the points came one by one; the bookkeeping of all of them is one
        vectorised :meth:`regsim.ledger.Ledger.catch_up` (the arrangements are distinct, so their bookings do
        not interact), and each point keeps the rows booked for its own arrangement.
        """
        timed: list[tuple[int, schemas.DecisionIn, float, DecisionKind]] = []
        errors: dict[int, ServiceError] = {}
        for i, r in enumerate(reqs):
            try:
                t = self.time_of(r, ("body",) if single else ("body", "decisions", i))
                info = self._info(ws, r.arrangement_id)
                self._check_time(info, t)
            except ServiceError as exc:
                errors[i] = exc
                continue
            timed.append((i, r, t, DecisionKind[r.kind.upper()]))
        booked = self._book_many(ws, [r.arrangement_id for _, r, _, _ in timed], [t for _, _, t, _ in timed])
        points: list[_Point] = []
        for i, r, t, kind in timed:
            aid = r.arrangement_id
            status = ws.status_of(aid)
            want = "offered" if kind == DecisionKind.PLAN_CREATED else "active"
            if status != want:
                errors[i] = ConflictError(
                    f"arrangement {aid} is {status}: a {r.kind} decision needs an {want} arrangement"
                )
                continue
            n = int(ws.replay.ledger.sched.n[ws.replay.row[aid]])
            inst = self._default_installment(ws, aid, kind) if r.installment is None else r.installment
            if not 0 <= inst < n:
                # The plan's length is the arrangement's state, which the schema cannot know: a conflict with it.
                where = "" if single else f"decisions.{i}."
                errors[i] = ConflictError(
                    f"{where}installment: {inst} is not an installment of the plan of arrangement {aid} (0..{n - 1})"
                )
                continue
            points.append(_Point(i, r, t, kind, inst, booked.get(aid, [])))
        return points, errors

    def _book_many(self, ws: Workspace, ids: Sequence[int], times: Sequence[float]) -> dict[int, list[dict[str, Any]]]:
        """The ledger's bookkeeping of distinct arrangements, each up to a decision at its time; rows by id."""
        if not ids:
            return {}
        rp = ws.replay
        rows = np.array([rp.row[a] for a in ids], dtype=np.int64)
        days = np.array([morning_booking_day(EventType.DECISION, t) for t in times], dtype=np.int64)
        rp.ledger.catch_up(rows, days)
        by_id: dict[int, list[dict[str, Any]]] = {}
        for row in rows_of(rp).take():
            by_id.setdefault(row["arrangement_id"], []).append(row)
        return by_id

    def _check_batch(self, reqs: Sequence[schemas.DecisionIn]) -> None:
        if len(reqs) > self.max_batch:
            raise InvalidFieldError(
                ("body", "decisions"), f"decisions: at most {self.max_batch} per batch (REGSIM_MAX_BATCH)", len(reqs)
            )
        seen: dict[int, int] = {}
        for i, r in enumerate(reqs):
            if r.arrangement_id in seen:
                # Each item is valid; two together conflict (JSON Schema cannot say "unique by one field").
                raise ConflictError(
                    f"decisions.{i}.arrangement_id: arrangement {r.arrangement_id} is already decided at "
                    f"decisions.{seen[r.arrangement_id]}; one decision point per arrangement per batch"
                )
            seen[r.arrangement_id] = i

    def decide(self, conn: sa.Connection, ws: Workspace, reqs: Sequence[schemas.DecisionIn]) -> list[DecisionAnswer]:
        """Decide a batch of decision points with one policy call, and log everything (uncommitted).

        The batch is all or nothing: the first invalid point refuses it (``ws`` may then be changed; the caller
        restores it).
        """
        self._check_batch(reqs)
        points, errors = self._points(ws, reqs, single=False)
        if errors:
            raise errors[min(errors)]
        return self._decide_points(conn, ws, points)

    def decide_each(
        self,
        conn: sa.Connection,
        ws: Workspace,
        reqs: Sequence[schemas.DecisionIn],
        restore: Callable[[int], None] | None = None,
    ) -> list[DecisionAnswer | ServiceError]:
        """Decide single decision points of distinct arrangements as one batch, each accepted or refused alone.

        This is how concurrent ``POST /v1/decisions`` requests share one context build, one policy call and
        one set of inserts; a refused point leaves ``ws`` as it was and gets its error.

        Args:
            conn: The transaction.
            ws: The workspace holding the arrangements.
            reqs: The decision points (distinct arrangements).
            restore: Puts an arrangement's state in ``ws`` back as it was before this call (after a refusal).
                Without it, a copy of every arrangement's state is taken first (refusals are rare, so a caller
                that can restore from elsewhere saves that copy).
        """
        if restore is None:
            snap = ws.snapshot(r.arrangement_id for r in reqs)

            def restore(aid: int) -> None:
                ws.restore(snap.snapshot([aid]))

        points, errors = self._points(ws, reqs, single=True)
        for i in errors:
            # A refused point's arrangement goes back as it was; what its bookkeeping wrote is not stored (the
            # rows booked for it stay out of every point's rows).
            restore(reqs[i].arrangement_id)
        decided = iter(self._decide_points(conn, ws, points) if points else [])
        return [errors[i] if i in errors else next(decided) for i in range(len(reqs))]

    def _decide_points(self, conn: sa.Connection, ws: Workspace, points: list[_Point]) -> list[DecisionAnswer]:
        n = len(points)
        rp = ws.replay
        ids = [p.req.arrangement_id for p in points]
        times = [p.time for p in points]
        days = [math.floor(t) for t in times]
        batch = rp.contexts_at(ids, [int(p.kind) for p in points], [p.installment for p in points], days)

        learned = self.online is not None and self.online.advance(max(times))
        if learned:
            self.count(self.metrics.updates)
            self.learned = True
        started = _time.perf_counter()
        result = self.runner.decide(batch)
        self.metrics.policy_latency.observe(_time.perf_counter() - started)
        shadow = self.runner.decide_shadow(batch)

        acts, prop = result.decisions.actions, result.decisions.propensity
        contact = acts[:, 0] > 0
        decision_ids, contact_ids = next_decision_and_message_ids(conn, n, int(contact.sum()))
        message_ids = np.full(n, -1, dtype=np.int64)
        message_ids[contact] = contact_ids
        send = self._send_times(rp, days, acts, contact)
        _, masked_names, masked_plain = self._responses.masked(batch)
        sink = rows_of(rp)
        booked = [r for p in points for r in p.booked]
        rows_idx = np.array([rp.row[a] for a in ids], dtype=np.int64)
        positions = rp.ledger.decide(
            rows_idx,
            np.asarray(times, dtype=np.float64),
            np.asarray(days, dtype=np.int64),
            decision_ids=np.asarray(decision_ids, dtype=np.int64),
            kinds=np.array([int(p.kind) for p in points], dtype=np.int64),
            installments=np.array([p.installment for p in points], dtype=np.int64),
            actions=acts,
            propensity=prop,
            send_time=send,
            masked_rules=masked_names,
            policy=result.policy,
            policy_version=result.version,
            message_ids=message_ids,
        )
        decided = sink.take()
        mark_arrived(decided, _DECISION_EVENTS, _time.time())
        rows = booked + decided
        book = rp.ledger.messages
        messages = [
            {
                "message_id": int(book.message_id[k]),
                "arrangement_id": int(rp.ids[book.row[k]]),
                "decision_id": int(book.decision[k]),
                "installment": int(book.installment[k]),
                "channel": _CHANNEL_NAMES[int(book.channel[k])],
                "purpose": _PURPOSE_NAMES[int(book.purpose[k])],
                "send_time": float(book.send_time[k]),
                "state": "pending",
                "state_time": None,
            }
            for k in positions.tolist()
        ]
        fallback = result.fallback_reason is not None
        acts_list, prop_list, send_list = acts.tolist(), prop.tolist(), send.tolist()
        out: list[DecisionAnswer] = []
        for i, p in enumerate(points):
            t, a = p.time, acts_list[i]
            sent = send_list[i] if contact[i] else None
            # Plain values, serialised as they are (serving.responses): no model is built per decision.
            out.append(
                {
                    "decision_id": decision_ids[i],
                    "arrangement_id": p.req.arrangement_id,
                    "kind": p.req.kind,
                    "installment": p.installment,
                    "time": t,
                    "at": self.at_of(t),
                    "action": self._responses.action_plain(a),
                    "message_id": int(message_ids[i]) if contact[i] else None,
                    "send_time": sent,
                    "send_at": None if sent is None else self.at_of(sent),
                    "masked_rules": [m for m in masked_names[i].split(",") if m],
                    "masked": masked_plain[i],
                    "policy": result.policy,
                    "policy_version": result.version,
                    "propensity": prop_list[i],
                    "fallback": fallback,
                }
            )
        counts = Counter((p.req.kind, _CHANNEL_NAMES[acts_list[i][0]]) for i, p in enumerate(points))
        for (kind_name, channel), k in counts.items():
            self.count(self.metrics.decisions.labels(kind_name, channel, result.policy), k)
        with pipelined(conn):  # (on PostgreSQL: one round trip for the three)
            insert_events(conn, rows)
            execute_many(conn, _INSERT_MESSAGES, messages)
            self._touch(conn, ws, ids, times)
        if result.fallback_reason is not None:
            self.count(self.metrics.fallbacks.labels(result.fallback_reason), n)
            conn.execute(
                sa.insert(db.fallbacks),
                [
                    {
                        "decision_id": decision_ids[i],
                        "arrangement_id": ids[i],
                        "time": times[i],
                        "active_policy": self.runner.active.name,
                        "reason": result.fallback_reason,
                        "detail": result.detail,
                    }
                    for i in range(n)
                ],
            )
        if shadow is not None:
            self._log_shadow(conn, shadow, decision_ids, ids, times, acts)
        if self.online is not None:
            # All decisions of a batch share the batch's latest day (the world decides one day at a time).
            self.online.add_decisions(decision_ids, float(math.floor(max(times))), batch, acts, prop)
            self.online.add_events(rows)
            self.dirty = True
        return out

    def at_of(self, t: float) -> Any:
        raise NotImplementedError

    def count(self, counter: Any, n: float = 1.0) -> None:
        raise NotImplementedError

    def _send_times(
        self, rp: LogReplay, days: list[int], acts: NDArray[np.int64], contact: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        """When each contacting decision's message goes out (NaN without contact), per decision day at once."""
        send = np.full(len(days), np.nan)
        if not contact.any():
            return send
        day_arr = np.asarray(days, dtype=np.int64)
        for d in np.unique(day_arr[contact]).tolist():
            at = np.flatnonzero(contact & (day_arr == d))
            send[at] = self.runner.rules.send_time(d, int(rp.calendar.weekday[d]), acts[at, 1])
        return send

    def _log_shadow(
        self,
        conn: sa.Connection,
        shadow: ShadowResult,
        decision_ids: list[int],
        ids: list[int],
        times: list[float],
        acts: NDArray[np.int64],
    ) -> None:
        policy = self.runner.shadow
        assert policy is not None
        rows = []
        for i in range(len(ids)):
            row: dict[str, Any] = {
                "decision_id": decision_ids[i],
                "arrangement_id": ids[i],
                "time": times[i],
                "policy": policy.name,
                "policy_version": policy.version,
                "error": shadow.error,
            }
            if shadow.actions is not None:
                a = shadow.actions[i]
                row.update({f"a_{p}": int(a[k]) for k, p in enumerate(PART_NAMES)})
                assert shadow.propensity is not None
                row["propensity"] = float(shadow.propensity[i])
                row["agrees"] = bool((a == acts[i]).all())
                self.count(self.metrics.shadow.labels("agree" if row["agrees"] else "disagree"))
            else:
                self.count(self.metrics.shadow.labels("error"))
            rows.append(row)
        conn.execute(sa.insert(db.shadow_decisions), rows)
