"""Making policies by name: unknown names and arguments are refused with what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import agents
from agents import UnknownPolicyError
from agents.rules_based import PaydayAligned, Silent, StaticDunning
from regsim import Policy

BUILT_IN = {"silent": Silent, "static-dunning": StaticDunning, "payday-aligned": PaydayAligned}


def test_built_in_policies_are_registered() -> None:
    available = agents.available()
    assert set(BUILT_IN) <= set(available)
    assert list(available) == sorted(available)
    for name, cls in BUILT_IN.items():
        spec = available[name]
        assert spec.name == name and spec.factory is cls
        assert spec.summary
        policy = agents.make(name)
        assert isinstance(policy, cls) and isinstance(policy, Policy)
        assert policy.name == name and policy.version


def test_spec_lists_arguments_and_defaults() -> None:
    spec = agents.available()["static-dunning"]
    assert spec.arguments == {"announce_days_before": "3", "send_hour": "10"}
    assert agents.available()["silent"].arguments == {}
    assert set(agents.available()["payday-aligned"].arguments) == {"lag_days", "send_hour", "max_deferral_days"}


def test_make_passes_arguments() -> None:
    policy = agents.make("static-dunning", announce_days_before=5, send_hour=18)
    assert isinstance(policy, StaticDunning)
    assert (policy.announce_days_before, policy.send_hour) == (5, 18)
    policy = agents.make("payday-aligned", lag_days=2)
    assert isinstance(policy, PaydayAligned) and policy.lag_days == 2 and policy.send_hour == 19


def test_unknown_name_lists_the_allowed_names() -> None:
    with pytest.raises(UnknownPolicyError) as info:
        agents.make("loud-dunning")
    message = str(info.value)
    assert "loud-dunning" in message
    for name in BUILT_IN:
        assert repr(name) in message


# name, kwargs, fragments the message must contain
BAD_ARGUMENTS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("static-dunning", {"send_hours": 9}, ("send_hours", "allowed", "send_hour", "announce_days_before")),
    ("static-dunning", {"send_hour": "ten"}, ("send_hour", "integer")),
    ("static-dunning", {"send_hour": 9.5}, ("send_hour",)),
    ("static-dunning", {"send_hour": 24}, ("send_hour", "0..23")),
    ("static-dunning", {"announce_days_before": -1}, ("announce_days_before",)),
    ("payday-aligned", {"lag_days": [1]}, ("lag_days",)),
    ("payday-aligned", {"lag_days": 40}, ("lag_days", "0..27")),
    ("payday-aligned", {"max_deferral_days": -3}, ("max_deferral_days",)),
    ("silent", {"verbose": True}, ("verbose", "none")),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "fragments"),
    BAD_ARGUMENTS,
    ids=[f"{n}-{next(iter(k))}={next(iter(k.values()))!r}" for n, k, _ in BAD_ARGUMENTS],
)
def test_bad_argument_is_refused_naming_it(name: str, kwargs: dict[str, Any], fragments: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as info:
        agents.make(name, **kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_unknown_or_mistyped_argument_is_an_unknown_policy_error() -> None:
    with pytest.raises(UnknownPolicyError):
        agents.make("static-dunning", send_hours=9)
    with pytest.raises(UnknownPolicyError):
        agents.make("static-dunning", send_hour="ten")
    assert issubclass(UnknownPolicyError, ValueError)


def test_a_name_cannot_be_registered_twice() -> None:
    before = dict(agents.available())
    with pytest.raises(ValueError, match="already registered"):
        agents.register("silent")(Silent)
    assert agents.available() == before


def test_a_folder_named_like_a_policy_does_not_hide_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.evaluate import resolve_policy

    monkeypatch.chdir(tmp_path)
    (tmp_path / "silent").mkdir()  # e.g. a run folder named after the policy it ran
    ref = agents.policy_reference("silent")
    assert ref.name == "silent" and ref.folder is None
    assert ref.shadowed == Path("silent") and ref.notice is not None and "./silent" in ref.notice
    assert isinstance(resolve_policy("silent")(), Silent)
    # A path form names the folder; an empty folder is no artifact, and the error says so.
    ref = agents.policy_reference("./silent")
    assert ref.name is None and ref.folder == Path("silent")
    with pytest.raises(UnknownPolicyError, match="does not load as a policy artifact"):
        resolve_policy("./silent")
    # A name no policy has that is a folder is the folder; anything else is refused with the names allowed.
    (tmp_path / "my-run").mkdir()
    assert agents.policy_reference("my-run").folder == Path("my-run")
    assert agents.policy_reference("static-dunning").shadowed is None
    with pytest.raises(UnknownPolicyError, match=r"allowed: .*silent"):
        agents.policy_reference("no-such-policy")
