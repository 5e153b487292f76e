"""The per-decision and per-step rewards of an event log: what a decision earned, attributed from the log alone.

* :func:`decision_rewards`, the reward of the **per-decision estimand**: the euros the arrangement paid within
  ``window_days`` after the decision (default 14, the bandits' feedback window,
  :class:`agents.bandits.BanditConfig`) minus the cost of the messages the decision itself sent, the
  :mod:`regsim.feedback` attribution. A decision's window is closed when it ended by the log's end or the
  arrangement ended after the decision (nothing more can happen); only closed decisions count (item 4 of issue 19).
* :func:`step_rewards`, the steps of the **per-arrangement estimand**, the run-off net recovery (euros collected
  minus contact costs, :func:`regsim.metrics.arrangement_outcomes`): step ``k`` of an arrangement is its ``k``-th
  decision, whose reward is what was paid from that decision until the next (the last: until the end or the
  run-off cap) minus the decision's own contact costs, so the steps add up to the net recovery
  (:func:`arrangement_values`).

All are vectorised over the log (prefix sums over events sorted by arrangement and time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from regsim.config import WorldConfig
from regsim.eventlog import EventType, event_codes
from regsim.runoff import RunoffCap

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "DecisionRewards",
    "arrangement_values",
    "decision_rewards",
    "step_rewards",
]

#: The feedback window of the per-decision reward: the bandits' (``BanditConfig.feedback_window_days``), days.
DEFAULT_WINDOW_DAYS = 14.0


@dataclass(frozen=True)
class DecisionRewards:
    """Every decision of a log with its per-decision reward, in log order (arrays of shape ``(n,)``).

    Attributes:
        decision_id: The logged decision id.
        arrangement_id: Its arrangement (the cluster).
        time: When it was taken (days).
        reward: Euros paid within the window minus the decision's own contact cost.
        contact_cost: The cost of the messages the decision sent (EUR).
        closed: The window closed by the log's end, or the arrangement ended after the decision.
        window_days: The window (days).
        horizon_days: The log's end (days).
    """

    decision_id: NDArray[np.int64]
    arrangement_id: NDArray[np.int64]
    time: NDArray[np.float64]
    reward: NDArray[np.float64]
    contact_cost: NDArray[np.float64]
    closed: NDArray[np.bool_]
    window_days: float
    horizon_days: float

    @property
    def value(self) -> float:
        """The mean reward of the closed decisions (EUR per decision; ``nan`` if none)."""
        return float(self.reward[self.closed].mean()) if self.closed.any() else math.nan

    def take(self, rows: NDArray[np.int64]) -> DecisionRewards:
        """The decisions at ``rows``."""
        r = rows
        return DecisionRewards(
            self.decision_id[r],
            self.arrangement_id[r],
            self.time[r],
            self.reward[r],
            self.contact_cost[r],
            self.closed[r],
            self.window_days,
            self.horizon_days,
        )


def _sum_in_windows(
    arr: NDArray[np.int64],
    t: NDArray[np.float64],
    amount: NDArray[np.float64],
    key_arr: NDArray[np.int64],
    start: NDArray[np.float64],
    stop: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Per query ``(key_arr, start, stop)``, the sum of ``amount`` over the events ``(arr, t)`` of that
    arrangement with ``start <= t < stop`` (prefix sums over events sorted by arrangement, then time)."""
    out = np.zeros(len(key_arr))
    if not len(arr) or not len(key_arr):
        return out
    order = np.lexsort((t, arr))
    a, tt = arr[order], t[order]
    cum = np.concatenate([[0.0], np.cumsum(amount[order])])
    keys, first = np.unique(a, return_index=True)
    ends = np.r_[first[1:], len(a)]
    pos = np.minimum(np.searchsorted(keys, key_arr), len(keys) - 1)
    known = keys[pos] == key_arr
    queries = np.flatnonzero(known)
    queries = queries[np.argsort(pos[queries], kind="stable")]
    groups, starts = np.unique(pos[queries], return_index=True)
    for k, q in zip(groups.tolist(), np.split(queries, starts[1:]), strict=True):  # one search per arrangement
        seg = tt[first[k] : ends[k]]
        lo = first[k] + np.searchsorted(seg, start[q], side="left")
        hi = first[k] + np.searchsorted(seg, stop[q], side="left")
        out[q] = cum[hi] - cum[lo]
    return out


def decision_rewards(
    events: pa.Table, *, window_days: float = DEFAULT_WINDOW_DAYS, horizon_days: float | None = None
) -> DecisionRewards:
    """Every decision's per-decision reward (see the module docstring), vectorised over the log.

    The same attribution as :class:`regsim.feedback.OutcomeMatcher` (a test holds them equal): the
    arrangement's payments at times in ``[t, t + window)``, minus the cost of the messages whose ``decision_id``
    is the decision's.

    Args:
        events: An event log.
        window_days: The feedback window (days, > 0).
        horizon_days: When observation stopped (days); default the time of the log's last event.

    Raises:
        ValueError: ``window_days`` not a positive number.
    """
    if not (math.isfinite(window_days) and window_days > 0):
        raise ValueError(f"window_days must be a number of days > 0, got {window_days}")
    codes = event_codes(events)
    ids = events.column("arrangement_id").to_numpy().astype(np.int64)
    t = events.column("time").to_numpy()
    horizon = float(t.max()) if horizon_days is None and len(t) else float(horizon_days or 0.0)
    amount = np.nan_to_num(events.column("amount_eur").to_numpy(zero_copy_only=False).astype(np.float64))
    decision = events.column("decision_id").to_numpy().astype(np.int64)
    is_decision = codes == EventType.DECISION
    d_ids, d_arr, d_t = decision[is_decision], ids[is_decision], t[is_decision]
    paid = codes == EventType.PAYMENT
    payments = _sum_in_windows(ids[paid], t[paid], amount[paid], d_arr, d_t, d_t + window_days)
    sent = codes == EventType.MESSAGE_SENT
    cost = np.zeros(len(d_ids))
    if sent.any() and len(d_ids):
        order = np.argsort(d_ids)
        pos = np.minimum(np.searchsorted(d_ids[order], decision[sent]), len(d_ids) - 1)
        hit = d_ids[order][pos] == decision[sent]
        np.add.at(cost, order[pos[hit]], amount[sent][hit])
    ending = np.isin(codes, [EventType.COMPLETED, EventType.BROKEN, EventType.REFERRED])
    end_time = _first_time(ids[ending], t[ending], d_arr)
    closed = (d_t + window_days <= horizon) | (end_time >= d_t)
    return DecisionRewards(d_ids, d_arr, d_t, payments - cost, cost, closed, float(window_days), horizon)


def _first_time(arr: NDArray[np.int64], t: NDArray[np.float64], query: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per queried arrangement, the time of its first event among ``(arr, t)`` (``-inf`` if none)."""
    out = np.full(len(query), -np.inf)
    if not len(arr):
        return out
    order = np.lexsort((t, arr))
    a, tt = arr[order], t[order]
    first = np.r_[True, a[1:] != a[:-1]]
    keys, times = a[first], tt[first]
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[pos] == query, times[pos], out)


def step_rewards(
    events: pa.Table, rewards: DecisionRewards, cap: RunoffCap
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """Per decision: what was paid from it until the arrangement's next decision (the last: until its end or
    cap) minus its own contact costs; its step index; and whether it counts in a trajectory (its arrangement
    ended, or passed its cap by the log's end, and the decision is within the cap)."""
    codes = event_codes(events)
    ids = events.column("arrangement_id").to_numpy().astype(np.int64)
    t = events.column("time").to_numpy()
    amount = np.nan_to_num(events.column("amount_eur").to_numpy(zero_copy_only=False).astype(np.float64))
    created = codes == EventType.ARRANGEMENT_CREATED
    n_inst = events.column("n_installments").to_numpy(zero_copy_only=False)[created].astype(np.float64)
    limit_of = dict(zip(ids[created].tolist(), (t[created] + cap.days(n_inst)).tolist(), strict=True))
    r = rewards
    limit = np.array([limit_of.get(a, np.inf) for a in r.arrangement_id.tolist()])
    within = r.time <= limit
    order = np.lexsort((np.arange(len(r.time)), r.time, r.arrangement_id))
    arr_sorted, t_sorted = r.arrangement_id[order], r.time[order]
    first = np.r_[True, arr_sorted[1:] != arr_sorted[:-1]]
    last = np.r_[arr_sorted[1:] != arr_sorted[:-1], True]
    step_sorted = np.arange(len(order)) - np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    nxt = np.r_[t_sorted[1:], np.inf]
    nxt[last] = np.inf
    stop = np.maximum(np.minimum(nxt, np.nextafter(limit[order], np.inf)), t_sorted)  # (events at the cap count)
    paid = codes == EventType.PAYMENT
    step = np.empty(len(order), dtype=np.int64)
    step[order] = step_sorted
    reward = np.empty(len(order))
    reward[order] = _sum_in_windows(ids[paid], t[paid], amount[paid], arr_sorted, t_sorted, stop)
    reward -= r.contact_cost
    ending = np.isin(codes, [EventType.COMPLETED, EventType.BROKEN, EventType.REFERRED])
    ended = _first_time(ids[ending], t[ending], r.arrangement_id) > -np.inf
    closed = ended | (limit <= r.horizon_days)
    return reward, step, closed & within


def arrangement_values(
    events: pa.Table, config: WorldConfig, *, window_days: float = DEFAULT_WINDOW_DAYS
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The per-arrangement value of a log's closed arrangements (ended, or past their run-off cap by the log's
    end): their ids and the sum of their steps' rewards (:func:`step_rewards`), the run-off net recovery (EUR)."""
    rewards = decision_rewards(events, window_days=window_days)
    cap = RunoffCap(months_after_plan=config.simulation.runoff_months_after_plan)
    reward, _, counted = step_rewards(events, rewards, cap)
    arr = rewards.arrangement_id
    closed = np.unique(arr[counted])
    keep = np.isin(arr, closed) & counted
    ids, inverse = np.unique(arr[keep], return_inverse=True)
    return ids, np.bincount(inverse, weights=reward[keep], minlength=len(ids)).astype(np.float64)
