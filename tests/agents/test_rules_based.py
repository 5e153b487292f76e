"""Rule-based policies: only allowed options, on real and adversarial batches; static dunning's ladder."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import agents
from regsim import ContextBatch, DecisionBatch, DecisionKind, World, WorldConfig
from regsim.decision import SEND_SLOT
from regsim.ground_truth import GroundTruthView
from tests.regsim.test_rules import make_batch, random_rows

K = DecisionKind
NONE, EMAIL, SMS, LETTER, ROBOCALL, COLLECTOR = range(6)
# Policies that can be made by name alone (``artifact`` needs a path to a trained policy).
POLICIES = sorted(n for n, spec in agents.available().items() if "required" not in spec.arguments.values())
RULE_BASED = ["payday-aligned", "silent", "static-dunning"]


@pytest.fixture(scope="module")
def world_batches() -> list[ContextBatch]:
    """Decision batches of a real run (driven by static dunning, so every kind of decision point occurs)."""
    world = World(WorldConfig(), None, arrangements=300, months=3, seed=8)
    driver = agents.make("static-dunning")
    out = []
    while (batch := world.next_decision()) is not None:
        out.append(batch)
        world.submit(driver.decide_batch(batch))
    return out


def _assert_allowed(batch: ContextBatch, decisions: DecisionBatch) -> None:
    assert len(decisions) == len(batch)
    flat = decisions.actions + np.array(batch.space.offsets)[None, :]
    ok = np.take_along_axis(batch.mask, flat, axis=1)
    bad = np.argwhere(~ok)
    assert not len(bad), f"rows/parts choosing masked options: {bad[:5].tolist()}"
    assert ((decisions.propensity > 0) & (decisions.propensity <= 1)).all()


@pytest.mark.parametrize("name", POLICIES)
def test_policy_picks_only_allowed_options_on_a_real_run(name: str, world_batches: list[ContextBatch]) -> None:
    policy = agents.make(name)
    if getattr(policy, "requires_ground_truth", False):
        # Simulation-only policies read latent state through a World; a fresh one covers the same debtors.
        policy.bind_ground_truth(GroundTruthView(World(WorldConfig(), None, arrangements=300, months=3, seed=8)))
    rows = 0
    for batch in world_batches:
        decisions = policy.decide_batch(batch)
        _assert_allowed(batch, decisions)
        rows += len(batch)
    assert rows > 500


@pytest.mark.parametrize("name", POLICIES)
def test_policy_drives_a_world_to_the_horizon(name: str) -> None:
    world = World(WorldConfig(), agents.make(name), arrangements=100, months=2, seed=3).run()
    assert world.done


STRESS_CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "every_slot_quiet": {
        "rules": {"quiet_from_hour": 9},
        "capacity": {"collector_hours": [8, 9], "robocall_hours": [8, 9]},
    },
    "sundays_and_saturdays": {"rules": {"quiet_weekdays": [5, 6]}},
    "one_contact_a_week": {"rules": {"max_contacts_per_week": 1}},
    "no_history_caps": {"rules": {"history_caps_enabled": False}},
    "late_slots_only": {"decisions": {"send_slots": [{"day_offset": 1, "hour": 20}, {"day_offset": 3, "hour": 7}]}},
}


@pytest.mark.parametrize("overrides", list(STRESS_CONFIGS.values()), ids=list(STRESS_CONFIGS))
@pytest.mark.parametrize("name", POLICIES)
def test_policy_picks_only_allowed_options_on_adversarial_batches(name: str, overrides: dict[str, Any]) -> None:
    config = WorldConfig().with_overrides(**overrides) if overrides else WorldConfig()
    rows = random_rows(300, seed=17)
    rng = np.random.default_rng(5)
    for row in rows:
        row["last_payment_dom"] = int(rng.choice([-1, 1, 15, 28, 31]))
        row["prior_pay_dom"] = int(rng.choice([-1, 3, 24, 28]))
        row["day_of_month"] = int(rng.integers(1, 32))
    policy = agents.make(name)
    if getattr(policy, "requires_ground_truth", False):
        pytest.skip("reads a World's ground truth; hand-built batches have no debtors behind them")
    batch, rules = make_batch(rows, config)
    decisions = policy.decide_batch(batch)
    _assert_allowed(batch, decisions)
    rules.check(batch, decisions)


@pytest.mark.parametrize("name", RULE_BASED)
def test_decide_matches_decide_batch(name: str, world_batches: list[ContextBatch]) -> None:
    policy = agents.make(name)
    batch = world_batches[len(world_batches) // 2]
    batch = batch[: min(len(batch), 25)]
    together = policy.decide_batch(batch)
    for i in range(len(batch)):
        assert policy.decide(batch[i]) == together[i]


@pytest.mark.parametrize("name", RULE_BASED)
def test_rule_based_policies_are_deterministic(name: str, world_batches: list[ContextBatch]) -> None:
    batch = world_batches[len(world_batches) // 3]
    a, b = agents.make(name).decide_batch(batch), agents.make(name).decide_batch(batch)
    np.testing.assert_array_equal(a.actions, b.actions)
    assert (a.propensity == 1.0).all()


def test_silent_never_contacts_or_replans(world_batches: list[ContextBatch]) -> None:
    silent = agents.make("silent")
    for batch in world_batches:
        a = silent.decide_batch(batch).actions
        assert (a[:, [0, 2, 3, 4]] == 0).all()


# ------------------------------------------------------------------------------------------------------------
# Static dunning: email before the due date, SMS at a miss, letter at +7 days, robocall at +14
# ------------------------------------------------------------------------------------------------------------
LADDER = [
    ("plan_created", {"kind": int(K.PLAN_CREATED), "days_to_due": 20}, EMAIL),
    ("pre_due", {"kind": int(K.PRE_DUE), "days_to_due": 5}, EMAIL),
    ("missed", {"kind": int(K.MISSED), "days_to_due": -1}, SMS),
    ("follow_up_7", {"kind": int(K.FOLLOW_UP), "days_to_due": -7}, LETTER),
    ("follow_up_14", {"kind": int(K.FOLLOW_UP), "days_to_due": -14}, ROBOCALL),
    ("thank_you", {"kind": int(K.PAYMENT_RECEIVED), "days_to_due": 20}, NONE),
]


@pytest.mark.parametrize(("row", "channel"), [c[1:] for c in LADDER], ids=[c[0] for c in LADDER])
def test_static_dunning_ladder(row: dict[str, Any], channel: int) -> None:
    batch, rules = make_batch([row])
    d = agents.make("static-dunning").decide_batch(batch)
    rules.check(batch, d)
    assert int(d.actions[0, 0]) == channel
    assert (d.actions[0, 2:] == 0).all()


def test_static_dunning_announces_in_time() -> None:
    """Due in 5 days, arriving 3 days before: the slot nearest to day+2 at 10:00 (day+2 09:00)."""
    batch, _ = make_batch([{"kind": int(K.PRE_DUE), "days_to_due": 5}, {"kind": int(K.MISSED), "days_to_due": -1}])
    space = batch.space
    d = agents.make("static-dunning").decide_batch(batch)
    pre, missed = (space.send_slots[int(s)] for s in d.actions[:, SEND_SLOT])
    assert (pre.day_offset, pre.hour) == (2, 9)
    assert (missed.day_offset, missed.hour) == (0, 9)
    d = agents.make("static-dunning", announce_days_before=5, send_hour=19).decide_batch(batch)
    pre = space.send_slots[int(d.actions[0, SEND_SLOT])]
    assert (pre.day_offset, pre.hour) == (0, 19)


FALLBACKS = [
    ("pre_due_email_opted_out", {"kind": int(K.PRE_DUE), "opted_out": [True, False, False, False, False]}, SMS),
    (
        "missed_sms_opted_out",
        {"kind": int(K.MISSED), "days_to_due": -1, "opted_out": [False, True, False, False, False]},
        EMAIL,
    ),
    (
        "follow_up_robocall_opted_out",
        {"kind": int(K.FOLLOW_UP), "days_to_due": -14, "opted_out": [False, False, False, True, False]},
        SMS,
    ),
    ("all_opted_out", {"kind": int(K.MISSED), "days_to_due": -1, "opted_out": [True] * 5}, NONE),
    ("contact_cap", {"kind": int(K.MISSED), "days_to_due": -1, "contacts_7d": 3}, NONE),
    ("paid_already", {"kind": int(K.PRE_DUE), "target_paid": True}, NONE),
]


@pytest.mark.parametrize(("row", "channel"), [c[1:] for c in FALLBACKS], ids=[c[0] for c in FALLBACKS])
def test_static_dunning_falls_back_when_masked(row: dict[str, Any], channel: int) -> None:
    batch, rules = make_batch([row])
    d = agents.make("static-dunning").decide_batch(batch)
    rules.check(batch, d)
    assert int(d.actions[0, 0]) == channel


def test_static_dunning_follows_its_ladder_in_a_real_run(world_batches: list[ContextBatch]) -> None:
    policy = agents.make("static-dunning")
    seen: dict[tuple[int, int], int] = {}
    for batch in world_batches:
        kind = batch.columns["kind"].astype(int)
        overdue = -batch.columns["days_to_due"].astype(int)
        want = np.select(
            [
                kind == K.PLAN_CREATED,
                kind == K.PRE_DUE,
                kind == K.MISSED,
                (kind == K.FOLLOW_UP) & (overdue < 14),
                kind == K.FOLLOW_UP,
            ],
            [EMAIL, EMAIL, SMS, LETTER, ROBOCALL],
            default=NONE,
        )
        allowed = batch.part_mask(0)[np.arange(len(batch)), want]
        chosen = policy.decide_batch(batch).actions[:, 0]
        np.testing.assert_array_equal(chosen[allowed], want[allowed])
        for k, o in zip(kind[kind == K.FOLLOW_UP], overdue[kind == K.FOLLOW_UP], strict=True):
            seen[(int(k), int(o))] = seen.get((int(k), int(o)), 0) + 1
    # Follow-ups come exactly 7 and 14 days after the due date.
    assert {o for _, o in seen} == {7, 14}


# ------------------------------------------------------------------------------------------------------------
# Payday-aligned
# ------------------------------------------------------------------------------------------------------------
def test_payday_aligned_sets_the_due_day_after_the_usual_payday() -> None:
    rows = [
        {"kind": int(K.PLAN_CREATED), "prior_pay_dom": 24},  # payday 24 + 1 -> the 25th
        {"kind": int(K.PLAN_CREATED), "prior_pay_dom": 2},  # 3 -> the 5th
        {"kind": int(K.PLAN_CREATED), "prior_pay_dom": 27},  # 28 -> the 28th
        {"kind": int(K.PLAN_CREATED), "prior_pay_dom": -1},  # unknown: keep
        {"kind": int(K.PRE_DUE), "prior_pay_dom": 24},  # the due day is set at plan creation only
    ]
    batch, rules = make_batch(rows)
    d = agents.make("payday-aligned").decide_batch(batch)
    rules.check(batch, d)
    options = ("keep", *batch.space.due_day_options)
    assert [options[int(i)] for i in d.actions[:, 2]] == [25, 5, 28, "keep", "keep"]
    assert (d.actions[:, 0] == SMS).all()


def test_payday_aligned_defers_a_miss_to_after_payday() -> None:
    rows = [
        # Missed on the 20th, payday on the 24th: defer at least 5 days (24 - 20 + 1) -> 7 days.
        {"kind": int(K.MISSED), "days_to_due": -1, "day_of_month": 20, "last_payment_dom": 24},
        # Unknown payday: no deferral.
        {"kind": int(K.MISSED), "days_to_due": -1, "day_of_month": 20},
        # Payday too far for the longest deferral it asks for (14 days): none.
        {"kind": int(K.MISSED), "days_to_due": -1, "day_of_month": 5, "last_payment_dom": 25},
    ]
    batch, rules = make_batch(rows)
    d = agents.make("payday-aligned").decide_batch(batch)
    rules.check(batch, d)
    days = [batch.space.deferral_days[int(i)] for i in d.actions[:, 3]]
    assert days == [7, 0, 0]
