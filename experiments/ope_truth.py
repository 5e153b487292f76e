"""The exact truth of the per-decision OPE estimand in the simulator: the candidate's reward on the logged contexts.

A per-decision estimator (IPS, DR, ... of :mod:`agents.ope.estimators`) estimates, from a log made by a logging
policy :math:`\\pi_0`, the candidate :math:`\\pi`'s mean per-decision reward *on the logged contexts*:

.. math:: V(\\pi; \\pi_0) = \\frac{1}{n} \\sum_i E_{a \\sim \\pi(\\cdot | x_i)}\\,[\\,r_i(a)\\,],

where :math:`x_i` is the context of logged decision :math:`i` (those the logger led to) and :math:`r_i(a)` is the
reward of :func:`agents.ope.logged.decision_rewards` (euros paid within the feedback window minus the decision's
own contact cost) had action :math:`a` been taken at :math:`i` and the *logger* gone on deciding afterwards.
That is not the on-policy mean of the candidate (over the contexts the candidate leads to), which differs
wherever the logger's actions (a deferral, a reduction) change which decision points arise.

In the simulator :math:`r_i(a)` is computable exactly: every draw of regsim is a pure function of (seed, purpose,
debtor, day) (:mod:`regsim.random`), and with dedicated capacity (:class:`regsim.capacity.DedicatedCapacity`)
an arrangement's life is a deterministic function of its own actions. So decision :math:`i` of arrangement
:math:`k` is *branched*: a :class:`~regsim.vector_world.VectorWorld` row plays debtor :math:`k` from day 0 with
the logged actions of its earlier decisions (the very same life up to :math:`i`), the candidate's action at
:math:`i` (one draw of the candidate's distribution on the logged context; exact for a deterministic candidate),
then the logger's fresh draws; its reward is read from the row's own event log with the estimators' function.
Where the candidate's action equals the logged one, the branch is the logged life itself, and its reward is the
logged reward (:func:`branch_rewards` replays it on request: the check that branching reproduces the log).

The logs must then come from a world with dedicated capacity (:func:`simulate_log`): with shared collectors an
arrangement's life also depends on the others', and no branch of one arrangement is exact. The logger must be
fixed (no online learning: a learner's distribution at decision :math:`i` depends on every earlier outcome of the
log); :func:`branchable` says whether it is.

Compute: one row per branched decision, each played from day 0 until its window closes (rows frozen at a later
decision point past the window are left there). :func:`branched_truth` branches every counted decision or a
uniform random sample of them, and reports the sampling standard error (clustered by arrangement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from agents.ope.candidates import effective_actions
from agents.ope.logged import LoggedDecisions, decision_rewards
from regsim.clock import Time
from regsim.config import WorldConfig
from regsim.decision import ContextBatch, Policy
from regsim.eventlog import EventType
from regsim.runoff import RunoffCap
from regsim.vector_world import VectorWorld
from regsim.world import World

__all__ = ["BranchedTruth", "branch_rewards", "branchable", "branched_truth", "simulate_log"]


def simulate_log(config: WorldConfig, policy: Policy, *, arrangements: int, seed: int) -> pa.Table:
    """The event log of a run-off of ``arrangements`` debtors under ``policy`` with dedicated capacity.

    The world of :func:`regsim.simulate.simulate` (run off with the config's ``simulation.runoff_months_after_plan``
    cap), except that each arrangement has its own collectors, robocall lines and print room, so that its life
    depends on its own actions only and can be branched (:func:`branch_rewards`).
    """
    cap = RunoffCap(months_after_plan=config.simulation.runoff_months_after_plan)
    world = World(config, policy, arrangements=arrangements, runoff=cap, seed=seed, dedicated_capacity=True)
    world.run()
    return world.log.to_table()


def branchable(logger: Policy) -> bool:
    """Whether decisions logged by ``logger`` can be branched: a fixed policy (never fed back, so its distribution
    at a context does not depend on the log's other outcomes) that reads no ground truth."""
    return logger.feedback_window_days is None and not logger.requires_ground_truth


class _Rows(VectorWorld):
    """A vector world keeping every event in its log, with the row as the arrangement id (rows share debtors)."""

    def keeps(self, event: EventType) -> bool:
        return True

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        self.log.append(event, t, np.asarray(rows, dtype=np.int64), **columns)


def _positions(arrangement_id: NDArray[np.int64], time: NDArray[np.float64]) -> NDArray[np.int64]:
    """Each decision's position among its arrangement's decisions (0, 1, ...), in log order (ties by log order)."""
    order = np.lexsort((np.arange(len(time)), time, arrangement_id))
    arr = arrangement_id[order]
    first = np.r_[True, arr[1:] != arr[:-1]] if len(arr) else np.zeros(0, bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(len(arr)), 0)) if len(arr) else np.zeros(0, np.int64)
    out = np.empty(len(time), dtype=np.int64)
    out[order] = np.arange(len(arr)) - starts
    return out


def _window(logged: LoggedDecisions, window_days: float | None) -> float:
    """The log's feedback window, refusing another one."""
    own = logged.rewards.window_days
    if window_days is not None and window_days != own:
        raise ValueError(
            f"window_days: {window_days:g} days, but the log's rewards were computed with {own:g} "
            "(logged_decisions(..., window_days=...)); branch with the log's window"
        )
    return own


def branch_rewards(
    config: WorldConfig,
    seed: int,
    logged: LoggedDecisions,
    rows: NDArray[np.int64],
    actions: NDArray[np.int64],
    continuation: Policy,
    *,
    window_days: float | None = None,
    replay_identical: bool = False,
) -> NDArray[np.float64]:
    """The reward of each logged decision ``rows[j]`` had ``actions[j]`` been taken there, the logger going on.

    Args:
        config: The world the log was made in (by :func:`simulate_log`).
        seed: The log's seed.
        logged: The log's decisions (:func:`agents.ope.logged.logged_decisions`, log order).
        rows: Decisions to branch (indices into ``logged``), shape ``(m,)``.
        actions: The action taken at each, shape ``(m, 5)`` (effective actions; must be allowed there).
        continuation: The logging policy (fixed: :func:`branchable`), deciding every later decision of a branch
            whose action differs from the logged one.
        window_days: The reward's feedback window: the log's (``logged.rewards.window_days``, the default); another
            is refused (the logged rewards and closed windows would be of another estimand).
        replay_identical: Play the branches whose action equals the logged one too (with every logged action
            after it: the logged life), rather than reading their reward from the log. For checking.

    Returns:
        The branched rewards, shape ``(m,)``.

    Raises:
        ValueError: Misshapen ``actions``, a continuation that is not fixed, or a window other than the log's.
        RuleViolation: An action breaks a rule at its decision (or the log was not made with dedicated capacity
            and a replayed prefix no longer fits).
    """
    window_days = _window(logged, window_days)
    rows = np.asarray(rows, dtype=np.int64)
    acts = np.asarray(actions, dtype=np.int64)
    if acts.shape != (len(rows), 5):
        raise ValueError(f"actions: expected shape ({len(rows)}, 5), got {acts.shape}")
    if not branchable(continuation):
        raise ValueError(f"continuation: {continuation.name!r} learns online or reads ground truth; not branchable")
    rewards = logged.rewards
    out = rewards.reward[rows].astype(np.float64).copy()
    same = np.all(acts == logged.actions[rows], axis=1)
    play = np.flatnonzero(~same | replay_identical)
    if not len(play):
        return out
    arr_all, t_all = rewards.arrangement_id, rewards.time
    position = _positions(arr_all, t_all)
    # Each arrangement's logged actions in order.
    order = np.lexsort((position, arr_all))
    keys, first = np.unique(arr_all[order], return_index=True)
    ends = np.r_[first[1:], len(order)]
    b = rows[play]
    debtor = arr_all[b]
    depth = position[b]
    at = np.searchsorted(keys, debtor)
    longest = int((ends - first).max())
    prefix = np.zeros((len(b), longest, 5), dtype=np.int64)
    for j, k in enumerate(at.tolist()):
        prefix[j, : ends[k] - first[k]] = logged.actions[order[first[k] : ends[k]]]
    identical = same[play]
    # A branch: the logged prefix, its action at depth, then (identical: the logged actions; else) the logger.
    replay_all = np.where(identical, longest, depth)
    prefix[np.arange(len(b)), depth] = acts[play]
    stop_after = t_all[b] + window_days
    horizon_days = float(np.max(stop_after)) + 1.0
    world = _Rows(config, len(b), months=math.ceil(horizon_days / 30.0) + 1, seed=seed)
    world.reset_rows(np.arange(len(b), dtype=np.int64), debtor)
    taken = np.zeros(len(b), dtype=np.int64)
    while True:
        world.advance()
        if not world.frozen:
            break
        frozen, batch = world.frozen[0]
        k = taken[frozen]
        # Rows past their window are left frozen (nothing after it counts); the others are answered.
        go = (k <= depth[frozen]) | (batch.columns["day"] < stop_after[frozen])
        if not go.any():
            break
        frozen, k = frozen[go], k[go]
        sub = batch.take(np.flatnonzero(go))
        decided = effective_actions(sub, continuation.decide_batch(sub).actions)
        given = k <= replay_all[frozen]
        decided[given] = prefix[frozen[given], np.minimum(k[given], longest - 1)]
        world.answer(frozen, decided)
        taken[frozen] += 1
    events = world.log.to_table()
    branched = decision_rewards(events, window_days=window_days, horizon_days=horizon_days + window_days)
    # The branched decision of row j is its decision number depth[j] (decision ids grow with time in a row).
    mine = branched.arrangement_id * (longest + 1) + _positions(branched.arrangement_id, branched.time)
    wanted = np.arange(len(b), dtype=np.int64) * (longest + 1) + depth
    where = np.searchsorted(mine, wanted, sorter=np.argsort(mine))
    found = np.argsort(mine)[np.minimum(where, len(mine) - 1)]
    if not len(mine) or np.any(mine[found] != wanted):
        raise RuntimeError("branching: a branched decision never came up (the log is not reproduced)")
    out[play] = branched.reward[found]
    return out


@dataclass(frozen=True)
class BranchedTruth:
    """The per-decision estimand's truth on one log: the candidate's mean branched reward over counted decisions.

    Attributes:
        value: Mean branched reward over the branched decisions (EUR per decision).
        standard_error: Its standard error over the arrangements (the decisions of one arrangement are
            correlated); only the sampling of decisions and the candidate's draws make it nonzero: on all
            decisions of a deterministic candidate, the value on this log is exact.
        rows: The branched decisions (indices into the log's decisions).
        rewards: Their branched rewards.
        sampled: Whether ``rows`` is a uniform random sample of the counted decisions (else all of them).
        logged_value: The logged mean reward over the same decisions (the logger's own value there).
        difference_se: Standard error of ``value - logged_value`` (paired on the decisions, clustered by
            arrangement): much smaller than ``standard_error`` where the candidate is close to the logger.
    """

    value: float
    standard_error: float
    rows: NDArray[np.int64]
    rewards: NDArray[np.float64]
    sampled: bool
    logged_value: float
    difference_se: float


def _clustered_se(values: NDArray[np.float64], cluster: NDArray[np.int64]) -> float:
    """Standard error of the mean of ``values`` with clusters resampled as units (the ratio estimator's)."""
    n = len(values)
    if n < 2:
        return math.nan
    _, inverse = np.unique(cluster, return_inverse=True)
    g = int(inverse.max()) + 1
    if g < 2:
        return math.nan
    resid = np.bincount(inverse, weights=values - values.mean(), minlength=g)
    return float(math.sqrt(g / (g - 1) * np.sum(resid**2)) / n)


def branched_truth(
    config: WorldConfig,
    seed: int,
    logged: LoggedDecisions,
    candidate: Policy,
    logger: Policy,
    *,
    rng: np.random.Generator,
    sample: int | None = None,
    window_days: float | None = None,
) -> BranchedTruth:
    """The candidate's true per-decision value on a log's counted (closed-window) decisions, by branching.

    Args:
        config: The world of the log (:func:`simulate_log`).
        seed: The log's seed.
        logged: The log's decisions.
        candidate: The candidate; its action at each branched decision is one draw of its ``decide_batch`` on the
            logged context (exact for a deterministic candidate; for a stochastic one, an unbiased draw).
        logger: The logging policy (fixed), deciding after each branched decision.
        rng: Draws the sample of decisions.
        sample: Branch a uniform random sample of this many counted decisions (without replacement); ``None`` or
            at least their number: all of them.
        window_days: The feedback window: the log's (the default); another is refused.

    Raises:
        ValueError: ``sample < 1``; no counted decision; a logger that is not fixed; a window other than the log's.
    """
    if sample is not None and sample < 1:
        raise ValueError(f"sample: expected a number of decisions >= 1, got {sample}")
    window_days = _window(logged, window_days)
    counted = np.flatnonzero(logged.rewards.closed)
    if not len(counted):
        raise ValueError("logged: no decision with a closed feedback window to branch")
    sampled = sample is not None and sample < len(counted)
    rows = np.sort(rng.choice(counted, size=sample, replace=False)) if sampled else counted
    contexts: ContextBatch = logged.contexts.take(rows)
    actions = effective_actions(contexts, candidate.decide_batch(contexts).actions)
    rewards = branch_rewards(config, seed, logged, rows, actions, logger, window_days=window_days)
    cluster = logged.rewards.arrangement_id[rows]
    return BranchedTruth(
        value=float(rewards.mean()),
        standard_error=_clustered_se(rewards, cluster),
        rows=rows,
        rewards=rewards,
        sampled=bool(sampled),
        logged_value=float(logged.rewards.reward[rows].mean()),
        difference_se=_clustered_se(rewards - logged.rewards.reward[rows], cluster),
    )
