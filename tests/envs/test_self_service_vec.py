"""``regsim/SelfServiceVec-v0`` (issue 18): slot i is ``SelfService-v0`` seeded ``seed + i``, step for step.

Whatever the number of slots, of debtors run ahead per slot, and whether quiet days are skipped, the episodes
are the same; the menus' masks name their rules.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.self_service import SelfServiceEnv
from envs.self_service_vec import SelfServiceVecEnv

MONTHS = 6  # short episodes keep the tests quick


def levels(masks: np.ndarray, env: SelfServiceVecEnv, rng: np.random.Generator) -> np.ndarray:
    """One random allowed level per slot of each menu."""
    space = env.menu_space
    return np.array(
        [
            [rng.choice(np.flatnonzero(m[o : o + n])) for o, n in zip(space.offsets, space.nvec, strict=True)]
            for m in masks
        ],
        dtype=np.int64,
    )


def run(env: SelfServiceVecEnv, steps: int, seed: int) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    out: list[tuple[Any, ...]] = [(obs, info["arrangement_id"])]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(levels(env.action_masks(), env, rng))
        out.append((obs, reward, terminated, truncated, info["arrangement_id"], info["replaced_actions"]))
    return out


def assert_same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> None:
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)


def test_slot_i_gives_the_episodes_of_the_single_env_seeded_seed_plus_i() -> None:
    n, seed, steps = 3, 4, 25
    vec = SelfServiceVecEnv(n, months=MONTHS, search=2)
    singles = [SelfServiceEnv(months=MONTHS) for _ in range(n)]  # (8 debtors run ahead: the same episodes)
    obs, info = vec.reset(seed=seed)
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=seed + i)
        np.testing.assert_array_equal(obs[i], o)
        assert inf["arrangement_id"] == info["arrangement_id"][i]
    rng = np.random.default_rng(0)
    ended = np.zeros(n, dtype=bool)
    episodes = 0
    for _ in range(steps):
        actions = levels(vec.action_masks(), vec, rng)
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i, env in enumerate(singles):
            if ended[i]:  # NEXT_STEP: the vector slot starts its next episode, as the single env's reset does
                o, inf = env.reset()
                r, te, tr = 0.0, False, False
            else:
                o, r, te, tr, inf = env.step(actions[i])
                np.testing.assert_array_equal(env.action_masks().shape, vec.action_masks()[i].shape)
            np.testing.assert_array_equal(obs[i], o)
            assert (reward[i], terminated[i], truncated[i]) == (r, te, tr)
            assert inf["arrangement_id"] == info["arrangement_id"][i]
            assert inf["masked_by"] == info["masked_by"][i]
            assert inf["truth"]["debtor_type"] == info["truth"]["debtor_type"][i]
        ended = terminated | truncated
        episodes += int(ended.sum())
    assert episodes >= 3  # the comparison went through autoresets


def test_skipping_quiet_days_and_running_ahead_change_no_episode() -> None:
    expected = run(SelfServiceVecEnv(4, months=MONTHS, search=1, skip_quiet_days=False), steps=20, seed=9)
    assert_same(run(SelfServiceVecEnv(4, months=MONTHS, search=5), steps=20, seed=9), expected)
    again = SelfServiceVecEnv(4, months=MONTHS, search=5)
    assert_same(run(again, steps=20, seed=9), expected)  # the same seed, the same episodes
    assert not np.array_equal(again.reset(seed=10)[0], expected[0][0])


def test_spaces_masks_and_rules_hold() -> None:
    env = gym.make_vec(envs.SELF_SERVICE_VECTOR_ENV_IDS[0], num_envs=4, months=MONTHS)
    assert isinstance(env, SelfServiceVecEnv)
    obs, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    capped = 0
    for _ in range(30):
        assert env.observation_space.contains(obs) and obs.dtype == np.float32
        masks = env.action_masks()
        assert masks.shape == (4, sum(env.menu_space.nvec)) and masks.dtype == bool
        for i in range(4):  # every capped level names a menu rule, and only capped levels do
            named = {k for k, rules in info["masked_by"][i].items() if rules}
            space = env.menu_space
            off = [(s, lv) for s, (o, n) in enumerate(zip(space.offsets, space.nvec, strict=True)) for lv in range(n)]
            expected = {
                f"{('deferral', 'plan', 'waiver', 'discount', 'counselling', 'custom')[s]}={lv}"
                for s, lv in off
                if not masks[i][space.offsets[s] + lv]
            }
            assert named == expected
            capped += len(named)
            assert all(r.startswith("menu_") for rules in info["masked_by"][i].values() for r in rules)
        actions = levels(masks, env, rng)
        assert env.action_space.contains(actions)
        obs, reward, terminated, truncated, info = env.step(actions)
        assert reward.shape == terminated.shape == truncated.shape == (4,)
    assert capped > 0


def test_a_capped_level_is_shown_as_not_shown_and_counted() -> None:
    env = SelfServiceVecEnv(8, months=MONTHS)
    env.reset(seed=2)
    masks = env.action_masks()
    slot, index = np.argwhere(~masks)[0]
    part = int(np.searchsorted(np.cumsum(env.menu_space.nvec), index, side="right"))
    actions = np.zeros((8, 6), dtype=np.int64)
    actions[slot, part] = index - env.menu_space.offsets[part]
    *_, info = env.step(actions)
    assert info["replaced_actions"][slot] == 1 and info["replaced_actions"].sum() == 1


def test_maskable_ppo_trains_on_the_menu_env_and_shows_only_allowed_levels() -> None:
    """A smoke test: sb3-contrib's MaskablePPO learns on ``SelfService-v0`` and its menus respect the masks."""
    import torch
    from sb3_contrib import MaskablePPO

    torch.set_num_threads(1)
    env = SelfServiceEnv(months=MONTHS)
    model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=2, seed=0, device="cpu")
    model.learn(total_timesteps=64)
    obs, _ = env.reset(seed=3)
    for _ in range(10):
        mask = env.action_masks()
        action, _ = model.predict(obs, action_masks=mask, deterministic=False)
        offsets = np.asarray(env.menu_space.offsets)
        assert mask[offsets + np.asarray(action)].all()
        obs, _, terminated, truncated, info = env.step(action)
        assert info["replaced_actions"] == 0
        if terminated or truncated:
            obs, _ = env.reset()


def test_compacting_the_message_store_with_custom_cases_queued_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases wait in the event queue under negative codes; compacting the messages at every restart keeps them."""
    import regsim.vector_world
    from regsim import WorldConfig
    from regsim.vector_world import VectorWorld

    config = WorldConfig().with_overrides(self_service={"visit": {"follow_prob": 0.9}})
    expected = run(SelfServiceVecEnv(6, config=config, months=MONTHS, search=2), steps=30, seed=8)
    with_cases = [0]
    compact = VectorWorld._compact_messages

    def counting(world: VectorWorld) -> None:
        with_cases[0] += int((world._queue.messages() < 0).any())
        compact(world)

    monkeypatch.setattr(regsim.vector_world, "_COMPACT_MIN", 0)
    monkeypatch.setattr(VectorWorld, "_compact_messages", counting)
    assert_same(run(SelfServiceVecEnv(6, config=config, months=MONTHS, search=2), steps=30, seed=8), expected)
    assert with_cases[0] > 0  # some compactions happened while a custom case waited
