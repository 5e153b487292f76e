"""Delayed rewards: matching decisions with the outcomes the event log records after them.

A decision's outcome is known only later: what happened to the arrangement within ``window_days`` after the
decision (euros paid, installments paid on time or missed, how it ended) and the cost of the messages the
decision itself sent. :class:`OutcomeMatcher` keeps the pending decisions, credits them from event-log records
as they arrive (the same records in simulation and in production), and hands them out as
:class:`~regsim.decision.Feedback` once their window has closed, with rewards computed from the outcome
columns by a reward of :mod:`regsim.rewards` (the same functions the envs use) and the world's costs.

Attribution: an arrangement's events are credited to every pending decision of the arrangement whose window
covers them (windows of consecutive decisions may overlap); a message's cost only to the decision that sent it.

Censoring: a decision whose arrangement ends (completed, broken, referred) inside the window matures at once
with its final outcome (nothing more can happen); a decision still open when observation stops (the run's
horizon, :meth:`OutcomeMatcher.flush`) matures with ``censored=True`` and the outcome observed so far, so a
learner can drop or reweight it explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from regsim.decision import ContextBatch, Feedback
from regsim.eventlog import EventType
from regsim.rewards import OUTCOME_EVENTS, Outcomes, Reward, RewardCosts

__all__ = ["FEEDBACK_EVENTS", "OutcomeMatcher"]

#: The events that enter a decision's outcome: those of any outcome (:data:`regsim.rewards.OUTCOME_EVENTS`).
FEEDBACK_EVENTS = OUTCOME_EVENTS

#: The pending decisions' columns: name -> (dtype, shape of one row).
_COLUMNS: dict[str, tuple[type, tuple[int, ...]]] = {
    "_ids": (np.int64, ()),
    "_arr": (np.int64, ()),
    "_time": (np.float64, ()),
    "_balance": (np.float64, ()),
    "_paid": (np.float64, ()),
    "_cost": (np.float64, ()),
    "_contacts": (np.int64, ()),
    "_on_time": (np.int64, ()),
    "_missed": (np.int64, ()),
    "_charged": (np.float64, ()),
    "_conceded": (np.float64, ()),
    "_staff": (np.float64, ()),
    "_completed": (np.bool_, ()),
    "_broken": (np.bool_, ()),
    "_referred": (np.bool_, ()),
    "_actions": (np.int64, (5,)),
    "_propensity": (np.float64, ()),
}
_ENDINGS = (EventType.COMPLETED, EventType.BROKEN, EventType.REFERRED)
_INITIAL_CAPACITY = 64


class OutcomeMatcher:
    """Pending decisions and their accumulating outcomes.

    Args:
        window_days: How long after a decision its outcome is collected (days).
        reward: The reward of the matured outcomes (a function of :mod:`regsim.rewards`).
        costs: The creditor's costs the reward charges (from the world config).
    """

    # Views of the pending rows (see ``_buffers``); written in place by ``observe``.
    _ids: NDArray[np.int64]
    _arr: NDArray[np.int64]
    _time: NDArray[np.float64]
    _balance: NDArray[np.float64]
    _paid: NDArray[np.float64]
    _cost: NDArray[np.float64]
    _contacts: NDArray[np.int64]
    _on_time: NDArray[np.int64]
    _missed: NDArray[np.int64]
    _charged: NDArray[np.float64]
    _conceded: NDArray[np.float64]
    _staff: NDArray[np.float64]
    _completed: NDArray[np.bool_]
    _broken: NDArray[np.bool_]
    _referred: NDArray[np.bool_]
    _actions: NDArray[np.int64]
    _propensity: NDArray[np.float64]

    def __init__(self, window_days: float, reward: Reward, costs: RewardCosts) -> None:
        if not window_days > 0:
            raise ValueError(f"window_days must be > 0, got {window_days}")
        self.window_days = float(window_days)
        self.reward = reward
        self.costs = costs
        # Columns of the pending decisions: views of the first ``len(self)`` rows of buffers that grow
        # geometrically, so that adding a batch costs its own size, not the size of everything pending.
        self._buffers: dict[str, NDArray[np.generic]] = {
            name: np.zeros((_INITIAL_CAPACITY, *shape), dtype=dtype) for name, (dtype, shape) in _COLUMNS.items()
        }
        self._n = 0
        self._view()
        self._contexts: list[ContextBatch] = []
        self._context_rows: list[NDArray[np.int64]] = []

    def _view(self) -> None:
        n = self._n
        for name, buffer in self._buffers.items():
            setattr(self, name, buffer[:n])

    def __len__(self) -> int:
        return self._n

    @property
    def _ended(self) -> NDArray[np.bool_]:
        return self._completed | self._broken | self._referred

    def add(
        self,
        decision_ids: NDArray[np.int64],
        time: float,
        contexts: ContextBatch,
        actions: NDArray[np.int64],
        propensity: NDArray[np.float64],
    ) -> None:
        """Register decisions taken at ``time`` in ``contexts`` (one row each)."""
        n = len(decision_ids)
        if n == 0:
            return
        start = self._n
        end = start + n
        if end > len(self._buffers["_ids"]):
            capacity = max(end, 2 * len(self._buffers["_ids"]))
            for name, buffer in self._buffers.items():
                grown = np.zeros((capacity, *buffer.shape[1:]), dtype=buffer.dtype)
                grown[:start] = buffer[:start]
                self._buffers[name] = grown
        b = self._buffers
        for name in _COLUMNS:
            b[name][start:end] = 0
        b["_ids"][start:end] = decision_ids
        b["_arr"][start:end] = contexts.columns["arrangement_id"]
        b["_time"][start:end] = float(time)
        b["_balance"][start:end] = contexts.columns["balance_eur"]
        b["_actions"][start:end] = actions
        b["_propensity"][start:end] = propensity
        self._n = end
        self._view()
        self._contexts.append(contexts)
        self._context_rows.append(np.arange(start, start + n))
        # The contexts stay in the batches they came in, but adjacent batches merge while the newer holds at
        # least half as many rows as the older (a binary counter): a server that adds one small batch per
        # write group would otherwise pile up one batch per group over the feedback window, and every
        # ``_drop`` and ``_gather_contexts`` (a late event drops one arrangement's decisions) walks them all.
        # The sizes fall geometrically from the oldest, so there are O(log n) batches and each row is copied
        # O(log n) times in its life. Rows keep their order, so what is handed out is unchanged.
        contexts_, rows_ = self._contexts, self._context_rows
        while len(rows_) > 1 and 2 * len(rows_[-1]) >= len(rows_[-2]):
            newer, newer_rows = contexts_.pop(), rows_.pop()
            contexts_[-1] = ContextBatch.concat([contexts_[-1], newer])
            rows_[-1] = np.concatenate([rows_[-1], newer_rows])

    def observe(self, event: EventType, columns: Mapping[str, Any]) -> None:
        """Credit pending decisions with events of one type, given as event-log columns.

        ``columns`` holds ``arrangement_id`` and ``time`` (arrays, or a scalar time), and as the event needs them
        ``amount_eur`` (payments, message costs), ``decision_id`` (messages), ``deferral_days`` (installments
        paid: days late) and ``collection_costs_eur`` (breakdowns). Concessions and staff's custom cases
        (self-service) are credited by their ``amount_eur`` like payments: to every pending decision of the
        arrangement whose window covers them. Other event types are passed over.
        """
        if event not in FEEDBACK_EVENTS or not len(self._ids):
            return
        arr = np.atleast_1d(np.asarray(columns["arrangement_id"], dtype=np.int64))
        if not len(arr):
            return
        t = np.broadcast_to(np.asarray(columns["time"], dtype=np.float64), arr.shape)
        if event == EventType.MESSAGE_SENT:
            order = np.argsort(self._ids)
            sorted_ids = self._ids[order]
            d = np.broadcast_to(np.asarray(columns["decision_id"], dtype=np.int64), arr.shape)
            pos = np.minimum(np.searchsorted(sorted_ids, d), len(sorted_ids) - 1)
            found = sorted_ids[pos] == d
            np.add.at(self._cost, order[pos[found]], np.broadcast_to(columns["amount_eur"], arr.shape)[found])
            np.add.at(self._contacts, order[pos[found]], 1)
            return
        # Pair every event with the pending decisions of its arrangement whose window covers it.
        order = np.argsort(self._arr, kind="stable")
        sorted_arr = self._arr[order]
        lo = np.searchsorted(sorted_arr, arr, side="left")
        hi = np.searchsorted(sorted_arr, arr, side="right")
        counts = hi - lo
        if not counts.any():
            return
        ev = np.repeat(np.arange(len(arr)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        k = order[np.repeat(lo, counts) + offsets]
        inside = (t[ev] >= self._time[k]) & (t[ev] < self._time[k] + self.window_days) & ~self._ended[k]
        k, ev = k[inside], ev[inside]
        if event == EventType.PAYMENT:
            np.add.at(self._paid, k, np.broadcast_to(columns["amount_eur"], arr.shape)[ev])
        elif event == EventType.INSTALLMENT_PAID:
            late = np.broadcast_to(np.asarray(columns["deferral_days"]), arr.shape)[ev]
            np.add.at(self._on_time, k[late <= 0], 1)
        elif event == EventType.INSTALLMENT_MISSED:
            np.add.at(self._missed, k, 1)
        elif event == EventType.CONCESSION:
            np.add.at(self._conceded, k, np.broadcast_to(columns["amount_eur"], arr.shape)[ev])
        elif event == EventType.CASE_RESOLVED:
            np.add.at(self._staff, k, np.broadcast_to(columns["amount_eur"], arr.shape)[ev])
        else:
            if event == EventType.BROKEN and "collection_costs_eur" in columns:
                np.add.at(self._charged, k, np.broadcast_to(columns["collection_costs_eur"], arr.shape)[ev])
            self._completed[k] |= event == EventType.COMPLETED
            self._broken[k] |= event == EventType.BROKEN
            self._referred[k] |= event == EventType.REFERRED

    def mature(self, now: float) -> Feedback | None:
        """Hand out decisions whose window has closed or whose arrangement has ended."""
        return self._release((self._time + self.window_days <= now) | self._ended, now, censored=False)

    def flush(self, now: float) -> Feedback | None:
        """Hand out every pending decision (observation stops): open windows are marked censored."""
        return self._release(np.ones(len(self._ids), dtype=bool), now, censored=True)

    def outcomes(self, idx: NDArray[np.int64], now: float) -> Outcomes:
        """The outcome columns of pending decisions at positions ``idx``, as observed by ``now``."""
        return Outcomes(
            collected_eur=self._paid[idx],
            contact_cost_eur=self._cost[idx],
            contacts=self._contacts[idx],
            completed=self._completed[idx],
            broken=self._broken[idx],
            referred=self._referred[idx],
            collection_costs_eur=self._charged[idx],
            on_time_installments=self._on_time[idx],
            missed_installments=self._missed[idx],
            days=np.minimum(now - self._time[idx], self.window_days),
            balance_eur=self._balance[idx],
            concessions_eur=self._conceded[idx],
            staff_cost_eur=self._staff[idx],
        )

    def _release(self, take: NDArray[np.bool_], now: float, censored: bool) -> Feedback | None:
        if not take.any():
            return None
        idx = np.flatnonzero(take)
        closed = (self._time[idx] + self.window_days <= now) | self._ended[idx]
        outcomes = self.outcomes(idx, now)
        feedback = Feedback(
            decision_ids=self._ids[idx],
            contexts=self._gather_contexts(idx),
            actions=self._actions[idx],
            propensity=self._propensity[idx],
            rewards=np.asarray(self.reward(outcomes, self.costs), dtype=np.float64),
            censored=~closed if censored else np.zeros(len(idx), dtype=bool),
        )
        self._drop(~take)
        return feedback

    def _gather_contexts(self, idx: NDArray[np.int64]) -> ContextBatch:
        parts = []
        for batch, rows in zip(self._contexts, self._context_rows, strict=True):
            sel = np.flatnonzero(np.isin(rows, idx))
            if len(sel):
                parts.append(batch.take(sel))
        return ContextBatch.concat(parts)

    def _drop(self, keep: NDArray[np.bool_]) -> None:
        old_index = np.flatnonzero(keep)
        new_of_old = np.full(len(keep), -1, dtype=np.int64)
        new_of_old[old_index] = np.arange(len(old_index))
        m = len(old_index)
        for buffer in self._buffers.values():
            buffer[:m] = buffer[: self._n][keep]
        self._n = m
        self._view()
        contexts, rows = [], []
        for batch, r in zip(self._contexts, self._context_rows, strict=True):
            alive = keep[r]
            if alive.all():  # (no copy of a batch that loses nothing)
                contexts.append(batch)
                rows.append(new_of_old[r])
            elif alive.any():
                contexts.append(batch.take(np.flatnonzero(alive)))
                rows.append(new_of_old[r[alive]])
        self._contexts, self._context_rows = contexts, rows
