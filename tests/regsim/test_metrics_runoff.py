"""Run-off outcomes: euros per arrangement, how and when each ends, censoring at the run-off cap."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

import agents
from regsim import WorldConfig, simulate
from regsim.eventlog import EventLog, EventType
from regsim.metrics import END_KINDS, arrangement_outcomes, kpis, runoff_value
from regsim.runoff import RunoffCap

START = dt.date(2026, 1, 5)
CAP = RunoffCap(months_after_plan=1.0)  # 3-installment plans: followed 120 days


def runoff_log() -> pa.Table:
    """Three arrangements of 3 installments (cap 120 days after creation).

    1: created day 0, debt 300; pays 100 on days 30, 60, 90; completed day 90; an SMS (0.08).
    2: created day 10, debt 300; pays 100 on day 40; broken day 100.
    3: created day 5, debt 300; pays 50 on day 100 and 250 on day 130 (after its cap at 125); completed on day
       130, after the cap: censored at 125, the late payment does not count.
    """
    log = EventLog(START)
    log.append(EventType.ARRANGEMENT_CREATED, [0.0, 10.0, 5.0], [1, 2, 3], amount_eur=300.0, n_installments=3)
    log.append(EventType.MESSAGE_SENT, 25.0, 1, channel=2, amount_eur=0.08, message_id=0, decision_id=0)
    log.append(EventType.PAYMENT, [30.0, 60.0, 90.0], [1, 1, 1], amount_eur=100.0)
    log.append(EventType.COMPLETED, 90.0, 1)
    log.append(EventType.PAYMENT, 40.0, 2, amount_eur=100.0)
    log.append(EventType.BROKEN, 100.0, 2, amount_eur=200.0)
    log.append(EventType.PAYMENT, 100.0, 3, amount_eur=50.0)
    log.append(EventType.PAYMENT, 130.0, 3, amount_eur=250.0)
    log.append(EventType.COMPLETED, 130.0, 3)
    return log.to_table()


def test_outcomes_in_euros_and_ends_of_a_hand_made_log() -> None:
    o = arrangement_outcomes(runoff_log(), cap=CAP)
    assert o.debt_eur.tolist() == [300.0, 300.0, 300.0]
    assert o.collected_eur.tolist() == [300.0, 100.0, 50.0]
    assert o.concessions_eur.tolist() == [0.0, 0.0, 0.0]
    assert o.net_recovery_eur.tolist() == pytest.approx([299.92, 100.0, 50.0])
    assert o.end_kind.tolist() == ["completed", "broken", "censored"]
    assert o.months_to_end.tolist() == pytest.approx([3.0, 3.0, 4.0])
    assert set(o.end_kind) <= set(END_KINDS)
    assert runoff_value(o).tolist() == pytest.approx([599.92, 100.0, 50.0])
    assert runoff_value(o, completion_bonus_eur=0.0).tolist() == pytest.approx(o.net_recovery_eur.tolist())
    k = kpis(o)
    assert k["censored_rate"] == pytest.approx(1 / 3)
    assert k["recovered_share"] == pytest.approx(450.0 / 900.0)
    assert k["net_recovery_eur_per_arrangement"] == pytest.approx((449.92) / 3)


def test_without_a_cap_every_event_counts_and_censoring_is_at_the_horizon() -> None:
    o = arrangement_outcomes(runoff_log())
    assert o.end_kind.tolist() == ["completed", "broken", "completed"]
    assert o.collected_eur.tolist() == [300.0, 100.0, 300.0]
    o = arrangement_outcomes(runoff_log(), horizon_days=95.0)  # (a log cut at day 95 would hold less; a stamp)
    assert o.months_to_end.iloc[0] == pytest.approx(3.0)


def test_runoff_cap_is_validated() -> None:
    assert RunoffCap().days([12]).tolist() == [30 * 24.0]
    assert RunoffCap(cap_factor=1.5).days([3]).tolist() == [1.5 * 30 * 15]
    with pytest.raises(ValueError, match="cap_factor"):
        RunoffCap(cap_factor=0.0)
    with pytest.raises(ValueError, match="months_after_plan"):
        RunoffCap(months_after_plan=-1.0)


def test_a_runoff_is_a_long_run_censored_at_each_cap_and_stops_early() -> None:
    world = WorldConfig()
    cap = RunoffCap(months_after_plan=0.5)  # tight, so that some arrangements are censored
    runoff = simulate(world, agents.make("static-dunning"), arrangements=150, runoff=cap, seed=4)
    o = runoff.outcomes()
    assert runoff.kpis == pytest.approx(kpis(o), nan_ok=True)
    # It stopped once every arrangement had ended or passed its cap, before the last cap's day.
    assert runoff.horizon_days < runoff.world.days - 1
    caps = cap.days(runoff.world.pop.n_installments) / 30
    assert (o.months_to_end.to_numpy() <= caps[o.index.to_numpy()] + 1e-9).all()
    assert 0 < (o.end_kind == "censored").mean() < 0.5
    # The same debtors run on to well past every cap, cut at the caps afterwards: the same outcomes.
    long = simulate(world, agents.make("static-dunning"), arrangements=150, months=runoff.world.days // 30 + 1, seed=4)
    cut = arrangement_outcomes(long.events, cap=cap)
    np.testing.assert_array_equal(cut.end_kind.to_numpy(), o.end_kind.to_numpy())
    for column in ("collected_eur", "contact_cost_eur", "net_recovery_eur", "months_to_end", "installments_due"):
        np.testing.assert_allclose(cut[column].to_numpy(), o[column].to_numpy(), err_msg=column)


def test_months_and_runoff_do_not_go_together() -> None:
    with pytest.raises(ValueError, match="not both"):
        simulate(WorldConfig(), agents.make("silent"), arrangements=5, months=2, runoff=RunoffCap())
