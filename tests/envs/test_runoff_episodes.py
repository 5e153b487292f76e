"""Training aligned with the verdict: by default an episode runs to its arrangement's end, and its return is the
arrangement's run-off value (x 0.01)."""

from __future__ import annotations

import numpy as np
import pytest

import agents
from envs import ArrangementEnv, ArrangementVecEnv
from regsim import WorldConfig, simulate
from regsim.metrics import runoff_value
from regsim.rewards import REWARDS
from regsim.runoff import covering_months


def _do_nothing(env: ArrangementEnv) -> np.ndarray:
    mask = env.action_masks()
    return np.array([int(np.argmax(mask[o : o + n])) for o, n in zip(env.space.offsets, env.space.nvec, strict=True)])


def test_default_episode_runs_off_and_returns_the_runoff_value() -> None:
    config, n, seed = WorldConfig(), 25, 5
    assert "runoff_value" in REWARDS
    env = ArrangementEnv(config=config, world_seed=seed)
    assert env.months == covering_months(config) == 25  # 30 arrival days + (12 + 12) months, rounded up
    assert ArrangementVecEnv(2, config=config, world_seed=seed).world.days == 30 * covering_months(config)
    # Doing nothing is the silent policy (the envs add no dynamics); its run-off value per arrangement:
    population = simulate(
        config, agents.make("silent"), arrangements=n, runoff=config.simulation.runoff_cap(), seed=seed
    )
    outcomes = population.outcomes()
    value = runoff_value(outcomes)
    ended = 0
    for k in range(n):
        env.reset(options={"arrangement_id": k})
        total, terminated, truncated = 0.0, False, False
        while not (terminated or truncated):
            _, reward, terminated, truncated, _ = env.step(_do_nothing(env))
            total += reward
        if outcomes.end_kind.iloc[k] == "censored":
            continue
        ended += 1
        assert terminated and not truncated, k  # not cut at a horizon: the arrangement ended
        assert total == pytest.approx(0.01 * value.iloc[k], abs=1e-9), k
    assert ended >= n - 2
