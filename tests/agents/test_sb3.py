"""SB3 policies: learning a known optimum, determinism, artifacts, propensities and masks.

The learning tests train on a small world whose optimum is provable (see :func:`dominant_channel_world`) for
1,024 steps, ~10 s each on one core: MaskablePPO's runs in the default suite, PPO's and DQN's are marked
``statistical``. Everything else uses tiny budgets or untrained networks with adversarial weights.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from stable_baselines3.common.policies import BasePolicy

from agents.artifact import ArtifactError, load_policy
from agents.flat_actions import FlatActions, FlatActionWrapper
from agents.reference import RandomPolicy
from agents.sb3 import (
    POLICIES,
    SB3DQNPolicy,
    SB3MaskablePPOPolicy,
    SB3Policy,
)
from agents.train import train_policy
from envs.arrangement import ArrangementEnv
from regsim import Policy, World, WorldConfig
from regsim.config import CHANNELS, DEBTOR_TYPES
from regsim.decision import PART_NAMES, ContextBatch, DecisionKind
from regsim.rewards import Outcomes, RewardCosts

ALGORITHMS = sorted(POLICIES)
SMS = 1 + CHANNELS.index("sms")


# ----------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ----------------------------------------------------------------------------------------------------------
def dominant_channel_world() -> WorldConfig:
    """A world in which sending an SMS is optimal at every decision point, provably.

    * No message is ever noticed (every type's notice probability is 0 on every channel) and contacts cause
      no fatigue or opt-outs, so what the debtor does is independent of every decision.
    * The only re-planning options are "no change" (one deferral and one reduction option, one due day equal
      to the default), and contact caps and quiet hours are off, so decisions change nothing but the
      messages sent, and one send slot (day 0, 10:00).
    * Reward :func:`contacts_minus_cost`: +1 per message sent minus its cost; SMS costs 0, every other
      channel 5 EUR. Sending an SMS earns +1, no contact 0, any other channel -4, and (the world being
      independent of decisions) the future is the same whatever is chosen: SMS is the unique optimum of
      every state, for any discount.
    """
    never = dict.fromkeys(CHANNELS, 0.0)
    return WorldConfig().with_overrides(
        population={
            "types": {t: {"notice": never} for t in DEBTOR_TYPES},
            "fatigue": {"weight": never, "opt_out_per_contact": 0.0},
        },
        channels={c: {"cost_eur": 0.0 if c == "sms" else 5.0} for c in CHANNELS},
        decisions={
            "send_slots": [{"day_offset": 0, "hour": 10}],
            "due_day_options": [1],
            "deferral_options": [0],
            "reduction_options": [0.0],
        },
        rules={"contact_cap_enabled": False, "quiet_hours_enabled": False},
        simulation={"months": 2},
    )


def contacts_minus_cost(outcome: Outcomes, costs: RewardCosts) -> np.ndarray:
    """+1 per message sent minus the messages' cost in EUR."""
    return outcome.contacts - outcome.contact_cost_eur


def drive(world: World, policy: Policy, check: Any = None) -> int:
    """Run a policy-less world with ``policy``; ``check(batch, decisions)`` sees every batch. Returns rows."""
    rows = 0
    while (batch := world.next_decision()) is not None:
        decisions = policy.decide_batch(batch)
        if check is not None:
            check(batch, decisions)
        world.submit(decisions)  # raises RuleViolation on a masked option
        rows += len(batch)
    return rows


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def contexts() -> ContextBatch:
    """Real contexts of the default world: 200 arrangements, 2 months, under the random logging policy."""
    world = World(WorldConfig(), None, arrangements=200, months=2, seed=0)
    batches: list[ContextBatch] = []
    drive(world, RandomPolicy(seed=0), lambda b, _: batches.append(b))
    return ContextBatch.concat(batches)


@pytest.fixture(scope="module")
def env() -> ArrangementEnv:
    return ArrangementEnv(invalid_action="fallback")


def untrained(algorithm: str, env: ArrangementEnv, *, action_parts: Any = None, **kwargs: Any) -> SB3Policy:
    """A policy around a freshly initialised SB3 model of the default env (no training)."""
    cls = POLICIES[algorithm]
    target: Any = FlatActionWrapper(env, action_parts or ("channel", "send_slot")) if algorithm == "dqn" else env
    extra: dict[str, Any] = {"buffer_size": 100} if algorithm == "dqn" else {}
    model = cls.model_class("MlpPolicy", target, seed=0, device="cpu", **extra)
    return cls.from_model(model, space=env.space, action_parts=action_parts, **kwargs)


def adversarial(policy: SB3Policy, contexts: ContextBatch) -> SB3Policy:
    """Rig the output layer so that the options masked most often get the highest scores."""
    net: Any = policy.network
    layer: Any
    if isinstance(policy, SB3DQNPolicy):
        layer = net.q_net.q_net[-1]
        allowed = policy.flat.flat_mask(contexts.mask).mean(axis=0)
    else:
        layer = net.action_net
        allowed = contexts.mask.mean(axis=0)
    with torch.no_grad():
        layer.weight.mul_(0.01)
        layer.bias.copy_(torch.as_tensor(20.0 * (1.0 - allowed), dtype=torch.float32))
    return policy


def assert_allowed(batch: ContextBatch, actions: np.ndarray) -> None:
    for part, off in enumerate(batch.space.offsets):
        chosen = batch.mask[np.arange(len(batch)), off + actions[:, part]]
        assert chosen.all(), f"part {PART_NAMES[part]}: masked option chosen in rows {np.flatnonzero(~chosen)[:5]}"


def state_dict(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "weights.pt", weights_only=True)


TINY_SLOTS = 8
TINY = {
    # Vector rollouts of TINY_SLOTS slots: 8 steps per slot, 64 transitions per update.
    "ppo": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
    "maskable-ppo": {"n_steps": 8, "batch_size": 32, "n_epochs": 2},
    "dqn": {"learning_starts": 32, "buffer_size": 1_000, "target_update_interval": 32, "train_freq": 4},
}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """MaskablePPO trained twice with the same seed and once with another, 128 steps each (vector rollouts)."""
    out = []
    for i, seed in enumerate((7, 7, 8)):
        folder = train_policy(
            "maskable-ppo",
            config=WorldConfig(),
            steps=128,
            seed=seed,
            out=tmp_path_factory.mktemp(f"run{i}"),
            algo_kwargs=TINY["maskable-ppo"],
            n_envs=TINY_SLOTS,
            progress=False,
            tensorboard=i == 0,
            eval_arrangements=50 if i == 0 else 0,
        )
        out.append(folder)
    return out


# ----------------------------------------------------------------------------------------------------------
# Learning a known optimum
# ----------------------------------------------------------------------------------------------------------
LEARN = {
    # A myopic discount suffices (the future does not depend on the action) and lowers the variance.
    "ppo": {"n_steps": 16, "batch_size": 64, "n_epochs": 5, "learning_rate": 1e-2, "ent_coef": 0.0, "gamma": 0.5},
    "maskable-ppo": {
        "n_steps": 16,
        "batch_size": 64,
        "n_epochs": 5,
        "learning_rate": 1e-2,
        "ent_coef": 0.0,
        "gamma": 0.5,
    },
    "dqn": {
        "learning_starts": 200,
        "target_update_interval": 200,
        "exploration_fraction": 0.5,
        "train_freq": 1,
        "gradient_steps": 16,  # (one per transition of the 16 slots)
        "learning_rate": 1e-3,
        "gamma": 0.5,
    },
}


@pytest.mark.parametrize(
    "algorithm",
    # MaskablePPO (the production learner) runs in the default suite; the others take ~10 s each more.
    [a if a == "maskable-ppo" else pytest.param(a, marks=pytest.mark.statistical) for a in ALGORITHMS],
)
def test_every_algorithm_learns_the_dominant_channel(algorithm: str, tmp_path: Path) -> None:
    config = dominant_channel_world()
    folder = train_policy(
        algorithm,
        config=config,
        # PPO and MaskablePPO train on vector rollouts (16 slots x 16 steps), whose decisions are cheap; plan
        # creations (one per episode) are the rarest states and need the larger budget.
        steps=2048 if algorithm == "maskable-ppo" else 1024,
        n_envs=16,
        seed=0,
        out=tmp_path,
        env_kwargs={"reward": contacts_minus_cost},
        algo_kwargs=LEARN[algorithm],
        progress=False,
        tensorboard=False,
        action_parts=("channel",) if algorithm == "dqn" else None,
        eval_arrangements=0,
    )
    policy = load_policy(folder, rules_version=config.rules.version)
    # States the policy itself visits, in a population it was not trained on (another world seed).
    picks: Counter[tuple[str, bool]] = Counter()

    def count(batch: ContextBatch, decisions: Any) -> None:
        sms_allowed = batch.mask[:, SMS]
        for kind, ok, action in zip(batch.columns["kind"], sms_allowed, decisions.actions[:, 0], strict=True):
            if ok:
                picks[(DecisionKind(int(kind)).name, bool(action == SMS))] += 1

    drive(World(config, None, arrangements=200, months=2, seed=1), policy, count)
    total = sum(picks.values())
    share = sum(n for (_, hit), n in picks.items() if hit) / total
    assert total > 500
    assert share >= 0.95, f"{algorithm}: SMS in {share:.1%} of {total} states; misses by kind: {picks}"
    for kind in ("PRE_DUE", "MISSED"):
        assert picks[(kind, True)] >= 0.95 * (picks[(kind, True)] + picks[(kind, False)]), picks


# ----------------------------------------------------------------------------------------------------------
# Training: reproducibility, provenance, arguments
# ----------------------------------------------------------------------------------------------------------
def test_same_seed_same_weights_and_decisions(tiny_runs: list[Path], contexts: ContextBatch) -> None:
    a, b, other = (state_dict(f) for f in tiny_runs)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], other[k]) for k in a)
    for deterministic in (True, False):
        pa, pb = (load_policy(f, deterministic=deterministic, seed=3) for f in tiny_runs[:2])
        da, db = pa.decide_batch(contexts), pb.decide_batch(contexts)
        np.testing.assert_array_equal(da.actions, db.actions)
        np.testing.assert_array_equal(da.propensity, db.propensity)
    assert pa.version == pb.version != load_policy(tiny_runs[2]).version


def test_training_leaves_provenance_logs_and_metrics(tiny_runs: list[Path]) -> None:
    folder = tiny_runs[0]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "sb3-maskable-ppo" and manifest["policy_name"] == "sb3-maskable-ppo"
    assert manifest["rules_version"] == WorldConfig().rules.version
    assert manifest["training"]["seed"] == 7 and manifest["training"]["steps"] == 128
    assert manifest["training"]["env_kwargs"]["invalid_action"] == "raise"
    assert manifest["training"]["world_config"] == WorldConfig().model_dump(mode="json")
    assert set(manifest["files"]) == {"network.json", "weights.pt"}
    assert all(manifest["packages"][p] for p in ("torch", "stable_baselines3", "sb3_contrib", "numpy", "gymnasium"))
    metrics = manifest["metrics"]
    # SB3 rounds up to whole rollouts, so training uses at least the budget.
    assert metrics["trained_steps"] >= 128 and metrics["eval"]["arrangements"] == 50
    assert 0.0 <= metrics["eval"]["completion_rate"] <= 1.0
    assert list((folder.parent / "tb").rglob("events.out.tfevents.*"))
    assert not (tiny_runs[1].parent / "tb").exists()


@pytest.mark.parametrize("algorithm", ["ppo", "dqn"])
def test_ppo_and_dqn_train_reproducibly_and_load(algorithm: str, tmp_path: Path, contexts: ContextBatch) -> None:
    folders = [
        train_policy(
            algorithm,
            config=WorldConfig(),
            steps=64,
            seed=0,
            out=tmp_path / str(i),
            algo_kwargs=TINY[algorithm],
            n_envs=TINY_SLOTS if algorithm == "ppo" else None,
            progress=i == 0,
            tensorboard=False,
            eval_arrangements=20 * (1 - i),
        )
        for i in range(2)
    ]
    a, b = (state_dict(f) for f in folders)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["training"]["env_kwargs"]["invalid_action"] == "fallback"
    assert manifest["metrics"]["eval"]["arrangements"] == 20
    policy = load_policy(folders[0])
    assert policy.name == POLICIES[algorithm].kind
    decisions = policy.decide_batch(contexts)
    assert_allowed(contexts, decisions.actions)
    np.testing.assert_array_equal(decisions.actions, load_policy(folders[1]).decide_batch(contexts).actions)


BAD_TRAINING: list[tuple[dict[str, Any], str]] = [
    ({"algorithm": "a2c"}, "algorithm"),
    ({"steps": 0}, "steps"),
    ({"seed": -1}, "seed"),
    ({"env_kwargs": {"invalid_action": "raise"}}, "env_kwargs"),
    ({"env_kwargs": {"config": None}}, "env_kwargs"),
    ({"algo_kwargs": {"seed": 3}}, "algo_kwargs"),
    ({"action_parts": ("channel",)}, "action_parts"),
    ({"env_kwargs": {"reward": "nope"}}, "reward"),
    ({"n_envs": 0}, "n_envs"),
    ({"n_envs": 4, "workers": 5}, "workers"),
    ({"workers": 0}, "workers"),
]


@pytest.mark.parametrize(("override", "field"), BAD_TRAINING, ids=[f for _, f in BAD_TRAINING])
def test_train_policy_refuses_bad_arguments(override: dict[str, Any], field: str, tmp_path: Path) -> None:
    kwargs: dict[str, Any] = {"algorithm": "ppo", "config": WorldConfig(), "steps": 10, "seed": 0, "out": tmp_path}
    kwargs.update(override)
    algorithm = kwargs.pop("algorithm")
    with pytest.raises(ValueError, match=field):
        train_policy(algorithm, **kwargs)


def test_train_policy_refuses_an_existing_artifact(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    with pytest.raises(FileExistsError, match="policy"):
        train_policy("ppo", config=WorldConfig(), steps=10, seed=0, out=tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Artifacts
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("deterministic", [True, False])
def test_save_load_gives_identical_decisions(
    algorithm: str, deterministic: bool, env: ArrangementEnv, contexts: ContextBatch, tmp_path: Path
) -> None:
    policy = untrained(algorithm, env, deterministic=deterministic, seed=5)
    folder = policy.save(tmp_path / "policy", rules_version="rules-1", training={"seed": 0}, metrics={})
    loaded = load_policy(folder, rules_version="rules-1", deterministic=deterministic, seed=5)
    assert type(loaded) is type(policy)
    assert (loaded.name, loaded.version) == (policy.name, policy.version)
    a, b = policy.decide_batch(contexts), loaded.decide_batch(contexts)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.propensity, b.propensity)
    if deterministic:
        assert loaded.decide(contexts[3]).action() == tuple(int(x) for x in a.actions[3])


def test_tampered_weights_and_mismatches_are_refused(env: ArrangementEnv, tmp_path: Path, monkeypatch: Any) -> None:
    folder = untrained("maskable-ppo", env).save(tmp_path / "p", rules_version="rules-1", training={}, metrics={})
    with pytest.raises(ArtifactError, match=r"rules-1.*rules-2|rules-2.*rules-1"):
        load_policy(folder, rules_version="rules-2")
    monkeypatch.setattr("regsim.features.FEATURE_VERSION", "features-99")
    with pytest.raises(ArtifactError) as info:
        load_policy(folder)
    assert "features-1" in str(info.value) and "features-99" in str(info.value)
    monkeypatch.undo()
    weights = folder / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"weights\.pt"):
        load_policy(folder)


class _Payload:
    """Anything that is not a tensor: unpickling it would run code of the pickle's choosing."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("unpickled!",))


def test_weights_are_never_unpickled_as_code(env: ArrangementEnv, tmp_path: Path, capsys: Any) -> None:
    from agents.artifact import write_manifest

    folder = untrained("ppo", env).save(tmp_path / "p", rules_version="rules-1", training={}, metrics={})
    torch.save({"payload": _Payload()}, folder / "weights.pt")
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").unlink()
    write_manifest(
        folder,
        kind=manifest["kind"],
        policy_name=manifest["policy_name"],
        policy_version=manifest["policy_version"],
        rules_version="rules-1",
        training={},
        metrics={},
    )
    with pytest.raises(ArtifactError, match=r"weights\.pt"):
        load_policy(folder)
    assert "unpickled!" not in capsys.readouterr().out


def test_contexts_of_another_action_space_are_refused(env: ArrangementEnv) -> None:
    policy = untrained("maskable-ppo", env)
    world = World(dominant_channel_world(), None, arrangements=20, months=1, seed=0)
    batch = world.next_decision()
    assert batch is not None
    with pytest.raises(ValueError, match="action options"):
        policy.decide_batch(batch)


# ----------------------------------------------------------------------------------------------------------
# Masks and propensities
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "sampled"])
def test_masked_options_are_never_chosen(deterministic: bool, env: ArrangementEnv, contexts: ContextBatch) -> None:
    policies = [
        adversarial(untrained(a, env, deterministic=deterministic, seed=1), contexts) for a in ("ppo", "maskable-ppo")
    ]
    policies += [
        adversarial(untrained("dqn", env, action_parts=parts, deterministic=deterministic, seed=1), contexts)
        for parts in (("channel", "send_slot"), PART_NAMES)
    ]
    for policy in policies:
        decisions = policy.decide_batch(contexts)
        assert_allowed(contexts, decisions.actions)
        assert ((decisions.propensity > 0) & (decisions.propensity <= 1)).all()
        if deterministic:
            assert (decisions.propensity == 1).all()
    # And in a live world, whose rules refuse any masked option (RuleViolation), for every policy at once.
    world = World(WorldConfig(), None, arrangements=200, months=2, seed=3)

    def check(batch: ContextBatch, _: Any) -> None:
        for policy in policies:
            assert_allowed(batch, policy.decide_batch(batch).actions)

    assert drive(world, policies[1], check) > 0


def test_sampled_maskable_ppo_frequencies_match_propensities(env: ArrangementEnv, contexts: ContextBatch) -> None:
    """Chi-square goodness of fit of 20,000 draws on one context, alpha = 0.001."""
    policy = untrained("maskable-ppo", env, deterministic=False, seed=11)
    assert isinstance(policy, SB3MaskablePPOPolicy)
    layer: Any = policy.network.action_net
    with torch.no_grad():  # constant, clearly non-uniform logits: bias ~ N(0, 1), no weights
        layer.weight.zero_()
        layer.bias.copy_(torch.as_tensor(np.random.default_rng(0).normal(size=layer.bias.shape), dtype=torch.float32))
    # A missed installment: deferral and reduction options are open as well as channel and slot.
    row = int(np.flatnonzero(contexts.columns["kind"] == DecisionKind.MISSED)[0])
    one = contexts.take(np.full(100, row))
    # The distribution by construction: per part, softmax of the bias over the allowed options.
    bias = layer.bias.detach().numpy().astype(np.float64)
    expected_parts = []
    for part, off in enumerate(one.space.offsets):
        n = one.space.nvec[part]
        allowed = one.mask[0, off : off + n]
        p = np.where(allowed, np.exp(bias[off : off + n]), 0.0)
        expected_parts.append(p / p.sum())
    counts: Counter[tuple[int, ...]] = Counter()
    for _ in range(200):  # many calls, 100 draws each
        decisions = policy.decide_batch(one)
        for action, propensity in zip(decisions.actions, decisions.propensity, strict=True):
            key = tuple(int(a) for a in action)
            want = np.prod([expected_parts[j][a] for j, a in enumerate(key)])
            assert propensity == pytest.approx(want, rel=1e-6)
            counts[key] += 1
    n = sum(counts.values())
    joint = expected_parts[0]
    for p in expected_parts[1:]:
        joint = np.multiply.outer(joint, p)
    keys = [k for k in np.ndindex(joint.shape) if joint[k] > 0]
    assert all(joint[k] > 0 for k in counts), "a draw of probability 0"
    exp = np.array([joint[k] * n for k in keys])
    obs = np.array([counts.get(k, 0) for k in keys], dtype=float)
    big = exp >= 5  # pool sparse cells so the chi-square approximation holds
    exp = np.append(exp[big], exp[~big].sum())
    obs = np.append(obs[big], obs[~big].sum())
    assert len(exp) > 20
    result = stats.chisquare(obs, exp)
    assert result.pvalue > 0.001, result


def test_dqn_epsilon_greedy_propensities(env: ArrangementEnv, contexts: ContextBatch) -> None:
    policy = untrained("dqn", env, deterministic=False, seed=2)
    assert isinstance(policy, SB3DQNPolicy)
    greedy = untrained("dqn", env, deterministic=True).decide_batch(contexts).actions
    decisions = policy.decide_batch(contexts)
    k = policy.flat.flat_mask(contexts.mask).sum(axis=1)
    is_greedy = (decisions.actions == greedy).all(axis=1)
    eps = policy.epsilon
    np.testing.assert_allclose(decisions.propensity, np.where(is_greedy, 1 - eps + eps / k, eps / k))
    assert 0 < (~is_greedy).mean() < 2 * eps


def test_flat_actions_round_trip(contexts: ContextBatch) -> None:
    flat = FlatActions.from_names(contexts.space.nvec, ("channel", "deferral"))
    assert flat.names == ("channel", "deferral")
    assert flat.size == contexts.space.nvec[0] * contexts.space.nvec[3]
    mask = flat.flat_mask(contexts.mask)
    for row in range(0, len(contexts), 97):
        for index in np.flatnonzero(mask[row]):
            action = flat.to_multi(np.array([index]), contexts.mask[row : row + 1])[0]
            assert_allowed(contexts.take(np.array([row])), action[None, :])
            assert np.ravel_multi_index((action[0], action[3]), (flat.nvec[0], flat.nvec[3])) == index
    with pytest.raises(ValueError, match="allowed"):
        FlatActions.from_names(contexts.space.nvec, ("colour",))


def test_flat_action_wrapper_steps_the_env() -> None:
    wrapped = FlatActionWrapper(ArrangementEnv(invalid_action="raise"), ("channel",))
    wrapped.reset(seed=0)
    for _ in range(5):
        mask = wrapped.action_masks()
        action = int(np.flatnonzero(mask)[-1])
        *_, terminated, truncated, _ = wrapped.step(np.int64(action))
        if terminated or truncated:
            break


def test_network_is_a_plain_sb3_policy(env: ArrangementEnv) -> None:
    for algorithm in ALGORITHMS:
        policy = untrained(algorithm, env)
        assert isinstance(policy.network, BasePolicy) and isinstance(policy, Policy)
        rebuilt = type(policy).build_network(policy.spec)
        assert rebuilt.state_dict().keys() == policy.network.state_dict().keys()
