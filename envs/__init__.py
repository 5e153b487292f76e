"""Gymnasium adapters over the simulated world; importing this package registers the ``regsim/`` ids.

The rewards the envs give are those of :mod:`regsim.rewards` (the bandits' feedback uses the same).
"""

from __future__ import annotations

import gymnasium as gym

from envs.arrangement import ArrangementEnv
from envs.self_service import SelfServiceEnv
from envs.self_service_vec import SelfServiceVecEnv
from envs.vector import ArrangementVecEnv

__all__ = [
    "ENV_IDS",
    "SELF_SERVICE_ENV_IDS",
    "SELF_SERVICE_VECTOR_ENV_IDS",
    "VECTOR_ENV_IDS",
    "ArrangementEnv",
    "ArrangementVecEnv",
    "SelfServiceEnv",
    "SelfServiceVecEnv",
]

#: Every single-env id this package registers: v1 (masked actions replaced, the default) and v0 (raised).
ENV_IDS: tuple[str, ...] = ("regsim/Arrangement-v1", "regsim/Arrangement-v0")
#: Every vector-env id this package registers (``gymnasium.make_vec`` only).
VECTOR_ENV_IDS: tuple[str, ...] = ("regsim/ArrangementVec-v1", "regsim/ArrangementVec-v0")
#: The self-service menu env (issue 18): one step per menu point, the arrangement's decisions by a base policy.
SELF_SERVICE_ENV_IDS: tuple[str, ...] = ("regsim/SelfService-v0",)
#: Its vector env (``gymnasium.make_vec``; also the vector entry point of ``regsim/SelfService-v0``).
SELF_SERVICE_VECTOR_ENV_IDS: tuple[str, ...] = ("regsim/SelfServiceVec-v0",)

# ``make_vec("regsim/Arrangement-v1", num_envs=n)`` builds the vector env (its ``vector_entry_point``) unless a
# ``vectorization_mode`` of "sync" or "async" asks for Gymnasium's generic wrappers of the single env.
# v0 keeps its contract (a masked action raises RuleViolation) for runs recorded on it; see the env's
# Version History.
_V0 = {"invalid_action": "raise"}
if "regsim/Arrangement-v1" not in gym.registry:
    gym.register(
        id="regsim/Arrangement-v1",
        entry_point="envs.arrangement:ArrangementEnv",
        vector_entry_point="envs.vector:ArrangementVecEnv",
    )
if "regsim/Arrangement-v0" not in gym.registry:
    gym.register(
        id="regsim/Arrangement-v0",
        entry_point="envs.arrangement:ArrangementEnv",
        vector_entry_point="envs.vector:ArrangementVecEnv",
        kwargs=_V0,
    )
if "regsim/ArrangementVec-v1" not in gym.registry:
    gym.register(id="regsim/ArrangementVec-v1", vector_entry_point="envs.vector:ArrangementVecEnv")
if "regsim/ArrangementVec-v0" not in gym.registry:
    gym.register(id="regsim/ArrangementVec-v0", vector_entry_point="envs.vector:ArrangementVecEnv", kwargs=_V0)
if "regsim/SelfService-v0" not in gym.registry:
    gym.register(
        id="regsim/SelfService-v0",
        entry_point="envs.self_service:SelfServiceEnv",
        vector_entry_point="envs.self_service_vec:SelfServiceVecEnv",
    )
if "regsim/SelfServiceVec-v0" not in gym.registry:
    gym.register(id="regsim/SelfServiceVec-v0", vector_entry_point="envs.self_service_vec:SelfServiceVecEnv")
