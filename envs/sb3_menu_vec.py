"""Stable-Baselines3 adapter of ``regsim/SelfServiceVec-v0``: a ``VecEnv`` that ``MaskablePPO`` trains menus on.

As :mod:`envs.sb3_vec` does for the arrangement env: SB3 resets a finished slot in the same step and reads the
final observation from ``info["terminal_observation"]`` (``info["TimeLimit.truncated"]`` when the horizon cut the
episode), so the adapter runs :class:`envs.self_service_vec.SelfServiceVecEnv` with ``AutoresetMode.SAME_STEP``;
``MaskablePPO`` reads the menu rules' masks through ``env_method("action_masks")``, answered for all slots at
once. :meth:`SelfServiceSB3VecEnv.get_state` / :meth:`~SelfServiceSB3VecEnv.set_state` save and restore the
slots mid-episode, so that :func:`agents.vector_training.learn_on_vector` checkpoints a menu training as exactly
as an arrangement one. The slots run in this process (a menu step's cost is the world's, vectorised over slots).

A menu episode's last observation is that of its last menu point (the env observes nothing between menu points);
SB3 bootstraps from it only when the horizon cut the episode, which a run-off horizon (the default) leaves to the
few arrangements that outlast every cap.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.sb3_slots import SameSlotsVecEnv, sb3_step_return
from envs.self_service_vec import SelfServiceVecEnv
from regsim.menu import MenuSpace

__all__ = ["SelfServiceSB3VecEnv"]


class SelfServiceSB3VecEnv(SameSlotsVecEnv):
    """``num_envs`` independent menu episodes as an SB3 ``VecEnv`` with action masks.

    Args:
        num_envs: Number of slots.
        **kwargs: Arguments of :class:`envs.self_service_vec.SelfServiceVecEnv` (``config``, ``base_policy``,
            ``months``, ``world_seed``, ``search``, ``reward``, ``reward_kwargs``).

    Raises:
        ValueError: An argument of the vector env is bad (named by it).
    """

    def __init__(self, num_envs: int = 64, **kwargs: Any) -> None:
        if "autoreset_mode" in kwargs:
            raise ValueError("autoreset_mode: set by the adapter (SAME_STEP, as SB3 expects)")
        self.venv = SelfServiceVecEnv(num_envs, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
        self.menu_space: MenuSpace = self.venv.menu_space
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: NDArray[np.int64] | None = None

    def reset(self) -> VecEnvObs:
        seeds = [None if s is None else int(s) for s in self._seeds]
        seed: list[int | None] | None = None if all(s is None for s in seeds) else seeds
        obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, -1)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, info = self.venv.step(actions)
        final_obs = info.get("final_obs", np.full(self.num_envs, None, dtype=object))
        return sb3_step_return(obs, rewards, terminated, truncated, final_obs)

    def close(self) -> None:
        self.venv.close()

    def get_state(self) -> bytes:
        """The slots' whole state (open episodes, run-ahead debtors, generators), pickled.

        What a training checkpoint stores to resume exactly; like SB3's own ``model.zip``, to be loaded only from
        a trusted source (one's own run folder): unpickling can run code.
        """
        return pickle.dumps(self.venv, protocol=pickle.HIGHEST_PROTOCOL)

    def set_state(self, state: bytes) -> None:
        """Continue from :meth:`get_state` of an adapter with the same number of slots and spaces.

        Raises:
            ValueError: The state is of another kind of env, or of another number of slots or spaces.
        """
        venv = pickle.loads(state)  # the caller's own checkpoint (see get_state)
        if not isinstance(venv, SelfServiceVecEnv):
            raise ValueError(f"state: expected a pickled SelfServiceVecEnv, got {type(venv).__name__}")
        if venv.num_envs != self.num_envs:
            raise ValueError(f"state: has {venv.num_envs} slots, this env {self.num_envs}")
        if venv.single_observation_space != self.observation_space or venv.single_action_space != self.action_space:
            raise ValueError("state: its observation or action space differs from this env's")
        self.venv.close()
        self.venv = venv

    def action_masks(self) -> NDArray[np.bool_]:
        """The slots' masks, ``(num_envs, sum(nvec))``."""
        return self.venv.action_masks()

    def _describer(self, attr_name: str) -> Any:
        """The vector env answers every slot's attributes."""
        return self.venv
