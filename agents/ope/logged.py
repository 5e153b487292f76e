"""From an event log to what the off-policy estimators take: per-decision and per-arrangement feedback.

An event log (a simulator's ``events.parquet`` or the server's ``regsim export-log``; one schema) holds every
decision with its action and the logging policy's propensity, and everything that happened after. This module
rebuilds each decision's context from the log alone (:func:`regsim.replay.contexts_from_log`'s replay), runs the
candidate on those contexts (:mod:`agents.ope.candidates`) and builds

* :class:`~agents.ope.inputs.BanditFeedback` for the **per-decision estimand**: a decision's reward is the euros
  the arrangement paid within ``window_days`` after it (default 14, the bandits' feedback window,
  :class:`agents.bandits.BanditConfig`) minus the cost of the messages the decision itself sent, the
  :mod:`regsim.feedback` attribution (:func:`decision_rewards`); the cluster is the arrangement. Only decisions
  whose window has closed by the log's end count (item 4 of issue 19); a decision whose arrangement ended inside
  its window is closed (nothing more can happen). The others are counted in :class:`LogSummary`.
* :class:`~agents.ope.inputs.TrajectoryFeedback` for the **per-arrangement estimand**, the run-off net recovery
  (euros collected minus contact costs, :func:`regsim.metrics.arrangement_outcomes`): step ``k`` of an
  arrangement is its ``k``-th decision, whose reward is what was paid from that decision until the next (the last:
  until the end or the run-off cap) minus the decision's own contact costs, so the steps add up to the net
  recovery. Only arrangements that ended or passed their cap (``simulation.runoff_months_after_plan``) by the
  log's end count.

Reward-model terms (``q_logged``, ``q_target``) come from :func:`agents.ope.reward_model.cross_fitted_rewards`,
fitted on the counted rows over the shared features (:func:`regsim.features.features`), folds by arrangement.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from agents.ope.candidates import CandidateOnLog, candidate_on_log, policy_probabilities
from agents.ope.inputs import BanditFeedback, TrajectoryFeedback
from regsim.config import WorldConfig
from regsim.decision import PART_NAMES, ContextBatch, Policy
from regsim.eventlog import EventType, event_codes, read_events
from regsim.features import features
from regsim.replay import LogReplay
from regsim.runoff import RunoffCap

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "DecisionRewards",
    "LogSummary",
    "LoggedDecisions",
    "LoggedFeedback",
    "build_feedback",
    "decision_rewards",
    "logged_decisions",
    "arrangement_values",
    "read_log",
    "shadow_candidate",
    "step_rewards",
]

#: The feedback window of the per-decision reward: the bandits' (``BanditConfig.feedback_window_days``), days.
DEFAULT_WINDOW_DAYS = 14.0

Progress = Callable[[str], None]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_log(path: str | Path) -> pa.Table:
    """The event log of a folder (``DIR/events.parquet``) or of a Parquet file.

    Raises:
        FileNotFoundError: No such folder or file, naming what was looked for.
    """
    p = Path(path)
    file = p / "events.parquet" if p.is_dir() else p
    if not file.is_file():
        raise FileNotFoundError(f"--log: no event log at {file} (expected DIR/events.parquet)")
    return read_events(file)


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


@dataclass(frozen=True)
class LoggedDecisions:
    """A log's decisions with their rebuilt contexts (log order; arrays of shape ``(n,)`` unless said).

    Attributes:
        rewards: The per-decision rewards and whether each window has closed.
        contexts: Each decision's context, rebuilt from the log alone.
        actions: The logged (effective) actions, shape ``(n, 5)``.
        propensity: The logged propensity (``nan`` where the log has none).
        policy: The logging policy's name and version per decision (``"name version"``).
        kind: The decision kind (:class:`~regsim.decision.DecisionKind`).
    """

    rewards: DecisionRewards
    contexts: ContextBatch
    actions: NDArray[np.int64]
    propensity: NDArray[np.float64]
    policy: NDArray[np.str_]
    kind: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.actions)

    def of_arrangements(self, arrangement_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Rows of the decisions of some arrangements (log order)."""
        return np.flatnonzero(np.isin(self.rewards.arrangement_id, arrangement_ids))

    def take(self, rows: NDArray[np.int64]) -> LoggedDecisions:
        """The decisions at ``rows``."""
        return LoggedDecisions(
            self.rewards.take(rows),
            self.contexts.take(rows),
            self.actions[rows],
            self.propensity[rows],
            self.policy[rows],
            self.kind[rows],
        )


def logged_decisions(
    events: pa.Table,
    config: WorldConfig,
    *,
    window_days: float = DEFAULT_WINDOW_DAYS,
    horizon_days: float | None = None,
    progress: Progress | None = None,
    chunk_arrangements: int = 2_000,
) -> LoggedDecisions:
    """The log's decisions with their contexts rebuilt by a replay of the log (:class:`regsim.replay.LogReplay`).

    Arrangements are independent, so the replay runs over blocks of ``chunk_arrangements`` of them, each
    reporting its progress.

    Raises:
        ValueError: The log holds no decision.
    """
    rewards = decision_rewards(events, window_days=window_days, horizon_days=horizon_days)
    if not len(rewards.decision_id):
        raise ValueError("--log: the event log holds no decision")
    ids = np.unique(events.column("arrangement_id").to_numpy())
    horizon = int(np.nanmax(events.column("time").to_numpy())) + 1
    parts: list[ContextBatch] = []
    decision_parts: list[NDArray[np.int64]] = []
    started = time.perf_counter()
    for lo in range(0, len(ids), chunk_arrangements):
        block = ids[lo : lo + chunk_arrangements]
        table = events.filter(pc.is_in(events.column("arrangement_id"), pa.array(block)))
        batch = LogReplay(config, block.tolist(), horizon).feed(table)
        if batch is not None:
            parts.append(batch)
            is_decision = event_codes(table) == EventType.DECISION
            decision_parts.append(table.column("decision_id").to_numpy()[is_decision].astype(np.int64))
        if progress is not None:
            done = min(lo + chunk_arrangements, len(ids))
            progress(f"replayed {done:,}/{len(ids):,} arrangements ({time.perf_counter() - started:.1f} s)")
    contexts = ContextBatch.concat(parts)
    replayed = np.concatenate(decision_parts)
    # Back to log order (the blocks hold each arrangement's decisions in log order).
    where = {d: k for k, d in enumerate(replayed.tolist())}
    order = np.array([where[d] for d in rewards.decision_id.tolist()], dtype=np.int64)
    contexts = contexts.take(order)
    decisions = events.filter(pc.equal(events.column("event"), "decision"))
    actions = np.stack([decisions.column(f"a_{p}").to_numpy() for p in PART_NAMES], axis=1).astype(np.int64)
    propensity = decisions.column("propensity").to_numpy(zero_copy_only=False).astype(np.float64)
    names = decisions.column("policy").to_pylist()
    versions = decisions.column("policy_version").to_pylist()
    policy = np.array([f"{n} {v}" for n, v in zip(names, versions, strict=True)])
    kind = np.asarray(contexts.columns["kind"], dtype=np.int64)
    return LoggedDecisions(rewards, contexts, actions, propensity, policy, kind)


@dataclass(frozen=True)
class LogSummary:
    """What a log held and what of it the estimates use (the counts item 4 of issue 19 reports).

    Attributes:
        window_days: The per-decision feedback window (days).
        horizon_days: The log's end (days).
        decisions: Decisions in the log.
        decisions_counted: Decisions in the per-decision feedback.
        decisions_open: Decisions left out because their window had not closed by the log's end.
        decisions_without_propensity: Left out because the log gives no propensity in (0, 1].
        decisions_without_candidate: Left out because the candidate gave no action (a shadow policy that was
            not running or failed at that decision).
        arrangements: Arrangements in the log.
        arrangements_counted: Arrangements in the per-arrangement feedback (ended or past their run-off cap).
        arrangements_open: Left out because they were still open and within their cap at the log's end.
        arrangements_without_propensity: Left out because one of their decisions lacks a propensity.
        logging_policies: The logging policies (``"name version"``) and their decision counts.
        candidate_source: How the candidate's probabilities were obtained (:mod:`agents.ope.candidates`).
    """

    window_days: float
    horizon_days: float
    decisions: int
    decisions_counted: int
    decisions_open: int
    decisions_without_propensity: int
    decisions_without_candidate: int
    arrangements: int
    arrangements_counted: int
    arrangements_open: int
    arrangements_without_propensity: int
    logging_policies: tuple[tuple[str, int], ...]
    candidate_source: str


@dataclass(frozen=True)
class LoggedFeedback:
    """The estimators' inputs built from one log for one candidate.

    Attributes:
        bandit: Per-decision feedback (closed windows only).
        trajectory: Per-arrangement feedback (closed arrangements only), or ``None`` if none is closed.
        candidate: The candidate on every logged decision (all rows, log order).
        rows: The logged decisions (indices into the log's decisions) in ``bandit``, in its order.
        summary: The counts.
    """

    bandit: BanditFeedback
    trajectory: TrajectoryFeedback | None
    candidate: CandidateOnLog
    rows: NDArray[np.int64]
    summary: LogSummary


def shadow_candidate(shadow: pa.Table, logged: LoggedDecisions) -> tuple[CandidateOnLog, NDArray[np.bool_]]:
    """The server's shadow policy as a candidate: its logged draw at each decision (``shadow_decisions``).

    The shadow decided on the same context as the active policy and its action is stored; ``[shadow action ==
    logged action]`` is an unbiased estimate of the shadow's probability of the logged action (its draw is
    independent of the outcome given the context), exact for a deterministic shadow, so IPS and DR evaluate it
    as they evaluate any candidate (the ``sampled`` source, with one draw).

    Args:
        shadow: Rows with ``decision_id`` and ``a_channel`` .. ``a_reduction`` (null where the shadow failed).
        logged: The log's decisions.

    Returns:
        The candidate on every logged decision and, per decision, whether the shadow gave an action.

    Raises:
        ValueError: ``shadow`` lacks a column (named).
    """
    needed = ["decision_id", *(f"a_{p}" for p in PART_NAMES)]
    missing = [c for c in needed if c not in shadow.column_names]
    if missing:
        raise ValueError(f"--shadow: the shadow decisions lack columns {missing}; needed: {needed}")
    ids = shadow.column("decision_id").to_numpy().astype(np.int64)
    cols = [shadow.column(f"a_{p}").to_numpy(zero_copy_only=False) for p in PART_NAMES]
    acts = np.stack([np.nan_to_num(np.asarray(c, dtype=np.float64), nan=-1.0) for c in cols], axis=1).astype(np.int64)
    index = {d: k for k, d in enumerate(ids.tolist())}
    n = len(logged)
    own = np.zeros((n, len(PART_NAMES)), dtype=np.int64)
    present = np.zeros(n, dtype=bool)
    for k, d in enumerate(logged.rewards.decision_id.tolist()):
        j = index.get(d)
        if j is not None and (acts[j] >= 0).all():
            own[k], present[k] = acts[j], True
    target = np.all(own == logged.actions, axis=1).astype(np.float64)
    return CandidateOnLog("sampled", target, own[:, None, :], np.ones((n, 1))), present


def _unsupported(
    logged: LoggedDecisions, candidate: CandidateOnLog, behaviours: dict[str, Policy | None]
) -> NDArray[np.float64]:
    """Per decision, the candidate's weight on support actions the logging policy gives probability 0.

    Where the logging policy is rebuilt (``behaviours``), from its probabilities of the candidate's support;
    where the logged propensity is 1 (a deterministic logger there), ``1 - target_prob``; else 0 (unknown).
    """
    k = candidate.weights.shape[1]
    out = np.where(logged.propensity == 1.0, 1.0 - candidate.target_prob, 0.0)
    for label, policy in behaviours.items():
        rows = np.flatnonzero(logged.policy == label)
        if policy is None or not len(rows):
            continue
        sub = logged.contexts.take(rows)
        zero = np.zeros((len(rows), k), dtype=bool)
        for j in range(k):
            p = policy_probabilities(policy, sub, candidate.support[rows, j])
            if p is None:
                break
            zero[:, j] = p <= 0.0
        else:
            out[rows] = (candidate.weights[rows] * zero).sum(axis=1)
    return np.clip(out, 0.0, 1.0)


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


def build_feedback(
    events: pa.Table,
    logged: LoggedDecisions,
    candidate: Policy | CandidateOnLog,
    *,
    config: WorldConfig,
    behaviours: dict[str, Policy | None] | None = None,
    candidate_present: NDArray[np.bool_] | None = None,
    reward_model: bool = True,
    folds: int = 5,
    seed: int = 0,
    samples: int = 16,
    trajectories: bool = True,
    interactions: bool = True,
) -> LoggedFeedback:
    """The per-decision and per-arrangement feedback of a candidate on a log.

    Args:
        events: The event log ``logged`` was built from.
        logged: Its decisions (:func:`logged_decisions`).
        candidate: The candidate policy, or its probabilities already computed (e.g. :func:`shadow_candidate`).
        config: The world config the log was made under (its run-off cap).
        behaviours: The logging policies rebuilt per ``"name version"`` label (``None`` where unknown), for the
            support diagnostic.
        candidate_present: Per decision, whether the candidate gave an action (default: everywhere).
        reward_model: Fit the cross-fitted reward model (``q_logged``, ``q_target``); without it DM/DR are refused.
        folds: Cross-fitting folds (by arrangement).
        seed: Seed of the reward model's folds and of the candidate's support draws.
        samples: Draws per context of a stochastic candidate's support.
        trajectories: Build the per-arrangement feedback too.
        interactions: The reward model's context x action-part interactions (``context_interactions`` of
            :func:`~agents.ope.reward_model.cross_fitted_rewards`: better fits, a ~2,000-coefficient solve per fold).

    Raises:
        ValueError: No decision is left to count (the message says why).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4F5045]))
    on_log = (
        candidate
        if isinstance(candidate, CandidateOnLog)
        else candidate_on_log(candidate, logged.contexts, logged.actions, rng=rng, samples=samples)
    )
    present = np.ones(len(logged), dtype=bool) if candidate_present is None else candidate_present
    has_p = np.isfinite(logged.propensity) & (logged.propensity > 0) & (logged.propensity <= 1)
    closed = logged.rewards.closed
    rows = np.flatnonzero(closed & has_p & present)
    if not len(rows):
        raise ValueError(
            f"--log: no decision to evaluate: {int((~closed).sum())} of {len(logged)} have an open feedback window "
            f"({logged.rewards.window_days:g} days), {int((~has_p).sum())} lack a propensity, "
            f"{int((~present).sum())} have no candidate action"
        )
    unsupported = _unsupported(logged, on_log, behaviours or {})
    feats = features(logged.contexts).astype(np.float64)
    q_logged = q_target = None
    if reward_model:
        q_logged, q_target = _q(logged, on_log, feats, logged.rewards.reward, rows, folds, seed, interactions)
    bandit = BanditFeedback(
        cluster=logged.rewards.arrangement_id[rows],
        reward=logged.rewards.reward[rows],
        pscore=logged.propensity[rows],
        target_prob=on_log.target_prob[rows],
        q_logged=q_logged,
        q_target=q_target,
        unsupported_mass=unsupported[rows],
    )
    cap = RunoffCap(months_after_plan=config.simulation.runoff_months_after_plan)
    step_reward, step, arr_closed = step_rewards(events, logged.rewards, cap)
    arr_ids = logged.rewards.arrangement_id
    bad_arr = np.unique(arr_ids[~(has_p & present)])
    usable = arr_closed & ~np.isin(arr_ids, bad_arr)
    trajectory = None
    if trajectories and usable.any():
        srows = np.flatnonzero(usable)
        tq_logged = tq_target = None
        if reward_model:
            tq_logged, tq_target = _q(logged, on_log, feats, step_reward, srows, folds, seed + 1, interactions)
        trajectory = TrajectoryFeedback(
            trajectory=arr_ids[srows],
            step=step[srows],
            reward=step_reward[srows],
            pscore=logged.propensity[srows],
            target_prob=on_log.target_prob[srows],
            q_logged=tq_logged,
            q_target=tq_target,
            v_next=None if tq_target is None else _next_in_trajectory(arr_ids[srows], step[srows], tq_target),
        )
    labels, counts = np.unique(logged.policy, return_counts=True)
    all_arr = np.unique(arr_ids)
    closed_arr = np.unique(arr_ids[arr_closed])
    summary = LogSummary(
        window_days=logged.rewards.window_days,
        horizon_days=logged.rewards.horizon_days,
        decisions=len(logged),
        decisions_counted=len(rows),
        decisions_open=int((~closed).sum()),
        decisions_without_propensity=int((closed & ~has_p).sum()),
        decisions_without_candidate=int((closed & has_p & ~present).sum()),
        arrangements=len(all_arr),
        arrangements_counted=len(np.unique(arr_ids[usable])),
        arrangements_open=len(all_arr) - len(closed_arr),
        arrangements_without_propensity=len(np.intersect1d(closed_arr, bad_arr)),
        logging_policies=tuple((str(a), int(b)) for a, b in zip(labels, counts, strict=True)),
        candidate_source=on_log.source,
    )
    return LoggedFeedback(bandit, trajectory, on_log, rows, summary)


def _next_in_trajectory(
    trajectory: NDArray[np.int64], step: NDArray[np.int64], value: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per step, ``value`` at the next step of its trajectory (0 after the last): the model's next-state value."""
    order = np.lexsort((step, trajectory))
    nxt = np.zeros(len(order))
    same = trajectory[order][1:] == trajectory[order][:-1]
    nxt[order[:-1][same]] = value[order][1:][same]
    return nxt


def _q(
    logged: LoggedDecisions,
    on_log: CandidateOnLog,
    feats: NDArray[np.float64],
    reward: NDArray[np.float64],
    rows: NDArray[np.int64],
    folds: int,
    seed: int,
    interactions: bool,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    from agents.ope.reward_model import cross_fitted_rewards

    groups = logged.rewards.arrangement_id[rows]
    q_logged, q_target = cross_fitted_rewards(
        feats[rows],
        logged.actions[rows],
        on_log.support[rows],
        on_log.weights[rows],
        reward[rows],
        groups,
        action_sizes=tuple(logged.contexts.space.nvec),
        folds=max(2, min(folds, len(np.unique(groups)))),
        seed=seed,
        kinds=logged.kind[rows],
        context_interactions=interactions,
    )
    return np.asarray(q_logged, dtype=np.float64), np.asarray(q_target, dtype=np.float64)
