"""Sim-to-HTTP parity: replaying a simulated run's decision points through the API gives the same decisions.

A small run is simulated with a policy; then every arrangement is registered with the server, its
production events (payments, message events, opt-outs, breakdowns, ...) are posted in log order, and the
decision is asked for at every simulated decision point. The server builds each context from its own store
(``regsim.replay``), with the same features, rules and policy, so it must return exactly the simulated
action, propensity, masked rules and policy; and what it derives itself (installments due, paid and missed,
completions, cancelled reminders, re-plans) must equal the simulated log's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import agents
from agents.artifact import load_policy
from regsim import simulate
from regsim.config import load_world_config
from regsim.eventlog import read_events
from serving.app import create_app
from serving.cli import export_log
from serving.settings import DEFAULT_POPULATION
from tests.serving.conftest import AUTH, DERIVED, make_settings, replay_through_api

ARRANGEMENTS, MONTHS, SEED = 12, 3, 11
PARTS = ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")


def _check_pairs(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    assert pairs, "the run made no decisions"
    mismatches = []
    for sim, out in pairs:
        want = (
            [int(sim[p]) for p in PARTS],
            sim["propensity"],
            sim["masked_rules"] or "",
            sim["policy"],
            sim["policy_version"],
        )
        got = (
            out["action"]["indices"],
            out["propensity"],
            ",".join(out["masked_rules"]),
            out["policy"],
            out["policy_version"],
        )
        if want != got:
            mismatches.append((sim["arrangement_id"], sim["time"], sim["decision_kind"], want, got))
    assert not mismatches, f"{len(mismatches)} of {len(pairs)} decisions differ; first: {mismatches[:3]}"


def _derived(events: Any, seen_until: dict[int, float]) -> Counter[tuple[Any, ...]]:
    """Derived events as comparable keys, up to the last time the server saw each arrangement.

    (The server books installments falling due when it next sees an arrangement, so dues after its last
    event are not in its log yet.)
    """
    keys = ("event", "arrangement_id", "time", "installment", "deferral_days", "n_installments", "amount_eur")
    return Counter(
        tuple(round(r[k], 9) if isinstance(r[k], float) else r[k] for k in keys)
        for r in events.to_pylist()
        if r["event"] in DERIVED and r["time"] <= seen_until[r["arrangement_id"]]
    )


def _seen_until(exported: Any) -> dict[int, float]:
    seen: dict[int, float] = {}
    for r in exported.to_pylist():
        if r["event"] != "installment_due":
            seen[r["arrangement_id"]] = max(seen.get(r["arrangement_id"], 0.0), r["time"])
    return seen


@pytest.mark.parametrize("which", ["static-dunning", "linucb"])
def test_http_replay_gives_the_simulated_decisions(
    which: str, store_url: str, linucb_artifact: Path, tmp_path: Path
) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    spec = str(linucb_artifact) if which == "linucb" else which
    sim_policy = load_policy(linucb_artifact) if which == "linucb" else agents.make(which)
    result = simulate(config, sim_policy, arrangements=ARRANGEMENTS, months=MONTHS, seed=SEED)
    with TestClient(create_app(make_settings(store_url, policy=spec)), headers=AUTH) as client:
        pairs = replay_through_api(client, result.events)
    _check_pairs(pairs)
    exported = read_events(export_log(store_url, tmp_path / "export"))
    seen = _seen_until(exported)
    assert _derived(exported, seen) == _derived(result.events, seen)


def test_batch_endpoint_gives_the_simulated_decisions(tmp_path: Path, ppo_artifact: Path) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    result = simulate(config, load_policy(ppo_artifact), arrangements=ARRANGEMENTS, months=MONTHS, seed=SEED)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with TestClient(create_app(make_settings(store, policy=str(ppo_artifact))), headers=AUTH) as client:
        pairs = replay_through_api(client, result.events, batch=True)
    _check_pairs(pairs)
