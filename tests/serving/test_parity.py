"""Sim-to-HTTP parity: replaying a simulated run's production events through the API gives the simulated run.

A run is simulated with a policy; then every arrangement is registered with the server, its production events
(payments, message events, opt-outs, referrals) are posted in log order, the decision is asked for at every
simulated decision point, and at the end the clock is advanced to the horizon. The server builds each context
from its own store, with the same ledger, features, rules and policy, so it must return exactly the simulated
action, propensity, masked rules and policy; what its ledger derives (installments due, paid and missed,
completions, breakdowns with their collection costs, re-plans, cancelled reminders) must equal the simulated
log's; and each arrangement's state in the server (plan, status, observable history) must equal the world's.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

import agents
from agents.artifact import load_policy
from regsim import simulate
from regsim.config import load_world_config
from regsim.eventlog import read_events
from regsim.replay import LogReplay
from regsim.simulate import SimulationResult
from serving.app import create_app
from serving.cli import export_log
from serving.settings import DEFAULT_POPULATION
from tests.serving.conftest import AUTH, DERIVED, make_settings, replay_through_api

ARRANGEMENTS, MONTHS, SEED = 12, 3, 11
#: A seed whose year of 500 arrangements under the random policy has an opt-out (they are rare: one a year or
#: none).
YEAR_SEED = 9
PARTS = ("a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction")
#: Columns that identify a derived event (message ids differ: the server numbers its own messages).
KEYS = (
    "event",
    "arrangement_id",
    "time",
    "installment",
    "deferral_days",
    "n_installments",
    "installment_eur",
    "amount_eur",
    "due_day",
    "reduction",
    "collection_costs_eur",
    "decision_id",
)


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


def _derived(events: Any, decision_ids: dict[int, int] | None = None) -> Counter[tuple[Any, ...]]:
    """Derived events as comparable keys (decision ids mapped to the simulated ones, where given)."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        r = dict(r)
        if decision_ids is not None and r["decision_id"] >= 0:
            r["decision_id"] = decision_ids[r["decision_id"]]
        return tuple(round(r[k], 9) if isinstance(r[k], float) else r[k] for k in KEYS)

    return Counter(key(r) for r in events.to_pylist() if r["event"] in DERIVED)


def _server_decision_ids(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[int, int]:
    return {int(out["decision_id"]): int(sim["decision_id"]) for sim, out in pairs}


def _assert_same_state(result: SimulationResult, replay: LogReplay) -> None:
    """Every arrangement's plan, status and observable history equal the world's at the end of the run."""
    world = result.world
    rows = np.array([replay.row[int(a)] for a in world.gid], dtype=np.int64)
    mine, theirs = world.ledger, replay.ledger
    np.testing.assert_array_equal(theirs.status[rows], mine.status, err_msg="status")
    for name in ("n", "first_open", "came_due", "miss_ptr", "due_dom", "balance", "due", "amount", "paid"):
        np.testing.assert_array_equal(getattr(theirs.sched, name)[rows], getattr(mine.sched, name), err_msg=name)
    for name in ("on_time", "missed", "deferrals", "reductions", "sent", "delivered", "opened", "clicked", "opted_out"):
        got, want = getattr(theirs.history, name)[rows], getattr(mine.history, name)
        np.testing.assert_array_equal(got, want, err_msg=name)
    np.testing.assert_array_equal(theirs.history.last_payment_time[rows], mine.history.last_payment_time)


def _replay_and_compare(result: SimulationResult, store_url: str, policy: str, tmp_path: Path, batch: bool) -> Any:
    config = load_world_config(DEFAULT_POPULATION)
    horizon = float(result.world.days - 1)
    with TestClient(create_app(make_settings(store_url, policy=policy)), headers=AUTH) as client:
        pairs = replay_through_api(client, result.events, batch=batch, until=horizon)
    _check_pairs(pairs)
    exported = read_events(export_log(store_url, tmp_path / "export"))
    assert _derived(exported, _server_decision_ids(pairs)) == _derived(result.events)
    # The store alone gives the world's state (what a restarted server rebuilds).
    ids = sorted(set(exported.column("arrangement_id").to_pylist()))
    replay = LogReplay(config, ids, result.world.days)
    replay.feed(exported, contexts=False)
    replay.ledger.catch_up(np.arange(len(ids)), int(horizon))
    _assert_same_state(result, replay)
    return exported


@pytest.mark.parametrize("which", ["static-dunning", "linucb"])
def test_http_replay_gives_the_simulated_decisions(
    which: str, store_url: str, linucb_artifact: Path, tmp_path: Path
) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    spec = str(linucb_artifact) if which == "linucb" else which
    sim_policy = load_policy(linucb_artifact) if which == "linucb" else agents.make(which)
    result = simulate(config, sim_policy, arrangements=ARRANGEMENTS, months=MONTHS, seed=SEED)
    _replay_and_compare(result, store_url, spec, tmp_path, batch=False)


def test_batch_endpoint_gives_the_simulated_decisions(tmp_path: Path, ppo_artifact: Path) -> None:
    config = load_world_config(DEFAULT_POPULATION)
    result = simulate(config, load_policy(ppo_artifact), arrangements=ARRANGEMENTS, months=MONTHS, seed=SEED)
    _replay_and_compare(result, f"sqlite:///{tmp_path / 'store.db'}", str(ppo_artifact), tmp_path, batch=True)


def test_http_replay_of_a_year_of_500_arrangements_gives_the_simulated_run(tmp_path: Path) -> None:
    """At scale, with every kind of consequence in the run: completions, breakdowns (and collection costs),
    referrals, opt-outs, deferrals, reductions, partial and late payments and cancelled reminders."""
    config = load_world_config(DEFAULT_POPULATION)
    result = simulate(config, agents.make("random"), arrangements=500, months=12, seed=YEAR_SEED)
    events = result.events.to_pandas()
    kinds = Counter(events["event"].astype(str))
    for kind in ("completed", "broken", "referred", "opt_out", "deferral", "reduction", "message_cancelled"):
        assert kinds[kind] > 0, f"the run has no {kind}: {kinds}"
    payments = events[events["event"].astype(str) == "payment"]
    paid = events[events["event"].astype(str) == "installment_paid"]
    assert (events["collection_costs_eur"].fillna(0) > 0).any()
    assert len(payments) > len(paid.groupby(["arrangement_id", "time"]))  # some payments pay no installment
    # Late payments: installments paid after they were booked as missed.
    missed = events[events["event"].astype(str) == "installment_missed"][["arrangement_id", "installment", "time"]]
    late = paid.merge(missed, on=["arrangement_id", "installment"], suffixes=("", "_missed"))
    assert (late["time"] > late["time_missed"]).any()
    _replay_and_compare(result, f"sqlite:///{tmp_path / 'store.db'}", "random", tmp_path, batch=True)
