"""Moments of an event log (experiments.calibration.moments): exact values on a hand-written log, and bootstrap
errors of the right size on a simulated one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.calibration.moments import MomentKey, contributions, log_moments, moment_values

SEG = "debt:<600,plan:3-6"


@pytest.fixture(scope="module")
def small_log():
    """A simulated log: 400 arrangements, 3 months, under ``epsilon-mixture``."""
    import agents
    from regsim import WorldConfig, simulate

    return simulate(WorldConfig(), agents.make("epsilon-mixture", seed=5), arrangements=400, months=3, seed=5)


def _log() -> pd.DataFrame:
    """Two arrangements of 3 installments (EUR 300 debt): A pays its first installment 2 days early, misses its
    second and breaks; B pays its first 3 days late after an SMS delivered the day before, then completes."""
    rows = [
        # arrangement, time, event, installment, amount, channel, n_installments, installment_eur, deferral_days
        (1, 0.0, "arrangement_created", -1, 300.0, "none", 3, 100.0, -1),
        (2, 0.0, "arrangement_created", -1, 300.0, "none", 3, 100.0, -1),
        (1, 8.0, "payment", -1, 100.0, "none", -1, np.nan, -1),
        (1, 8.0, "installment_paid", 0, 100.0, "none", -1, np.nan, -2),
        (1, 10.0, "installment_due", 0, 100.0, "none", -1, np.nan, -1),
        (2, 10.0, "installment_due", 0, 100.0, "none", -1, np.nan, -1),
        (2, 12.4, "message_sent", 0, 0.08, "sms", -1, np.nan, -1),
        (2, 12.4, "message_delivered", 0, np.nan, "sms", -1, np.nan, -1),
        (2, 13.0, "payment", -1, 50.0, "none", -1, np.nan, -1),
        (2, 13.0, "payment", -1, 50.0, "none", -1, np.nan, -1),
        (2, 13.0, "installment_paid", 0, 50.0, "none", -1, np.nan, 3),
        (1, 40.0, "installment_due", 1, 100.0, "none", -1, np.nan, -1),
        (1, 41.0, "installment_missed", 1, 100.0, "none", -1, np.nan, -1),
        (1, 41.0, "broken", -1, 200.0, "none", -1, np.nan, -1),
        (2, 40.0, "payment", -1, 200.0, "none", -1, np.nan, -1),
        (2, 40.0, "completed", -1, np.nan, "none", -1, np.nan, -1),
    ]
    cols = ["arrangement_id", "time", "event", "installment", "amount_eur", "channel", "n_installments"]
    frame = pd.DataFrame(rows, columns=[*cols, "installment_eur", "deferral_days"])
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def _values(frame: pd.DataFrame) -> dict[MomentKey, float]:
    c = contributions(frame)
    return dict(zip(c.keys, c.values(), strict=True))


def test_moments_of_a_hand_written_log() -> None:
    v = _values(_log())
    # Month 0: two installments fell due, one paid 2 days early (due week), one 3 days late.
    assert v[MomentKey("pay_timing", SEG, 0, "due_week")] == 0.5
    assert v[MomentKey("pay_timing", SEG, 0, "late_1_7")] == 0.5
    assert v[MomentKey("pay_timing", SEG, 0, "early")] == 0.0
    # Month 1: A's second installment was never paid.
    assert v[MomentKey("pay_timing", SEG, 1, "unpaid")] == 1.0
    assert v[MomentKey("on_time", SEG, -1, "paid_by_due")] == pytest.approx(1 / 3)
    # The SMS was followed by a payment 0.6 days later (within 3 days).
    assert v[MomentKey("reminder_response", SEG, -1, "sms")] == 1.0
    assert v[MomentKey("reminder_response", "all", -1, "sms@morning")] == 1.0
    assert v[MomentKey("opened", SEG, -1, "sms")] == 0.0
    assert v[MomentKey("breakdown", SEG, -1, "missed>=1")] == 0.5
    assert v[MomentKey("breakdown", SEG, -1, "broken|missed>=1")] == 1.0
    assert v[MomentKey("completion", SEG, -1, "completed")] == 0.5
    # Payments of 1, 0.5, 0.5 and 2 installments: the median ratio is 0.75, and half the payments lie below.
    assert v[MomentKey("pay_amount", SEG, -1, "ratio<=0.75")] == 0.5


def test_a_late_sms_is_no_response() -> None:
    frame = _log()
    frame.loc[frame["event"].isin(["message_sent", "message_delivered"]), "time"] = 5.0  # 8 days before payment
    frame = frame.sort_values("time", kind="stable").reset_index(drop=True)
    assert _values(frame)[MomentKey("reminder_response", SEG, -1, "sms")] == 0.0


def test_bootstrap_errors_match_a_binomial(small_log) -> None:
    lm = log_moments(small_log.events, rng=np.random.default_rng(0), n_boot=300)
    i = lm.design.keys.index(MomentKey("breakdown", "all", -1, "missed>=1"))
    p, n = lm.values[i], lm.counts[i]
    assert lm.se[i] == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.25)
    assert lm.draws.shape == (300, len(lm.values))
    # A log measured on its own design gives its own values.
    np.testing.assert_allclose(moment_values(small_log.events, lm.design), lm.values)


def test_min_count_drops_rare_cells(small_log) -> None:
    many = log_moments(small_log.events, rng=np.random.default_rng(0), n_boot=10, min_count=1)
    few = log_moments(small_log.events, rng=np.random.default_rng(0), n_boot=10, min_count=100)
    assert len(few.values) < len(many.values)
    assert few.counts.min() >= 100
    with pytest.raises(ValueError, match="min_count"):
        log_moments(small_log.events, rng=np.random.default_rng(0), n_boot=10, min_count=10**9)


@pytest.mark.parametrize(
    ("days_late", "cell"),
    [
        (-6, "early"),
        (-5, "due_week"),
        (0, "due_week"),
        (1, "late_1_7"),
        (7, "late_1_7"),
        (8, "late_8_30"),
        (30, "late_8_30"),
        (31, "unpaid"),
    ],
)
def test_pay_timing_bin_edges(days_late: int, cell: str) -> None:
    frame = _log()
    first = (frame["arrangement_id"] == 1) & (frame["event"] == "installment_paid")
    frame.loc[first, "deferral_days"] = days_late
    # B's installment is 3 days late: a share of 1 in its cell when A's lands there too.
    assert _values(frame)[MomentKey("pay_timing", SEG, 0, cell)] == (1.0 if cell == "late_1_7" else 0.5)


def test_menu_choice_shares_when_the_log_has_menus() -> None:
    frame = _log().assign(a_channel=-1)
    menus = pd.DataFrame(
        {
            "arrangement_id": [1, 1, 2, 1],
            "time": [20.0, 20.0, 21.0, 21.0],
            "event": ["menu_shown", "menu_choice", "menu_shown", "menu_choice"],
            "a_channel": [-1, 2, -1, 0],  # A chose a new plan, then closed a page not shown in between
        }
    )
    frame = pd.concat([frame, menus], ignore_index=True).sort_values("time", kind="stable")
    v = _values(frame.reset_index(drop=True))
    assert v[MomentKey("menu_choice", SEG, -1, "plan")] == 0.5
    assert v[MomentKey("menu_choice", SEG, -1, "close")] == 0.5
    assert MomentKey("menu_choice", SEG, -1, "plan") not in _values(_log())
