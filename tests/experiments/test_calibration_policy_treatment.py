"""The treatment by the logging policy (``pairing="policy"``, experiments.calibration.replaying): every simulated
decision is the logging policy's own draw on the simulated state (in the world and seed that made the log, the log
comes back with its propensities); a log naming no registered policy is refused, naming the option; the same seed
gives the same moments to the bit; ``regsim calibrate --pairing policy`` records it in fit.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import agents
from experiments.calibration.moments import log_moments, moment_values
from experiments.calibration.replaying import LoggedDecisions, NoAction, Pairing, ReplayingPolicy, fallback_policy
from experiments.calibration.simulation import SimulationJob, simulate_point
from experiments.calibration.spec import parse_spec
from experiments.cli import main
from regsim import WorldConfig, simulate
from regsim.eventlog import write_events

WORLD = WorldConfig()
SPEC = "population.types.forgetful.attention: {low: 0.05, high: 0.5}\n"


@pytest.fixture(scope="module")
def log():
    return simulate(WORLD, agents.make("epsilon-mixture", seed=3), arrangements=300, months=3, seed=3)


@pytest.fixture(scope="module")
def decisions(log) -> LoggedDecisions:
    return LoggedDecisions.from_log(log.events)


def _unregistered(events: pa.Table) -> pa.Table:
    """The log with its decisions attributed to a policy no registry knows."""
    for column, value in (("policy", "some-vendor-model"), ("policy_version", "7")):
        at = events.schema.get_field_index(column)
        events = events.set_column(at, column, pa.array([value] * len(events), type=pa.string()))
    return events


def _job(decisions: LoggedDecisions, log, pairing: Pairing) -> SimulationJob:
    spec = parse_spec({"population.types.forgetful.attention": {"low": 0.05, "high": 0.5}}, WORLD)
    moments = log_moments(log.events, rng=np.random.default_rng(0), n_boot=5)
    return SimulationJob(WORLD, spec, moments.design, decisions, 300, 3, None, pairing)


def test_policy_treatment_in_the_logging_world_gives_the_log_back_with_its_propensities(log, decisions) -> None:
    # The logging policy's own draws (its stream seeded with the log's seed) on the same states: the log, to the
    # propensity. A replay would give propensity 1 at every decision; a policy seeded otherwise, other actions.
    policy = ReplayingPolicy(decisions, fallback_policy(decisions, seed=3), "policy")
    again = simulate(WORLD, policy, arrangements=300, months=3, seed=3)
    drop = ["policy", "policy_version"]
    assert again.events.drop_columns(drop).equals(log.events.drop_columns(drop))
    is_decision = pc.equal(again.events.column("event").cast(pa.string()), "decision")
    propensity = again.events.filter(is_decision).column("propensity").to_numpy()
    assert (propensity < 1.0).any()
    assert policy.stats.fallback == len(decisions) and policy.stats.replayed == policy.stats.partly_fallback == 0
    assert sum(policy.stats.by_kind.values()) == len(decisions)


class _Learner(NoAction):
    """A logging policy that learns online (a feedback window) and records what it is told."""

    feedback_window_days = 14.0
    feedback_reward = "net"

    def __init__(self) -> None:
        self.told: list[object] = []

    def update(self, feedback) -> None:
        self.told.append(feedback)


def test_a_learning_logging_policy_learns_under_the_policy_treatment(decisions) -> None:
    learner = _Learner()
    policy = ReplayingPolicy(decisions, learner, "policy")
    assert (policy.feedback_window_days, policy.feedback_reward) == (14.0, "net")
    policy.update("matured")  # type: ignore[arg-type]
    assert learner.told == ["matured"]
    replay = ReplayingPolicy(decisions, _Learner(), "arrangement")  # a replay learns nothing
    assert replay.feedback_window_days is None
    replay.update("matured")  # type: ignore[arg-type]
    assert replay.fallback.told == []  # type: ignore[attr-defined]


def test_a_simulation_point_runs_the_logging_policy_with_its_seed(log, decisions, tmp_path: Path) -> None:
    # Another seed, the world at the spec's value: the point's moments are those of the logging policy simulated
    # directly, its stream seeded with the simulation's seed, and differ from the replay's.
    job = _job(decisions, log, "policy")
    path = str(job.write(tmp_path / "policy"))
    got = simulate_point(path, 0, [0.4], 5)
    world = job.spec.apply(WORLD, [0.4])
    direct = simulate(world, agents.make("epsilon-mixture", seed=5), arrangements=300, months=3, seed=5)
    want = moment_values(direct.events, job.design, None)
    np.testing.assert_array_equal(got.values, want)
    replay = _job(decisions, log, "arrangement")
    replayed = simulate_point(str(replay.write(tmp_path / "replay")), 0, [0.4], 5)
    assert not np.array_equal(np.nan_to_num(replayed.values), np.nan_to_num(got.values))
    assert got.replay.fallback == got.replay.total > 0 and got.replay.replayed == 0


def test_the_same_seed_gives_the_same_moments_to_the_bit(log, decisions, tmp_path: Path) -> None:
    job = _job(decisions, log, "policy")
    first = simulate_point(str(job.write(tmp_path / "a")), 0, [0.3], 7).values
    again = simulate_point(str(job.write(tmp_path / "b")), 0, [0.3], 7).values
    other = simulate_point(str(job.write(tmp_path / "c")), 0, [0.3], 8).values
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(np.nan_to_num(first), np.nan_to_num(other))


def test_a_log_naming_no_registered_policy_is_refused(log, decisions) -> None:
    unknown = LoggedDecisions.from_log(_unregistered(log.events))
    assert unknown.policy == "some-vendor-model"
    message = r"--pairing policy: .*'some-vendor-model' version '7', not a registered policy.*--pairing arrangement"
    with pytest.raises(ValueError, match=message):
        ReplayingPolicy(unknown, NoAction(), "policy")
    with pytest.raises(ValueError, match=message):
        _job(unknown, log, "policy")
    none = decisions.with_table(decisions.table, None, None)
    with pytest.raises(ValueError, match="the log has no decision"):
        _job(none, log, "policy")
    ReplayingPolicy(unknown, NoAction(), "arrangement")  # the replays still take it (NoAction decides the rest)


def test_calibrate_with_policy_treatment_records_it(log, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "log"
    log.write(folder)
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    args = ["calibrate", "--log", str(folder), "--world", "default", "--params", str(tmp_path / "spec.yaml")]
    args += ["--trials", "4", "--holdout-months", "1", "--draws", "2", "--bootstrap", "20", "--quiet"]
    args += ["--pairing", "policy"]  # the default candidates: the ranking runs too
    assert main([*args, "--out", str(tmp_path / "fit")]) == 0
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text(encoding="utf-8"))
    assert fit["pairing"] == "policy"
    assert fit["replay"]["replayed"] == 0 and fit["replay"]["fallback"] > 0
    bad = tmp_path / "bad"
    bad.mkdir()
    write_events(_unregistered(log.events), bad / "events.parquet")
    args[2] = str(bad)
    assert main([*args, "--out", str(tmp_path / "fit-bad")]) == 2
    err = capsys.readouterr().err
    assert "--pairing policy" in err and "'some-vendor-model' version '7'" in err and "--pairing debtor" in err


def test_auto_pairing_simulates_a_registered_logging_policy_and_replays_any_other(log, decisions) -> None:
    """``auto`` (the default) resolves to ``policy`` where the log names a registered policy and to ``arrangement``
    where it does not; an explicit choice is kept; an unknown one is refused naming the choices. The parser's
    choices are the module's."""
    from experiments.calibration.cli import PAIRING_CHOICES as CLI_CHOICES
    from experiments.calibration.replaying import PAIRING_CHOICES, resolve_pairing

    assert CLI_CHOICES == PAIRING_CHOICES
    assert resolve_pairing("auto", decisions) == "policy"
    unknown = LoggedDecisions.from_log(_unregistered(log.events))
    assert resolve_pairing("auto", unknown) == "arrangement"
    assert resolve_pairing("debtor", decisions) == "debtor"
    with pytest.raises(ValueError, match="pairing: expected one of auto, arrangement, debtor, policy, got 'best'"):
        resolve_pairing("best", decisions)  # type: ignore[arg-type]
