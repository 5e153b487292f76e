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


class OutcomeMatcher:
    """Pending decisions and their accumulating outcomes.

    Args:
        window_days: How long after a decision its outcome is collected (days).
        reward: Maps matured outcomes to rewards (default :func:`collected_minus_cost`).
    """

    def __init__(self, window_days: float, reward: RewardOfOutcomes | None = None) -> None:
        if not window_days > 0:
            raise ValueError(f"window_days must be > 0, got {window_days}")
        self.window_days = float(window_days)
        self.reward = reward if reward is not None else collected_minus_cost
        self._ids = np.zeros(0, dtype=np.int64)
        self._arr = np.zeros(0, dtype=np.int64)
        self._time = np.zeros(0)
        self._paid = np.zeros(0)
        self._cost = np.zeros(0)
        self._completed = np.zeros(0, dtype=bool)
        self._broken = np.zeros(0, dtype=bool)
        self._ended = np.zeros(0, dtype=bool)
        self._actions = np.zeros((0, 5), dtype=np.int64)
        self._propensity = np.zeros(0)
        self._contexts: list[ContextBatch] = []
        self._context_rows: list[NDArray[np.int64]] = []

    def __len__(self) -> int:
        return len(self._ids)

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
        start = len(self._ids)
        self._ids = np.concatenate([self._ids, decision_ids])
        self._arr = np.concatenate([self._arr, contexts.columns["arrangement_id"].astype(np.int64)])
        self._time = np.concatenate([self._time, np.full(n, float(time))])
        self._paid = np.concatenate([self._paid, np.zeros(n)])
        self._cost = np.concatenate([self._cost, np.zeros(n)])
        self._completed = np.concatenate([self._completed, np.zeros(n, dtype=bool)])
        self._broken = np.concatenate([self._broken, np.zeros(n, dtype=bool)])
        self._ended = np.concatenate([self._ended, np.zeros(n, dtype=bool)])
        self._actions = np.concatenate([self._actions, np.asarray(actions, dtype=np.int64)])
        self._propensity = np.concatenate([self._propensity, np.asarray(propensity, dtype=np.float64)])
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
        for name in (
            "_ids",
            "_arr",
            "_time",
            "_paid",
            "_cost",
            "_completed",
            "_broken",
            "_ended",
            "_actions",
            "_propensity",
        ):
            setattr(self, name, getattr(self, name)[keep])
        contexts, rows = [], []
        for batch, r in zip(self._contexts, self._context_rows, strict=True):
            alive = keep[r]
            if alive.any():
                contexts.append(batch.take(np.flatnonzero(alive)))
                rows.append(new_of_old[r[alive]])
        self._contexts, self._context_rows = contexts, rows
