"""Small scripted policies for the mechanism tests (tests only; never registered).

A :class:`ScriptedPolicy` wants one channel per decision kind, sends at a fixed hour (with a per-kind day
offset), may set the due day at plan creation from a per-arrangement table, and may grant the longest allowed
deferral at chosen decision kinds. Every choice respects ``contexts.mask``: a masked channel becomes "no
contact", a masked send slot the nearest allowed one, a masked due-day or deferral option the best allowed
one below it.

Some arms of the tests read ground truth (e.g. the debtor's payday) to build a per-arrangement table before
the run. That is a test device to create aligned and misaligned arms, not something a real policy could do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from agents.base import BasePolicy, slot_index
from regsim.decision import CHANNEL, DEFERRAL, DUE_DAY, ContextBatch, DecisionBatch, DecisionKind

__all__ = ["COLLECTOR", "EMAIL", "LETTER", "NONE", "ROBOCALL", "SMS", "ScriptedPolicy"]

NONE, EMAIL, SMS, LETTER, ROBOCALL, COLLECTOR = range(6)


class ScriptedPolicy(BasePolicy):
    """A fixed, fully specified test policy.

    Args:
        label: Name logged with its decisions.
        channels: Wanted channel option per decision kind; kinds not named get no contact.
        hour: Hour of the send slot.
        day_offset: Day offset of the send slot per decision kind (default 0).
        due_day_option: Arrangement id to the due-day option (1-based index into ``due_day_options``) to set
            at PLAN_CREATED; arrangements not named keep the default due day.
        defer_at: Decision kinds at which the longest allowed deferral is granted.
    """

    name: ClassVar[str] = "test-scripted"
    version: ClassVar[str] = "1"

    def __init__(
        self,
        label: str,
        channels: Mapping[DecisionKind, int] | None = None,
        *,
        hour: int = 13,
        day_offset: Mapping[DecisionKind, int] | None = None,
        due_day_option: Mapping[int, int] | None = None,
        defer_at: Iterable[DecisionKind] = (),
    ) -> None:
        self.label = label
        self.channels = dict(channels or {})
        self.hour = hour
        self.day_offset = dict(day_offset or {})
        self.defer_at = tuple(int(k) for k in defer_at)
        self._due_ids = np.zeros(0, dtype=np.int64)
        self._due_opts = np.zeros(0, dtype=np.int64)
        if due_day_option:
            ids = np.fromiter(due_day_option.keys(), dtype=np.int64)
            order = np.argsort(ids)
            self._due_ids = ids[order]
            self._due_opts = np.fromiter(due_day_option.values(), dtype=np.int64)[order]
        self.calls = 0

    def __repr__(self) -> str:
        return f"ScriptedPolicy({self.label!r})"

    def _lookup_due(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        if not len(self._due_ids):
            return np.zeros(len(ids), dtype=np.int64)
        pos = np.clip(np.searchsorted(self._due_ids, ids), 0, len(self._due_ids) - 1)
        return np.where(self._due_ids[pos] == ids, self._due_opts[pos], 0)

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        self.calls += 1
        n = len(b)
        kind = b.columns["kind"].astype(np.int64)
        rows = np.arange(n)

        want = np.zeros(n, dtype=np.int64)
        offset = np.zeros(n, dtype=np.int64)
        for k, ch in self.channels.items():
            want[kind == int(k)] = ch
        for k, off in self.day_offset.items():
            offset[kind == int(k)] = off
        channel_mask = b.part_mask(CHANNEL)
        channel = np.where(channel_mask[rows, want], want, 0)
        slot = slot_index(b, offset, self.hour)

        due = np.where(kind == DecisionKind.PLAN_CREATED, self._lookup_due(b.columns["arrangement_id"]), 0)
        due = np.where(b.part_mask(DUE_DAY)[rows, due], due, 0)

        deferral_mask = b.part_mask(DEFERRAL)
        longest = deferral_mask.shape[1] - 1 - np.argmax(deferral_mask[:, ::-1], axis=1)
        deferral = np.where(np.isin(kind, self.defer_at), longest, 0)

        actions = np.stack([channel, slot, due, deferral, np.zeros(n, dtype=np.int64)], axis=1)
        return DecisionBatch(actions.astype(np.int64), np.ones(n))
