"""Population rollouts are the env's MDP: same observations, rewards and episode ends, arrangement by arrangement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

import envs
from agents.population_rollouts import collect_rollout, learn_on_population
from regsim import WorldConfig


def _uncoupled_world() -> WorldConfig:
    """Capacities so large that debtors never wait for each other (no shared-capacity coupling)."""
    return WorldConfig().with_overrides(
        capacity={"collectors": 10_000, "robocall_lines": 10_000, "letters_per_day": 1_000_000}
    )


def _model(config: WorldConfig) -> MaskablePPO:
    torch.manual_seed(0)
    return MaskablePPO(
        "MlpPolicy", envs.ArrangementEnv(config=config), n_steps=64, batch_size=256, n_epochs=2, seed=0, device="cpu"
    )


def test_each_rollout_episode_equals_the_env_episode_with_the_same_actions() -> None:
    config = _uncoupled_world()
    model = _model(config)
    rollout = collect_rollout(model, config, arrangements=20, months=12, seed=3, first_id=100, reward="holding")
    env = envs.ArrangementEnv(config=config, months=12, world_seed=3, reward="holding")
    starts = np.flatnonzero(rollout.episode_starts)
    for episode, start in enumerate(starts):
        obs, _ = env.reset(options={"arrangement_id": 100 + episode})
        k = start
        while True:
            np.testing.assert_array_equal(obs, rollout.obs[k])
            np.testing.assert_array_equal(env.action_masks(), rollout.masks[k])
            obs, reward, terminated, truncated, _ = env.step(rollout.actions[k])
            assert reward == pytest.approx(rollout.rewards[k], abs=1e-12)
            if terminated or truncated:
                assert rollout.last[k] and rollout.terminated[k] == terminated
                break
            k += 1
    assert len(starts) == 20 and rollout.last.sum() == 20


def test_learning_on_population_runs_and_counts_decisions() -> None:
    config = WorldConfig()
    model = _model(config)
    seen: list[int] = []
    learn_on_population(
        model,
        config,
        total_decisions=3_000,
        arrangements_per_rollout=150,
        months=6,
        seed=1,
        progress=lambda n, _r: seen.append(n),
    )
    assert model.num_timesteps >= 3_000 and seen == sorted(seen) and len(seen) >= 2
    obs, _ = envs.ArrangementEnv(config=config).reset(seed=0)
    action, _ = model.predict(obs, action_masks=envs.ArrangementEnv(config=config).action_masks(), deterministic=True)
    assert action.shape == (5,)
