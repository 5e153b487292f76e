"""Any Gymnasium client trains on ``regsim/Arrangement-v1``: plain SB3 PPO, A2C and DQN, and a loop written
against the Gymnasium API alone. Nothing is imported from regsim's packages but ``import envs`` (which registers
the ids): the env is made with ``gymnasium.make``, as a newcomer would make it.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs  # noqa: F401  # registers the regsim/ ids

ENV_ID = "regsim/Arrangement-v1"


class FlatDiscrete(gym.ActionWrapper):
    """What a DQN user writes for a ``MultiDiscrete`` env: one ``Discrete`` index per combination of options."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        assert isinstance(env.action_space, spaces.MultiDiscrete)
        self.nvec = env.action_space.nvec
        self.action_space = spaces.Discrete(int(np.prod(self.nvec)))

    def action(self, action: Any) -> np.ndarray:
        return np.array(np.unravel_index(int(action), self.nvec), dtype=np.int64)


def _random_steps(env: gym.Env[Any, Any], steps: int, seed: int) -> int:
    """``steps`` uniform actions over the whole action space (masks ignored); the replacements counted."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    replaced = 0
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(rng.integers(0, env.action_space.nvec))  # type: ignore[attr-defined]
        replaced = int(info["replaced_actions"])
        if terminated or truncated:
            env.reset()
    return replaced


def test_a_masked_action_is_replaced_and_counted_by_default_and_raises_on_request() -> None:
    # By default random actions never end the rollout; the episode's replaced steps are counted.
    counts = []
    env = gym.make(ENV_ID)
    for seed in range(5):
        counts.append(_random_steps(env, 30, seed))
    assert max(counts) > 0
    env.close()
    # Opted in to "raise", the same kind of rollout dies on a masked action, naming the rule.
    strict = gym.make(ENV_ID, invalid_action="raise")
    with pytest.raises(Exception, match=r"rule|masked") as raised:
        for seed in range(5):
            _random_steps(strict, 30, seed)
    assert type(raised.value).__name__ == "RuleViolation"
    strict.close()


def test_a_loop_against_the_gymnasium_api_alone_runs_episodes_to_their_end() -> None:
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(0)
    episodes, steps = 0, 0
    obs, _ = env.reset(seed=0)
    while episodes < 3:
        # Uniform over the whole action space, masks ignored: every action of action_space is valid.
        action = rng.integers(0, env.action_space.nvec)  # type: ignore[attr-defined]
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        assert env.observation_space.contains(obs) and np.isfinite(float(reward))
        assert info["replaced_actions"] >= 0
        if terminated or truncated:
            episodes += 1
            obs, _ = env.reset()
    assert steps >= 3
    env.close()


def test_both_env_checkers_are_clean() -> None:
    from gymnasium.utils.env_checker import check_env as gymnasium_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gymnasium_check(gym.make(ENV_ID).unwrapped)
        sb3_check(gym.make(ENV_ID), warn=True)


@pytest.mark.parametrize("algorithm", ["PPO", "A2C", "DQN"])
def test_plain_sb3_trains_through_gymnasium_make(algorithm: str) -> None:
    import stable_baselines3 as sb3
    import torch

    torch.set_num_threads(1)
    env: gym.Env[Any, Any] = gym.make(ENV_ID)
    kwargs: dict[str, Any] = {"seed": 0, "device": "cpu"}
    if algorithm == "PPO":
        kwargs |= {"n_steps": 64, "batch_size": 32, "n_epochs": 1}
    elif algorithm == "A2C":
        kwargs |= {"n_steps": 16}
    else:
        env = FlatDiscrete(env)
        kwargs |= {"learning_starts": 64, "buffer_size": 1_000, "train_freq": 4}
    model = getattr(sb3, algorithm)("MlpPolicy", env, **kwargs)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action if algorithm != "DQN" else int(action))
    env.close()
