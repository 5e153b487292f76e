"""experiments.analysis: per-run details collected through evaluate's hook, and permutation feature importance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import agents
from agents.bandits.design import COMPACT_FEATURES
from agents.evaluate import evaluate
from agents.flat_actions import FlatActionWrapper
from agents.sb3 import POLICIES
from envs.arrangement import ArrangementEnv
from experiments.analysis import (
    FEATURE_GROUPS,
    MIX_COLUMNS,
    OUTCOME_COLUMNS,
    RESOURCE_COLUMNS,
    RunDetails,
    feature_importance,
)
from regsim import WorldConfig, simulate
from regsim.config import CHANNELS
from regsim.decision import ContextBatch
from regsim.features import feature_names, features
from regsim.world import World

CONFIG = WorldConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def details() -> tuple[RunDetails, Any]:
    d = RunDetails()
    ev = evaluate(["silent", "payday-aligned"], CONFIG, 120, [0, 1], months=2, on_result=d.add)
    return d, ev


@pytest.fixture(scope="module")
def contexts() -> ContextBatch:
    """Real contexts of the default world (150 arrangements, 2 months) driven by static dunning."""
    world = World(CONFIG, None, arrangements=150, months=2, seed=3)
    driver = agents.make("static-dunning")
    batches = []
    while (batch := world.next_decision()) is not None:
        batches.append(batch)
        world.submit(driver.decide_batch(batch))
    return ContextBatch.concat(batches)


@pytest.fixture(scope="module")
def bandit() -> Any:
    """A LinUCB bandit that has learned online for one small run."""
    policy = agents.make("linucb", seed=0)
    simulate(CONFIG, policy, arrangements=150, months=2, seed=11)
    return policy


def sb3_policy(algorithm: str, **kwargs: Any) -> Any:
    env = ArrangementEnv(invalid_action="fallback")
    cls = POLICIES[algorithm]
    target: Any = FlatActionWrapper(env) if algorithm == "dqn" else env
    extra: dict[str, Any] = {"buffer_size": 100} if algorithm == "dqn" else {}
    model = cls.model_class("MlpPolicy", target, seed=0, device="cpu", **extra)
    return cls.from_model(model, space=env.space, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# RunDetails
# ---------------------------------------------------------------------------------------------------------------
def test_run_details_tables_have_the_contract_columns(details: tuple[RunDetails, Any], tmp_path: Path) -> None:
    d, _ = details
    paths = d.write(tmp_path)
    assert set(paths) == {"outcomes", "mix", "resources"}
    for name, columns in (("outcomes", OUTCOME_COLUMNS), ("mix", MIX_COLUMNS), ("resources", RESOURCE_COLUMNS)):
        frame = pd.read_parquet(paths[name])
        assert tuple(frame.columns) == columns, name
        assert len(frame) > 0, name
    assert d.runs == sorted((p, s) for p in ("static-dunning", "silent", "payday-aligned") for s in (0, 1))


def test_outcomes_agree_with_the_evaluation(details: tuple[RunDetails, Any]) -> None:
    d, ev = details
    o = d.outcomes()
    for policy in ev.policies:
        mine = o[o["policy"] == policy]
        assert len(mine) == 2 * 120
        assert mine["completed"].mean() == pytest.approx(ev.row(policy, "completion_rate")["value"], abs=1e-12)
        assert mine["contacts"].mean() == pytest.approx(ev.row(policy, "contacts_per_arrangement")["value"])
        assert mine["broken"].mean() == pytest.approx(ev.row(policy, "breakdown_rate")["value"])
        assert mine["active"].mean() == pytest.approx(ev.row(policy, "active_rate")["value"])
        # Segments are the evaluation's: hidden types and debt bands.
        for label, group in mine.groupby("debtor_type"):
            assert len(group) == ev.row(policy, "completion_rate", f"debtor_type={label}")["n_arrangements"]
        for label, group in mine.groupby("debt_band"):
            assert len(group) == ev.row(policy, "completion_rate", f"debt_eur={label}")["n_arrangements"]
    per_channel = o[[f"contacts_{c}" for c in CHANNELS]].sum(axis=1)
    assert (per_channel == o["contacts"]).all()
    assert (o.loc[o["policy"] == "silent", "contacts"] == 0).all()


def test_mix_counts_every_message_once(details: tuple[RunDetails, Any]) -> None:
    d, _ = details
    o, m = d.outcomes(), d.mix()
    assert m["messages"].groupby(m["policy"]).sum().to_dict() == {
        p: int(v) for p, v in o["contacts"].groupby(o["policy"]).sum().items() if v > 0
    }
    assert m["hour"].between(0, 23).all()
    assert set(m["channel"]) <= set(CHANNELS)
    # payday-aligned sends its SMS in the evening (send_hour 19 by default).
    pa = m[(m["policy"] == "payday-aligned") & (m["channel"] == "sms")]
    assert pa.loc[pa["hour"] == 19, "messages"].sum() > 0.5 * pa["messages"].sum()


def test_resources_are_the_runs_queue_samples() -> None:
    d = RunDetails()
    result = simulate(CONFIG, agents.make("static-dunning"), arrangements=60, months=1, seed=2)
    d.add("static-dunning", 2, result)
    r = d.resources()
    assert len(r) == len(result.resources)
    assert (r["queued"].to_numpy() == result.resources["queued"].to_numpy()).all()
    assert (r["policy"] == "static-dunning").all() and (r["seed"] == 2).all()
    with pytest.raises(ValueError, match="added already"):
        d.add("static-dunning", 2, result)


def test_run_details_refuse_to_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no run was added"):
        RunDetails().write(tmp_path)


def test_run_details_are_reproducible(details: tuple[RunDetails, Any], tmp_path: Path) -> None:
    again = RunDetails()
    evaluate(["silent", "payday-aligned"], CONFIG, 120, [0, 1], months=2, on_result=again.add)
    first, second = details[0].write(tmp_path / "a"), again.write(tmp_path / "b")
    for name in first:
        pd.testing.assert_frame_equal(pd.read_parquet(first[name]), pd.read_parquet(second[name]))


# ---------------------------------------------------------------------------------------------------------------
# greedy_actions (the one method added to the learned policies)
# ---------------------------------------------------------------------------------------------------------------
def test_bandit_greedy_actions_are_exploit(bandit: Any, contexts: ContextBatch) -> None:
    state = bandit.rng.bit_generator.state
    decisions = bandit.decisions
    actions = bandit.greedy_actions(contexts, features(contexts))
    np.testing.assert_array_equal(actions, bandit.exploit(contexts).actions)
    assert bandit.rng.bit_generator.state == state and bandit.decisions == decisions
    with pytest.raises(ValueError, match="shape"):
        bandit.greedy_actions(contexts, features(contexts)[:, :5])


@pytest.mark.parametrize("algorithm", ["maskable-ppo", "ppo", "dqn"])
def test_sb3_greedy_actions_are_the_deterministic_decisions(algorithm: str, contexts: ContextBatch) -> None:
    deterministic = sb3_policy(algorithm, deterministic=True)
    sampled = sb3_policy(algorithm, deterministic=False, seed=4)
    expected = deterministic.decide_batch(contexts).actions
    state = sampled.rng.bit_generator.state
    np.testing.assert_array_equal(sampled.greedy_actions(contexts, features(contexts)), expected)
    assert sampled.deterministic is False, "greedy_actions must leave the policy's mode as it was"
    assert sampled.rng.bit_generator.state == state


# ---------------------------------------------------------------------------------------------------------------
# feature_importance
# ---------------------------------------------------------------------------------------------------------------
def test_bandit_importance_is_zero_exactly_for_features_it_does_not_see(bandit: Any) -> None:
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in bandit.state_dict().items()}
    fi = feature_importance(bandit, CONFIG, arrangements=80, months=1, seed=0, repeats=2)
    assert list(fi.columns) == ["feature", "importance", "rank"]
    assert fi["importance"].dtype == np.float64 and fi["rank"].dtype == np.int64
    assert fi.attrs["n_contexts"] > 100
    grouped = {n for n in feature_names() if any(n.startswith(p) for p in FEATURE_GROUPS)}
    assert set(fi["feature"]) == (set(feature_names()) - grouped) | set(FEATURE_GROUPS.values())
    assert fi["importance"].between(0, 1).all()
    assert (fi["importance"].diff().dropna() <= 0).all(), "sorted by importance, descending"
    assert fi["rank"].iloc[0] == 1 and (fi["rank"].diff().dropna() >= 0).all()
    unseen = [f for f in fi["feature"] if f not in COMPACT_FEATURES and f not in FEATURE_GROUPS.values()]
    assert (fi.set_index("feature").loc[unseen, "importance"] == 0).all()
    assert fi["importance"].iloc[0] > 0.05
    after = bandit.state_dict()
    for k, v in before.items():
        assert np.array_equal(np.asarray(after[k]), np.asarray(v)), f"feature_importance changed the bandit's {k}"


@pytest.mark.parametrize("algorithm", ["maskable-ppo", "dqn"])
def test_sb3_importance_is_reproducible_and_seeded(algorithm: str) -> None:
    policy = sb3_policy(algorithm)
    a = feature_importance(policy, CONFIG, arrangements=60, months=1, seed=1, repeats=1)
    b = feature_importance(policy, CONFIG, arrangements=60, months=1, seed=1, repeats=1)
    c = feature_importance(policy, CONFIG, arrangements=60, months=1, seed=2, repeats=1)
    pd.testing.assert_frame_equal(a, b)
    assert not a["importance"].equals(c["importance"])
    assert (a["importance"] > 0).any()


def test_importance_refuses_policies_without_greedy_actions_and_bad_sizes(bandit: Any) -> None:
    with pytest.raises(TypeError, match="greedy_actions"):
        feature_importance(agents.make("static-dunning"), CONFIG, arrangements=10, months=1, seed=0)
    for kwargs, field in (
        ({"arrangements": 0, "months": 1, "seed": 0}, "arrangements"),
        ({"arrangements": 5, "months": 0, "seed": 0}, "months"),
        ({"arrangements": 5, "months": 1, "seed": -1}, "seed"),
        ({"arrangements": 5, "months": 1, "seed": 0, "repeats": 0}, "repeats"),
    ):
        with pytest.raises(ValueError, match=field):
            feature_importance(bandit, CONFIG, **kwargs)
