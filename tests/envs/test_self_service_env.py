"""``regsim/SelfService-v0`` (issue 18): both env checkers clean, same seed same episode, masks with reasons."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.self_service import SelfServiceEnv


def make() -> SelfServiceEnv:
    env = gym.make(envs.SELF_SERVICE_ENV_IDS[0], months=6).unwrapped  # (a short horizon keeps the checks quick)
    assert isinstance(env, SelfServiceEnv)
    return env


def test_both_env_checkers_pass_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(), skip_render_check=True)
        sb3_check_env(make(), warn=True)


def rollout(env: SelfServiceEnv, seed: int, steps: int = 6) -> list[tuple[list[float], float, bool, bool]]:
    obs, _ = env.reset(seed=seed)
    out = []
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        mask, levels = env.action_masks(), []
        for off, n in zip(env.menu_space.offsets, env.menu_space.nvec, strict=True):
            levels.append(int(rng.choice(np.flatnonzero(mask[off : off + n]))))
        obs, reward, terminated, truncated, _ = env.step(np.array(levels))
        out.append((obs.tolist(), reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
    return out


def test_the_same_seed_gives_the_same_episodes() -> None:
    assert rollout(make(), seed=5) == rollout(make(), seed=5)


def test_capped_levels_are_named_and_replaced_by_not_shown() -> None:
    env = make()
    _, info = env.reset(seed=1)
    for _ in range(20):  # find a menu point where a rule caps something
        if info["masked_by"]:
            break
        _, _, terminated, truncated, info = env.step(np.zeros(6, dtype=np.int64))
        if terminated or truncated:
            _, info = env.reset()
    assert info["masked_by"] and all(r[0].startswith("menu_") for r in info["masked_by"].values())
    mask = env.action_masks()
    slot, level = next(
        (s, lv)
        for s, (off, n) in enumerate(zip(env.menu_space.offsets, env.menu_space.nvec, strict=True))
        for lv in range(n)
        if not mask[off + lv]
    )
    action = np.zeros(6, dtype=np.int64)
    action[slot] = level
    _, _, _, _, after = env.step(action)
    assert after["replaced_actions"] == 1


def test_options_are_refused() -> None:
    with pytest.raises(ValueError, match="options"):
        make().reset(options={"arrangement_id": 3})
