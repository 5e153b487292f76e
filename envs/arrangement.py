"""``regsim/Arrangement-v1``: one payment arrangement per episode, one step per decision point."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from envs.spaces import MaskedMultiDiscrete
from regsim.arrangement import ArrangementStatus
from regsim.config import DEBTOR_TYPES, WorldConfig, load_world_config
from regsim.decision import ActionSpace, ContextBatch, DecisionBatch
from regsim.features import FEATURE_LAYOUT, FEATURE_VERSION, features
from regsim.rewards import Reward, RewardCosts, resolve_reward, tally
from regsim.runoff import covering_months
from regsim.world import World

__all__ = ["INVALID_ACTIONS", "ArrangementEnv", "InvalidAction", "fallback_actions", "replaces_masked", "step_end"]

#: What an env does with a masked action: replace it by an allowed one (default), or raise.
#: ``"fallback"`` is the former name of ``"replace"``, still accepted.
InvalidAction = Literal["replace", "raise", "fallback"]
INVALID_ACTIONS: tuple[str, ...] = ("replace", "raise", "fallback")

_ENDED = (ArrangementStatus.COMPLETED, ArrangementStatus.BROKEN, ArrangementStatus.REFERRED)
_ID_RANGE = 2**31


def env_arguments(
    config: WorldConfig | str | Path | None,
    reward: str | Reward,
    invalid_action: str,
    reward_kwargs: Mapping[str, float] | None = None,
) -> tuple[WorldConfig, Reward]:
    """The world config and reward of an env's arguments (single and vector alike), checked.

    Raises:
        ValueError: ``invalid_action`` is not one of :data:`INVALID_ACTIONS`, or the reward (or an argument of
            it) is unknown.
    """
    if isinstance(config, str | Path):
        config = load_world_config(config)
    if invalid_action not in INVALID_ACTIONS:
        raise ValueError(f"invalid_action: expected one of {list(INVALID_ACTIONS)}, got {invalid_action!r}")
    return (config if config is not None else WorldConfig()), resolve_reward(reward, reward_kwargs)


def replaces_masked(invalid_action: str) -> bool:
    """Whether an env with this ``invalid_action`` replaces masked actions (``"replace"``, ``"fallback"``)."""
    return invalid_action != "raise"


def fallback_actions(
    space: ActionSpace, masks: NDArray[np.bool_], actions: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Each masked (or out-of-range) part replaced by its lowest allowed option; and which rows changed.

    Args:
        space: The action space.
        masks: Flat masks, one row per decision point.
        actions: Actions, one row per decision point.
    """
    out = np.array(actions, dtype=np.int64, copy=True)
    replaced = np.zeros(len(out), dtype=bool)
    for part, (off, size) in enumerate(zip(space.offsets, space.nvec, strict=True)):
        mask = masks[:, off : off + size]
        option = out[:, part]
        inside = (option >= 0) & (option < size)
        bad = ~inside | ~mask[np.arange(len(out)), np.clip(option, 0, size - 1)]
        out[bad, part] = np.argmax(mask[bad], axis=1)
        replaced |= bad
    return out, replaced


def step_end(world: World, row: int) -> float:
    """When the last step of an arrangement ends: its end (completed, broken, referred) or the horizon."""
    end = float(world.end_time[row])
    return end if np.isfinite(end) else float(world.days)


class ArrangementEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """One payment arrangement of the simulated population, managed decision point by decision point.

    ## Description

    Each episode draws one debtor (hidden type, income schedule, channel affinities, debt) from the configured
    population and follows their arrangement through the SimPy world of :mod:`regsim`, from the plan's
    creation until it completes, breaks or is referred. Between two steps the world is advanced to the
    arrangement's next decision point (a plan to set up, an installment about to fall due, a missed
    installment and its follow-ups, a payment to acknowledge); the env adds no dynamics of its own.

    ## Observation

    A ``float32`` vector of observable features only, built by :func:`regsim.features.features` (the module
    the server reuses), layout :data:`regsim.features.FEATURE_LAYOUT`, version
    :data:`regsim.features.FEATURE_VERSION`: each entry's name, unit and range are documented there and the
    ``Box`` bounds are those ranges.

    ## Action

    ``MultiDiscrete(nvec)`` over the decision's parts (channel, send-time slot, due-day option, deferral option,
    reduction option) of :class:`regsim.decision.ActionSpace`. Parts that do not apply at a decision point, and
    options that business rules forbid, are masked: :meth:`action_masks` returns the flat boolean mask that
    sb3-contrib's ``MaskablePPO`` expects. Every action of ``action_space`` is valid, as Gymnasium's contract
    asks, so any client trains: by default (``invalid_action="replace"``) each masked part of an action is
    replaced by its lowest allowed option (no contact / no change), and the steps whose action was replaced
    are counted in ``info["replaced_actions"]`` (and, by its former name, ``info["fallbacks"]``). A
    mask-aware learner may opt in to ``invalid_action="raise"``: a masked action is then refused with
    :class:`regsim.decision.RuleViolation` naming the rule.

    ## Reward

    A reward of :mod:`regsim.rewards` of what the event log recorded for the arrangement during the step (its
    :class:`regsim.rewards.Outcomes`, also in ``info["outcome"]``), with the world's costs. Default
    ``"runoff_value"``: the run-off verdict's objective, net recovery (euros collected minus contact costs) times
    0.01 plus 3.0 when the plan completes, so that an episode's return is 0.01 x
    :func:`regsim.metrics.runoff_value` of its arrangement (EUR 300 per completion); ``"collected"``: euros
    collected minus contact costs minus the creditor's breakdown cost, times 0.01;
    ``"completion"``: +1 on completion, -1 on breakdown; ``"burden"``: the default minus 0.5 per contact and the
    debtor's collection costs; ``"holding"``: the default minus the creditor's cost of waiting (the balance x
    10% a year x the step's days); ``"completion_value"``: euros, contact costs, a bonus for a completed plan and
    a strong waiting charge (the reward with which MaskablePPO beat static dunning on completion). Ground truth
    (debtor type, latent free cash, shock, the probability the debtor had of paying that day) is in
    ``info["truth"]``, never in the observation.

    ## Episode End

    Terminated when the arrangement completes, breaks or is referred; truncated when the horizon is reached
    first. By default (``months=None``) the episode runs off: its horizon holds every arrangement's run-off cap
    (:func:`regsim.runoff.covering_months`: the last arrival plus the longest plan + 12 months, 25 months on the
    default world), so an episode ends with its arrangement; an explicit ``months`` keeps a fixed horizon. The
    final observation is the last decision point's.

    ## Arguments

    * ``config``: a :class:`regsim.config.WorldConfig`, a path to a population YAML, or ``None`` (default world).
    * ``reward``: a name in :data:`regsim.rewards.REWARDS` or a function ``(Outcomes, RewardCosts) -> array``.
    * ``reward_kwargs``: keyword arguments of the reward (e.g. ``{"cost_weight": 5.0}``).
    * ``months``: a fixed horizon of an episode in months of 30 days (default ``None``: run-off, see Episode End).
    * ``world_seed``: the population's seed (default: the config's); debtors are drawn by the env's seed.
    * ``invalid_action``: ``"replace"`` (default), or ``"raise"`` for mask-aware training (``"fallback"`` is the
      former name of ``"replace"``).
    * ``reset(options={"arrangement_id": k})`` replays debtor ``k`` of the population (the same debtor as
      arrangement ``k`` of a population run with that world seed).

    ## Version History

    * v0: initial version (feature layout ``features-1``). Since the vector env (``regsim/ArrangementVec-v0``),
      the episode's world has dedicated resources (``World(dedicated_capacity=True)``): its print room wakes
      only while letters wait (the same working days and hour), and a served call or posted letter takes
      effect as the next event at that moment rather than inside the service step. Episodes differ from
      before only where two events of the arrangement fall on the very same moment (e.g. a letter queued at
      the posting hour, which no send slot of the default config is). Since the ledger and the one reward module
      (:mod:`regsim.rewards`), ``info["outcome"]`` is a dict of the step's outcome columns (it was an object) and a
      custom reward is a function of outcome columns; observations, rewards and episodes are unchanged.
    * v1: ``invalid_action`` defaults to ``"replace"`` (it was ``"raise"``): a masked action is replaced by an
      allowed one and counted in ``info["replaced_actions"]`` instead of ending the rollout with
      ``RuleViolation``. Episodes of allowed actions are unchanged. ``regsim/Arrangement-v0`` stays registered
      with ``invalid_action="raise"`` (its contract), so runs recorded on it replay as they were.
      Later, the defaults became those of a run-off verdict: ``reward="runoff_value"`` (it was ``"collected"``)
      and ``months=None``, an episode to its arrangement's end (it was the config's ``simulation.months``, 12);
      episodes made with an explicit ``reward`` and ``months`` are unchanged.
    """

    # Gymnasium declares ``metadata`` as an attribute, so it is not a ClassVar here.
    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 1}  # noqa: RUF012

    def __init__(
        self,
        *,
        config: WorldConfig | str | Path | None = None,
        reward: str | Reward = "runoff_value",
        reward_kwargs: Mapping[str, float] | None = None,
        months: int | None = None,
        world_seed: int | None = None,
        invalid_action: InvalidAction = "replace",
        render_mode: str | None = None,
    ) -> None:
        self.config, self.reward_fn = env_arguments(config, reward, invalid_action, reward_kwargs)
        self.costs = RewardCosts.of(self.config)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.months = int(months if months is not None else covering_months(self.config))
        if self.months < 1:
            raise ValueError(f"months: must be >= 1, got {self.months}")
        self.world_seed = int(world_seed if world_seed is not None else self.config.simulation.seed)
        self.invalid_action = invalid_action
        self.render_mode = render_mode
        probe = World(self.config, None, arrangements=1, months=1, seed=self.world_seed)
        self.space = probe.space
        self.action_space: MaskedMultiDiscrete = MaskedMultiDiscrete(np.array(self.space.nvec, dtype=np.int64))
        low = np.array([f.low for f in FEATURE_LAYOUT], dtype=np.float32)
        high = np.array([f.high for f in FEATURE_LAYOUT], dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.feature_version = FEATURE_VERSION
        self.world: World | None = None
        self._batch: ContextBatch | None = None
        self._obs = np.zeros(len(FEATURE_LAYOUT), dtype=np.float32)
        self._cursor = 0
        self._fallbacks = 0

    # -- Gymnasium API ------------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"arrangement_id"}
        if unknown:
            raise ValueError(f"options: unknown keys {sorted(unknown)}; allowed: ['arrangement_id']")
        if "arrangement_id" in options:
            debtor = int(options["arrangement_id"])
            if not 0 <= debtor < _ID_RANGE:
                raise ValueError(f"options.arrangement_id: must be in [0, {_ID_RANGE}), got {debtor}")
        else:
            debtor = int(self.np_random.integers(0, _ID_RANGE))
        self.world = World(
            self.config,
            None,
            arrangements=1,
            months=self.months,
            seed=self.world_seed,
            first_id=debtor,
            policy_name="env",
            policy_version="0",
            sample_queues=False,
            dedicated_capacity=True,
        )
        self._fallbacks = 0
        self._cursor = 0
        batch = self.world.next_decision()
        if batch is None:  # pragma: no cover - every arrangement starts with PLAN_CREATED within the horizon
            raise RuntimeError(f"arrangement {debtor} has no decision point within {self.months} months")
        self._set_decision_point(batch)
        self._cursor = self.world.log.n_chunks
        return self._obs.copy(), self._info()

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool, dict[str, Any]]:
        if self.world is None or self._batch is None:
            raise RuntimeError("call reset() before step()")
        act = np.asarray(action, dtype=np.int64).reshape(1, -1)
        if act.shape[1] != len(self.space.nvec):
            raise ValueError(f"action: expected {len(self.space.nvec)} parts {self.space.nvec}, got {act.tolist()}")
        if replaces_masked(self.invalid_action):
            act, replaced = self._fallback(act)
            self._fallbacks += int(replaced)
        day0 = float(self._batch.columns["day"][0])
        balance0 = float(self._batch.columns["balance_eur"][0])
        self.world.submit(DecisionBatch(act, np.full(1, np.nan)))
        cursor_before = self._cursor
        batch = self.world.next_decision()
        self._cursor = self.world.log.n_chunks
        status = int(self.world.ledger.status[0])
        terminated = status in _ENDED
        day1 = float(batch.columns["day"][0]) if batch is not None else step_end(self.world, 0)
        chunks = [
            (event, np.zeros(n, dtype=np.int64), cols) for event, n, cols in self.world.log.chunks_since(cursor_before)
        ]
        outcome = tally(chunks, 1, np.array([day1 - day0]), np.array([balance0]))
        reward = float(self.reward_fn(outcome, self.costs)[0])
        truncated = batch is None and not terminated
        if batch is not None:
            self._set_decision_point(batch)
        info = self._info()
        info["outcome"] = outcome.row(0)
        return self._obs.copy(), reward, terminated, truncated, info

    def action_masks(self) -> NDArray[np.bool_]:
        """The rules' mask of the current decision point, flat over the parts (as ``MaskablePPO`` expects)."""
        if self._batch is None:
            return np.ones(self.space.mask_size, dtype=bool)
        return self._batch.mask[0].copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi" or self._batch is None or self.world is None:
            return None
        c = self._batch[0]
        return (
            f"day {c.day}: arrangement {c.arrangement_id} at {c.kind_name}, installment {c.installment}, "
            f"{c.installments_paid}/{c.n_installments} paid, balance EUR {c.balance_eur:.2f}, "
            f"overdue {c.overdue}"
        )

    # -- helpers ------------------------------------------------------------------------------------------
    def _set_decision_point(self, batch: ContextBatch) -> None:
        self._batch = batch
        self._obs = features(batch)[0]
        self.action_space.current_mask = batch.mask[0].copy()

    def _fallback(self, act: NDArray[np.int64]) -> tuple[NDArray[np.int64], bool]:
        assert self._batch is not None
        out, replaced = fallback_actions(self.space, self._batch.mask, act)
        return out, bool(replaced[0])

    def _info(self) -> dict[str, Any]:
        assert self.world is not None and self._batch is not None
        w = self.world
        row = np.zeros(1, dtype=np.int64)
        day = int(self._batch.columns["day"][0])
        p_pay, owed = w.payment_probability(row, day)
        return {
            "arrangement_id": int(w.gid[0]),
            "decision_kind": int(self._batch.columns["kind"][0]),
            "replaced_actions": self._fallbacks,
            "fallbacks": self._fallbacks,
            "truth": {
                "debtor_type": DEBTOR_TYPES[int(w.pop.type[0])],
                "free_cash_eur": float(w.state.cash[0]),
                "in_shock": bool(w.state.shock_until[0] > day),
                "p_pay_today": float(p_pay[0]),
                "owed_now_eur": float(owed[0]),
                "disengaged": bool(w.state.disengaged[0]),
            },
        }
