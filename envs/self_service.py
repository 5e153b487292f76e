"""``regsim/SelfService-v0``: the self-service menu as a Gymnasium env (issue 18, mechanism 10).

One arrangement per episode, one step per **menu point** (a debtor in arrears who cannot pay follows a reminder's
link); the arrangement's own decision points are answered by a fixed base policy (``static-dunning`` by default),
so the agent learns the menu alone. The env is one slot of :class:`envs.self_service_vec.SelfServiceVecEnv`
(``regsim/SelfServiceVec-v0``), whose engine is :class:`regsim.vector_world.VectorWorld` with self-service on;
it adds no dynamics of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from envs.self_service_vec import SelfServiceVecEnv
from regsim.config import WorldConfig

__all__ = ["SelfServiceEnv"]


class SelfServiceEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """The menu shown to one debtor in arrears, menu point by menu point.

    ## Description

    Each episode draws debtors of the configured population until one reaches a menu point (they took in a
    reminder while in arrears and short of cash, and followed its link: docs/mechanisms.md#mechanism-10), then
    follows that arrangement to its end. Between steps the world runs on, its arrangement decisions answered by
    the base policy, to the next menu point.

    ## Observation

    ``float32``: the observable features of the menu point (:func:`regsim.features.features` of its context,
    layout :data:`regsim.features.FEATURE_LAYOUT`; the decision-kind indicators are 0, a menu being none of
    them), then the concessions granted so far / 3 and whether collection costs were waived (0/1).

    ## Action

    ``MultiDiscrete`` of the menu's slot levels (:class:`regsim.menu.MenuSpace`: deferral, plan, waiver,
    discount, counselling, custom; level 0 = not shown). :meth:`action_masks` is the menu rules' flat mask;
    ``info["masked_by"]`` names the rule behind every capped level. A capped level in an action is replaced by
    "not shown" and counted in ``info["replaced_actions"]``, so every action of the space is valid.

    ## Reward

    The named reward of :mod:`regsim.rewards` (default ``runoff_value``; one of
    :data:`envs.self_service_vec.SUMMED_REWARDS`) of the outcome columns :func:`regsim.rewards.tally` makes of the
    step's events: by default 0.01 x (euros collected - contact costs - staff costs of custom cases) over the step,
    plus 3.0 when the arrangement completes. A concession (discount, waived costs) comes off the balance, so what is
    collected is net of it already and it is not charged again. An episode's return is 0.01 x
    :func:`regsim.metrics.runoff_value` of the arrangement from its first menu point on. ``info["truth"]`` holds
    the debtor type (never observed).

    ## Episode End

    Terminated when the arrangement completes, breaks or is referred; truncated at the horizon (default: the
    run-off horizon of :func:`regsim.runoff.covering_months`).

    ## Arguments

    * ``config``: a :class:`regsim.config.WorldConfig`, a path to a population YAML, or ``None`` (the default
      world); self-service is switched on in it.
    * ``base_policy``: the registered policy answering the arrangement's own decision points.
    * ``months``: a fixed horizon in months (default ``None``: run-off).
    * ``world_seed``: the population's seed (default: the config's); debtors are drawn by the env's seed.
    * ``reward``, ``reward_kwargs``: the reward's name and keyword arguments (:func:`regsim.rewards.resolve_reward`).
    * ``search``: debtors run ahead to their first menu point (:class:`envs.self_service_vec.SelfServiceVecEnv`'s
      engine; default 16): a reset costs less wall time, the episodes are the same.

    ## Version History

    * v0: initial version (feature layout ``features-1`` plus two entries). Since it runs as one slot of
      ``regsim/SelfServiceVec-v0`` (rows of a vector world, quiet days skipped), a menu's choice is carried out
      at the moment of its menu point, before any other event of that moment (the SimPy world had carried it
      out after them): episodes differ only where two events of the arrangement fall on the very same moment.
      Its reward is that of :mod:`regsim.rewards` (``reward``, default ``runoff_value``); before, the env had its
      own tally, which charged a concession a second time.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        *,
        config: WorldConfig | str | Path | None = None,
        base_policy: str = "static-dunning",
        months: int | None = None,
        world_seed: int | None = None,
        search: int = 16,
        reward: str = "runoff_value",
        reward_kwargs: dict[str, float] | None = None,
    ) -> None:
        self.vec = SelfServiceVecEnv(
            1,
            config=config,
            base_policy=base_policy,
            months=months,
            world_seed=world_seed,
            search=search,
            reward=reward,
            reward_kwargs=reward_kwargs,
        )
        self.config = self.vec.config
        self.base = self.vec.base
        self.months = self.vec.months
        self.world_seed = self.vec.world_seed
        self.menu_space = self.vec.menu_space
        self.action_space = self.vec.single_action_space
        self.observation_space = self.vec.single_observation_space
        self.feature_version = self.vec.feature_version
        self._started = False

    # -- Gymnasium API ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"options: unknown keys {sorted(options)}; allowed: none")
        if seed is not None or not self._started:  # the slot draws its debtors by this env's generator
            self.vec.set_generators({0: self.np_random})
        self._started = True
        obs, info = self.vec.reset()
        return obs[0].copy(), _single(info)

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        levels = np.asarray(action, dtype=np.int64).reshape(1, -1)
        if levels.shape[1] != len(self.menu_space.nvec):
            raise ValueError(f"action: expected {len(self.menu_space.nvec)} slot levels {self.menu_space.nvec}")
        obs, reward, terminated, truncated, info = self.vec.step(levels)
        return obs[0].copy(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _single(info)

    def action_masks(self) -> NDArray[np.bool_]:
        """The menu rules' flat mask of the current menu point (as ``MaskablePPO`` expects)."""
        return self.vec.action_masks()[0]


def _single(info: dict[str, Any]) -> dict[str, Any]:
    """Slot 0 of a vector info, as plain values."""
    return {
        "arrangement_id": int(info["arrangement_id"][0]),
        "replaced_actions": int(info["replaced_actions"][0]),
        "masked_by": dict(info["masked_by"][0]),
        "truth": {"debtor_type": int(info["truth"]["debtor_type"][0])},
    }
