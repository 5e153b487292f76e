"""Reference policies: ``random``, the logging policy with known propensities."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from agents.base import BasePolicy
from agents.registry import register
from regsim.decision import CHANNEL, PART_NAMES, SEND_SLOT, ContextBatch, DecisionBatch

__all__ = ["RandomPolicy"]


@register("random")
class RandomPolicy(BasePolicy):
    """Uniform over the allowed options of each part, independently (a logging policy for off-policy work).

    The propensity of a decision is the probability of the action the world applies and logs: the product over
    parts of ``1 / (allowed options of the part)``, the send slot left out when the channel is "none" (a message
    that is not sent has no send time: every slot gives the same logged action).

    Args:
        seed: Seed of the policy's own exploration stream (independent of the world's streams).
    """

    name: ClassVar[str] = "random"
    version: ClassVar[str] = "1"

    def __init__(self, *, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 0x52414E44]))

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        n = len(contexts)
        actions = np.zeros((n, len(PART_NAMES)), dtype=np.int64)
        propensity = np.ones(n)
        for part in range(len(PART_NAMES)):
            mask = contexts.part_mask(part)
            count = mask.sum(axis=1)
            # The k-th allowed option, k uniform in [0, count): a vectorised draw over rows.
            k = np.floor(self.rng.random(n) * count).astype(np.int64)
            cum = np.cumsum(mask, axis=1)
            actions[:, part] = np.argmax(cum > k[:, None], axis=1)
            if part == SEND_SLOT:
                count = np.where(actions[:, CHANNEL] == 0, 1, count)  # (the channel part was drawn first)
            propensity /= count
        return DecisionBatch(actions, propensity)
