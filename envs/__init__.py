"""Gymnasium adapters over the simulated world; importing this package registers the ``regsim/`` ids."""

from __future__ import annotations

import gymnasium as gym

from envs.arrangement import ArrangementEnv
from envs.rewards import REWARDS, StepOutcome

__all__ = ["ENV_IDS", "REWARDS", "ArrangementEnv", "StepOutcome"]

#: Every env id this package registers.
ENV_IDS: tuple[str, ...] = ("regsim/Arrangement-v0",)

if "regsim/Arrangement-v0" not in gym.registry:
    gym.register(id="regsim/Arrangement-v0", entry_point="envs.arrangement:ArrangementEnv")
