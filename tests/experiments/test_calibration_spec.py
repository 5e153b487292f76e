"""The parameter spec (experiments.calibration.spec): invalid specs refused with the path and what is allowed;
values applied to a world, shares renormalised, integers rounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.calibration.spec import SpecError, load_spec, parse_spec
from regsim import ConfigError, WorldConfig, load_world_config

WORLD = WorldConfig()
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"population.types.nobody.share": {"low": 0, "high": 1}}, r"unknown key 'nobody'.*allowed: \['forgetful'"),
        ({"population.foo": {"low": 0, "high": 1}}, r"unknown field 'foo' at population; allowed: \['fatigue'"),
        ({"population.income": {"low": 0, "high": 1}}, "a section, not a numeric field"),
        ({"name": {"low": 0, "high": 1}}, "not a numeric field"),
        ({"rules.contact_cap_enabled": {"low": 0, "high": 1}}, "not a numeric field"),
        ({"population.types.forgetful.attention.x": {"low": 0, "high": 1}}, "is a value, not a section"),
        ({"population.types.forgetful.attention": {"low": 0.5, "high": 0.1}}, r"low \(0.5\) must be below high"),
        ({"population.types.forgetful.attention": {"low": 0.2, "high": 0.2}}, "must be below high"),
        (
            {"population.types.forgetful.attention": {"low": -1, "high": 0.1}},
            r"outside the field's allowed range \[0.0, 10.0\]",
        ),
        ({"population.types.forgetful.notice.sms": {"low": 0.5, "high": 1.5}}, r"allowed range \[0.0, 1.0\]"),
        ({"population.types.forgetful.attention": {"low": 0.1}}, r"expected exactly the keys \['high', 'low'\]"),
        ({"population.types.forgetful.attention": {"low": "a", "high": 1}}, "must be finite numbers"),
        (
            {
                "population.types.forgetful.share": {"low": 0.6, "high": 0.8},
                "population.types.unwilling.share": {"low": 0.5, "high": 0.6},
            },
            "lower bounds of its fitted shares sum to 1.1",
        ),
        ({}, "non-empty mapping"),
    ],
)
def test_invalid_specs_are_refused_with_the_path(spec: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(spec, WORLD)


def test_shares_are_renormalised_and_integers_rounded() -> None:
    spec = parse_spec(
        {
            "population.types.unwilling.share": {"low": 0.05, "high": 0.3},
            "population.income.schedule_shares.benefits": {"low": 0.1, "high": 0.4},
            "population.income.benefits_pay_day": {"low": 1, "high": 10},
        },
        WORLD,
    )
    world = spec.apply(WORLD, [0.2, 0.3, 5.4])
    types = {k: t.share for k, t in world.population.types.items()}
    assert types["unwilling"] == pytest.approx(0.2)
    assert sum(types.values()) == pytest.approx(1.0)
    # The others keep their proportions: reliable / forgetful as in the default world (0.30 / 0.25).
    assert types["reliable"] / types["forgetful"] == pytest.approx(0.30 / 0.25)
    assert world.population.income.schedule_shares["benefits"] == pytest.approx(0.3)
    assert sum(world.population.income.schedule_shares.values()) == pytest.approx(1.0)
    assert world.population.income.benefits_pay_day == 5
    assert spec.values_of(world) == pytest.approx([0.2, 0.3, 5.0])


def test_named_shares_above_one_give_no_world() -> None:
    spec = parse_spec(
        {
            "population.types.forgetful.share": {"low": 0.1, "high": 0.7},
            "population.types.unwilling.share": {"low": 0.1, "high": 0.7},
        },
        WORLD,
    )
    with pytest.raises(ConfigError, match=r"sum to 1\.2"):
        spec.apply(WORLD, [0.6, 0.6])


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "calibration").glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load_against_the_default_world(path: Path) -> None:
    world = load_world_config(REPO / "configs" / "population" / "default.yaml")
    spec = load_spec(path, world)
    assert len(spec) >= 3
    spec.apply(world, (spec.lows + spec.highs) / 2)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml", WORLD)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [", encoding="utf-8")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad, WORLD)
