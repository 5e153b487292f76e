"""``regsim/SelfService-v0``: the self-service menu as a Gymnasium env (issue 18, mechanism 10).

One arrangement per episode, one step per **menu point** (a debtor in arrears who cannot pay follows a reminder's
link); the arrangement's own decision points are answered by a fixed base policy (``static-dunning`` by default),
so the agent learns the menu alone. The world is :mod:`regsim`'s with ``self_service.enabled``; the env adds no
dynamics of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus
from regsim.config import WorldConfig, load_world_config
from regsim.context import ContextBatch
from regsim.decision import DecisionBatch
from regsim.eventlog import EventType
from regsim.features import FEATURE_LAYOUT, FEATURE_VERSION, features
from regsim.menu import SLOT_NAMES, MenuBatch, MenuDecisionBatch
from regsim.runoff import covering_months
from regsim.world import World

__all__ = ["SelfServiceEnv"]

_ID_RANGE = 2**31
_ENDED = {int(s) for s in (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)}
#: Debtors tried per reset before giving up: most visit the page at least once, some never fall behind.
_MAX_DRAWS = 200
#: Completion bonus of the reward, in reward units (EUR 300 at 0.01 per euro), as ``runoff_value``.
_COMPLETION_BONUS = 3.0


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

    0.01 x (euros collected - contact costs - staff costs of custom cases - concessions) over the step, plus 3.0
    when the arrangement completes: an episode's return is 0.01 x :func:`regsim.metrics.runoff_value` of the
    arrangement from its first menu point on. ``info["truth"]`` holds the debtor type (never observed).

    ## Episode End

    Terminated when the arrangement completes, breaks or is referred; truncated at the horizon (default: the
    run-off horizon of :func:`regsim.runoff.covering_months`).

    ## Arguments

    * ``config``: a :class:`regsim.config.WorldConfig`, a path to a population YAML, or ``None`` (the default
      world); self-service is switched on in it.
    * ``base_policy``: the registered policy answering the arrangement's own decision points.
    * ``months``: a fixed horizon in months (default ``None``: run-off).
    * ``world_seed``: the population's seed (default: the config's); debtors are drawn by the env's seed.

    ## Version History

    * v0: initial version (feature layout ``features-1`` plus two entries).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        *,
        config: WorldConfig | str | Path | None = None,
        base_policy: str = "static-dunning",
        months: int | None = None,
        world_seed: int | None = None,
    ) -> None:
        base = config if isinstance(config, WorldConfig) else WorldConfig() if config is None else None
        if base is None:
            base = load_world_config(config)  # type: ignore[arg-type]
        self.config = base.with_overrides(self_service={"enabled": True})
        import agents  # (here: agents builds on envs, so envs imports it only when an env is made)

        self.base = agents.make(base_policy)
        self.months = int(months if months is not None else covering_months(self.config))
        if self.months < 1:
            raise ValueError(f"months: must be >= 1, got {self.months}")
        self.world_seed = int(world_seed if world_seed is not None else self.config.simulation.seed)
        probe = World(self.config, None, arrangements=1, months=1, seed=self.world_seed)
        assert probe.desk is not None
        self.menu_space = probe.desk.space
        self.action_space = spaces.MultiDiscrete(np.array(self.menu_space.nvec, dtype=np.int64))
        low = np.array([f.low for f in FEATURE_LAYOUT] + [0.0, 0.0], dtype=np.float32)
        high = np.array([f.high for f in FEATURE_LAYOUT] + [1.0, 1.0], dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.feature_version = FEATURE_VERSION
        self._space = probe.space
        self.world: World | None = None
        self._menu: MenuBatch | None = None
        self._obs = np.zeros(len(low), dtype=np.float32)
        self._replaced = 0

    # -- Gymnasium API ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        if options:
            raise ValueError(f"options: unknown keys {sorted(options)}; allowed: none")
        self._replaced = 0
        for _ in range(_MAX_DRAWS):
            debtor = int(self.np_random.integers(0, _ID_RANGE))
            self.world = World(
                self.config,
                None,
                arrangements=1,
                months=self.months,
                seed=self.world_seed,
                first_id=debtor,
                policy_name=self.base.name,
                policy_version=self.base.version,
                sample_queues=False,
                dedicated_capacity=True,
            )
            assert self.world.desk is not None
            self.world.desk.external = True
            if self._advance():
                return self._obs.copy(), self._info()
        raise RuntimeError(f"no debtor of {_MAX_DRAWS} drawn reached a menu point within {self.months} months")

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if self.world is None or self._menu is None:
            raise RuntimeError("call reset() before step()")
        w, desk = self.world, self.world.desk
        assert desk is not None
        levels = np.asarray(action, dtype=np.int64).reshape(1, -1)
        if levels.shape[1] != len(SLOT_NAMES):
            raise ValueError(f"action: expected {len(SLOT_NAMES)} slot levels {self.menu_space.nvec}")
        allowed = np.take_along_axis(self._menu.mask, levels + np.array(self.menu_space.offsets)[None, :], axis=1)
        if not allowed.all():
            self._replaced += 1
            levels = np.where(allowed, levels, 0)
        cursor = w.log.n_chunks
        desk.submit(MenuDecisionBatch(levels, np.full(1, np.nan)))
        reached = self._advance()
        reward = 0.0
        for event, _, cols in w.log.chunks_since(cursor):
            amount = np.nansum(np.atleast_1d(np.asarray(cols.get("amount_eur", 0.0), dtype=np.float64)))
            if event == EventType.PAYMENT:
                reward += 0.01 * amount
            elif event in (EventType.MESSAGE_SENT, EventType.CASE_RESOLVED, EventType.CONCESSION):
                reward -= 0.01 * amount
            elif event == EventType.COMPLETED:
                reward += _COMPLETION_BONUS
        terminated = int(w.ledger.status[0]) in _ENDED
        truncated = not reached and not terminated
        return self._obs.copy(), float(reward), terminated, truncated, self._info()

    def action_masks(self) -> NDArray[np.bool_]:
        """The menu rules' flat mask of the current menu point (as ``MaskablePPO`` expects)."""
        if self._menu is None:
            return np.ones(self.menu_space.mask_size, dtype=bool)
        return self._menu.mask[0].copy()

    # -- helpers ------------------------------------------------------------------------------------------
    def _advance(self) -> bool:
        """Run the world to its next menu point (True), answering arrangement decisions with the base policy."""
        assert self.world is not None and self.world.desk is not None
        w, desk = self.world, self.world.desk
        while True:
            point = desk.next_point()
            if point is None:
                return False
            if isinstance(point, MenuBatch):
                self._menu = point
                ctx = ContextBatch(self._space, point.columns, np.ones((1, self._space.mask_size), dtype=bool))
                extra = np.array([min(float(point.concessions[0]), 3.0) / 3.0, float(point.costs_waived[0])])
                self._obs = np.concatenate([features(ctx)[0], extra.astype(np.float32)])
                return True
            w.submit(DecisionBatch.from_decisions(self.base.decide_batch(point)))

    def _info(self) -> dict[str, Any]:
        assert self.world is not None
        w = self.world
        masked = self._menu.masked_by(0) if self._menu is not None else {}
        return {
            "arrangement_id": int(w.gid[0]),
            "replaced_actions": self._replaced,
            "masked_by": {f"{SLOT_NAMES[s]}={lv}": rules for (s, lv), rules in masked.items()},
            "truth": {"debtor_type": int(w.pop.type[0])},
        }
