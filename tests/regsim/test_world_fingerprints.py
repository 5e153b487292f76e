"""The world's event logs stay bit for bit what they were when its hot path is made faster.

Each case is a run whose log was fingerprinted at commit 57a4b83 (before the event-log appends, the scheduling
of message groups and the shared call centres' opening hours were made cheaper): the default world under a
deterministic and a stochastic policy, self-service on, a world whose collectors, robocall lines and print
room queue, and a calibration's simulation (the default world driven by a log's replayed decisions, as
:func:`experiments.calibration.simulation.simulate_point` runs it). A change to how the world moves fails here;
a change meant to alter the world must update these fingerprints and say why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pytest

import agents
from regsim import WorldConfig, simulate
from regsim.calendar import calendar_for
from regsim.capacity import SharedCapacity, next_opening
from regsim.config import CapacityConfig

#: Collectors, robocall lines and the print room all too small for the population (calls and letters queue).
SATURATED = {
    "capacity": {
        "collectors": 1,
        "collector_minutes_per_call": 30.0,
        "collector_hours": [10, 14],
        "robocall_lines": 2,
        "letters_per_day": 50,
    }
}


def fingerprint(table: pa.Table) -> str:
    """A digest of a log's values, column by column (dictionary columns by their decoded values)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        digest.update(name.encode())
        digest.update(repr(table.column(name).combine_chunks().to_pylist()).encode())
    return digest.hexdigest()


def _replayed_calibration_point() -> pa.Table:
    """A calibration's simulation: a log of a perturbed world under epsilon-mixture, its decisions replayed in
    the default world (arrangement pairing, the logger as fall-back)."""
    from experiments.calibration.replaying import LoggedDecisions, ReplayingPolicy, fallback_policy

    perturbed = WorldConfig().with_overrides(population={"shocks": {"mean_duration_days": 60.0}})
    log = simulate(perturbed, agents.make("epsilon-mixture", seed=1), arrangements=400, months=4, seed=1)
    decisions = LoggedDecisions.from_log(log.events)
    policy = ReplayingPolicy(decisions, fallback_policy(decisions, 7), "arrangement")
    return simulate(WorldConfig(), policy, arrangements=300, months=4, seed=7).events


CASES: dict[str, Callable[[], pa.Table]] = {
    "default-static-dunning": lambda: (
        simulate(WorldConfig(), agents.make("static-dunning"), arrangements=300, months=6, seed=5).events
    ),
    "default-epsilon-mixture": lambda: (
        simulate(WorldConfig(), agents.make("epsilon-mixture", seed=2), arrangements=300, months=6, seed=6).events
    ),
    "self-service-random": lambda: (
        simulate(
            WorldConfig().with_overrides(self_service={"enabled": True}),
            agents.make("random"),
            arrangements=300,
            months=6,
            seed=8,
        ).events
    ),
    "saturated-capacity-random": lambda: (
        simulate(
            WorldConfig().with_overrides(**SATURATED), agents.make("random"), arrangements=300, months=6, seed=10
        ).events
    ),
    "replayed-calibration-point": _replayed_calibration_point,
}

#: ``fingerprint(CASES[name]())`` at commit 57a4b83; the two cases under ``epsilon-mixture`` since its v2 (keyed
#: exploration draws, ``agents/ope/behaviour.py``): the logger's draws changed there, not the world.
BEFORE = {
    "default-static-dunning": "a46b3ad2b84349abcfbb46be9237a10cedc666a75dc5fd8ef60c1281d82a563e",
    "default-epsilon-mixture": "ea227b56904ab654581e5236270f65b2ebc8afd89b6b2e525970a28c7afc5ae4",
    "self-service-random": "f403f4db1cd73816e1b2f3c9172987e3fa66845aebe5bc9a35c2cbf0ff04aef0",
    "saturated-capacity-random": "0a2e9f19133a378409d681ed2a5ef930b83b466af149c4baa013f84ee1c2bfef",
    "replayed-calibration-point": "cba21a59806d9c613dbf36fd36c2c2d56ac35b6d8973dd79a65ee4b7b3f38adf",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_event_log_is_bit_for_bit_what_it_was(name: str) -> None:
    assert fingerprint(CASES[name]()) == BEFORE[name]


def test_a_shared_call_centre_opens_when_the_search_says() -> None:
    """The shared centres' table lookup of their next working hour gives :func:`next_opening`'s answer for
    every quarter hour of the calendar and the odd moments around hour marks (quiet days and hours included)."""
    import simpy

    calendar = calendar_for(WorldConfig().simulation.start_date, 60)
    env = simpy.Environment()
    noop = lambda *_: None  # noqa: E731
    shared = SharedCapacity(
        env,
        CapacityConfig(),
        calendar,
        noop,
        noop,
        lambda m: np.ones(len(m), bool),
        quiet_hours=(9, 20),
        quiet_weekdays=(6,),
        print_room=False,
        sample_queues=False,
    )
    marks = np.arange(0, 60 * 24) / 24.0
    times = np.concatenate([np.arange(0, 60 * 96) / 96.0, marks - 1e-12, marks + 1e-12, marks + 0.5e-9 / 24.0])
    times = times[times >= 0]
    for centre in (shared.collectors, shared.robocall_lines):
        want = next_opening(times, centre.hours, centre.closed, calendar, centre.name)
        got = np.array([centre._next_opening(float(t)) for t in times])
        np.testing.assert_array_equal(got, want)
