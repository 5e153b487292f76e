"""Slots split over worker processes (``envs.shards``) give the transitions of one process, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from envs.sb3_vec import ArrangementSB3VecEnv
from envs.shards import SlotShards, block_sizes
from regsim import WorldConfig
from regsim.decision import RuleViolation

MONTHS = 6  # short episodes: autoresets within a few dozen steps


def _masked_actions(masks: np.ndarray, space: Any, rng: np.random.Generator) -> np.ndarray:
    """One random allowed option per part and slot."""
    return np.array(
        [
            [rng.choice(np.flatnonzero(m[o : o + n])) for o, n in zip(space.offsets, space.nvec, strict=True)]
            for m in masks
        ],
        dtype=np.int64,
    )


def _rollout(vec: ArrangementSB3VecEnv, steps: int, seed: int) -> list[tuple]:
    """SB3-style stepping with random allowed actions; every return value, terminal observations included."""
    rng = np.random.default_rng(seed)
    vec.seed(seed)
    out: list[tuple] = [(vec.reset(),)]
    for _ in range(steps):
        masks = np.stack(vec.env_method("action_masks"))
        obs, rewards, dones, infos = vec.step(_masked_actions(masks, vec.space, rng))
        out.append((obs, rewards, dones, masks, infos))
    return out


def _assert_rollouts_equal(a: list[tuple], b: list[tuple]) -> int:
    """Compare two rollouts step by step; the number of episodes that ended."""
    ended = 0
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x[:4], y[:4], strict=True):
            np.testing.assert_array_equal(u, v)
        if len(x) > 1:
            for info_x, info_y in zip(x[4], y[4], strict=True):
                assert sorted(info_x) == sorted(info_y)
                for key in info_x:
                    np.testing.assert_array_equal(info_x[key], info_y[key])
            ended += int(x[2].sum())
    return ended


def test_block_sizes_split_the_slots_evenly_and_name_the_field() -> None:
    assert block_sizes(10, 3) == [4, 3, 3]
    assert block_sizes(4, 4) == [1, 1, 1, 1]
    for bad in (0, 11):
        with pytest.raises(ValueError, match="workers"):
            block_sizes(10, bad)


@pytest.mark.parametrize("workers", [2, 3])
def test_slots_in_worker_processes_equal_slots_in_one_process(workers: int) -> None:
    one = ArrangementSB3VecEnv(7, months=MONTHS)
    many = ArrangementSB3VecEnv(7, workers=workers, months=MONTHS)
    try:
        ended = _assert_rollouts_equal(_rollout(one, 70, seed=4), _rollout(many, 70, seed=4))
    finally:
        many.close()
    assert ended >= 3  # autoresets (terminal observations) were compared too


def test_a_rule_violation_in_one_block_steps_no_slot() -> None:
    slots = [{"day_offset": 0, "hour": 10}, {"day_offset": 0, "hour": 22}]  # 22:00 is a quiet hour
    config = WorldConfig().with_overrides(decisions={"send_slots": slots})
    vec = ArrangementSB3VecEnv(4, workers=2, config=config, invalid_action="raise")
    fresh = ArrangementSB3VecEnv(4, config=config, invalid_action="raise")
    try:
        for v in (vec, fresh):
            v.seed(0)
            v.reset()
        bad = np.zeros((4, 5), dtype=np.int64)
        bad[3] = [2, 1, 0, 0, 0]  # a night SMS in the second block only
        with pytest.raises(RuleViolation, match="quiet_hours"):
            vec.step(bad)
        valid = np.zeros((4, 5), dtype=np.int64)
        got, expected = vec.step(valid), fresh.step(valid)  # the first block did not step either
        for x, y in zip(got[:3], expected[:3], strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        vec.close()


def test_a_sharded_checkpoint_resumes_exactly_and_names_a_different_layout() -> None:
    vec = ArrangementSB3VecEnv(6, workers=2, months=MONTHS)
    again = ArrangementSB3VecEnv(6, workers=2, months=MONTHS)
    other = ArrangementSB3VecEnv(6, workers=3, months=MONTHS)
    try:
        _rollout(vec, 15, seed=9)
        state, masks = vec.get_state(), vec.action_masks()
        again.set_state(state)
        np.testing.assert_array_equal(again.action_masks(), masks)
        rng = np.random.default_rng(1)
        for _ in range(25):
            actions = _masked_actions(vec.action_masks(), vec.space, rng)
            for x, y in zip(vec.step(actions)[:3], again.step(actions)[:3], strict=True):
                np.testing.assert_array_equal(x, y)
        with pytest.raises(ValueError, match="workers=2"):
            other.set_state(state)
        with pytest.raises(ValueError, match="workers=2"):
            ArrangementSB3VecEnv(6, months=MONTHS).set_state(state)
    finally:
        for v in (vec, again, other):
            v.close()


@pytest.mark.parametrize("bad", [0, 7, 1.5, True])
def test_bad_worker_counts_name_the_field(bad: Any) -> None:
    with pytest.raises(ValueError, match="workers"):
        ArrangementSB3VecEnv(6, workers=bad)


def test_a_worker_that_cannot_build_its_env_reports_the_error() -> None:
    with pytest.raises(ValueError, match="months"):
        SlotShards(4, 2, {"months": 0})


def test_close_stops_the_workers_and_is_idempotent() -> None:
    shards = SlotShards(4, 2, {"months": MONTHS})
    processes = list(shards._processes)
    assert all(p.is_alive() for p in processes)
    shards.close()
    shards.close()
    assert not any(p.is_alive() for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        shards.reset(None)
