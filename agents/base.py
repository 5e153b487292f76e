"""Helpers shared by policies: the base class and vectorised choices among allowed options."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from regsim.decision import (
    CHANNEL,
    SEND_SLOT,
    Context,
    ContextBatch,
    Decision,
    DecisionBatch,
    Feedback,
)
from regsim.ground_truth import GroundTruthView

__all__ = ["BasePolicy", "FixedPolicy", "first_allowed", "preferred_allowed", "slot_index"]


class FixedPolicy:
    """The members of :class:`regsim.decision.Policy` that a fixed policy (no online learning, no ground truth)
    answers the same way: a base for policies that define the rest."""

    feedback_window_days: float | None = None
    feedback_reward: str = "collected"
    requires_ground_truth: ClassVar[bool] = False

    def bind_ground_truth(self, view: GroundTruthView) -> None:
        """A policy that reads no ground truth refuses it."""
        raise TypeError(f"{type(self).__name__} reads no ground truth; it runs outside simulation too")

    def decide(self, context: Context) -> Decision:
        """The decision for one context: :meth:`decide_batch` on a batch of one."""
        return self.decide_batch(context.batch())[0]

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:  # pragma: no cover - abstract
        """Decisions for a batch of contexts."""
        raise NotImplementedError

    def update(self, feedback: Feedback) -> None:
        """Fixed policies learn nothing."""
        del feedback


class BasePolicy(FixedPolicy):
    """Base of the policies in this package: every member of :class:`regsim.decision.Policy` but
    :meth:`decide_batch`, with the defaults of a fixed policy (``decide`` is ``decide_batch`` on a batch of one).

    Subclasses implement :meth:`decide_batch`, set ``name`` and ``version``; an online learner sets
    ``feedback_window_days`` and overrides :meth:`update`; a simulation-only policy sets
    ``requires_ground_truth`` and overrides :meth:`bind_ground_truth`.
    """

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "0"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


def first_allowed(batch: ContextBatch, part: int) -> NDArray[np.int64]:
    """Per row, the lowest allowed option of a part (every row has at least one)."""
    return np.argmax(batch.part_mask(part), axis=1).astype(np.int64)


def preferred_allowed(batch: ContextBatch, part: int, preferences: NDArray[np.int64]) -> NDArray[np.int64]:
    """Per row, the first allowed option in a row-wise preference list, shape ``(B, k)``; -1 if none is."""
    mask = batch.part_mask(part)
    prefs = np.atleast_2d(preferences)
    if prefs.shape[0] == 1:
        prefs = np.broadcast_to(prefs, (len(batch), prefs.shape[1]))
    ok = np.take_along_axis(mask, prefs, axis=1)
    pick = np.argmax(ok, axis=1)
    return np.where(ok.any(axis=1), prefs[np.arange(len(batch)), pick], -1)


def slot_index(
    batch: ContextBatch, day_offset: NDArray[np.int64] | int, hour: NDArray[np.int64] | int
) -> NDArray[np.int64]:
    """Per row, the allowed send slot closest in time to (``day_offset``, ``hour``)."""
    slots = batch.space.send_slots
    t_slot = np.array([s.day_offset * 24 + s.hour for s in slots], dtype=np.float64)
    target = np.broadcast_to(np.asarray(day_offset) * 24 + np.asarray(hour), (len(batch),)).astype(np.float64)
    dist = np.abs(t_slot[None, :] - target[:, None])
    dist = np.where(batch.part_mask(SEND_SLOT), dist, np.inf)
    return np.argmin(dist, axis=1).astype(np.int64)


def channel_with_fallback(batch: ContextBatch, preferences: NDArray[np.int64]) -> NDArray[np.int64]:
    """The first allowed channel of each row's preference list, or 0 (no contact) when none is allowed."""
    pick = preferred_allowed(batch, CHANNEL, preferences)
    return np.where(pick < 0, 0, pick)
