"""Installment schedules: the create / pay / defer / reduce / set_due_day contract of regsim/arrangement.py.

Day 0 is Monday 2026-01-05; the 1st of the following months are days 27 (Feb), 55 (Mar), 86 (Apr), 116 (May),
147 (Jun); the 25th of January .. May are days 20, 51, 79, 110, 140.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from regsim.arrangement import Schedules
from regsim.calendar import Calendar

START = dt.date(2026, 1, 5)
FIRST_OF_MONTH = [27, 55, 86, 116, 147, 177, 208, 239]  # Feb 1 .. Sep 1, 2026
TWENTY_FIFTH = [20, 51, 79, 110, 140, 171]  # Jan 25 .. Jun 25, 2026


def schedules(n: int = 3, capacity: int = 24, grace: int = 0) -> Schedules:
    return Schedules(n, capacity, Calendar(START, 1200), grace_days=grace)


def ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def open_total(s: Schedules, i: int) -> float:
    n = int(s.n[i])
    return float(np.round((s.amount[i, :n] - s.paid[i, :n]).sum(), 2))


def assert_conserved(s: Schedules, rows: np.ndarray) -> None:
    """The balance equals what the installments still ask, and installments beyond the plan are empty."""
    for i in rows:
        assert s.balance[i] == pytest.approx(open_total(s, i), abs=0.011), i
        assert (s.amount[i, s.n[i] :] == 0).all()
        assert s.paid[i, : s.first_open[i]] == pytest.approx(s.amount[i, : s.first_open[i]])


def test_create_equal_installments_last_absorbs_rounding() -> None:
    s = schedules()
    s.create(ids(0, 1, 2), 0, np.array([3, 4, 1]), np.array([100.0, 1000.01, 55.55]), 1, 7)
    assert s.n.tolist() == [3, 4, 1]
    np.testing.assert_allclose(s.amount[0, :3], [33.33, 33.33, 33.34])
    np.testing.assert_allclose(s.amount[1, :4], [250.0, 250.0, 250.0, 250.01])
    np.testing.assert_allclose(s.amount[2, :1], [55.55])
    np.testing.assert_allclose(s.balance, [100.0, 1000.01, 55.55])
    for i in range(3):
        assert s.amount[i, : s.n[i]].sum() == pytest.approx(s.balance[i])
    assert s.first_open.tolist() == [0, 0, 0] and s.came_due.tolist() == [0, 0, 0]
    assert s.miss_ptr.tolist() == [0, 0, 0]
    assert s.due_dom.tolist() == [1, 1, 1]
    assert_conserved(s, ids(0, 1, 2))


def test_create_dates_monthly_on_the_due_day_at_least_min_days_ahead() -> None:
    s = schedules()
    # Jan 1 is already past on day 0 and Feb 1 is day 27 >= 0 + 7: the plan starts on Feb 1.
    s.create(ids(0), 0, np.array([4]), np.array([400.0]), 1, 7)
    assert s.due[0, :4].tolist() == FIRST_OF_MONTH[:4]
    # On day 22 (Jan 27) with 7 days' notice, Feb 1 (day 27) is too soon: the plan starts on Mar 1.
    s.create(ids(1), 22, np.array([2]), np.array([200.0]), 1, 7)
    assert s.due[1, :2].tolist() == FIRST_OF_MONTH[1:3]
    # Installments beyond the plan never fall due.
    assert (s.due[0, 4:] > 10_000).all()
    cal = s.calendar
    for i in (0, 1):
        assert all(int(cal.day_of_month[d]) == 1 for d in s.due[i, : s.n[i]])


def test_create_caps_installments_at_capacity() -> None:
    s = schedules(n=1, capacity=6)
    s.create(ids(0), 0, np.array([10]), np.array([1000.0]), 1, 7)
    assert s.n[0] == 6
    assert s.amount[0, :6].sum() == pytest.approx(1000.0)


def test_set_due_day_moves_open_installments() -> None:
    s = schedules()
    s.create(ids(0, 1), 0, np.array([3, 3]), np.array([300.0, 300.0]), 1, 7)
    s.set_due_day(ids(0), np.array([25]), 0, 7)
    assert s.due_dom.tolist()[:2] == [25, 1]
    assert s.due[0, :3].tolist() == TWENTY_FIFTH[:3]
    assert s.due[1, :3].tolist() == FIRST_OF_MONTH[:3]  # the other arrangement is untouched
    # Not sooner than the minimum notice: on day 15 (Jan 20) with 7 days, Jan 25 is too soon.
    s.set_due_day(ids(1), np.array([25]), 15, 7)
    assert s.due[1, :3].tolist() == TWENTY_FIFTH[1:4]
    assert_conserved(s, ids(0, 1))


def test_set_due_day_keeps_paid_installments() -> None:
    s = schedules(n=1)
    s.create(ids(0), 0, np.array([3]), np.array([300.0]), 1, 7)
    s.pay(ids(0), np.array([100.0]), 20)
    s.set_due_day(ids(0), np.array([25]), 20, 7)
    assert s.due[0, 0] == FIRST_OF_MONTH[0]
    assert s.due[0, 1:3].tolist() == TWENTY_FIFTH[1:3]


def test_pay_oldest_installment_first() -> None:
    s = schedules()
    s.create(ids(0, 1), 0, np.array([3, 3]), np.array([300.0, 300.0]), 1, 7)
    done = s.pay(ids(0, 1), np.array([150.0, 99.0]), 25)
    # Arrangement 0 completed installment 0 two days early and half paid installment 1; 1 completed nothing.
    assert done.ids.tolist() == [0] and done.installment.tolist() == [0] and done.days_late.tolist() == [-2]
    assert s.first_open.tolist()[:2] == [1, 0]
    np.testing.assert_allclose(s.paid[0, :3], [100.0, 50.0, 0.0])
    np.testing.assert_allclose(s.paid[1, :3], [99.0, 0.0, 0.0])
    np.testing.assert_allclose(s.balance[:2], [150.0, 201.0])
    # Completing installment 1 late, then paying the rest, completes the plan.
    done = s.pay(ids(0), np.array([50.0]), 60)
    assert done.installment.tolist() == [1] and done.days_late.tolist() == [60 - FIRST_OF_MONTH[1]]
    done = s.pay(ids(0), np.array([100.0]), 70)
    assert done.installment.tolist() == [2]
    assert s.first_open[0] == s.n[0] == 3
    assert s.balance[0] == 0.0
    assert_conserved(s, ids(0, 1))


def test_one_payment_can_complete_several_installments() -> None:
    s = schedules(n=1)
    s.create(ids(0), 0, np.array([4]), np.array([400.0]), 1, 7)
    done = s.pay(ids(0), np.array([300.0]), 60)
    assert done.ids.tolist() == [0, 0, 0]
    assert done.installment.tolist() == [0, 1, 2]
    assert done.days_late.tolist() == [60 - FIRST_OF_MONTH[0], 60 - FIRST_OF_MONTH[1], 60 - FIRST_OF_MONTH[2]]
    assert s.first_open[0] == 3 and s.balance[0] == pytest.approx(100.0)
    assert s.is_paid(ids(0, 0, 0, 0), ids(0, 2, 3, -1)).tolist() == [True, True, False, False]


def test_owed_now_and_overdue() -> None:
    s = schedules(n=1)
    s.create(ids(0), 0, np.array([4]), np.array([400.0]), 1, 7)
    assert s.owed_now(ids(0), 10, 10).tolist() == [0.0]  # Feb 1 is more than 10 days away
    assert s.owed_now(ids(0), 17, 10).tolist() == [100.0]
    assert s.owed_now(ids(0), 56, 10).tolist() == [200.0]
    s.pay(ids(0), np.array([30.0]), 56)
    assert s.owed_now(ids(0), 56, 10).tolist() == [170.0]
    assert s.open_due(ids(0)).tolist() == [FIRST_OF_MONTH[0]]
    assert s.current_amount(ids(0)).tolist() == [100.0]
    s.miss_ptr[0] = 2  # two installments past due + grace
    assert s.overdue(ids(0)).tolist() == [2]


def test_defer_shifts_open_installments_and_rearms_the_missed_test() -> None:
    s = schedules()
    s.create(ids(0, 1), 0, np.array([4, 4]), np.array([400.0, 400.0]), 1, 7)
    s.pay(ids(0), np.array([100.0]), 20)
    s.miss_ptr[0] = 2
    before = s.due.copy()
    s.defer(ids(0), np.array([14]))
    assert s.due[0, 0] == before[0, 0]  # paid: unchanged
    assert (s.due[0, 1:4] == before[0, 1:4] + 14).all()
    assert (s.due[0, 4:] == before[0, 4:]).all()
    assert (s.due[1] == before[1]).all()
    assert s.miss_ptr[0] == s.first_open[0] == 1
    assert s.n[0] == 4
    np.testing.assert_allclose(s.amount[0, :4], [100.0] * 4)
    assert_conserved(s, ids(0, 1))


def test_reduce_lowers_installments_and_lengthens_the_plan() -> None:
    s = schedules()
    s.create(ids(0), 0, np.array([4]), np.array([400.0]), 1, 7)
    s.pay(ids(0), np.array([100.0]), 25)
    s.reduce(ids(0), np.array([0.5]), 30)
    # 300 left in installments of 50: six more, after the paid one.
    assert s.n[0] == 7
    np.testing.assert_allclose(s.amount[0, :7], [100.0] + [50.0] * 6)
    assert s.balance[0] == pytest.approx(300.0)
    # The first open installment keeps its due date (Mar 1, not yet passed); the rest follow monthly.
    assert s.due[0, 0] == FIRST_OF_MONTH[0]
    assert s.due[0, 1:7].tolist() == FIRST_OF_MONTH[1:7]
    assert s.miss_ptr[0] == s.first_open[0] == 1
    assert_conserved(s, ids(0))


def test_reduce_with_a_partly_paid_installment_respreads_the_open_balance() -> None:
    s = schedules()
    s.create(ids(0), 0, np.array([4]), np.array([400.0]), 1, 7)
    s.pay(ids(0), np.array([150.0]), 25)
    s.reduce(ids(0), np.array([0.25]), 30)
    # 250 left; installments of 75 (0.75 x 100): 75, 75, 75 and a last 25.
    assert s.n[0] == 5
    np.testing.assert_allclose(s.amount[0, 1:5], [75.0, 75.0, 75.0, 25.0])
    np.testing.assert_allclose(s.paid[0, :5], [100.0, 0, 0, 0, 0])
    assert_conserved(s, ids(0))


def test_reduce_after_the_due_date_gives_a_week() -> None:
    s = schedules()
    s.create(ids(0), 0, np.array([3]), np.array([300.0]), 1, 7)
    day = FIRST_OF_MONTH[0] + 3  # installment 0 is overdue
    s.came_due[0] = 1
    s.miss_ptr[0] = 1
    s.reduce(ids(0), np.array([0.5]), day)
    assert s.due[0, 0] == day + 7
    dues = s.due[0, : s.n[0]]
    assert (np.diff(dues) > 0).all()
    cal = s.calendar
    assert all(int(cal.day_of_month[d]) == 1 for d in dues[1:])
    assert s.came_due[0] == 0 and s.miss_ptr[0] == 0
    assert s.n[0] == 6
    assert_conserved(s, ids(0))


def test_reduce_is_capped_at_capacity_last_installment_absorbs_the_rest() -> None:
    s = schedules(n=2, capacity=6)
    s.create(ids(0, 1), 0, np.array([4, 4]), np.array([400.0, 400.0]), 1, 7)
    s.reduce(ids(0), np.array([0.5]), 5)
    assert s.n[0] == 6
    np.testing.assert_allclose(s.amount[0, :6], [50.0] * 5 + [150.0])
    assert s.balance[0] == pytest.approx(400.0)
    np.testing.assert_allclose(s.amount[1, :4], [100.0] * 4)  # untouched
    assert_conserved(s, ids(0, 1))


def test_balance_is_conserved_through_a_random_sequence() -> None:
    rng = np.random.default_rng(0)
    n = 40
    s = schedules(n=n, capacity=24)
    debt = np.round(rng.uniform(100, 3000, n), 2)
    s.create(np.arange(n), 0, rng.integers(3, 12, n), debt, rng.choice([1, 5, 15, 28], n), 7)
    collected = np.zeros(n)
    for day in range(1, 400, 9):
        rows = np.arange(n)
        owed = s.owed_now(rows, day, 10)
        payers = rows[(owed > 0) & (rng.random(n) < 0.5)]
        amounts = np.round(owed[payers] * rng.choice([0.3, 1.0], len(payers)), 2)
        keep = amounts > 0
        s.pay(payers[keep], amounts[keep], day)
        collected[payers[keep]] += amounts[keep]
        open_rows = rows[s.first_open < s.n]
        deferred = open_rows[rng.random(len(open_rows)) < 0.05]
        s.defer(deferred, rng.choice([3, 7, 14], len(deferred)))
        reduced = open_rows[rng.random(len(open_rows)) < 0.05]
        reduced = reduced[~np.isin(reduced, deferred)]
        s.reduce(reduced, rng.choice([0.25, 0.5], len(reduced)), day)
        assert_conserved(s, rows)
        np.testing.assert_allclose(s.balance + collected, debt, atol=0.011 * 40)
        for i in rows:
            dues = s.due[i, s.first_open[i] : s.n[i]]
            assert (np.diff(dues) > 0).all(), i
        assert (s.n <= 24).all()
        assert (s.first_open <= s.n).all()
