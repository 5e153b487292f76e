"""What SB3's ``VecEnv`` asks of a vector env whose slots are all the same kind of env: the attribute plumbing.

Both SB3 adapters (:mod:`envs.sb3_vec`, :mod:`envs.sb3_menu_vec`) run one vectorised env, not ``num_envs`` env
objects, so ``env_method``, ``get_attr``, ``has_attr``, ``set_attr`` and ``env_is_wrapped`` are answered for all
slots at once by the vector env that describes them: masks through ``env_method("action_masks")`` (what
sb3-contrib's ``get_action_masks`` calls), read-only attributes, no wrappers.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

__all__ = ["SameSlotsVecEnv", "sb3_step_return"]


class SameSlotsVecEnv(VecEnv):
    """A ``VecEnv`` whose slots are described by one object (:meth:`_describer`) and masked all at once."""

    def action_masks(self) -> NDArray[Any]:
        """The slots' masks, ``(num_envs, sum(nvec))``."""
        raise NotImplementedError

    def _describer(self, attr_name: str) -> Any:
        """The object whose attribute ``attr_name`` every slot shares (raises ``AttributeError`` if none)."""
        raise NotImplementedError

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any
    ) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        raise AttributeError(f"env_method({method_name!r}): the slots offer only 'action_masks'")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self._describer(attr_name), attr_name)
        return [value for _ in self._get_indices(indices)]

    def has_attr(self, attr_name: str) -> bool:
        if attr_name == "action_masks":
            return True
        try:
            return hasattr(self._describer(attr_name), attr_name)
        except AttributeError:
            return False

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"set_attr({attr_name!r}): the slots' attributes are read-only")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def sb3_step_return(
    obs: VecEnvObs, rewards: NDArray[Any], terminated: NDArray[Any], truncated: NDArray[Any], final_obs: NDArray[Any]
) -> VecEnvStepReturn:
    """A Gymnasium same-step-autoreset step in SB3's form: ``dones``, and per finished slot ``TimeLimit.truncated``
    and its ``terminal_observation``."""
    dones = terminated | truncated
    infos: list[dict[str, Any]] = [{} for _ in range(len(dones))]
    for i in np.flatnonzero(dones):
        infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        if final_obs[i] is not None:
            infos[i]["terminal_observation"] = final_obs[i]
    return obs, rewards.astype(np.float32), dones, infos
