"""Bad experiment configs and bad ``--set`` values are refused with the dotted path of the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments.cli import main
from experiments.config import (
    ExperimentConfigError,
    apply_override,
    load_experiment_config,
    parse_experiment_config,
    parse_override,
)

GOOD: dict[str, Any] = {
    "name": "good",
    "question": "Is this config good?",
    "seed": 1,
    "env": {"reward": "completion_value", "months": 2},
    "agents": [
        {"name": "ucb", "kind": "linucb", "hyperparameters": {"alpha": 1.0}, "train": {"steps": 100}},
        {"name": "mppo", "kind": "maskable-ppo", "hyperparameters": {"n_steps": 64}, "train": {"steps": 64}},
    ],
    "policies": ["silent"],
    "evaluation": {"arrangements": 50, "months": 2, "seeds": 1},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one raw change (no schema check: unknown keys get through to validation); agents by name."""
    data = copy.deepcopy(GOOD)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = next(item for item in node if item["name"] == part)
        else:
            node = node.setdefault(part, {})
    node[parts[-1]] = value
    return data


def test_the_good_config_is_valid_and_round_trips() -> None:
    config = parse_experiment_config(GOOD)
    again = parse_experiment_config(yaml.safe_load(config.to_yaml()))
    assert again == config
    assert config.compared == ["ucb", "mppo", "silent", "static-dunning"]


# (config change as (dotted path, value), text the error must contain: the field's dotted path, and a hint)
BAD_CONFIGS = [
    (("nme", "x"), ["nme: unknown field", "allowed: ["]),
    (("seed", -1), ["seed: Input should be greater than or equal to 0"]),
    (("question", ""), ["question:"]),
    (("env.reward", "money"), ["env.reward: unknown 'money'", "completion_value"]),
    (("env.reward_kwargs", {"bonus": 1.0}), ["env.reward_kwargs:", "allowed:", "completion_bonus"]),
    (("env.months", 0), ["env.months:"]),
    (("agents.ucb.kind", "ucb2"), ["agents.ucb.kind:", "linucb"]),
    (("agents.ucb.train.steps", 0), ["agents.ucb.train.steps:"]),
    (("agents.ucb.train.checkpoint_every", 0), ["agents.ucb.train.checkpoint_every:"]),
    (("agents.ucb.train.workers", 2), ["train.workers: applies to", "only, not 'linucb'"]),
    (("agents.mppo.train.workers", 0), ["agents.mppo.train.workers:"]),
    (("agents.mppo.train", {"steps": 64, "n_envs": 4, "workers": 8}), ["train.workers: must be at most n_envs (4)"]),
    (("agents.mppo.train", {"steps": 64, "rollouts": "env"}), ["agents.mppo.train.rollouts: unknown field", "n_envs"]),
    (("agents.ucb.hyperparameters", {"alpha": -1.0}), ["agents.ucb.hyperparameters:", "alpha"]),
    (("agents.ucb.hyperparameters", {"beta": 1.0}), ["agents.ucb.hyperparameters:", "beta", "allowed"]),
    (("agents.ucb.hyperparameters", {"seed": 3}), ["agents.ucb.hyperparameters:", "seed"]),
    (("agents.mppo.hyperparameters", {"n_stepz": 64}), ["agents.mppo.hyperparameters:", "n_stepz", "n_steps"]),
    (("agents.mppo.hyperparameters", {"seed": 1}), ["agents.mppo.hyperparameters:", "seed", "set by the runner"]),
    (("agents.mppo.name", "ucb"), ["agents: names used more than once: ['ucb']"]),
    (("agents.mppo.name", "has space"), ["agents.1.name:"]),
    (("agents.mppo.trian", {}), ["agents.mppo.trian: unknown field", "allowed: ['deterministic', 'hyperparameters'"]),
    (("policies", ["silent", "nobody"]), ["policies:", "nobody", "static-dunning"]),
    (("evaluation.baseline", "nobody"), ["evaluation.baseline:", "'nobody'", "allowed"]),
    (("evaluation.oracle", "nobody"), ["evaluation.oracle:", "'nobody'"]),
    (("evaluation.seeds", 0), ["evaluation.seeds:"]),
    (("evaluation.seeds", [1, 1]), ["evaluation.seeds:", "distinct"]),
    (("evaluation.segments", ["age"]), ["evaluation.segments:", "debtor_type"]),
    (("evaluation.level", 1.5), ["evaluation.level:"]),
    (("population.config", "nowhere"), ["population:", "'nowhere' not found", "default"]),
    (("population.overrides", {"capacity": {"collectors": 0}}), ["population.overrides.capacity.collectors:"]),
    (("population.overrides", {"capacity": {"colectors": 2}}), ["population.overrides.capacity.colectors:"]),
    (("population.overrides", {"nosection": {"a": 1}}), ["population.overrides.nosection: unknown section"]),
    (("outputs.feature_importance.repeats", 0), ["outputs.feature_importance.repeats:"]),
    (("outputs.tensorboard", "maybe"), ["outputs.tensorboard:"]),
    (
        ("sweep", {"grid": {"agents.ucb.hyperparameters.alpha": []}}),
        ["sweep.grid: ['agents.ucb.hyperparameters.alpha'] have no values"],
    ),
    (("sweep", {"random": {"env.months": {"low": 3, "high": 1}}}), ["sweep.random.env.months:", "low <= high"]),
    (("sweep", {"random": {"x": {"low": 0, "high": 1, "log": True}}}), ["sweep.random.x.log: needs low > 0"]),
    (("sweep", {"grid": {"seed": [1, 2]}}), ["sweep:", "cannot be swept"]),
]


@pytest.mark.parametrize(("change", "expected"), BAD_CONFIGS, ids=[c[0][0] + "=" + repr(c[0][1]) for c in BAD_CONFIGS])
def test_bad_configs_name_the_field(change: tuple[str, Any], expected: list[str]) -> None:
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment_config(_with(*change), source="table")
    for text in expected:
        assert text in str(info.value), str(info.value)


BAD_SETS = [
    ("evaluation.seedz=3", ["evaluation: unknown key 'seedz'", "allowed: ['arrangements'"]),
    ("agents.nobody.train.steps=3", ["agents: no item 'nobody'", "['ucb', 'mppo']"]),
    ("agents.7.train.steps=3", ["agents: no item '7'"]),
    ("agents.ucb.train.stepz=3", ["agents.ucb.train: unknown key 'stepz'", "checkpoint_every"]),
    ("env.months.x=3", ["env.months is a value"]),
    ("steps", ["expected KEY=VALUE"]),
    ("env..months=3", ["expected KEY=VALUE"]),
    ("env.months=[1", ["env.months: the value is not YAML"]),
]


@pytest.mark.parametrize(("text", "expected"), BAD_SETS, ids=[s for s, _ in BAD_SETS])
def test_bad_set_paths_name_the_path_and_the_allowed_keys(text: str, expected: list[str]) -> None:
    with pytest.raises(ExperimentConfigError) as info:
        path, value = parse_override(text)
        apply_override(GOOD, path, value)
    for part in expected:
        assert part in str(info.value), str(info.value)


def test_set_values_are_validated_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD), encoding="utf-8")
    config = load_experiment_config(path, ["agents.ucb.train.steps=7", "agents.1.hyperparameters.n_epochs=2"])
    assert config.agent("ucb").train.steps == 7 and config.agent("mppo").hyperparameters["n_epochs"] == 2
    config = load_experiment_config(path, ["population.overrides.capacity.collectors=2", "evaluation.seeds=[3, 4]"])
    assert config.population.world().capacity.collectors == 2 and config.evaluation.seeds == [3, 4]
    with pytest.raises(ExperimentConfigError, match=r"agents\.ucb\.train\.steps: Input should be a valid integer"):
        load_experiment_config(path, ["agents.ucb.train.steps=many"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "evaluation.arrangements=0"], "evaluation.arrangements:"),
        (["--set", "agents.ucb.kind=bogus"], "agents.ucb.kind:"),
        (["--set", "evalution.arrangements=5"], "unknown key 'evalution'"),
    ],
)
def test_the_command_line_exits_2_naming_the_field(
    args: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD), encoding="utf-8")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), *args]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "none.yaml")]) == 2
    assert "experiment config not found" in capsys.readouterr().err
