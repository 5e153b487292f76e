"""Delayed rewards: matching decisions with the outcomes the event log records after them.

A decision's outcome is known only later: the euros the arrangement paid within ``window_days`` after the
decision, and the cost of the messages the decision itself sent. :class:`OutcomeMatcher` keeps the pending
decisions, credits them from event-log records as they arrive (the same records in simulation and in
production), and hands them out as :class:`~regsim.decision.Feedback` once their window has closed.

Attribution: a payment is credited to every pending decision of the arrangement whose window covers it
(windows of consecutive decisions may overlap); a message's cost only to the decision that sent it.

Censoring: a decision whose arrangement ends (completed, broken, referred) inside the window matures at once
with its final outcome (nothing more can happen); a decision still open when observation stops (the run's
horizon, :meth:`OutcomeMatcher.flush`) matures with ``censored=True`` and the outcome observed so far, so a
learner can drop or reweight it explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from regsim.decision import ContextBatch, Feedback
from regsim.eventlog import EventType

__all__ = ["DecisionOutcomes", "OutcomeMatcher", "collected_minus_cost"]


@dataclass(frozen=True)
class DecisionOutcomes:
    """Outcomes of matured decisions, column-wise."""

    paid_eur: NDArray[np.float64]
    cost_eur: NDArray[np.float64]
    completed: NDArray[np.bool_]
    broken: NDArray[np.bool_]
    elapsed_days: NDArray[np.float64]
    censored: NDArray[np.bool_]


RewardOfOutcomes = Callable[[DecisionOutcomes], NDArray[np.float64]]


def collected_minus_cost(
    outcomes: DecisionOutcomes, scale: float = 0.01, breakdown_cost_eur: float = 150.0
) -> NDArray[np.float64]:
    """Default reward of a decision: euros paid in its window minus its own cost minus a breakdown's cost."""
    return scale * (outcomes.paid_eur - outcomes.cost_eur - breakdown_cost_eur * outcomes.broken)


#: The pending decisions' columns: name -> (dtype, shape of one row).
_COLUMNS: dict[str, tuple[type, tuple[int, ...]]] = {
    "_ids": (np.int64, ()),
    "_arr": (np.int64, ()),
    "_time": (np.float64, ()),
    "_paid": (np.float64, ()),
    "_cost": (np.float64, ()),
    "_completed": (np.bool_, ()),
    "_broken": (np.bool_, ()),
    "_ended": (np.bool_, ()),
    "_actions": (np.int64, (5,)),
    "_propensity": (np.float64, ()),
}
_INITIAL_CAPACITY = 64


class OutcomeMatcher:
    """Pending decisions and their accumulating outcomes.

    Args:
        window_days: How long after a decision its outcome is collected (days).
        reward: Maps matured outcomes to rewards (default :func:`collected_minus_cost`).
    """

    # Views of the pending rows (see ``_buffers``); written in place by ``observe``.
    _ids: NDArray[np.int64]
    _arr: NDArray[np.int64]
    _time: NDArray[np.float64]
    _paid: NDArray[np.float64]
    _cost: NDArray[np.float64]
    _completed: NDArray[np.bool_]
    _broken: NDArray[np.bool_]
    _ended: NDArray[np.bool_]
    _actions: NDArray[np.int64]
    _propensity: NDArray[np.float64]

    def __init__(self, window_days: float, reward: RewardOfOutcomes | None = None) -> None:
        if not window_days > 0:
            raise ValueError(f"window_days must be > 0, got {window_days}")
        self.window_days = float(window_days)
        self.reward = reward if reward is not None else collected_minus_cost
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
        b["_ids"][start:end] = decision_ids
        b["_arr"][start:end] = contexts.columns["arrangement_id"]
        b["_time"][start:end] = float(time)
        b["_actions"][start:end] = actions
        b["_propensity"][start:end] = propensity
        for name in ("_paid", "_cost", "_completed", "_broken", "_ended"):
            b[name][start:end] = 0
        self._n = end
        self._view()
        self._contexts.append(contexts)
        self._context_rows.append(np.arange(start, start + n))

    def observe(
        self,
        event: EventType,
        time: NDArray[np.float64],
        arrangement_id: NDArray[np.int64],
        amount_eur: NDArray[np.float64] | None = None,
        decision_id: NDArray[np.int64] | None = None,
    ) -> None:
        """Credit pending decisions with events of one type (payments, message costs, endings)."""
        if not len(self._ids) or not len(arrangement_id):
            return
        arr = np.asarray(arrangement_id, dtype=np.int64)
        t = np.broadcast_to(np.asarray(time, dtype=np.float64), arr.shape)
        if event == EventType.MESSAGE_SENT and decision_id is not None and amount_eur is not None:
            order = np.argsort(self._ids)
            sorted_ids = self._ids[order]
            d = np.asarray(decision_id, dtype=np.int64)
            pos = np.minimum(np.searchsorted(sorted_ids, d), len(sorted_ids) - 1)
            found = sorted_ids[pos] == d
            np.add.at(self._cost, order[pos[found]], np.broadcast_to(amount_eur, arr.shape)[found])
            return
        if event not in (EventType.PAYMENT, EventType.COMPLETED, EventType.BROKEN, EventType.REFERRED):
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
        if event == EventType.PAYMENT and amount_eur is not None:
            np.add.at(self._paid, k, np.broadcast_to(amount_eur, arr.shape)[ev])
        else:
            self._ended[k] = True
            self._completed[k] |= event == EventType.COMPLETED
            self._broken[k] |= event == EventType.BROKEN

    def mature(self, now: float) -> Feedback | None:
        """Hand out decisions whose window has closed or whose arrangement has ended."""
        return self._release((self._time + self.window_days <= now) | self._ended, now, censored=False)

    def flush(self, now: float) -> Feedback | None:
        """Hand out every pending decision (observation stops): open windows are marked censored."""
        return self._release(np.ones(len(self._ids), dtype=bool), now, censored=True)

    def _release(self, take: NDArray[np.bool_], now: float, censored: bool) -> Feedback | None:
        if not take.any():
            return None
        idx = np.flatnonzero(take)
        closed = (self._time[idx] + self.window_days <= now) | self._ended[idx]
        outcomes = DecisionOutcomes(
            paid_eur=self._paid[idx],
            cost_eur=self._cost[idx],
            completed=self._completed[idx],
            broken=self._broken[idx],
            elapsed_days=np.minimum(now - self._time[idx], self.window_days),
            censored=~closed if censored else np.zeros(len(idx), dtype=bool),
        )
        contexts = self._gather_contexts(idx)
        feedback = Feedback(
            decision_ids=self._ids[idx],
            contexts=contexts,
            actions=self._actions[idx],
            propensity=self._propensity[idx],
            rewards=np.asarray(self.reward(outcomes), dtype=np.float64),
            censored=outcomes.censored,
        )
        keep = ~take
        self._drop(keep)
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
            if alive.any():
                contexts.append(batch.take(np.flatnonzero(alive)))
                rows.append(new_of_old[r[alive]])
        self._contexts, self._context_rows = contexts, rows
