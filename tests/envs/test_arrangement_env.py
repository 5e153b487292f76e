"""The Gymnasium adapter: API conformance, determinism, features from the log, no dynamics of its own."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import agents
import envs
from envs.arrangement import ArrangementEnv
from regsim import WorldConfig, simulate
from regsim.decision import RuleViolation
from regsim.eventlog import EventType
from regsim.features import FEATURE_LAYOUT, features
from regsim.metrics import kpis
from regsim.replay import contexts_from_log
from regsim.rewards import REWARDS, Outcomes, RewardCosts


def _do_nothing(env: ArrangementEnv) -> np.ndarray:
    """The masked-in action closest to "do nothing": the lowest allowed option of every part."""
    mask = env.action_masks()
    return np.array([int(np.argmax(mask[o : o + n])) for o, n in zip(env.space.offsets, env.space.nvec, strict=True)])


def _rollout(env: ArrangementEnv, seed: int, policy: str = "sample") -> list[tuple]:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [(obs, None, info["truth"])]
    while True:
        action = env.action_space.sample() if policy == "sample" else _do_nothing(env)
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs, reward, info["truth"], terminated, truncated))
        if terminated or truncated:
            return out


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_checkers_pass_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped, warn=True)


def test_same_seed_same_episode_and_different_seed_different_debtor() -> None:
    a = _rollout(ArrangementEnv(), seed=3)
    b = _rollout(ArrangementEnv(), seed=3)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]
    env = ArrangementEnv()
    env.reset(seed=3)
    first = env.world.gid[0]
    env.reset(seed=4)
    assert env.world.gid[0] != first


def test_observation_has_no_latent_state_and_layout_is_documented() -> None:
    env = ArrangementEnv()
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(FEATURE_LAYOUT),) and obs.dtype == np.float32
    latent = ("type", "cash", "shock", "willing", "attention", "notice", "annoy", "boost", "streak", "engaged")
    assert not [f.name for f in FEATURE_LAYOUT if any(word in f.name for word in latent)]
    assert all(f.unit and f.description and f.low < f.high for f in FEATURE_LAYOUT)
    assert set(info["truth"]) >= {"debtor_type", "free_cash_eur", "p_pay_today"}


@pytest.mark.parametrize("seed", [0, 1, 2, 5, 8])
def test_features_equal_those_recomputed_from_the_episode_log(seed: int) -> None:
    env = ArrangementEnv()
    observations = [o[0] for o in _rollout(env, seed=seed)]
    replayed = contexts_from_log(env.world.log.to_table(), env.config)
    recomputed = features(replayed)
    # Every step's observation is a decision point's context; the terminal one repeats the last.
    np.testing.assert_array_equal(np.stack(observations[: len(recomputed)]), recomputed)


def test_do_nothing_reproduces_the_silent_population_run() -> None:
    """The adapter adds no dynamics: episode by episode, the silent run's arrangements come out the same."""
    n, months, seed = 60, 12, 7
    config = WorldConfig()
    population = simulate(config, agents.make("silent"), arrangements=n, months=months, seed=seed)
    env = ArrangementEnv(config=config, months=months, world_seed=seed)
    tables = []
    for k in range(n):
        env.reset(options={"arrangement_id": k})
        while True:
            *_, terminated, truncated, _ = env.step(_do_nothing(env))
            if terminated or truncated:
                break
        tables.append(env.world.log.to_table())
    import pyarrow as pa

    episodes = pa.concat_tables(tables)
    got, expected = kpis(episodes), population.kpis
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, nan_ok=True), name

    # Payments, to the cent and the second, are the same too.
    def payments(table):
        codes = np.array(table.column("event").to_pylist())
        m = codes == EventType.PAYMENT.name.lower()
        rows = sorted(
            zip(
                np.asarray(table.column("arrangement_id"))[m],
                np.asarray(table.column("time"))[m],
                np.asarray(table.column("amount_eur"))[m],
                strict=True,
            )
        )
        return rows

    assert payments(episodes) == payments(population.events)


def _world_with_a_night_slot() -> WorldConfig:
    slots = [{"day_offset": 0, "hour": 10}, {"day_offset": 0, "hour": 22}]
    return WorldConfig().with_overrides(decisions={"send_slots": slots})


def test_masked_action_is_replaced_by_default_or_refused_naming_the_rule() -> None:
    env = ArrangementEnv(config=_world_with_a_night_slot(), invalid_action="raise")
    env.reset(seed=0)
    assert not env.action_masks()[env.space.offsets[1] + 1]  # 22:00 is a quiet hour
    night_sms = np.array([2, 1, 0, 0, 0])
    with pytest.raises(RuleViolation, match="quiet_hours"):
        env.step(night_sms)
    for mode in ("replace", "fallback"):  # the default, and its former name
        replacing = ArrangementEnv(
            config=_world_with_a_night_slot(), **({} if mode == "replace" else {"invalid_action": mode})
        )
        replacing.reset(seed=0)
        *_, info = replacing.step(night_sms)
        assert info["replaced_actions"] == info["fallbacks"] == 1


def test_parts_that_do_not_apply_are_ignored_not_refused() -> None:
    """A deferral at plan creation has no meaning: it is applied and logged as "no change"."""
    env = ArrangementEnv()
    env.reset(seed=0)
    env.step(np.array([0, 0, 0, 3, 2]))
    table = env.world.log.to_table()
    decision = table.filter(np.array(table.column("event").to_pylist()) == "decision")
    assert decision.column("a_deferral")[0].as_py() == 0 and decision.column("a_reduction")[0].as_py() == 0


@pytest.mark.parametrize("bad", [{"reward": "nope"}, {"invalid_action": "ignore"}, {"months": 0}])
def test_bad_arguments_name_the_field(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        ArrangementEnv(**bad)


def _episode_totals(table: Any) -> dict[str, float]:
    """What an episode's event log says, summed: euros paid, message costs, completion, breakdown."""
    events = np.array(table.column("event").to_pylist())
    amount = np.nan_to_num(np.asarray(table.column("amount_eur").to_numpy(zero_copy_only=False), dtype=float))
    return {
        "paid": float(amount[events == "payment"].sum()),
        "cost": float(amount[events == "message_sent"].sum()),
        "completed": float((events == "completed").any()),
        "broken": float((events == "broken").any()),
    }


@pytest.mark.parametrize("seed", [1, 4, 9])
def test_episode_rewards_add_up_to_what_its_log_records(seed: int) -> None:
    """The step rewards of an episode sum to the reward of its whole event log (nothing dropped or doubled)."""
    for reward in ("collected", "completion"):
        env = ArrangementEnv(reward=reward, months=12)
        total = sum(r[1] for r in _rollout(env, seed=seed)[1:])
        log = _episode_totals(env.world.log.to_table())
        if reward == "collected":
            breakdown = env.config.arrangements.breakdown_cost_eur
            expected = 0.01 * (log["paid"] - log["cost"] - breakdown * log["broken"])
        else:
            expected = log["completed"] - log["broken"]
        assert total == pytest.approx(expected, abs=1e-9), reward
    assert log["paid"] > 0  # (the episode paid something: the check is not vacuous)


@pytest.mark.parametrize("reward", sorted(REWARDS))
def test_every_named_reward_is_the_reward_of_the_steps_outcome(reward: str) -> None:
    env = ArrangementEnv(reward=reward)
    env.reset(seed=2)
    env.action_space.seed(2)
    for _ in range(12):
        *_, r, terminated, truncated, info = env.step(env.action_space.sample())
        outcome = Outcomes(**{k: np.array([v]) for k, v in info["outcome"].items()})
        assert r == float(REWARDS[reward](outcome, RewardCosts.of(env.config))[0])
        if terminated or truncated:
            break


@pytest.mark.parametrize("vectorization_mode", ["sync", "async"])
def test_gymnasium_make_vec_seeds_copy_i_with_seed_plus_i(vectorization_mode: str) -> None:
    vec = gym.make_vec("regsim/Arrangement-v0", num_envs=2, vectorization_mode=vectorization_mode)
    obs, _ = vec.reset(seed=10)
    single = ArrangementEnv()
    for i in range(2):
        expected, _ = single.reset(seed=10 + i)
        np.testing.assert_array_equal(obs[i], expected)
    vec.close()


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_sb3_vec_envs_step_copy_i_as_the_single_env_with_seed_plus_i(vec_cls: type) -> None:
    vec = vec_cls([lambda: ArrangementEnv() for _ in range(2)])
    vec.seed(20)
    obs = vec.reset()
    singles = [ArrangementEnv() for _ in range(2)]
    for i, single in enumerate(singles):
        expected, _ = single.reset(seed=20 + i)
        np.testing.assert_array_equal(obs[i], expected)
    for _ in range(5):
        masks = np.stack(vec.env_method("action_masks"))
        np.testing.assert_array_equal(masks, np.stack([s.action_masks() for s in singles]))
        actions = np.stack([_do_nothing(s) for s in singles])
        obs, rewards, dones, _ = vec.step(actions)
        for i, single in enumerate(singles):
            o, r, te, tr, _ = single.step(actions[i])
            assert (rewards[i], dones[i]) == (pytest.approx(r), te or tr)
            if not (te or tr):
                np.testing.assert_array_equal(obs[i], o)
    vec.close()


def test_maskable_ppo_trained_on_the_env_acts_within_the_masks() -> None:
    """MaskablePPO trains on the single env; its sampled actions are allowed by the masks at every decision point
    (a masked one would raise: the env refuses it), and the same seed trains the same weights."""
    from sb3_contrib import MaskablePPO

    def trained() -> MaskablePPO:
        model = MaskablePPO(
            "MlpPolicy", ArrangementEnv(), n_steps=256, batch_size=128, n_epochs=2, seed=0, verbose=0, device="cpu"
        )
        return model.learn(total_timesteps=512)

    a, b = trained(), trained()
    for x, y in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert bool((x == y).all())
    env = ArrangementEnv()
    obs, _ = env.reset(seed=99)
    steps = 0
    for _ in range(60):
        mask = env.action_masks()
        action, _ = a.predict(obs, action_masks=mask, deterministic=False)
        assert all(mask[o + int(action[p])] for p, o in enumerate(env.space.offsets))
        obs, _, terminated, truncated, _ = env.step(action)  # (raises RuleViolation on a masked action)
        steps += 1
        if terminated or truncated:
            obs, _ = env.reset(seed=100 + steps)
    assert steps == 60
