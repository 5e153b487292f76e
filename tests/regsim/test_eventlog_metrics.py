"""The event log (schema, no ground truth, Parquet round trip, decision records, status sync) and the KPIs
computed from it (checked against hand-computed values on a tiny hand-made log)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import agents
from agents.base import BasePolicy
from regsim import KPI_NAMES, DecisionBatch, DecisionKind, SimulationResult, World, WorldConfig, kpis, kpis_by_segment
from regsim import simulate as run_simulation
from regsim.decision import ContextBatch
from regsim.eventlog import EVENT_SCHEMA, EventLog, EventType, event_codes, read_events, write_events
from regsim.metrics import arrangement_outcomes

START = dt.date(2026, 1, 5)
REMINDER_KINDS = {"pre_due", "missed", "follow_up"}

EXPECTED_COLUMNS = [
    "timestamp",
    "time",
    "event",
    "arrangement_id",
    "installment",
    "amount_eur",
    "channel",
    "message_id",
    "decision_id",
    "decision_kind",
    "a_channel",
    "a_send_slot",
    "a_due_day",
    "a_deferral",
    "a_reduction",
    "propensity",
    "send_time",
    "masked_rules",
    "policy",
    "policy_version",
    "due_day",
    "n_installments",
    "installment_eur",
    "deferral_days",
    "reduction",
    "prior_payments",
    "prior_late_share",
    "prior_pay_dom",
    "collection_costs_eur",
]


@pytest.fixture(scope="module")
def result() -> SimulationResult:
    return run_simulation(WorldConfig(), agents.make("static-dunning"), arrangements=300, months=3, seed=1)


@pytest.fixture(scope="module")
def events(result: SimulationResult) -> pd.DataFrame:
    frame = result.events.to_pandas()
    for name in ("event", "channel", "decision_kind"):
        frame[name] = frame[name].astype(object)
    return frame


class PreferencePolicy(BasePolicy):
    """Contacts at every reminder through the first allowed channel of a preference list (a test stressor)."""

    version = "1"

    def __init__(self, preference: list[int], latest_slot: bool = False) -> None:
        self.preference = preference
        self.latest_slot = latest_slot
        self.name = f"prefer-{'-'.join(map(str, preference))}"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        channel = np.zeros(len(b), dtype=np.int64)
        allowed = b.part_mask(0)
        for c in reversed(self.preference):
            channel = np.where(allowed[:, c], c, channel)
        slots = b.part_mask(1)
        first = np.argmax(slots, axis=1)
        last = slots.shape[1] - 1 - np.argmax(slots[:, ::-1], axis=1)
        slot = last if self.latest_slot else first
        actions = np.zeros((len(b), 5), dtype=np.int64)
        actions[:, 0], actions[:, 1] = channel, slot
        return DecisionBatch(actions, np.ones(len(b)))


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    for name in ("event", "channel", "decision_kind"):
        frame[name] = frame[name].astype(object)
    return frame


def reminders_sent_after_payment(frame: pd.DataFrame) -> pd.DataFrame:
    """``message_sent`` events of reminders logged after the ``installment_paid`` of their installment."""
    decisions = frame[frame.event == "decision"].set_index("decision_id")
    sent = frame[frame.event == "message_sent"].copy()
    sent["kind"] = decisions.loc[sent.decision_id, "decision_kind"].to_numpy()
    paid = frame[frame.event == "installment_paid"].groupby(["arrangement_id", "installment"]).time.min()
    reminders = sent[sent.kind.isin(REMINDER_KINDS)]
    joined = reminders.join(paid.rename("paid_time"), on=["arrangement_id", "installment"])
    return joined[joined.time > joined.paid_time]


# ------------------------------------------------------------------------------------------------------------
# Schema
# ------------------------------------------------------------------------------------------------------------
def test_schema_columns() -> None:
    assert EVENT_SCHEMA.names == EXPECTED_COLUMNS
    for field in EVENT_SCHEMA:
        if field.name != "timestamp":
            assert field.metadata and field.metadata[b"description"], field.name


def test_run_log_has_the_schema(result: SimulationResult) -> None:
    assert result.events.schema.equals(EVENT_SCHEMA)


def test_log_holds_no_ground_truth(result: SimulationResult) -> None:
    truth = set(result.ground_truth.columns) - {"arrangement_id"}
    assert not truth & set(EVENT_SCHEMA.names)
    latent = (
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
        "free_cash",
        "liquid",
    )
    for name in EVENT_SCHEMA.names:
        assert not [f for f in latent if f in name], name
    names = set(pa.compute.unique(result.events.column("event").combine_chunks().dictionary).to_pylist())
    assert names == {e.name.lower() for e in EventType}


def assert_tables_equal(a: pa.Table, b: pa.Table, skip: tuple[str, ...] = ()) -> None:
    """Equal column by column (NaN equal to NaN, which ``pa.Table.equals`` does not grant)."""
    assert a.column_names == b.column_names
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        if name in skip:
            continue
        assert a.schema.field(name).type == b.schema.field(name).type, name
        pd.testing.assert_series_equal(
            a.column(name).to_pandas(), b.column(name).to_pandas(), check_names=False, obj=name
        )


def test_parquet_round_trip(result: SimulationResult, tmp_path: Path) -> None:
    path = write_events(result.events, tmp_path / "events.parquet")
    assert path == tmp_path / "events.parquet"
    back = read_events(path)
    assert back.column_names == EVENT_SCHEMA.names
    assert_tables_equal(back, result.events, skip=("timestamp",))
    np.testing.assert_array_equal(
        back.column("timestamp").cast(pa.int64()).to_numpy(),
        result.events.column("timestamp").cast(pa.int64()).to_numpy(),
    )
    for name in EVENT_SCHEMA.names:
        assert back.schema.field(name).metadata == EVENT_SCHEMA.field(name).metadata, name
    np.testing.assert_array_equal(event_codes(back), event_codes(result.events))
    assert kpis(back) == pytest.approx(result.kpis, nan_ok=True)


def test_parquet_round_trip_keeps_the_schema(result: SimulationResult, tmp_path: Path) -> None:
    back = read_events(write_events(result.events, tmp_path / "events.parquet"))
    assert back.schema.equals(EVENT_SCHEMA)


def test_read_events_refuses_other_tables(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"time": [1.0], "what": ["x"]}), path)
    with pytest.raises(ValueError, match="not an event log"):
        read_events(path)


def test_append_refuses_unknown_columns() -> None:
    log = EventLog(START)
    with pytest.raises(KeyError, match="debtor_type"):
        log.append(EventType.PAYMENT, 1.0, 3, debtor_type="reliable")


def test_to_table_sorts_by_time_and_stamps_calendar_time() -> None:
    log = EventLog(START)
    log.append(EventType.PAYMENT, [2.5, 0.25], [1, 2], amount_eur=[10.0, 20.0], channel=[0, 2])
    log.append(EventType.ARRANGEMENT_CREATED, 0.0, [1, 2], amount_eur=100.0)
    log.append(EventType.PAYMENT, 1.0, np.zeros(0, dtype=np.int64))  # empty appends are ignored
    assert len(log) == 4
    frame = _frame(log.to_table())
    assert frame.time.tolist() == [0.0, 0.0, 0.25, 2.5]
    assert frame.event.tolist() == ["arrangement_created", "arrangement_created", "payment", "payment"]
    assert frame.channel.tolist() == ["none", "none", "sms", "none"]
    assert frame.amount_eur.tolist() == [100.0, 100.0, 20.0, 10.0]
    assert frame.installment.tolist() == [-1, -1, -1, -1]
    assert frame.decision_kind.isna().all()
    expected = [pd.Timestamp(START) + pd.Timedelta(days=t) for t in frame.time]
    assert frame.timestamp.tolist() == expected


def test_same_seed_same_log() -> None:
    a = run_simulation(WorldConfig(), agents.make("payday-aligned"), arrangements=80, months=2, seed=4)
    b = run_simulation(WorldConfig(), agents.make("payday-aligned"), arrangements=80, months=2, seed=4)
    assert_tables_equal(a.events, b.events)


# ------------------------------------------------------------------------------------------------------------
# Decisions and messages in a run's log
# ------------------------------------------------------------------------------------------------------------
def test_decisions_carry_action_propensity_and_policy(events: pd.DataFrame, result: SimulationResult) -> None:
    decisions = events[events.event == "decision"]
    assert len(decisions) > 100
    assert decisions.decision_id.is_unique and (decisions.decision_id >= 0).all()
    assert decisions.propensity.between(0.0, 1.0, inclusive="right").all()
    assert (decisions.policy == "static-dunning").all()
    assert (decisions.policy_version == "1").all()
    assert set(decisions.decision_kind) == {k.name.lower() for k in DecisionKind}
    nvec = result.world.space.nvec
    for part, name in enumerate(["a_channel", "a_send_slot", "a_due_day", "a_deferral", "a_reduction"]):
        assert decisions[name].between(0, nvec[part] - 1).all(), name
    assert decisions.masked_rules.notna().all()
    assert decisions.masked_rules.str.len().gt(0).any()
    contact = decisions.a_channel > 0
    assert decisions.send_time[contact].notna().all() and decisions.send_time[~contact].isna().all()
    assert (decisions.send_time[contact] >= decisions.time[contact]).all()
    # Only decisions name a policy.
    assert events[events.event != "decision"].policy.isna().all()


def test_every_message_has_its_decision(events: pd.DataFrame) -> None:
    decisions = events[events.event == "decision"].set_index("decision_id")
    messages = events[
        events.event.isin(
            ["message_sent", "message_delivered", "message_opened", "message_clicked", "message_cancelled"]
        )
    ]
    assert (messages.decision_id >= 0).all() and (messages.message_id >= 0).all()
    assert messages.decision_id.isin(decisions.index).all()
    matched = decisions.loc[messages.decision_id]
    np.testing.assert_array_equal(matched.arrangement_id.to_numpy(), messages.arrangement_id.to_numpy())
    np.testing.assert_array_equal(matched.installment.to_numpy(), messages.installment.to_numpy())
    sent = events[events.event == "message_sent"]
    assert len(sent) > 100 and sent.message_id.is_unique
    chosen = decisions.loc[sent.decision_id]
    channels = ["none", "email", "sms", "letter", "robocall", "collector"]
    assert [channels[c] for c in chosen.a_channel] == sent.channel.tolist()
    assert (sent.time.to_numpy() >= chosen.send_time.to_numpy() - 1e-9).all()
    assert (sent.amount_eur > 0).all()
    # Delivered, opened and clicked messages were sent first; a cancelled one never is.
    first_sent = sent.set_index("message_id").time
    for kind in ("message_delivered", "message_opened", "message_clicked"):
        rows = events[events.event == kind]
        assert rows.message_id.isin(first_sent.index).all(), kind
        assert (rows.time.to_numpy() >= first_sent.loc[rows.message_id].to_numpy() - 1e-9).all(), kind
    cancelled = events[events.event == "message_cancelled"]
    assert not cancelled.message_id.isin(first_sent.index).any()


def test_no_reminder_after_its_installment_is_paid(events: pd.DataFrame) -> None:
    late = reminders_sent_after_payment(events)
    assert late.empty, late[["time", "paid_time", "channel", "kind"]]


@pytest.mark.parametrize("preference", [[2, 1], [3, 2, 1], [1]], ids=["sms", "letter", "email"])
def test_no_reminder_after_payment_under_heavy_contact(preference: list[int]) -> None:
    world = World(WorldConfig(), PreferencePolicy(preference), arrangements=400, months=3, seed=2).run()
    frame = _frame(world.log.to_table())
    assert (frame.event == "message_cancelled").any()
    late = reminders_sent_after_payment(frame)
    assert late.empty, late[["time", "paid_time", "channel", "kind"]]


@pytest.mark.parametrize(
    ("preference", "capacity"),
    [
        ([5], {"collector_minutes_per_call": 120.0, "collectors": 50}),
        ([4], {"robocall_minutes_per_call": 120.0, "robocall_lines": 50}),
    ],
    ids=["collector", "robocall"],
)
def test_no_call_reminder_after_payment(preference: list[int], capacity: dict[str, float]) -> None:
    config = WorldConfig().with_overrides(capacity=capacity)
    late = []
    for seed in range(3):
        world = World(config, PreferencePolicy(preference), arrangements=300, months=2, seed=seed).run()
        late.append(reminders_sent_after_payment(_frame(world.log.to_table())))
    found = pd.concat(late)
    assert found.empty, found[["time", "paid_time", "channel", "kind"]]


def test_no_contact_on_quiet_days() -> None:
    config = WorldConfig().with_overrides(capacity={"robocall_lines": 1, "robocall_minutes_per_call": 30.0})
    world = World(config, PreferencePolicy([4], latest_slot=True), arrangements=300, months=2, seed=0).run()
    frame = _frame(world.log.to_table())
    sent = frame[frame.event == "message_sent"]
    assert len(sent) > 100
    hour = (sent.time % 1.0) * 24.0
    weekday = world.calendar.weekday[sent.time.astype(int).to_numpy()]
    rules = config.rules
    quiet = (hour < rules.quiet_before_hour) | (hour >= rules.quiet_from_hour) | np.isin(weekday, rules.quiet_weekdays)
    assert not quiet.any(), sent[quiet.to_numpy()][["time", "channel"]]


def test_default_capacity_contacts_respect_quiet_hours(events: pd.DataFrame, result: SimulationResult) -> None:
    sent = events[events.event == "message_sent"]
    hour = (sent.time % 1.0) * 24.0
    weekday = result.world.calendar.weekday[sent.time.astype(int).to_numpy()]
    assert ((hour >= 8) & (hour < 21) & (weekday != 6)).all()


def test_external_decisions_log_the_given_policy_name() -> None:
    world = World(WorldConfig(), None, arrangements=20, months=1, seed=0, policy_name="my-bandit", policy_version="7")
    while (batch := world.next_decision()) is not None:
        world.submit(agents.make("static-dunning").decide_batch(batch))
    frame = _frame(world.log.to_table())
    decisions = frame[frame.event == "decision"]
    assert len(decisions) and (decisions.policy == "my-bandit").all() and (decisions.policy_version == "7").all()


# ------------------------------------------------------------------------------------------------------------
# KPIs on a hand-made log
# ------------------------------------------------------------------------------------------------------------
def tiny_log() -> pa.Table:
    """Four arrangements with hand-checkable outcomes.

    1: created day 0; installment 0 due day 10, paid day 9 (1 day early); installment 1 due day 40, paid day 45
       (5 days late); completed day 45. An SMS (0.08) and a letter (1.70) were sent.
    2: created day 2; installments 0 and 1 fell due (days 12, 42) unpaid; broken day 43. An email (0.01).
    3: created day 5; installment 0 prepaid on day 6 (4 days early, never fell due); still active.
    4: created day 3; referred to debt counselling on day 20.
    A payment of an arrangement that was not created in this log (id 99) is ignored.
    """
    log = EventLog(START)
    log.append(EventType.ARRANGEMENT_CREATED, [0.0, 2.0, 5.0, 3.0], [1, 2, 3, 4], amount_eur=[200.0, 300.0, 50.0, 80.0])
    log.append(EventType.PAYMENT, 9.0, 1, amount_eur=100.0)
    log.append(EventType.INSTALLMENT_PAID, 9.0, 1, installment=0, deferral_days=-1, amount_eur=100.0)
    log.append(EventType.INSTALLMENT_DUE, 10.0, 1, installment=0, amount_eur=100.0)
    log.append(EventType.INSTALLMENT_DUE, 40.0, 1, installment=1, amount_eur=100.0)
    log.append(EventType.MESSAGE_SENT, 41.0, 1, channel=2, amount_eur=0.08, message_id=0, decision_id=0)
    log.append(EventType.MESSAGE_SENT, 42.5, 1, channel=3, amount_eur=1.70, message_id=1, decision_id=1)
    log.append(EventType.PAYMENT, 45.0, 1, amount_eur=100.0)
    log.append(EventType.INSTALLMENT_PAID, 45.0, 1, installment=1, deferral_days=5, amount_eur=100.0)
    log.append(EventType.COMPLETED, 45.0, 1)
    log.append(EventType.MESSAGE_SENT, 5.0, 2, channel=1, amount_eur=0.01, message_id=2, decision_id=2)
    log.append(EventType.INSTALLMENT_DUE, [12.0, 42.0], [2, 2], installment=[0, 1], amount_eur=150.0)
    log.append(EventType.INSTALLMENT_MISSED, [13.0, 43.0], [2, 2], installment=[0, 1])
    log.append(EventType.BROKEN, 43.0, 2, amount_eur=300.0)
    log.append(EventType.PAYMENT, 6.0, 3, amount_eur=50.0)
    log.append(EventType.INSTALLMENT_PAID, 6.0, 3, installment=0, deferral_days=-4, amount_eur=50.0)
    log.append(EventType.REFERRED, 20.0, 4, amount_eur=80.0)
    log.append(EventType.PAYMENT, 7.0, 99, amount_eur=1000.0)
    return log.to_table()


TINY_KPIS = {
    "completion_rate": 1 / 4,
    "on_time_installment_rate": 2 / 5,  # on time: 1/0 and 3/0; due or paid: 1/0, 1/1, 2/0, 2/1, 3/0
    "collected_eur": 250.0,
    "contact_cost_eur": 1.79,
    "cost_per_eur_collected": 1.79 / 250.0,
    "contacts_per_arrangement": 3 / 4,
    "breakdown_rate": 1 / 4,
    "mean_days_to_completion": 45.0,
    "referral_rate": 1 / 4,
    "active_rate": 1 / 4,
    "collected_eur_per_arrangement": 62.5,
    "net_recovery_eur_per_arrangement": (250.0 - 1.79) / 4,
    "recovered_share": 250.0 / (200.0 + 300.0 + 50.0 + 80.0),
    "censored_rate": 1 / 4,
}


def test_kpi_names() -> None:
    assert set(TINY_KPIS) == set(KPI_NAMES)
    assert len(KPI_NAMES) == len(set(KPI_NAMES))


def test_kpis_of_a_hand_made_log() -> None:
    values = kpis(tiny_log())
    assert list(values) == list(KPI_NAMES)
    for name, expected in TINY_KPIS.items():
        assert values[name] == pytest.approx(expected), name


def test_kpis_survive_parquet(tmp_path: Path) -> None:
    back = read_events(write_events(tiny_log(), tmp_path / "tiny.parquet"))
    assert kpis(back) == pytest.approx(TINY_KPIS)


def test_arrangement_outcomes_of_a_hand_made_log() -> None:
    o = arrangement_outcomes(tiny_log())
    assert o.index.tolist() == [1, 2, 3, 4]
    assert o.completed.tolist() == [1, 0, 0, 0]
    assert o.broken.tolist() == [0, 1, 0, 0]
    assert o.referred.tolist() == [0, 0, 0, 1]
    assert o.collected_eur.tolist() == [200.0, 0.0, 50.0, 0.0]
    assert o.contact_cost_eur.tolist() == pytest.approx([1.78, 0.01, 0.0, 0.0])
    assert o.contacts.tolist() == [2, 1, 0, 0]
    assert o.installments_due.tolist() == [2, 2, 1, 0]
    assert o.installments_on_time.tolist() == [1, 0, 1, 0]
    assert o.days_to_completion.iloc[0] == 45.0 and o.days_to_completion.iloc[1:].isna().all()
    # The KPIs of the outcomes frame are the KPIs of the log.
    assert kpis(o) == pytest.approx(TINY_KPIS)


def test_kpis_by_segment_of_a_hand_made_log() -> None:
    frame = kpis_by_segment(tiny_log(), {1: "a", 2: "a", 3: "b"})
    assert sorted(frame.index) == ["a", "b", "other"]
    assert frame.loc["a", "arrangements"] == 2 and frame.loc["b", "arrangements"] == 1
    assert frame.loc["other", "arrangements"] == 1
    assert frame.loc["a", "completion_rate"] == pytest.approx(0.5)
    assert frame.loc["a", "breakdown_rate"] == pytest.approx(0.5)
    assert frame.loc["a", "on_time_installment_rate"] == pytest.approx(1 / 4)
    assert frame.loc["a", "collected_eur"] == pytest.approx(200.0)
    assert frame.loc["a", "contact_cost_eur"] == pytest.approx(1.79)
    assert frame.loc["a", "contacts_per_arrangement"] == pytest.approx(1.5)
    assert frame.loc["a", "mean_days_to_completion"] == pytest.approx(45.0)
    assert frame.loc["b", "on_time_installment_rate"] == pytest.approx(1.0)
    assert frame.loc["b", "active_rate"] == pytest.approx(1.0)
    assert math.isnan(frame.loc["b", "mean_days_to_completion"])
    assert math.isnan(frame.loc["b", "cost_per_eur_collected"]) is False
    assert frame.loc["other", "referral_rate"] == pytest.approx(1.0)
    assert math.isnan(frame.loc["other", "on_time_installment_rate"])
    assert math.isnan(frame.loc["other", "cost_per_eur_collected"])
    # A pandas Series works as the labelling too.
    series = kpis_by_segment(tiny_log(), pd.Series({1: "a", 2: "a", 3: "b"}))
    pd.testing.assert_frame_equal(series, frame)
    assert set(KPI_NAMES) | {"arrangements"} == set(frame.columns)


def test_kpis_of_a_log_without_arrangements_are_nan() -> None:
    log = EventLog(START)
    log.append(EventType.PAYMENT, 1.0, 5, amount_eur=10.0)
    values = kpis(log.to_table())
    assert list(values) == list(KPI_NAMES)
    assert all(math.isnan(v) for v in values.values())


def test_run_kpis_match_its_log(result: SimulationResult) -> None:
    assert result.kpis == pytest.approx(kpis(result.events), nan_ok=True)
    assert list(result.kpis) == list(KPI_NAMES)
    frame = result.events.to_pandas()
    created = (frame.event == "arrangement_created").sum()
    assert created == 300
    sent = frame[frame.event == "message_sent"]
    assert result.kpis["contacts_per_arrangement"] == pytest.approx(len(sent) / 300)
    assert result.kpis["contact_cost_eur"] == pytest.approx(sent.amount_eur.sum())
    assert result.kpis["collected_eur"] == pytest.approx(frame[frame.event == "payment"].amount_eur.sum())
    rates = ["completion_rate", "breakdown_rate", "referral_rate", "active_rate"]
    assert sum(result.kpis[r] for r in rates) == pytest.approx(1.0)
    by_type = result.kpis_by_type
    assert by_type["arrangements"].sum() == 300
