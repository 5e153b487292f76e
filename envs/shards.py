"""The slots of ``regsim/ArrangementVec-v0`` split over worker processes, stepped in parallel.

A vector step's cost is the world's (:class:`regsim.vector_world.VectorWorld`), and the world runs on one core.
:class:`SlotShards` gives each of ``workers`` processes one contiguous block of the slots, as its own
:class:`envs.vector.ArrangementVecEnv` (``AutoresetMode.SAME_STEP``, lean infos: what SB3 reads), and steps them
all at once, the way SB3's ``SubprocVecEnv`` steps single envs. Slots are independent episodes, each seeded
``seed + i`` whatever its block, so slot ``i`` of the shards is slot ``i`` of one ``ArrangementVecEnv`` with
the same arguments, bit for bit: the number of workers changes the speed, never the results.

A step is two-phase, so that it stays all-or-nothing as in one env: every worker first checks its block's
actions against the rules (:meth:`envs.vector.ArrangementVecEnv.check_actions`), and only when all pass do
they step. Each reply carries the block's next action masks, so that ``MaskablePPO``'s request for them costs no
round trip.

The workers import only the world and the Gymnasium adapter (no torch), and start with ``forkserver`` where the
platform has it, else ``spawn`` (as SB3's ``SubprocVecEnv``: forking a process that holds torch threads is
unsafe).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from numpy.typing import NDArray

from envs.vector import ArrangementVecEnv

__all__ = ["SlotShards", "StepResult", "block_sizes"]


@dataclass(frozen=True)
class StepResult:
    """One vector step of all slots, in slot order.

    Attributes:
        obs: ``(num_envs, width)`` observations (a finished slot's: its next episode's first).
        rewards: ``(num_envs,)`` rewards.
        terminated: ``(num_envs,)`` episode ended (completed, broken or referred).
        truncated: ``(num_envs,)`` episode cut at the horizon.
        final_obs: ``(num_envs,)`` object array, the last observation of each slot whose episode ended, else
            ``None``.
        masks: ``(num_envs, sum(nvec))`` the action masks of the new decision points.
    """

    obs: NDArray[np.float32]
    rewards: NDArray[np.float64]
    terminated: NDArray[np.bool_]
    truncated: NDArray[np.bool_]
    final_obs: NDArray[Any]
    masks: NDArray[np.bool_]


def block_sizes(num_envs: int, workers: int) -> list[int]:
    """The slots of each worker: ``num_envs`` split into ``workers`` contiguous blocks differing by at most one.

    Raises:
        ValueError: ``workers`` is below 1 or above ``num_envs``.
    """
    if not 1 <= workers <= num_envs:
        raise ValueError(f"workers: must be in [1, num_envs={num_envs}], got {workers}")
    base, extra = divmod(num_envs, workers)
    return [base + (k < extra) for k in range(workers)]


def _step_result(venv: ArrangementVecEnv, actions: NDArray[np.int64]) -> StepResult:
    obs, rewards, terminated, truncated, info = venv.step(actions)
    final = info.get("final_obs", np.full(venv.num_envs, None, dtype=object))
    return StepResult(obs, rewards, terminated, truncated, final, venv.action_masks())


def _serve(remote: Connection, parent_remote: Connection, num_envs: int, kwargs_blob: bytes) -> None:
    """A worker: one ``ArrangementVecEnv`` of ``num_envs`` slots, driven by commands on ``remote``.

    Every command is answered ``("ok", value)`` or ``("error", exception)``; an error leaves the block as it
    was (the env's own contract), so the worker goes on serving.
    """
    parent_remote.close()
    try:
        kwargs = cloudpickle.loads(kwargs_blob)
        venv = ArrangementVecEnv(num_envs, autoreset_mode=AutoresetMode.SAME_STEP, full_info=False, **kwargs)
    except Exception as error:  # reported to the parent, which raises it
        remote.send(("error", error))
        remote.close()
        return
    remote.send(("ok", (venv.single_observation_space, venv.single_action_space, venv.space)))
    while True:
        try:
            command, data = remote.recv()
        except (EOFError, KeyboardInterrupt):  # the parent is gone
            break
        try:
            if command == "reset":
                obs, _ = venv.reset(seed=data)
                reply: Any = (obs, venv.action_masks())
            elif command == "check":
                venv.check_actions(data)
                reply = None
            elif command == "step":
                reply = _step_result(venv, data)
            elif command == "get_state":
                reply = pickle.dumps(venv, protocol=pickle.HIGHEST_PROTOCOL)
            elif command == "set_state":
                venv = _loaded(data, venv)
                reply = venv.action_masks()
            elif command == "close":
                remote.send(("ok", None))
                break
            else:
                raise ValueError(f"command: unknown {command!r}")
        except Exception as error:  # the env's errors (rules, arguments) go back to the caller
            remote.send(("error", error))
        else:
            remote.send(("ok", reply))
    remote.close()


def _loaded(state: bytes, current: ArrangementVecEnv) -> ArrangementVecEnv:
    """An ``ArrangementVecEnv`` from its pickle, checked to be interchangeable with ``current``.

    Raises:
        ValueError: The state is of another kind of env, or of another number of slots or spaces.
    """
    venv = pickle.loads(state)  # the caller's own checkpoint (see SlotShards.get_states)
    if not isinstance(venv, ArrangementVecEnv):
        raise ValueError(f"state: expected a pickled ArrangementVecEnv, got {type(venv).__name__}")
    if venv.num_envs != current.num_envs:
        raise ValueError(f"state: has {venv.num_envs} slots, this env {current.num_envs}")
    same_spaces = venv.single_observation_space == current.single_observation_space
    if not same_spaces or venv.single_action_space != current.single_action_space:
        raise ValueError("state: its observation or action space differs from this env's")
    return venv


class SlotShards:
    """``num_envs`` slots of ``regsim/ArrangementVec-v0`` in ``workers`` processes (see the module docstring).

    Args:
        num_envs: Number of slots.
        workers: Number of worker processes (each holds ``num_envs / workers`` slots, give or take one).
        env_kwargs: Arguments of :class:`envs.vector.ArrangementVecEnv` (``config``, ``reward``, ``months``,
            ``world_seed``, ``invalid_action``); a reward function is sent with ``cloudpickle``.
        start_method: ``multiprocessing`` start method; ``None``: ``forkserver`` where available, else ``spawn``.

    Raises:
        ValueError: ``workers`` is out of range, or a worker could not build its env (the worker's error).
    """

    def __init__(
        self,
        num_envs: int,
        workers: int,
        env_kwargs: dict[str, Any] | None = None,
        start_method: str | None = None,
    ) -> None:
        self.num_envs = int(num_envs)
        self.sizes = block_sizes(self.num_envs, int(workers))
        self.bounds = np.cumsum([0, *self.sizes])
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        blob = cloudpickle.dumps(dict(env_kwargs or {}))
        self._remotes: list[Connection] = []
        self._processes: list[Any] = []
        self._closed = False
        self._waiting = False
        for size in self.sizes:
            remote, work_remote = ctx.Pipe()
            # daemon: a worker never outlives the process that drives it
            # (mypy's BaseContext lacks Process; every concrete context has it)
            process = ctx.Process(  # type: ignore[attr-defined]
                target=_serve, args=(work_remote, remote, size, blob), daemon=True
            )
            process.start()
            work_remote.close()
            self._remotes.append(remote)
            self._processes.append(process)
        try:
            ready = self._gather()
        except BaseException:
            self.close()
            raise
        self.single_observation_space: spaces.Box = ready[0][0]
        self.single_action_space: spaces.MultiDiscrete = ready[0][1]
        self.space = ready[0][2]
        self._masks = np.ones((self.num_envs, self.space.mask_size), dtype=bool)

    @property
    def workers(self) -> int:
        """Number of worker processes."""
        return len(self.sizes)

    # -- commands -------------------------------------------------------------------------------------------
    def reset(self, seeds: list[int | None] | None) -> NDArray[np.float32]:
        """Reset every slot (slot ``i`` with ``seeds[i]``; ``None``: fresh entropy); the first observations."""
        self._require_open()
        if seeds is not None and len(seeds) != self.num_envs:
            raise ValueError(f"seed: expected {self.num_envs} seeds, got {len(seeds)}")
        blocks = [None if seeds is None else list(seeds[a:b]) for a, b in self._blocks()]
        for remote, block in zip(self._remotes, blocks, strict=True):
            remote.send(("reset", block))
        replies = self._gather()
        self._masks = np.concatenate([m for _, m in replies])
        return np.concatenate([o for o, _ in replies])

    def step_async(self, actions: NDArray[np.int64]) -> None:
        """Send each worker its block's actions to check (the step itself follows in :meth:`step_wait`)."""
        self._require_open()
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs, len(self.space.nvec)):
            raise ValueError(f"actions: expected shape {(self.num_envs, len(self.space.nvec))}, got {actions.shape}")
        self._actions = actions
        for remote, (a, b) in zip(self._remotes, self._blocks(), strict=True):
            remote.send(("check", actions[a:b]))
        self._waiting = True

    def step_wait(self) -> StepResult:
        """Step every slot, once every block's actions passed the rules.

        Raises:
            RuleViolation: An action breaks a rule (the first block's error); no slot has stepped.
        """
        if not self._waiting:
            raise RuntimeError("step_wait() without step_async()")
        self._waiting = False
        self._gather()  # raises the first block's rule violation: nothing was stepped
        for remote, (a, b) in zip(self._remotes, self._blocks(), strict=True):
            remote.send(("step", self._actions[a:b]))
        results: list[StepResult] = self._gather()
        self._masks = np.concatenate([r.masks for r in results])
        return StepResult(
            obs=np.concatenate([r.obs for r in results]),
            rewards=np.concatenate([r.rewards for r in results]),
            terminated=np.concatenate([r.terminated for r in results]),
            truncated=np.concatenate([r.truncated for r in results]),
            final_obs=np.concatenate([r.final_obs for r in results]),
            masks=self._masks.copy(),
        )

    def action_masks(self) -> NDArray[np.bool_]:
        """The slots' masks of their current decision points, ``(num_envs, sum(nvec))``."""
        return self._masks.copy()

    def get_states(self) -> list[bytes]:
        """Each block's whole state (its ``ArrangementVecEnv``, pickled), in block order."""
        self._require_open()
        for remote in self._remotes:
            remote.send(("get_state", None))
        return list(self._gather())

    def set_states(self, states: list[bytes]) -> None:
        """Continue from :meth:`get_states` of shards with the same blocks.

        Raises:
            ValueError: Another number of blocks, or a block's state does not fit (its worker's error).
        """
        self._require_open()
        if len(states) != self.workers:
            raise ValueError(f"state: has {len(states)} worker blocks, this env {self.workers} (workers)")
        for remote, state in zip(self._remotes, states, strict=True):
            remote.send(("set_state", state))
        self._masks = np.concatenate(self._gather())

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for remote in self._remotes:
            with contextlib.suppress(BrokenPipeError, OSError):  # already gone
                remote.send(("close", None))
        for remote in self._remotes:
            with contextlib.suppress(EOFError, OSError):
                remote.recv()
            remote.close()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()

    # -- helpers --------------------------------------------------------------------------------------------
    def _blocks(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError("the env is closed")

    def _gather(self) -> list[Any]:
        """Every worker's reply, in block order; raises the first error after all have answered."""
        self._require_open()
        replies = []
        for remote in self._remotes:
            try:
                replies.append(remote.recv())
            except EOFError as error:
                raise RuntimeError("a worker process died; see its stderr") from error
        for status, value in replies:
            if status == "error":
                raise value
        return [value for _, value in replies]
