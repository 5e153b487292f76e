"""On-policy training on the population simulator: MaskablePPO rollouts without stepping one env at a time.

During a PPO rollout the policy is fixed, so there is no need to pause the world at every decision point: a
population :class:`~regsim.world.World` runs with a recorder policy that evaluates the current network once per
simulated day on the whole batch of decision points (with the rules' masks), samples the actions and keeps
observations, actions, values, log-probabilities and masks. Each arrangement's decisions form one episode of
exactly the MDP of ``regsim/Arrangement-v0``: the reward of a decision is ``reward(outcome)`` of the events
the log records for that arrangement after it and before its next decision (log order, as the env computes
its step reward), the episode terminates when the arrangement completes, breaks or is referred, and is
truncated at the horizon (bootstrapped with the value of its last observation, as SB3 does for time limits).
Shared capacity counts, since the debtors share collectors, lines and the print room.

Trajectories are stored contiguously in a ``MaskableRolloutBuffer`` and ``model.train()`` does the update, so
the learning algorithm is sb3-contrib's own. The simulator then costs a small fraction of a training run
instead of most of it (see ``benchmarks/bench_env.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import torch as th
from numpy.typing import NDArray
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer

from agents.base import BasePolicy
from agents.sb3_checkpoint import set_global_rng_state
from envs.rewards import REWARDS, RewardFn, StepOutcome
from regsim.config import WorldConfig
from regsim.decision import ContextBatch, DecisionBatch
from regsim.eventlog import EventType, event_codes
from regsim.features import features
from regsim.world import World

__all__ = [
    "PopulationProgress",
    "PopulationRollout",
    "collect_rollout",
    "learn_on_population",
]


class _Recorder(BasePolicy):
    """Decides with the network (sampled, masked) and records what the buffer needs."""

    name: ClassVar[str] = "population-rollout"
    version: ClassVar[str] = "1"

    def __init__(self, model: MaskablePPO) -> None:
        self.model = model
        self.parts: list[dict[str, NDArray[Any]]] = []

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        obs = features(contexts)
        masks = contexts.mask
        with th.no_grad():
            obs_t = th.as_tensor(obs, device=self.model.device)
            actions, values, log_probs = self.model.policy(obs_t, action_masks=masks)
        a = actions.cpu().numpy().astype(np.int64)
        lp = log_probs.cpu().numpy().astype(np.float64)
        self.parts.append(
            {
                "arrangement_id": contexts.columns["arrangement_id"].astype(np.int64),
                "day": contexts.columns["day"].astype(np.float64),
                "balance": contexts.columns["balance_eur"].astype(np.float64),
                "obs": obs,
                "actions": a,
                "values": values.cpu().numpy().reshape(-1),
                "log_probs": lp,
                "masks": masks,
            }
        )
        return DecisionBatch(a, np.exp(lp))


@dataclass
class PopulationRollout:
    """Transitions of one population run, episode by episode (rows grouped by arrangement, in time order)."""

    obs: NDArray[np.float32]
    actions: NDArray[np.int64]
    rewards: NDArray[np.float64]
    values: NDArray[np.float64]
    log_probs: NDArray[np.float64]
    masks: NDArray[np.bool_]
    episode_starts: NDArray[np.bool_]
    terminated: NDArray[np.bool_]
    """True on an episode's last step when the arrangement ended (False there when truncated)."""
    last: NDArray[np.bool_]
    """True on every episode's last step."""
    episode_returns: NDArray[np.float64]
    episode_lengths: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.rewards)


def _decision_rewards(
    events: pa.Table,
    n_decisions: int,
    reward: RewardFn,
    breakdown_cost_eur: float,
    days: NDArray[np.float64],
    balance: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """Per decision (in log order): reward of what followed it, its arrangement, and whether it ended there.

    ``days`` and ``balance`` are given per decision in the same order (arrangement, then time).
    """
    codes = event_codes(events)
    arr = events.column("arrangement_id").to_numpy()
    amount = np.nan_to_num(events.column("amount_eur").to_numpy(zero_copy_only=False))
    late = events.column("deferral_days").to_numpy(zero_copy_only=False)
    collection = np.nan_to_num(events.column("collection_costs_eur").to_numpy(zero_copy_only=False))
    order = np.lexsort((np.arange(len(codes)), arr))  # by arrangement, then log position
    codes, arr, amount, late, collection = codes[order], arr[order], amount[order], late[order], collection[order]
    is_decision = codes == EventType.DECISION
    new_arr = np.r_[True, arr[1:] != arr[:-1]]
    cum = np.cumsum(is_decision)
    # Decisions of the row's own arrangement up to the row: rows before its first decision follow none.
    base = np.maximum.accumulate(np.where(new_arr, cum - is_decision, 0))
    seg = np.where(cum - base >= 1, cum - 1, -1)
    n = int(is_decision.sum())
    if n != n_decisions:
        raise RuntimeError(f"the log has {n} decisions but the recorder saw {n_decisions}")

    def total(mask: NDArray[np.bool_], values: NDArray[np.float64] | None = None) -> NDArray[np.float64]:
        out = np.zeros(n)
        m = mask & (seg >= 0)
        np.add.at(out, seg[m], 1.0 if values is None else values[m])
        return out

    collected = total(codes == EventType.PAYMENT, amount)
    cost = total(codes == EventType.MESSAGE_SENT, amount)
    contacts = total(codes == EventType.MESSAGE_SENT)
    completed = total(codes == EventType.COMPLETED) > 0
    broken = total(codes == EventType.BROKEN) > 0
    referred = total(codes == EventType.REFERRED) > 0
    charged = total(codes == EventType.BROKEN, collection)
    on_time = total((codes == EventType.INSTALLMENT_PAID) & (late <= 0))
    missed = total(codes == EventType.INSTALLMENT_MISSED)
    rewards = np.array(
        [
            reward(
                StepOutcome(
                    collected[k],
                    cost[k],
                    int(contacts[k]),
                    bool(completed[k]),
                    bool(broken[k]),
                    bool(referred[k]),
                    charged[k],
                    int(on_time[k]),
                    int(missed[k]),
                    breakdown_cost_eur,
                    float(days[k]),
                    float(balance[k]),
                )
            )
            for k in range(n)
        ]
    )
    decision_arr = arr[is_decision]
    return rewards, decision_arr, completed | broken | referred


def collect_rollout(
    model: MaskablePPO,
    config: WorldConfig,
    *,
    arrangements: int,
    months: int,
    seed: int,
    first_id: int = 0,
    reward: str | RewardFn = "collected",
) -> PopulationRollout:
    """Run a population under the model's current (sampled, masked) policy and return its transitions.

    Args:
        model: The MaskablePPO model whose policy decides.
        config: The world.
        arrangements: Arrangements in the run (episodes).
        months: Horizon (episodes still open then are truncated).
        seed: World seed of the population.
        first_id: Id of the first arrangement (use new ids for new debtors of the same population).
        reward: A name in :data:`envs.rewards.REWARDS` or a callable on :class:`envs.rewards.StepOutcome`.
    """
    reward_fn = REWARDS[reward] if isinstance(reward, str) else reward
    recorder = _Recorder(model)
    model.policy.set_training_mode(False)
    world = World(
        config, recorder, arrangements=arrangements, months=months, seed=seed, first_id=first_id, sample_queues=False
    )
    world.run()
    cat = {k: np.concatenate([p[k] for p in recorder.parts]) for k in recorder.parts[0]} if recorder.parts else {}
    n = len(cat.get("actions", []))
    events = world.log.to_table()
    # Recorder rows are in world order (day by day); the log's decisions in arrangement order. Both orders are
    # by time within an arrangement, so a stable sort of the recorder rows by arrangement aligns them.
    order = np.argsort(cat["arrangement_id"], kind="stable")
    arr = cat["arrangement_id"][order]
    day = cat["day"][order]
    # A step lasts until the arrangement's next decision, or its end (or the horizon) for its last one.
    end = world.end_time[arr - world.first_id]
    end = np.where(np.isfinite(end), end, float(world.days))
    next_day = np.where(np.r_[arr[1:] == arr[:-1], False], np.r_[day[1:], 0.0], end)
    rewards, log_arr, ended = _decision_rewards(
        events, n, reward_fn, config.arrangements.breakdown_cost_eur, next_day - day, cat["balance"][order]
    )
    if not np.array_equal(arr, log_arr):
        raise RuntimeError("recorder and log disagree on the decisions' arrangements")
    last = np.r_[arr[1:] != arr[:-1], True]
    starts = np.r_[True, arr[1:] != arr[:-1]]
    terminated = last & ended
    episode_id = np.cumsum(starts) - 1
    returns = np.bincount(episode_id, weights=rewards).astype(np.float64)
    lengths = np.bincount(episode_id)
    return PopulationRollout(
        obs=cat["obs"][order],
        actions=cat["actions"][order],
        rewards=rewards,
        values=cat["values"][order],
        log_probs=cat["log_probs"][order],
        masks=cat["masks"][order],
        episode_starts=starts,
        terminated=terminated,
        last=last,
        episode_returns=returns,
        episode_lengths=lengths,
    )


def _fill_buffer(model: MaskablePPO, rollout: PopulationRollout) -> MaskableRolloutBuffer:
    n = len(rollout)
    buffer = MaskableRolloutBuffer(
        n,
        model.observation_space,
        model.action_space,
        device=model.device,
        gamma=model.gamma,
        gae_lambda=model.gae_lambda,
        n_envs=1,
    )
    rewards = rollout.rewards.copy()
    truncated = rollout.last & ~rollout.terminated
    # Time limits: bootstrap with the value of the last observation (SB3 issue #633).
    rewards[truncated] += model.gamma * rollout.values[truncated]
    buffer.observations[:, 0] = rollout.obs
    buffer.actions[:, 0] = rollout.actions
    buffer.rewards[:, 0] = rewards
    buffer.episode_starts[:, 0] = rollout.episode_starts
    buffer.values[:, 0] = rollout.values
    buffer.log_probs[:, 0] = rollout.log_probs
    buffer.action_masks[:, 0] = rollout.masks
    buffer.pos, buffer.full = n, True
    buffer.compute_returns_and_advantage(last_values=th.zeros(1), dones=np.ones(1))
    if n > 1 and model.batch_size is not None and n % model.batch_size == 1:
        # Rollouts here have any length, and a last minibatch of one transition would normalise its advantage
        # by a standard deviation of NaN (ddof 1) and poison the weights: that transition sits out the update
        # (its advantage was computed above with the others; only the minibatch sampling skips it).
        buffer.buffer_size = n - 1
    return buffer


@dataclass
class PopulationProgress:
    """Where :func:`learn_on_population` stands between two updates (with the model, all it needs to go on).

    Attributes:
        iteration: Updates done.
        next_id: Id of the first debtor of the next rollout.
        per_arrangement: Decisions per arrangement observed in the last rollout (sizes the next one).
    """

    iteration: int = 0
    next_id: int = 0
    per_arrangement: float = 15.0


def learn_on_population(
    model: MaskablePPO,
    config: WorldConfig,
    *,
    total_decisions: int,
    arrangements_per_rollout: int | None = None,
    months: int | None = None,
    seed: int = 0,
    reward: str | RewardFn = "collected",
    first_id: int = 0,
    progress: Callable[[int, PopulationRollout], None] | None = None,
    resume: tuple[PopulationProgress, dict[str, Any]] | None = None,
    on_update: Callable[[PopulationProgress], None] | None = None,
) -> MaskablePPO:
    """Train a MaskablePPO model on population rollouts until ``total_decisions`` transitions were used.

    Rollouts simulate consecutive arrangement ids from ``first_id`` on, of the population of ``seed``, so every
    rollout meets new debtors and the run is reproducible. The model's own hyperparameters (epochs,
    batch size, clip range, learning rate schedule, ...) govern each update.

    Resuming. After every update the training depends only on the model (weights, optimizer state,
    ``num_timesteps``, ``_n_updates``), the :class:`PopulationProgress` and the global generators
    (:func:`agents.sb3_checkpoint.global_rng_state`); ``on_update`` is called there, so a checkpoint written by
    it and passed back as ``resume`` (on a model with those restored) continues exactly as the uninterrupted
    training would have.

    Args:
        model: A MaskablePPO model built on an env with the world's spaces (e.g. ``envs.ArrangementEnv``).
        config: The world.
        total_decisions: Transitions to train on (the analogue of ``total_timesteps``).
        arrangements_per_rollout: Episodes per rollout; by default each rollout is sized to give about the
            model's ``n_steps`` decisions (its hyperparameter for transitions per update), learning the number
            of decisions an arrangement makes from the rollouts so far.
        months: Horizon of a rollout (default: the config's).
        seed: Population seed.
        reward: Reward name or callable (as for the env).
        first_id: Id of the first debtor of the first rollout (e.g. far above an evaluation's ids, so training
            and evaluation never meet the same debtors).
        progress: Called after each update with the decisions used so far and the rollout.
        resume: The progress and global generator states at a checkpoint (the model restored to it by the
            caller); None starts afresh.
        on_update: Called after each update (after ``progress``) with the progress so far.
    """
    months = int(months if months is not None else config.simulation.months)
    model._setup_learn(
        total_decisions,
        callback=None,
        reset_num_timesteps=resume is None,
        tb_log_name="MaskablePPO-population",
        progress_bar=False,
    )
    state = PopulationProgress(next_id=first_id)
    if resume is not None:
        state = PopulationProgress(**vars(resume[0]))
        set_global_rng_state(resume[1])
    while model.num_timesteps < total_decisions:
        size = arrangements_per_rollout or max(4, int(np.ceil(model.n_steps * model.n_envs / state.per_arrangement)))
        rollout = collect_rollout(
            model,
            config,
            arrangements=size,
            months=months,
            seed=seed,
            first_id=state.next_id,
            reward=reward,
        )
        state.next_id += size
        state.per_arrangement = max(1.0, len(rollout) / size)
        model.rollout_buffer = _fill_buffer(model, rollout)
        model.num_timesteps += len(rollout)
        model._update_current_progress_remaining(model.num_timesteps, total_decisions)
        model.logger.record("rollout/ep_rew_mean", float(np.mean(rollout.episode_returns)))
        model.logger.record("rollout/ep_len_mean", float(np.mean(rollout.episode_lengths)))
        model.logger.record("rollout/reward_per_decision", float(np.mean(rollout.rewards)))
        model.logger.record("rollout/ended_share", float(rollout.terminated.sum() / max(rollout.last.sum(), 1)))
        model.logger.record("time/iterations", state.iteration)
        model.train()
        model.logger.dump(step=model.num_timesteps)
        state.iteration += 1
        if progress is not None:
            progress(model.num_timesteps, rollout)
        if on_update is not None:
            on_update(PopulationProgress(**vars(state)))
    return model
