"""Scripted rollouts: many copies of the population's arrangements played forward with the same random numbers.

The engine of the hindsight oracle (:mod:`agents.hindsight`). A rollout is one row of a
:class:`regsim.vector_world.VectorWorld` holding one arrangement (debtor ``k`` of the population of ``seed``),
played from day 0 to the horizon with a *script*: its first decisions are given (a prefix of actions, then
one forced action), the rest are taken by a base policy. Every draw of regsim is a pure function of (seed,
purpose, debtor, day) (:mod:`regsim.random`), and a vector world's rows are independent (each its own
capacity), so a row's trajectory is a deterministic function of its debtor and its actions: two rows with the
same debtor and the same script live the same life, whatever the other rows do. That is what lets a rollout
search compare candidate actions on the very same random numbers.

A row's objective is read from its own event log with :func:`regsim.metrics.arrangement_outcomes`, the function
the evaluation uses on a World's log, so the rollouts and the evaluation score a life the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from regsim.clock import Time
from regsim.config import WorldConfig
from regsim.decision import ContextBatch, Policy
from regsim.eventlog import EventType
from regsim.metrics import arrangement_outcomes
from regsim.runoff import RunoffCap
from regsim.vector_world import Phase, VectorWorld

__all__ = ["Lives", "Script", "play"]


class _LoggedRows(VectorWorld):
    """A vector world that keeps every event in its log, with the row as the arrangement id.

    Rows share debtors (one debtor per candidate), so the row, not the debtor, tells their lives apart.
    """

    def keeps(self, event: EventType) -> bool:
        return True

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        self.log.append(event, t, np.asarray(rows, dtype=np.int64), **columns)


@dataclass(frozen=True)
class Script:
    """What each rollout row plays: its debtor, its base policy, a prefix of given actions and a forced action.

    Attributes:
        debtor: Arrangement id (debtor of the population) of each row, shape ``(R,)``.
        base: Index into the base policies of each row, shape ``(R,)``.
        prefix: The actions of each row's first ``depth`` decisions, shape ``(R, depth, 5)``.
        forced: The action of decision ``depth`` of each row, shape ``(R, 5)``, or None (the base decides).
    """

    debtor: NDArray[np.int64]
    base: NDArray[np.int64]
    prefix: NDArray[np.int64]
    forced: NDArray[np.int64] | None

    def __post_init__(self) -> None:
        r = len(self.debtor)
        if self.base.shape != (r,) or self.prefix.ndim != 3 or self.prefix.shape[0] != r:
            raise ValueError(f"script: debtor, base and prefix must have {r} rows")
        if self.forced is not None and self.forced.shape != (r, 5):
            raise ValueError(f"script.forced: expected shape ({r}, 5), got {self.forced.shape}")

    @property
    def depth(self) -> int:
        """Decisions given by the prefix."""
        return int(self.prefix.shape[1])


@dataclass(frozen=True)
class Lives:
    """What the rollout rows lived: their outcomes and every decision they took.

    Attributes:
        outcomes: :func:`regsim.metrics.arrangement_outcomes` of each row, indexed by row ``0..R-1``.
        decision_row: Row of each decision taken, in the order of each row's decisions.
        decision_index: Its position among its row's decisions (0, 1, ...).
        actions: The action submitted, shape ``(M, 5)``.
        masks: The decision point's mask, shape ``(M, mask_size)``.
        kinds: The decision point's :class:`~regsim.decision.DecisionKind`.
    """

    outcomes: pd.DataFrame
    decision_row: NDArray[np.int64]
    decision_index: NDArray[np.int64]
    actions: NDArray[np.int64]
    masks: NDArray[np.bool_]
    kinds: NDArray[np.int64]

    def decisions_of(self, rows: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        """Positions (into the decision arrays) of each row's decisions, in order."""
        order = np.lexsort((self.decision_index, self.decision_row))
        sorted_rows = self.decision_row[order]
        starts = np.searchsorted(sorted_rows, rows, side="left")
        ends = np.searchsorted(sorted_rows, rows, side="right")
        return [order[s:e] for s, e in zip(starts, ends, strict=True)]


def play(
    config: WorldConfig,
    seed: int,
    months: int,
    script: Script,
    bases: Sequence[Policy],
    *,
    cap: RunoffCap | None = None,
) -> Lives:
    """Play every row of a script from day 0 to the horizon and return what the rows lived.

    Args:
        config: The world.
        seed: The population's seed (the evaluation's run seed: the same debtors and draws).
        months: Horizon in months of 30 days (as the evaluation's).
        script: The rows and what they play.
        bases: The base policies (fixed, deterministic, and deciding each row from its own context alone; the
            rule-based policies are).
        cap: The evaluation's run-off cap: a row's events past its cap do not count and a row open there is
            censored (as :func:`regsim.metrics.arrangement_outcomes` treats a World's log). ``months`` must
            then cover every cap (:func:`regsim.runoff.covering_months`). None: every event to the horizon.

    Raises:
        RuleViolation: A scripted action breaks a rule (a prefix that no longer matches its row's life).
    """
    r = len(script.debtor)
    world = _LoggedRows(config, r, months=months, seed=seed)
    rows_all = np.arange(r, dtype=np.int64)
    world.reset_rows(rows_all, script.debtor)
    taken = np.zeros(r, dtype=np.int64)  # decisions each row has taken
    depth = script.depth
    parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.int64]]]
    parts = []
    while True:
        world.advance()
        if not world.frozen:
            break
        rows, batch = world.frozen[0]
        k = taken[rows]
        actions = _base_actions(batch, script.base[rows], bases)
        given = k < depth
        if given.any():
            actions[given] = script.prefix[rows[given], k[given]]
        if script.forced is not None:
            at = k == depth
            actions[at] = script.forced[rows[at]]
        parts.append((rows, k, actions, batch.mask.copy(), batch.columns["kind"].astype(np.int64)))
        world.answer(rows, actions)
        taken[rows] += 1
    if np.any(world.phase != Phase.DONE):  # (advance() runs every row to a decision point or its end)
        raise RuntimeError("rollout rows left unfinished")
    outcomes = arrangement_outcomes(world.log.to_table(), cap=cap, horizon_days=float(world.days)).reindex(
        pd.RangeIndex(r, name="arrangement_id")
    )
    if outcomes["created"].isna().any():
        raise RuntimeError("a rollout row created no arrangement within the horizon")
    width = world.space.mask_size
    return Lives(
        outcomes=outcomes,
        decision_row=np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64),
        decision_index=np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64),
        actions=np.concatenate([p[2] for p in parts]) if parts else np.zeros((0, 5), np.int64),
        masks=np.concatenate([p[3] for p in parts]) if parts else np.zeros((0, width), bool),
        kinds=np.concatenate([p[4] for p in parts]) if parts else np.zeros(0, np.int64),
    )


def _base_actions(batch: ContextBatch, base: NDArray[np.int64], bases: Sequence[Policy]) -> NDArray[np.int64]:
    """Each row's base policy's action (each policy decides on its own rows only)."""
    actions = np.zeros((len(batch), 5), dtype=np.int64)
    for b, policy in enumerate(bases):
        mine = np.flatnonzero(base == b)
        if len(mine):
            actions[mine] = policy.decide_batch(batch.take(mine)).actions
    return actions
