"""Online learning in the server: rewards matured from the event log feed the active policy, whose state is
kept in the store.

A policy with a positive ``feedback_window_days`` (the contextual bandits) learns online, as in the
simulator: :class:`regsim.feedback.OutcomeMatcher` pairs its decisions with the payments, message costs and
endings logged after them, and the policy's ``update(feedback)`` is called at every **day boundary**, with the
decisions whose window has closed, exactly when the world calls it (each evening: events of the day
observed, then ``mature(day + 1)``). The server's clock is the latest time it has been given; a request at
a later day first runs the boundaries in between, one by one, so an HTTP replay of a simulated run updates
the policy with the same batches in the same order.

Persistence. After every decision and every update, the policy's ``state_dict()`` and the clock go into
``policy_state`` in the same transaction: the arrays written with ``numpy.savez`` (no pickle), the scalars
(counters, the exploration generator, the clock) as a small JSON object of ``[dtype, value]`` pairs, which costs
a fraction of an ``.npz`` archive to write on every transaction (states written as ``.npz`` still load). The
matcher's pending decisions are not stored: they follow from the log. On start-up :meth:`OnlineLearner.restore`
loads the state and rebuilds the matcher: decisions before the last boundary ``D`` are added with their
contexts rebuilt by :func:`regsim.replay.contexts_from_log` (for an arrangement a late event rewrote, from the
order its events arrived in: :func:`serving.taken_contexts.taken_contexts`), the log's events before ``D`` are
observed, ``mature(D)`` drops what was already learned, and the events from ``D`` on wait for the next boundary.
Events given to the server more than a day after their time (out of order across arrangements) are
observed at the next boundary.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from regsim.config import WorldConfig
from regsim.decision import ContextBatch, LearningPolicy, Policy
from regsim.eventlog import EventType, event_codes
from regsim.feedback import FEEDBACK_EVENTS, OutcomeMatcher
from regsim.replay import LogReplay, contexts_from_log
from regsim.rewards import RewardCosts, resolve_reward
from serving import db
from serving.store import execute_one, load_events
from serving.taken_contexts import taken_contexts

__all__ = ["OnlineLearner", "is_online"]

#: The columns of a logged event that a decision's outcome reads (:meth:`regsim.feedback.OutcomeMatcher.observe`).
_OUTCOME_COLUMNS = ("time", "arrangement_id", "amount_eur", "decision_id", "deferral_days", "collection_costs_eur")
_CLOCK_KEY = "__server_day"
_SLOT = "active"
#: One compiled statement for every save (a statement built per call is compiled per call: its values differ).
_UPDATE_STATE = (
    sa.update(db.policy_state)
    .where(db.policy_state.c.slot == sa.bindparam("b_slot"))
    .values(
        policy=sa.bindparam("policy"),
        policy_version=sa.bindparam("policy_version"),
        origin=sa.bindparam("origin"),
        state=sa.bindparam("state"),
        updated_at=sa.bindparam("updated_at"),
    )
)


#: The columns of the parameters of :data:`_UPDATE_STATE` (their types convert the values for the driver).
_STATE_PARAMS = {
    "b_slot": db.policy_state.c.slot,
    **{name: db.policy_state.c[name] for name in ("policy", "policy_version", "origin", "state", "updated_at")},
}
#: (dialect, driver) -> each parameter's bind processor, of the dialect's own type (None: the value goes as it is).
_BIND_PROCESSORS: dict[tuple[str, str], dict[str, Any]] = {}


def _driver_values(dialect: sa.Dialect, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :data:`_UPDATE_STATE` as SQLAlchemy hands them to the driver (its types' bind
    processors: on SQLite the timestamp's text, the blob's binary wrapper)."""
    key = (dialect.name, dialect.driver)
    processors = _BIND_PROCESSORS.get(key)
    if processors is None:
        processors = {name: c.type.dialect_impl(dialect).bind_processor(dialect) for name, c in _STATE_PARAMS.items()}
        _BIND_PROCESSORS[key] = processors
    return {k: v if processors[k] is None or v is None else processors[k](v) for k, v in params.items()}


#: What ``json.dumps(..., separators=(",", ":"))`` encodes with, made once (``dumps`` makes one per call when
#: given separators).
_JSON = json.JSONEncoder(separators=(",", ":"))


class _ScalarsJSON:
    """The JSON of a state's scalars, as the learner stores them, written for less on every transaction.

    :meth:`encode` gives, character for character, ``json.dumps({k: [a.dtype.str, a.item()] for k, a in
    ((k, numpy.asarray(v)) for k, v in state.items()) if a.ndim == 0}, separators=(",", ":"))``. Most of that
    JSON is a few strings that seldom change (the policy's name, its action space, its generator's state): the
    text of each string entry is kept with its value and used again while the value is the same; the entries
    between them are encoded together, one ``encode`` per run (an object's text is its entries' texts joined by
    the item separator).
    """

    def __init__(self) -> None:
        self._strings: dict[str, tuple[str, str]] = {}  # key -> (the value, its entry's text)

    def encode(self, state: Mapping[str, Any]) -> str:
        """The scalars of ``state`` (values without a dimension) as a JSON object of ``[dtype, value]``."""
        parts: list[str] = []
        run: dict[str, list[Any]] = {}
        for k, v in state.items():
            if type(v) is str:
                known = self._strings.get(k)
                if known is None or known[0] != v:
                    a = np.asarray(v)
                    known = (v, _JSON.encode({k: [a.dtype.str, a.item()]})[1:-1])
                    self._strings[k] = known
                if run:
                    parts.append(_JSON.encode(run)[1:-1])
                    run = {}
                parts.append(known[1])
                continue
            a = v if isinstance(v, np.ndarray) else np.asarray(v)
            if a.ndim == 0:
                run[k] = [a.dtype.str, a.item()]
        if run:
            parts.append(_JSON.encode(run)[1:-1])
        return "{" + ",".join(parts) + "}"


def is_online(policy: Policy) -> TypeGuard[LearningPolicy]:
    """Whether a policy learns online (a positive ``feedback_window_days``, as the world decides)."""
    window = policy.feedback_window_days
    return window is not None and float(window) > 0 and isinstance(policy, LearningPolicy)


class OnlineLearner:
    """The matcher, the clock and the persisted state of an online policy.

    Args:
        policy: The active policy (an online learner with ``state_dict``/``load_state_dict``).
        origin: Where the policy came from (a persisted state of another origin is not restored).
        config: The world config (for rebuilding contexts on restore).
        epoch: The calendar date of time 0.
    """

    def __init__(self, policy: LearningPolicy, origin: str, config: WorldConfig, epoch: dt.date) -> None:
        self.policy = policy
        self.origin = origin
        self.config = config
        self.epoch = epoch
        window = policy.feedback_window_days
        assert window is not None
        self._matcher = OutcomeMatcher(float(window), resolve_reward(policy.feedback_reward), RewardCosts.of(config))
        # Decisions registered but not yet in the matcher (see :attr:`matcher`).
        self._unmatched: list[_Registered] = []
        self.day = -1  # the last day boundary processed (-1: none yet)
        self._buffer: list[tuple[EventType, dict[str, Any]]] = []
        self.updates = 0
        self._saved = False
        self._scalars = _ScalarsJSON()
        self._initial = policy.state_dict()  # (copies: what :meth:`reload` returns to without a stored state)

    @property
    def matcher(self) -> OutcomeMatcher:
        """The outcome matcher, holding every decision registered so far (:meth:`add_decisions`).

        A server registers one small batch per write group. The matcher keeps each added batch's contexts
        and merges adjacent ones as they come (:meth:`regsim.feedback.OutcomeMatcher.add`), a copy of every
        context column per merge: about one merge per group, a large share of an online policy's extra CPU per
        decision. Nothing reads the matcher between two day boundaries of a steady stream of decisions, so the
        batches wait here and go in together (one add per registration time, contexts concatenated in order)
        when the matcher is next read, or once :data:`_UNMATCHED_MAX` of them wait. Rows keep their order, so
        the matcher holds what adding each batch at once would have made of it, whenever it is read.
        """
        if self._unmatched:
            self._match_registered()
        return self._matcher

    def _match_registered(self) -> None:
        """Add the waiting decisions to the matcher: consecutive batches of the same time in one add."""
        waiting, self._unmatched = self._unmatched, []
        start = 0
        while start < len(waiting):
            end = start + 1
            while end < len(waiting) and waiting[end][1] == waiting[start][1]:
                end += 1
            run = waiting[start:end]
            if len(run) == 1:
                self._matcher.add(*run[0])
            else:
                self._matcher.add(
                    np.concatenate([r[0] for r in run]),
                    run[0][1],
                    ContextBatch.concat([r[2] for r in run]),
                    np.concatenate([r[3] for r in run]),
                    np.concatenate([r[4] for r in run]),
                )
            start = end

    # -- the clock ------------------------------------------------------------------------------------------
    def advance(self, time: float) -> bool:
        """Run every day boundary up to ``floor(time)``; True if the policy learned something."""
        target = math.floor(time)
        learned = False
        if self.day < 0:
            self.day = target
            return False
        while self.day < target:
            self.day += 1
            self._observe_before(float(self.day))
            feedback = self.matcher.mature(float(self.day))
            if feedback is not None:
                self.policy.update(feedback)
                self.updates += 1
                learned = True
        return learned

    def _observe_before(self, boundary: float) -> None:
        now = [e for e in self._buffer if e[1]["time"] < boundary]
        if not now:
            return
        self._buffer = [e for e in self._buffer if e[1]["time"] >= boundary]
        for event, columns in now:
            self.matcher.observe(event, columns)

    # -- what the server tells it ---------------------------------------------------------------------------
    def add_decisions(
        self,
        decision_ids: list[int],
        time: float,
        contexts: ContextBatch,
        actions: np.ndarray[Any, Any],
        propensity: np.ndarray[Any, Any],
    ) -> None:
        """Register committed decisions (taken at ``time``) for feedback.

        They reach the matcher when it is next read (:attr:`matcher`). The matcher copies the actions and
        propensities at once, so they are copied here; like the matcher, the learner keeps ``contexts`` as given.
        """
        self._unmatched.append(
            (np.array(decision_ids, dtype=np.int64), float(time), contexts, np.array(actions), np.array(propensity))
        )
        if len(self._unmatched) >= _UNMATCHED_MAX:
            self._match_registered()

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        """Queue logged events (store rows) for the next boundary; only the kinds that carry outcomes are kept."""
        for r in rows:
            event = EventType[str(r["event"]).upper()]
            if event in FEEDBACK_EVENTS:
                self._buffer.append((event, _outcome_columns(r)))

    # -- a late event re-derived an arrangement's past -------------------------------------------------------
    def rederived(
        self,
        arrangement_id: int,
        before: pa.Table,
        after: pa.Table,
        taken: Mapping[int, ContextBatch] | None = None,
    ) -> bool:
        """Make the learner what in-order processing of the re-derived log would have made it.

        A late event rewrote one arrangement's log (``before`` -> ``after``, each in the event-log schema and
        in event-time order): installments paid instead of missed, an ending added or undone, the late event
        itself. The learner took its earlier updates from ``before``. For every decision of the arrangement,
        its fate under in-order processing up to the current day boundary (:meth:`_in_order`: matured at which
        boundary and with which reward, or still pending with which accumulated outcome) is worked out from
        both logs, and the difference is applied:

        * a decision matured under both with rewards ``r`` and ``r'``: its chosen arms' ridge statistics move
          by ``x (r' - r)`` (``b``) and the reward sum by ``r' - r`` (``A`` and the counts are those of the
          same rows);
        * matured only under ``before`` (an ending undone): its row is taken out of ``A``, ``b``, ``n`` and the
          reward sum, and it is pending again; matured only under ``after``: its row is added;
        * the pending decisions of the arrangement, and its events not yet observed, are replaced by those of
          ``after``.

        Each decision is corrected in the context it was taken in: the live matcher's for a pending one, else
        ``taken`` (:func:`~serving.taken_contexts.taken_contexts`: from the order the events arrived in), else
        the one ``before`` rebuilds (right only while no late event stamped before the decision has rewritten
        the log already: a second late event on an arrangement needs ``taken``).

        For the ridge statistics of the linear bandits (:class:`agents.bandits.base.LinearBandit`: sums of
        ``x x'``, ``x r`` and ``r``) this is exact: the statistics equal in-order processing's up to the order
        of floating-point additions; the inverses and estimates are computed again from them. Another learner
        has no update that can be taken back; for it only the pending decisions and events are replaced (the
        past updates stay as learned) and False is returned.

        Returns:
            True if the learned statistics changed (they need saving).
        """
        if self.day < 0:
            return False
        old, new = self._in_order(before), self._in_order(after)
        # Each decision with the context it was taken in: the live matcher's for the pending ones, the one the
        # arrival order gives for the others (a log rebuilt after a late event gives the decisions after the
        # late event's time a context that holds it, which the decision was not taken in).
        rows = {**new.rows, **old.rows}
        for decision_id, context in (taken or {}).items():
            if decision_id in rows:
                rows[decision_id] = (context, *rows[decision_id][1:])
        rows.update(self._pending_rows(arrangement_id))
        # The live matcher: the arrangement's pending decisions and unobserved events as in-order has them.
        self.matcher._drop(self.matcher._arr != arrangement_id)
        self._buffer = [e for e in self._buffer if int(e[1]["arrangement_id"][0]) != arrangement_id]
        new.restore_into(self, rows)
        arms = getattr(self.policy, "arms", None)
        if not isinstance(arms, dict) or not hasattr(self.policy, "heads"):
            return False
        changed = False
        for decision_id in sorted(set(old.matured) | set(new.matured)):
            was, now = old.matured.get(decision_id), new.matured.get(decision_id)
            if was is not None and now is not None and was[0] == now[0]:
                continue
            self._adjust(rows[decision_id], was, now)
            changed = True
        if changed:
            self._refresh_estimates()
        return changed

    def _pending_rows(self, arrangement_id: int) -> dict[int, _Row]:
        """The live matcher's pending decisions of an arrangement: id -> (context, action, propensity)."""
        m = self.matcher
        idx = np.flatnonzero(m._arr == arrangement_id)
        if not len(idx):
            return {}
        contexts = m._gather_contexts(idx)  # (in the order of idx)
        return {
            int(m._ids[k]): (
                contexts.take(np.array([j])),
                m._actions[k : k + 1].copy(),
                m._propensity[k : k + 1].copy(),
            )
            for j, k in enumerate(idx.tolist())
        }

    def _in_order(self, log: pa.Table) -> _InOrder:
        """One arrangement's decisions processed in order, day boundary by day boundary, up to ``self.day``.

        As the live learner does with events that arrive in time: a decision registered at its day
        (``floor(time)``), the events of ``[b - 1, b)`` observed at boundary ``b`` in log order, then
        ``mature(b)``. Only the boundaries where something can change are run (after a day with an event or a
        decision, where a window closes); between them nothing matures, so the outcome is the same.
        """
        matcher = OutcomeMatcher(self.matcher.window_days, self.matcher.reward, self.matcher.costs)
        out = _InOrder(matcher)
        codes = event_codes(log)
        decisions = np.flatnonzero(codes == EventType.DECISION)
        if not len(decisions):
            out.events = _feedback_events(log, codes, 0)
            return out
        contexts = contexts_from_log(log, self.config)
        assert contexts is not None
        time = log.column("time").to_numpy()
        ids = log.column("decision_id").to_numpy().astype(np.int64)
        actions = np.stack(
            [log.column(c).to_numpy() for c in ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")],
            axis=1,
        ).astype(np.int64)
        propensity = log.column("propensity").to_numpy(zero_copy_only=False).astype(np.float64)
        day = np.floor(time[decisions])
        for k, e in enumerate(decisions.tolist()):
            out.rows[int(ids[e])] = (contexts.take(np.array([k])), actions[e : e + 1], propensity[e : e + 1])
        events = _feedback_events(log, codes, 0)
        window = self.matcher.window_days
        marks = {math.floor(float(t)) + 1 for t in time} | {math.ceil(float(d) + window) for d in day}
        boundaries = sorted(b for b in marks if b <= self.day)
        added = np.zeros(len(decisions), dtype=bool)
        seen = 0
        for b in boundaries:
            self._add_days(out, matcher, decisions, day, ids, added, float(b))
            while seen < len(events) and events[seen][1]["time"][0] < b:
                matcher.observe(*events[seen])
                seen += 1
            feedback = matcher.mature(float(b))
            if feedback is not None:
                for decision_id, reward in zip(feedback.decision_ids.tolist(), feedback.rewards.tolist(), strict=True):
                    out.matured[int(decision_id)] = (float(reward), float(b))
        self._add_days(out, matcher, decisions, day, ids, added, math.inf)
        out.events = events[seen:]
        return out

    @staticmethod
    def _add_days(
        out: _InOrder,
        matcher: OutcomeMatcher,
        decisions: np.ndarray[Any, Any],
        day: np.ndarray[Any, Any],
        ids: np.ndarray[Any, Any],
        added: np.ndarray[Any, Any],
        before: float,
    ) -> None:
        """Register the decisions of the days before boundary ``before`` not registered yet."""
        for k in np.flatnonzero(~added & (day < before)).tolist():
            context, action, propensity = out.rows[int(ids[decisions[k]])]
            matcher.add(ids[decisions[k] : decisions[k] + 1], float(day[k]), context, action, propensity)
            added[k] = True

    def _adjust(
        self,
        row: _Row,
        was: tuple[float, float] | None,
        now: tuple[float, float] | None,
    ) -> None:
        """Move one decision's contribution to the ridge statistics from reward ``was`` to ``now`` (None: none)."""
        from agents.bandits.design import design_matrix

        context, action, _ = row
        policy: Any = self.policy
        x = design_matrix(context, policy.config.feature_set)[0]
        kind = int(np.asarray(context.columns["kind"])[0])
        count = (now is not None) - (was is not None)
        delta = (0.0 if now is None else now[0]) - (0.0 if was is None else was[0])
        for head in policy.heads:
            if not head.active_at[kind]:
                continue
            arm = int(head.arms_of(action)[0])
            if arm < 0:
                continue
            stats = policy.arms[head.name]
            if count:
                stats.A[arm] += count * np.outer(x, x)
                stats.n[arm] += count
            stats.b[arm] += delta * x
            stats.reward_sum = np.asarray(stats.reward_sum + delta, dtype=np.float64)
        policy.learned += count

    def _refresh_estimates(self) -> None:
        """The inverses and estimates of every head, from its (adjusted) sums, as ``RidgeArms.update`` does."""
        policy: Any = self.policy
        for stats in policy.arms.values():
            inv = np.linalg.inv(stats.A)
            stats.A_inv = 0.5 * (inv + inv.transpose(0, 2, 1))
            rhs = stats.b.copy()
            rhs[:, 0] += stats.ridge * stats.prior_mean
            stats.theta = np.einsum("kij,kj->ki", stats.A_inv, rhs)
            stats._stacked = None

    # -- persistence ----------------------------------------------------------------------------------------
    def _blobs(self, with_big: bool) -> tuple[bytes | None, bytes]:
        """The state as blobs: the learned statistics (an ``.npz`` of arrays; only ``with_big``) and the scalars.

        The scalars are a JSON object of ``[dtype, value]``: it keeps every value exactly (floats by their
        shortest repr, NaN included) and costs far less than an ``.npz`` archive on every transaction.
        """
        # Without the statistics unless they are wanted: copying them costs more than the rest of the save.
        state = self.policy.state_dict(arrays=with_big)
        with_clock: dict[str, Any] = dict(state)
        with_clock[_CLOCK_KEY] = np.asarray(self.day)
        scalars = self._scalars.encode(with_clock)
        if not with_big:
            return None, scalars.encode("utf-8")
        buf = io.BytesIO()
        np.savez(buf, allow_pickle=False, **{k: np.asarray(v) for k, v in state.items() if np.ndim(v) > 0})
        return buf.getvalue(), scalars.encode("utf-8")

    def save(self, conn: sa.Connection, learned: bool) -> None:
        """Write the state into ``policy_state`` (inside the caller's transaction).

        The learned statistics (megabytes for the bandits) change only when the policy learns, so they are
        written only then (``learned``) or the first time; the counters, the exploration generator and the
        clock are written every time.
        """
        big, small = self._blobs(with_big=learned or not self._saved)
        slots = [(_SLOT + ".small", small)]
        if big is not None:
            slots.append((_SLOT, big))
        for slot, blob in slots:
            values = {
                "policy": self.policy.name,
                "policy_version": self.policy.version,
                "origin": self.origin,
                "state": blob,
                "updated_at": dt.datetime.now(dt.UTC),
            }
            # On the driver's cursor (SQLAlchemy's execution of the statement costs several times SQLite's
            # update), with the values converted as SQLAlchemy converts them: the row stored is the same.
            matched, _ = execute_one(conn, _UPDATE_STATE, _driver_values(conn.dialect, {"b_slot": slot, **values}))
            if matched == 0:
                conn.execute(sa.insert(db.policy_state), {"slot": slot, **values})
        self._saved = True

    def forget_saved(self) -> None:
        """The last :meth:`save` was rolled back: the next one writes everything again."""
        self._saved = False

    def reload(self, conn: sa.Connection) -> None:
        """Forget everything in memory and take the state the store holds (after a rolled-back transaction).

        The learner changes in memory while a transaction works (decisions registered, events queued, updates,
        a late event's correction); if the transaction rolls back and its requests are run again, those changes
        would be taken twice. Every transaction that changes the learner writes its state (:meth:`save`), so the
        store holds exactly what the committed ones made of it: the policy's state and clock are loaded and the
        matcher rebuilt from the log, as at start-up (:meth:`restore`); with no state stored, the policy goes
        back to the state it was created with. Call it only when no other transaction is committing.
        """
        old = self._matcher
        self._matcher = OutcomeMatcher(old.window_days, old.reward, old.costs)
        self._unmatched = []
        self._buffer = []
        self._saved = False
        if not self.restore(conn):
            self.policy.load_state_dict({k: np.copy(v) for k, v in self._initial.items()})
            self.day = -1

    def restore(self, conn: sa.Connection) -> bool:
        """Load the persisted state (if it is this policy's, from the same origin) and rebuild the matcher.

        Returns:
            True if a state was restored; False for a fresh store or another policy (which then starts from
            its artifact).
        """
        mine = (self.policy.name, self.policy.version, self.origin)
        state: dict[str, Any] = {}
        for slot in (_SLOT, _SLOT + ".small"):
            row = conn.execute(sa.select(db.policy_state).where(db.policy_state.c.slot == slot)).first()
            if row is None or (row.policy, row.policy_version, row.origin) != mine:
                return False
            state.update(_decode(bytes(row.state)))
        self.day = int(state.pop(_CLOCK_KEY))
        self.policy.load_state_dict(state)
        self._rebuild(conn)
        self._saved = True
        return True

    def _rebuild(self, conn: sa.Connection) -> None:
        boundary = float(self.day)
        window = self.matcher.window_days
        pending = conn.execute(
            sa.select(db.events.c.arrangement_id)
            .where(db.events.c.event == "decision", db.events.c.time + window > boundary)
            .distinct()
        ).scalars()
        ids = sorted(int(a) for a in pending)
        if not ids or self.day < 0:
            return
        log = load_events(conn, ids, self.epoch)
        contexts = contexts_from_log(log, self.config)
        if contexts is None:
            return
        codes = event_codes(log)
        decision_rows = np.flatnonzero(codes == EventType.DECISION)
        time = log.column("time").to_numpy()
        decision_id = log.column("decision_id").to_numpy()
        propensity = log.column("propensity").to_numpy(zero_copy_only=False)
        actions = np.stack(
            [log.column(c).to_numpy() for c in ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")],
            axis=1,
        ).astype(np.int64)
        # A log that a late event rewrote gives the decisions after its time a context that holds it.
        taken = self._taken_after_late_events(conn, ids, boundary - window)
        for k, e in enumerate(decision_rows.tolist()):
            if time[e] + window > boundary:
                one = slice(e, e + 1)
                context = taken.get(int(decision_id[e]))
                self.matcher.add(
                    decision_id[one],
                    float(time[e]),
                    contexts.take(np.array([k])) if context is None else context,
                    actions[one],
                    propensity[one],
                )
        early = pc.less(log.column("time"), pa.scalar(boundary)).to_numpy(zero_copy_only=False)
        rows = log.to_pylist()
        for e, r in enumerate(rows):
            if EventType(int(codes[e])) not in FEEDBACK_EVENTS:
                continue
            if early[e]:
                self.matcher.observe(EventType(int(codes[e])), _outcome_columns(r))
            else:
                self.add_events([r])
        # What matured by the last boundary was learned before the restart.
        self.matcher.mature(boundary)

    def _taken_after_late_events(self, conn: sa.Connection, ids: list[int], since: float) -> dict[int, ContextBatch]:
        """The contexts decisions were taken in (:func:`~serving.taken_contexts.taken_contexts`), for the
        arrangements among ``ids`` with a decision after ``since`` (a pending one) that an event stamped before
        it arrived after.

        Only those need it: a decision's context from the log is the state of the events stamped before it; the
        one it was taken in, that of the events that had arrived. The two sets differ exactly when an event
        stamped before the decision arrived after it (the log is in event-time order, so that is an earlier
        row that arrived later). Late events before decisions that matured long ago do not count, and the
        arrival-order replays (milliseconds per arrangement) are spared for every other arrangement.
        """
        late: set[int] = set()
        for k in range(0, len(ids), 500):
            stmt = (
                sa.select(db.events.c.arrangement_id, db.events.c.event, db.events.c.time, db.events.c.arrived_at)
                .where(db.events.c.arrangement_id.in_(ids[k : k + 500]), db.events.c.arrived_at.is_not(None))
                .order_by(db.events.c.seq)
            )
            latest: dict[int, float] = {}  # arrangement -> the latest arrival among its rows so far
            for aid_, event, time, arrived in conn.execute(stmt):
                aid, before = int(aid_), latest.get(int(aid_), -math.inf)
                if event == "decision" and float(time) > since and before > float(arrived):
                    late.add(aid)
                latest[aid] = max(float(arrived), before)
        if not late:
            return {}
        cols = [db.events.c[name] for name in (*db.EVENT_COLUMNS, "arrived_at")]
        stmt = sa.select(*cols).where(db.events.c.arrangement_id.in_(sorted(late))).order_by(db.events.c.seq)
        by_arrangement: dict[int, list[dict[str, Any]]] = {}
        for r in conn.execute(stmt):
            by_arrangement.setdefault(int(r.arrangement_id), []).append(dict(r._mapping))
        horizon = max(int(max(float(r["time"]) for r in rows)) for rows in by_arrangement.values()) + 1
        template = LogReplay(self.config, [], horizon)
        out: dict[int, ContextBatch] = {}
        for rows in by_arrangement.values():
            out.update(taken_contexts(template, rows, self.epoch))
        return out


#: A decision's context, action and propensity (one row each).
_Row = tuple[ContextBatch, np.ndarray[Any, Any], np.ndarray[Any, Any]]

#: Decisions registered together, as :meth:`regsim.feedback.OutcomeMatcher.add` takes them: ids, time, contexts,
#: actions, propensities.
_Registered = tuple[np.ndarray[Any, Any], float, ContextBatch, np.ndarray[Any, Any], np.ndarray[Any, Any]]

#: At most this many registered batches wait outside the matcher (:attr:`OnlineLearner.matcher`): one add, and
#: the copy of its contexts, per so many write groups; what waits stays small (one group's contexts each).
_UNMATCHED_MAX = 64


class _InOrder:
    """One arrangement under in-order processing (:meth:`OnlineLearner._in_order`).

    Attributes:
        matcher: Its pending decisions, with what was observed of them.
        matured: decision id -> (reward, boundary) of the decisions matured by the current boundary.
        rows: decision id -> its context, action and propensity (one row each).
        events: Its outcome events not observed yet (time from the current boundary on), in log order.
    """

    def __init__(self, matcher: OutcomeMatcher) -> None:
        self.matcher = matcher
        self.matured: dict[int, tuple[float, float]] = {}
        self.rows: dict[int, _Row] = {}
        self.events: list[tuple[EventType, dict[str, Any]]] = []

    def restore_into(self, learner: OnlineLearner, rows: dict[int, _Row]) -> None:
        """Put the pending decisions (with what they accumulated, in the contexts of ``rows``) and the unobserved
        events into ``learner``."""
        pending = self.matcher
        for k, decision_id in enumerate(pending._ids.tolist()):
            start = learner.matcher._n
            context, action, propensity = rows[int(decision_id)]
            learner.matcher.add(pending._ids[k : k + 1], float(pending._time[k]), context, action, propensity)
            for name in _ACCUMULATED:
                getattr(learner.matcher, name)[start] = getattr(pending, name)[k]
        learner._buffer.extend(self.events)


#: The matcher's columns that observing events accumulates (copied for a pending decision put back).
_ACCUMULATED = (
    "_paid",
    "_cost",
    "_contacts",
    "_on_time",
    "_missed",
    "_charged",
    "_conceded",
    "_staff",
    "_completed",
    "_broken",
    "_referred",
)


def _feedback_events(log: pa.Table, codes: np.ndarray[Any, Any], start: int) -> list[tuple[EventType, dict[str, Any]]]:
    """The log's outcome events from row ``start`` on, as (type, columns) in log order."""
    rows = log.slice(start).to_pylist()
    out = []
    for e, r in enumerate(rows, start):
        event = EventType(int(codes[e]))
        if event in FEEDBACK_EVENTS:
            out.append((event, _outcome_columns(r)))
    return out


def _outcome_columns(row: dict[str, Any]) -> dict[str, Any]:
    """A logged event's columns that an outcome reads, as one-element arrays (NaN / -1 where unset)."""
    out: dict[str, Any] = {}
    for name in _OUTCOME_COLUMNS:
        value = row.get(name)
        if name in ("arrangement_id", "decision_id", "deferral_days"):
            out[name] = np.array([-1 if value is None else int(value)], dtype=np.int64)
        else:
            out[name] = np.array([np.nan if value is None else float(value)])
    return out


def _decode(blob: bytes) -> dict[str, Any]:
    """A stored state blob: a JSON object of scalars (``[dtype, value]``) or an ``.npz`` archive."""
    if blob[:1] == b"{":
        return {k: np.asarray(v, dtype=np.dtype(d)) for k, (d, v) in json.loads(blob).items()}
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
