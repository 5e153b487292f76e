"""``regsim/ArrangementVec-v0``: ``num_envs`` independent arrangements simulated together as one vector env.

Slot ``i`` is an independent episode of ``regsim/Arrangement-v0``: fed the same actions, it gives exactly the
observations, rewards, terminations, truncations and info of ``Arrangement-v0`` reset with ``seed + i`` (or
with ``options={"arrangement_id": k}``). The slots run in one :class:`regsim.vector_world.VectorWorld`, whose
rows keep their own clocks: a vector step submits one decision per slot, then every slot is advanced to its
own next decision point (slots that get there first freeze while the others go on). The dynamics are the
world's own; this module only translates between the Gymnasium API and the world's rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numpy.typing import NDArray

from envs.arrangement import InvalidAction, env_arguments, fallback_actions, replaces_masked
from envs.spaces import MaskedMultiDiscrete
from regsim.arrangement import ArrangementStatus
from regsim.config import DEBTOR_TYPES, WorldConfig
from regsim.features import FEATURE_LAYOUT, FEATURE_VERSION, features
from regsim.rewards import Outcomes, Reward, RewardCosts, tally
from regsim.runoff import covering_months
from regsim.vector_world import Phase, VectorWorld

__all__ = ["ArrangementVecEnv"]

_ID_RANGE = 2**31
_ENDED = (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)


class ArrangementVecEnv(VectorEnv[NDArray[np.float32], NDArray[np.int64], NDArray[Any]]):
    """``num_envs`` independent payment arrangements, one decision point per slot per step.

    ## Description

    A Gymnasium vector env whose slot ``i`` is an episode of :class:`envs.arrangement.ArrangementEnv`
    (``regsim/Arrangement-v0``; see it for the observation, action, reward and episode end). All slots are
    rows of one :class:`regsim.vector_world.VectorWorld`: a vector step submits one decision per slot, and
    every slot is advanced to its own next decision point on its own clock, so slots never wait for or
    interact with one another. Slots are independent episodes: each arrangement is alone with its own
    collectors, robocall lines and print room (a lone debtor never queues), as in ``Arrangement-v0``.

    ## Engine

    The world holds two rows per slot: the slot's current arrangement and the next one, started as soon as
    the slot's previous one is swapped in and run to its first decision point alongside the others (each
    slot's debtors are drawn in the same order as ``Arrangement-v0`` draws them). An autoreset is then a swap,
    with no extra simulation inside the step.

    ## Autoreset

    ``autoreset_mode`` is :attr:`gymnasium.vector.AutoresetMode.NEXT_STEP` by default, as in
    :class:`gymnasium.vector.SyncVectorEnv`: the step after a slot's episode ended ignores that slot's
    action and returns the first observation of a new arrangement (reward 0, not terminated, not truncated).
    ``SAME_STEP`` resets at once and puts ``final_obs`` / ``final_info`` in the info (what SB3 expects; see
    :class:`envs.sb3_vec.ArrangementSB3VecEnv`). A new arrangement's debtor is drawn by the slot's generator,
    seeded ``seed + i`` at :meth:`reset` (as ``SyncVectorEnv`` seeds its copies).

    ## Info

    The slots' infos stacked by Gymnasium's rule (``info[key][i]`` with a boolean ``_key`` mask), as
    :class:`~gymnasium.vector.SyncVectorEnv` stacks those of ``Arrangement-v1``: ``arrangement_id``,
    ``decision_kind``, ``replaced_actions`` (alias ``fallbacks``), ``truth`` (ground truth) and, after a step,
    ``outcome`` (the step's outcome columns, :class:`regsim.rewards.Outcomes`, stacked as ``SyncVectorEnv``
    stacks the single env's dicts).

    ## Action masks

    :meth:`action_masks` returns the ``(num_envs, sum(nvec))`` boolean masks of the current decision points.

    ## Arguments

    ``num_envs`` and the arguments of :class:`envs.arrangement.ArrangementEnv` (``config``, ``reward``,
    ``reward_kwargs``, ``months``, ``world_seed``, ``invalid_action``), plus ``skip_quiet_days`` (default ``True``:
    see :mod:`regsim.quiet_days`; the results are the same), ``autoreset_mode`` and ``full_info`` (default
    ``True``; ``False``: a step's info holds only ``final_obs`` / ``_final_obs``, for adapters that drop the
    rest, such as :class:`envs.sb3_vec.ArrangementSB3VecEnv`: observations, rewards, terminations and
    truncations are the same, the per-slot infos are not built). ``reset(options=...)`` takes
    ``{"arrangement_ids": [k_0, ..., k_{n-1}]}`` to replay given debtors. The full event log of the slots is not
    kept (only what makes up the steps' outcomes).

    ## Version History

    * v0: initial version (feature layout ``features-1``). Since the ledger and the one reward module,
      ``info["outcome"]`` holds the step's outcome columns (it held objects) and a custom reward is a function of
      outcome columns; observations, rewards and episodes are unchanged.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP}  # noqa: RUF012

    def __init__(
        self,
        num_envs: int = 16,
        *,
        config: WorldConfig | str | Path | None = None,
        reward: str | Reward = "runoff_value",
        reward_kwargs: Mapping[str, float] | None = None,
        months: int | None = None,
        world_seed: int | None = None,
        invalid_action: InvalidAction = "replace",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        full_info: bool = True,
        skip_quiet_days: bool = True,
    ) -> None:
        if int(num_envs) < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        mode = AutoresetMode(autoreset_mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode: expected NEXT_STEP or SAME_STEP, got {mode}")
        self.config, self.reward_fn = env_arguments(config, reward, invalid_action, reward_kwargs)
        self.costs = RewardCosts.of(self.config)
        months = int(months if months is not None else covering_months(self.config))  # None: run-off
        if months < 1:
            raise ValueError(f"months: must be >= 1, got {months}")
        self.num_envs = int(num_envs)
        self.autoreset_mode = mode
        self.metadata = {"autoreset_mode": mode}
        self.render_mode = None
        self.invalid_action = invalid_action
        self.full_info = bool(full_info)
        self.feature_version = FEATURE_VERSION
        seed = int(world_seed if world_seed is not None else self.config.simulation.seed)
        # Rows [0, n) and [n, 2n): each slot's current arrangement and its next one (see "Engine").
        self.world = VectorWorld(
            self.config, 2 * self.num_envs, months=months, seed=seed, skip_quiet_days=skip_quiet_days
        )
        self.space = self.world.space
        nvec = np.array(self.space.nvec, dtype=np.int64)
        low = np.array([f.low for f in FEATURE_LAYOUT], dtype=np.float32)
        high = np.array([f.high for f in FEATURE_LAYOUT], dtype=np.float32)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.single_action_space = MaskedMultiDiscrete(nvec)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(spaces.MultiDiscrete(nvec), self.num_envs)
        n, width = self.num_envs, len(FEATURE_LAYOUT)
        self._obs = np.zeros((n, width), dtype=np.float32)
        self._masks = np.ones((n, self.space.mask_size), dtype=bool)
        self._kind = np.zeros(n, dtype=np.int64)
        self._day = np.zeros(n, dtype=np.int64)  # the day of each slot's current decision point
        self._balance = np.zeros(n)
        self._fallbacks = np.zeros(n, dtype=np.int64)
        self._ended = np.zeros(n, dtype=bool)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._row = np.arange(n)  # each slot's current row
        self._next_row = np.arange(n, 2 * n)  # each slot's next arrangement, waiting at its first decision point
        self._started = False

    # -- Gymnasium API ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        seeds = self._seeds(seed)
        options = dict(options or {})
        unknown = set(options) - {"arrangement_ids"}
        if unknown:
            raise ValueError(f"options: unknown keys {sorted(unknown)}; allowed: ['arrangement_ids']")
        ids = options.get("arrangement_ids")
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64)
            if ids.shape != (self.num_envs,):
                raise ValueError(f"options.arrangement_ids: expected {self.num_envs} ids, got {ids.shape}")
            if np.any((ids < 0) | (ids >= _ID_RANGE)):
                raise ValueError(f"options.arrangement_ids: each must be in [0, {_ID_RANGE})")
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i] = seeding.np_random(s)[0]
        slots = np.arange(self.num_envs)
        self.world.frozen = []
        self._row, self._next_row = np.arange(self.num_envs), np.arange(self.num_envs, 2 * self.num_envs)
        self._start(self._row, ids)
        self._start(self._next_row, None)
        self.world.advance()
        self.world.take_outcome_events()
        self._read_decision_points(slots)
        self._fallbacks[:] = 0
        self._ended[:] = False
        self._started = True
        return self._obs.copy(), self._infos(slots, outcomes=None)

    def step(
        self, actions: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], dict[str, Any]]:
        stepping, acts = self._stepping_actions(actions)
        n = self.num_envs
        w = self.world
        restart = np.flatnonzero(self._ended)  # NEXT_STEP: these slots start a new arrangement, action ignored
        if replaces_masked(self.invalid_action):
            acts, replaced = fallback_actions(self.space, self._masks[stepping], acts)
            self._fallbacks[stepping] += replaced
        day0 = self._day[stepping].astype(np.float64)
        balance0 = self._balance[stepping].copy()
        rows = self._row[stepping]
        w.answer(rows, acts)  # checks every decision first: a RuleViolation leaves the env as it was
        self._swap(restart)
        w.advance()
        done = w.phase[rows] == Phase.DONE
        day1 = np.where(done, self._step_end(rows), w.local_day[rows]).astype(np.float64)
        outcomes = tally(w.take_outcome_events(), 2 * n, day1 - day0, balance0, rows=rows)
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        rewards[stepping] = self.reward_fn(outcomes, self.costs)
        terminated[stepping] = np.isin(w.ledger.status[rows], _ENDED) & done
        truncated[stepping] = done & ~terminated[stepping]
        self._read_decision_points(np.concatenate([stepping[~done], restart]))
        ended = terminated | truncated
        if not self.full_info:
            infos: dict[str, Any] = {}
            if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
                finished = np.flatnonzero(ended)
                final_obs = np.full(n, None, dtype=object)
                for i in finished.tolist():
                    final_obs[i] = self._obs[i].copy()
                self._swap(finished)
                self._read_decision_points(finished)
                infos["final_obs"], infos["_final_obs"] = final_obs, ended.copy()
                self._ended[:] = False
            else:
                self._ended = ended
            return self._obs.copy(), rewards, terminated, truncated, infos
        step = (stepping, outcomes)
        infos = self._infos(np.arange(n), outcomes=step)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and ended.any():
            finished = np.flatnonzero(ended)
            final_obs = np.full(n, None, dtype=object)
            final_info = self._infos(finished, outcomes=step)
            for i in finished.tolist():
                final_obs[i] = self._obs[i].copy()
            self._swap(finished)
            self._read_decision_points(finished)
            fresh = self._infos(finished, outcomes=None)
            infos = self._merge(infos, fresh, finished)
            infos["final_obs"], infos["_final_obs"] = final_obs, ended.copy()
            infos["final_info"], infos["_final_info"] = final_info, ended.copy()
            self._ended[:] = False
        else:
            self._ended = ended
        return self._obs.copy(), rewards, terminated, truncated, infos

    def check_actions(self, actions: NDArray[np.int64]) -> None:
        """Raise what :meth:`step` would raise for these actions (their shape, the rules), changing nothing.

        For callers that must know that a step will go through before taking it, such as
        :class:`envs.shards.SlotShards`, whose blocks step all or none.

        Raises:
            RuntimeError: :meth:`reset` was not called.
            ValueError: The actions' shape is wrong.
            RuleViolation: An action breaks a rule (with ``invalid_action="replace"``, after its replacement).
        """
        stepping, acts = self._stepping_actions(actions)
        if replaces_masked(self.invalid_action):
            acts, _ = fallback_actions(self.space, self._masks[stepping], acts)
        self.world.check(self._row[stepping], acts)

    def action_masks(self) -> NDArray[np.bool_]:
        """The rules' masks of the slots' current decision points, ``(num_envs, sum(nvec))``.

        A slot whose episode ended (NEXT_STEP autoreset pending) shows its last decision point's mask: its next
        action is ignored anyway.
        """
        return self._masks.copy()

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the slots are rows of an in-process world."""

    # -- helpers ------------------------------------------------------------------------------------------
    def _stepping_actions(self, actions: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The slots that step (all but those whose NEXT_STEP autoreset is pending) and their actions."""
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs, len(self.space.nvec)):
            raise ValueError(f"actions: expected shape {(self.num_envs, len(self.space.nvec))}, got {actions.shape}")
        stepping = np.flatnonzero(~self._ended)
        return stepping, actions[stepping]

    def _seeds(self, seed: int | list[int | None] | None) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"seed: expected {self.num_envs} seeds, got {len(seed)}")
        return list(seed)

    def _start(self, rows: NDArray[np.int64], ids: NDArray[np.int64] | None) -> None:
        """New arrangements in these rows (of slots ``rows % n``): given debtors, or drawn by the slots' generators."""
        if not len(rows):
            return
        if ids is None:
            drawn = []
            for i in (rows % self.num_envs).tolist():
                rng = self._rngs[i]
                assert rng is not None
                drawn.append(int(rng.integers(0, _ID_RANGE)))
            ids = np.array(drawn, dtype=np.int64)
        else:
            ids = ids[rows % self.num_envs]
        self.world.reset_rows(rows, ids)

    def _swap(self, slots: NDArray[np.int64]) -> None:
        """These slots go on with their next arrangement (waiting at its first decision point); the row they
        leave starts the one after (drawn now: the same debtors, in the same order, as ``Arrangement-v0``'s)."""
        if not len(slots):
            return
        old = self._row[slots]
        self._row[slots] = self._next_row[slots]
        self._next_row[slots] = old
        self._start(old, None)
        self._fallbacks[slots] = 0

    def _read_decision_points(self, slots: NDArray[np.int64]) -> None:
        """Observations, masks and decision-point columns of these slots, now frozen at decision points."""
        if not len(slots):
            return
        slot_of = np.full(2 * self.num_envs, -1, dtype=np.int64)
        slot_of[self._row[slots]] = slots
        for group, batch in self.world.frozen:
            at = slot_of[group]
            take = at >= 0
            if not take.any():
                continue
            g = at[take]
            sub = batch if take.all() else batch.take(np.flatnonzero(take))
            self._obs[g] = features(sub)
            self._masks[g] = sub.mask
            self._kind[g] = sub.columns["kind"]
            self._day[g] = sub.columns["day"]
            self._balance[g] = sub.columns["balance_eur"]
            slot_of[group[take]] = -1
        if (slot_of >= 0).any():  # pragma: no cover - every arrangement has a decision point within its horizon
            raise RuntimeError(f"slots {slot_of[slot_of >= 0].tolist()} have no decision point within the horizon")

    def _step_end(self, rows: NDArray[np.int64]) -> NDArray[np.float64]:
        """When the last step of these slots' arrangements ended: their end, or the horizon."""
        end = self.world.end_time[rows]
        return np.where(np.isfinite(end), end, float(self.world.days))

    def _infos(self, slots: NDArray[np.int64], outcomes: tuple[NDArray[np.int64], Outcomes] | None) -> dict[str, Any]:
        """The infos of these slots, stacked as ``SyncVectorEnv`` stacks ``Arrangement-v0``'s.

        ``outcomes``: after a step, the slots that stepped and their outcomes (aligned with them).
        """
        w, n = self.world, self.num_envs
        rows = self._row[slots]
        day = self._day[slots]
        p_pay, owed = w.payment_probability(rows, day)

        def col(values: NDArray[Any], dtype: Any) -> NDArray[Any]:
            out = np.zeros(n, dtype=dtype)
            out[slots] = values
            return out

        present = np.zeros(n, dtype=bool)
        present[slots] = True
        types = np.full(n, None, dtype=object)
        types[slots] = [DEBTOR_TYPES[t] for t in w.pop.type[rows].tolist()]
        truth = {
            "debtor_type": types,
            "free_cash_eur": col(w.state.cash[rows], float),
            "in_shock": col(w.state.shock_until[rows] > day, bool),
            "p_pay_today": col(p_pay, float),
            "owed_now_eur": col(owed, float),
            "disengaged": col(w.state.disengaged[rows], bool),
        }
        truth.update({f"_{k}": present.copy() for k in list(truth)})
        info: dict[str, Any] = {
            "arrangement_id": col(w.gid[rows], int),
            "decision_kind": col(self._kind[slots], int),
            "replaced_actions": col(self._fallbacks[slots], int),
            "fallbacks": col(self._fallbacks[slots], int),
            "truth": truth,
        }
        info.update({f"_{k}": present.copy() for k in list(info)})
        if outcomes is not None:
            stepping, step_outcomes = outcomes
            stepped = np.zeros(n, dtype=bool)
            stepped[stepping] = True
            stepped &= present
            if stepped.any():
                at = np.full(n, -1, dtype=np.int64)
                at[stepping] = np.arange(len(stepping))
                columns: dict[str, Any] = {}
                for name, value in vars(step_outcomes).items():
                    column = np.zeros(n, dtype=value.dtype)
                    column[stepped] = value[at[stepped]]
                    columns[name], columns[f"_{name}"] = column, stepped.copy()
                info["outcome"], info["_outcome"] = columns, stepped
        return info

    def _merge(self, infos: dict[str, Any], fresh: dict[str, Any], slots: NDArray[np.int64]) -> dict[str, Any]:
        """Replace these slots' entries of ``infos`` by those of ``fresh`` (their reset infos)."""
        for key, value in fresh.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                infos[key] = self._merge(infos.get(key, {}), value, slots)
            else:
                infos[key][slots] = value[slots]
        if "outcome" in infos:  # a fresh episode's info has no outcome (as SyncVectorEnv stacks it: 0, masked)
            infos["_outcome"][slots] = False
            for value in infos["outcome"].values():
                value[slots] = 0
        return infos
