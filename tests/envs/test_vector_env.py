"""``regsim/ArrangementVec-v0`` and its SB3 adapter: slot i is ``Arrangement-v0``, step for step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs
from envs.arrangement import ArrangementEnv
from envs.sb3_vec import ArrangementSB3VecEnv
from envs.vector import ArrangementVecEnv
from regsim.arrangement import ArrangementStatus

MONTHS = 6  # short episodes keep the tests fast; autoresets happen within a few dozen steps


def _masked_actions(masks: np.ndarray, space: Any, rng: np.random.Generator) -> np.ndarray:
    """One random allowed option per part and slot."""
    return np.array(
        [
            [rng.choice(np.flatnonzero(m[o : o + n])) for o, n in zip(space.offsets, space.nvec, strict=True)]
            for m in masks
        ],
        dtype=np.int64,
    )


def _assert_infos_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        if isinstance(a[key], dict):
            _assert_infos_equal(a[key], b[key])
        elif a[key].dtype == object:  # final observations, step outcomes
            for x, y in zip(a[key], b[key], strict=True):
                assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, key
        else:
            assert np.array_equal(a[key], b[key]), key


def _run(vec: gym.vector.VectorEnv, masks_of: Any, space: Any, steps: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    obs, info = vec.reset(seed=seed)
    out: list[tuple] = [(obs, info)]
    for _ in range(steps):
        out.append(vec.step(_masked_actions(masks_of(), space, rng)))
    return out


def _skipping_equals_every_day(make: Any, steps: int, seed: int) -> tuple[ArrangementVecEnv, ArrangementVecEnv]:
    """Run ``make(True)`` (quiet days skipped) and ``make(False)`` (every day in full); assert the same
    trajectories; both envs."""
    fast = make(True)
    got = _run(fast, fast.action_masks, fast.space, steps=steps, seed=seed)
    slow = make(False)
    assert fast.world.skip_quiet_days and not slow.world.skip_quiet_days
    expected = _run(slow, slow.action_masks, slow.space, steps=steps, seed=seed)
    for g, e in zip(got, expected, strict=True):
        for x, y in zip(g[:-1], e[:-1], strict=True):
            np.testing.assert_array_equal(x, y)
        _assert_infos_equal(g[-1], e[-1])
    np.testing.assert_array_equal(fast.world.clock, slow.world.clock)
    return fast, slow


def _assert_same_state(fast: ArrangementVecEnv, slow: ArrangementVecEnv, names: tuple[str, ...]) -> None:
    for name in names:
        np.testing.assert_array_equal(getattr(fast.world.state, name), getattr(slow.world.state, name), err_msg=name)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_slots_equal_a_sync_vector_env_of_arrangement_v0(mode: AutoresetMode) -> None:
    """Observations, rewards, terminations, truncations and infos (ground truth) agree through autoresets."""
    n = 3
    vec = ArrangementVecEnv(n, months=MONTHS, autoreset_mode=mode)
    ref = SyncVectorEnv([lambda: ArrangementEnv(months=MONTHS) for _ in range(n)], autoreset_mode=mode)

    def ref_masks() -> np.ndarray:
        return np.stack([e.action_masks() for e in ref.envs])  # type: ignore[attr-defined]

    got = _run(vec, vec.action_masks, vec.space, steps=60, seed=5)
    expected = _run(ref, ref_masks, vec.space, steps=60, seed=5)
    ended = 0
    for g, e in zip(got, expected, strict=True):
        assert len(g) == len(e)
        for x, y in zip(g[:-1], e[:-1], strict=True):
            np.testing.assert_array_equal(x, y)
        _assert_infos_equal(g[-1], e[-1])
        if len(g) == 5:
            ended += int(np.sum(g[2] | g[3]))
    assert ended >= 2  # the comparison went through autoresets


def test_slot_i_replays_arrangement_k_like_the_single_env() -> None:
    ids = [3, 17, 40]
    vec = ArrangementVecEnv(len(ids), months=MONTHS)
    obs, info = vec.reset(options={"arrangement_ids": ids})
    rng = np.random.default_rng(0)
    singles = [ArrangementEnv(months=MONTHS) for _ in ids]
    for i, (env, k) in enumerate(zip(singles, ids, strict=True)):
        o, inf = env.reset(options={"arrangement_id": k})
        np.testing.assert_array_equal(obs[i], o)
        assert info["arrangement_id"][i] == k == inf["arrangement_id"]
    alive = np.ones(len(ids), dtype=bool)
    while alive.any():
        actions = _masked_actions(vec.action_masks(), vec.space, rng)
        obs, reward, terminated, truncated, info = vec.step(actions)
        for i in np.flatnonzero(alive):
            o, r, te, tr, inf = singles[i].step(actions[i])
            np.testing.assert_array_equal(obs[i], o)
            assert (reward[i], terminated[i], truncated[i]) == (r, te, tr)
            assert {k: v[i] for k, v in info["truth"].items() if not k.startswith("_")} == inf["truth"]
            assert {k: v[i] for k, v in info["outcome"].items() if not k.startswith("_")} == inf["outcome"]
            alive[i] = not (te or tr)


def test_same_seed_same_trajectories_and_spaces_hold() -> None:
    a = ArrangementVecEnv(4, months=MONTHS)
    b = ArrangementVecEnv(4, months=MONTHS)
    ra = _run(a, a.action_masks, a.space, steps=25, seed=11)
    rb = _run(b, b.action_masks, b.space, steps=25, seed=11)
    for x, y in zip(ra, rb, strict=True):
        for u, v in zip(x[:-1], y[:-1], strict=True):
            np.testing.assert_array_equal(u, v)
        _assert_infos_equal(x[-1], y[-1])
    # Vector-env conformance (what gymnasium's env checker asks of a single env, batched).
    obs, _ = a.reset(seed=1)
    assert a.observation_space.contains(obs) and obs.dtype == np.float32
    assert a.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    masks = a.action_masks()
    assert masks.shape == (4, int(np.sum(a.space.nvec))) and masks.dtype == bool
    actions = _masked_actions(masks, a.space, np.random.default_rng(1))
    assert a.action_space.contains(actions)
    obs, reward, terminated, truncated, _ = a.step(actions)
    assert a.observation_space.contains(obs)
    assert reward.shape == terminated.shape == truncated.shape == (4,)
    assert reward.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_
    obs2, _ = a.reset(seed=1)
    obs3, _ = b.reset(seed=1)
    np.testing.assert_array_equal(obs2, obs3)
    c = ArrangementVecEnv(4, months=MONTHS)
    assert not np.array_equal(c.reset(seed=2)[0], obs2)


def test_make_vec_builds_the_vector_env() -> None:
    for env_id in envs.VECTOR_ENV_IDS + envs.ENV_IDS:
        vec = gym.make_vec(env_id, num_envs=2, months=MONTHS)
        assert isinstance(vec, ArrangementVecEnv) and vec.num_envs == 2
        obs, _ = vec.reset(seed=10)
        single = ArrangementEnv(months=MONTHS)
        for i in range(2):
            np.testing.assert_array_equal(obs[i], single.reset(seed=10 + i)[0])
    assert envs.VECTOR_ENV_IDS == ("regsim/ArrangementVec-v1", "regsim/ArrangementVec-v0")
    # v1 replaces masked actions by default; v0 keeps its contract (they raise).
    assert gym.make_vec("regsim/ArrangementVec-v1", num_envs=1).invalid_action == "replace"
    assert gym.make_vec("regsim/Arrangement-v0", num_envs=1).invalid_action == "raise"


@pytest.mark.parametrize("bad", [{"num_envs": 0}, {"autoreset_mode": AutoresetMode.DISABLED}])
def test_bad_arguments_name_the_field(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ArrangementVecEnv(**bad)


def test_sb3_adapter_resets_in_the_same_step_and_gives_masks() -> None:
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    vec = ArrangementSB3VecEnv(3, months=MONTHS)
    assert is_masking_supported(vec)
    vec.seed(20)
    obs = vec.reset()
    single = ArrangementEnv(months=MONTHS)
    for i in range(3):
        np.testing.assert_array_equal(obs[i], single.reset(seed=20 + i)[0])
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(80):
        masks = get_action_masks(vec)
        assert masks.shape == (3, int(np.sum(vec.venv.space.nvec)))
        obs, _, dones, infos = vec.step(_masked_actions(masks, vec.venv.space, rng))
        for i in np.flatnonzero(dones):
            assert infos[i]["terminal_observation"].shape == obs[i].shape
            assert "TimeLimit.truncated" in infos[i]
            finished += 1
    assert finished >= 2


def test_maskable_ppo_on_the_sb3_adapter_trains_reproducibly_and_acts_within_the_masks() -> None:
    """MaskablePPO trains on the adapter through SB3's own learn(); the same seed gives the same weights, and the
    trained policy's sampled actions are allowed by the masks at every decision point."""
    from sb3_contrib import MaskablePPO

    def trained() -> MaskablePPO:
        vec = ArrangementSB3VecEnv(8, months=MONTHS)
        model = MaskablePPO("MlpPolicy", vec, n_steps=64, batch_size=256, n_epochs=2, seed=0, verbose=0, device="cpu")
        return model.learn(total_timesteps=1_024)

    a, b = trained(), trained()
    assert a.num_timesteps == b.num_timesteps == 1_024
    for (name, x), y in zip(a.policy.state_dict().items(), b.policy.state_dict().values(), strict=True):
        assert bool((x == y).all()), name
    initial = MaskablePPO("MlpPolicy", ArrangementSB3VecEnv(8, months=MONTHS), seed=0, device="cpu").policy
    assert any(not bool((x == y).all()) for x, y in zip(a.policy.parameters(), initial.parameters(), strict=True))
    vec = a.get_env()
    obs = vec.reset()
    space = vec.venv.space
    for _ in range(40):
        masks = vec.action_masks()
        action, _ = a.predict(obs, action_masks=masks, deterministic=False)
        for part, (offset, size) in enumerate(zip(space.offsets, space.nvec, strict=True)):
            assert masks[np.arange(len(masks)), offset + action[:, part]].all(), (part, size)
        obs, *_ = vec.step(action)


def test_compacting_the_message_store_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgotten messages are dropped at (almost) every restart here; the slots still follow ``Arrangement-v0``."""
    import regsim.vector_world

    monkeypatch.setattr(regsim.vector_world, "_COMPACT_MIN", 0)
    n = 4
    vec = ArrangementVecEnv(n, months=MONTHS)
    ref = SyncVectorEnv([lambda: ArrangementEnv(months=MONTHS) for _ in range(n)])
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    vec.reset(seed=30)
    ref.reset(seed=30)
    ended = 0
    for _ in range(80):
        a = _masked_actions(vec.action_masks(), vec.space, rng_a)
        b = _masked_actions(np.stack([e.action_masks() for e in ref.envs]), vec.space, rng_b)  # type: ignore[attr-defined]
        got, expected = vec.step(a), ref.step(b)
        for x, y in zip(got[:-1], expected[:-1], strict=True):
            np.testing.assert_array_equal(x, y)
        ended += int(np.sum(got[2] | got[3]))
    assert ended >= 2 and vec.world.ledger.messages.n < 200


def test_a_masked_action_is_refused_and_changes_nothing() -> None:
    from regsim import WorldConfig
    from regsim.decision import RuleViolation

    slots = [{"day_offset": 0, "hour": 10}, {"day_offset": 0, "hour": 22}]  # 22:00 is a quiet hour
    config = WorldConfig().with_overrides(decisions={"send_slots": slots})
    vec = ArrangementVecEnv(2, config=config, invalid_action="raise")
    fresh = ArrangementVecEnv(2, config=config, invalid_action="raise")
    vec.reset(seed=0)
    fresh.reset(seed=0)
    night_sms = np.array([[0, 0, 0, 0, 0], [2, 1, 0, 0, 0]])
    with pytest.raises(RuleViolation, match="quiet_hours"):
        vec.step(night_sms)
    valid = np.zeros((2, 5), dtype=np.int64)
    for x, y in zip(vec.step(valid)[:-1], fresh.step(valid)[:-1], strict=True):
        np.testing.assert_array_equal(x, y)
    fallback = ArrangementVecEnv(2, config=config, invalid_action="fallback")
    fallback.reset(seed=0)
    *_, info = fallback.step(night_sms)
    assert info["fallbacks"].tolist() == [0, 1]


def _mornings_both_ways(at_once: Any, one_by_one: Any, pop: Any, config: Any, *args: Any) -> None:
    """Run the same stretches of mornings with ``advance_days`` and day by day with ``advance_day``; compare."""
    from dataclasses import fields

    from regsim.behaviour import DebtorState, advance_day, advance_days

    streams, gid, first, count, calendar, rows = args
    advance_days(at_once, pop, config.population, streams, gid, first, count, calendar, rows)
    for k in range(int(count.max())):
        going = count > k
        advance_day(one_by_one, pop, config.population, streams, gid, first[going] + k, calendar, rows[going])
    for f in fields(DebtorState):
        np.testing.assert_array_equal(getattr(at_once, f.name), getattr(one_by_one, f.name), err_msg=f.name)


def test_a_run_of_mornings_at_once_equals_one_morning_at_a_time() -> None:
    """``advance_days`` is ``advance_day`` repeated, bit for bit (shocks and paydays included)."""

    from regsim import WorldConfig
    from regsim.behaviour import DebtorState
    from regsim.calendar import calendar_for
    from regsim.population import draw_population
    from regsim.random import Streams

    config = WorldConfig()
    streams, calendar = Streams(4), calendar_for(config.simulation.start_date, 400)
    gid = np.arange(300, dtype=np.int64)
    pop = draw_population(config, gid, streams)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(300, size=200, replace=False))
    first, count = rng.integers(0, 200, size=200), rng.integers(0, 60, size=200)
    at_once, one_by_one = DebtorState.initial(pop, streams, gid), DebtorState.initial(pop, streams, gid)
    _mornings_both_ways(at_once, one_by_one, pop, config, streams, gid, first, count, calendar, rows)
    assert at_once.shocks.sum() > 0 and not np.array_equal(at_once.cash, DebtorState.initial(pop, streams, gid).cash)


def test_a_run_of_mornings_at_once_equals_one_morning_at_a_time_through_many_shocks() -> None:
    """``advance_days`` == ``advance_day`` repeated when shocks are on at the start and start again and again."""
    from dataclasses import replace

    from regsim import WorldConfig
    from regsim.behaviour import DebtorState
    from regsim.calendar import calendar_for
    from regsim.population import draw_population
    from regsim.random import Streams

    config = WorldConfig()
    streams, calendar = Streams(9), calendar_for(config.simulation.start_date, 500)
    gid = np.arange(400, dtype=np.int64)
    pop = draw_population(config, gid, streams)
    pop = replace(pop, shock_rate=np.full(400, 0.08))  # shocks every few weeks, some of them short
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(400, size=300, replace=False))
    first, count = rng.integers(0, 200, size=300), rng.integers(0, 120, size=300)
    states = [DebtorState.initial(pop, streams, gid) for _ in range(2)]
    for state in states:  # a shock on (or just over) at the start of some stretches
        state.shock_until[:] = np.arange(400) % 250
        state.annoyance[:] = np.linspace(0.0, 3.0, 400)
        state.boost[:] = np.linspace(0.5, 0.0, 400)
    at_once, one_by_one = states
    _mornings_both_ways(at_once, one_by_one, pop, config, streams, gid, first, count, calendar, rows)
    assert (at_once.shocks >= 2).sum() > 10 and at_once.shock_days.sum() > 0


def test_the_clock_after_a_run_of_days_equals_the_day_by_day_emulation() -> None:
    """``evening_after`` gives the clock that ``_morning``/``_evening`` leave, for every run within a long horizon."""
    from regsim.quiet_days import evening_after as _evening_after

    horizon = 30 * 24 + 3 * 366
    evening = np.zeros(horizon)  # the emulated day process's clock at each day's evening, from day 0
    clock = 0.0
    for d in range(horizon):
        wake = clock + (d - clock) if clock < d else clock
        clock = wake + (d + 1 - 1e-6 - wake)
        evening[d] = clock
    for length in (1, 2, 6, 41):
        first = np.arange(horizon - length + 1)
        last = first + length - 1
        before = np.where(first > 0, evening[np.maximum(first - 1, 0)], 0.0)
        np.testing.assert_array_equal(_evening_after(before, first, last), evening[last])


def test_skipping_quiet_days_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine with quiet days run at once equals the engine that runs every day in full, state included."""
    from regsim import quiet_days as qd
    from regsim.vector_world import VectorWorld

    n, steps = 24, 40
    skipped, folded = [0], [0]
    quiet_days = qd.quiet_days

    def counting(world: VectorWorld, rows: np.ndarray) -> np.ndarray:
        out = quiet_days(world, rows)
        skipped[0] += int(out.sum())
        # Stretches that pass an installment's due date (its booking is made at the stretch's end).
        s = world.ledger.sched
        came = np.minimum(s.came_due[rows], s.capacity - 1)
        falls = (s.came_due[rows] < s.n[rows]) & (s.due[rows, came] < world.local_day[rows] + out)
        folded[0] += int((falls & (out > 0)).sum())
        return out

    monkeypatch.setattr(qd, "quiet_days", counting)
    fast, slow = _skipping_equals_every_day(
        lambda skip: ArrangementVecEnv(n, months=MONTHS, skip_quiet_days=skip), steps, seed=7
    )
    _assert_same_state(fast, slow, ("cash", "boost", "annoyance", "streak", "shock_until", "shocks", "shock_days"))
    np.testing.assert_array_equal(fast.world.local_day, slow.world.local_day)
    np.testing.assert_array_equal(fast.world.ledger.status, slow.world.ledger.status)
    for name in ("came_due", "miss_ptr", "first_open", "n", "due", "paid"):
        fast_plan, slow_plan = fast.world.ledger.sched, slow.world.ledger.sched
        np.testing.assert_array_equal(getattr(fast_plan, name), getattr(slow_plan, name), err_msg=name)
    assert skipped[0] > 10 * n  # most days between decision points are quiet
    assert folded[0] > n  # and many quiet stretches pass a due date


def test_sums_by_chunk_match_running_sums_chunk_by_chunk() -> None:
    from regsim.rewards import _sum_by_chunk as _sum_by_append

    rng = np.random.default_rng(3)
    n = 7
    parts = [(rng.integers(0, n, size=k), rng.lognormal(3.0, 2.0, size=k)) for k in rng.integers(1, 6, size=60)]
    parts.append((np.array([2, 2, 5]), 1.5))  # a scalar amount, broadcast over its rows
    expected = np.zeros(n)
    for r, a in parts:  # the per-append arithmetic the vector env reproduces
        expected += np.bincount(r, weights=np.broadcast_to(a, r.shape), minlength=n)
    np.testing.assert_array_equal(_sum_by_append(parts, n), expected)
    np.testing.assert_array_equal(_sum_by_append([], n), np.zeros(n))


def test_event_queue_pops_each_rows_events_by_time_then_creation() -> None:
    from regsim.engine import EventQueue

    calls: list[tuple[str, list[int]]] = []
    q = EventQueue()

    def a(m: Any, t: Any) -> None:
        calls.append(("a", m.tolist()))

    q.push(np.array([2.0, 1.0, 2.0]), np.full(3, q.new_numbers(1)), np.array([0, 0, 1]), np.array([10, 11, 12]), a)
    q.push(np.array([1.0, 1.0]), np.full(2, q.new_numbers(1)), np.array([0, 0]), np.array([13, 14]), a)
    active = np.ones(2, dtype=bool)
    order = []
    while (heads := q.heads(active, np.array([1, 0]))) is not None:
        rows, times, made, entries, group = heads
        first = rows[0], times[0], made[0]
        take = (group == 0) & (q.time[entries] == first[1]) & (q.made[entries] == first[2])
        order.append((int(first[0]), q.mid[entries[take]].tolist()))
        q.remove(entries[take])
    # Row 1 ranks first; row 0: time 1.0 (created first: 11; then 13, 14 as scheduled), then time 2.0.
    assert order == [(1, [12]), (0, [11]), (0, [13, 14]), (0, [10])]


def test_skipping_draws_that_cannot_succeed_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pay-window and overdue days skipped by their draws (``_first_eventful_day``): the same as every day in full."""
    from regsim import quiet_days as qd
    from regsim.vector_world import VectorWorld

    n, steps = 64, 50
    looked = [0, 0]
    eventful_day = qd.first_eventful_day

    def counting(world: VectorWorld, rows: np.ndarray, start: np.ndarray, *args: Any) -> np.ndarray:
        out = eventful_day(world, rows, start, *args)
        looked[0] += int((out > start).sum())  # rows that skipped at least one day with a draw
        looked[1] += int(args[-1][out > start].sum())  # of them overdue
        return out

    monkeypatch.setattr(qd, "first_eventful_day", counting)
    fast, slow = _skipping_equals_every_day(
        lambda skip: ArrangementVecEnv(n, months=MONTHS, reward="completion_value", skip_quiet_days=skip),
        steps=steps,
        seed=11,
    )
    _assert_same_state(
        fast, slow, ("cash", "boost", "annoyance", "streak", "shock_until", "shocks", "shock_days", "disengaged")
    )
    assert looked[0] > n and looked[1] > 0  # draws were skipped, overdue rows among them


def test_skipping_shock_days_without_a_referral_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overdue rows in a shock skip the days whose referral draw fails; the referrals happen on the same days."""
    from regsim import quiet_days as qd
    from regsim.config import DEBTOR_TYPES, WorldConfig
    from regsim.vector_world import VectorWorld

    # Frequent long shocks and likely referrals, so that many skipped stretches lie inside a shock.
    config = WorldConfig().with_overrides(
        population={
            "shocks": {"referral_per_day": 0.05, "mean_duration_days": 90.0},
            "types": {t: {"shocks_per_year": 4.0} for t in DEBTOR_TYPES},
        }
    )
    n, steps = 48, 60
    in_shock = [0]
    quiet_days = qd.quiet_days

    def counting(world: VectorWorld, rows: np.ndarray) -> np.ndarray:
        out = quiet_days(world, rows)
        shocked = (world.state.shock_until[rows] > world.local_day[rows]) & (world.ledger.sched.overdue(rows) > 0)
        in_shock[0] += int((shocked & (out > 0)).sum())
        return out

    # Referrals counted as they happen: an ended slot's ledger row is reused at its autoreset.
    referred = [0]
    end = VectorWorld._end

    def ending(world: VectorWorld, ids: np.ndarray, t: Any, status: ArrangementStatus) -> None:
        referred[0] += len(ids) if status == ArrangementStatus.REFERRED else 0
        end(world, ids, t, status)

    monkeypatch.setattr(qd, "quiet_days", counting)
    monkeypatch.setattr(VectorWorld, "_end", ending)
    fast, slow = _skipping_equals_every_day(
        lambda skip: ArrangementVecEnv(n, config=config, months=MONTHS, skip_quiet_days=skip), steps=steps, seed=5
    )
    np.testing.assert_array_equal(fast.world.ledger.status, slow.world.ledger.status)
    assert in_shock[0] > n and referred[0] > 0  # shock days were skipped, and referrals happened


def test_lean_infos_keep_observations_rewards_and_final_observations() -> None:
    """``full_info=False`` (the SB3 adapter's) changes only the infos, and keeps the final observations."""
    n = 6
    full = ArrangementVecEnv(n, months=MONTHS, autoreset_mode=AutoresetMode.SAME_STEP, reward="holding")
    lean = ArrangementVecEnv(
        n, months=MONTHS, autoreset_mode=AutoresetMode.SAME_STEP, reward="holding", full_info=False
    )
    got = _run(lean, lean.action_masks, lean.space, steps=60, seed=2)
    expected = _run(full, full.action_masks, full.space, steps=60, seed=2)
    finals = 0
    for g, e in zip(got[1:], expected[1:], strict=True):
        for x, y in zip(g[:-1], e[:-1], strict=True):
            np.testing.assert_array_equal(x, y)
        assert set(g[-1]) <= {"final_obs", "_final_obs"}
        if "final_obs" in e[-1]:
            np.testing.assert_array_equal(g[-1]["_final_obs"], e[-1]["_final_obs"])
            for i in np.flatnonzero(e[-1]["_final_obs"]):
                np.testing.assert_array_equal(g[-1]["final_obs"][i], e[-1]["final_obs"][i])
                finals += 1
    assert finals >= 2


def test_skipping_the_pay_draws_of_rows_short_of_money_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows whose cash cannot pay skip their pay-window days up to their next payday: the same as every day."""
    from regsim.population import Population

    n, steps = 64, 60
    broke = [0]
    next_payday = Population.next_payday

    def counting(self: Population, day: np.ndarray, calendar: Any, ids: np.ndarray) -> np.ndarray:
        out = next_payday(self, day, calendar, ids)
        broke[0] += int((out > day).sum())  # rows short of money with days before their payday
        return out

    monkeypatch.setattr(Population, "next_payday", counting)
    fast, slow = _skipping_equals_every_day(
        lambda skip: ArrangementVecEnv(n, months=MONTHS, skip_quiet_days=skip), steps=steps, seed=13
    )
    _assert_same_state(fast, slow, ("cash", "boost", "annoyance", "streak", "shock_until", "shocks", "shock_days"))
    assert broke[0] > n  # many rows were short of money in their pay window


def test_skipping_pay_draws_of_annoyed_rows_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pay draws' bound takes the fatigue of the least annoyance a stretch can reach: the same as every day."""
    from regsim import behaviour
    from regsim.config import DEBTOR_TYPES, WorldConfig

    # Heavy, slowly fading annoyance that weighs on paying, so that the fatigue in the bound matters.
    config = WorldConfig().with_overrides(
        population={
            "fatigue": {"decay_days": 40.0, "weight": {c: 3.0 for c in ("email", "sms", "letter", "robocall")}},
            "types": {t: {"fatigue_sensitivity": 1.5} for t in DEBTOR_TYPES},
        }
    )
    n, steps = 48, 60
    tighter = [0]
    upper_bound = behaviour.pay_intent_upper_bound

    def counting(*args: Any, lowest_annoyance: Any = None, **kwargs: Any) -> Any:
        out = upper_bound(*args, lowest_annoyance=lowest_annoyance, **kwargs)
        tighter[0] += int((out < 0.5 * upper_bound(*args, **kwargs)).sum())  # days the fatigue halves the bound
        return out

    monkeypatch.setattr(behaviour, "pay_intent_upper_bound", counting)
    fast, slow = _skipping_equals_every_day(
        lambda skip: ArrangementVecEnv(n, config=config, months=MONTHS, skip_quiet_days=skip), steps=steps, seed=17
    )
    _assert_same_state(fast, slow, ("cash", "boost", "annoyance", "streak", "disengaged"))
    assert tighter[0] > n
