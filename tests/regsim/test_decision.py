"""The decision contract: the action space, context and decision batches, and latent state never in a context."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest

import agents
from regsim import (
    ActionSpace,
    Context,
    ContextBatch,
    Decision,
    DecisionBatch,
    DecisionKind,
    Policy,
    World,
    WorldConfig,
    kpis,
)
from regsim.behaviour import DebtorState
from regsim.config import CHANNELS, DEBTOR_TYPES, DecisionConfig, SendSlot
from regsim.context import ContextColumns
from regsim.decision import CONTEXT_COLUMNS, PART_NAMES
from regsim.population import Population
from tests.regsim.test_rules import make_batch, random_rows

K = DecisionKind


@pytest.fixture(scope="module")
def world_batches() -> list[ContextBatch]:
    """The decision batches of a small run under static dunning (every kind of decision point occurs)."""
    world = World(WorldConfig(), None, arrangements=300, months=3, seed=11)
    policy = agents.make("static-dunning")
    batches = []
    while (batch := world.next_decision()) is not None:
        batches.append(batch)
        world.submit(policy.decide_batch(batch))
    return batches


def _assert_batches_equal(a: ContextBatch, b: ContextBatch) -> None:
    assert a.space == b.space
    assert set(a.columns) == set(b.columns)
    for name in a.columns:
        assert a.columns[name].dtype == b.columns[name].dtype, name
        np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=name)
    np.testing.assert_array_equal(a.mask, b.mask)
    live_a = {k: v for k, v in a.forbidden.items() if v.any()}
    live_b = {k: v for k, v in b.forbidden.items() if v.any()}
    assert set(live_a) == set(live_b)
    for name in live_a:
        np.testing.assert_array_equal(live_a[name], live_b[name], err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# ActionSpace
# ------------------------------------------------------------------------------------------------------------
SPACES = {
    "default": DecisionConfig(),
    "small": DecisionConfig(
        send_slots=(SendSlot(day_offset=0, hour=10),),
        due_day_options=(15,),
        deferral_options=(0,),
        reduction_options=(0.0,),
    ),
    "large": DecisionConfig(
        send_slots=tuple(SendSlot(day_offset=d, hour=h) for d in range(4) for h in (8, 12, 18, 20)),
        due_day_options=tuple(range(1, 29)),
        deferral_options=(0, 1, 2, 3, 5, 8, 13),
        reduction_options=(0.0, 0.1, 0.2, 0.3),
    ),
}


@pytest.mark.parametrize("config", list(SPACES.values()), ids=list(SPACES))
def test_action_space_shapes_are_consistent(config: DecisionConfig) -> None:
    space = ActionSpace.from_config(config)
    assert space.nvec == (
        1 + len(CHANNELS),
        len(config.send_slots),
        1 + len(config.due_day_options),
        len(config.deferral_options),
        len(config.reduction_options),
    )
    assert len(space.nvec) == len(PART_NAMES)
    assert space.offsets == tuple(int(x) for x in np.concatenate([[0], np.cumsum(space.nvec)[:-1]]))
    assert space.mask_size == sum(space.nvec) == space.offsets[-1] + space.nvec[-1]
    for part in range(len(PART_NAMES)):
        assert len(space.option_labels(part)) == space.nvec[part]
    assert space.channel_names == ("none", *CHANNELS)
    table = space.applicable()
    assert table.shape == (len(K), space.mask_size)
    # At every kind, option 0 of every part and every send slot apply.
    for part, off in enumerate(space.offsets):
        assert table[:, off].all(), PART_NAMES[part]
    assert table[:, space.offsets[1] : space.offsets[1] + space.nvec[1]].all()


def test_default_action_space() -> None:
    space = ActionSpace.from_config(WorldConfig().decisions)
    assert space.nvec == (6, 9, 8, 5, 3)
    assert space.offsets == (0, 6, 15, 23, 28)
    assert space.mask_size == 31
    assert space.option_labels(0) == ("none", "email", "sms", "letter", "robocall", "collector")
    assert space.option_labels(1)[0] == "day+0 09:00"
    assert space.option_labels(2)[:2] == ("keep", "day 1")


def test_applicability_table() -> None:
    space = ActionSpace.from_config(WorldConfig().decisions)
    table = space.applicable()

    def allowed(kind: DecisionKind, part: int) -> list[int]:
        off, n = space.offsets[part], space.nvec[part]
        return np.flatnonzero(table[kind, off : off + n]).tolist()

    for kind in K:
        assert allowed(kind, 0) == list(range(6))  # every channel applies everywhere (rules may mask it)
        assert allowed(kind, 1) == list(range(9))
    assert allowed(K.PLAN_CREATED, 2) == list(range(8))
    for kind in (K.PRE_DUE, K.MISSED, K.FOLLOW_UP):
        assert allowed(kind, 2) == [0]
        assert allowed(kind, 3) == list(range(5))
    assert allowed(K.PRE_DUE, 4) == [0]
    assert allowed(K.MISSED, 4) == allowed(K.FOLLOW_UP, 4) == [0, 1, 2]
    assert allowed(K.PLAN_CREATED, 3) == allowed(K.PAYMENT_RECEIVED, 3) == [0]


# ------------------------------------------------------------------------------------------------------------
# ContextBatch / Context
# ------------------------------------------------------------------------------------------------------------
def test_world_batch_columns_match_the_contract(world_batches: list[ContextBatch]) -> None:
    kinds = set()
    for batch in world_batches:
        assert set(batch.columns) == set(CONTEXT_COLUMNS)
        for name, (dtype, shape, _) in CONTEXT_COLUMNS.items():
            col = batch.columns[name]
            assert col.dtype == np.dtype(dtype), (name, col.dtype)
            assert col.shape == (len(batch), *shape), name
        assert batch.mask.shape == (len(batch), batch.space.mask_size)
        assert batch.mask.dtype == np.bool_
        kinds |= set(batch.columns["kind"].tolist())
    assert kinds == {int(k) for k in K}


def test_context_round_trips_through_from_contexts(world_batches: list[ContextBatch]) -> None:
    checked = 0
    for batch in world_batches[::5]:
        for i in range(len(batch)):
            context = batch[i]
            assert isinstance(context, Context)
            _assert_batches_equal(ContextBatch.from_contexts([context]), batch.take(np.array([i])))
            _assert_batches_equal(context.batch(), batch.take(np.array([i])))
            checked += 1
        _assert_batches_equal(ContextBatch.from_contexts(list(batch)), batch)
    assert checked > 100


def test_hand_made_batch_round_trips() -> None:
    batch, _ = make_batch(random_rows(50, seed=9))
    _assert_batches_equal(ContextBatch.from_contexts(list(batch)), batch)
    _assert_batches_equal(ContextBatch.from_contexts([batch[3], batch[7]]), batch.take(np.array([3, 7])))


def test_context_access() -> None:
    batch, _ = make_batch(random_rows(5, seed=2))
    context = batch[2]
    columns = [f.name for f in dataclasses.fields(context) if f.name not in ("mask", "masked_by", "space")]
    assert columns == list(CONTEXT_COLUMNS) == list(typing.get_type_hints(ContextColumns))
    for name, (_, shape, _) in CONTEXT_COLUMNS.items():
        value = getattr(context, name)
        if shape:
            assert isinstance(value, tuple) and len(value) == shape[0], name
            assert list(value) == batch.columns[name][2].tolist(), name  # type: ignore[literal-required]
        else:
            assert value == batch.columns[name][2].item() and not isinstance(value, np.generic), name  # type: ignore[literal-required]
    assert context.kind_name == K(int(batch.columns["kind"][2])).name.lower()
    assert isinstance(context.opted_out, tuple) and len(context.opted_out) == len(CHANNELS)
    with pytest.raises(AttributeError):
        _ = context.debtor_type  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.balance_eur = 0.0  # type: ignore[misc]
    for part in range(len(PART_NAMES)):
        np.testing.assert_array_equal(context.allowed(part), np.flatnonzero(batch.part_mask(part)[2]))
    # The context owns its mask.
    context.mask[:] = False
    assert batch.mask[2].any()


def test_batch_indexing_and_slicing() -> None:
    batch, _ = make_batch(random_rows(6, seed=4))
    assert len(batch) == 6
    assert repr(batch[-1]) == repr(batch[5])
    with pytest.raises(IndexError):
        batch[6]
    with pytest.raises(IndexError):
        batch[-7]
    sub = batch[1:4]
    assert isinstance(sub, ContextBatch) and len(sub) == 3
    _assert_batches_equal(sub, batch.take(np.array([1, 2, 3])))
    assert [repr(c) for c in batch] == [repr(batch[i]) for i in range(6)]
    with pytest.raises(AttributeError):
        _ = batch.kind  # type: ignore[attr-defined]  # columns are read from ``columns``, by their typed names
    assert batch.part_mask(0).shape == (6, 6)


def test_concat_stacks_rows_in_order_and_joins_the_rules_masks() -> None:
    batch, _ = make_batch(random_rows(9, seed=5))
    parts = [batch.take(np.array([0, 1, 2])), batch.take(np.array([3, 4])), batch.take(np.array([5, 6, 7, 8]))]
    # One part without the rules' masks, one with a rule of its own: the union, False where a part has none.
    parts[1] = ContextBatch(batch.space, parts[1].columns, parts[1].mask, {})
    parts[2] = ContextBatch(
        batch.space, parts[2].columns, parts[2].mask, {**parts[2].forbidden, "only-here": np.ones_like(parts[2].mask)}
    )
    joined = ContextBatch.concat(parts)
    assert joined.space is batch.space and list(joined.columns) == list(batch.columns)
    for name, column in batch.by_name().items():
        assert joined.by_name()[name].dtype == column.dtype, name
        np.testing.assert_array_equal(joined.by_name()[name], column, err_msg=name)
    np.testing.assert_array_equal(joined.mask, batch.mask)
    assert sorted(joined.forbidden) == sorted({*batch.forbidden, "only-here"})
    for name, forbidden in batch.forbidden.items():
        np.testing.assert_array_equal(forbidden[:3], joined.forbidden[name][:3], err_msg=name)
        assert not joined.forbidden[name][3:5].any() and (joined.forbidden[name][5:] == forbidden[5:]).all(), name
    assert not joined.forbidden["only-here"][:5].any() and joined.forbidden["only-here"][5:].all()
    with pytest.raises(ValueError, match="at least one batch"):
        ContextBatch.concat([])


def test_from_contexts_needs_a_context() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ContextBatch.from_contexts([])


# ------------------------------------------------------------------------------------------------------------
# Decision / DecisionBatch
# ------------------------------------------------------------------------------------------------------------
def test_decision_defaults_and_action() -> None:
    d = Decision()
    assert d.action() == (0, 0, 0, 0, 0)
    assert d.propensity == 1.0
    d = Decision(channel=2, send_slot=3, due_day=1, deferral=4, reduction=2, propensity=0.25)
    assert d.action() == (2, 3, 1, 4, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.channel = 1  # type: ignore[misc]


def test_decision_batch_round_trip() -> None:
    decisions = [Decision(1, 2, 0, 1, 0, 0.5), Decision(0, 4, 3, 0, 2, 0.125), Decision()]
    batch = DecisionBatch.from_decisions(decisions)
    assert batch.actions.shape == (3, 5) and batch.actions.dtype == np.int64
    assert batch.propensity.dtype == np.float64
    np.testing.assert_array_equal(batch.propensity, [0.5, 0.125, 1.0])
    assert list(batch) == decisions
    assert [batch[i] for i in range(3)] == decisions
    assert batch[-1] == decisions[-1]
    sub = batch[1:]
    assert isinstance(sub, DecisionBatch) and list(sub) == decisions[1:]
    assert DecisionBatch.from_decisions(batch) is batch


def test_decision_batch_shapes() -> None:
    one = DecisionBatch([1, 2, 3, 4, 0], 0.5)
    assert one.actions.shape == (1, 5) and len(one) == 1
    assert one[0] == Decision(1, 2, 3, 4, 0, 0.5)
    none = DecisionBatch.none(4)
    assert (none.actions == 0).all() and (none.propensity == 1.0).all() and len(none) == 4
    empty = DecisionBatch.from_decisions([])
    assert empty.actions.shape == (0, 5) and len(empty) == 0
    with pytest.raises(ValueError, match="propensity has 2 rows"):
        DecisionBatch(np.zeros((3, 5)), np.ones(2))


def test_registered_policies_satisfy_the_protocol() -> None:
    for name, spec in agents.available().items():
        if "required" in spec.arguments.values():  # e.g. ``artifact`` needs a path to a trained policy
            continue
        assert isinstance(agents.make(name), Policy), name


# ------------------------------------------------------------------------------------------------------------
# Latent state never in the context
# ------------------------------------------------------------------------------------------------------------
#: Fragments of the names of latent quantities (simulation-only facts about a debtor).
LATENT_FRAGMENTS = (
    "type",
    "cash",
    "shock",
    "attention",
    "willing",
    "notice",
    "boost",
    "annoy",
    "streak",
    "disengag",
    "pay_day",
    "income",
    "hour_profile",
    "fatigue",
    "habit",
    "memory",
    "spend",
    "reminder_effect",
    "arrival",
    "liquid",
)
#: Population fields that production does know (the arrangement's terms and the creditor's own records).
OBSERVABLE_POPULATION_FIELDS = {"debt_eur", "n_installments", "prior_payments", "prior_late_share", "prior_pay_dom"}


def test_context_column_names_hold_no_latent_field(world_batches: list[ContextBatch]) -> None:
    names = set(CONTEXT_COLUMNS) | {n for b in world_batches for n in b.columns}
    for name in names:
        hits = [f for f in LATENT_FRAGMENTS if f in name]
        assert not hits, f"context column {name!r} looks latent ({hits})"
    latent_state = {f.name for f in dataclasses.fields(DebtorState)}
    population = {f.name for f in dataclasses.fields(Population)}
    assert not names & latent_state
    assert names & population <= OBSERVABLE_POPULATION_FIELDS
    truth = set(World(WorldConfig(), None, arrangements=3, months=1).ground_truth().columns) - {"arrangement_id"}
    assert not names & truth


def _latent_twin() -> WorldConfig:
    """The default world with every debtor type's latent behaviour changed, type shares kept."""
    base = WorldConfig()
    types = {}
    for name in DEBTOR_TYPES:
        t = base.population.types[name]
        types[name] = {
            "free_cash_share": min(1.0, t.free_cash_share * 2.0),
            "spend_rate": t.spend_rate / 2.0,
            "attention": t.attention * 3.0,
            "willingness": 1.0 - t.willingness / 2.0,
            "reminder_effect": t.reminder_effect * 2.0,
            "memory_days": t.memory_days + 5.0,
            "fatigue_sensitivity": t.fatigue_sensitivity / 2.0,
            "shocks_per_year": t.shocks_per_year + 1.0,
            "habit_gain": t.habit_gain * 2.0,
            "notice": {c: 1.0 - getattr(t.notice, c) for c in CHANNELS},
            "notice_spread": t.notice_spread / 2.0,
        }
    return base.with_overrides(population={"types": types})


def _plan_created_contexts(config: WorldConfig) -> tuple[dict[int, Context], list[ContextBatch], World]:
    world = World(config, None, arrangements=200, months=2, seed=21)
    policy = agents.make("silent")
    plan: dict[int, Context] = {}
    batches = []
    while (batch := world.next_decision()) is not None:
        batches.append(batch)
        for context in batch:
            if context.kind == K.PLAN_CREATED:
                plan[int(context.arrangement_id)] = context
        world.submit(policy.decide_batch(batch))
    return plan, batches, world


def test_debtors_differing_only_in_latent_state_give_identical_first_contexts() -> None:
    plan_a, batches_a, world_a = _plan_created_contexts(WorldConfig())
    plan_b, batches_b, world_b = _plan_created_contexts(_latent_twin())
    # The twin worlds do differ: same types, different latent behaviour and outcomes.
    truth_a, truth_b = world_a.ground_truth(), world_b.ground_truth()
    assert (truth_a["debtor_type"] == truth_b["debtor_type"]).all()
    assert not np.allclose(truth_a["willingness"], truth_b["willingness"])
    assert kpis(world_a.log.to_table())["collected_eur"] != kpis(world_b.log.to_table())["collected_eur"]
    # ...yet each arrangement's first decision point looks exactly the same to the policy.
    assert plan_a.keys() == plan_b.keys()
    assert len(plan_a) == 200
    for aid, a in plan_a.items():
        b = plan_b[aid]
        assert dataclasses.replace(a, mask=b.mask, space=b.space) == b, aid  # every column and masking rule
        np.testing.assert_array_equal(a.mask, b.mask)
    # The whole first day's batch, too.
    _assert_batches_equal(batches_a[0], batches_b[0])


def test_draws_hashed_together_equal_draws_one_by_one() -> None:
    """``Streams.uniforms`` gives each purpose's ``uniform`` bit for bit (scalars, arrays, broadcasting)."""
    from regsim.random import Purpose, Streams

    streams = Streams(99)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2**40, 300)
    days = rng.integers(0, 900, 300)
    index = rng.integers(0, 200, 300)
    purposes = (Purpose.NOTICE, Purpose.READ_DELAY, Purpose.OPEN_SIGNAL)
    for args in (
        (ids, 0, 0),
        (ids, 12, 0),
        (ids, days, index),
        (ids, days.astype(np.int32), 3),
        (7, days, 0),
        (ids[:, None], days[:20][None, :], 0),
        (5, 3, 1),
    ):
        together = streams.uniforms(purposes, *args)
        for k, purpose in enumerate(purposes):
            np.testing.assert_array_equal(together[k], streams.uniform(purpose, *args))


def test_draws_of_vectors_equal_the_broadcast_draws() -> None:
    """The vector fast path of ``Streams._bits`` gives the draws of the general (broadcasting) path bit for bit."""
    from regsim.random import Purpose, Streams

    def column(x: np.ndarray | int) -> np.ndarray | int:
        return x[:, None] if isinstance(x, np.ndarray) else x

    streams = Streams(7)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2**40, 200)
    days = rng.integers(0, 900, 200)
    index = rng.integers(0, 200, 200)
    for day, idx in ((days, index), (days, 0), (days, 5), (11, index), (11, 0), (days.astype(np.int32), 0)):
        fast = streams.uniform(Purpose.ATTEND, ids, day, idx)
        general = streams.uniform(Purpose.ATTEND, ids[:, None], column(day), column(idx))[:, 0]
        np.testing.assert_array_equal(fast, general)


def test_few_draws_hashed_in_python_integers_equal_the_numpy_draws() -> None:
    """The few-word path of ``Streams`` (Python integers) gives the NumPy path's draws bit for bit.

    Ids, days and indexes near and past the 64-bit edges (negative ones wrap, as the NumPy cast does).
    """
    from regsim.random import _SMALL, Purpose, Streams, _to_unit

    streams = Streams(2024)
    rng = np.random.default_rng(5)
    edge = np.array([0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63)], dtype=np.int64)
    purposes = (Purpose.NOTICE, Purpose.READ_DELAY, Purpose.OPEN_SIGNAL)
    for size in (1, 2, 3, 4):
        ids = np.concatenate([edge, rng.integers(-(2**62), 2**62, 8)])[rng.permutation(15)[:size]]
        days = rng.integers(-5, 10**6, size)
        index = rng.integers(0, 2**44, size)
        for day, idx in ((days, index), (days, 0), (17, index), (0, 0), (-3, 2**43), (days.astype(np.int32), 9)):
            for which in (purposes, (Purpose.ATTEND,)):
                assert len(which) * size <= _SMALL  # the few-word path is the one taken
                keys = streams._keys(which)
                numpy_path = _to_unit(streams._bits(keys, ids, day, idx))
                np.testing.assert_array_equal(streams.uniforms(which, ids, day, idx), numpy_path)
            one = streams.uniform(Purpose.SHOCK_START, ids, day, idx)
            np.testing.assert_array_equal(one, _to_unit(streams.bits(Purpose.SHOCK_START, ids, day, idx)))
