"""Rules of the real world the simulator keeps (docs/calibration.md, production realities and F8).

Each test fails on the behaviour it guards against: the last installment never breaking a plan, letters
delivered on Sundays and Mondays, emails read and paid through at night, benefits drawn from the wage
distribution, the contact cap broken by letters the print room posted late.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

import agents
from agents.base import BasePolicy, slot_index
from experiments.facts import RobocallEveryTime
from regsim import WorldConfig, simulate
from regsim.config import CHANNELS, INCOME_SCHEDULES
from regsim.decision import CHANNEL, ContextBatch, DecisionBatch, DecisionKind
from regsim.delivery import LETTER_DELIVERY_WEEKDAYS, letter_delivery_day, waking_time
from regsim.eventlog import EventType, event_codes
from regsim.population import draw_population
from regsim.random import Streams

_LETTER, _SMS = (1 + CHANNELS.index(c) for c in ("letter", "sms"))


def _column(events: pa.Table, name: str) -> np.ndarray:
    return events.column(name).to_numpy(zero_copy_only=False)


def test_the_last_installment_breaks_a_plan_when_overdue_too_long() -> None:
    """No installment is paid more than ``breakdown_after_overdue_days`` late: the plan breaks first, the last
    installment included (before, an unwilling debtor paid the last one 120 days late and completed)."""
    config = WorldConfig()
    result = simulate(config, agents.make("silent"), arrangements=1500, months=18, seed=3)
    codes = event_codes(result.events)
    late = _column(result.events, "deferral_days")[codes == EventType.INSTALLMENT_PAID]
    assert len(late) > 1000
    assert late.max() <= config.arrangements.breakdown_after_overdue_days
    # Some plans do break on their last installment alone.
    broken = codes == EventType.BROKEN
    assert broken.sum() > 0


def test_letters_arrive_tuesday_to_saturday_only() -> None:
    """PostNL delivers letters Tuesday to Saturday: a letter due on a Sunday or Monday comes on Tuesday."""
    posted = np.arange(14)  # two weeks of postings from a Monday (weekday 0)
    for delay in (1, 2, 3):
        day = letter_delivery_day(posted, np.full(14, delay), first_weekday=0)
        assert set((day % 7).tolist()) <= set(LETTER_DELIVERY_WEEKDAYS)
        assert (day >= posted + delay).all() and (day <= posted + delay + 2).all()
    result = simulate(WorldConfig(), agents.make("static-dunning"), arrangements=1500, months=6, seed=4)
    state = result.world.state
    assert state.letters_delivered.sum() > 100
    assert state.letters_on_closed_days.sum() == 0


def test_night_reads_move_into_waking_hours() -> None:
    """An email read (and any payment through its link) falls in the waking hours, never at night."""
    t = np.array([10.0 + 3 / 24, 10.0 + 12 / 24, 10.0 + 23.5 / 24, 10.0 + 6.9 / 24])
    moved = waking_time(t, (7.0, 23.0))
    hours = (moved - np.floor(moved)) * 24
    assert ((hours >= 7.0) & (hours < 23.0)).all()
    assert moved[1] == t[1]  # a daytime moment is left as it is
    assert (moved >= t).all() and np.all(np.diff(moved[[2, 0]]) < 1.0)
    result = simulate(WorldConfig(), agents.make("static-dunning"), arrangements=1500, months=6, seed=5)
    codes = event_codes(result.events)
    channel = np.asarray(result.events.column("channel").to_pylist(), dtype=object)
    time = _column(result.events, "time")
    for kind in (EventType.PAYMENT, EventType.MESSAGE_CLICKED):
        email = (codes == kind) & (channel == "email")
        assert email.sum() > 20
        hour = (time[email] - np.floor(time[email])) * 24
        assert ((hour >= 7.0 - 1e-9) & (hour <= 23.0 + 1e-9)).all(), hour.min()


def test_benefit_incomes_have_their_own_distribution() -> None:
    """Benefits are drawn around ``benefits_income_median_eur`` with their own narrow spread, not as wages."""
    config = WorldConfig()
    income = config.population.income
    pop = draw_population(config, np.arange(20_000), Streams(7))
    benefits = pop.schedule == INCOME_SCHEDULES.index("benefits")
    monthly = pop.schedule == INCOME_SCHEDULES.index("monthly")
    assert benefits.sum() > 2000
    assert abs(np.median(pop.income_per_pay[benefits]) / income.benefits_income_median_eur - 1) < 0.02
    spread = np.std(np.log(pop.income_per_pay[benefits]))
    assert abs(spread - income.benefits_income_sigma) < 0.02
    assert np.std(np.log(pop.income_per_pay[monthly])) > 2 * spread


class LetterThenSms(BasePolicy):
    """A welcome letter when the plan is made (it floods a small print room), an SMS at every later point."""

    name: ClassVar[str] = "test-letter-then-sms"
    version: ClassVar[str] = "1"

    def decide_batch(self, contexts: ContextBatch) -> DecisionBatch:
        b = contexts
        want = np.where(b.columns["kind"] == DecisionKind.PLAN_CREATED, _LETTER, _SMS)
        ok = b.part_mask(CHANNEL)[np.arange(len(b)), want]
        actions = np.zeros((len(b), 5), dtype=np.int64)
        actions[:, 0] = np.where(ok, want, 0)
        actions[:, 1] = slot_index(b, 0, 9)
        return DecisionBatch(actions, np.ones(len(b)))


def test_the_contact_cap_holds_for_letters_the_print_room_posts_late() -> None:
    """With a print room far too small, letters wait for days; none may then go out beside the week's cap."""
    config = WorldConfig()
    config = config.model_copy(
        update={
            "capacity": config.capacity.model_copy(update={"letters_per_day": 5}),
            "rules": config.rules.model_copy(update={"max_contacts_per_week": 1}),
        }
    )
    result = simulate(config, LetterThenSms(), arrangements=600, months=4, seed=6)
    codes = event_codes(result.events)
    sent = codes == EventType.MESSAGE_SENT
    ids, time = _column(result.events, "arrangement_id")[sent], _column(result.events, "time")[sent]
    assert np.sum(codes == EventType.MESSAGE_CANCELLED) > 0
    order = np.lexsort((time, ids))
    ids, time = ids[order], time[order]
    cap = config.rules.max_contacts_per_week
    # The (cap+1)-th contact after each one, within the same arrangement, is at least 7 days later.
    same = ids[cap:] == ids[:-cap]
    assert (time[cap:][same] - time[:-cap][same] >= 7.0 - 1e-9).all()


def test_fatigue_bites_under_the_default_rules() -> None:
    """Some policy the action space allows makes debtors disengage within the default contact cap."""
    result = simulate(WorldConfig(), RobocallEveryTime(), arrangements=1500, months=6, seed=8)
    assert result.ground_truth["disengaged"].mean() > 0.005
