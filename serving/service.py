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

All methods must be called under the app's write lock (one writer at a time).
"""

from __future__ import annotations

import datetime as dt
import math
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from regsim.arrangement import ArrangementStatus
from regsim.config import CHANNELS, WorldConfig
from regsim.decision import PART_NAMES, ContextBatch, DecisionKind
from regsim.eventlog import EventType
from regsim.replay import LogReplay
from serving import db, schemas
from serving.metrics import Metrics
from serving.online import OnlineLearner
from serving.policies import PolicyRunner
from serving.store import event_row, events_table, insert_events, load_events, next_ids

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
class _Replay:
    """The replayed state of some arrangements, and the store rows behind it."""

    replay: LogReplay
    rows: dict[int, sa.Row[Any]]


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

    # ======================================================================================================
    # Time
    # ======================================================================================================
    def time_of(self, req: schemas._Timed) -> float:
        """A request's time in days since the epoch (``at`` converted; naive timestamps are UTC)."""
        if req.time is not None:
            return float(req.time)
        assert req.at is not None
        at = req.at if req.at.tzinfo is not None else req.at.replace(tzinfo=dt.UTC)
        t = (at - self._epoch_dt).total_seconds() / 86_400.0
        if not 0.0 <= t <= schemas.MAX_TIME_DAYS:
            raise InvalidFieldError(
                ("body", "at"), f"at: {req.at.isoformat()} is before the epoch {self.epoch} or too late"
            )
        return t

    def at_of(self, t: float) -> dt.datetime:
        """The timestamp of a time in days since the epoch."""
        return self._epoch_dt + dt.timedelta(days=float(t))

    # ======================================================================================================
    # Replay
    # ======================================================================================================
    def _arrangements(self, conn: sa.Connection, ids: Sequence[int]) -> dict[int, sa.Row[Any]]:
        wanted = sorted({int(a) for a in ids})
        rows: dict[int, sa.Row[Any]] = {}
        for k in range(0, len(wanted), 500):
            stmt = sa.select(db.arrangements).where(db.arrangements.c.arrangement_id.in_(wanted[k : k + 500]))
            rows.update({int(r.arrangement_id): r for r in conn.execute(stmt)})
        missing = [a for a in wanted if a not in rows]
        if missing:
            raise NotFoundError(f"arrangement {missing[0]} is not registered (POST /v1/arrangements first)")
        return rows

    def _replay(self, conn: sa.Connection, ids: Sequence[int], until: float) -> _Replay:
        rows = self._arrangements(conn, ids)
        log = load_events(conn, list(rows), self.epoch)
        horizon = max(int(until), int(max(r.last_time for r in rows.values()))) + 1
        replay = LogReplay(self.config, list(rows), horizon)
        replay.feed(log)
        return _Replay(replay, rows)

    def _feed(self, state: _Replay, new_rows: list[dict[str, Any]]) -> None:
        if new_rows:
            state.replay.feed(events_table(new_rows, self.epoch))

    def _book(self, state: _Replay, arrangement_id: int, t: float) -> list[dict[str, Any]]:
        """The world's morning bookkeeping up to ``t``: installments that fell due or were missed, logged.

        Mirrors ``Schedules.advance_due``/``advance_missed`` as :meth:`LogReplay.catch_up` runs them, and
        feeds the rows back (the replay counts misses from the log).
        """
        rp = state.replay
        row = rp.row[arrangement_id]
        s = rp.sched
        due0, miss0 = int(s.came_due[row]), int(s.miss_ptr[row])
        rp.catch_up(row, math.floor(t))
        out: list[tuple[float, int, dict[str, Any]]] = []
        for j in range(due0, int(s.came_due[row])):
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
        for j in range(max(miss0, int(s.first_open[row])), int(s.miss_ptr[row])):
            when = float(int(s.due[row, j]) + s.grace_days + 1)
            out.append((when, 1, event_row(EventType.INSTALLMENT_MISSED, when, arrangement_id, installment=j)))
        out.sort(key=lambda x: (x[0], x[1]))
        rows = [r for _, _, r in out]
        self._feed(state, rows)
        return rows

    def _check_time(self, row: sa.Row[Any], t: float, field: str = "time") -> None:
        if t < float(row.last_time):
            raise ConflictError(
                f"{field}: {t} is before the latest event of arrangement {row.arrangement_id} "
                f"({row.last_time}); events of an arrangement must arrive in time order"
            )

    def _plan(self, state: _Replay, arrangement_id: int, day: int) -> list[schemas.InstallmentOut]:
        rp = state.replay
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
        del day
        return out

    def _opted_out(self, state: _Replay, arrangement_id: int) -> list[str]:
        flags = state.replay.history.opted_out[state.replay.row[arrangement_id]]
        return [c for c, f in zip(CHANNELS, flags.tolist(), strict=True) if f]

    def _touch(self, conn: sa.Connection, arrangement_id: int, t: float, status: str | None = None) -> None:
        values: dict[str, Any] = {"last_time": t}
        if status is not None:
            values["status"] = status
        conn.execute(
            sa.update(db.arrangements)
            .where(db.arrangements.c.arrangement_id == arrangement_id, db.arrangements.c.last_time <= t)
            .values(**values)
        )

    # ======================================================================================================
    # Arrangements
    # ======================================================================================================
    def register(self, conn: sa.Connection, req: schemas.ArrangementIn) -> tuple[schemas.ArrangementOut, bool]:
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
        existing = conn.execute(sa.select(db.arrangements).where(db.arrangements.c.arrangement_id == aid)).first()
        if existing is None:
            conn.execute(
                sa.insert(db.arrangements).values(
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
            )
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
            state = _Replay(LogReplay(self.config, [aid], int(t) + 1), {})
            self._feed(state, [created])
            created["installment_eur"] = float(state.replay.sched.amount[0, 0])
            rows = [created]
            rows += [event_row(EventType.OPT_OUT, t, aid, channel=c) for c in dict.fromkeys(req.opted_out)]
            self._feed(state, rows[1:])
            insert_events(conn, rows)
            return (
                schemas.ArrangementOut(
                    arrangement_id=aid,
                    created=True,
                    status="offered",
                    opted_out=self._opted_out(state, aid),
                    installments=self._plan(state, aid, int(t)),
                ),
                True,
            )
        agreed = {
            "debt_eur": float(existing.debt_eur),
            "n_installments": int(existing.n_installments),
            "due_day": int(existing.due_day),
            "prior_payments": int(existing.prior_payments),
            "prior_late_share": float(existing.prior_late_share),
            "prior_pay_dom": int(existing.prior_pay_dom),
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
        state = self._replay(conn, [aid], t)
        new = [c for c in dict.fromkeys(req.opted_out) if c not in self._opted_out(state, aid)]
        if new:
            self._check_time(existing, t)
            rows = self._book(state, aid, t) if existing.status == "active" else []
            rows += [event_row(EventType.OPT_OUT, t, aid, channel=c) for c in new]
            self._feed(state, rows)
            insert_events(conn, rows)
            self._touch(conn, aid, t)
        return (
            schemas.ArrangementOut(
                arrangement_id=aid,
                created=False,
                status=existing.status,
                opted_out=self._opted_out(state, aid),
                installments=self._plan(state, aid, int(t)),
            ),
            False,
        )

    # ======================================================================================================
    # Decisions
    # ======================================================================================================
    def _default_installment(self, state: _Replay, aid: int, kind: DecisionKind) -> int:
        s, row = state.replay.sched, state.replay.row[aid]
        if kind == DecisionKind.PLAN_CREATED:
            return 0
        if kind == DecisionKind.PRE_DUE:
            return int(s.came_due[row])
        if kind == DecisionKind.PAYMENT_RECEIVED:
            return max(int(s.first_open[row]) - 1, 0)
        return int(s.first_open[row])

    def decide(self, conn: sa.Connection, reqs: Sequence[schemas.DecisionIn]) -> list[schemas.DecisionOut]:
        """Decide a batch of decision points with one policy call, and log everything (uncommitted)."""
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
        times = [self.time_of(r) for r in reqs]
        ids = [r.arrangement_id for r in reqs]
        state = self._replay(conn, ids, max(times))
        kinds: list[DecisionKind] = []
        installments: list[int] = []
        booked: list[dict[str, Any]] = []
        for i, (r, t) in enumerate(zip(reqs, times, strict=True)):
            row = state.rows[r.arrangement_id]
            kind = DecisionKind[r.kind.upper()]
            self._check_time(row, t)
            want = "offered" if kind == DecisionKind.PLAN_CREATED else "active"
            if row.status != want:
                raise ConflictError(
                    f"arrangement {r.arrangement_id} is {row.status}: a {r.kind} decision needs an {want} arrangement"
                )
            booked += self._book(state, r.arrangement_id, t)
            n = int(state.replay.sched.n[state.replay.row[r.arrangement_id]])
            inst = self._default_installment(state, r.arrangement_id, kind) if r.installment is None else r.installment
            if not 0 <= inst < n:
                loc: tuple[str | int, ...] = ("body", "installment") if len(reqs) == 1 else ("body", "decisions", i)
                raise InvalidFieldError(
                    loc, f"installment: {inst} is not an installment of the plan (0..{n - 1})", inst
                )
            kinds.append(kind)
            installments.append(inst)
        batch = state.replay.contexts_at(ids, [int(k) for k in kinds], installments, [math.floor(t) for t in times])

        learned = self.online is not None and self.online.advance(max(times))
        if learned:
            self.metrics.updates.inc()
        started = _time.perf_counter()
        result = self.runner.decide(batch)
        self.metrics.policy_latency.observe(_time.perf_counter() - started)
        shadow = self.runner.decide_shadow(batch)

        acts, prop = result.decisions.actions, result.decisions.propensity
        decision_ids = next_ids(conn, "decision", len(reqs))
        contact = acts[:, 0] > 0
        message_ids = iter(next_ids(conn, "message", int(contact.sum())))
        rules = self.runner.rules
        cal = state.replay.calendar
        send = np.full(len(reqs), np.nan)
        for i, t in enumerate(times):
            if contact[i]:
                d = math.floor(t)
                send[i] = float(rules.send_time(d, int(cal.weekday[d]), acts[i : i + 1, 1])[0])
        masked_names = _masked_rule_names(batch)
        rows: list[dict[str, Any]] = list(booked)
        out: list[schemas.DecisionOut] = []
        space = batch.space
        for i, (r, t) in enumerate(zip(reqs, times, strict=True)):
            aid, kind = r.arrangement_id, kinds[i]
            decision = event_row(
                EventType.DECISION,
                t,
                aid,
                decision_id=decision_ids[i],
                decision_kind=kind.name.lower(),
                installment=installments[i],
                a_channel=int(acts[i, 0]),
                a_send_slot=int(acts[i, 1]),
                a_due_day=int(acts[i, 2]),
                a_deferral=int(acts[i, 3]),
                a_reduction=int(acts[i, 4]),
                propensity=float(prop[i]),
                send_time=None if not contact[i] else float(send[i]),
                masked_rules=masked_names[i],
                policy=result.policy,
                policy_version=result.version,
            )
            self._feed(state, [decision])
            rows.append(decision)
            rows += self._replans(state, aid, t, acts[i])
            message_id = None
            if contact[i]:
                message_id = next(message_ids)
                conn.execute(
                    sa.insert(db.messages).values(
                        message_id=message_id,
                        arrangement_id=aid,
                        decision_id=decision_ids[i],
                        installment=installments[i],
                        channel=_CHANNEL_NAMES[int(acts[i, 0])],
                        purpose=message_purpose(kind),
                        send_time=float(send[i]),
                        state="pending",
                        state_time=None,
                    )
                )
            self._touch(conn, aid, t, "active" if kind == DecisionKind.PLAN_CREATED else None)
            out.append(
                schemas.DecisionOut(
                    decision_id=decision_ids[i],
                    arrangement_id=aid,
                    kind=r.kind,
                    installment=installments[i],
                    time=t,
                    at=self.at_of(t),
                    action=_action(space, acts[i]),
                    message_id=message_id,
                    send_time=None if message_id is None else float(send[i]),
                    send_at=None if message_id is None else self.at_of(float(send[i])),
                    masked_rules=[m for m in masked_names[i].split(",") if m],
                    masked=_masked(batch, i),
                    policy=result.policy,
                    policy_version=result.version,
                    propensity=float(prop[i]),
                    fallback=result.fallback_reason is not None,
                )
            )
            self.metrics.decisions.labels(r.kind, _CHANNEL_NAMES[int(acts[i, 0])], result.policy).inc()
        insert_events(conn, rows)
        if result.fallback_reason is not None:
            self.metrics.fallbacks.labels(result.fallback_reason).inc(len(reqs))
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
                    for i in range(len(reqs))
                ],
            )
        if shadow is not None:
            self._log_shadow(conn, shadow, decision_ids, ids, times, acts)
        if self.online is not None:
            # All decisions of a batch share the batch's latest day (the world decides one day at a time).
            self.online.add_decisions(decision_ids, float(math.floor(max(times))), batch, acts, prop)
            self.online.add_events(rows)
            self.online.save(conn, learned)
        return out

    def _replans(self, state: _Replay, aid: int, t: float, action: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
        """The re-plan events a decision implies, each logged with the plan as it stands after it."""
        cfg = self.config.decisions
        rp = state.replay
        row, s = rp.row[aid], rp.sched
        rows: list[dict[str, Any]] = []
        steps: list[tuple[EventType, dict[str, Any]]] = []
        if action[2] > 0:
            steps.append((EventType.DUE_DAY_SET, {"due_day": int(cfg.due_day_options[int(action[2]) - 1])}))
        if action[3] > 0:
            steps.append((EventType.DEFERRAL, {"deferral_days": int(cfg.deferral_options[int(action[3])])}))
        if action[4] > 0:
            steps.append((EventType.REDUCTION, {"reduction": float(cfg.reduction_options[int(action[4])])}))
        for event, cols in steps:
            r = event_row(event, t, aid, **cols)
            self._feed(state, [r])
            r["n_installments"] = int(s.n[row])
            r["installment_eur"] = float(s.current_amount(np.array([row]))[0])
            if event != EventType.DUE_DAY_SET:
                r["installment"] = int(s.first_open[row])
            rows.append(r)
        return rows

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
    def record(self, conn: sa.Connection, ev: Any) -> schemas.EventOut:
        """Record an event reported by production, with its consequences (uncommitted)."""
        t = self.time_of(ev)
        aid = ev.arrangement_id
        state = self._replay(conn, [aid], t)
        arr = state.rows[aid]
        self._check_time(arr, t)
        status = str(arr.status)
        rows: list[dict[str, Any]] = self._book(state, aid, t) if status == "active" else []
        rp = state.replay
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
            self._feed(state, [pay])
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
            self._feed(state, rows[-len(paid) :] if paid else [])
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
        insert_events(conn, rows)
        self._touch(conn, aid, t, status)
        self.metrics.events.labels(kind).inc()
        if self.online is not None:
            learned = self.online.advance(t)
            if learned:
                self.metrics.updates.inc()
            self.online.add_events(rows)
            self.online.save(conn, learned)
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
        """The call-centre overview of one arrangement (read only)."""
        state = self._replay(conn, [aid], 0)
        arr = state.rows[aid]
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
            installments=self._plan(state, aid, 0),
            opted_out=self._opted_out(state, aid),
            next_action=next_action,
            last_decision=max(decisions.values(), key=lambda d: d.decision_id) if decisions else None,
            contact_history=contact,
        )


def _action(space: Any, a: np.ndarray[Any, Any]) -> schemas.Action:
    return schemas.Action(
        channel=_CHANNEL_NAMES[int(a[0])],
        send_slot=space.option_labels(1)[int(a[1])],
        due_day=None if int(a[2]) == 0 else int(space.due_day_options[int(a[2]) - 1]),
        deferral_days=int(space.deferral_days[int(a[3])]),
        reduction=float(space.reduction_fractions[int(a[4])]),
        indices=[int(x) for x in a],
    )


def _masked(batch: ContextBatch, i: int) -> list[schemas.MaskedOption]:
    ctx = batch[i]
    out = []
    for (part, option), rules in sorted(ctx.masked_by.items()):
        shown = [r for r in rules if r != "not_applicable"]
        if shown:
            out.append(
                schemas.MaskedOption(
                    part=PART_NAMES[part],
                    option=batch.space.option_labels(part)[option],
                    rules=shown,
                )
            )
    return out


def _masked_rule_names(batch: ContextBatch) -> list[str]:
    """Per row, the comma-separated rules that masked something (applicability excluded), as the world logs."""
    names = [n for n in batch.forbidden if n != "not_applicable"]
    hit = {n: np.asarray(batch.forbidden[n].any(axis=1), dtype=bool) for n in names}
    return [",".join(n for n in names if hit[n][i]) for i in range(len(batch))]


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
