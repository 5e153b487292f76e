"""Rebuilding what production knows from an event log: plans, observable history, messages and decision contexts.

:class:`LogReplay` feeds a log's events, in log order, into a :class:`~regsim.ledger.Ledger`, the code the world
and the server change arrangements with. Only the events that come from outside the ledger are applied:
plans agreed, decisions, payments, message events, opt-outs, referrals, and breakdowns or cancellations that
the ledger did not derive itself. Everything else in the log (installments falling due, paid and missed,
completions, re-plans, breakdowns, cancelled reminders) is what those events imply, and the ledger derives it
again, on the day the world booked it (:meth:`~regsim.ledger.Ledger.catch_up` before each event of an
arrangement). So the context the replay builds for a decision equals the one the world gave the policy, which
makes the event log sufficient for serving, off-policy evaluation and retraining; with ``keep_events=True`` the
replay keeps what the ledger wrote, to hold it against the log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus
from regsim.calendar import Calendar
from regsim.clock import Time
from regsim.config import CHANNELS, WorldConfig
from regsim.context import ContextColumns
from regsim.decision import ActionSpace, ContextBatch, DecisionKind
from regsim.eventlog import EventType, event_codes
from regsim.ledger import OPEN_STATUSES, Ledger
from regsim.ledger_menu import levels_from_log
from regsim.messages import MessageState
from regsim.rewards import EventChunk
from regsim.rules import RuleSet

__all__ = ["APPLIED_EVENTS", "LogReplay", "contexts_from_log", "morning_booking_day"]

_MARGIN_DAYS = 3 * 366
_CHANNEL_INDEX = {name: k for k, name in enumerate(("none", *CHANNELS))}
_KIND_INDEX = {k.name.lower(): int(k) for k in DecisionKind}

#: Events that come from outside the ledger: a replay applies them (the rest of a log is derived again).
APPLIED_EVENTS = frozenset(
    {
        EventType.ARRANGEMENT_CREATED,
        EventType.DECISION,
        EventType.PAYMENT,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_DELIVERED,
        EventType.MESSAGE_OPENED,
        EventType.MESSAGE_CLICKED,
        EventType.OPT_OUT,
        EventType.REFERRED,
        EventType.MENU_SHOWN,
        EventType.MENU_CHOICE,
        EventType.CASE_RESOLVED,
    }
)
#: Events a ledger derives, but which may also come from outside: applied when the ledger has not derived them
#: (a breakdown declared by the creditor; a message dropped when it was about to go out).
_APPLIED_UNLESS_DERIVED = frozenset({EventType.BROKEN, EventType.MESSAGE_CANCELLED})
#: Columns the replay reads, by type (floats may be unset: NaN).
_FLOAT_COLUMNS = ("time", "amount_eur", "send_time", "propensity", "prior_late_share", "collection_costs_eur")
_INT_COLUMNS = (
    "arrangement_id",
    "installment",
    "message_id",
    "decision_id",
    "a_channel",
    "a_send_slot",
    "a_due_day",
    "a_deferral",
    "a_reduction",
    "due_day",
    "n_installments",
    "prior_payments",
    "prior_pay_dom",
    "deferral_days",
)
_OPEN = np.array([int(s) for s in OPEN_STATUSES], dtype=np.int8)


def morning_booking_day(event: EventType, t: float) -> int:
    """The last day whose bookkeeping (:meth:`~regsim.ledger.Ledger.book`) precedes an event at time ``t``.

    A day's bookkeeping happens in its morning, at time ``d`` (:mod:`regsim.engine`), after the morning's
    referrals and before its arrivals, breakdowns and decision points. An event later in the day comes after
    it. An event at the very moment ``d`` that the morning does not make itself (a referral; a message read, a
    link clicked or a payment made exactly at midnight, scheduled the day before) comes before it.
    """
    day = math.floor(t)
    if t == day and event not in _MORNING_EVENTS:
        return day - 1
    return day


#: Codes of the events a day's bookkeeping logs at the day's start (:meth:`~regsim.ledger.Ledger.book`).
_BOOKED_CODES = np.array([int(e) for e in (EventType.INSTALLMENT_DUE, EventType.INSTALLMENT_MISSED)], dtype=np.int64)

#: Events the morning of a day makes at its start, with or after that day's bookkeeping.
_MORNING_EVENTS = frozenset(
    {EventType.ARRANGEMENT_CREATED, EventType.DECISION, EventType.BROKEN, EventType.MESSAGE_CANCELLED}
)


class LogReplay:
    """Observable state of arrangements rebuilt from their events.

    Args:
        config: The world config the log was made under (rules, decision options, calendar start).
        arrangement_ids: Ids of the arrangements to track.
        horizon_days: Days the calendar must cover (the log's last day; a margin is added).
        keep_events: Keep every event the ledger writes (:attr:`events`), applied and derived.
    """

    def __init__(
        self, config: WorldConfig, arrangement_ids: Sequence[int], horizon_days: int, keep_events: bool = False
    ) -> None:
        self.config = config
        self.calendar = Calendar(config.simulation.start_date, int(horizon_days) + _MARGIN_DAYS)
        self.space = ActionSpace.from_config(config.decisions)
        self.rules = RuleSet(config.rules, self.space)
        self.keep_events = keep_events
        self.events: list[EventChunk] = []
        self._setup(arrangement_ids)

    def _setup(self, arrangement_ids: Sequence[int]) -> None:
        self.row = {int(a): k for k, a in enumerate(arrangement_ids)}
        self.ids = np.asarray(list(self.row), dtype=np.int64)
        self._ids_buf = self.ids
        self.ledger = Ledger(self.config, len(self.ids), self.calendar, self)
        self._message_of: dict[int, int] = {}  # decision id -> book position of its message
        self._menus: dict[int, NDArray[np.int64]] = {}  # menu id -> its slot levels (self-service)

    # -- the ledger's sink ----------------------------------------------------------------------------------
    def keeps(self, event: EventType) -> bool:
        """Events are kept only with ``keep_events``."""
        return self.keep_events

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        """Keep what the ledger wrote (with ``keep_events``), by arrangement id."""
        if self.keep_events and len(rows):
            cols = dict(columns)
            cols["time"] = np.broadcast_to(np.asarray(t, dtype=np.float64), np.shape(rows)).copy()
            cols["arrangement_id"] = self.ids[rows]
            self.events.append((event, np.asarray(rows), cols))

    # -- feeding events ---------------------------------------------------------------------------------------
    def feed(self, events: pa.Table, contexts: bool = True) -> ContextBatch | None:
        """Apply events in log order; return the contexts of the decisions among them (``None`` if none, or
        without ``contexts``)."""
        codes = event_codes(events)
        cols: dict[str, Any] = {
            name: events.column(name).to_numpy(zero_copy_only=False).tolist() for name in _FLOAT_COLUMNS
        }
        cols.update({name: events.column(name).to_numpy(zero_copy_only=False).tolist() for name in _INT_COLUMNS})
        cols["channel"] = [_CHANNEL_INDEX[c] for c in events.column("channel").to_pylist()]
        cols["decision_kind"] = events.column("decision_kind").to_pylist()
        cols["masked_rules"] = events.column("masked_rules").to_pylist()
        cols["policy"] = events.column("policy").to_pylist()
        cols["policy_version"] = events.column("policy_version").to_pylist()
        found: list[ContextColumns] = []
        for e, code in enumerate(codes.tolist()):
            out = self._apply(EventType(code), {name: values[e] for name, values in cols.items()}, contexts)
            if out is not None:
                found.append(out)
        self._book_through_logged_days(events, codes)
        if not found:
            return None
        columns = _stack([cast(dict[str, NDArray[Any]], c) for c in found])
        batch = ContextBatch(self.space, columns, np.ones((len(found), self.space.mask_size), dtype=bool))
        return self.rules.apply(batch)

    def _book_through_logged_days(self, events: pa.Table, codes: NDArray[Any]) -> None:
        """Book each arrangement through the last day whose bookkeeping the log records.

        An installment falling due or missed is logged on the day it was booked (at the day's start), so it
        proves that the ledger that wrote the log had booked that day. Events applied from outside catch their
        arrangement up before them, but bookkeeping after an arrangement's last outside event (the server's
        ``POST /v1/clock``, the end of a simulated run) is followed by none: without this the replay would stop
        short of it and derive those installments again, a second time, at the arrangement's next event.
        """
        booked = np.isin(codes, _BOOKED_CODES)
        if not booked.any():
            return
        ids = events.column("arrangement_id").to_numpy(zero_copy_only=False)[booked].tolist()
        rows = np.array([self.row.get(int(a), -1) for a in ids], dtype=np.int64)
        days = np.floor(events.column("time").to_numpy(zero_copy_only=False)[booked]).astype(np.int64)
        tracked = rows >= 0
        rows, days = rows[tracked], days[tracked]
        last = np.full(len(self.ids), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, rows, days)
        touched = np.unique(rows)
        behind = touched[self.ledger.booked_day[touched] < last[touched]]
        if len(behind):
            self.ledger.catch_up(behind, last[behind])

    def _apply(self, event: EventType, e: dict[str, Any], contexts: bool = True) -> ContextColumns | None:
        """Apply one logged event (a dict of its columns); returns a decision's context columns."""
        row = self.row.get(int(e["arrangement_id"]))
        if row is None or not (event in APPLIED_EVENTS or event in _APPLIED_UNLESS_DERIVED):
            return None
        ledger = self.ledger
        t = float(e["time"])
        day = math.floor(t)
        r = np.array([row], dtype=np.int64)
        if event != EventType.ARRANGEMENT_CREATED:
            ledger.catch_up(r, morning_booking_day(event, t))
        if event == EventType.ARRANGEMENT_CREATED:
            ledger.create(
                r,
                t,
                day,
                debt_eur=np.array([e["amount_eur"]]),
                n_installments=np.array([e["n_installments"]], dtype=np.int64),
                due_day=int(e["due_day"]),
                prior_payments=np.array([e["prior_payments"]], dtype=np.int64),
                prior_late_share=np.array([e["prior_late_share"]]),
                prior_pay_dom=np.array([e["prior_pay_dom"]], dtype=np.int64),
            )
        elif event == EventType.DECISION:
            kind = _KIND_INDEX[str(e["decision_kind"])]
            out = self.columns_at(r, np.array([kind]), np.array([int(e["installment"])]), day) if contexts else None
            action = np.array(
                [[int(e[p]) for p in ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")]]
            )
            positions = ledger.decide(
                r,
                t,
                day,
                decision_ids=np.array([e["decision_id"]], dtype=np.int64),
                kinds=np.array([kind], dtype=np.int64),
                installments=np.array([e["installment"]], dtype=np.int64),
                actions=action,
                propensity=np.array([e["propensity"]]),
                send_time=np.array([e["send_time"]]),
                masked_rules=[e["masked_rules"] or ""],
                policy=str(e["policy"]),
                policy_version=str(e["policy_version"]),
                message_ids=np.array([-1], dtype=np.int64),  # learned from the message's first event
            )
            if len(positions):
                self._message_of[int(e["decision_id"])] = int(positions[0])
            return out
        elif event in (EventType.MENU_SHOWN, EventType.MENU_CHOICE, EventType.CASE_RESOLVED):
            self._self_service(event, e, r, t, day)
        elif event == EventType.PAYMENT:
            ledger.pay(r, np.array([e["amount_eur"]]), np.array([t]), day, int(e["channel"]))
        elif event == EventType.OPT_OUT:
            position = self._message(e)
            ledger.opt_out(r, np.array([int(e["channel"])]), t, np.array([position], dtype=np.int64))
        elif event == EventType.REFERRED:
            if ledger.status[row] in _OPEN:
                ledger.end(r, t, ArrangementStatus.REFERRED)
        elif event == EventType.BROKEN:
            if ledger.status[row] in _OPEN:  # a breakdown declared from outside (else: derived already)
                costs = e["collection_costs_eur"]
                ledger.end(r, t, ArrangementStatus.BROKEN, None if math.isnan(costs) else np.array([costs]))
        else:  # a message event
            position = self._message(e)
            if position < 0:
                return None  # a message of a decision outside the log (or of another arrangement)
            m = np.array([position], dtype=np.int64)
            if event == EventType.MESSAGE_SENT:
                ledger.message_sent(m, t, np.array([e["amount_eur"]]))
            elif event == EventType.MESSAGE_DELIVERED:
                ledger.message_delivered(m, t)
            elif event == EventType.MESSAGE_OPENED:
                ledger.message_opened(m, t)
            elif event == EventType.MESSAGE_CLICKED:
                ledger.message_clicked(m, t)
            elif ledger.messages.state[position] == int(MessageState.PENDING):  # cancelled from outside
                ledger.cancel(m, t)
        return None

    def _self_service(self, event: EventType, e: dict[str, Any], r: NDArray[np.int64], t: float, day: int) -> None:
        """Apply a self-service event: a menu shown (kept for its choice), a choice, a case staff resolved."""
        ledger, menu_id = self.ledger, int(e["decision_id"])
        ids = np.array([menu_id], dtype=np.int64)
        inst = np.array([int(e["installment"])], dtype=np.int64)
        if event == EventType.MENU_SHOWN:
            cols = [np.array([int(e[c])]) for c in ("a_deferral", "a_reduction", "a_due_day", "a_channel")]
            levels = levels_from_log(*cols)
            self._menus[menu_id] = levels
            ledger.menu_shown(
                r,
                t,
                menu_ids=ids,
                installments=inst,
                levels=levels,
                propensity=np.array([e["propensity"]]),
                masked_rules=[e["masked_rules"] or ""],
                policy=str(e["policy"]),
                policy_version=str(e["policy_version"]),
            )
        elif event == EventType.MENU_CHOICE:
            shown = self._menus.get(menu_id)
            if shown is None:
                raise ValueError(f"menu_choice of menu {menu_id} without its menu_shown event in the log")
            positions = ledger.menu_chosen(
                r,
                t,
                day,
                menu_ids=ids,
                installments=inst,
                levels=shown,
                options=np.array([int(e["a_channel"])], dtype=np.int64),
                message_ids=np.array([-1], dtype=np.int64),  # learned from the message's first event
            )
            if len(positions):
                self._message_of[menu_id] = int(positions[0])
        elif ledger.status[int(r[0])] == int(ArrangementStatus.ACTIVE):  # a case resolved by staff
            ledger.case_resolved(
                r,
                t,
                day,
                menu_ids=ids,
                deferral_days=np.array([int(e["deferral_days"])], dtype=np.int64),
                n_installments=np.array([int(e["n_installments"])], dtype=np.int64),
                cost_eur=np.array([e["amount_eur"]]),
            )

    def _message(self, e: dict[str, Any]) -> int:
        """The book position of an event's message (``-1`` if none), learning the message's id."""
        decision = int(e["decision_id"])
        position = self._message_of.get(decision, -1)
        m = self.ledger.messages
        if position < 0 and decision >= 0:
            found = np.flatnonzero(m.decision[: m.n] == decision)
            position = int(found[0]) if len(found) else -1
        if position < 0 and int(e["message_id"]) >= 0:  # (an opt-out names its message, not its decision)
            found = np.flatnonzero(m.message_id[: m.n] == int(e["message_id"]))
            position = int(found[0]) if len(found) else -1
        if position >= 0 and int(e["message_id"]) >= 0:
            self.ledger.messages.message_id[position] = int(e["message_id"])
        return position

    # -- contexts -----------------------------------------------------------------------------------------
    def columns_at(
        self, rows: NDArray[np.int64], kinds: NDArray[np.int64], installments: NDArray[np.int64], day: int
    ) -> ContextColumns:
        """The context columns of decision points of these rows on one day (before any decision is applied)."""
        out = self.ledger.history.context_columns(rows, kinds, installments, day, self.ledger.sched, self.calendar)
        out["arrangement_id"] = self.ids[rows]
        return out

    def contexts_at(
        self,
        arrangement_ids: Sequence[int],
        kinds: Sequence[int],
        installments: Sequence[int],
        days: Sequence[int],
    ) -> ContextBatch:
        """Contexts of new decision points, built exactly as :meth:`feed` builds a logged decision's.

        Each arrangement is first caught up to its decision day (the world's morning bookkeeping), then its
        context is taken from the replayed plan and history and the rules are applied. Nothing is recorded: the
        caller logs the decision (and applies it to the ledger) once it is taken. This is how the server decides
        for a live arrangement with the same code that replays a simulated one.

        Args:
            arrangement_ids: Tracked arrangements (one row each; an id may repeat).
            kinds: :class:`~regsim.decision.DecisionKind` of each decision point.
            installments: The installment each decision is about (-1 if none).
            days: The decision day of each row (days since the calendar's start).

        Raises:
            KeyError: An arrangement is not tracked by this replay.
        """
        ids = [int(a) for a in arrangement_ids]
        unknown = sorted({a for a in ids if a not in self.row})
        if unknown:
            raise KeyError(f"arrangements {unknown} are not tracked by this replay")
        rows = np.array([self.row[a] for a in ids], dtype=np.int64)
        kind_arr = np.asarray(kinds, dtype=np.int64)
        inst_arr = np.asarray(installments, dtype=np.int64)
        day_arr = np.asarray(days, dtype=np.int64)
        self.ledger.catch_up(rows, day_arr)
        first = int(day_arr[0]) if len(day_arr) else 0
        if len(day_arr) and not (day_arr != first).any():
            # One day (the server's usual group): the columns as they are, without splitting and re-stacking them.
            columns = self.columns_at(rows, kind_arr, inst_arr, first)
        else:
            parts: list[tuple[NDArray[np.int64], dict[str, NDArray[Any]]]] = []
            for day in np.unique(day_arr).tolist():
                at = np.flatnonzero(day_arr == day)
                cols = self.columns_at(rows[at], kind_arr[at], inst_arr[at], int(day))
                parts.append((at, cast(dict[str, NDArray[Any]], cols)))
            order = np.argsort(np.concatenate([at for at, _ in parts]), kind="stable")
            columns = _stack([c for _, c in parts], order)
        batch = ContextBatch(self.space, columns, np.ones((len(rows), self.space.mask_size), dtype=bool))
        return self.rules.apply(batch)

    # -- copies of the state (the server's write-through cache) --------------------------------------------
    def blank(self, arrangement_ids: Sequence[int]) -> LogReplay:
        """A replay of some arrangements in their initial state, sharing this one's calendar, space and rules."""
        out = object.__new__(LogReplay)
        out.config, out.calendar, out.space, out.rules = self.config, self.calendar, self.space, self.rules
        out.keep_events, out.events = False, []
        out._setup(arrangement_ids)
        return out

    def subset(self, arrangement_ids: Sequence[int]) -> LogReplay:
        """An independent copy of the state of some arrangements (those not tracked here start empty).

        The copy shares the calendar, action space and rules; changing it leaves this replay untouched until
        :meth:`merge` writes it back. This is how the server works on a request's arrangements and keeps its
        cache unchanged when the transaction fails.
        """
        out = self.blank(arrangement_ids)
        pairs = [(k, self.row[a]) for k, a in enumerate(out.ids.tolist()) if a in self.row]
        if pairs:
            dst, src = (np.array(p, dtype=np.int64) for p in zip(*pairs, strict=True))
            out.ledger.assign(dst, self.ledger.subset(src))
        return out

    def merge(self, other: LogReplay) -> None:
        """Write the state of ``other``'s arrangements into this replay, tracking the ones new to it.

        Rows are added with geometric growth, so the ledger may hold spare rows beyond :attr:`ids`.
        """
        new = [a for a in other.ids.tolist() if a not in self.row]
        if new:
            size = len(self.row) + len(new)
            if size > self.ledger.n:
                self.ledger.grow(max(size, 2 * self.ledger.n, 64))
                ids = np.full(self.ledger.n, -1, dtype=np.int64)
                ids[: len(self.ids)] = self.ids
                self._ids_buf = ids
            for a in new:
                self.row[a] = len(self.row)
            self._ids_buf[size - len(new) : size] = new
            self.ids = self._ids_buf[:size]
        if len(other.ids):
            dst = np.array([self.row[a] for a in other.ids.tolist()], dtype=np.int64)
            self.ledger.assign(dst, other.ledger)
        self._message_of = {}  # (positions moved: looked up in the book again when needed)


def _stack(parts: list[dict[str, NDArray[Any]]], order: NDArray[np.int64] | None = None) -> ContextColumns:
    """Context columns of several parts, one after the other (then in ``order``, if given)."""
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return cast(ContextColumns, out if order is None else {k: v[order] for k, v in out.items()})


def contexts_from_log(events: pa.Table, config: WorldConfig) -> ContextBatch | None:
    """The context of every decision in a log, rebuilt from the log alone (in log order)."""
    ids = np.unique(events.column("arrangement_id").to_numpy())
    horizon = int(np.nanmax(events.column("time").to_numpy())) + 1 if len(events) else 1
    return LogReplay(config, ids.tolist(), horizon).feed(events)
