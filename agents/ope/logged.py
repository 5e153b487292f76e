"""A log's decisions rebuilt from the event log alone: contexts, actions, propensities, the logging policy.

An event log (a simulator's ``events.parquet`` or the server's ``regsim export-log``; one schema) holds every
decision with its action and the logging policy's propensity, and everything that happened after.
:func:`logged_decisions` rebuilds each decision's context from the log alone (:class:`regsim.replay.LogReplay`)
with its per-decision reward (:func:`agents.ope.log_rewards.decision_rewards`); :func:`shadow_candidate` reads the
server's shadow policy's stored decisions as a candidate. :mod:`agents.ope.feedback` turns them into the
estimators' inputs.

The reward functions of :mod:`agents.ope.log_rewards` are re-exported here (their earlier home).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from agents.ope.candidates import CandidateOnLog
from agents.ope.log_rewards import (
    DEFAULT_WINDOW_DAYS,
    DecisionRewards,
    arrangement_values,
    decision_rewards,
    step_rewards,
)
from regsim.config import WorldConfig
from regsim.decision import PART_NAMES, ContextBatch
from regsim.eventlog import EventType, event_codes, read_events
from regsim.replay import LogReplay

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "DecisionRewards",
    "LoggedDecisions",
    "decision_rewards",
    "logged_decisions",
    "arrangement_values",
    "read_log",
    "shadow_candidate",
    "step_rewards",
]

Progress = Callable[[str], None]


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
