"""The SB3 adapter of ``regsim/SelfServiceVec-v0``: same-step autoreset gives the same episodes, exact resumes."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from envs.sb3_menu_vec import SelfServiceSB3VecEnv
from envs.self_service_vec import SelfServiceVecEnv
from tests.envs.test_self_service_vec import levels

MONTHS = 6


def test_same_step_autoreset_gives_the_episodes_of_next_step() -> None:
    """Same-step slots start their next episode in the step that ended one; the episodes are the same.

    The menus are fixed (nothing shown), so they do not depend on the step count: a NEXT_STEP env spends one
    step more per episode (the one that only starts the next), and is given those steps.
    """
    a = SelfServiceVecEnv(2, months=MONTHS, autoreset_mode=AutoresetMode.SAME_STEP)
    b = SelfServiceVecEnv(2, months=MONTHS)
    oa, _ = a.reset(seed=7)
    ob, _ = b.reset(seed=7)
    np.testing.assert_array_equal(oa, ob)
    zero = np.zeros((2, 6), dtype=np.int64)
    ended_b = np.zeros(2, dtype=bool)
    seen_a: list[list[float]] = [[], []]
    seen_b: list[list[float]] = [[], []]
    ends = 0
    for _ in range(30):
        _, ra, ta, ua, ia = a.step(zero)
        for i in range(2):
            seen_a[i].append(float(ra[i]))
            if ta[i] or ua[i]:
                seen_a[i].append(np.nan)
                ends += 1
                assert ia["_final_obs"][i] and ia["final_obs"][i] is not None
    for _ in range(30 + ends):
        _, rb, tb, ub, _ = b.step(zero)
        for i in range(2):
            if not ended_b[i]:
                seen_b[i].append(float(rb[i]))
                if tb[i] or ub[i]:
                    seen_b[i].append(np.nan)
        ended_b = tb | ub
    assert ends >= 2
    for i in range(2):  # slot i's rewards and episode ends, in order, are the same in both modes
        k = len(seen_a[i])
        np.testing.assert_array_equal(seen_a[i], seen_b[i][:k])


def test_the_adapter_reports_terminal_observations_and_resumes_exactly() -> None:
    env = SelfServiceSB3VecEnv(4, months=MONTHS, search=2)
    env.seed(3)
    env.reset()
    rng = np.random.default_rng(1)
    ends = 0
    for _ in range(10):
        env.step_async(levels(env.action_masks(), env.venv, rng))
        _, rewards, dones, infos = env.step_wait()
        assert rewards.dtype == np.float32
        for i in np.flatnonzero(dones):
            assert "terminal_observation" in infos[i] and "TimeLimit.truncated" in infos[i]
            ends += 1
    assert ends >= 1
    state = env.get_state()
    actions = [levels(env.action_masks(), env.venv, rng) for _ in range(8)]

    def go(e: SelfServiceSB3VecEnv) -> list[np.ndarray]:
        out = []
        for act in actions:
            e.step_async(act)
            obs, rewards, dones, _ = e.step_wait()
            out += [obs, rewards, dones]
        return out

    first = go(env)
    other = SelfServiceSB3VecEnv(4, months=MONTHS, search=2)
    other.set_state(state)
    for x, y in zip(first, go(other), strict=True):
        np.testing.assert_array_equal(x, y)
    assert env.env_method("action_masks", indices=[1])[0].shape == (sum(env.menu_space.nvec),)
    with pytest.raises(ValueError, match="slots"):
        SelfServiceSB3VecEnv(3, months=MONTHS).set_state(state)
    with pytest.raises(ValueError, match="autoreset_mode"):
        SelfServiceSB3VecEnv(2, months=MONTHS, autoreset_mode=AutoresetMode.NEXT_STEP)
