"""The decision service: requests on the store, every change to an arrangement made by the ledger.

For every request the service works on a :class:`serving.cache.Workspace`: the state of the arrangements
concerned, rebuilt from the store by :class:`regsim.replay.LogReplay` (the code that rebuilds a simulated log)
and held by its :class:`regsim.ledger.Ledger`. It brings each arrangement up to the request's time (the
ledger's bookkeeping: installments falling due and missed, breakdowns with their collection costs), applies the
request through the ledger (a registration, a decision: :mod:`serving.decisions`, a payment, a message event,
an opt-out, an ending), and writes what the ledger wrote, in the simulator's event-log schema, inside the
caller's transaction (:mod:`serving.store_rows`). So the server derives nothing itself: installments paid,
completions, re-plans, breakdowns and the reminders a payment cancels are the ledger's, as in simulation.

Production reports payments, message events (by the ``message_id`` a decision returned), opt-outs, referrals
and breakdowns it declares itself; a reported missed installment is checked against the plan. ``POST
/v1/clock`` tells the server that time has passed (the creditor's end of day): every open arrangement is
booked up to then.

Every write method must be called from the app's single writer (:mod:`serving.writer`), which commits and then
hands the workspace back to the cache.
"""

from __future__ import annotations

import datetime as dt
import math
import time as _time
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from regsim.arrangement import ArrangementStatus
from regsim.config import CHANNELS, WorldConfig
from regsim.eventlog import EventType
from regsim.ledger import LedgerError
from regsim.messages import MessageState
from regsim.replay import LogReplay, morning_booking_day
from serving import db, schemas
from serving.cache import ArrangementInfo, Workspace, load_workspace
from serving.decisions import DecisionOps
from serving.late_events import LateEventOps, incidents_of, mark_arrived
from serving.metrics import Metrics
from serving.online import OnlineLearner
from serving.overview import installments_of, opted_out_of, overview
from serving.policies import PolicyRunner
from serving.refusals import ConflictError, InvalidFieldError, NotFoundError, ServiceError
from serving.responses import ResponseParts
from serving.store import execute_many, insert_events
from serving.store_rows import of_type, rows_of

__all__ = ["ConflictError", "DecisionService", "InvalidFieldError", "NotFoundError", "ServiceError"]

_CHANNEL_INDEX = {name: k for k, name in enumerate(("none", *CHANNELS))}
_OPEN = ("offered", "active")
_STATUS_NAMES = tuple(s.name.lower() for s in ArrangementStatus)
_EVENT_OF = {e.name.lower(): e for e in EventType}
_REGISTRATION_EVENTS = frozenset({"arrangement_created", "opt_out"})

#: Bulk "the arrangement's latest event and status" update (executemany): bind names differ from the columns'.
_TOUCH = (
    sa.update(db.arrangements)
    .where(db.arrangements.c.arrangement_id == sa.bindparam("b_id"), db.arrangements.c.last_time <= sa.bindparam("b_t"))
    .values(last_time=sa.bindparam("b_t"), status=sa.bindparam("b_status"))
)
#: Bulk message state update from what the ledger logged (sent, cancelled).
_MESSAGE_STATE = (
    sa.update(db.messages)
    .where(db.messages.c.message_id == sa.bindparam("b_id"))
    .values(state=sa.bindparam("b_state"), state_time=sa.bindparam("b_t"))
)


class DecisionService(DecisionOps, LateEventOps):
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
        # The online learner's state to write at the end of the transaction: ``dirty`` (anything changed) and
        # ``learned`` (the policy updated: its large statistics too). Cleared only once a save has committed.
        self.dirty = False
        self.learned = False
        self._saving = False  # a save is in the open transaction
        # Metric counts of the open transaction's work, applied by the writer once it has committed (a group run
        # again after a failure must not count its requests twice): (a labelled counter, amount).
        self._counts: list[tuple[Any, float]] = []
        # Shares its calendar, action space and rules with the replays built for reads.
        self.template = LogReplay(config, [], int(schemas.MAX_TIME_DAYS) + 1)
        self._responses = ResponseParts(self.template.space)

    def count(self, counter: Any, n: float = 1.0) -> None:
        """Count ``n`` on ``counter`` (a labelled Prometheus counter) when the transaction commits (the writer
        applies :meth:`take_counts`'s at its commit and drops them at a rollback)."""
        self._counts.append((counter, n))

    def take_counts(self) -> list[tuple[Any, float]]:
        """The counts of the work since the last call (the writer's current transaction), and forget them."""
        counts, self._counts = self._counts, []
        return counts

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

    def _learn(self, t: float, rows: list[dict[str, Any]]) -> None:
        """Tell the online learner that time reached ``t`` and what was logged."""
        if self.online is None:
            return
        if self.online.advance(t):
            self.count(self.metrics.updates)
            self.learned = True
        self.online.add_events(rows)
        self.dirty = True

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
    # State
    # ======================================================================================================
    def load(self, conn: sa.Connection, ids: Sequence[int], template: LogReplay) -> Workspace:
        """The state of some arrangements rebuilt from the store alone (for reads; writes use the cache)."""
        return load_workspace(conn, self.config, ids, template)

    def _info(self, ws: Workspace, arrangement_id: int) -> ArrangementInfo:
        info = ws.info.get(arrangement_id)
        if info is None:
            raise NotFoundError(f"arrangement {arrangement_id} is not registered (POST /v1/arrangements first)")
        return info

    def _book(
        self, ws: Workspace, arrangement_id: int, t: float, event: EventType = EventType.DECISION
    ) -> list[dict[str, Any]]:
        """The ledger's bookkeeping of one arrangement up to an event of kind ``event`` at ``t``; its rows."""
        rp = ws.replay
        rp.ledger.catch_up(np.array([rp.row[arrangement_id]], dtype=np.int64), morning_booking_day(event, t))
        return rows_of(rp).take()

    def _check_time(self, info: ArrangementInfo, t: float, field: str = "time") -> None:
        """Decisions and opt-out updates of a registration happen at the arrangement's present, never before it."""
        if t < info.last_time:
            raise ConflictError(
                f"{field}: {t} is before the latest event of arrangement {info.arrangement_id} "
                f"({info.last_time}); a decision or registration update is taken at the arrangement's present "
                "(reported events may be late: POST /v1/events)"
            )

    def _touch(self, conn: sa.Connection, ws: Workspace, ids: Sequence[int], times: Sequence[float]) -> None:
        """Advance the ``arrangements`` rows of these arrangements: latest event time, and status (the ledger's)."""
        params = []
        for aid, t in zip(ids, times, strict=True):
            info = ws.info[aid]
            assert info is not None
            status = ws.status_of(aid)
            if t < info.last_time or (t == info.last_time and status == info.status):
                continue  # the row would not change: no write
            info.last_time, info.status = max(t, info.last_time), status
            params.append({"b_id": aid, "b_t": info.last_time, "b_status": status})
        execute_many(conn, _TOUCH, params)

    def _store(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """Insert logged rows and move the messages they sent or cancelled to their new state."""
        insert_events(conn, rows)
        states = [
            {
                "b_id": r["message_id"],
                "b_state": "sent" if r["event"] == "message_sent" else "cancelled",
                "b_t": r["time"],
            }
            for r in rows
            if r["event"] in ("message_sent", "message_cancelled")
        ]
        execute_many(conn, _MESSAGE_STATE, states)

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
        rp, existing = ws.replay, ws.info.get(aid)
        r = np.array([rp.row[aid]], dtype=np.int64)
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
            rp.ledger.create(
                r,
                t,
                math.floor(t),
                debt_eur=np.array([req.debt_eur]),
                n_installments=np.array([req.n_installments], dtype=np.int64),
                due_day=req.due_day,
                prior_payments=np.array([req.prior_payments], dtype=np.int64),
                prior_late_share=np.array([req.prior_late_share]),
                prior_pay_dom=np.array([prior_dom], dtype=np.int64),
            )
            self._opt_out(ws, aid, t, list(dict.fromkeys(req.opted_out)))
            created_rows = rows_of(rp).take()
            mark_arrived(created_rows, _REGISTRATION_EVENTS, _time.time())
            self._store(conn, created_rows)
            ws.info[aid] = info
            return self._arrangement_out(ws, aid, created=True), True
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
        new = [c for c in dict.fromkeys(req.opted_out) if c not in opted_out_of(rp, aid)]
        if new:
            self._check_time(existing, t)
            rows = self._book(ws, aid, t, EventType.OPT_OUT)
            self._opt_out(ws, aid, t, new)
            added = rows_of(rp).take()
            mark_arrived(added, _REGISTRATION_EVENTS, _time.time())
            rows += added
            self._store(conn, rows)
            self._touch(conn, ws, [aid], [t])
        return self._arrangement_out(ws, aid, created=False), False

    def _opt_out(self, ws: Workspace, aid: int, t: float, channels: Sequence[str], message: int = -1) -> None:
        if not channels:
            return
        rp = ws.replay
        rows = np.full(len(channels), rp.row[aid], dtype=np.int64)
        index = np.array([_CHANNEL_INDEX[c] for c in channels], dtype=np.int64)
        rp.ledger.opt_out(rows, index, t, np.full(len(channels), message, dtype=np.int64))

    def _arrangement_out(self, ws: Workspace, aid: int, created: bool) -> schemas.ArrangementOut:
        return schemas.ArrangementOut(
            arrangement_id=aid,
            created=created,
            status=ws.status_of(aid),
            opted_out=opted_out_of(ws.replay, aid),
            installments=installments_of(ws.replay, aid, self.epoch),
        )

    # ======================================================================================================
    # Events
    # ======================================================================================================
    def record(self, conn: sa.Connection, ws: Workspace, ev: Any) -> schemas.EventOut:
        """Record an event reported by production, with its consequences (uncommitted; changes ``ws``)."""
        t = self.time_of(ev)
        aid = ev.arrangement_id
        info = self._info(ws, aid)
        kind = ev.type
        booked = int(ws.replay.ledger.booked_day[ws.replay.row[aid]])
        if t < info.last_time or morning_booking_day(_EVENT_OF[kind], t) < booked:
            # Stamped before what is recorded (or booked): the history is re-derived in event-time order.
            return self.record_late(conn, ws, info, ev, t)
        rp = ws.replay
        ledger, row = rp.ledger, rp.row[aid]
        r = np.array([row], dtype=np.int64)
        rows = self._book(ws, aid, t, _EVENT_OF[kind])
        status = ws.status_of(aid)
        paid: list[int] = []
        if kind == "payment":
            if status != "active":
                raise ConflictError(f"arrangement {aid} is {status}: a payment needs an active arrangement")
            amount = np.array([ev.amount_eur])
            try:
                ledger.balance_check(r, amount)
            except LedgerError as exc:
                raise ConflictError(f"{exc.field}: {exc}") from None  # more than the balance: the state's limit
            channel = 0 if ev.channel is None else _CHANNEL_INDEX[ev.channel]
            done = ledger.pay(r, amount, np.array([t]), math.floor(t), channel)
            paid = done.installments.installment.tolist()
        elif kind.startswith("message_"):
            m = self._message(ws, aid, ev.message_id)
            book = ledger.messages
            if kind == "message_sent":
                if book.state[m[0]] == int(MessageState.CANCELLED):
                    # It went out although a payment or an ending had made it moot (production's dispatcher
                    # had it before it heard of the cancellation): recorded as sent and as an incident, never
                    # refused, through the re-derivation that turns the cancellation into one.
                    return self.record_late(conn, ws, info, ev, t, late=False)
                if book.state[m[0]] != int(MessageState.PENDING):
                    state = MessageState(int(book.state[m[0]])).name.lower()
                    raise ConflictError(f"message {ev.message_id} is {state}; it cannot be sent again")
                ledger.message_sent(m, t, None if ev.cost_eur is None else np.array([ev.cost_eur]))
            elif kind == "message_delivered":
                ledger.message_delivered(m, t)
            elif kind == "message_opened":
                ledger.message_opened(m, t)
            else:
                ledger.message_clicked(m, t)
        elif kind == "installment_missed":
            self._check_missed(conn, ws, aid, ev.installment, t, rows)
        elif kind == "opt_out":
            message = -1 if ev.message_id is None else int(self._message(ws, aid, ev.message_id)[0])
            self._opt_out(ws, aid, t, [ev.channel], message)
        else:  # broken, referred
            if status not in _OPEN:
                raise ConflictError(f"arrangement {aid} is {status}; it cannot become {kind}")
            costs = None if ev.collection_costs_eur is None else np.array([ev.collection_costs_eur])
            ending = ArrangementStatus.BROKEN if kind == "broken" else ArrangementStatus.REFERRED
            ledger.end(r, t, ending, costs if kind == "broken" else None)
        applied = rows_of(rp).take()
        mark_arrived(applied, frozenset({kind}), _time.time(), first_only=True)
        rows += applied
        self._store(conn, rows)
        self._touch(conn, ws, [aid], [t])
        self.count(self.metrics.events.labels(kind))
        cancelled = [self._cancelled(ws, c) for c in of_type(rows, EventType.MESSAGE_CANCELLED)]
        self._count_cancelled(rows)
        self._learn(t, rows)
        return schemas.EventOut(
            arrangement_id=aid,
            type=kind,
            time=t,
            at=self.at_of(t),
            status=ws.status_of(aid),
            installments_paid=paid,
            cancelled=cancelled,
        )

    def _count_cancelled(self, rows: list[dict[str, Any]]) -> None:
        """Count cancelled messages by what cancelled them: the payment, completion or ending logged before."""
        cause = "payment"
        for r in rows:
            if r["event"] in ("payment", "completed", "broken", "referred"):
                cause = r["event"]
            elif r["event"] == "message_cancelled":
                self.count(self.metrics.cancelled.labels(cause))

    def _message(self, ws: Workspace, aid: int, message_id: int) -> np.ndarray[Any, Any]:
        """The book position of an arrangement's message, as a one-element array."""
        book = ws.replay.ledger.messages
        at = book.positions_of(np.array([message_id], dtype=np.int64))
        if at[0] < 0 or book.row[at[0]] != ws.replay.row[aid]:
            raise NotFoundError(f"message_id: message {message_id} of arrangement {aid} is not in the store")
        return at

    def _cancelled(self, ws: Workspace, row: dict[str, Any]) -> schemas.CancelledReminder:
        book = ws.replay.ledger.messages
        k = int(book.positions_of(np.array([row["message_id"]], dtype=np.int64))[0])
        return schemas.CancelledReminder(
            message_id=int(row["message_id"]),
            decision_id=int(row["decision_id"]),
            installment=int(row["installment"]),
            channel=row["channel"],
            send_time=float(book.send_time[k]),
        )

    def _check_missed(
        self, conn: sa.Connection, ws: Workspace, aid: int, installment: int, t: float, rows: list[dict[str, Any]]
    ) -> None:
        """A missed installment production reports is a confirmation: the ledger books misses from the plan."""
        s, row = ws.replay.ledger.sched, ws.replay.row[aid]
        n = int(s.n[row])
        if not 0 <= installment < n:
            # The plan's length is the arrangement's state, which the schema cannot know: a conflict with it.
            raise ConflictError(f"installment: {installment} is not in the plan of arrangement {aid} (0..{n - 1})")
        logged = conn.execute(
            sa.select(sa.func.count())
            .select_from(db.events)
            .where(
                db.events.c.arrangement_id == aid,
                db.events.c.event == "installment_missed",
                db.events.c.installment == installment,
            )
        ).scalar_one()
        logged += sum(1 for r in of_type(rows, EventType.INSTALLMENT_MISSED) if r["installment"] == installment)
        if not logged:
            raise ConflictError(
                f"installment {installment} of arrangement {aid} is not missed at time {t}: it is due on day "
                f"{int(s.due[row, installment])} with {s.grace_days} grace day(s), or paid"
            )

    # ======================================================================================================
    # The clock
    # ======================================================================================================
    def tick(self, conn: sa.Connection, ws: Workspace, req: schemas.ClockIn) -> schemas.ClockOut:
        """Time reached ``req``'s time: book every open arrangement of ``ws`` up to then (the end of a day)."""
        t = self.time_of(req)
        rp = ws.replay
        ids = [a for a, info in ws.info.items() if info is not None and info.status in _OPEN and info.last_time <= t]
        if ids:
            rows_idx = np.array([rp.row[a] for a in ids], dtype=np.int64)
            rp.ledger.catch_up(rows_idx, math.floor(t))
        rows = rows_of(rp).take()
        self._store(conn, rows)
        self._count_cancelled(rows)
        changed = sorted({int(r["arrangement_id"]) for r in rows})
        self._touch(
            conn, ws, changed, [float(max(r["time"] for r in rows if r["arrangement_id"] == a)) for a in changed]
        )
        self._learn(t, rows)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["event"]] = counts.get(r["event"], 0) + 1
        return schemas.ClockOut(time=t, at=self.at_of(t), arrangements=len(ids), events=counts)

    # ======================================================================================================
    # Overview
    # ======================================================================================================
    def overview(self, conn: sa.Connection, aid: int) -> schemas.Overview:
        """The call-centre overview of one arrangement, read from the store (read only, any thread)."""
        state = self.load(conn, [aid], self.template)
        view = overview(conn, state.replay, self._info(state, aid), self.epoch, self.at_of)
        view.incidents = incidents_of(conn, aid)
        return view
