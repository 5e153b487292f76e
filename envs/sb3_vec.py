"""Stable-Baselines3 adapter of ``regsim/ArrangementVec-v0``: a ``VecEnv`` that ``MaskablePPO`` trains on.

SB3 vector envs reset a finished slot in the same step and return the final observation in
``info["terminal_observation"]`` (``info["TimeLimit.truncated"]`` when the horizon cut the episode), so the
adapter runs :class:`envs.vector.ArrangementVecEnv` with ``AutoresetMode.SAME_STEP``. ``MaskablePPO`` reads the
masks through ``env_method("action_masks")`` (sb3-contrib's ``get_action_masks``), answered for all slots at
once.

:meth:`ArrangementSB3VecEnv.get_state` and :meth:`~ArrangementSB3VecEnv.set_state` save and restore the slots
mid-episode (their arrangements, clocks and generators), so that a training checkpoint resumes exactly.

With ``workers > 1`` the slots are split over that many processes (:class:`envs.shards.SlotShards`) and step in
parallel, between ``step_async`` and ``step_wait`` as SB3's ``SubprocVecEnv``; the results are the same as with
one process, bit for bit.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from numpy.typing import NDArray
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from envs.sb3_slots import SameSlotsVecEnv, sb3_step_return
from envs.shards import SlotShards
from envs.vector import ArrangementVecEnv

__all__ = ["ArrangementSB3VecEnv"]


class ArrangementSB3VecEnv(SameSlotsVecEnv):
    """``num_envs`` independent arrangements as an SB3 ``VecEnv`` with action masks.

    Args:
        num_envs: Number of slots.
        workers: Number of processes the slots are split over (1: in this process; see
            :class:`envs.shards.SlotShards`). Changes the speed only, never the results.
        **kwargs: Arguments of :class:`envs.vector.ArrangementVecEnv` (``config``, ``reward``, ``months``,
            ``world_seed``, ``invalid_action``).

    Raises:
        ValueError: ``workers`` is not in ``[1, num_envs]``, or an argument of the vector env is bad.
    """

    def __init__(self, num_envs: int = 16, *, workers: int = 1, **kwargs: Any) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or not 1 <= workers <= num_envs:
            raise ValueError(f"workers: must be an integer in [1, num_envs={num_envs}], got {workers!r}")
        self.workers = int(workers)
        self.venv: ArrangementVecEnv | None = None
        self.shards: SlotShards | None = None
        if self.workers == 1:
            # SB3 reads only the final observations from a step's info: the vector env builds nothing else.
            self.venv = ArrangementVecEnv(num_envs, autoreset_mode=AutoresetMode.SAME_STEP, full_info=False, **kwargs)
            observation_space, action_space, self.space = (
                self.venv.single_observation_space,
                self.venv.single_action_space,
                self.venv.space,
            )
        else:
            self.shards = SlotShards(num_envs, self.workers, kwargs)
            observation_space, action_space, self.space = (
                self.shards.single_observation_space,
                self.shards.single_action_space,
                self.shards.space,
            )
        super().__init__(num_envs, observation_space, action_space)
        self._actions: NDArray[np.int64] | None = None

    def reset(self) -> VecEnvObs:
        seeds = [None if s is None else int(s) for s in self._seeds]
        seed: list[int | None] | None = None if all(s is None for s in seeds) else seeds
        if self.shards is not None:
            obs = self.shards.reset(seed)
        else:
            assert self.venv is not None
            obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs, -1)
        if self.shards is not None:
            self.shards.step_async(self._actions)  # the workers check the actions meanwhile

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        if self.shards is not None:
            result = self.shards.step_wait()
            obs, rewards, terminated, truncated = result.obs, result.rewards, result.terminated, result.truncated
            final_obs = result.final_obs
        else:
            assert self.venv is not None
            obs, rewards, terminated, truncated, info = self.venv.step(actions)
            final_obs = info.get("final_obs", np.full(self.num_envs, None, dtype=object))
        return sb3_step_return(obs, rewards, terminated, truncated, final_obs)

    def close(self) -> None:
        if self.shards is not None:
            self.shards.close()
        else:
            assert self.venv is not None
            self.venv.close()

    def get_state(self) -> bytes:
        """The slots' whole state (open episodes, clocks, generators), pickled.

        What a training checkpoint stores to resume exactly; like SB3's own ``model.zip``, it is to be loaded only
        from a trusted source (one's own run folder): unpickling can run code. With ``workers > 1`` it holds each
        worker's block, and is restored by an env with the same ``num_envs`` and ``workers``.
        """
        if self.shards is not None:
            states: list[bytes] = self.shards.get_states()
            return pickle.dumps({"workers": self.workers, "blocks": states}, protocol=pickle.HIGHEST_PROTOCOL)
        return pickle.dumps(self.venv, protocol=pickle.HIGHEST_PROTOCOL)

    def set_state(self, state: bytes) -> None:
        """Continue from :meth:`get_state` of an adapter with the same number of slots, workers and spaces.

        Raises:
            ValueError: The state is of another kind of env, or of another number of slots, workers or spaces.
        """
        loaded = pickle.loads(state)  # the caller's own checkpoint (see get_state)
        saved_workers = loaded["workers"] if isinstance(loaded, dict) and "blocks" in loaded else 1
        if saved_workers != self.workers:
            raise ValueError(f"state: saved with workers={saved_workers}, this env has workers={self.workers}")
        if self.shards is not None:
            self.shards.set_states(list(loaded["blocks"]))
            return
        venv = loaded
        if not isinstance(venv, ArrangementVecEnv):
            raise ValueError(f"state: expected a pickled ArrangementVecEnv, got {type(venv).__name__}")
        if venv.num_envs != self.num_envs:
            raise ValueError(f"state: has {venv.num_envs} slots, this env {self.num_envs}")
        if venv.single_observation_space != self.observation_space or venv.single_action_space != self.action_space:
            raise ValueError("state: its observation or action space differs from this env's")
        assert self.venv is not None
        self.venv.close()
        self.venv = venv

    def action_masks(self) -> NDArray[np.bool_]:
        """The slots' masks, ``(num_envs, sum(nvec))``."""
        if self.shards is not None:
            return self.shards.action_masks()
        assert self.venv is not None
        return self.venv.action_masks()

    def _describer(self, attr_name: str) -> Any:
        """What answers ``get_attr``: the in-process vector env, or (with workers) the attributes all slots share."""
        if self.venv is not None:
            return self.venv
        if not hasattr(_Described, attr_name):
            allowed = sorted(a for a in vars(_Described) if not a.startswith("_"))
            raise AttributeError(f"get_attr({attr_name!r}): with workers > 1 the slots describe only {allowed}")
        return _Described


class _Described:
    """The attributes every slot shares, answered without asking the workers (``get_attr`` with ``workers > 1``)."""

    render_mode = None
    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012
