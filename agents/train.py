"""Training SB3 policies on the MDP of ``regsim/Arrangement-v0`` and writing them as artifacts.

:func:`train_policy` is the one entry point: build the env (by default PPO and MaskablePPO step ``n_envs`` slots
of ``regsim/ArrangementVec-v0``; see its ``rollouts``), train (seeded, on one CPU thread), wrap the
trained network as a :class:`~regsim.decision.Policy` (:mod:`agents.sb3`), evaluate it briefly by simulating
a population with it (the same path evaluation and serving use), and write the artifact folder.

Layout of ``out``::

    out/policy/          the artifact (manifest.json, network.json, weights.pt): load with agents.artifact.load_policy
    out/tb/<algorithm>_1 TensorBoard logs (when tensorboard=True)
    out/checkpoint.zip   SB3's own save, to resume training only (never loaded for serving: it unpickles code)
    out/learning_curve.parquet   (step, metric, value) rows: reward per decision, episode return, check-run KPIs
    <checkpoint_dir>/    resumable checkpoints, when asked for (see train_policy's checkpoint_dir)

Reproducibility: the same seed, config and arguments give identical weights and decisions. ``seed`` seeds
SB3 (Python, NumPy and torch generators, the env's debtor draws, slot ``i`` of a vector env with ``seed + i``,
the action space); training runs with one
torch thread, ``torch.use_deterministic_algorithms(True)`` and ``device="cpu"``, and the previous torch
settings are restored afterwards.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from tqdm.auto import tqdm

from agents.online import write_checkpoint_folder, write_curve
from agents.population_rollouts import PopulationProgress, PopulationRollout, learn_on_population
from agents.sb3 import DEFAULT_DQN_PARTS, POLICIES, FlatActionWrapper
from agents.sb3_checkpoint import restore_model, write_model_files
from agents.vector_training import learn_on_vector
from envs.arrangement import ArrangementEnv
from envs.rewards import REWARDS
from envs.sb3_vec import ArrangementSB3VecEnv
from regsim.config import WorldConfig
from regsim.simulate import simulate

__all__ = [
    "DEFAULT_ALGO_KWARGS",
    "DEFAULT_N_ENVS",
    "ROLLOUTS",
    "TqdmProgress",
    "deterministic_torch",
    "train_policy",
]

#: Hyperparameters used unless ``algo_kwargs`` overrides them (``policy_kwargs`` is merged key by key).
#: Episodes of the default world are short (about 17 decisions), so PPO's rollouts span ~30 episodes.
_PPO_KWARGS: dict[str, Any] = {
    "n_steps": 512,
    "batch_size": 128,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "ent_coef": 0.01,
    "policy_kwargs": {"net_arch": [64, 64]},
}
DEFAULT_ALGO_KWARGS: dict[str, dict[str, Any]] = {
    # PPO and MaskablePPO share their defaults, so the two differ only in the masking.
    "ppo": _PPO_KWARGS,
    "maskable-ppo": _PPO_KWARGS,
    "dqn": {
        "learning_rate": 1e-3,
        "buffer_size": 50_000,
        "learning_starts": 500,
        "batch_size": 64,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 500,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.05,
        "gamma": 0.99,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
}

#: Where PPO and MaskablePPO collect their rollouts (``rollouts`` of :func:`train_policy`); DQN steps the env.
ROLLOUTS = ("vector", "population", "env")

#: Slots of ``regsim/ArrangementVec-v0`` that vector rollouts step together. The vector env's cost per
#: transition falls with the number of slots (a fixed cost per vector step is shared): at 2,048 slots a transition
#: costs about three quarters of what it costs at 1,024 (benchmarks/bench_env.py), for the same minibatches.
DEFAULT_N_ENVS = 2048

#: PPO's ``n_steps`` on vector rollouts (per slot, as in SB3): 8 x 2,048 slots = 16,384 transitions per update.
VECTOR_N_STEPS = 8

#: Slots per worker process when ``workers`` is not given. A vector step has a large fixed cost, so halving a
#: block saves far less than half its time: on two cores, 2 x 512 slots step 1.2x as fast as 1,024 in one process,
#: 2 x 2,048 1.5x as fast as 4,096, and a worker takes about a second to start (benchmarks/bench_env.py).
SLOTS_PER_WORKER = 2048


def default_workers(n_envs: int) -> int:
    """Worker processes for ``n_envs`` vector slots: one per :data:`SLOTS_PER_WORKER` slots, at most one per core.

    The number of workers changes the speed only: slot ``i`` gives the same transitions in any of them.
    """
    return max(1, min(os.cpu_count() or 1, n_envs // SLOTS_PER_WORKER))


# ArrangementEnv arguments the caller may set; config and invalid_action are set here.
_ENV_KWARGS = ("reward", "months", "world_seed")


class TqdmProgress(BaseCallback):
    """A tqdm progress bar over the training steps (SB3's own bar needs ``rich``, which may be absent)."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total
        self.bar: Any = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, unit="step", desc="training", dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """One torch thread, deterministic algorithms and ``torch.manual_seed(seed)``; restored on exit."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    # Nested dicts are copied too: the defaults are shared and SB3 keeps (and may extend) what it is given.
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in defaults.items()}
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _episode_curve(returns: Sequence[float], lengths: Sequence[int], window: int) -> list[tuple[int, str, float]]:
    """Curve rows from completed episodes, grouped into windows of about ``window`` steps (the last one partial)."""
    rows: list[tuple[int, str, float]] = []
    done, reward_sum, steps_in, episodes = 0, 0.0, 0, []
    for ret, length in zip(returns, lengths, strict=True):
        done += int(length)
        reward_sum += float(ret)
        steps_in += int(length)
        episodes.append(float(ret))
        if steps_in >= window:
            rows += [
                (done, "reward_per_decision", reward_sum / steps_in),
                (done, "rollout/ep_rew_mean", float(np.mean(episodes))),
            ]
            reward_sum, steps_in, episodes = 0.0, 0, []
    if steps_in:
        rows += [
            (done, "reward_per_decision", reward_sum / steps_in),
            (done, "rollout/ep_rew_mean", float(np.mean(episodes))),
        ]
    return rows


_CKPT_PREFIX = "mppo-"


def _checkpoint(
    model: MaskablePPO,
    folder: Path,
    state: PopulationProgress,
    identity: dict[str, Any],
    curve: list[tuple[int, str, float]],
    returns: list[float],
) -> Path:
    """Write a checkpoint of population training after an update, atomically, to ``folder/mppo-<decisions>``.

    It holds SB3's save of the model (weights and optimizer state; ``num_timesteps`` and ``_n_updates`` are
    also in ``progress.json``), the :class:`PopulationProgress`, the curve and returns so far, and the global
    generators (``rng.json``), which is everything :func:`agents.population_rollouts.learn_on_population`
    needs to continue exactly.
    """

    def write(tmp: Path) -> None:
        write_model_files(model, tmp, identity, state=vars(state), curve=[list(r) for r in curve], returns=returns)

    return write_checkpoint_folder(folder, f"{_CKPT_PREFIX}{int(model.num_timesteps)}", write)


def _resume(
    model: MaskablePPO,
    folder: Path | None,
    identity: dict[str, Any],
    curve: list[tuple[int, str, float]],
    returns: list[float],
) -> tuple[PopulationProgress, dict[str, Any]] | None:
    """Restore ``model`` (and fill ``curve`` and ``returns``) from the newest checkpoint in ``folder``, if any."""
    restored = restore_model(model, Path(folder), _CKPT_PREFIX, identity) if folder is not None else None
    if restored is None:
        return None
    _, progress, rng = restored
    curve.extend((int(s), str(m), float(v)) for s, m, v in progress["curve"])
    returns.extend(float(r) for r in progress["returns"])
    return PopulationProgress(**progress["state"]), rng


#: Population rollouts train on debtors with ids from here on: far above any evaluation's arrangement ids.
TRAINING_FIRST_ID = 1_000_000_000


def train_policy(
    algorithm: str,
    *,
    config: WorldConfig,
    steps: int,
    seed: int,
    out: Path,
    env_kwargs: dict[str, Any] | None = None,
    algo_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    action_parts: Sequence[str] | None = None,
    eval_arrangements: int = 500,
    rollouts: str | None = None,
    n_envs: int | None = None,
    workers: int | None = None,
    arrangements_per_rollout: int | None = None,
    reward_kwargs: dict[str, float] | None = None,
    tensorboard_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
) -> Path:
    """Train an SB3 policy on ``regsim/Arrangement-v0``'s MDP and write it as an artifact.

    Args:
        algorithm: ``"ppo"``, ``"maskable-ppo"`` or ``"dqn"`` (the keys of :data:`agents.sb3.POLICIES`).
            PPO and DQN train on ``invalid_action="fallback"`` (masked parts replaced by the lowest allowed
            option); MaskablePPO trains with the env's action masks on ``invalid_action="raise"`` (a masked
            action would be a bug). DQN trains on :class:`agents.sb3.FlatActionWrapper`.
        config: The world.
        steps: Environment steps to train for (PPO rounds up to whole rollouts of ``n_steps``).
        seed: Seeds everything; recorded in the manifest.
        out: Output folder (created); the artifact goes to ``out/policy``, which must not exist yet.
        env_kwargs: Further :class:`envs.arrangement.ArrangementEnv` arguments: ``reward``, ``months``,
            ``world_seed``.
        algo_kwargs: SB3 constructor arguments overriding :data:`DEFAULT_ALGO_KWARGS` (``policy_kwargs`` may
            set ``net_arch`` and ``activation_fn``; the network must stay an MLP).
        progress: Show a progress bar (SB3's when ``rich`` is installed, else :class:`TqdmProgress`).
        tensorboard: Write TensorBoard logs under ``out/tb``.
        action_parts: DQN only: the parts of the flattened action (default :data:`agents.sb3.DEFAULT_DQN_PARTS`).
        eval_arrangements: Arrangements in the evaluation run (the world's seed, the env's horizon); its KPIs
            go to the manifest's ``metrics["eval"]``. 0 skips it.
        rollouts: Where the transitions come from (one of :data:`ROLLOUTS`). ``"vector"`` (default for PPO
            and MaskablePPO): ``n_envs`` slots of ``regsim/ArrangementVec-v0`` stepped together through
            :class:`envs.sb3_vec.ArrangementSB3VecEnv` (:mod:`agents.vector_training`; ``n_steps`` is per
            slot, default :data:`VECTOR_N_STEPS`). ``"population"`` (MaskablePPO only): each rollout is a
            whole-population run (:mod:`agents.population_rollouts`: the same MDP, except that the debtors
            share collectors, lines and the print room; debtors with ids from :data:`TRAINING_FIRST_ID` on).
            ``"env"`` (DQN's only choice): one ``regsim/Arrangement-v0`` stepped by SB3.
        n_envs: Slots of vector rollouts (default :data:`DEFAULT_N_ENVS`); only with ``rollouts="vector"``.
        workers: Processes the vector slots are split over (:class:`envs.shards.SlotShards`; default
            :func:`default_workers`); only with ``rollouts="vector"``. Changes the speed only, never the result;
            a checkpoint resumes with the same number.
        arrangements_per_rollout: Episodes per population rollout (default: about ``n_steps`` decisions each).
        reward_kwargs: Keyword arguments of the named reward function (``env_kwargs["reward"]``), e.g.
            ``{"cost_weight": 5.0}``; recorded in the manifest.
        tensorboard_dir: Where TensorBoard logs go (default ``out/tb``).
        checkpoint_dir: Where resumable checkpoints go (None: none). Vector and population rollouts write one
            after an update whenever ``checkpoint_every`` decisions were used since the last one, and after the
            last update; when the folder holds one already, training resumes from the newest and ends exactly
            where an uninterrupted training would have (:mod:`agents.vector_training`, :func:`_checkpoint`).
            ``rollouts="env"`` steps an env whose open episode is not saved: it writes the final model there
            and, resumed, trains again from the start (same seed, same result).
        checkpoint_every: Decisions between checkpoints (default: after the last update only).

    Also writes ``out/learning_curve.parquet``: columns ``step`` (int64, decisions trained on so far),
    ``metric`` (string) and ``value`` (float64), with ``reward_per_decision`` (mean step reward) and
    ``rollout/ep_rew_mean`` per rollout (vector, population) or per window of ``n_steps`` (PPO) / 1,000 (DQN)
    steps of completed episodes (env), and ``eval/<kpi>`` of the check run.

    Returns:
        The artifact folder ``out/policy``.

    Raises:
        ValueError: Unknown algorithm, a non-positive ``steps``, a negative seed, or an env argument that is
            not allowed here (each named with what is allowed).
        FileExistsError: ``out/policy`` exists already.
    """
    if algorithm not in POLICIES:
        raise ValueError(f"algorithm: unknown {algorithm!r}; allowed: {sorted(POLICIES)}")
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    if seed < 0:
        raise ValueError(f"seed: must be >= 0, got {seed}")
    if eval_arrangements < 0:
        raise ValueError(f"eval_arrangements: must be >= 0, got {eval_arrangements}")
    env_kwargs = dict(env_kwargs or {})
    bad = sorted(set(env_kwargs) - set(_ENV_KWARGS))
    if bad:
        raise ValueError(f"env_kwargs: not allowed {bad}; allowed: {list(_ENV_KWARGS)}")
    rollouts = rollouts if rollouts is not None else ("env" if algorithm == "dqn" else "vector")
    if rollouts not in ROLLOUTS:
        raise ValueError(f"rollouts: unknown {rollouts!r}; allowed: {list(ROLLOUTS)}")
    if algorithm == "dqn" and rollouts != "env":
        raise ValueError(f"rollouts: dqn trains on 'env' only, got {rollouts!r}")
    if rollouts == "population" and algorithm != "maskable-ppo":
        raise ValueError(f"rollouts: 'population' is for maskable-ppo only, not {algorithm!r}; allowed: vector, env")
    population, vector = rollouts == "population", rollouts == "vector"
    if n_envs is not None and not vector:
        raise ValueError(f"n_envs: applies to rollouts 'vector' only, not {rollouts!r}")
    n_envs = int(n_envs if n_envs is not None else DEFAULT_N_ENVS)
    if n_envs < 1:
        raise ValueError(f"n_envs: must be >= 1, got {n_envs}")
    if workers is not None and not vector:
        raise ValueError(f"workers: applies to rollouts 'vector' only, not {rollouts!r}")
    workers = int(workers if workers is not None else default_workers(n_envs))
    if not 1 <= workers <= n_envs:
        raise ValueError(f"workers: must be in [1, n_envs={n_envs}], got {workers}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be >= 1, got {checkpoint_every}")
    if arrangements_per_rollout is not None and arrangements_per_rollout < 1:
        raise ValueError(f"arrangements_per_rollout: must be >= 1, got {arrangements_per_rollout}")
    if action_parts is not None and algorithm != "dqn":
        raise ValueError(f"action_parts: applies to dqn only, not {algorithm!r}")
    parts = tuple(action_parts or DEFAULT_DQN_PARTS)
    defaults = DEFAULT_ALGO_KWARGS[algorithm]
    if vector:
        defaults = {**defaults, "n_steps": VECTOR_N_STEPS}
    kwargs = _merge(defaults, dict(algo_kwargs or {}))
    for reserved in ("env", "policy", "seed", "device", "tensorboard_log", "verbose"):
        if reserved in kwargs:
            raise ValueError(f"algo_kwargs: {reserved!r} is set by train_policy")
    if tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError("tensorboard=True needs the tensorboard package (pip install 'regsim[rl]')")

    out = Path(out)
    folder = out / "policy"
    if folder.exists():
        raise FileExistsError(f"{folder} exists; train into a new out folder")
    out.mkdir(parents=True, exist_ok=True)
    cls = POLICIES[algorithm]
    reward_name = env_kwargs.get("reward", "collected")
    if reward_kwargs:
        if not isinstance(reward_name, str) or reward_name not in REWARDS:
            raise ValueError(f"reward_kwargs: need a reward name in {sorted(REWARDS)}, got {reward_name!r}")
        env_kwargs["reward"] = functools.partial(REWARDS[reward_name], **reward_kwargs)
    tb_dir = Path(tensorboard_dir) if tensorboard_dir is not None else out / "tb"
    curve: list[tuple[int, str, float]] = []

    with deterministic_torch(seed):
        base = ArrangementEnv(
            config=config,
            invalid_action="raise" if algorithm == "maskable-ppo" else "fallback",
            **env_kwargs,
        )
        env: Any = FlatActionWrapper(base, parts) if algorithm == "dqn" else base
        monitor = Monitor(env)
        slots = (
            ArrangementSB3VecEnv(
                n_envs, workers=workers, config=config, invalid_action=base.invalid_action, **env_kwargs
            )
            if vector
            else None
        )
        model = cls.model_class(
            "MlpPolicy",
            slots if slots is not None else monitor,
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(tb_dir) if tensorboard else None,
            **kwargs,
        )
        rich = importlib.util.find_spec("rich") is not None
        callback = TqdmProgress(steps) if progress and not rich else None
        start = time.perf_counter()
        rollout_returns: list[float] = []
        episodes: int | None = None
        # What a checkpoint must have been written by to be resumed here.
        identity = {
            "steps": steps,
            "seed": seed,
            "algo_kwargs": repr(kwargs),
            "reward": reward_name if isinstance(reward_name, str) else repr(reward_name),
            "reward_kwargs": dict(reward_kwargs or {}),
            "months": base.months,
            "world_seed": base.world_seed,
        }
        if vector:
            assert slots is not None
            try:
                vector_training = learn_on_vector(
                    model,
                    total_steps=steps,
                    identity={**identity, "algorithm": algorithm, "n_envs": n_envs},
                    checkpoint_dir=checkpoint_dir,
                    checkpoint_every=checkpoint_every,
                    progress=progress,
                    tb_log_name=algorithm,
                    desc=f"{algorithm} (vector)",
                )
            finally:
                slots.close()  # (stops the worker processes)
            curve.extend(vector_training.curve)
            rollout_returns, episodes = list(vector_training.last_returns), vector_training.episodes
        elif population:
            assert isinstance(model, MaskablePPO)
            identity["arrangements_per_rollout"] = arrangements_per_rollout
            resume = _resume(model, checkpoint_dir, identity, curve, rollout_returns)
            bar = tqdm(
                total=steps,
                initial=min(model.num_timesteps, steps),
                unit="decision",
                disable=not progress,
                desc=f"{algorithm} (population)",
            )
            last_saved = [model.num_timesteps]

            def advance(done: int, rollout: PopulationRollout) -> None:
                rollout_returns.append(float(rollout.episode_returns.mean()))
                curve.append((done, "reward_per_decision", float(rollout.rewards.mean())))
                curve.append((done, "rollout/ep_rew_mean", rollout_returns[-1]))
                bar.update(min(done, steps) - bar.n)

            def save(state: PopulationProgress) -> None:
                due = checkpoint_every is not None and model.num_timesteps - last_saved[0] >= checkpoint_every
                if checkpoint_dir is not None and (due or model.num_timesteps >= steps):
                    _checkpoint(model, Path(checkpoint_dir), state, identity, curve, rollout_returns)
                    last_saved[0] = model.num_timesteps

            learn_on_population(
                model,
                config,
                total_decisions=steps,
                arrangements_per_rollout=arrangements_per_rollout,
                months=base.months,
                seed=base.world_seed,
                reward=env_kwargs.get("reward", "collected"),
                first_id=TRAINING_FIRST_ID,
                progress=advance,
                resume=resume,
                on_update=save,
            )
            bar.close()
        else:
            model.learn(total_timesteps=steps, callback=callback, tb_log_name=algorithm, progress_bar=progress and rich)
            window = int(kwargs["n_steps"]) if "n_steps" in kwargs else 1000
            curve.extend(_episode_curve(monitor.get_episode_rewards(), monitor.get_episode_lengths(), window))
            if checkpoint_dir is not None:
                Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
                model.save(Path(checkpoint_dir) / "final.zip")
        seconds = time.perf_counter() - start
        model.save(out / "checkpoint.zip")

        policy = cls.from_model(model, space=base.space, action_parts=parts if algorithm == "dqn" else None)
        returns = np.asarray(
            rollout_returns if population or vector else monitor.get_episode_rewards(), dtype=np.float64
        )
        metrics: dict[str, Any] = {
            "trained_steps": int(model.num_timesteps),
            "train_seconds": seconds,
            "train_episodes": episodes if episodes is not None else len(returns),
            "train_return_last_100": float(returns[-100:].mean()) if len(returns) else None,
        }
        if eval_arrangements:
            result = simulate(config, policy, arrangements=eval_arrangements, months=base.months, seed=base.world_seed)
            metrics["eval"] = {
                "arrangements": eval_arrangements,
                "months": base.months,
                "seed": base.world_seed,
                **result.kpis,
            }
            curve.extend((int(model.num_timesteps), f"eval/{k}", float(v)) for k, v in result.kpis.items())
    write_curve(curve, out / "learning_curve.parquet")
    training = {
        "env_id": "regsim/Arrangement-v0",
        "algorithm": algorithm,
        "sb3_class": cls.model_class.__name__,
        "steps": steps,
        "seed": seed,
        "rollouts": rollouts,
        "n_envs": n_envs if vector else None,
        "workers": workers if vector else None,
        "arrangements_per_rollout": arrangements_per_rollout if population else None,
        "env_kwargs": {**env_kwargs, "reward": reward_name, "invalid_action": base.invalid_action},
        "reward_kwargs": dict(reward_kwargs or {}),
        "algo_kwargs": kwargs,
        "action_parts": list(parts) if algorithm == "dqn" else None,
        "torch_threads": 1,
        "world_config": config.model_dump(mode="json"),
    }
    return policy.save(folder, rules_version=config.rules.version, training=training, metrics=metrics)
