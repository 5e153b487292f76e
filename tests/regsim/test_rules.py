"""Business rules as data: a table of rule-breaking decisions, masks that always leave a valid action, and the
world refusing a violating decision while keeping the batch pending.

The helpers :func:`context_columns` and :func:`make_batch` build context batches by hand; other test modules
import them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from agents.base import BasePolicy
from regsim import (
    ConfigError,
    ContextBatch,
    Decision,
    DecisionBatch,
    DecisionKind,
    RuleViolation,
    World,
    WorldConfig,
)
from regsim.config import CHANNELS
from regsim.decision import CHANNEL, CONTEXT_COLUMNS, PART_NAMES, SEND_SLOT, ActionSpace
from regsim.rules import RuleSet

K = DecisionKind
NONE, EMAIL, SMS, LETTER, ROBOCALL, COLLECTOR = range(6)

#: A plausible observable row: an active arrangement on a Wednesday, an installment due in 5 days.
DEFAULT_ROW: dict[str, Any] = {
    "arrangement_id": 1,
    "kind": int(K.PRE_DUE),
    "day": 10,
    "day_of_month": 15,
    "weekday": 2,
    "installment": 0,
    "target_paid": False,
    "n_installments": 6,
    "installment_eur": 100.0,
    "debt_eur": 600.0,
    "balance_eur": 600.0,
    "installments_paid": 0,
    "installments_due": 0,
    "on_time": 0,
    "missed": 0,
    "overdue": 0,
    "days_to_due": 5,
    "due_day": 20,
    "deferrals": 0,
    "reductions": 0,
    "days_since_payment": -1,
    "last_payment_dom": -1,
    "age_days": 10,
    "prior_payments": 0,
    "prior_late_share": 0.0,
    "prior_pay_dom": -1,
    "contacts_7d": 0,
    "days_since_contact": -1,
    "sent": [0] * len(CHANNELS),
    "delivered": [0] * len(CHANNELS),
    "opened": [0] * len(CHANNELS),
    "clicked": [0] * len(CHANNELS),
    "opted_out": [False] * len(CHANNELS),
}
assert set(DEFAULT_ROW) == set(CONTEXT_COLUMNS)


def context_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Columns of a batch of rows, each :data:`DEFAULT_ROW` with some values replaced."""
    full = [{**DEFAULT_ROW, "arrangement_id": i + 1, **row} for i, row in enumerate(rows)]
    return {name: np.asarray([r[name] for r in full], dtype=dtype) for name, (dtype, _, _) in CONTEXT_COLUMNS.items()}


def make_batch(rows: Sequence[Mapping[str, Any]], config: WorldConfig | None = None) -> tuple[ContextBatch, RuleSet]:
    """A batch of hand-made rows with the rules of ``config`` (default world) applied."""
    config = config or WorldConfig()
    space = ActionSpace.from_config(config.decisions)
    rules = RuleSet(config.rules, space)
    batch = ContextBatch(space=space, columns=context_columns(rows), mask=np.ones((len(rows), space.mask_size), bool))
    return rules.apply(batch), rules


def random_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Random but consistent observable rows, covering every kind and every rule's trigger."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        due = int(rng.integers(0, 12))
        paid = int(rng.integers(0, 24))
        rows.append(
            {
                "kind": int(rng.integers(0, len(K))),
                "weekday": int(rng.integers(0, 7)),
                "contacts_7d": int(rng.integers(0, 6)),
                "opted_out": (rng.random(len(CHANNELS)) < 0.3).tolist(),
                "target_paid": bool(rng.random() < 0.3),
                "installments_due": due,
                "on_time": int(rng.integers(0, due + 1)),
                "deferrals": int(rng.integers(0, 5)),
                "reductions": int(rng.integers(0, 4)),
                "installments_paid": paid,
                "n_installments": max(paid + 1, 3),
                "installment_eur": float(rng.uniform(5.0, 300.0)),
                "balance_eur": float(rng.uniform(0.0, 3000.0)),
                "days_to_due": int(rng.integers(-20, 10)),
            }
        )
    return rows


# ------------------------------------------------------------------------------------------------------------
# The table of rule-breaking decisions
# ------------------------------------------------------------------------------------------------------------
# id, row overrides, decision (channel, slot, due_day, deferral, reduction), rule, config overrides that switch
# the rule off (None: the rule cannot be switched off), config overrides that the case needs.
VIOLATIONS: list[tuple[str, dict[str, Any], tuple[int, ...], str, dict[str, Any] | None, dict[str, Any]]] = [
    (
        "contact_cap",
        {"contacts_7d": 3},
        (SMS, 0, 0, 0, 0),
        "contact_cap",
        {"rules": {"contact_cap_enabled": False}},
        {},
    ),
    (
        "contact_cap_configured",
        {"contacts_7d": 1},
        (EMAIL, 0, 0, 0, 0),
        "contact_cap",
        {"rules": {"max_contacts_per_week": 2}},
        {"rules": {"max_contacts_per_week": 1}},
    ),
    (
        "quiet_early_hour",
        {},
        (SMS, 0, 0, 0, 0),
        "quiet_hours",
        {"rules": {"quiet_hours_enabled": False}},
        {"rules": {"quiet_before_hour": 10}},
    ),
    (
        "quiet_late_hour",
        {},
        (SMS, 2, 0, 0, 0),
        "quiet_hours",
        {"rules": {"quiet_hours_enabled": False}},
        {"rules": {"quiet_from_hour": 19}},
    ),
    (
        "quiet_every_slot_masks_channels",
        {},
        (EMAIL, 0, 0, 0, 0),
        "quiet_hours",
        {"rules": {"quiet_hours_enabled": False}},
        {"rules": {"quiet_from_hour": 9}, "capacity": {"collector_hours": [8, 9], "robocall_hours": [8, 9]}},
    ),
    (
        "opt_out_email",
        {"opted_out": [True, False, False, False, False]},
        (EMAIL, 0, 0, 0, 0),
        "opt_out",
        {"rules": {"opt_out_enabled": False}},
        {},
    ),
    (
        "opt_out_robocall",
        {"kind": int(K.MISSED), "opted_out": [False, False, False, True, False]},
        (ROBOCALL, 0, 0, 0, 0),
        "opt_out",
        {"rules": {"opt_out_enabled": False}},
        {},
    ),
    (
        "paid_installment_pre_due",
        {"target_paid": True},
        (SMS, 0, 0, 0, 0),
        "paid_installment",
        {"rules": {"paid_installment_enabled": False}},
        {},
    ),
    (
        "paid_installment_follow_up",
        {"kind": int(K.FOLLOW_UP), "target_paid": True},
        (LETTER, 0, 0, 0, 0),
        "paid_installment",
        {"rules": {"paid_installment_enabled": False}},
        {},
    ),
    (
        "deferral_cap_late_payer",
        {"kind": int(K.MISSED), "installments_due": 4, "on_time": 1},
        (NONE, 0, 0, 2, 0),
        "deferral_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    (
        "deferral_cap_middle_tier",
        {"kind": int(K.MISSED), "installments_due": 4, "on_time": 2},
        (NONE, 0, 0, 4, 0),
        "deferral_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    (
        "deferral_cap_count",
        {"kind": int(K.PRE_DUE), "deferrals": 3},
        (NONE, 0, 0, 1, 0),
        "deferral_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    (
        "reduction_cap_late_payer",
        {"kind": int(K.MISSED), "installments_due": 4, "on_time": 1},
        (NONE, 0, 0, 0, 2),
        "reduction_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    (
        "reduction_cap_count",
        {"kind": int(K.FOLLOW_UP), "reductions": 2},
        (NONE, 0, 0, 0, 1),
        "reduction_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    (
        "reduction_cap_plan_length",
        {
            "kind": int(K.MISSED),
            "installments_paid": 20,
            "n_installments": 24,
            "balance_eur": 400.0,
            "installment_eur": 100.0,
        },
        (NONE, 0, 0, 0, 1),
        "reduction_cap",
        {"rules": {"history_caps_enabled": False}},
        {},
    ),
    ("not_applicable_deferral_at_plan", {"kind": int(K.PLAN_CREATED)}, (NONE, 0, 0, 1, 0), "not_applicable", None, {}),
    ("not_applicable_due_day_pre_due", {}, (NONE, 0, 3, 0, 0), "not_applicable", None, {}),
    ("not_applicable_reduction_pre_due", {}, (NONE, 0, 0, 0, 1), "not_applicable", None, {}),
    (
        "not_applicable_deferral_thank_you",
        {"kind": int(K.PAYMENT_RECEIVED)},
        (NONE, 0, 0, 1, 0),
        "not_applicable",
        None,
        {},
    ),
    ("action_space_channel", {}, (6, 0, 0, 0, 0), "action_space", None, {}),
    ("action_space_negative_slot", {}, (NONE, -1, 0, 0, 0), "action_space", None, {}),
    ("action_space_reduction", {"kind": int(K.MISSED)}, (NONE, 0, 0, 0, 3), "action_space", None, {}),
]
VIOLATION_IDS = [v[0] for v in VIOLATIONS]


def _config(overrides: Mapping[str, Any]) -> WorldConfig:
    return WorldConfig().with_overrides(**overrides) if overrides else WorldConfig()


@pytest.mark.parametrize(("row", "action", "rule", "off", "needs"), [v[1:] for v in VIOLATIONS], ids=VIOLATION_IDS)
def test_rule_breaking_decision_is_refused_naming_the_rule(
    row: dict[str, Any], action: tuple[int, ...], rule: str, off: dict[str, Any] | None, needs: dict[str, Any]
) -> None:
    batch, rules = make_batch([row], _config(needs))
    decisions = DecisionBatch.from_decisions([Decision(*action)])
    with pytest.raises(RuleViolation) as info:
        rules.check(batch, decisions)
    assert rule in info.value.rules
    # A rule is named in the message; an index outside the action space is reported with the allowed range.
    assert (rule if rule != "action_space" else "is not an option; allowed: 0..") in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("row", "action", "rule", "off", "needs"),
    [v[1:] for v in VIOLATIONS if v[3] != "action_space"],  # an index outside the space has no mask entry
    ids=[v[0] for v in VIOLATIONS if v[3] != "action_space"],
)
def test_masked_option_records_its_rule(
    row: dict[str, Any], action: tuple[int, ...], rule: str, off: dict[str, Any] | None, needs: dict[str, Any]
) -> None:
    batch, _ = make_batch([row], _config(needs))
    context = batch[0]
    space = batch.space
    flat = np.array(action) + np.array(space.offsets)
    masked = [(p, action[p]) for p in range(len(PART_NAMES)) if not batch.mask[0, flat[p]]]
    assert masked, "the decision should choose a masked option"
    assert any(rule in context.masked_by[key] for key in masked), context.masked_by
    assert rule in batch.forbidden
    assert any(batch.forbidden[rule][0, flat[p]] for p, _ in masked)


@pytest.mark.parametrize(
    ("row", "action", "rule", "off", "needs"),
    [v[1:] for v in VIOLATIONS if v[4] is not None],
    ids=[v[0] for v in VIOLATIONS if v[4] is not None],
)
def test_switched_off_rule_allows_the_decision(
    row: dict[str, Any], action: tuple[int, ...], rule: str, off: dict[str, Any], needs: dict[str, Any]
) -> None:
    merged: dict[str, Any] = {}
    for section in {*needs, *off}:
        merged[section] = {**needs.get(section, {}), **off.get(section, {})}
    batch, rules = make_batch([row], _config(merged))
    rules.check(batch, DecisionBatch.from_decisions([Decision(*action)]))
    assert rule not in rules.names or rule not in batch.forbidden


def test_violation_names_every_rule_that_masks_the_option() -> None:
    batch, rules = make_batch([{"contacts_7d": 5, "opted_out": [True, False, False, False, False]}])
    with pytest.raises(RuleViolation) as info:
        rules.check(batch, DecisionBatch.from_decisions([Decision(channel=EMAIL)]))
    assert set(info.value.rules) == {"contact_cap", "opt_out"}
    assert set(batch[0].masked_by[(0, EMAIL)]) == {"contact_cap", "opt_out"}


def test_violation_message_names_part_option_and_allowed_options() -> None:
    batch, rules = make_batch([{"arrangement_id": 42, "opted_out": [True, False, False, False, False]}])
    with pytest.raises(RuleViolation) as info:
        rules.check(batch, DecisionBatch.from_decisions([Decision(channel=EMAIL)]))
    message = str(info.value)
    for fragment in ("42", "PRE_DUE", "opt_out", "channel", "'email'", "'sms'", "'none'"):
        assert fragment in message, message


def test_first_offending_row_is_reported() -> None:
    batch, rules = make_batch([{}, {"arrangement_id": 7, "contacts_7d": 3}, {"arrangement_id": 8, "contacts_7d": 3}])
    decisions = DecisionBatch.from_decisions([Decision(channel=SMS)] * 3)
    with pytest.raises(RuleViolation, match="arrangement 7 "):
        rules.check(batch, decisions)


def test_decision_count_must_match_the_batch() -> None:
    batch, rules = make_batch([{}, {}])
    with pytest.raises(ValueError, match="1 decisions for 2 contexts"):
        rules.check(batch, DecisionBatch.none(1))


def test_quiet_hours_on_every_slot_keep_slot_zero_and_mask_contacts() -> None:
    """When every send slot is at a quiet hour, slot 0 stays allowed and contacting is masked instead."""
    config = WorldConfig().with_overrides(
        rules={"quiet_from_hour": 9}, capacity={"collector_hours": [8, 9], "robocall_hours": [8, 9]}
    )
    batch, rules = make_batch([{"kind": int(k)} for k in K], config)
    assert batch.part_mask(SEND_SLOT)[:, 0].all()
    assert not batch.part_mask(SEND_SLOT)[:, 1:].any()
    assert not batch.part_mask(CHANNEL)[:, 1:].any()
    assert all(batch[i].masked_by[(CHANNEL, EMAIL)] == ("quiet_hours",) for i in range(len(batch)))
    rules.check(batch, DecisionBatch.none(len(batch)))


def test_quiet_days_do_not_mask_but_move_the_send_time() -> None:
    """A message whose slot falls on a quiet day goes out on the next allowed day at the same hour."""
    _, rules = make_batch([{}])
    space = rules.space
    slot = {(s.day_offset, s.hour): i for i, s in enumerate(space.send_slots)}
    # Day 5 is a Saturday (day 0 a Monday); Sunday (6) is quiet by default.
    saturday = rules.send_time(5, 5, np.array([slot[(0, 9)], slot[(1, 9)], slot[(1, 19)], slot[(2, 13)]]))
    np.testing.assert_allclose(saturday, [5 + 9 / 24, 7 + 9 / 24, 7 + 19 / 24, 7 + 13 / 24])
    sunday = rules.send_time(6, 6, np.array([slot[(0, 9)], slot[(1, 13)]]))
    np.testing.assert_allclose(sunday, [7 + 9 / 24, 7 + 13 / 24])
    wednesday = rules.send_time(2, 2, np.array([slot[(0, 9)], slot[(2, 19)]]))
    np.testing.assert_allclose(wednesday, [2 + 9 / 24, 4 + 19 / 24])
    # Weekends off: Friday's day+1 and day+2 slots go to Monday.
    weekend = RuleSet(WorldConfig().with_overrides(rules={"quiet_weekdays": [5, 6]}).rules, space)
    np.testing.assert_allclose(
        weekend.send_time(4, 4, np.array([slot[(1, 9)], slot[(2, 19)]])), [7 + 9 / 24, 7 + 19 / 24]
    )
    # Switched off: no move.
    off = RuleSet(WorldConfig().with_overrides(rules={"quiet_hours_enabled": False}).rules, space)
    np.testing.assert_allclose(off.send_time(6, 6, np.array([slot[(0, 9)]])), [6 + 9 / 24])


def test_every_day_quiet_is_refused_by_the_config() -> None:
    """Seven quiet days would leave no day to contact anyone: the config refuses it, naming the field."""
    with pytest.raises(ConfigError, match=r"rules\.quiet_weekdays"):
        WorldConfig().with_overrides(rules={"quiet_weekdays": [0, 1, 2, 3, 4, 5, 6]})


def test_normalise_sets_parts_without_effect_to_their_canonical_option() -> None:
    batch, rules = make_batch(
        [
            {"kind": int(K.PLAN_CREATED)},
            {"kind": int(K.PRE_DUE)},
            {"kind": int(K.MISSED)},
            {"kind": int(K.PAYMENT_RECEIVED)},
        ],
        WorldConfig().with_overrides(rules={"quiet_before_hour": 10}),
    )  # slot 0 (09:00) masked: first allowed is 1
    raw = DecisionBatch(
        np.array(
            [
                [NONE, 5, 2, 1, 1],  # plan: the due day applies; deferral and reduction do not; no contact: slot 1
                [SMS, 4, 3, 2, 1],  # pre-due: the deferral applies; due day and reduction do not
                [EMAIL, 2, 1, 1, 1],  # missed: deferral and reduction apply; the due day does not
                [NONE, 7, 1, 1, 2],  # thank-you: nothing but the channel applies
            ]
        ),
        np.full(4, 0.5),
    )
    norm = rules.normalise(batch, raw)
    np.testing.assert_array_equal(
        norm.actions,
        [
            [NONE, 1, 2, 0, 0],
            [SMS, 4, 0, 2, 0],
            [EMAIL, 2, 0, 1, 1],
            [NONE, 1, 0, 0, 0],
        ],
    )
    np.testing.assert_array_equal(norm.propensity, raw.propensity)
    rules.check(batch, norm)
    with pytest.raises(RuleViolation, match="not_applicable"):
        rules.check(batch, raw)


def test_rule_names_in_order() -> None:
    _, rules = make_batch([{}])
    assert rules.names == (
        "not_applicable",
        "contact_cap",
        "quiet_hours",
        "opt_out",
        "paid_installment",
        "deferral_cap",
        "reduction_cap",
    )
    off = WorldConfig().with_overrides(
        rules={
            "contact_cap_enabled": False,
            "quiet_hours_enabled": False,
            "opt_out_enabled": False,
            "paid_installment_enabled": False,
            "history_caps_enabled": False,
        }
    )
    _, bare = make_batch([{}], off)
    assert bare.names == ("not_applicable",)
    assert bare.version == "rules-1"


def test_history_caps_follow_the_tiers() -> None:
    """Top tier (no history or >= 80 % on time): 28 days; >= 50 %: 14; else 3 (config defaults)."""
    rows = [
        {"kind": int(K.MISSED)},
        {"kind": int(K.MISSED), "installments_due": 5, "on_time": 4},
        {"kind": int(K.MISSED), "installments_due": 4, "on_time": 2},
        {"kind": int(K.MISSED), "installments_due": 4, "on_time": 1},
        {"kind": int(K.MISSED), "deferrals": 3},
    ]
    batch, _ = make_batch(rows)
    allowed_days = [
        [d for d, ok in zip(batch.space.deferral_days, batch.part_mask(3)[i], strict=True) if ok] for i in range(5)
    ]
    assert allowed_days == [[0, 3, 7, 14, 28], [0, 3, 7, 14, 28], [0, 3, 7, 14], [0, 3], [0]]
    allowed_reduction = [
        [r for r, ok in zip(batch.space.reduction_fractions, batch.part_mask(4)[i], strict=True) if ok]
        for i in range(5)
    ]
    assert allowed_reduction == [[0.0, 0.25, 0.5], [0.0, 0.25, 0.5], [0.0, 0.25, 0.5], [0.0, 0.25], [0.0, 0.25, 0.5]]


# ------------------------------------------------------------------------------------------------------------
# Masks always leave a valid action, and say why each option is masked
# ------------------------------------------------------------------------------------------------------------
MASK_CONFIGS = {
    "default": {},
    "every_slot_quiet": {
        "rules": {"quiet_from_hour": 9},
        "capacity": {"collector_hours": [8, 9], "robocall_hours": [8, 9]},
    },
    "six_quiet_days": {"rules": {"quiet_weekdays": [0, 1, 2, 3, 4, 6]}},
    "no_contacts_at_all": {"rules": {"max_contacts_per_week": 0}},
    "no_deferrals_or_reductions": {"rules": {"max_deferrals": 0, "max_reductions": 0}},
}


@pytest.mark.parametrize("overrides", list(MASK_CONFIGS.values()), ids=list(MASK_CONFIGS))
def test_every_row_keeps_an_allowed_option_per_part(overrides: dict[str, Any]) -> None:
    batch, rules = make_batch(random_rows(400, seed=len(overrides)), _config(overrides))
    space = batch.space
    for part in range(len(PART_NAMES)):
        pm = batch.part_mask(part)
        assert pm.shape == (len(batch), space.nvec[part])
        assert pm.any(axis=1).all(), PART_NAMES[part]
        if part != SEND_SLOT:
            assert pm[:, 0].all(), f"option 0 ('no change') of {PART_NAMES[part]} must never be masked"
    # The mask is the negation of the union of what each rule forbids.
    union = np.zeros_like(batch.mask)
    for f in batch.forbidden.values():
        union |= f
    np.testing.assert_array_equal(batch.mask, ~union)
    # "No contact, no change" at the first allowed slot is always valid.
    slot = np.argmax(batch.part_mask(SEND_SLOT), axis=1)
    actions = np.zeros((len(batch), 5), dtype=np.int64)
    actions[:, SEND_SLOT] = slot
    rules.check(batch, DecisionBatch(actions, np.ones(len(batch))))


def test_masked_by_lists_exactly_the_masked_options() -> None:
    batch, _ = make_batch(random_rows(200, seed=3))
    space = batch.space
    for i in range(len(batch)):
        context = batch[i]
        masked = {
            (part, option)
            for part in range(len(PART_NAMES))
            for option in range(space.nvec[part])
            if not context.mask[space.offsets[part] + option]
        }
        assert set(context.masked_by) == masked
        for (part, option), names in context.masked_by.items():
            assert names
            for name in names:
                assert batch.forbidden[name][i, space.offsets[part] + option]


def test_rules_see_only_context_columns() -> None:
    """Rules work on a batch with nothing but the observable columns (the server's situation)."""
    batch, _ = make_batch(random_rows(10, seed=1))
    assert set(batch.columns) == set(CONTEXT_COLUMNS)


# ------------------------------------------------------------------------------------------------------------
# The world refuses a violating decision and keeps the batch pending
# ------------------------------------------------------------------------------------------------------------
def _first_allowed_none(batch: ContextBatch) -> DecisionBatch:
    actions = np.zeros((len(batch), 5), dtype=np.int64)
    actions[:, SEND_SLOT] = np.argmax(batch.part_mask(SEND_SLOT), axis=1)
    return DecisionBatch(actions, np.ones(len(batch)))


def test_world_submit_refuses_violation_and_keeps_batch_pending() -> None:
    config = WorldConfig().with_overrides(rules={"max_contacts_per_week": 0})
    world = World(config, None, arrangements=60, months=1, seed=5)
    batch = world.next_decision()
    assert batch is not None and len(batch) > 0
    assert (batch.columns["kind"] == K.PLAN_CREATED).all()
    logged = len(world.log)
    bad = _first_allowed_none(batch)
    bad.actions[0, CHANNEL] = EMAIL  # no contact is allowed at all
    with pytest.raises(RuleViolation) as info:
        world.submit(bad)
    assert info.value.rules == ("contact_cap",)
    # Nothing was applied: same pending batch, nothing logged.
    assert world.pending is batch
    assert world.next_decision() is batch
    assert len(world.log) == logged
    # A part without effect (a deferral at plan creation) is normalised, not refused, and logged as applied.
    lenient = _first_allowed_none(batch)
    lenient.actions[:, 3] = 1
    world.submit(lenient)
    assert world.pending is None
    nxt = world.next_decision()
    assert nxt is not None and nxt is not batch
    assert int(nxt.columns["day"][0]) >= int(batch.columns["day"][0])
    frame = world.log.to_table().to_pandas()
    decisions = frame[frame.event.astype(str) == "decision"]
    assert len(decisions) == len(batch) and (decisions.a_deferral == 0).all()
    assert not (frame.event.astype(str) == "deferral").any()


def test_world_submit_refuses_the_wrong_number_of_decisions() -> None:
    world = World(WorldConfig(), None, arrangements=60, months=1, seed=5)
    batch = world.next_decision()
    assert batch is not None
    with pytest.raises(ValueError, match=f"{len(batch) + 1} decisions for {len(batch)} contexts"):
        world.submit(DecisionBatch.none(len(batch) + 1))
    assert world.pending is batch


def test_world_driving_errors() -> None:
    world = World(WorldConfig(), None, arrangements=10, months=1, seed=0)
    with pytest.raises(RuntimeError, match="no decision is pending"):
        world.submit(DecisionBatch.none(1))
    with pytest.raises(RuntimeError, match="needs a policy"):
        world.run()

    class Quiet(BasePolicy):
        name, version = "quiet", "1"

        def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
            return _first_allowed_none(contexts)

    with pytest.raises(RuntimeError, match="has a policy"):
        World(WorldConfig(), Quiet(), arrangements=10, months=1, seed=0).next_decision()


def test_world_runs_to_the_horizon_then_returns_none() -> None:
    world = World(WorldConfig(), None, arrangements=20, months=1, seed=2)
    batches = 0
    while (batch := world.next_decision()) is not None:
        world.submit(_first_allowed_none(batch))
        batches += 1
    assert batches > 0
    assert world.done
    assert world.next_decision() is None


def test_policy_breaking_a_rule_stops_the_run() -> None:
    class Robocaller(BasePolicy):
        name, version = "robocaller", "1"

        def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
            d = _first_allowed_none(contexts)
            d.actions[:, 0] = ROBOCALL  # the contact cap of 0 masks every channel
            return d

    config = WorldConfig().with_overrides(rules={"max_contacts_per_week": 0})
    with pytest.raises(RuleViolation, match="contact_cap") as info:
        World(config, Robocaller(), arrangements=20, months=1, seed=0).run()
    assert info.value.rules == ("contact_cap",)
