"""Rebuilding what production knows from an event log: plans, observable history and decision contexts.

:class:`LogReplay` feeds events (in log order) into the same :class:`~regsim.arrangement.Schedules` and
:class:`~regsim.history.ObservableHistory` code the world uses, and advances installment pointers exactly as
the world's morning bookkeeping does. So the context it builds for a decision equals the one the world gave
the policy, which makes the event log sufficient for serving, off-policy evaluation and retraining.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus, Schedules
from regsim.calendar import Calendar
from regsim.config import CHANNELS, WorldConfig
from regsim.decision import ActionSpace, ContextBatch
from regsim.eventlog import EventType, event_codes
from regsim.history import ObservableHistory
from regsim.rules import RuleSet

__all__ = ["LogReplay", "contexts_from_log"]

_CHANNEL_INDEX = {name: k for k, name in enumerate(("none", *CHANNELS))}
_MARGIN_DAYS = 3 * 366
_INF = np.iinfo(np.int64).max
#: Events :meth:`LogReplay.feed_records` applies in bulk (to distinct arrangements on one day).
_VECTOR_CODES = frozenset(
    {int(EventType.DECISION), int(EventType.DUE_DAY_SET), int(EventType.DEFERRAL), int(EventType.REDUCTION)}
)
#: Columns :meth:`LogReplay._apply` reads, by type (floats may be unset: NaN).
_FLOAT_COLUMNS = ("time", "amount_eur", "send_time", "reduction", "prior_late_share")
_INT_COLUMNS = (
    "arrangement_id",
    "installment",
    "message_id",
    "a_channel",
    "due_day",
    "n_installments",
    "deferral_days",
    "prior_payments",
    "prior_pay_dom",
)


_EVENT_CODE = {e.name.lower(): int(e) for e in EventType}


def _columns(
    records: Sequence[Mapping[str, Any]],
) -> tuple[list[int], dict[str, Sequence[Any] | NDArray[Any]], list[int], list[str]]:
    """(codes, columns, channel indices, decision kind names) of store rows, as :meth:`LogReplay._run` takes them.

    Plain lists: for the few events of a request, building arrays would cost more than applying them.
    """
    codes = [_EVENT_CODE[r["event"]] for r in records]
    cols: dict[str, Sequence[Any] | NDArray[Any]] = {
        name: [np.nan if r[name] is None else float(r[name]) for r in records] for name in _FLOAT_COLUMNS
    }
    cols.update({name: [int(r[name]) for r in records] for name in _INT_COLUMNS})
    channel = [_CHANNEL_INDEX[r["channel"]] for r in records]
    names = [str(r["decision_kind"] or "") for r in records]
    return codes, cols, channel, names


class LogReplay:
    """Observable state of arrangements rebuilt from their events.

    Args:
        config: The world config the log was made under (rules, decision options, calendar start).
        arrangement_ids: Ids of the arrangements to track.
        horizon_days: Days the calendar must cover (the log's last day; a margin is added).
    """

    #: (owner attribute or None for the replay itself, array attribute) of the per-arrangement state; found once.
    _STATE_NAMES: list[tuple[str | None, str]] | None = None

    def __init__(self, config: WorldConfig, arrangement_ids: Sequence[int], horizon_days: int) -> None:
        self.config = config
        self.calendar = Calendar(config.simulation.start_date, int(horizon_days) + _MARGIN_DAYS)
        self.space = ActionSpace.from_config(config.decisions)
        self.rules = RuleSet(config.rules, self.space)
        self._setup(arrangement_ids)

    def _setup(self, arrangement_ids: Sequence[int]) -> None:
        config = self.config
        self.row = {int(a): k for k, a in enumerate(arrangement_ids)}
        self.ids = np.asarray(list(self.row), dtype=np.int64)
        self._ids_buf = self.ids
        n = len(self.ids)
        capacity = max(config.rules.max_total_installments, config.arrangements.max_installments)
        self.sched = Schedules(n, capacity, self.calendar, config.arrangements.grace_days)
        self.history = ObservableHistory(n)
        self.status = np.zeros(n, dtype=np.int8)
        self.booked_day = np.full(n, -1, dtype=np.int64)

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def catch_up(self, row: int, day: int) -> None:
        """Run the world's morning bookkeeping (due dates, misses) for one arrangement up to ``day``."""
        if self.booked_day[row] >= day:
            return  # booked up to ``day`` already: the loop below would change nothing
        if self.status[row] != ArrangementStatus.ACTIVE:
            self.booked_day[row] = max(self.booked_day[row], day)
            return
        s, r = self.sched, np.array([row], dtype=np.int64)
        while True:
            nxt_due = int(s.due[row, s.came_due[row]]) if s.came_due[row] < s.n[row] else _INF
            nxt_miss = int(s.due[row, s.miss_ptr[row]]) + s.grace_days + 1 if s.miss_ptr[row] < s.n[row] else _INF
            nxt = max(min(nxt_due, nxt_miss), int(self.booked_day[row]) + 1)
            if nxt > day:
                break
            s.advance_due(r, nxt)
            s.advance_missed(r, nxt)
            self.booked_day[row] = nxt
        self.booked_day[row] = max(self.booked_day[row], day)

    def feed(self, events: pa.Table) -> ContextBatch | None:
        """Apply events in order; return the contexts of the decisions among them (``None`` if none)."""
        codes = event_codes(events)
        cols = {
            name: events.column(name).to_numpy(zero_copy_only=False)
            for name in (
                "time",
                "arrangement_id",
                "installment",
                "amount_eur",
                "message_id",
                "decision_kind",
                "a_channel",
                "send_time",
                "due_day",
                "n_installments",
                "deferral_days",
                "reduction",
                "prior_payments",
                "prior_late_share",
                "prior_pay_dom",
            )
            if name != "decision_kind"
        }
        channel = np.array([_CHANNEL_INDEX[c] for c in events.column("channel").to_pylist()], dtype=np.int64)
        kinds = events.column("decision_kind").combine_chunks()
        kind_names = kinds.dictionary.to_pylist() if len(kinds) else []
        kind_idx = kinds.indices.to_numpy(zero_copy_only=False) if len(kinds) else np.zeros(0)
        names = [kind_names[int(kind_idx[e])] if codes[e] == EventType.DECISION else "" for e in range(len(codes))]
        return self._run(codes, cols, channel, names, contexts=True)

    def feed_records(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Apply events given as store rows, in order, exactly as :meth:`feed` applies them (no contexts built).

        Each record maps the event-log columns (except ``timestamp``) to values: ``event``, ``channel`` and
        ``decision_kind`` by name, unset integers -1 and unset floats ``None``. This spares the server an Arrow
        table for the few events of one request.
        """
        if not records:
            return
        codes = [int(_EVENT_CODE[r["event"]]) for r in records]
        times = [float(r["time"]) for r in records]
        ids = [int(r["arrangement_id"]) for r in records]
        e, n = 0, len(codes)
        while e < n:
            # A run of one kind of event, on one day, for distinct arrangements, is applied to all at once:
            # these events change each arrangement's own rows only, so the order among them does not matter.
            f, code, day = e + 1, codes[e], math.floor(times[e])
            if code in _VECTOR_CODES:
                seen = {ids[e]}
                while f < n and codes[f] == code and math.floor(times[f]) == day and ids[f] not in seen:
                    seen.add(ids[f])
                    f += 1
            if f - e > 1:
                self._apply_many(records[e:f], code, day)
            else:
                self._run(*_columns(records[e:f]), contexts=False)
            e = f

    def _apply_many(self, records: Sequence[Mapping[str, Any]], code: int, day: int) -> None:
        """:meth:`_apply` for events of one kind and day on distinct arrangements, vectorised."""
        records = [r for r in records if int(r["arrangement_id"]) in self.row]
        if not records:
            return
        rows = np.array([self.row[int(r["arrangement_id"])] for r in records], dtype=np.int64)
        for row in rows.tolist():
            self.catch_up(row, day)
        s, h, cfg = self.sched, self.history, self.config.arrangements

        def column(name: str, dtype: Any) -> NDArray[Any]:
            return np.array([r[name] for r in records], dtype=dtype)

        if code == EventType.DECISION:
            channel = column("a_channel", np.int64)
            contact = channel > 0
            if contact.any():
                h.add_contacts(rows[contact], column("send_time", np.float64)[contact])
            plan = np.array([r["decision_kind"] == "plan_created" for r in records], dtype=bool)
            self.status[rows[plan]] = ArrangementStatus.ACTIVE
        elif code == EventType.DUE_DAY_SET:
            s.set_due_day(rows, column("due_day", np.int64), day, cfg.min_days_to_first_due)
        elif code == EventType.DEFERRAL:
            s.defer(rows, column("deferral_days", np.int64))
            h.deferrals[rows] += 1
        elif code == EventType.REDUCTION:
            s.reduce(rows, column("reduction", np.float64), day)
            h.reductions[rows] += 1
        else:  # pragma: no cover - _VECTOR_CODES lists the kinds above
            raise AssertionError(f"event code {code} is not applied in bulk")

    def _run(
        self,
        codes: Sequence[Any] | NDArray[Any],
        cols: Mapping[str, Sequence[Any] | NDArray[Any]],
        channel: Sequence[Any] | NDArray[Any],
        kind_names: list[str],
        contexts: bool,
    ) -> ContextBatch | None:
        rows_out: list[dict[str, NDArray[Any]]] = []
        for e in range(len(codes)):
            row = self.row.get(int(cols["arrangement_id"][e]))
            if row is None:
                continue
            code, t = int(codes[e]), float(cols["time"][e])
            day = int(np.floor(t))
            if code != EventType.ARRANGEMENT_CREATED:
                self.catch_up(row, day)
            rows_out_now = self._apply(e, code, row, t, day, cols, channel, kind_names[e], contexts)
            if rows_out_now is not None:
                rows_out.append(rows_out_now)
        if not rows_out:
            return None
        columns = {k: np.concatenate([r[k] for r in rows_out]) for k in rows_out[0]}
        batch = ContextBatch(self.space, columns, np.ones((len(rows_out), self.space.mask_size), dtype=bool))
        return self.rules.apply(batch)

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
        caller logs the decision (and feeds it) once it is taken. This is how the server decides for a
        live arrangement with the same code that replays a simulated one.

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
        for row, day in zip(rows.tolist(), day_arr.tolist(), strict=True):
            self.catch_up(row, day)
        parts: list[tuple[NDArray[np.int64], dict[str, NDArray[Any]]]] = []
        for day in np.unique(day_arr).tolist():
            at = np.flatnonzero(day_arr == day)
            cols = self.history.context_columns(
                rows[at], kind_arr[at], inst_arr[at], int(day), self.sched, self.calendar
            )
            cols["arrangement_id"] = self.ids[rows[at]]
            parts.append((at, cols))
        order = np.argsort(np.concatenate([at for at, _ in parts]), kind="stable")
        columns = {k: np.concatenate([c[k] for _, c in parts])[order] for k in parts[0][1]}
        batch = ContextBatch(self.space, columns, np.ones((len(rows), self.space.mask_size), dtype=bool))
        return self.rules.apply(batch)

    # -- copies of the state (the server's write-through cache) --------------------------------------------
    def blank(self, arrangement_ids: Sequence[int]) -> LogReplay:
        """A replay of some arrangements in their initial state, sharing this one's calendar, space and rules."""
        out = object.__new__(LogReplay)
        out.config, out.calendar, out.space, out.rules = self.config, self.calendar, self.space, self.rules
        out._setup(arrangement_ids)
        return out

    def _state(self) -> list[tuple[Any, str]]:
        """The per-arrangement state arrays: (owner, attribute) for every public array of the plan and history.

        Every public array of :class:`Schedules` and :class:`ObservableHistory` is per arrangement (first axis);
        copying all of them keeps :meth:`subset` and :meth:`merge` right when a field is added there.
        """
        names = LogReplay._STATE_NAMES
        if names is None:
            names = [(None, "status"), (None, "booked_day")]
            for owner_name in ("sched", "history"):
                owner = getattr(self, owner_name)
                names += [
                    (owner_name, k)
                    for k, v in vars(owner).items()
                    if isinstance(v, np.ndarray) and not k.startswith("_")
                ]
            LogReplay._STATE_NAMES = names
        return [(self if o is None else getattr(self, o), k) for o, k in names]

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
            for (o_owner, name), (s_owner, _) in zip(out._state(), self._state(), strict=True):
                getattr(o_owner, name)[dst] = getattr(s_owner, name)[src]
        return out

    def merge(self, other: LogReplay) -> None:
        """Write the state of ``other``'s arrangements into this replay, tracking the ones new to it.

        Rows are added with geometric growth, so the arrays may hold spare rows beyond :attr:`ids`.
        """
        new = [a for a in other.ids.tolist() if a not in self.row]
        if new:
            size = len(self.row) + len(new)
            if size > len(self.status):
                self._grow(max(size, 2 * len(self.status), 64))
            for a in new:
                self.row[a] = len(self.row)
            self._ids_buf[size - len(new) : size] = new
            self.ids = self._ids_buf[:size]
        if len(other.ids):
            dst = np.array([self.row[a] for a in other.ids.tolist()], dtype=np.int64)
            src = np.array([other.row[a] for a in other.ids.tolist()], dtype=np.int64)
            for (d_owner, name), (s_owner, _) in zip(self._state(), other._state(), strict=True):
                getattr(d_owner, name)[dst] = getattr(s_owner, name)[src]

    def _grow(self, rows: int) -> None:
        bigger = self.blank(range(rows))
        n = len(self.status)
        for (b_owner, name), (s_owner, _) in zip(bigger._state(), self._state(), strict=True):
            getattr(b_owner, name)[:n] = getattr(s_owner, name)
        self.sched, self.history = bigger.sched, bigger.history
        self.status, self.booked_day = bigger.status, bigger.booked_day
        ids = np.full(rows, -1, dtype=np.int64)
        ids[: len(self.ids)] = self.ids
        self._ids_buf = ids

    def _apply(
        self,
        e: int,
        code: int,
        row: int,
        t: float,
        day: int,
        cols: Mapping[str, Sequence[Any] | NDArray[Any]],
        channel: Sequence[Any] | NDArray[Any],
        kind_name: str,
        contexts: bool = True,
    ) -> dict[str, NDArray[Any]] | None:
        s, h, cfg = self.sched, self.history, self.config.arrangements
        r = np.array([row], dtype=np.int64)
        if code == EventType.ARRANGEMENT_CREATED:
            s.create(
                r,
                day,
                np.array([cols["n_installments"][e]]),
                np.array([cols["amount_eur"][e]]),
                int(cols["due_day"][e]),
                cfg.min_days_to_first_due,
            )
            h.created_day[row], h.debt[row] = day, cols["amount_eur"][e]
            h.prior_payments[row] = cols["prior_payments"][e]
            h.prior_late_share[row] = cols["prior_late_share"][e]
            h.prior_pay_dom[row] = cols["prior_pay_dom"][e]
            self.status[row] = ArrangementStatus.OFFERED
            self.booked_day[row] = day
        elif code == EventType.DECISION:
            from regsim.decision import DecisionKind

            kind = DecisionKind[kind_name.upper()]
            out = None
            if contexts:
                out = h.context_columns(
                    r, np.array([int(kind)]), np.array([int(cols["installment"][e])]), day, s, self.calendar
                )
                out["arrangement_id"] = self.ids[r]
            if int(cols["a_channel"][e]) > 0:
                h.add_contacts(r, np.array([cols["send_time"][e]]))
            if kind == DecisionKind.PLAN_CREATED:
                self.status[row] = ArrangementStatus.ACTIVE
            return out
        elif code == EventType.DUE_DAY_SET:
            s.set_due_day(r, np.array([int(cols["due_day"][e])]), day, cfg.min_days_to_first_due)
        elif code == EventType.DEFERRAL:
            s.defer(r, np.array([int(cols["deferral_days"][e])]))
            h.deferrals[row] += 1
        elif code == EventType.REDUCTION:
            s.reduce(r, np.array([float(cols["reduction"][e])]), day)
            h.reductions[row] += 1
        elif code == EventType.PAYMENT:
            s.pay(r, np.array([cols["amount_eur"][e]]), day)
            h.last_payment_time[row] = t
        elif code == EventType.INSTALLMENT_PAID:
            h.on_time[row] += int(cols["deferral_days"][e] <= 0)
        elif code == EventType.INSTALLMENT_MISSED:
            h.missed[row] += 1
        elif code in (
            EventType.MESSAGE_SENT,
            EventType.MESSAGE_DELIVERED,
            EventType.MESSAGE_OPENED,
            EventType.MESSAGE_CLICKED,
        ):
            counter = {
                EventType.MESSAGE_SENT: h.sent,
                EventType.MESSAGE_DELIVERED: h.delivered,
                EventType.MESSAGE_OPENED: h.opened,
                EventType.MESSAGE_CLICKED: h.clicked,
            }[EventType(code)]
            counter[row, channel[e] - 1] += 1
        elif code == EventType.OPT_OUT:
            h.opted_out[row, channel[e] - 1] = True
        elif code == EventType.COMPLETED:
            self.status[row] = ArrangementStatus.COMPLETED
        elif code == EventType.BROKEN:
            self.status[row] = ArrangementStatus.BROKEN
        elif code == EventType.REFERRED:
            self.status[row] = ArrangementStatus.REFERRED
        return None


def contexts_from_log(events: pa.Table, config: WorldConfig) -> ContextBatch | None:
    """The context of every decision in a log, rebuilt from the log alone (in log order)."""
    ids = np.unique(events.column("arrangement_id").to_numpy())
    horizon = int(np.nanmax(events.column("time").to_numpy())) + 1 if len(events) else 1
    return LogReplay(config, ids.tolist(), horizon).feed(events)
