"""The decision service: store -> context (``regsim.replay``) -> rules -> policy -> commit; events and status sync.

For every request the service reads the events of the arrangements concerned (in log order) and replays them
with :class:`regsim.replay.LogReplay`, the code that rebuilds a simulated log's contexts, so the context a
policy sees here equals the one it saw in simulation. It then books what the passage of time implies (the
world's morning bookkeeping: installments falling due, installments missed), decides or applies the event, and
writes everything in the simulator's event-log schema, inside the caller's transaction.

What the service derives itself, as the world does: ``installment_due`` and ``installment_missed`` (from the
plan and the clock), ``installment_paid`` and ``completed`` (from payments), the re-plans a decision implies
(``due_day_set``, ``deferral``, ``reduction``, logged with the plan as it stands afterwards), and the
cancellation of pending messages: a payment cancels every pending reminder for an installment it has paid,
completion, breakdown and referral cancel every pending message. What production reports: payments,
message events (by the ``message_id`` the decision returned), opt-outs, breakdowns and referrals; a reported
missed installment is checked against the plan.

Every write method works on a :class:`serving.cache.Workspace` (the replayed state of the arrangements of the
transaction, from the write-through cache) and must be called from the app's single writer
(:mod:`serving.writer`), which commits and then hands the workspace back to the cache. Single decisions that
arrive together are decided as one batch by :meth:`DecisionService.decide_each` (one context build, one policy
call, bulk inserts), each accepted or refused on its own.
"""

from __future__ import annotations

import datetime as dt
import math
import time as _time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from regsim.arrangement import ArrangementStatus
from regsim.config import CHANNELS, WorldConfig
from regsim.decision import PART_NAMES, ContextBatch, DecisionKind
from regsim.eventlog import EventType
from regsim.replay import LogReplay
from serving import db, schemas
from serving.cache import ArrangementInfo, Workspace, load_workspace
from serving.metrics import Metrics
from serving.online import OnlineLearner
from serving.policies import PolicyRunner
from serving.store import event_row, execute_many, insert_events, load_events, next_ids

__all__ = ["ConflictError", "DecisionService", "InvalidFieldError", "NotFoundError", "ServiceError", "message_purpose"]

_CHANNEL_NAMES = ("none", *CHANNELS)
_REMINDER_KINDS = (DecisionKind.PRE_DUE, DecisionKind.MISSED, DecisionKind.FOLLOW_UP)
_STATUS = {s: s.name.lower() for s in ArrangementStatus}
_OPEN = ("offered", "active")


class ServiceError(Exception):
    """A request the service refuses; the app maps the subclass to an HTTP status."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(ServiceError):
    """An arrangement or message that is not in the store (404)."""


class ConflictError(ServiceError):
    """A request that contradicts the arrangement's state (409)."""


class InvalidFieldError(ServiceError):
    """A field whose value the state makes invalid (422, naming the field)."""

    def __init__(self, loc: Sequence[str | int], detail: str, value: Any = None) -> None:
        super().__init__(detail)
        self.loc = tuple(loc)
        self.value = value


def message_purpose(kind: DecisionKind) -> str:
    """What a decision's message is for: reminders are the messages a payment cancels (as in the world)."""
    if kind in _REMINDER_KINDS:
        return "reminder"
    return "confirmation" if kind == DecisionKind.PLAN_CREATED else "thank_you"


@dataclass
class _Point:
    """A validated decision point: the request, its time, kind and installment, and the bookings before it."""

    index: int
    req: schemas.DecisionIn
    time: float
    kind: DecisionKind
    installment: int
    booked: list[dict[str, Any]] = field(default_factory=list)


#: Bulk "the arrangement's latest event" update (executemany): the bind names must differ from the columns'.
_TOUCH = (
    sa.update(db.arrangements)
    .where(db.arrangements.c.arrangement_id == sa.bindparam("b_id"), db.arrangements.c.last_time <= sa.bindparam("b_t"))
    .values(last_time=sa.bindparam("b_t"), status=sa.bindparam("b_status"))
)
_INSERT_MESSAGES = sa.insert(db.messages)


class DecisionService:
    """Decisions and events on the store.

    Args:
        config: The world config (rules, decision options, calendar start = the epoch).
        runner: The policies.
        metrics: The app's metrics.
        online: The online learner of the active policy, or ``None`` for a fixed policy.
        max_batch: Most decision points in one batch.
    """

    def __init__(
        self,
        config: WorldConfig,
        runner: PolicyRunner,
        metrics: Metrics,
        online: OnlineLearner | None,
        max_batch: int,
    ) -> None:
        self.config = config
        self.epoch = config.simulation.start_date
        self.runner = runner
        self.metrics = metrics
        self.online = online
        self.max_batch = max_batch
        self._epoch_dt = dt.datetime.combine(self.epoch, dt.time(), tzinfo=dt.UTC)
        self._capacity = max(config.rules.max_total_installments, config.arrangements.max_installments)
        self._channel_cost = [0.0, *(c.cost_eur for c in config.channels.ordered())]
        # The online learner's state to write at the end of the transaction: ``dirty`` (anything changed) and
        # ``learned`` (the policy updated: its large statistics too). Cleared only once a save has committed.
        self.dirty = False
        self.learned = False
        self._saving = False  # a save is in the open transaction
        # Shares its calendar, action space and rules with the replays built for reads.
        self.template = LogReplay(config, [], int(schemas.MAX_TIME_DAYS) + 1)
        self._responses = _Responses(self.template.space)

    # ======================================================================================================
    # The online learner's state (one save per transaction)
    # ======================================================================================================
    def save_online(self, conn: sa.Connection) -> None:
        """Write the online learner's state if the transaction's requests changed it (inside the transaction)."""
        if self.online is not None and self.dirty:
            self.online.save(conn, self.learned)
            self._saving = True

    def committed(self) -> None:
        """The transaction that :meth:`save_online` wrote into has committed: the state is in the store."""
        if self._saving:
            self.dirty = self.learned = False
            self._saving = False

    def rolled_back(self) -> None:
        """The transaction was rolled back: what :meth:`save_online` wrote is not stored; write it all again."""
        if self._saving and self.online is not None:
            self.online.forget_saved()
        self._saving = False

    # ======================================================================================================
    # Time
    # ======================================================================================================
    def time_of(self, req: schemas._Timed, where: tuple[str | int, ...] = ("body",)) -> float:
        """A request's time in days since the epoch (``at`` converted; naive timestamps are UTC).

        ``where`` is the location of the request in the body (``("body", "decisions", i)`` in a batch), so that
        an error names the field where it stands.
        """
        if req.time is not None:
            return float(req.time)
        assert req.at is not None
        at = req.at if req.at.tzinfo is not None else req.at.replace(tzinfo=dt.UTC)
        t = (at - self._epoch_dt).total_seconds() / 86_400.0
        if not 0.0 <= t <= schemas.MAX_TIME_DAYS:
            raise InvalidFieldError(
                (*where, "at"),
                f"at: {req.at.isoformat()} is before the epoch {self.epoch} or too late",
                req.at.isoformat(),
            )
        return t

    def at_of(self, t: float) -> dt.datetime:
        """The timestamp of a time in days since the epoch."""
        return self._epoch_dt + dt.timedelta(days=float(t))

    # ======================================================================================================
    # Replay state
    # ======================================================================================================
    def load(self, conn: sa.Connection, ids: Sequence[int], template: LogReplay) -> Workspace:
        """The state of some arrangements rebuilt from the store alone (for reads; writes use the cache)."""
        return load_workspace(conn, self.config, ids, template)

    @staticmethod
    def _info(ws: Workspace, arrangement_id: int) -> ArrangementInfo:
        info = ws.info.get(arrangement_id)
        if info is None:
            raise NotFoundError(f"arrangement {arrangement_id} is not registered (POST /v1/arrangements first)")
        return info

    def _book(self, ws: Workspace, arrangement_id: int, t: float) -> list[dict[str, Any]]:
        """The world's morning bookkeeping up to ``t``: installments that fell due or were missed, logged.

        Mirrors ``Schedules.advance_due``/``advance_missed`` as :meth:`LogReplay.catch_up` runs them, and
        feeds the rows back (the replay counts misses from the log).
        """
        rp = ws.replay
        row = rp.row[arrangement_id]
        if rp.booked_day[row] >= math.floor(t):
            return []  # booked up to that day already
        s = rp.sched
        due0, miss0 = int(s.came_due[row]), int(s.miss_ptr[row])
        rp.catch_up(row, math.floor(t))
        due1, miss1 = int(s.came_due[row]), int(s.miss_ptr[row])
        if due1 == due0 and miss1 == miss0:
            return []
        out: list[tuple[float, int, dict[str, Any]]] = []
        for j in range(due0, due1):
            out.append(
                (
                    float(s.due[row, j]),
                    0,
                    event_row(
                        EventType.INSTALLMENT_DUE,
                        float(s.due[row, j]),
                        arrangement_id,
                        installment=j,
                        amount_eur=float(s.amount[row, j]),
                    ),
                )
            )
        for j in range(max(miss0, int(s.first_open[row])), miss1):
            when = float(int(s.due[row, j]) + s.grace_days + 1)
            out.append((when, 1, event_row(EventType.INSTALLMENT_MISSED, when, arrangement_id, installment=j)))
        out.sort(key=lambda x: (x[0], x[1]))
        rows = [r for _, _, r in out]
        rp.feed_records(rows)
        return rows

    def _check_time(self, info: ArrangementInfo, t: float, field: str = "time") -> None:
        if t < info.last_time:
            raise ConflictError(
                f"{field}: {t} is before the latest event of arrangement {info.arrangement_id} "
                f"({info.last_time}); events of an arrangement must arrive in time order"
            )

    def _plan(self, ws: Workspace, arrangement_id: int) -> list[schemas.InstallmentOut]:
        rp = ws.replay
        row, s = rp.row[arrangement_id], rp.sched
        out = []
        for j in range(int(s.n[row])):
            due = int(s.due[row, j])
            paid = j < int(s.first_open[row])
            overdue = not paid and j < int(s.miss_ptr[row])
            out.append(
                schemas.InstallmentOut(
                    index=j,
                    due_time=due,
                    due_date=self.epoch + dt.timedelta(days=due),
                    amount_eur=float(s.amount[row, j]),
                    paid_eur=float(s.paid[row, j]),
                    status="paid" if paid else "overdue" if overdue else "open",
                )
            )
        return out

    def _opted_out(self, ws: Workspace, arrangement_id: int) -> list[str]:
        flags = ws.replay.history.opted_out[ws.replay.row[arrangement_id]]
        return [c for c, f in zip(CHANNELS, flags.tolist(), strict=True) if f]

    @staticmethod
    def _moved(info: ArrangementInfo, t: float, status: str | None = None) -> dict[str, Any] | None:
        """Advance an arrangement's latest event time (and status) as the store's conditional update does."""
        if t < info.last_time or (t == info.last_time and status in (None, info.status)):
            return None  # the row would not change: no write
        info.last_time = t
        if status is not None:
            info.status = status
        return {"b_id": info.arrangement_id, "b_t": t, "b_status": info.status}

    def _touch(self, conn: sa.Connection, touched: list[dict[str, Any] | None]) -> None:
        params = [p for p in touched if p is not None]
        execute_many(conn, _TOUCH, params)

    # ======================================================================================================
    # Arrangements
    # ======================================================================================================
    def register(
        self, conn: sa.Connection, ws: Workspace, req: schemas.ArrangementIn
    ) -> tuple[schemas.ArrangementOut, bool]:
        """Register an arrangement, or add opt-outs to a registered one; returns the response and "created"."""
        t = self.time_of(req)
        if req.n_installments > self._capacity:
            raise InvalidFieldError(
                ("body", "n_installments"),
                f"n_installments: at most {self._capacity} installments (the rules' plan length cap), "
                f"got {req.n_installments}",
                req.n_installments,
            )
        aid = req.arrangement_id
        prior_dom = -1 if req.prior_pay_dom is None else req.prior_pay_dom
        existing = ws.info.get(aid)
        if existing is None:
            info = ArrangementInfo(
                arrangement_id=aid,
                debt_eur=req.debt_eur,
                n_installments=req.n_installments,
                due_day=req.due_day,
                created_time=t,
                prior_payments=req.prior_payments,
                prior_late_share=req.prior_late_share,
                prior_pay_dom=prior_dom,
                status="offered",
                last_time=t,
            )
            conn.execute(sa.insert(db.arrangements).values(**vars(info)))
            created = event_row(
                EventType.ARRANGEMENT_CREATED,
                t,
                aid,
                amount_eur=req.debt_eur,
                n_installments=req.n_installments,
                due_day=req.due_day,
                prior_payments=req.prior_payments,
                prior_late_share=req.prior_late_share,
                prior_pay_dom=prior_dom,
            )
            ws.replay.feed_records([created])
            created["installment_eur"] = float(ws.replay.sched.amount[ws.replay.row[aid], 0])
            rows = [created]
            rows += [event_row(EventType.OPT_OUT, t, aid, channel=c) for c in dict.fromkeys(req.opted_out)]
            ws.replay.feed_records(rows[1:])
            insert_events(conn, rows)
            ws.info[aid] = info
            return (
                schemas.ArrangementOut(
                    arrangement_id=aid,
                    created=True,
                    status="offered",
                    opted_out=self._opted_out(ws, aid),
                    installments=self._plan(ws, aid),
                ),
                True,
            )
        agreed = {
            "debt_eur": existing.debt_eur,
            "n_installments": existing.n_installments,
            "due_day": existing.due_day,
            "prior_payments": existing.prior_payments,
            "prior_late_share": existing.prior_late_share,
            "prior_pay_dom": existing.prior_pay_dom,
        }
        given = {
            "debt_eur": req.debt_eur,
            "n_installments": req.n_installments,
            "due_day": req.due_day,
            "prior_payments": req.prior_payments,
            "prior_late_share": req.prior_late_share,
            "prior_pay_dom": prior_dom,
        }
        changed = [k for k in agreed if agreed[k] != given[k]]
        if changed:
            raise ConflictError(
                f"arrangement {aid} is registered with {changed[0]}={agreed[changed[0]]!r}, not {given[changed[0]]!r}; "
                "the plan changes only through decisions, an update may only add opt-outs"
            )
        new = [c for c in dict.fromkeys(req.opted_out) if c not in self._opted_out(ws, aid)]
        if new:
            self._check_time(existing, t)
            rows = self._book(ws, aid, t) if existing.status == "active" else []
            opt = [event_row(EventType.OPT_OUT, t, aid, channel=c) for c in new]
            ws.replay.feed_records(opt)
            insert_events(conn, rows + opt)
            self._touch(conn, [self._moved(existing, t)])
        return (
            schemas.ArrangementOut(
                arrangement_id=aid,
                created=False,
                status=existing.status,
                opted_out=self._opted_out(ws, aid),
                installments=self._plan(ws, aid),
            ),
            False,
        )

    # ======================================================================================================
    # Decisions
    # ======================================================================================================
    def _default_installment(self, ws: Workspace, aid: int, kind: DecisionKind) -> int:
        s, row = ws.replay.sched, ws.replay.row[aid]
        if kind == DecisionKind.PLAN_CREATED:
            return 0
        if kind == DecisionKind.PRE_DUE:
            return int(s.came_due[row])
        if kind == DecisionKind.PAYMENT_RECEIVED:
            return max(int(s.first_open[row]) - 1, 0)
        return int(s.first_open[row])

    def _point(self, ws: Workspace, i: int, r: schemas.DecisionIn, single: bool) -> _Point:
        """Validate a decision point and book what time implies before it (changes ``ws``)."""
        where: tuple[str | int, ...] = ("body",) if single else ("body", "decisions", i)
        t = self.time_of(r, where)
        info = self._info(ws, r.arrangement_id)
        kind = DecisionKind[r.kind.upper()]
        self._check_time(info, t)
        want = "offered" if kind == DecisionKind.PLAN_CREATED else "active"
        if info.status != want:
            raise ConflictError(
                f"arrangement {r.arrangement_id} is {info.status}: a {r.kind} decision needs an {want} arrangement"
            )
        booked = self._book(ws, r.arrangement_id, t)
        n = int(ws.replay.sched.n[ws.replay.row[r.arrangement_id]])
        inst = self._default_installment(ws, r.arrangement_id, kind) if r.installment is None else r.installment
        if not 0 <= inst < n:
            raise InvalidFieldError(
                (*where, "installment"), f"installment: {inst} is not an installment of the plan (0..{n - 1})", inst
            )
        return _Point(i, r, t, kind, inst, booked)

    def _check_batch(self, reqs: Sequence[schemas.DecisionIn]) -> None:
        if len(reqs) > self.max_batch:
            raise InvalidFieldError(
                ("body", "decisions"), f"decisions: at most {self.max_batch} per batch (REGSIM_MAX_BATCH)", len(reqs)
            )
        seen: dict[int, int] = {}
        for i, r in enumerate(reqs):
            if r.arrangement_id in seen:
                raise InvalidFieldError(
                    ("body", "decisions", i, "arrangement_id"),
                    f"decisions[{i}].arrangement_id: arrangement {r.arrangement_id} is already decided at "
                    f"decisions[{seen[r.arrangement_id]}]; one decision point per arrangement per batch",
                    r.arrangement_id,
                )
            seen[r.arrangement_id] = i

    def decide(
        self, conn: sa.Connection, ws: Workspace, reqs: Sequence[schemas.DecisionIn]
    ) -> list[schemas.DecisionOut]:
        """Decide a batch of decision points with one policy call, and log everything (uncommitted).

        The batch is all or nothing: the first invalid point refuses it (``ws`` may then be changed; the caller
        restores it).
        """
        self._check_batch(reqs)
        points = [self._point(ws, i, r, single=False) for i, r in enumerate(reqs)]
        return self._decide_points(conn, ws, points)

    def decide_each(
        self,
        conn: sa.Connection,
        ws: Workspace,
        reqs: Sequence[schemas.DecisionIn],
        restore: Callable[[int], None] | None = None,
    ) -> list[schemas.DecisionOut | ServiceError]:
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
        points: list[_Point] = []
        errors: dict[int, ServiceError] = {}
        if restore is None:
            snap = ws.snapshot(r.arrangement_id for r in reqs)

            def restore(aid: int) -> None:
                ws.restore(snap.snapshot([aid]))

        for i, r in enumerate(reqs):
            try:
                points.append(self._point(ws, i, r, single=True))
            except ServiceError as exc:
                restore(r.arrangement_id)
                errors[i] = exc
        decided = iter(self._decide_points(conn, ws, points) if points else [])
        return [errors[i] if i in errors else next(decided) for i in range(len(reqs))]

    def _decide_points(self, conn: sa.Connection, ws: Workspace, points: list[_Point]) -> list[schemas.DecisionOut]:
        n = len(points)
        rp = ws.replay
        ids = [p.req.arrangement_id for p in points]
        times = [p.time for p in points]
        days = [math.floor(t) for t in times]
        batch = rp.contexts_at(ids, [int(p.kind) for p in points], [p.installment for p in points], days)

        learned = self.online is not None and self.online.advance(max(times))
        if learned:
            self.metrics.updates.inc()
            self.learned = True
        started = _time.perf_counter()
        result = self.runner.decide(batch)
        self.metrics.policy_latency.observe(_time.perf_counter() - started)
        shadow = self.runner.decide_shadow(batch)

        acts, prop = result.decisions.actions, result.decisions.propensity
        decision_ids = next_ids(conn, "decision", n)
        contact = acts[:, 0] > 0
        message_ids = iter(next_ids(conn, "message", int(contact.sum())))
        send = self._send_times(rp, days, acts, contact)
        masked, masked_names = self._responses.masked(batch)
        rows: list[dict[str, Any]] = [r for p in points for r in p.booked]
        messages: list[dict[str, Any]] = []
        touched: list[dict[str, Any] | None] = []
        out: list[schemas.DecisionOut] = []
        policy, version, fallback = result.policy, result.version, result.fallback_reason is not None
        acts_list, prop_list, send_list = acts.tolist(), prop.tolist(), send.tolist()
        decided: list[dict[str, Any]] = []
        replanned: list[int] = []
        for i, p in enumerate(points):
            aid, kind, t, a = p.req.arrangement_id, p.kind, p.time, acts_list[i]
            sent = send_list[i] if contact[i] else None
            decision = event_row(
                EventType.DECISION,
                t,
                aid,
                decision_id=decision_ids[i],
                decision_kind=kind.name.lower(),
                installment=p.installment,
                a_channel=a[0],
                a_send_slot=a[1],
                a_due_day=a[2],
                a_deferral=a[3],
                a_reduction=a[4],
                propensity=prop_list[i],
                send_time=sent,
                masked_rules=masked_names[i],
                policy=policy,
                policy_version=version,
            )
            decided.append(decision)
            if a[2] > 0 or a[3] > 0 or a[4] > 0:
                replanned.append(i)
            message_id = None
            if sent is not None:
                message_id = next(message_ids)
                messages.append(
                    {
                        "message_id": message_id,
                        "arrangement_id": aid,
                        "decision_id": decision_ids[i],
                        "installment": p.installment,
                        "channel": _CHANNEL_NAMES[a[0]],
                        "purpose": message_purpose(kind),
                        "send_time": sent,
                        "state": "pending",
                        "state_time": None,
                    }
                )
            info = ws.info[aid]
            assert info is not None
            touched.append(self._moved(info, t, "active" if kind == DecisionKind.PLAN_CREATED else None))
            # model_construct skips re-validating what the server built itself (ints, floats, the cached
            # response parts): a fifth of a batch's CPU otherwise.
            out.append(
                schemas.DecisionOut.model_construct(
                    decision_id=decision_ids[i],
                    arrangement_id=aid,
                    kind=p.req.kind,
                    installment=p.installment,
                    time=t,
                    at=self.at_of(t),
                    action=self._responses.action(a),
                    message_id=message_id,
                    send_time=sent,
                    send_at=None if sent is None else self.at_of(sent),
                    masked_rules=[m for m in masked_names[i].split(",") if m],
                    masked=masked[i],
                    policy=policy,
                    policy_version=version,
                    propensity=prop_list[i],
                    fallback=fallback,
                )
            )
        # Arrangements are distinct within a batch: the decisions are fed together, then the re-plans they
        # imply, one kind after the other (each logged with the plan as it stands after it).
        rp.feed_records(decided)
        replans = self._replans(ws, [(i, ids[i], times[i], acts_list[i]) for i in replanned])
        for i in range(n):
            rows.append(decided[i])
            rows += replans.get(i, [])
        counts = Counter((p.req.kind, _CHANNEL_NAMES[acts_list[i][0]]) for i, p in enumerate(points))
        for (kind_name, channel), k in counts.items():
            self.metrics.decisions.labels(kind_name, channel, policy).inc(k)
        insert_events(conn, rows)
        execute_many(conn, _INSERT_MESSAGES, messages)
        self._touch(conn, touched)
        if result.fallback_reason is not None:
            self.metrics.fallbacks.labels(result.fallback_reason).inc(n)
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

    def _send_times(
        self, rp: LogReplay, days: list[int], acts: np.ndarray[Any, Any], contact: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any]:
        """When each contacting decision's message goes out (NaN without contact), per decision day at once."""
        send = np.full(len(days), np.nan)
        if not contact.any():
            return send
        day_arr = np.asarray(days, dtype=np.int64)
        for d in np.unique(day_arr[contact]).tolist():
            at = np.flatnonzero(contact & (day_arr == d))
            send[at] = self.runner.rules.send_time(d, int(rp.calendar.weekday[d]), acts[at, 1])
        return send

    def _replans(
        self, ws: Workspace, decided: list[tuple[int, int, float, list[int]]]
    ) -> dict[int, list[dict[str, Any]]]:
        """The re-plan events of decisions ``(key, arrangement, time, action)`` of distinct arrangements, by key.

        Each arrangement's re-plans come in the world's order (due day, deferral, reduction), each logged with
        the plan as it stands after it; one kind is applied to all arrangements at once.
        """
        cfg = self.config.decisions
        rp = ws.replay
        s = rp.sched
        out: dict[int, list[dict[str, Any]]] = {}
        steps: tuple[tuple[int, EventType, str, Callable[[int], Any]], ...] = (
            (2, EventType.DUE_DAY_SET, "due_day", lambda k: int(cfg.due_day_options[k - 1])),
            (3, EventType.DEFERRAL, "deferral_days", lambda k: int(cfg.deferral_options[k])),
            (4, EventType.REDUCTION, "reduction", lambda k: float(cfg.reduction_options[k])),
        )
        for part, event, column, value in steps:
            chosen = [(key, aid, t, a) for key, aid, t, a in decided if a[part] > 0]
            if not chosen:
                continue
            events = [event_row(event, t, aid, **{column: value(a[part])}) for _, aid, t, a in chosen]
            rp.feed_records(events)
            rows = np.array([rp.row[aid] for _, aid, _, _ in chosen], dtype=np.int64)
            n_inst = s.n[rows].tolist()
            amount = s.current_amount(rows).tolist()
            first = s.first_open[rows].tolist()
            for k, (key, _, _, _) in enumerate(chosen):
                r = events[k]
                r["n_installments"] = n_inst[k]
                r["installment_eur"] = amount[k]
                if event != EventType.DUE_DAY_SET:
                    r["installment"] = first[k]
                out.setdefault(key, []).append(r)
        return out

    def _log_shadow(
        self,
        conn: sa.Connection,
        shadow: Any,
        decision_ids: list[int],
        ids: list[int],
        times: list[float],
        acts: np.ndarray[Any, Any],
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
                row["propensity"] = float(shadow.propensity[i])
                row["agrees"] = bool((a == acts[i]).all())
                self.metrics.shadow.labels("agree" if row["agrees"] else "disagree").inc()
            else:
                self.metrics.shadow.labels("error").inc()
            rows.append(row)
        conn.execute(sa.insert(db.shadow_decisions), rows)

    # ======================================================================================================
    # Events
    # ======================================================================================================
    def record(self, conn: sa.Connection, ws: Workspace, ev: Any) -> schemas.EventOut:
        """Record an event reported by production, with its consequences (uncommitted; changes ``ws``)."""
        t = self.time_of(ev)
        aid = ev.arrangement_id
        arr = self._info(ws, aid)
        self._check_time(arr, t)
        status = arr.status
        rows: list[dict[str, Any]] = self._book(ws, aid, t) if status == "active" else []
        fed = {id(r) for r in rows}
        rp = ws.replay
        row, s = rp.row[aid], rp.sched
        paid: list[int] = []
        cancelled: list[schemas.CancelledReminder] = []
        kind = ev.type
        if kind == "payment":
            if status != "active":
                raise ConflictError(f"arrangement {aid} is {status}: a payment needs an active arrangement")
            balance = float(s.balance[row])
            if ev.amount_eur > balance + 0.005:
                raise InvalidFieldError(
                    ("body", "amount_eur"),
                    f"amount_eur: {ev.amount_eur} exceeds the open balance of {balance:.2f} EUR",
                    ev.amount_eur,
                )
            first0 = int(s.first_open[row])
            channel = "none" if ev.channel is None else ev.channel
            pay = event_row(EventType.PAYMENT, t, aid, amount_eur=ev.amount_eur, channel=channel)
            rp.feed_records([pay])
            rows.append(pay)
            day = math.floor(t)
            for j in range(first0, int(s.first_open[row])):
                done = event_row(
                    EventType.INSTALLMENT_PAID,
                    t,
                    aid,
                    installment=j,
                    deferral_days=day - int(s.due[row, j]),
                    amount_eur=float(s.amount[row, j]),
                )
                paid.append(j)
                rows.append(done)
            rp.feed_records(rows[-len(paid) :] if paid else [])
            fed.update(id(r) for r in rows)
            if int(s.first_open[row]) >= int(s.n[row]):
                status = "completed"
                rows.append(event_row(EventType.COMPLETED, t, aid))
                cancelled += self._cancel(conn, aid, t, rows, paid_below=None, cause="completed")
            cancelled += self._cancel(conn, aid, t, rows, paid_below=int(s.first_open[row]), cause="payment")
        elif kind in ("message_sent", "message_delivered", "message_opened", "message_clicked"):
            msg = conn.execute(sa.select(db.messages).where(db.messages.c.message_id == ev.message_id)).first()
            if msg is None or int(msg.arrangement_id) != aid:
                raise NotFoundError(f"message_id: message {ev.message_id} of arrangement {aid} is not in the store")
            if kind == "message_sent":
                if msg.state != "pending":
                    raise ConflictError(
                        f"message {ev.message_id} is {msg.state} (at {msg.state_time}); it cannot be sent"
                    )
                conn.execute(
                    sa.update(db.messages)
                    .where(db.messages.c.message_id == ev.message_id)
                    .values(state="sent", state_time=t)
                )
            cost = None
            if kind == "message_sent":
                cost = self._channel_cost[_CHANNEL_NAMES.index(msg.channel)] if ev.cost_eur is None else ev.cost_eur
            rows.append(
                event_row(
                    EventType[kind.upper()],
                    t,
                    aid,
                    message_id=ev.message_id,
                    channel=msg.channel,
                    decision_id=int(msg.decision_id),
                    installment=int(msg.installment),
                    amount_eur=cost,
                )
            )
        elif kind == "installment_missed":
            n = int(s.n[row])
            if not 0 <= ev.installment < n:
                raise InvalidFieldError(
                    ("body", "installment"), f"installment: {ev.installment} is not in the plan (0..{n - 1})"
                )
            logged = conn.execute(
                sa.select(sa.func.count())
                .select_from(db.events)
                .where(
                    db.events.c.arrangement_id == aid,
                    db.events.c.event == "installment_missed",
                    db.events.c.installment == ev.installment,
                )
            ).scalar_one()
            logged += sum(1 for r in rows if r["event"] == "installment_missed" and r["installment"] == ev.installment)
            if not logged:
                raise ConflictError(
                    f"installment {ev.installment} of arrangement {aid} is not missed at time {t}: it is due on day "
                    f"{int(s.due[row, ev.installment])} with {s.grace_days} grace day(s), or paid"
                )
            # A confirmation: the server books misses itself from the plan; nothing new to log.
        elif kind == "opt_out":
            rows.append(
                event_row(
                    EventType.OPT_OUT,
                    t,
                    aid,
                    channel=ev.channel,
                    message_id=-1 if ev.message_id is None else ev.message_id,
                )
            )
        elif kind in ("broken", "referred"):
            if status not in _OPEN:
                raise ConflictError(f"arrangement {aid} is {status}; it cannot become {kind}")
            extra: dict[str, Any] = {"amount_eur": float(s.balance[row])}
            if kind == "broken":
                extra["collection_costs_eur"] = 0.0 if ev.collection_costs_eur is None else ev.collection_costs_eur
            rows.append(event_row(EventType[kind.upper()], t, aid, **extra))
            status = kind
            cancelled += self._cancel(conn, aid, t, rows, paid_below=None, cause=kind)
        # The rows not fed yet (message counters, opt-outs, endings, cancellations) update the cached replay.
        rp.feed_records([r for r in rows if id(r) not in fed])
        insert_events(conn, rows)
        self._touch(conn, [self._moved(arr, t, status)])
        self.metrics.events.labels(kind).inc()
        if self.online is not None:
            if self.online.advance(t):
                self.metrics.updates.inc()
                self.learned = True
            self.online.add_events(rows)
            self.dirty = True
        return schemas.EventOut(
            arrangement_id=aid,
            type=kind,
            time=t,
            at=self.at_of(t),
            status=status,
            installments_paid=paid,
            cancelled=cancelled,
        )

    def _cancel(
        self,
        conn: sa.Connection,
        aid: int,
        t: float,
        rows: list[dict[str, Any]],
        paid_below: int | None,
        cause: str,
    ) -> list[schemas.CancelledReminder]:
        """Cancel pending messages: reminders for installments below ``paid_below``, or all (``None``)."""
        stmt = sa.select(db.messages).where(db.messages.c.arrangement_id == aid, db.messages.c.state == "pending")
        if paid_below is not None:
            stmt = stmt.where(db.messages.c.purpose == "reminder", db.messages.c.installment < paid_below)
        hits = list(conn.execute(stmt.order_by(db.messages.c.message_id)))
        if not hits:
            return []
        conn.execute(
            sa.update(db.messages)
            .where(db.messages.c.message_id.in_([m.message_id for m in hits]))
            .values(state="cancelled", state_time=t)
        )
        out = []
        for m in hits:
            rows.append(
                event_row(
                    EventType.MESSAGE_CANCELLED,
                    t,
                    aid,
                    message_id=int(m.message_id),
                    channel=m.channel,
                    decision_id=int(m.decision_id),
                    installment=int(m.installment),
                )
            )
            out.append(
                schemas.CancelledReminder(
                    message_id=int(m.message_id),
                    decision_id=int(m.decision_id),
                    installment=int(m.installment),
                    channel=m.channel,
                    send_time=float(m.send_time),
                )
            )
        self.metrics.cancelled.labels(cause).inc(len(out))
        return out

    # ======================================================================================================
    # Overview
    # ======================================================================================================
    def overview(self, conn: sa.Connection, aid: int) -> schemas.Overview:
        """The call-centre overview of one arrangement, read from the store (read only, any thread)."""
        state = self.load(conn, [aid], self.template)
        arr = self._info(state, aid)
        rp = state.replay
        row, s = rp.row[aid], rp.sched
        log = load_events(conn, [aid], self.epoch)
        decisions = {d.decision_id: d for d in _decision_summaries(log, rp.space)}
        nxt = conn.execute(
            sa.select(db.messages)
            .where(db.messages.c.arrangement_id == aid, db.messages.c.state == "pending")
            .order_by(db.messages.c.send_time, db.messages.c.message_id)
            .limit(1)
        ).first()
        next_action = None
        if nxt is not None and int(nxt.decision_id) in decisions:
            next_action = schemas.NextAction(
                message_id=int(nxt.message_id),
                channel=nxt.channel,
                purpose=nxt.purpose,
                installment=int(nxt.installment),
                send_time=float(nxt.send_time),
                send_at=self.at_of(float(nxt.send_time)),
                decided_by=decisions[int(nxt.decision_id)],
            )
        contact = []
        message_events = ("message_sent", "message_delivered", "message_opened", "message_clicked", "message_cancelled")
        ev = log.column("event").to_pylist()
        for k, name in enumerate(ev):
            if name in message_events:
                t = float(log.column("time")[k].as_py())
                contact.append(
                    schemas.ContactRecord(
                        time=t,
                        at=self.at_of(t),
                        event=name,
                        channel=str(log.column("channel")[k].as_py()),
                        message_id=int(log.column("message_id")[k].as_py()),
                        decision_id=int(log.column("decision_id")[k].as_py()),
                    )
                )
        paid = int(s.first_open[row])
        return schemas.Overview(
            arrangement_id=aid,
            status=arr.status,
            debt_eur=float(arr.debt_eur),
            balance_eur=float(s.balance[row]),
            installments_paid=paid,
            installments_open=int(s.n[row]) - paid,
            installments=self._plan(state, aid),
            opted_out=self._opted_out(state, aid),
            next_action=next_action,
            last_decision=max(decisions.values(), key=lambda d: d.decision_id) if decisions else None,
            contact_history=contact,
        )


class _Responses:
    """Parts of decision responses, built once per distinct value (they are only serialised, never changed).

    A batch of a thousand decisions repeats a handful of actions and masking patterns; building each
    pydantic object once keeps the per-decision cost of a response to a dictionary look-up.
    """

    def __init__(self, space: Any) -> None:
        self.space = space
        labels = [space.option_labels(part) for part in range(len(PART_NAMES))]
        # flat mask index -> (part name, option label)
        self.options = [(PART_NAMES[part], label) for part in range(len(PART_NAMES)) for label in labels[part]]
        self.slots = labels[1]
        self.due_days = [int(d) for d in space.due_day_options]
        self.deferrals = [int(d) for d in space.deferral_days]
        self.reductions = [float(r) for r in space.reduction_fractions]
        self._actions: dict[tuple[int, ...], schemas.Action] = {}
        self._masked: dict[tuple[tuple[int, tuple[str, ...]], ...], tuple[list[schemas.MaskedOption], str]] = {}

    def action(self, a: Sequence[int]) -> schemas.Action:
        key = tuple(a)
        out = self._actions.get(key)
        if out is None:
            # model_construct skips validation: the names come from the same tuples the Literals list.
            out = schemas.Action.model_construct(
                channel=cast(Any, _CHANNEL_NAMES[a[0]]),
                send_slot=self.slots[a[1]],
                due_day=None if a[2] == 0 else self.due_days[a[2] - 1],
                deferral_days=self.deferrals[a[3]],
                reduction=self.reductions[a[4]],
                indices=list(key),
            )
            self._actions[key] = out
        return out

    def masked(self, batch: ContextBatch) -> tuple[list[list[schemas.MaskedOption]], list[str]]:
        """Per row, the options the rules masked and the rules that masked anything (applicability excluded).

        The options are those of ``sorted(batch[i].masked_by.items())``, with their rules in rule order; the rule
        names are comma-separated in rule order, as the world logs them. No :class:`Context` is built per row.
        """
        names = [n for n in batch.forbidden if n != "not_applicable"]
        if not names:
            return [[] for _ in range(len(batch))], [""] * len(batch)
        # Rows sharing a masking pattern (the options each rule forbids) share the answer, so Python only walks
        # the distinct patterns.
        bits = np.concatenate([np.asarray(batch.forbidden[n], dtype=bool) for n in names], axis=1)
        packed = np.packbits(bits, axis=1)
        first: dict[bytes, int] = {}
        which = [first.setdefault(packed[i].tobytes(), i) for i in range(len(batch))]
        width = bits.shape[1] // len(names)
        answers: dict[int, tuple[list[schemas.MaskedOption], str]] = {}
        for i in first.values():
            hit: dict[int, list[str]] = {}
            for k, name in enumerate(names):
                for j in np.flatnonzero(bits[i, k * width : (k + 1) * width]).tolist():
                    hit.setdefault(j, []).append(name)
            key = tuple((j, tuple(hit[j])) for j in sorted(hit))
            cached = self._masked.get(key)
            if cached is None:
                options = [
                    schemas.MaskedOption(part=cast(Any, self.options[j][0]), option=self.options[j][1], rules=list(r))
                    for j, r in key
                ]
                used = {r for _, rules in key for r in rules}
                cached = (options, ",".join(n for n in names if n in used))
                self._masked[key] = cached
            answers[i] = cached
        return [answers[i][0] for i in which], [answers[i][1] for i in which]


def _decision_summaries(log: pa.Table, space: Any) -> list[schemas.DecisionSummary]:
    out = []
    for r in log.to_pylist():
        if r["event"] != "decision":
            continue
        out.append(
            schemas.DecisionSummary(
                decision_id=int(r["decision_id"]),
                time=float(r["time"]),
                kind=r["decision_kind"],
                installment=int(r["installment"]),
                channel=_CHANNEL_NAMES[int(r["a_channel"])],
                deferral_days=int(space.deferral_days[int(r["a_deferral"])]),
                reduction=float(space.reduction_fractions[int(r["a_reduction"])]),
                policy=str(r["policy"]),
                policy_version=str(r["policy_version"]),
                propensity=float(r["propensity"]),
                masked_rules=[m for m in (r["masked_rules"] or "").split(",") if m],
            )
        )
    return out
