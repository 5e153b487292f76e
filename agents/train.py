"""Training SB3 policies on ``regsim/Arrangement-v0`` and writing them as artifacts.

:func:`train_policy` is the one entry point: build the env, train (seeded, on one CPU thread), wrap the
trained network as a :class:`~regsim.decision.Policy` (:mod:`agents.sb3`), evaluate it briefly by simulating
a population with it (the same path evaluation and serving use), and write the artifact folder.

Layout of ``out``::

    out/policy/          the artifact (manifest.json, network.json, weights.pt): load with agents.artifact.load_policy
    out/tb/<algorithm>_1 TensorBoard logs (when tensorboard=True)
    out/checkpoint.zip   SB3's own save, to resume training only (never loaded for serving: it unpickles code)

Reproducibility: the same seed, config and arguments give identical weights and decisions. ``seed`` seeds
SB3 (Python, NumPy and torch generators, the env's debtor draws, the action space); training runs with one
torch thread, ``torch.use_deterministic_algorithms(True)`` and ``device="cpu"``, and the previous torch
settings are restored afterwards.
"""

from __future__ import annotations

import importlib.util
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

from agents.population_rollouts import PopulationRollout, learn_on_population
from agents.sb3 import DEFAULT_DQN_PARTS, POLICIES, FlatActionWrapper
from envs.arrangement import ArrangementEnv
from regsim.config import WorldConfig
from regsim.simulate import simulate

__all__ = ["DEFAULT_ALGO_KWARGS", "TqdmProgress", "deterministic_torch", "train_policy"]

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
    rollouts: str = "population",
    arrangements_per_rollout: int | None = None,
) -> Path:
    """Train an SB3 policy on ``regsim/Arrangement-v0`` and write it as an artifact.

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
        rollouts: MaskablePPO only: ``"population"`` (default) collects each rollout from a whole-population
            run (:mod:`agents.population_rollouts`: the env's MDP, tens of times faster, debtors with ids from
            :data:`TRAINING_FIRST_ID` on, so never those of an evaluation); ``"env"`` steps
            ``regsim/Arrangement-v0``. PPO and DQN always step the env.
        arrangements_per_rollout: Episodes per population rollout (default: about ``n_steps`` decisions each).

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
    if rollouts not in ("population", "env"):
        raise ValueError(f"rollouts: expected 'population' or 'env', got {rollouts!r}")
    population = algorithm == "maskable-ppo" and rollouts == "population"
    if arrangements_per_rollout is not None and arrangements_per_rollout < 1:
        raise ValueError(f"arrangements_per_rollout: must be >= 1, got {arrangements_per_rollout}")
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

    with deterministic_torch(seed):
        base = ArrangementEnv(
            config=config,
            invalid_action="raise" if algorithm == "maskable-ppo" else "fallback",
            **env_kwargs,
        )
        env: Any = FlatActionWrapper(base, parts) if algorithm == "dqn" else base
        monitor = Monitor(env)
        model = cls.model_class(
            "MlpPolicy",
            monitor,
            seed=seed,
            device="cpu",
            verbose=0,
            tensorboard_log=str(out / "tb") if tensorboard else None,
            **kwargs,
        )
        rich = importlib.util.find_spec("rich") is not None
        callback = TqdmProgress(steps) if progress and not rich else None
        start = time.perf_counter()
        rollout_returns: list[float] = []
        if population:
            bar = tqdm(total=steps, unit="decision", disable=not progress, desc="maskable-ppo (population)")

            def advance(done: int, rollout: PopulationRollout) -> None:
                rollout_returns.append(float(rollout.episode_returns.mean()))
                bar.update(min(done, steps) - bar.n)

            assert isinstance(model, MaskablePPO)
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
            )
            bar.close()
        else:
            model.learn(total_timesteps=steps, callback=callback, tb_log_name=algorithm, progress_bar=progress and rich)
        seconds = time.perf_counter() - start
        model.save(out / "checkpoint.zip")

        policy = cls.from_model(model, space=base.space, action_parts=parts if algorithm == "dqn" else None)
        returns = np.asarray(rollout_returns if population else monitor.get_episode_rewards(), dtype=np.float64)
        metrics: dict[str, Any] = {
            "trained_steps": int(model.num_timesteps),
            "train_seconds": seconds,
            "train_episodes": len(returns),
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
    training = {
        "env_id": "regsim/Arrangement-v0",
        "algorithm": algorithm,
        "sb3_class": cls.model_class.__name__,
        "steps": steps,
        "seed": seed,
        "rollouts": "population" if population else "env",
        "arrangements_per_rollout": arrangements_per_rollout if population else None,
        "env_kwargs": {**env_kwargs, "invalid_action": base.invalid_action},
        "algo_kwargs": kwargs,
        "action_parts": list(parts) if algorithm == "dqn" else None,
        "torch_threads": 1,
        "world_config": config.model_dump(mode="json"),
    }
    return policy.save(folder, rules_version=config.rules.version, training=training, metrics=metrics)
