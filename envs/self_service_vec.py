"""``regsim/SelfServiceVec-v0``: ``num_envs`` self-service menu episodes simulated together as one vector env.

Slot ``i`` is an independent episode of ``regsim/SelfService-v0`` (one step per menu point of one arrangement,
the arrangement's own decisions answered by a base policy), seeded ``seed + i``. The slots run as rows of one
:class:`regsim.vector_world.VectorWorld` with self-service on and menus taken from outside: a row freezes at
each menu point mid-event and goes on where it stopped once its menu is answered, quiet days skipped. The
dynamics are the world's own; this module only translates between the Gymnasium API and the world's rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from regsim.arrangement import ArrangementStatus
from regsim.config import WorldConfig, load_world_config
from regsim.context import ContextBatch
from regsim.decision import ActionSpace
from regsim.features import FEATURE_LAYOUT, FEATURE_VERSION, features
from regsim.menu import SLOT_NAMES, MenuBatch, MenuSpace
from regsim.rewards import Reward, RewardCosts, resolve_reward, tally
from regsim.runoff import covering_months
from regsim.vector_world import Phase, VectorWorld

__all__ = ["SUMMED_REWARDS", "SelfServiceVecEnv", "menu_observations"]

_ID_RANGE = 2**31
_ENDED = np.array(
    [
        s in (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)
        for s in ArrangementStatus
    ]
)
#: Debtors tried in a row per slot before giving up: most reach a menu point, some never fall behind.
MAX_DRAWS = 200
#: The rewards of :data:`regsim.rewards.REWARDS` a menu step may use: those that are sums over the events of a
#: span (no charge per day or on the balance at the decision), so that a step's reward is the sum of its parts,
#: tallied as the world advances.
SUMMED_REWARDS: tuple[str, ...] = ("runoff_value", "collected", "completion", "burden")


def menu_observations(batch: MenuBatch, space: ActionSpace) -> NDArray[np.float32]:
    """The observations of menu points: their features, then concessions so far / 3 and costs waived (0/1).

    Args:
        batch: The menu points.
        space: The world's action space (the features read the context's columns only).
    """
    ctx = ContextBatch(space, batch.columns, np.ones((len(batch), space.mask_size), dtype=bool))
    extra = np.stack([np.minimum(batch.concessions.astype(np.float64), 3.0) / 3.0, batch.costs_waived], axis=1)
    return np.concatenate([features(ctx), extra.astype(np.float32)], axis=1)


class SelfServiceVecEnv(VectorEnv[NDArray[np.float32], NDArray[np.int64], NDArray[Any]]):
    """``num_envs`` independent self-service menu episodes, one menu point per slot per step.

    ## Description

    A Gymnasium vector env whose slot ``i`` is an episode of :class:`envs.self_service.SelfServiceEnv`
    (``regsim/SelfService-v0``; see it for the observation, action, reward and episode end). Each slot draws
    debtors by its own generator until one reaches a menu point, then follows that arrangement to its end.

    ## Engine

    Each slot owns ``1 + search`` rows of one :class:`regsim.vector_world.VectorWorld`: the row of its current
    episode, and the next ``search`` debtors of its draws, each run ahead to its first menu point (where it
    waits) or to its end without one (it is dropped and the slot's next debtor takes the row, once half of the
    slot's run-ahead rows are free, so that they run together). All rows advance
    together, quiet days skipped, the arrangements' own decision points answered by the base policy in one batch.
    A slot's episodes are the first debtors of its draws, in order, that reach a menu point, whatever
    ``search`` and ``num_envs``: so slot ``i`` gives exactly the episodes of ``SelfService-v0`` reset with
    ``seed + i``.

    ## Autoreset

    :attr:`gymnasium.vector.AutoresetMode.NEXT_STEP`: the step after a slot's episode ended ignores its action
    and returns the first observation of its next episode (reward 0, not terminated, not truncated).

    ## Info

    Per slot (arrays, each with a boolean ``_key`` mask): ``arrangement_id``, ``replaced_actions`` (steps of the
    episode whose action showed a capped level, replaced by "not shown"), ``masked_by`` (per slot a dict from
    ``"slot=level"`` to the menu rules that cap it), ``truth`` (``debtor_type``, never observed).

    ## Action masks

    :meth:`action_masks` returns the ``(num_envs, sum(nvec))`` menu-rule masks of the current menu points.

    ## Arguments

    ``num_envs``, ``config``, ``base_policy``, ``months``, ``world_seed``, ``reward``, ``reward_kwargs`` (as
    ``SelfService-v0``), ``search`` (debtors run ahead per slot, default 4: more rows per vectorised call; the
    episodes are the same), ``skip_quiet_days`` (default ``True``; the episodes are the same) and
    ``autoreset_mode`` (``NEXT_STEP``, the default, or ``SAME_STEP``: a slot whose episode ended starts its next
    in the same step and the info holds the last observation in ``final_obs`` / ``_final_obs``, as SB3 expects;
    see :mod:`envs.sb3_menu_vec`).

    ## Version History

    * v0: initial version (feature layout ``features-1`` plus two entries). The reward is
      :func:`regsim.rewards.tally` of the step's events through the named reward (so a concession, which comes off
      the balance, is not charged a second time; before, the env had its own tally and charged it).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 16,
        *,
        config: WorldConfig | str | Path | None = None,
        base_policy: str = "static-dunning",
        months: int | None = None,
        world_seed: int | None = None,
        search: int = 4,
        skip_quiet_days: bool = True,
        reward: str = "runoff_value",
        reward_kwargs: dict[str, float] | None = None,
        autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    ) -> None:
        if reward not in SUMMED_REWARDS:
            raise ValueError(f"reward: {reward!r} is not one a menu step can sum; allowed: {list(SUMMED_REWARDS)}")
        mode = AutoresetMode(autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode: expected NEXT_STEP or SAME_STEP, got {mode}")
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode}
        if int(num_envs) < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        if int(search) < 1:
            raise ValueError(f"search: must be >= 1, got {search}")
        base = config if isinstance(config, WorldConfig) else WorldConfig() if config is None else None
        if base is None:
            base = load_world_config(config)  # type: ignore[arg-type]
        self.config = base.with_overrides(self_service={"enabled": True})
        self.reward_name = reward
        self.reward: Reward = resolve_reward(reward, reward_kwargs)
        self.costs = RewardCosts.of(self.config)
        import agents  # (here: agents builds on envs, so envs imports it only when an env is made)

        self.base = agents.make(base_policy)
        self.months = int(months if months is not None else covering_months(self.config))
        if self.months < 1:
            raise ValueError(f"months: must be >= 1, got {self.months}")
        self.world_seed = int(world_seed if world_seed is not None else self.config.simulation.seed)
        self.num_envs = n = int(num_envs)
        self.rows_per_slot = r = 1 + int(search)
        self.world = VectorWorld(
            self.config,
            n * r,
            months=self.months,
            seed=self.world_seed,
            skip_quiet_days=skip_quiet_days,
            external_menus=True,
        )
        self.world.policy_name, self.world.policy_version = self.base.name, self.base.version
        assert self.world.desk is not None
        self.menu_space: MenuSpace = self.world.desk.space
        low = np.array([f.low for f in FEATURE_LAYOUT] + [0.0, 0.0], dtype=np.float32)
        high = np.array([f.high for f in FEATURE_LAYOUT] + [1.0, 1.0], dtype=np.float32)
        nvec = np.array(self.menu_space.nvec, dtype=np.int64)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = spaces.MultiDiscrete(nvec)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.feature_version = FEATURE_VERSION
        self.render_mode = None
        self._obs = np.zeros((n, len(low)), dtype=np.float32)
        self._masks = np.ones((n, self.menu_space.mask_size), dtype=bool)
        self._masked_by: list[dict[str, tuple[str, ...]]] = [{} for _ in range(n)]
        self._replaced = np.zeros(n, dtype=np.int64)
        self._ended = np.zeros(n, dtype=bool)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._current = np.full(n, -1, dtype=np.int64)  # each slot's episode row (-1: none yet)
        self._queue: list[list[int]] = [[] for _ in range(n)]  # each slot's run-ahead rows, in draw order
        self._free: list[list[int]] = [list(range(s * r, (s + 1) * r)) for s in range(n)]
        self._misses = np.zeros(n, dtype=np.int64)  # debtors dropped in a row (no menu point)
        self._reward = np.zeros(n * r)  # each row's reward since its last menu point
        self._started = False

    # -- Gymnasium API ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        if options:
            raise ValueError(f"options: unknown keys {sorted(options)}; allowed: none")
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            if len(seed) != self.num_envs:
                raise ValueError(f"seed: expected {self.num_envs} seeds, got {len(seed)}")
            seeds = list(seed)
        fresh = [i for i, s in enumerate(seeds) if s is not None or self._rngs[i] is None]
        self.set_generators({i: seeding.np_random(seeds[i])[0] for i in fresh})
        slots = np.arange(self.num_envs)
        self._drop_current(slots)
        self._run(new=slots, stepping=np.zeros(0, dtype=np.int64))
        self._replaced[:] = 0
        self._ended[:] = False
        self._started = True
        return self._obs.copy(), self._infos()

    def step(
        self, actions: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        levels = np.asarray(actions, dtype=np.int64)
        if levels.shape != (self.num_envs, len(SLOT_NAMES)):
            raise ValueError(f"actions: expected shape {(self.num_envs, len(SLOT_NAMES))}, got {levels.shape}")
        restart = np.flatnonzero(self._ended)
        stepping = np.flatnonzero(~self._ended)
        w = self.world
        lv = levels[stepping]
        offsets = np.asarray(self.menu_space.offsets)[None, :]
        nvec = np.asarray(self.menu_space.nvec)[None, :]
        inside = (lv >= 0) & (lv < nvec)
        allowed = inside & np.take_along_axis(self._masks[stepping], np.clip(lv, 0, nvec - 1) + offsets, axis=1)
        self._replaced[stepping] += ~allowed.all(axis=1)
        lv = np.where(allowed, lv, 0)
        rows = self._current[stepping]
        w.answer_menus(rows, lv)
        self._reward[rows] = 0.0
        self._drop_current(restart)
        self._replaced[restart] = 0
        self._run(new=restart, stepping=stepping)
        rewards = np.zeros(self.num_envs)
        rewards[stepping] = self._reward[rows]
        done = w.phase[rows] == Phase.DONE
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        terminated[stepping] = done & _ENDED[w.ledger.status[rows]]
        truncated[stepping] = done & ~terminated[stepping]
        self._ended = terminated | truncated
        if self.autoreset_mode == AutoresetMode.NEXT_STEP or not self._ended.any():
            return self._obs.copy(), rewards, terminated, truncated, self._infos()
        # SAME_STEP: the ended slots start their next episodes now; their last observations go in the info.
        ended = np.flatnonzero(self._ended)
        final_obs = np.full(self.num_envs, None, dtype=object)
        for i in ended.tolist():
            final_obs[i] = self._obs[i].copy()
        self._drop_current(ended)
        self._replaced[ended] = 0
        self._run(new=ended, stepping=np.zeros(0, dtype=np.int64))
        self._ended[:] = False
        infos = self._infos()
        infos["final_obs"], infos["_final_obs"] = final_obs, terminated | truncated
        return self._obs.copy(), rewards, terminated, truncated, infos

    def action_masks(self) -> NDArray[np.bool_]:
        """The menu rules' masks of the slots' current menu points, ``(num_envs, sum(nvec))``."""
        return self._masks.copy()

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the slots are rows of an in-process world."""

    def set_generators(self, rngs: dict[int, np.random.Generator]) -> None:
        """Give slots new generators of debtors (slot to generator); their run-ahead rows are dropped.

        For :class:`envs.self_service.SelfServiceEnv`, whose one slot draws by the env's ``np_random``.
        """
        for slot, rng in rngs.items():
            self._rngs[slot] = rng
            self._free[slot] += self._queue[slot]
            self._queue[slot] = []
            self._misses[slot] = 0

    # -- the engine ---------------------------------------------------------------------------------------
    def _drop_current(self, slots: NDArray[np.int64]) -> None:
        for s in slots.tolist():
            if self._current[s] >= 0:
                self._free[s].append(int(self._current[s]))
                self._current[s] = -1

    def _refill(self, waiting: set[int]) -> None:
        """Free rows of a slot take the slot's next debtors, run ahead to their first menu point: once half of
        its run-ahead rows are free (so that they run together, one vectorised call for many), or at once when
        the slot waits for its next episode and has none run ahead."""
        rows, ids = [], []
        batch = max(1, (self.rows_per_slot - 1) // 2)
        for s in range(self.num_envs):
            if len(self._free[s]) >= batch or (s in waiting and not self._queue[s] and self._free[s]):
                rng = self._rngs[s]
                assert rng is not None
                for row in sorted(self._free[s]):
                    rows.append(row)
                    ids.append(int(rng.integers(0, _ID_RANGE)))
                    self._queue[s].append(row)
                self._free[s] = []
        if rows:
            r = np.array(rows, dtype=np.int64)
            self.world.reset_rows(r, np.array(ids, dtype=np.int64))
            self._reward[r] = 0.0

    def _run(self, new: NDArray[np.int64], stepping: NDArray[np.int64]) -> None:
        """Advance the world until each slot in ``new`` has its next episode's first menu point and each
        ``stepping`` slot's episode row is at its next menu point or ended; read their observations."""
        w, phase = self.world, self.world.phase
        waiting = set(new.tolist())
        while True:
            self._refill(waiting)
            w.advance()
            self._tally()
            if w.frozen:  # the arrangements' own decision points: the base policy, in one batch
                rows, batch = w.frozen[0]
                w.answer(rows, self.base.decide_batch(batch).actions)
                continue
            # Every row now waits at a menu point or is done: drop the run-ahead debtors done without one.
            for s in range(self.num_envs):
                q = self._queue[s]
                gone = [row for row in q if phase[row] == Phase.DONE]
                if gone:
                    self._queue[s] = [row for row in q if phase[row] != Phase.DONE]
                    self._free[s] += gone
                    self._misses[s] += len(gone)
                    if self._misses[s] >= MAX_DRAWS and not self._queue[s]:
                        raise RuntimeError(
                            f"no debtor of {MAX_DRAWS} drawn reached a menu point within {self.months} months"
                        )
            for s in list(waiting):
                if self._queue[s]:  # the first debtor of the draws that reached a menu point
                    self._current[s] = self._queue[s].pop(0)
                    self._reward[self._current[s]] = 0.0
                    self._misses[s] = 0
                    waiting.discard(s)
            if not waiting:
                break
        self._read(np.concatenate([new, stepping[phase[self._current[stepping]] == Phase.MENU]]))

    def _tally(self) -> None:
        """Add to each row's reward that of the events logged since the last call: their outcome columns
        (:func:`regsim.rewards.tally`) through the env's reward, which is a sum over events
        (:data:`SUMMED_REWARDS`), so a step's reward is the sum of these parts."""
        chunks = self.world.take_outcome_events()
        if not chunks:
            return
        rows = np.unique(np.concatenate([r for _, r, _ in chunks]))  # only the rows with events are tallied
        local = [(event, np.searchsorted(rows, r), cols) for event, r, cols in chunks]
        zeros = np.zeros(len(rows))
        self._reward[rows] += self.reward(tally(local, len(rows), zeros, zeros), self.costs)

    def _read(self, slots: NDArray[np.int64]) -> None:
        """The observations, masks and capped levels of these slots' current menu points."""
        if not len(slots):
            return
        points = self.world.menu_points()
        assert points is not None
        rows, batch = points
        where = np.full(self.world.n, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        k = where[self._current[slots]]
        assert (k >= 0).all(), "every slot read is at a menu point"
        obs = menu_observations(batch, self.world.space)
        self._obs[slots] = obs[k]
        self._masks[slots] = batch.mask[k]
        for s, j in zip(slots.tolist(), k.tolist(), strict=True):
            self._masked_by[s] = {f"{SLOT_NAMES[a]}={lv}": r for (a, lv), r in batch.masked_by(j).items()}

    def _infos(self) -> dict[str, Any]:
        w, n = self.world, self.num_envs
        rows = self._current
        every = np.ones(n, dtype=bool)
        masked = np.empty(n, dtype=object)
        for i in range(n):
            masked[i] = dict(self._masked_by[i])
        return {
            "arrangement_id": w.gid[rows].copy(),
            "_arrangement_id": every.copy(),
            "replaced_actions": self._replaced.copy(),
            "_replaced_actions": every.copy(),
            "masked_by": masked,
            "_masked_by": every.copy(),
            "truth": {"debtor_type": w.pop.type[rows].astype(np.int64), "_debtor_type": every.copy()},
            "_truth": every.copy(),
        }
