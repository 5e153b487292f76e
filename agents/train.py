"""Training SB3 policies on the MDP of ``regsim/Arrangement-v0`` and writing them as artifacts.

:func:`train_policy` is the one entry point, and every algorithm trains the same way: SB3's own ``learn()`` on
an SB3 ``VecEnv`` of ``n_envs`` slots of ``regsim/ArrangementVec-v0`` (:class:`envs.sb3_vec.ArrangementSB3VecEnv`;
DQN through :class:`agents.flat_actions.FlatActionVecEnv`), driven by :func:`agents.vector_training.learn_on_vector`
(learning curve, progress, exact checkpoints). With ``decision="menu"`` MaskablePPO learns the self-service menu
instead, on :class:`envs.sb3_menu_vec.SelfServiceSB3VecEnv` (``regsim/SelfServiceVec-v0``, the arrangement
decisions answered by :data:`MENU_BASE`), through the same loop. The trained network is wrapped as a
:class:`~regsim.decision.Policy` (:mod:`agents.sb3`; a menu network as :class:`agents.sb3_menu.SB3MenuPolicy`),
evaluated briefly by simulating a population with it (the
same path evaluation and serving use), and written as an artifact.

Layout of ``out``::

    out/policy/          the artifact (manifest.json, network.json, weights.pt): load with agents.artifact.load_policy
    out/tb/<algorithm>_1 TensorBoard logs (when tensorboard=True)
    out/learning_curve.parquet   (step, metric, value) rows: reward per decision, episode return, check-run KPIs
    <checkpoint_dir>/    resumable checkpoints, when asked for (see train_policy's checkpoint_dir)

Reproducibility: the same seed, config and arguments give identical weights and decisions. ``seed`` seeds
SB3 (Python, NumPy and torch generators, slot ``i`` of the vector env with ``seed + i``, the action space);
training runs with one torch thread, ``torch.use_deterministic_algorithms(True)`` and ``device="cpu"``, and the
previous torch settings and generator state are restored afterwards.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from agents.flat_actions import DEFAULT_DQN_PARTS, FlatActionVecEnv
from agents.online import write_curve
from agents.sb3 import POLICIES
from agents.vector_training import learn_on_vector
from envs.sb3_menu_vec import SelfServiceSB3VecEnv
from envs.sb3_vec import ArrangementSB3VecEnv
from envs.self_service_vec import SUMMED_REWARDS
from regsim.config import WorldConfig
from regsim.rewards import REWARDS
from regsim.runoff import covering_months
from regsim.simulate import simulate

__all__ = [
    "DECISIONS",
    "DEFAULT_ALGO_KWARGS",
    "DEFAULT_MENU_N_ENVS",
    "DEFAULT_N_ENVS",
    "MENU_BASE",
    "deterministic_torch",
    "train_policy",
]

#: Hyperparameters used unless ``algo_kwargs`` overrides them (``policy_kwargs`` is merged key by key).
#: ``n_steps`` is per slot (SB3's meaning): 8 x 2,048 slots = 16,384 transitions per update.
_PPO_KWARGS: dict[str, Any] = {
    "n_steps": 8,
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
    # DQN steps few slots: one gradient step per four transitions (train_freq counts vector steps in SB3, and
    # target_update_interval transitions).
    "dqn": {
        "learning_rate": 1e-3,
        "buffer_size": 50_000,
        "learning_starts": 500,
        "batch_size": 64,
        "train_freq": 1,
        "gradient_steps": 4,
        "target_update_interval": 500,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.05,
        "gamma": 0.99,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
}

#: Slots of ``regsim/ArrangementVec-v0`` stepped together, per algorithm. The vector env's cost per transition
#: falls with the number of slots (a fixed cost per vector step is shared): at 2,048 slots a transition costs
#: about three quarters of what it costs at 1,024 (benchmarks/bench_env.py), for the same minibatches. DQN
#: learns after every vector step, so it steps few slots.
DEFAULT_N_ENVS: dict[str, int] = {"ppo": 2048, "maskable-ppo": 2048, "dqn": 16}

#: The decisions a network can learn: the arrangement's (``regsim/ArrangementVec-v0``) or the self-service
#: menu's (``regsim/SelfServiceVec-v0``, MaskablePPO only).
DECISIONS: tuple[str, ...] = ("arrangement", "menu")
#: Slots of ``regsim/SelfServiceVec-v0`` stepped together by default: a menu step spans some fifty of the
#: arrangement's own decision points (benchmarks/bench_env.py: about 215 menu steps a second at 256 slots).
DEFAULT_MENU_N_ENVS = 256
#: The policy that answers the arrangement decisions while a menu network trains (and after, as its base).
MENU_BASE = "static-dunning"

#: Slots per worker process when ``workers`` is not given. A vector step has a large fixed cost, so halving a
#: block saves far less than half its time: on two cores, 2 x 512 slots step 1.2x as fast as 1,024 in one process,
#: 2 x 2,048 1.5x as fast as 4,096, and a worker takes about a second to start (benchmarks/bench_env.py).
SLOTS_PER_WORKER = 2048

# Vector env arguments the caller may set; config and invalid_action are set here.
_ENV_KWARGS = ("reward", "months", "world_seed")


def default_workers(n_envs: int) -> int:
    """Worker processes for ``n_envs`` vector slots: one per :data:`SLOTS_PER_WORKER` slots, at most one per core.

    The number of workers changes the speed only: slot ``i`` gives the same transitions in any of them.
    """
    return max(1, min(os.cpu_count() or 1, n_envs // SLOTS_PER_WORKER))


@contextmanager
def deterministic_torch(seed: int) -> Iterator[None]:
    """One torch thread, deterministic algorithms and ``torch.manual_seed(seed)``; all restored on exit."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    generator = torch.get_rng_state()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(generator)


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    # Nested dicts are copied too: the defaults are shared and SB3 keeps (and may extend) what it is given.
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in defaults.items()}
    for key, value in overrides.items():
        if key == "policy_kwargs" and isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def _check_decision(decision: str, algorithm: str, config: WorldConfig, reward: Any, workers: int | None) -> bool:
    """Whether the training is of the menu decision; what that needs, each refused with what is allowed."""
    if decision not in DECISIONS:
        raise ValueError(f"decision: unknown {decision!r}; allowed: {list(DECISIONS)}")
    if decision == "arrangement":
        return False
    if algorithm != "maskable-ppo":
        raise ValueError(f"decision: 'menu' is learned by 'maskable-ppo' only, not {algorithm!r}")
    if not config.self_service.enabled:
        raise ValueError("decision: 'menu' needs a world with self_service.enabled: true (no menus otherwise)")
    if reward not in SUMMED_REWARDS:
        raise ValueError(f"env_kwargs.reward: a menu step takes one of {list(SUMMED_REWARDS)}, not {reward!r}")
    if workers not in (None, 1):
        raise ValueError(f"workers: the menu slots run in one process; allowed: 1, got {workers}")
    return True


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
    n_envs: int | None = None,
    workers: int | None = None,
    reward_kwargs: dict[str, float] | None = None,
    tensorboard_dir: Path | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    decision: str = "arrangement",
) -> Path:
    """Train an SB3 policy on ``regsim/Arrangement-v0``'s MDP (or the menu's) and write it as an artifact.

    Args:
        algorithm: ``"ppo"``, ``"maskable-ppo"`` or ``"dqn"`` (the keys of :data:`agents.sb3.POLICIES`).
            PPO and DQN train on ``invalid_action="fallback"`` (masked parts replaced by the lowest allowed
            option); MaskablePPO trains with the env's action masks on ``invalid_action="raise"`` (a masked
            action would be a bug). DQN chooses a flattened action (:class:`agents.flat_actions.FlatActions`).
        config: The world.
        steps: Transitions to train on (SB3's ``total_timesteps``; PPO rounds up to whole rollouts of
            ``n_steps * n_envs``).
        seed: Seeds everything; recorded in the manifest.
        out: Output folder (created); the artifact goes to ``out/policy``, which must not exist yet.
        env_kwargs: Further env arguments: ``reward`` (a name of :data:`regsim.rewards.REWARDS`, or a reward
            function of outcome columns), ``months``, ``world_seed``.
        algo_kwargs: SB3 constructor arguments overriding :data:`DEFAULT_ALGO_KWARGS` (``policy_kwargs`` may
            set ``net_arch`` and ``activation_fn``; the network must stay an MLP).
        progress: Show a progress bar.
        tensorboard: Write TensorBoard logs under ``out/tb``.
        action_parts: DQN only: the parts of the flattened action (default
            :data:`agents.flat_actions.DEFAULT_DQN_PARTS`).
        eval_arrangements: Arrangements in the evaluation run (the world's seed, the env's horizon); its KPIs
            go to the manifest's ``metrics["eval"]``. 0 skips it.
        n_envs: Slots of the vector env (default :data:`DEFAULT_N_ENVS` of the algorithm).
        workers: Processes the slots are split over (:class:`envs.shards.SlotShards`; default
            :func:`default_workers`). Changes the speed only, never the result; a checkpoint resumes with the
            same number.
        reward_kwargs: Keyword arguments of the named reward, e.g. ``{"cost_weight": 5.0}``; recorded in the
            manifest.
        tensorboard_dir: Where TensorBoard logs go (default ``out/tb``).
        checkpoint_dir: Where resumable checkpoints go (None: none). PPO and MaskablePPO write one after an
            update whenever ``checkpoint_every`` transitions were used since the last one, and after the last
            update; when the folder holds one already, training resumes from the newest and ends exactly where an
            uninterrupted training would have (:mod:`agents.vector_training`). DQN writes none (its replay buffer
            is not saved): resumed, it trains again from the start, with the same result.
        checkpoint_every: Transitions between checkpoints (default: after the last update only).
        decision: ``"arrangement"`` (the default) or ``"menu"``: MaskablePPO on the self-service menu
            (``regsim/SelfServiceVec-v0``; the world must have ``self_service.enabled``; a reward of
            :data:`envs.self_service_vec.SUMMED_REWARDS`; one process; ``n_envs`` default
            :data:`DEFAULT_MENU_N_ENVS`); the artifact is an :class:`agents.sb3_menu.SB3MenuPolicy` on
            :data:`MENU_BASE`. Transitions are then menu points.

    Also writes ``out/learning_curve.parquet``: columns ``step`` (int64, transitions trained on so far),
    ``metric`` (string) and ``value`` (float64), with ``reward_per_decision`` (mean step reward) and
    ``rollout/ep_rew_mean`` per rollout, and ``eval/<kpi>`` of the check run.

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
    reward = env_kwargs.get("reward", "runoff_value")  # (the envs' default: the run-off verdict's objective)
    if not (callable(reward) or (isinstance(reward, str) and reward in REWARDS)):
        raise ValueError(f"env_kwargs.reward: unknown reward {reward!r}; allowed: {sorted(REWARDS)} or a function")
    reward_name = reward if isinstance(reward, str) else getattr(reward, "__qualname__", repr(reward))
    menu = _check_decision(decision, algorithm, config, reward, workers)
    n_envs = int(n_envs if n_envs is not None else DEFAULT_MENU_N_ENVS if menu else DEFAULT_N_ENVS[algorithm])
    if n_envs < 1:
        raise ValueError(f"n_envs: must be >= 1, got {n_envs}")
    workers = int(workers if workers is not None else 1 if menu else default_workers(n_envs))
    if not 1 <= workers <= n_envs:
        raise ValueError(f"workers: must be in [1, n_envs={n_envs}], got {workers}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every: must be >= 1, got {checkpoint_every}")
    if action_parts is not None and algorithm != "dqn":
        raise ValueError(f"action_parts: applies to dqn only, not {algorithm!r}")
    parts = tuple(action_parts or DEFAULT_DQN_PARTS)
    kwargs = _merge(DEFAULT_ALGO_KWARGS[algorithm], dict(algo_kwargs or {}))
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
    # No months: episodes run off (a horizon that holds every arrangement's cap), and so does the check run.
    fixed_months = env_kwargs.get("months")
    months = int(fixed_months) if fixed_months else covering_months(config)
    world_seed = int(env_kwargs.get("world_seed", config.simulation.seed))
    invalid_action = "raise" if algorithm == "maskable-ppo" else "fallback"
    tb_dir = Path(tensorboard_dir) if tensorboard_dir is not None else out / "tb"

    with deterministic_torch(seed):
        slots: ArrangementSB3VecEnv | SelfServiceSB3VecEnv
        if menu:
            slots = SelfServiceSB3VecEnv(
                n_envs,
                config=config,
                base_policy=MENU_BASE,
                reward=reward,
                reward_kwargs=reward_kwargs,
                months=months,
                world_seed=world_seed,
            )
        else:
            slots = ArrangementSB3VecEnv(
                n_envs,
                workers=workers,
                config=config,
                invalid_action=invalid_action,
                reward=reward,
                reward_kwargs=reward_kwargs,
                months=months,
                world_seed=world_seed,
            )
        env: VecEnv = FlatActionVecEnv(slots, parts) if algorithm == "dqn" else slots
        model = cls.model_class(
            "MlpPolicy",
            env,
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(tb_dir) if tensorboard else None,
            **kwargs,
        )
        # What a checkpoint must have been written by to be resumed here.
        identity = {
            "algorithm": algorithm,
            "steps": steps,
            "seed": seed,
            "algo_kwargs": repr(kwargs),
            "reward": reward_name,
            "reward_kwargs": dict(reward_kwargs or {}),
            "months": months,
            "world_seed": world_seed,
            "n_envs": n_envs,
            **({"decision": decision} if menu else {}),
        }
        start = time.perf_counter()
        try:
            training = learn_on_vector(
                model,
                total_steps=steps,
                identity=identity,
                checkpoint_dir=checkpoint_dir if algorithm != "dqn" else None,
                checkpoint_every=checkpoint_every,
                progress=progress,
                tb_log_name=algorithm,
                desc=f"{algorithm} (vector)",
            )
        finally:
            env.close()  # (stops the worker processes)
        seconds = time.perf_counter() - start
        curve = list(training.curve)
        policy: Any
        if isinstance(slots, SelfServiceSB3VecEnv):
            from agents.sb3_menu import SB3MenuPolicy  # (imports the menu env's observations)

            policy = SB3MenuPolicy.from_model(model, menu_space=slots.menu_space, base=MENU_BASE)
        else:
            policy = cls.from_model(model, space=slots.space, action_parts=parts if algorithm == "dqn" else None)
        returns = np.asarray(training.last_returns, dtype=np.float64)
        metrics: dict[str, Any] = {
            "trained_steps": int(model.num_timesteps),
            "train_seconds": seconds,
            "train_episodes": training.episodes,
            "train_return_last_100": float(returns[-100:].mean()) if len(returns) else None,
        }
        if eval_arrangements:
            horizon: dict[str, Any] = (
                {"months": int(fixed_months)} if fixed_months else {"runoff": config.simulation.runoff_cap()}
            )
            result = simulate(config, policy, arrangements=eval_arrangements, seed=world_seed, **horizon)
            metrics["eval"] = {
                "arrangements": eval_arrangements,
                "months": int(fixed_months) if fixed_months else None,
                "seed": world_seed,
                **result.kpis,
            }
            curve.extend((int(model.num_timesteps), f"eval/{k}", float(v)) for k, v in result.kpis.items())
    write_curve(curve, out / "learning_curve.parquet")
    record = {
        "env_id": "regsim/SelfServiceVec-v0" if menu else "regsim/ArrangementVec-v0",
        "decision": decision,
        "algorithm": algorithm,
        "sb3_class": cls.model_class.__name__,
        "steps": steps,
        "seed": seed,
        "n_envs": n_envs,
        "workers": workers,
        "env_kwargs": {
            "reward": reward_name,
            "months": months,
            "world_seed": world_seed,
            **({"base_policy": MENU_BASE} if menu else {"invalid_action": invalid_action}),
        },
        "reward_kwargs": dict(reward_kwargs or {}),
        "algo_kwargs": kwargs,
        "action_parts": list(parts) if algorithm == "dqn" else None,
        "torch_threads": 1,
        "world_config": config.model_dump(mode="json"),
    }
    return policy.save(folder, rules_version=config.rules.version, training=record, metrics=metrics)
