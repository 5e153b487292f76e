"""The one training loop: an SB3 algorithm on a vector env of the world, with a learning curve and exact checkpoints.

SB3 collects the transitions itself: ``model.learn`` steps :class:`envs.sb3_vec.ArrangementSB3VecEnv` (for DQN
through :class:`agents.flat_actions.FlatActionVecEnv`), whose ``n_envs`` slots are independent episodes of
``regsim/Arrangement-v0`` simulated together, or :class:`envs.sb3_menu_vec.SelfServiceSB3VecEnv` (the menu
decision, ``regsim/SelfServiceVec-v0``) (a PPO rollout is ``n_steps * n_envs`` transitions, ``n_steps`` per
slot in SB3's sense). :func:`learn_on_vector` adds what an experiment needs around it:

* a learning curve per rollout: ``reward_per_decision`` (mean step reward of the rollout) and
  ``rollout/ep_rew_mean`` (mean return of the episodes that ended in it), and the returns of the last
  100 episodes;
* a progress bar over the transitions;
* checkpoints after an update of an on-policy algorithm (``<checkpoint_dir>/vec-<transitions>/``). Between two
  updates such a training depends on the model (weights, optimizer state, ``num_timesteps``, ``_n_updates``),
  the open episodes of the slots and the observations the next rollout starts from, the global generators SB3 draws from
  (:func:`agents.sb3_checkpoint.global_rng_state`) and the curve so far; a checkpoint holds all of it, so a
  training resumed from it ends exactly where the uninterrupted one would have, weights bit for bit.

Checkpoint files: ``model.zip`` (SB3's save), ``progress.json`` (identity of the training, counters, curve),
``rng.json`` (global generators) and ``slots.pkl`` (the slots mid-episode, pickled: load only one's own
checkpoints, as for SB3's ``model.zip``). The observations the next rollout starts from are SB3's
``_last_obs`` and ``_last_episode_starts`` (attributes SB3 offers no public access to); an off-policy algorithm
(DQN) would also need its replay buffer, so it is not checkpointed.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from tqdm.auto import tqdm

from agents.checkpoints import write_checkpoint_folder
from agents.sb3_checkpoint import restore_model, set_global_rng_state, write_model_files

__all__ = ["CHECKPOINT_PREFIX", "SlotStates", "VectorTraining", "learn_on_vector"]

CHECKPOINT_PREFIX = "vec-"
_SLOTS = "slots.pkl"
_LAST_RETURNS = 100


@runtime_checkable
class SlotStates(Protocol):
    """A vector env whose slots can be saved and restored mid-episode (what a checkpoint needs):
    :class:`envs.sb3_vec.ArrangementSB3VecEnv` and :class:`envs.sb3_menu_vec.SelfServiceSB3VecEnv`."""

    def get_state(self) -> bytes: ...

    def set_state(self, state: bytes) -> None: ...


@dataclass
class VectorTraining:
    """What a vector training has seen so far (the curve and episode bookkeeping); part of a checkpoint.

    Attributes:
        curve: ``(transitions, metric, value)`` rows, per rollout.
        episodes: Episodes that ended (terminated or truncated at the horizon).
        last_returns: Returns of the last (up to) 100 of them, oldest first.
        slot_returns: Return so far of each slot's open episode.
    """

    curve: list[tuple[int, str, float]] = field(default_factory=list)
    episodes: int = 0
    last_returns: deque[float] = field(default_factory=lambda: deque(maxlen=_LAST_RETURNS))
    slot_returns: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))


class _Bookkeeping(BaseCallback):
    """Curve rows per rollout, episode returns, the progress bar, and checkpoints after updates."""

    def __init__(
        self,
        state: VectorTraining,
        bar: tqdm[Any],
        save: Callable[[], None] | None,
        checkpoint_every: int | None,
    ) -> None:
        super().__init__()
        self.state = state
        self.bar = bar
        self.save = save
        self.every = checkpoint_every
        self._saved_at = 0
        self._reward_sum = 0.0
        self._steps = 0
        self._ended: list[float] = []

    def _on_training_start(self) -> None:
        self._saved_at = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        # Called by collect_rollouts before its first step: the previous update is done, nothing of the next
        # rollout has been drawn yet. That is the state a checkpoint can resume from.
        n = self.model.num_timesteps
        if self.save is not None and self.every is not None and n > self._saved_at and n - self._saved_at >= self.every:
            self.save()
            self._saved_at = n
        self._reward_sum, self._steps, self._ended = 0.0, 0, []

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=np.float64)  # before SB3 bootstraps truncations
        dones = np.asarray(self.locals["dones"], dtype=bool)
        state = self.state
        state.slot_returns += rewards
        self._reward_sum += float(rewards.sum())
        self._steps += len(rewards)
        if dones.any():
            ended = state.slot_returns[dones].tolist()
            self._ended += ended
            state.last_returns.extend(ended)
            state.episodes += len(ended)
            state.slot_returns[dones] = 0.0
        if self.bar is not None:
            self.bar.update(len(rewards))
        return True

    def _on_rollout_end(self) -> None:
        n = int(self.model.num_timesteps)
        self.state.curve.append((n, "reward_per_decision", self._reward_sum / max(self._steps, 1)))
        if self._ended:
            self.state.curve.append((n, "rollout/ep_rew_mean", float(np.mean(self._ended))))
            self.model.logger.record("rollout/ep_rew_mean", float(np.mean(self._ended)))
        self.model.logger.record("rollout/reward_per_decision", self._reward_sum / max(self._steps, 1))


def _save(model: BaseAlgorithm, folder: Path, state: VectorTraining, identity: dict[str, Any]) -> Path:
    env = model.get_env()
    assert isinstance(env, SlotStates)

    def write(tmp: Path) -> None:
        write_model_files(
            model,
            tmp,
            identity,
            episodes=state.episodes,
            last_returns=list(state.last_returns),
            curve=[list(r) for r in state.curve],
        )
        slots = {
            "env": env.get_state(),
            "last_obs": model._last_obs,
            "last_episode_starts": model._last_episode_starts,
            "slot_returns": state.slot_returns,
        }
        (tmp / _SLOTS).write_bytes(pickle.dumps(slots, protocol=pickle.HIGHEST_PROTOCOL))

    return write_checkpoint_folder(folder, f"{CHECKPOINT_PREFIX}{int(model.num_timesteps)}", write)


def _resume(model: BaseAlgorithm, folder: Path, identity: dict[str, Any]) -> VectorTraining | None:
    """Restore ``model``, its env and the generators from the newest checkpoint in ``folder``, if any."""
    restored = restore_model(model, folder, CHECKPOINT_PREFIX, identity)
    if restored is None:
        return None
    latest, progress, rng = restored
    slots = pickle.loads((latest / _SLOTS).read_bytes())  # the run's own checkpoint (see the module)
    env = model.get_env()
    assert isinstance(env, SlotStates)
    env.set_state(slots["env"])
    model._last_obs = slots["last_obs"]
    model._last_episode_starts = slots["last_episode_starts"]
    set_global_rng_state(rng)
    return VectorTraining(
        curve=[(int(s), str(m), float(v)) for s, m, v in progress["curve"]],
        episodes=int(progress["episodes"]),
        last_returns=deque((float(r) for r in progress["last_returns"]), maxlen=_LAST_RETURNS),
        slot_returns=np.asarray(slots["slot_returns"], dtype=np.float64),
    )


def learn_on_vector(
    model: BaseAlgorithm,
    *,
    total_steps: int,
    identity: dict[str, Any],
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    tb_log_name: str = "vector",
    desc: str = "training",
) -> VectorTraining:
    """Train ``model`` (an SB3 algorithm on arrangement slots) for ``total_steps`` transitions.

    On-policy algorithms round up to whole rollouts of ``n_steps * n_envs`` transitions.

    Args:
        model: The model, built on an adapter (its env): arrangement slots or menu slots.
        total_steps: Transitions to train on (SB3's ``total_timesteps``).
        identity: What defines the training (seed, hyperparameters, env arguments, ...): stored in each
            checkpoint, and a checkpoint of another identity is refused when resuming.
        checkpoint_dir: Where checkpoints go (None: none; on-policy algorithms on an
            :class:`SlotStates` env only). When it holds one already, training resumes from
            the newest.
        checkpoint_every: Transitions between checkpoints (after the update that reaches them); the last
            update is always checkpointed when ``checkpoint_dir`` is given.
        progress: Show a progress bar.
        tb_log_name: TensorBoard run name (when the model logs to TensorBoard).
        desc: The progress bar's label.

    Returns:
        The curve and episode bookkeeping of the whole training (resumed part included).

    Raises:
        ValueError: The newest checkpoint in ``checkpoint_dir`` is of another training.
        TypeError: Checkpoints asked for a model that cannot have them (off-policy, or not on arrangement slots).
    """
    env = model.get_env()
    assert env is not None
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and not (isinstance(model, OnPolicyAlgorithm) and isinstance(env, SlotStates)):
        raise TypeError(
            f"checkpoint_dir: checkpoints are for on-policy algorithms on slots that save their state "
            f"not {type(model).__name__} on {type(env).__name__}"
        )
    resumed = _resume(model, folder, identity) if folder is not None else None
    state = resumed or VectorTraining(slot_returns=np.zeros(env.num_envs))
    bar = tqdm(
        total=total_steps,
        initial=min(model.num_timesteps, total_steps),
        unit="decision",
        desc=desc,
        disable=not progress,
    )

    def save() -> None:
        assert folder is not None
        _save(model, folder, state, identity)

    callback = _Bookkeeping(state, bar, save if folder is not None else None, checkpoint_every)
    with bar:
        if model.num_timesteps >= total_steps:
            return state  # resumed from the final checkpoint: nothing left to do
        # Resumed: SB3 adds num_timesteps to the budget, and keeps the restored observations (no reset).
        model.learn(
            total_timesteps=total_steps - model.num_timesteps,
            callback=callback,
            reset_num_timesteps=resumed is None,
            tb_log_name=tb_log_name,
        )
    if folder is not None:
        save()  # after the last update (no rollout starts after it)
    return state
