"""Events by event time: an event stamped before events already recorded re-derives its arrangement's history.

Production's reports do not arrive in the order things happened: a bank payment is booked with its value date
days after a reminder went out, a delivery receipt comes back after the next decision. An event of an
arrangement whose time precedes the arrangement's latest recorded event is *late*. It is accepted (a part of
:class:`serving.service.DecisionService`, a mixin) like this:

1. The arrangement's reported events are read from the store (those with an ``arrived_at``: registrations,
   decisions, payments, message events, opt-outs, declared endings; never what the ledger derived), the late
   event is put among them by event time (after those of the same time: they arrived first), and the whole
   history is replayed, in event-time order, through a fresh :class:`regsim.replay.LogReplay`, whose ledger
   derives everything else again (installments paid, missed, completions, breakdowns with their costs,
   cancelled reminders) exactly as for events that arrive in order. The decisions stay as they were taken.
2. The late event is checked where it now stands (a payment needs an active arrangement and at most the
   balance, a message is sent at most once, an ending needs an open arrangement), and so is every
   later payment already recorded: if the history cannot be reconciled, the late event is refused (409) and
   nothing changes.
3. What the late event makes moot is cancelled: a reminder still pending about an installment it paid, every
   pending message of an arrangement it ended (the ledger's :meth:`~regsim.ledger_messages.MessageLedger.still_wanted`,
   at the arrangement's latest time).
4. A message production already reported sent after the moment that made it moot (a reminder that went out
   after the payment, which the server learned of later) is not cancelled after the fact: it went out. The
   cancellation the replay derived for it is dropped and an *incident* is recorded (``incidents`` table, one
   per message: never lost on a later re-derivation, never duplicated), counted in ``/metrics``
   (``regsim_incidents_total``) and shown in the arrangement's overview. The same holds for a ``message_sent``
   that arrives in order for a message the server has already cancelled (the dispatcher had it before it heard
   of the payment): it is recorded through this re-derivation, not refused, and answered ``"late": false``.
5. The arrangement's log in the store is rewritten in event-time order (each reported event once, with the
   time it arrived), its messages' states and its status are updated, and the workspace takes the replayed
   state.

An event that arrives in order costs nothing of this: it is applied to the cached state as before. A decision
is taken at the arrangement's present, never late (409).

The online learner is given the re-derived log (:meth:`serving.online.OnlineLearner.rederived`): every decision
of the arrangement is processed again in event-time order, and what the learner took from the old log is
replaced by what in-order processing takes from the new one (each matured decision's reward, decisions that
matured early because of an ending the late event undid, or late because of one it adds, the pending ones), each
decision in the context it was taken in (:func:`serving.taken_contexts.taken_contexts`, from the order the
arrangement's events arrived in, so that a second late event does not correct a decision in the context the
first one's re-derived log gives it). For the linear bandits' statistics this is exact.
"""

from __future__ import annotations

import datetime as dt
import logging
import time as _time
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from regsim.arrangement import ArrangementStatus
from regsim.config import CHANNELS, WorldConfig
from regsim.eventlog import EventType
from regsim.ledger import OPEN_STATUSES
from regsim.messages import MessageState
from regsim.replay import LogReplay, morning_booking_day
from serving import db, schemas
from serving.cache import ArrangementInfo, Workspace
from serving.metrics import Metrics
from serving.online import OnlineLearner
from serving.refusals import ConflictError
from serving.store import event_row, events_table, execute_many, insert_events
from serving.store_rows import rows_of
from serving.taken_contexts import taken_contexts

__all__ = ["LateEventOps", "incidents_of", "mark_arrived"]

log = logging.getLogger("regsim.serving")

_CHANNEL_INDEX = {name: k for k, name in enumerate(("none", *CHANNELS))}
_STATE_NAMES = {int(s): s.name.lower() for s in MessageState}
_OPEN = frozenset(int(s) for s in OPEN_STATUSES)
_ACTIVE_NAME = "active"
_ENDINGS = ("payment", "completed", "broken", "referred")

_MESSAGE_STATE = (
    sa.update(db.messages)
    .where(db.messages.c.message_id == sa.bindparam("b_id"))
    .values(state=sa.bindparam("b_state"), state_time=sa.bindparam("b_t"))
)


def mark_arrived(rows: Sequence[dict[str, Any]], events: frozenset[str], now: float, first_only: bool = False) -> None:
    """Stamp the reported rows among ``rows`` (those whose event is in ``events``) with their arrival time."""
    for r in rows:
        if r["event"] in events:
            r["arrived_at"] = now
            if first_only:
                return


class LateEventOps:
    """The late-event part of the service (see the module docstring)."""

    config: WorldConfig
    metrics: Metrics
    epoch: dt.date
    template: LogReplay
    online: OnlineLearner | None
    dirty: bool
    learned: bool

    # (defined by the service)
    def _message(self, ws: Workspace, aid: int, message_id: int) -> np.ndarray[Any, Any]:
        raise NotImplementedError

    def _learn(self, t: float, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def at_of(self, t: float) -> dt.datetime:
        raise NotImplementedError

    def count(self, counter: Any, n: float = 1.0) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------------
    def record_late(
        self, conn: sa.Connection, ws: Workspace, info: ArrangementInfo, ev: Any, t: float, late: bool = True
    ) -> schemas.EventOut:
        """Record an event by re-deriving its arrangement's history (see the module docstring).

        Args:
            conn: The write transaction.
            ws: The writer's workspace (takes the re-derived state).
            info: The arrangement's cached row.
            ev: The validated event.
            t: Its time in days.
            late: Whether it is stamped before the arrangement's latest event (counted as late and answered
                ``"late": true``); ``False`` for a ``message_sent`` in order of a message already cancelled
                (point 4 of the module docstring).
        """
        aid, kind = info.arrangement_id, ev.type
        if kind == "installment_missed":
            return self._confirm_missed_late(conn, ws, info, ev, t)
        now = _time.time()
        new = self._reported_row(ws, aid, ev, t, now)
        stored = self._stored_rows(conn, aid)
        reported = [r for r in stored if r["arrived_at"] is not None]
        ordered = sorted([*reported, new], key=lambda r: float(r["time"]))  # stable: ties keep arrival order
        message_ids = self._message_ids(conn, aid)
        old_book = ws.replay.ledger.messages
        old_mine = old_book.of_rows(np.array([ws.replay.row[aid]], dtype=np.int64), ws.replay.ledger.n)
        was_cancelled = {
            int(old_book.message_id[k]) for k in old_mine.tolist() if old_book.state[k] == int(MessageState.CANCELLED)
        }
        booked_day = int(ws.replay.ledger.booked_day[ws.replay.row[aid]])

        fresh = self.template.blank([aid])
        sink = rows_of(fresh)
        ledger, r0 = fresh.ledger, np.array([0], dtype=np.int64)
        rows: list[dict[str, Any]] = []
        paid: list[int] = []
        for e in ordered:
            event = EventType[str(e["event"]).upper()]
            if event != EventType.ARRANGEMENT_CREATED:
                ledger.catch_up(r0, morning_booking_day(event, float(e["time"])))
            rows += sink.take()
            self._check_applicable(fresh, e, e is new)
            fresh.feed(events_table([e], self.epoch), contexts=False)
            out = sink.take()
            if out and out[0]["event"] == e["event"]:
                out[0]["arrived_at"] = e["arrived_at"]
            if event == EventType.DECISION:
                self._name_message(fresh, int(e["decision_id"]), message_ids)
            if e is new:
                paid = [int(x["installment"]) for x in out if x["event"] == "installment_paid"]
            rows += out
        ledger.catch_up(r0, booked_day)
        rows += sink.take()
        book = ledger.messages
        pending = book.of_rows(r0, 1)
        pending = pending[book.state[pending] == int(MessageState.PENDING)]
        if len(pending):
            ledger.still_wanted(pending, max(info.last_time, t))
        rows += sink.take()
        rows, incidents = _incidents(rows, aid, now)

        # Everything is checked: write.
        conn.execute(sa.delete(db.events).where(db.events.c.arrangement_id == aid))
        insert_events(conn, rows)
        self._store_messages(conn, fresh, rows)
        # The latest event of the re-derived log (derived events the late one undid may have been the latest).
        status, last_time = _status_name(fresh), max(float(r["time"]) for r in rows)
        conn.execute(
            sa.update(db.arrangements)
            .where(db.arrangements.c.arrangement_id == aid)
            .values(status=status, last_time=last_time)
        )
        new_incidents, changed_incidents = self._store_incidents(conn, aid, incidents)
        ws.replay.merge(fresh)
        info.status, info.last_time = status, last_time

        self.count(self.metrics.events.labels(kind))
        if late:
            self.count(self.metrics.late_events.labels(kind))
        for incident in new_incidents:
            self.count(self.metrics.incidents.labels(incident["kind"]))
        newly = [
            x
            for x in rows
            if x["event"] == "message_cancelled" and int(x["message_id"]) not in was_cancelled and x["message_id"] >= 0
        ]
        self._count_cancelled_after(rows, {id(x) for x in newly})
        self._learn(max(info.last_time, t), [])  # (the clock)
        self._relearn(aid, stored, rows)
        return schemas.EventOut(
            arrangement_id=aid,
            type=kind,
            time=t,
            at=self.at_of(t),
            status=status,
            installments_paid=paid,
            cancelled=[_cancelled_out(fresh, x) for x in newly],
            late=late,
            incidents=[_incident_out(i) for i in (*new_incidents, *changed_incidents)],
        )

    def _relearn(self, aid: int, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
        """Tell the online learner of the re-derived log (:meth:`serving.online.OnlineLearner.rederived`)."""
        if self.online is None:
            return
        taken = taken_contexts(self.template, before, self.epoch)
        if self.online.rederived(aid, events_table(before, self.epoch), events_table(after, self.epoch), taken):
            self.learned = True
        self.dirty = True

    # ------------------------------------------------------------------------------------------------------
    def _reported_row(self, ws: Workspace, aid: int, ev: Any, t: float, now: float) -> dict[str, Any]:
        """The late event as a store row (what a replay applies)."""
        kind = ev.type
        event = EventType[kind.upper()]
        if kind == "payment":
            row = event_row(event, t, aid, amount_eur=float(ev.amount_eur), channel=ev.channel or "none")
        elif kind.startswith("message_"):
            book = ws.replay.ledger.messages
            k = int(self._message(ws, aid, ev.message_id)[0])
            channel = int(book.channel[k])
            columns: dict[str, Any] = {
                "message_id": int(ev.message_id),
                "channel": _CHANNEL_NAMES[channel],
                "decision_id": int(book.decision[k]),
                "installment": int(book.installment[k]),
            }
            if kind == "message_sent":
                columns["amount_eur"] = float(self._channel_cost[channel] if ev.cost_eur is None else ev.cost_eur)
            row = event_row(event, t, aid, **columns)
        elif kind == "opt_out":
            message = -1
            if ev.message_id is not None:
                self._message(ws, aid, ev.message_id)  # (404 for a message not of this arrangement)
                message = int(ev.message_id)
            row = event_row(event, t, aid, channel=ev.channel, message_id=message)
        else:  # broken, referred
            costs = None if kind != "broken" or ev.collection_costs_eur is None else float(ev.collection_costs_eur)
            row = event_row(event, t, aid, collection_costs_eur=costs)
        row["arrived_at"] = now
        return row

    @property
    def _channel_cost(self) -> list[float]:
        return [0.0, *(c.cost_eur for c in self.config.channels.ordered())]

    def _stored_rows(self, conn: sa.Connection, aid: int) -> list[dict[str, Any]]:
        """The arrangement's stored events (every column, ``arrived_at`` too), in log order."""
        cols = [db.events.c[name] for name in (*db.EVENT_COLUMNS, "arrived_at")]
        stmt = sa.select(*cols).where(db.events.c.arrangement_id == aid).order_by(db.events.c.seq)
        return [dict(r._mapping) for r in conn.execute(stmt)]

    def _message_ids(self, conn: sa.Connection, aid: int) -> dict[int, int]:
        """decision id -> the id the server gave its message, for every message of the arrangement."""
        stmt = sa.select(db.messages.c.decision_id, db.messages.c.message_id).where(db.messages.c.arrangement_id == aid)
        return {int(d): int(m) for d, m in conn.execute(stmt)}

    @staticmethod
    def _name_message(replay: LogReplay, decision_id: int, message_ids: dict[int, int]) -> None:
        """Give a replayed decision's message its server id at once (so its cancellation is logged with it)."""
        message_id = message_ids.get(decision_id)
        if message_id is None:
            return
        book = replay.ledger.messages
        found = np.flatnonzero(book.decision[: book.n] == decision_id)
        if len(found):
            book.message_id[found[0]] = message_id

    def _check_applicable(self, replay: LogReplay, e: dict[str, Any], is_new: bool) -> None:
        """Refuse (409) a history that event-time order cannot reconcile, before anything is written."""
        ledger = replay.ledger
        status = int(ledger.status[0])
        name = _status_name(replay)
        at = f"at time {float(e['time'])}"
        which = "the event" if is_new else f"the {e['event']} already recorded {at}"
        if e["event"] == "payment":
            if name != _ACTIVE_NAME:
                raise ConflictError(
                    f"in event-time order the arrangement is {name} {at}: {which} needs an active arrangement"
                )
            balance = float(ledger.sched.balance[0])
            if float(e["amount_eur"]) > balance + 0.005:
                if is_new:  # (the state's limit: a conflict, as for a payment in order)
                    raise ConflictError(
                        f"amount_eur: {e['amount_eur']} exceeds the open balance of {balance:.2f} EUR {at}"
                    )
                raise ConflictError(f"in event-time order {which} would exceed the open balance of {balance:.2f} EUR")
        elif is_new and e["event"] == "message_sent":
            # Sent twice is refused; sent after it was cancelled (made moot) went out: it becomes an incident.
            book = ledger.messages
            found = np.flatnonzero(book.decision[: book.n] == int(e["decision_id"]))
            if len(found) and book.state[found[0]] == int(MessageState.SENT):
                raise ConflictError(f"message {e['message_id']} is sent {at}; it cannot be sent again")
        elif is_new and e["event"] in ("broken", "referred") and status not in _OPEN:
            raise ConflictError(f"arrangement {e['arrangement_id']} is {name} {at}; it cannot become {e['event']}")

    def _confirm_missed_late(
        self, conn: sa.Connection, ws: Workspace, info: ArrangementInfo, ev: Any, t: float
    ) -> schemas.EventOut:
        """A late confirmation of a missed installment: checked against the log (it changes nothing)."""
        aid = info.arrangement_id
        s, row = ws.replay.ledger.sched, ws.replay.row[aid]
        n = int(s.n[row])
        if not 0 <= ev.installment < n:
            # The same refusal as in order (serving.service): the request is valid, the plan has no such
            # installment, so it conflicts with the arrangement's state (409), as the OpenAPI schema says.
            raise ConflictError(f"installment: {ev.installment} is not in the plan of arrangement {aid} (0..{n - 1})")
        missed = conn.execute(
            sa.select(sa.func.min(db.events.c.time)).where(
                db.events.c.arrangement_id == aid,
                db.events.c.event == "installment_missed",
                db.events.c.installment == ev.installment,
            )
        ).scalar_one()
        if missed is None or float(missed) > t:
            raise ConflictError(f"installment {ev.installment} of arrangement {aid} is not missed at time {t}")
        self.count(self.metrics.events.labels(ev.type))
        self.count(self.metrics.late_events.labels(ev.type))
        return schemas.EventOut(
            arrangement_id=aid,
            type=ev.type,
            time=t,
            at=self.at_of(t),
            status=ws.status_of(aid),
            installments_paid=[],
            cancelled=[],
            late=True,
        )

    def _store_messages(self, conn: sa.Connection, replay: LogReplay, rows: list[dict[str, Any]]) -> None:
        """Every message of the arrangement to the state the re-derivation left it in."""
        when: dict[int, float] = {}
        for r in rows:
            if r["event"] in ("message_sent", "message_cancelled"):
                when[int(r["message_id"])] = float(r["time"])
        book = replay.ledger.messages
        params = []
        for k in range(book.n):
            mid = int(book.message_id[k])
            if mid < 0:
                continue
            state = _STATE_NAMES[int(book.state[k])]
            params.append({"b_id": mid, "b_state": state, "b_t": None if state == "pending" else when.get(mid)})
        execute_many(conn, _MESSAGE_STATE, params)

    def _store_incidents(
        self, conn: sa.Connection, aid: int, incidents: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Make the arrangement's stored incidents those its re-derived history shows (one per message).

        An incident already stored for a message keeps its row and time of recording; if the history now
        puts the message's mootness elsewhere (a late payment before the breakdown that had made it moot:
        moot by the payment, earlier), its kind and moot time follow; if the history no longer makes the
        message moot when it went out, the incident is withdrawn (logged). So any arrival order of the same
        events leaves the same incidents. Returns the incidents new and those changed.
        """
        fields = ("kind", "moot_time")
        stored = {
            int(r.message_id): r
            for r in conn.execute(sa.select(db.incidents).where(db.incidents.c.arrangement_id == aid))
        }
        derived = {int(i["message_id"]): i for i in incidents}
        withdrawn = sorted(set(stored) - set(derived))
        if withdrawn:
            conn.execute(sa.delete(db.incidents).where(db.incidents.c.message_id.in_(withdrawn)))
            log.info("arrangement %d: incidents of messages %s withdrawn by a late event", aid, withdrawn)
        new = [i for m, i in derived.items() if m not in stored]
        changed = [i for m, i in derived.items() if m in stored and any(i[f] != stored[m]._mapping[f] for f in fields)]
        if new:
            conn.execute(sa.insert(db.incidents), new)
        for i in changed:
            conn.execute(
                sa.update(db.incidents)
                .where(db.incidents.c.message_id == i["message_id"])
                .values(kind=i["kind"], moot_time=i["moot_time"])
            )
        return new, changed

    def _count_cancelled_after(self, rows: list[dict[str, Any]], newly: set[int]) -> None:
        cause = "payment"
        for r in rows:
            if r["event"] in _ENDINGS:
                cause = r["event"]
            elif id(r) in newly:
                self.count(self.metrics.cancelled.labels(cause))


_CHANNEL_NAMES = ("none", *CHANNELS)
_STATUS_NAMES = tuple(s.name.lower() for s in ArrangementStatus)


def _status_name(replay: LogReplay) -> str:
    """The status of a one-arrangement replay's arrangement."""
    return _STATUS_NAMES[int(replay.ledger.status[0])]


def _incidents(rows: list[dict[str, Any]], aid: int, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages reported sent after the moment the replay cancelled them: the cancellation dropped, an incident.

    Returns the rows to store and the incidents (as ``incidents`` rows).
    """
    cancelled_at: dict[int, tuple[int, str]] = {}  # message id -> (index of its cancellation, its cause)
    cause = "payment"
    for k, r in enumerate(rows):
        if r["event"] in _ENDINGS:
            cause = r["event"]
        elif r["event"] == "message_cancelled" and int(r["message_id"]) >= 0:
            cancelled_at[int(r["message_id"])] = (k, cause)
    drop: set[int] = set()
    incidents = []
    for r in rows:
        if r["event"] != "message_sent":
            continue
        hit = cancelled_at.get(int(r["message_id"]))
        if hit is None or float(rows[hit[0]]["time"]) > float(r["time"]):
            continue
        k, cause = hit
        drop.add(k)
        incidents.append(
            {
                "arrangement_id": aid,
                "kind": f"sent_after_{cause}",
                "message_id": int(r["message_id"]),
                "decision_id": int(r["decision_id"]),
                "installment": int(r["installment"]),
                "channel": str(r["channel"]),
                "moot_time": float(rows[k]["time"]),
                "sent_time": float(r["time"]),
                "recorded_at": now,
            }
        )
    return [r for k, r in enumerate(rows) if k not in drop], incidents


def _cancelled_out(replay: LogReplay, row: dict[str, Any]) -> schemas.CancelledReminder:
    book = replay.ledger.messages
    k = int(book.positions_of(np.array([row["message_id"]], dtype=np.int64))[0])
    return schemas.CancelledReminder(
        message_id=int(row["message_id"]),
        decision_id=int(row["decision_id"]),
        installment=int(row["installment"]),
        channel=row["channel"],
        send_time=float(book.send_time[k]),
    )


def _incident_out(row: dict[str, Any]) -> schemas.Incident:
    return schemas.Incident(
        kind=row["kind"],
        message_id=int(row["message_id"]),
        decision_id=int(row["decision_id"]),
        installment=int(row["installment"]),
        channel=row["channel"],
        moot_time=float(row["moot_time"]),
        sent_time=float(row["sent_time"]),
    )


def incidents_of(conn: sa.Connection, aid: int) -> list[schemas.Incident]:
    """The incidents recorded for an arrangement, oldest first."""
    stmt = sa.select(db.incidents).where(db.incidents.c.arrangement_id == aid).order_by(db.incidents.c.id)
    return [_incident_out(dict(r._mapping)) for r in conn.execute(stmt)]
