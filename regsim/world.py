"""The simulated world: a SimPy model of a debtor population under a decision policy.

Time is in days since the start (fractions are hours). Debtor state is a struct of arrays advanced for all
debtors at once; SimPy carries what needs a clock and a queue:

* the **population process** (:meth:`World._days`): each morning it updates income, spending and shocks of
  every debtor, books installments that fall due or were missed, breaks or refers arrangements, gathers the
  day's decision points into one batch for the policy, applies the decisions, and draws who pays today and
  at what hour; at the end of the day it settles those payments;
* **arrivals** of new arrangements are part of that morning step (each debtor has an arrival day);
* **message delivery**: every send time of a batch is one SimPy timeout; email and SMS arrive at once
  (email is read later), letters go through the print room and the post (days), calls through the shared
  collectors and robocall lines (:mod:`regsim.capacity`), whose queues are visible.

A payment cancels every pending reminder for the installments it covers the moment it is recorded; a queued
letter or call is re-checked before it is sent, so a debtor never gets a reminder for an installment already
paid (unless the letter was already in the post).

The world runs either with a :class:`~regsim.decision.Policy` (``run()``) or driven from outside, one batch
of decision points at a time (``next_decision()`` / ``submit()``), which is how the Gymnasium adapter steps.
A one-arrangement world (``dedicated_capacity=True``) gives its debtor their own collectors, robocall lines
and print room; :class:`regsim.vector_world.VectorWorld` runs many such worlds as rows with their own clocks.

The behaviour equations are in :mod:`regsim.behaviour`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd
import simpy
from numpy.typing import NDArray

from regsim import behaviour
from regsim.arrangement import ArrangementStatus, Schedules
from regsim.behaviour import at
from regsim.calendar import calendar_for
from regsim.capacity import DedicatedCapacity, SharedCapacity
from regsim.config import CHANNELS, DEBTOR_TYPES, INCOME_SCHEDULES, WorldConfig
from regsim.decision import (
    ActionSpace,
    ContextBatch,
    DecisionBatch,
    DecisionKind,
    Policy,
)
from regsim.eventlog import EventLog, EventType
from regsim.feedback import OutcomeMatcher
from regsim.ground_truth import GroundTruthView
from regsim.history import ObservableHistory
from regsim.population import HOUR_PROFILES, Population, draw_population, hour_availability
from regsim.random import Purpose, Streams
from regsim.rules import RuleSet

__all__ = ["MessageKind", "World"]

_EMAIL, _SMS, _LETTER, _ROBOCALL, _COLLECTOR = range(1, 6)
Time = float | NDArray[np.float64]
"""A moment (days since the start), or one per element when rows keep their own clocks."""
_LETTER_READ_HOUR = 18.0
#: A debtor pays in full when their cash reaches what is owed less this (half a cent: amounts are in cents).
PAY_TOLERANCE_EUR = 0.005
#: The least cash with which a debtor short of the full amount may pay part of it.
MIN_PARTIAL_PAYMENT_EUR = 10.0
_PLAN_MARGIN_DAYS = 3 * 366


class MessageKind(IntEnum):
    """What a message is for; only reminders are cancelled by a payment."""

    REMINDER = 0
    CONFIRMATION = 1
    THANK_YOU = 2


_MESSAGE_KIND_OF = np.array(
    [MessageKind.CONFIRMATION, MessageKind.REMINDER, MessageKind.REMINDER, MessageKind.REMINDER, MessageKind.THANK_YOU]
)
_PENDING, _SENT, _CANCELLED = 0, 1, 2
# Enum members as plain ints where arrays are compared with them: NumPy probes the class of an IntEnum operand for
# its array protocol, and in Python 3.11 each probe is a slow miss of ``EnumType.__getattr__`` (same values).
_ACTIVE = int(ArrangementStatus.ACTIVE)
_REMINDER, _THANK_YOU = int(MessageKind.REMINDER), int(MessageKind.THANK_YOU)
_PLAN_CREATED = int(DecisionKind.PLAN_CREATED)
# Draws made together (same keys), each a pure function of its purpose and keys as ever.
_DELIVERY_DRAWS = (Purpose.NOTICE, Purpose.READ_DELAY, Purpose.OPEN_SIGNAL)
_NOTICE_DRAWS = (Purpose.OPT_OUT, Purpose.LINK_PAY)
_PAYMENT_DRAWS = (Purpose.ATTEND, Purpose.PARTIAL, Purpose.PAY_HOUR)
_FEEDBACK_EVENTS = (
    EventType.PAYMENT,
    EventType.MESSAGE_SENT,
    EventType.COMPLETED,
    EventType.BROKEN,
    EventType.REFERRED,
)


class _Messages:
    """Growable column store of messages."""

    def __init__(self) -> None:
        self.n = 0
        cap = 1024
        self.debtor = np.zeros(cap, dtype=np.int64)
        self.channel = np.zeros(cap, dtype=np.int64)
        self.kind = np.zeros(cap, dtype=np.int64)
        self.installment = np.zeros(cap, dtype=np.int64)
        self.decision = np.zeros(cap, dtype=np.int64)
        self.hour = np.zeros(cap, dtype=np.int64)
        self.state = np.zeros(cap, dtype=np.int8)

    def add(
        self,
        debtor: NDArray[np.int64],
        channel: NDArray[np.int64],
        kind: NDArray[np.int64],
        installment: NDArray[np.int64],
        decision: NDArray[np.int64],
        hour: NDArray[np.int64],
    ) -> NDArray[np.int64]:
        k = len(debtor)
        while self.n + k > len(self.debtor):
            for name in ("debtor", "channel", "kind", "installment", "decision", "hour", "state"):
                old = getattr(self, name)
                new = np.zeros(2 * len(old), dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
        sl = slice(self.n, self.n + k)
        self.debtor[sl], self.channel[sl], self.kind[sl] = debtor, channel, kind
        self.installment[sl], self.decision[sl], self.hour[sl] = installment, decision, hour
        self.state[sl] = _PENDING
        ids = np.arange(self.n, self.n + k, dtype=np.int64)
        self.n += k
        return ids


class World:
    """A population of arrangements under a policy, simulated day by day.

    Args:
        config: The world.
        policy: The policy to call at decision points; ``None`` to drive the world from outside with
            :meth:`next_decision` and :meth:`submit`. A policy with a positive ``feedback_window_days``
            attribute is an online learner: the world calls its ``update(feedback)`` every evening with the
            decisions whose outcome window closed (see :mod:`regsim.feedback`; an optional
            ``feedback_reward`` attribute maps outcomes to rewards), and with the rest, censored, at the end.
            Other policies are never updated. The argument continues:
            :meth:`next_decision` and :meth:`submit`.
        arrangements: Number of arrangements (default: ``config.simulation.arrangements``).
        months: Horizon in months of 30 days (default: ``config.simulation.months``).
        seed: Run seed (default: ``config.simulation.seed``).
        first_id: Id of the first arrangement; arrangement ``first_id + k`` is debtor ``first_id + k`` of
            the seed's population, so a world of one arrangement can replay any debtor of a larger run.
        policy_name: Name logged for externally submitted decisions.
        policy_version: Version logged for externally submitted decisions.
        progress: Called with the number of days done after each simulated day.
        sample_queues: Sample the shared resources' queues twice a day (off for one-arrangement worlds,
            whose queues are trivially empty, to save time).
        dedicated_capacity: Each arrangement has its own collectors, robocall lines and print room
            (:class:`regsim.capacity.DedicatedCapacity`: the same hours, no queue), as a lone debtor does in a
            one-arrangement world and in each row of :class:`regsim.vector_world.VectorWorld`. By default the
            population shares them (:class:`regsim.capacity.SharedCapacity`, with queues).
        day_process: Start the SimPy day process that drives the world. False for a subclass that calls the
            day methods itself on its own clocks (:class:`regsim.vector_world.VectorWorld`); the world then
            holds no generator and can be pickled (a training checkpoint keeps its open episodes).
    """

    def __init__(
        self,
        config: WorldConfig,
        policy: Policy | None = None,
        *,
        arrangements: int | None = None,
        months: int | None = None,
        seed: int | None = None,
        first_id: int = 0,
        policy_name: str = "external",
        policy_version: str = "0",
        progress: Callable[[int], None] | None = None,
        sample_queues: bool = True,
        dedicated_capacity: bool = False,
        day_process: bool = True,
    ) -> None:
        sim = config.simulation
        self.config = config
        self.policy = policy
        self.policy_name = policy.name if policy is not None else policy_name
        self.policy_version = policy.version if policy is not None else policy_version
        self.n = int(arrangements if arrangements is not None else sim.arrangements)
        self.days = 30 * int(months if months is not None else sim.months)
        self.seed = int(seed if seed is not None else sim.seed)
        self.first_id = int(first_id)
        self.progress = progress
        self.streams = Streams(self.seed)
        self.calendar = calendar_for(sim.start_date, self.days + _PLAN_MARGIN_DAYS)
        self.space = ActionSpace.from_config(config.decisions)
        self.rules = RuleSet(config.rules, self.space)
        self.gid = np.arange(self.first_id, self.first_id + self.n, dtype=np.int64)
        self.pop: Population = draw_population(config, self.gid, self.streams)
        capacity = max(config.rules.max_total_installments, config.arrangements.max_installments)
        self.sched = Schedules(self.n, capacity, self.calendar, config.arrangements.grace_days)
        self.history = ObservableHistory(self.n)
        self.log = EventLog(sim.start_date)
        self.msgs = _Messages()
        self._pending_pool = np.zeros(0, dtype=np.int64)
        self._next_decision_id = 0
        self._day = 0  # today, shared by every row (subclasses may give rows their own clocks: _day_of)

        n = self.n
        self.status = np.zeros(n, dtype=np.int8)
        self.state = behaviour.DebtorState.initial(self.pop, self.streams, self.gid)
        self.pay_time = np.full(n, np.inf)
        self.pay_partial = np.zeros(n, dtype=bool)
        self.thank = np.zeros(n, dtype=bool)
        self.thank_installment = np.full(n, -1, dtype=np.int64)
        self.last_letter_time = np.full(n, -np.inf)
        self.end_time = np.full(n, np.nan)
        self._time_of = np.zeros(n)
        order = np.argsort(self.pop.arrival_day, kind="stable")
        days, starts = np.unique(self.pop.arrival_day[order], return_index=True)
        self._arrivals = dict(zip(days.tolist(), np.split(order, starts[1:]), strict=True))
        self._channels = config.channels.ordered()
        self._cost = np.array([0.0, *(c.cost_eur for c in self._channels)])
        # Per-channel constants indexed by the channel option (0 = no contact), built once.
        self._by_channel = {
            attr: np.array([0.0, *(getattr(c, attr) for c in self._channels)])
            for attr in ("read_delay_days", "open_tracking", "false_open", "impact", "link_pay_prob")
        }
        self._fatigue_weight = np.array([0.0, *(config.population.fatigue.weight[c] for c in CHANNELS)])

        if policy is not None and getattr(policy, "requires_ground_truth", False):
            # Simulation only: a policy that reads latent state gets it here and nowhere else.
            policy.bind_ground_truth(GroundTruthView(self))  # type: ignore[attr-defined]
        window = getattr(policy, "feedback_window_days", None) if policy is not None else None
        self.matcher: OutcomeMatcher | None = (
            OutcomeMatcher(float(window), getattr(policy, "feedback_reward", None)) if window else None
        )
        self._feedback_cursor = 0
        self._build_engine(sample_queues=sample_queues, dedicated_capacity=dedicated_capacity)
        self._ready: simpy.Event | None = None
        self._answer: simpy.Event | None = None
        self.pending: ContextBatch | None = None
        self.done = False
        if day_process:
            self.env.process(self._days())

    def _build_engine(self, *, sample_queues: bool, dedicated_capacity: bool) -> None:
        """The SimPy environment and the capacity on it: shared (queues), or each arrangement's own.

        Holds no state of the simulated debtors, so a subclass may rebuild it (see ``VectorWorld.__setstate__``).
        """
        self.env = simpy.Environment()
        quiet_hours = (
            (self.config.rules.quiet_before_hour, self.config.rules.quiet_from_hour)
            if self.config.rules.quiet_hours_enabled
            else (0, 24)
        )
        quiet_weekdays = self.config.rules.quiet_weekdays if self.config.rules.quiet_hours_enabled else ()
        self.capacity = SharedCapacity(
            self.env,
            self.config.capacity,
            self.calendar,
            connect=self._connect,
            post=self._post_letters,
            wanted=self._wanted,
            sample_queues=sample_queues and not dedicated_capacity,
            quiet_hours=quiet_hours,
            quiet_weekdays=quiet_weekdays,
            print_room=not dedicated_capacity,
        )
        self.dedicated: DedicatedCapacity | None = (
            DedicatedCapacity(self.config.capacity, self.calendar, quiet_hours, quiet_weekdays)
            if dedicated_capacity
            else None
        )

    # ======================================================================================================
    # Driving the world
    # ======================================================================================================
    def run(self) -> World:
        """Run to the horizon with the world's policy; returns ``self``."""
        if self.policy is None:
            raise RuntimeError("run() needs a policy; drive a policy-less world with next_decision()/submit()")
        self.env.run(until=self.days)
        self.done = True
        return self

    def next_decision(self) -> ContextBatch | None:
        """Advance to the next batch of decision points (policy-less worlds); ``None`` at the horizon."""
        if self.policy is not None:
            raise RuntimeError("this world has a policy; use run()")
        if self.done:
            return None
        if self.pending is not None:
            return self.pending
        self._ready = self.env.event()
        self.env.run(until=self._ready)
        batch = self._ready.value
        if batch is None:
            self.done = True
        return batch

    def submit(self, decisions: DecisionBatch) -> None:
        """Answer the pending batch; the world resumes at the next :meth:`next_decision`.

        Raises:
            RuleViolation: A decision breaks a rule; nothing is applied and the batch stays pending.
        """
        if self.pending is None or self._answer is None:
            raise RuntimeError("no decision is pending; call next_decision() first")
        decisions = DecisionBatch.from_decisions(decisions)
        if len(decisions) != len(self.pending):
            raise ValueError(f"{len(decisions)} decisions for {len(self.pending)} contexts (the pending batch)")
        decisions = self.rules.normalise(self.pending, decisions)
        self.rules.check(self.pending, decisions)
        answer, self._answer, self.pending = self._answer, None, None
        answer.succeed(decisions)

    # ======================================================================================================
    # The population process
    # ======================================================================================================
    def _days(self) -> Generator[Any, Any, None]:
        open_states = (ArrangementStatus.PENDING, ArrangementStatus.OFFERED, ArrangementStatus.ACTIVE)
        for d in range(self.days):
            if not np.isin(self.status, open_states).any():
                break  # every arrangement has ended: nothing more can happen
            if self.env.now < d:
                yield self.env.timeout(d - self.env.now)
            self._day = d
            self._liquidity()
            self._book_due_dates()
            ids, kinds, installments = self._decision_points()
            if len(ids):
                batch = self._contexts(ids, kinds, installments)
                if self.policy is not None:
                    decisions = DecisionBatch.from_decisions(self.policy.decide_batch(batch))
                    decisions = self.rules.normalise(batch, decisions)
                    self.rules.check(batch, decisions)
                else:
                    self.pending = batch
                    self._answer = self.env.event()
                    assert self._ready is not None
                    self._ready.succeed(batch)
                    decisions = yield self._answer
                decision_ids = self._apply(batch, decisions)
                if self.matcher is not None:
                    self.matcher.add(decision_ids, float(d), batch, decisions.actions, decisions.propensity)
            self._draw_payments()
            yield self.env.timeout(d + 1 - 1e-6 - self.env.now)
            self._settle(np.flatnonzero(self.pay_time <= self.env.now), self.env.now)
            self._feed_back(float(d + 1), final=False)
            if self.progress is not None:
                self.progress(d + 1)
        self._feed_back(float(self.env.now), final=True)
        self.done = True
        if self._ready is not None and not self._ready.triggered:
            self._ready.succeed(None)

    # -- the clock and the rows a day step covers -----------------------------------------------------------
    # The day methods below take ``rows`` (the rows whose day it is, sorted; ``None``: every row) and read
    # each row's day through ``_day_of``. Here every row shares ``self._day``; a world whose rows keep their
    # own clocks (:class:`regsim.vector_world.VectorWorld`) overrides these hooks, and how events are
    # scheduled (``_at``) and logged (``_log``), never the dynamics.
    def _day_of(self, ids: NDArray[np.int64] | None) -> int | NDArray[np.int64]:
        """Today for these rows: the shared day (or each row's own day, aligned with ``ids``)."""
        return self._day

    def _time_at(self, ids: NDArray[np.int64]) -> float | NDArray[np.float64]:
        """The start of today for these rows, as a time."""
        return float(self._day)

    def _rows_with(self, status: ArrangementStatus, rows: NDArray[np.int64] | None) -> NDArray[np.int64]:
        """The rows (among ``rows``; all if ``None``) whose arrangement has this status."""
        code = int(status)  # (a plain int: see _ACTIVE)
        if rows is None:
            return np.flatnonzero(self.status == code)
        return rows[self.status[rows] == code]

    def _arrivals_on(self, rows: NDArray[np.int64] | None) -> NDArray[np.int64] | None:
        """The rows whose arrangement arrives today (``None`` if none)."""
        return self._arrivals.get(self._day)

    def _payment_day(self, times: NDArray[np.float64]) -> int | NDArray[np.int64]:
        """The day of payments made at ``times`` (one moment of the shared clock: one day)."""
        return int(times.min())

    def _rows_of(self, batch: ContextBatch) -> NDArray[np.int64]:
        """The rows of a batch of decision points."""
        return batch.columns["arrangement_id"] - self.first_id

    # -- liquidity, shocks, decay -------------------------------------------------------------------------
    def _liquidity(self, rows: NDArray[np.int64] | None = None) -> None:
        """Every debtor's morning (income, spending, shocks, decay); then referrals and disengagement."""
        behaviour.advance_day(
            self.state,
            self.pop,
            self.config.population,
            self.streams,
            self.gid,
            self._day_of(rows),
            self.calendar,
            rows=rows,
        )
        # A debtor in a shock with overdue installments may turn to debt counselling.
        active = self._rows_with(ArrangementStatus.ACTIVE, rows)
        if len(active):
            d = self._day_of(active)
            shocked = active[(self.state.shock_until[active] > d) & (self.sched.overdue(active) > 0)]
            if len(shocked):  # (few days: no draw on none)
                u = self.streams.uniform(Purpose.REFERRAL, self.gid[shocked], self._day_of(shocked))
                refer = shocked[u < self.config.population.shocks.referral_per_day]
                self._end(refer, self._time_at(refer), ArrangementStatus.REFERRED, EventType.REFERRED)
            disengage = behaviour.disengagement(
                self.state, self.config.population.fatigue, self.streams, self.gid, active, d
            )
            self.state.disengaged[disengage] = True

    # -- due dates, misses, breakdowns --------------------------------------------------------------------
    def _book_due_dates(self, rows: NDArray[np.int64] | None = None) -> None:
        s = self.sched
        arrivals = self._arrivals_on(rows)
        if arrivals is not None:
            self._create(arrivals)
        active = self._rows_with(ArrangementStatus.ACTIVE, rows)
        self._missed_today = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if not len(active):
            return
        due_ids, due_j = s.advance_due(active, self._day_of(active))
        if len(due_ids):
            self._log(
                EventType.INSTALLMENT_DUE,
                self._time_at(due_ids),
                due_ids,
                installment=due_j,
                amount_eur=s.amount[due_ids, due_j],
            )
        ids, inst = s.advance_missed(active, self._day_of(active))
        if len(ids):
            self._log(EventType.INSTALLMENT_MISSED, self._time_at(ids), ids, installment=inst)
            np.add.at(self.history.missed, ids, 1)
            self.state.streak[ids] = 0.0
            # One decision per arrangement: the oldest missed installment.
            order = np.lexsort((inst, ids))
            ids, inst = ids[order], inst[order]
            first = np.r_[True, ids[1:] != ids[:-1]]
            self._missed_today = (ids[first], inst[first])
        broken = active[s.overdue(active) >= self.config.arrangements.breakdown_after_missed]
        self._end(broken, self._time_at(broken), ArrangementStatus.BROKEN, EventType.BROKEN)

    def _create(self, ids: NDArray[np.int64]) -> None:
        arr, pop, h = self.config.arrangements, self.pop, self.history
        d = self._day_of(ids)
        self.sched.create(
            ids, d, pop.n_installments[ids], pop.debt_eur[ids], arr.default_due_day, arr.min_days_to_first_due
        )
        self.status[ids] = ArrangementStatus.OFFERED
        h.created_day[ids] = d
        h.debt[ids] = pop.debt_eur[ids]
        h.prior_payments[ids] = pop.prior_payments[ids]
        h.prior_late_share[ids] = pop.prior_late_share[ids]
        h.prior_pay_dom[ids] = pop.prior_pay_dom[ids]
        self._log(
            EventType.ARRANGEMENT_CREATED,
            self._time_at(ids),
            ids,
            amount_eur=pop.debt_eur[ids],
            n_installments=self.sched.n[ids],
            installment_eur=self.sched.amount[ids, 0],
            due_day=self.sched.due_dom[ids],
            prior_payments=pop.prior_payments[ids],
            prior_late_share=pop.prior_late_share[ids],
            prior_pay_dom=pop.prior_pay_dom[ids],
        )

    def _end(
        self, ids: NDArray[np.int64], t: float | NDArray[np.float64], status: ArrangementStatus, event: EventType
    ) -> None:
        if not len(ids):
            return
        self.status[ids] = status
        self.end_time[ids] = t
        self.pay_time[ids] = np.inf
        self.thank[ids] = False
        extra: dict[str, Any] = {"amount_eur": self.sched.balance[ids]}
        if status == ArrangementStatus.BROKEN:
            # Statutory collection costs only after a reminder letter giving 14 days (F8).
            warned = self.last_letter_time[ids] <= t - 14
            extra["collection_costs_eur"] = np.where(
                warned, behaviour.statutory_collection_costs(self.sched.balance[ids]), 0.0
            )
        self._log(event, t, ids, **extra)
        self._cancel_pending(ids, t, reminders_only=False)

    # -- decision points ----------------------------------------------------------------------------------
    def _decision_points(
        self, rows: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        s, cfg = self.sched, self.config.decisions
        new = self._rows_with(ArrangementStatus.OFFERED, rows)
        active = self._rows_with(ArrangementStatus.ACTIVE, rows)
        taken = np.zeros(self.n, dtype=bool)
        parts: list[tuple[NDArray[np.int64], int, NDArray[np.int64]]] = []

        def add(ids: NDArray[np.int64], kind: DecisionKind, inst: NDArray[np.int64]) -> None:
            keep = ~taken[ids]
            ids, inst = ids[keep], inst[keep]
            taken[ids] = True
            parts.append((ids, int(kind), inst))

        add(new, DecisionKind.PLAN_CREATED, np.zeros(len(new), dtype=np.int64))
        m_ids, m_inst = self._missed_today
        live = self.status[m_ids] == _ACTIVE
        add(m_ids[live], DecisionKind.MISSED, m_inst[live])
        if len(active):
            d = self._day_of(active)
            since_due = d - s.open_due(active)
            follow_up = (since_due[:, None] == np.asarray(cfg.follow_up_days, dtype=np.int64)[None, :]).any(axis=1)
            follow = active[(s.overdue(active) > 0) & follow_up]
            add(follow, DecisionKind.FOLLOW_UP, s.first_open[follow])
            j = np.minimum(s.came_due[active], s.capacity - 1)
            soon = (s.came_due[active] < s.n[active]) & (s.due[active, j] - d == cfg.pre_due_days)
            soon &= s.came_due[active] >= s.first_open[active]
            pre = active[soon]
            add(pre, DecisionKind.PRE_DUE, s.came_due[pre])
            thanks = active[self.thank[active]]
            add(thanks, DecisionKind.PAYMENT_RECEIVED, self.thank_installment[thanks])
        if rows is None:
            self.thank[:] = False
        else:
            self.thank[rows] = False
        ids = np.concatenate([p[0] for p in parts])
        kinds = np.concatenate([np.full(len(p[0]), p[1], dtype=np.int64) for p in parts])
        inst = np.concatenate([p[2] for p in parts]).astype(np.int64)
        return ids, kinds, inst

    def _contexts(self, ids: NDArray[np.int64], kinds: NDArray[np.int64], inst: NDArray[np.int64]) -> ContextBatch:
        columns = self.history.context_columns(ids, kinds, inst, self._day_of(ids), self.sched, self.calendar)
        columns["arrangement_id"] = self.gid[ids]
        batch = ContextBatch(
            space=self.space, columns=columns, mask=np.ones((len(ids), self.space.mask_size), dtype=bool)
        )
        return self.rules.apply(batch)

    # -- applying decisions -------------------------------------------------------------------------------
    def _feed_back(self, now: float, final: bool) -> None:
        """Give an online learner the outcomes of decisions whose window has closed (or, at the end, all)."""
        if self.matcher is None or self.policy is None:
            return
        for event, _, cols in self.log.chunks_since(self._feedback_cursor):
            if event in _FEEDBACK_EVENTS:
                self.matcher.observe(
                    event, cols["time"], cols["arrangement_id"], cols.get("amount_eur"), cols.get("decision_id")
                )
        self._feedback_cursor = self.log.n_chunks
        feedback = self.matcher.flush(now) if final else self.matcher.mature(now)
        if feedback is not None:
            self.policy.update(feedback)

    def _apply(self, batch: ContextBatch, dec: DecisionBatch) -> NDArray[np.int64]:
        cfg, s, h = self.config, self.sched, self.history
        ids = self._rows_of(batch)
        d = self._day_of(ids)
        t0 = self._time_at(ids)
        kinds = batch.columns["kind"].astype(np.int64)
        a = dec.actions
        n = len(ids)
        decision_ids = np.arange(self._next_decision_id, self._next_decision_id + n, dtype=np.int64)
        self._next_decision_id += n
        weekday = self.calendar.weekday[d]
        send_time = self.rules.send_time(d, int(weekday) if np.ndim(d) == 0 else weekday.astype(np.int64), a[:, 1])
        contact = a[:, 0] > 0
        if self._keeps(EventType.DECISION):  # its columns take some building: only when the event is kept
            self._log(
                EventType.DECISION,
                t0,
                ids,
                decision_id=decision_ids,
                decision_kind=kinds,
                installment=batch.columns["installment"],
                a_channel=a[:, 0],
                a_send_slot=a[:, 1],
                a_due_day=a[:, 2],
                a_deferral=a[:, 3],
                a_reduction=a[:, 4],
                propensity=dec.propensity,
                send_time=np.where(contact, send_time, np.nan),
                masked_rules=_masked_rule_names(batch),
                policy=self.policy_name,
                policy_version=self.policy_version,
            )
        created = kinds == _PLAN_CREATED
        self.status[ids[created]] = ArrangementStatus.ACTIVE

        m = a[:, 2] > 0
        if m.any():
            dom = np.array(cfg.decisions.due_day_options)[a[m, 2] - 1]
            s.set_due_day(ids[m], dom, at(d, m), cfg.arrangements.min_days_to_first_due)
            self._log(
                EventType.DUE_DAY_SET,
                at(t0, m),
                ids[m],
                due_day=dom,
                n_installments=s.n[ids[m]],
                installment_eur=s.current_amount(ids[m]),
            )
        m = a[:, 3] > 0
        if m.any():
            days = np.array(cfg.decisions.deferral_options)[a[m, 3]]
            s.defer(ids[m], days)
            np.add.at(h.deferrals, ids[m], 1)
            self._log_replan(EventType.DEFERRAL, at(t0, m), ids[m], deferral_days=days)
        m = a[:, 4] > 0
        if m.any():
            frac = np.array(cfg.decisions.reduction_options)[a[m, 4]]
            s.reduce(ids[m], frac, at(d, m))
            np.add.at(h.reductions, ids[m], 1)
            self._log_replan(EventType.REDUCTION, at(t0, m), ids[m], reduction=frac)
        if contact.any():
            rows = np.flatnonzero(contact)
            hours = np.array([slot.hour for slot in self.space.send_slots])[a[rows, 1]]
            mids = self.msgs.add(
                ids[rows],
                a[rows, 0],
                _MESSAGE_KIND_OF[kinds[rows]],
                batch.columns["installment"][rows].astype(np.int64),
                decision_ids[rows],
                hours,
            )
            h.add_contacts(ids[rows], send_time[rows])
            self._pending_pool = np.concatenate([self._pending_pool, mids])
            times = send_time[rows]
            self._at_each(times, self._send, mids)
        return decision_ids

    def _keeps(self, event: EventType) -> bool:
        """Whether :meth:`_log` keeps events of this type (a world that keeps only some overrides both)."""
        return True

    def _log(self, event: EventType, t: float | NDArray[np.float64], rows: NDArray[np.int64], **columns: Any) -> None:
        """Log events of these rows (the one place the world writes to its event log)."""
        self.log.append(event, t, self.gid[rows], **columns)

    def _log_replan(
        self, event: EventType, t: float | NDArray[np.float64], rows: NDArray[np.int64], **extra: Any
    ) -> None:
        """Log a re-plan with the plan as it stands afterwards (what replay needs to follow it)."""
        s = self.sched
        self._log(
            event,
            t,
            rows,
            n_installments=s.n[rows],
            installment_eur=s.current_amount(rows),
            installment=s.first_open[rows],
            **extra,
        )

    def _at(self, t: float, action: Callable[[NDArray[np.int64], Time], None], mids: NDArray[np.int64]) -> None:
        """Call ``action(mids, t)`` at simulation time ``t`` (one SimPy timeout for the whole group)."""
        event = self.env.timeout(max(0.0, t - self.env.now), value=mids)
        event.callbacks.append(lambda e: action(e.value, float(self.env.now)))

    def _at_each(
        self, times: NDArray[np.float64], action: Callable[[NDArray[np.int64], Time], None], mids: NDArray[np.int64]
    ) -> None:
        """Call ``action`` on each message at its own time ``times[i]``: one :meth:`_at` per distinct time, in
        increasing order of time (the order in which their events are created)."""
        for t in np.unique(times):
            self._at(float(t), action, mids[times == t])

    # ======================================================================================================
    # Messages
    # ======================================================================================================
    def _still_wanted(self, mids: NDArray[np.int64], t: Time) -> NDArray[np.bool_]:
        """Settle earlier payments of these debtors, cancel what is no longer wanted, return what is."""
        m = self.msgs
        debtors = m.debtor[mids]
        due = self.pay_time[debtors] <= t
        if due.any():
            self._settle(np.unique(debtors[due]), t)
        pending = m.state[mids] == _PENDING
        active = self.status[debtors] == _ACTIVE
        reminder = m.kind[mids] == _REMINDER
        paid = self.sched.is_paid(debtors, m.installment[mids])
        ok = pending & active & ~(reminder & paid)
        dropped = pending & ~ok
        if dropped.any():
            self._cancel(mids[dropped], at(t, dropped))
        return ok

    def _log_messages(
        self,
        event: EventType,
        mids: NDArray[np.int64],
        t: float | NDArray[np.float64],
        counter: NDArray[np.int64] | None = None,
        **extra: Any,
    ) -> None:
        """Log a message event with the message's columns (if kept), and count it in an observable counter if given."""
        m = self.msgs
        debtors, ch = m.debtor[mids], m.channel[mids]
        if counter is not None:
            np.add.at(counter, (debtors, ch - 1), 1)
        if not self._keeps(event):
            return
        self._log(
            event,
            t,
            debtors,
            message_id=mids,
            channel=ch,
            decision_id=m.decision[mids],
            installment=m.installment[mids],
            **extra,
        )

    def _cancel(self, mids: NDArray[np.int64], t: float | NDArray[np.float64]) -> None:
        self.msgs.state[mids] = _CANCELLED
        self._log_messages(EventType.MESSAGE_CANCELLED, mids, t)

    def _cancel_pending(
        self, debtors: NDArray[np.int64], t: float | NDArray[np.float64] | None, reminders_only: bool
    ) -> None:
        """Cancel pending messages of these debtors: reminders for paid installments, or all of them.

        ``t`` is the time of the cancellation (or each debtor's, aligned with ``debtors``); ``None`` means each
        debtor's own payment time (``_time_of``).
        """
        pool = self._pending_pool
        if not len(pool) or not len(debtors):
            return
        m = self.msgs
        pool = pool[m.state[pool] == _PENDING]
        self._pending_pool = pool
        chosen = np.zeros(self.n, dtype=bool)  # a mask over the rows: cheaper than np.isin on small sets
        chosen[debtors] = True
        hit = pool[chosen[m.debtor[pool]]]
        if reminders_only:
            hit = hit[(m.kind[hit] == _REMINDER) & self.sched.is_paid(m.debtor[hit], m.installment[hit])]
        if len(hit):
            if t is None:
                when: float | NDArray[np.float64] = self._time_of[m.debtor[hit]]
            elif np.ndim(t) == 0:
                when = t
            else:  # each debtor's own time (rows with their own clocks)
                order = np.argsort(debtors, kind="stable")
                when = np.asarray(t)[order[np.searchsorted(debtors[order], m.debtor[hit])]]
            self._cancel(hit, when)

    # Message events take their time ``t`` as one moment, or (rows with their own clocks) one per message.
    def _send(self, mids: NDArray[np.int64], t: Time) -> None:
        ok = self._still_wanted(mids, t)
        mids, t = mids[ok], at(t, ok)
        if not len(mids):
            return
        ch = self.msgs.channel[mids]
        is_direct = (ch == _EMAIL) | (ch == _SMS)
        direct = mids[is_direct]
        if len(direct):
            self._mark_sent(direct, at(t, is_direct))
            self._deliver(direct, at(t, is_direct))
        self._hand_over(mids, ch, t)

    def _hand_over(self, mids: NDArray[np.int64], ch: NDArray[np.int64], t: Time) -> None:
        """Letters to the print room, calls to the robocall lines or the collectors."""
        if self.dedicated is None:
            self.capacity.queue_letters(mids[ch == _LETTER])
            self.capacity.call(mids[ch == _ROBOCALL], collector=False)
            self.capacity.call(mids[ch == _COLLECTOR], collector=True)
            return
        # Dedicated resources: each message goes out at its own next opening, re-checked then.
        routes = ((_LETTER, self._post_wanted), (_ROBOCALL, self._connect_wanted), (_COLLECTOR, self._connect_wanted))
        for channel, action in routes:
            chosen = ch == channel
            if not chosen.any():
                continue
            now = np.broadcast_to(np.asarray(t, dtype=np.float64), mids.shape)[chosen]
            if channel == _LETTER:
                when = self.dedicated.post_times(now)
            else:
                when = self.dedicated.call_times(now, collector=channel == _COLLECTOR)
            self._at_each(when, action, mids[chosen])

    def _post_wanted(self, mids: NDArray[np.int64], t: Time) -> None:
        ok = self._still_wanted(mids, t)
        if ok.any():
            self._post_letters(mids[ok], at(t, ok))

    def _connect_wanted(self, mids: NDArray[np.int64], t: Time) -> None:
        ok = self._still_wanted(mids, t)
        if ok.any():
            self._connect(mids[ok], at(t, ok))

    def _wanted(self, mids: NDArray[np.int64]) -> NDArray[np.bool_]:
        return self._still_wanted(mids, float(self.env.now))

    def _mark_sent(self, mids: NDArray[np.int64], t: Time) -> None:
        self.msgs.state[mids] = _SENT
        self._log_messages(
            EventType.MESSAGE_SENT, mids, t, self.history.sent, amount_eur=self._cost[self.msgs.channel[mids]]
        )

    def _post_letters(self, mids: NDArray[np.int64], t: Time) -> None:
        self._mark_sent(mids, t)
        debtors = self.msgs.debtor[mids]
        self.last_letter_time[debtors] = t
        letter = self._channels[_LETTER - 1]
        # Keyed by the debtor, the posting day and the message's slot, never by global message numbers: the same
        # letter takes the same time whatever else the population was sent (common random numbers).
        key = self.msgs.channel[mids] * 32 + self.msgs.hour[mids]
        u = self.streams.uniform(Purpose.DELIVERY_DELAY, self.gid[debtors], _whole_day(t), key)
        delay = letter.delay_days_min + np.floor(u * (letter.delay_days_max - letter.delay_days_min + 1))
        arrive = np.floor(t) + delay + _LETTER_READ_HOUR / 24.0
        self._at_each(arrive, self._deliver, mids)

    def _connect(self, mids: NDArray[np.int64], t: Time) -> None:
        """Calls connect: they are made (and cost) whether or not the debtor answers."""
        self._mark_sent(mids, t)
        self._deliver(mids, t)

    def _deliver(self, mids: NDArray[np.int64], t: Time) -> None:
        """A message reaches the debtor: draw whether (and when) it is noticed and log what is observable."""
        m, pop = self.msgs, self.pop
        debtors, ch = m.debtor[mids], m.channel[mids]
        gid, day = self.gid[debtors], _whole_day(t)
        key = ch * 32 + m.hour[mids]
        hour = np.full(len(mids), (t - day) * 24.0)
        p = pop.notice[debtors, ch - 1] * hour_availability(pop.hour_profile[debtors], hour, ch)
        p = p * np.where(self.state.disengaged[debtors], 0.5, 1.0)
        # The three draws of a delivery share their keys: hashed together (the same draws as one by one).
        u_notice, u_read, u_open = self.streams.uniforms(_DELIVERY_DRAWS, gid, day, key)
        noticed = u_notice < p
        calls = (ch == _ROBOCALL) | (ch == _COLLECTOR)
        # Observable delivery: SMS and email receipts, answered calls; a letter's delivery is not observed.
        seen = ((ch == _EMAIL) | (ch == _SMS)) | (calls & noticed)
        if seen.any():
            self._log_messages(EventType.MESSAGE_DELIVERED, mids[seen], t, self.history.delivered)
        read_mean = self._by_channel["read_delay_days"][ch]
        delay = read_mean * -np.log(u_read)  # Streams.exponential
        when = t + delay
        # Open signals: tracked opens of noticed messages, and false opens (privacy pre-fetch, F6).
        track = self._by_channel["open_tracking"][ch]
        false = self._by_channel["false_open"][ch]
        opened = np.where(noticed, u_open < track, u_open < false)
        if opened.any():
            o = np.flatnonzero(opened)
            # The signal arrives when the message is read (a false open: within the hour), on the hour.
            open_time = np.ceil(np.where(noticed[o], when[o], at(t, o) + 1.0 / 24.0) * 24.0) / 24.0
            self._at_each(open_time, self._opened, mids[o])
        self.state.noticed_messages[debtors[noticed]] += 1
        now_rows = noticed & (delay <= 0)
        if now_rows.any():
            self._noticed(mids[now_rows], at(t, now_rows))
        later = noticed & (delay > 0)
        if later.any():
            rounded = np.ceil(when[later] * 24.0) / 24.0
            self._at_each(rounded, self._noticed, mids[later])

    def _opened(self, mids: NDArray[np.int64], t: Time) -> None:
        """An 'opened' signal reaches the creditor (observable; noisy for email, F6)."""
        self._log_messages(EventType.MESSAGE_OPENED, mids, t, self.history.opened)

    def _noticed(self, mids: NDArray[np.int64], t: Time) -> None:
        """The debtor takes in a message: fatigue, memory, motivation, opt-outs and paying by link."""
        m = self.msgs
        debtors = m.debtor[mids]
        alive = self.status[debtors] == _ACTIVE
        mids, debtors, t = mids[alive], debtors[alive], at(t, alive)
        if not len(mids):
            return
        due = self.pay_time[debtors] <= t
        if due.any():
            self._settle(np.unique(debtors[due]), t)
        ch, kind = m.channel[mids], m.kind[mids]
        gid, day = self.gid[debtors], _whole_day(t)
        key = ch * 32 + m.hour[mids]
        fat = self.config.population.fatigue
        st = self.state
        np.add.at(st.annoyance, debtors, self._fatigue_weight[ch])
        # Annoyed debtors opt out of the channel that keeps reaching them (observable).
        can_opt = (ch == _EMAIL) | (ch == _SMS) | (ch == _ROBOCALL)
        annoyed = st.annoyance[debtors] > fat.disengage_threshold
        u_opt, u_link = self.streams.uniforms(_NOTICE_DRAWS, gid, day, key)
        opt = can_opt & annoyed & (u_opt < fat.opt_out_per_contact) & ~self.history.opted_out[debtors, ch - 1]
        if opt.any():
            self.history.opted_out[debtors[opt], ch[opt] - 1] = True
            self._log(EventType.OPT_OUT, at(t, opt), debtors[opt], channel=ch[opt], message_id=mids[opt])
        impact = self._by_channel["impact"][ch]
        reminder = kind == _REMINDER
        np.add.at(st.boost, debtors[reminder], (self.pop.reminder_effect[debtors] * impact)[reminder])
        habit = self.config.population.habit
        just_paid = reminder & (t - self.history.last_payment_time[debtors] < habit.just_paid_days)
        st.streak[debtors[just_paid]] *= 1.0 - habit.just_paid_penalty
        thanks = kind == _THANK_YOU
        st.streak[debtors[thanks]] += habit.thank_you_bonus
        # Paying at once through the message's payment link.
        linkable = ~thanks
        link_p = self._by_channel["link_pay_prob"][ch]
        will = behaviour.effective_willingness(st, self.pop, debtors)
        # What is owed is looked up only for the messages whose link draw succeeds (few do).
        rows = np.flatnonzero(linkable & (u_link < link_p * will))
        if len(rows):
            owed = self.sched.owed_now(debtors[rows], at(day, rows), self.config.arrangements.pay_window_days)
            able = (st.cash[debtors[rows]] >= owed - PAY_TOLERANCE_EUR) & (owed > 0)
            rows, owed = rows[able], owed[able]
        if len(rows):
            if len(rows) > 1:  # at most one link payment per debtor at one moment
                _, first = np.unique(debtors[rows], return_index=True)
                rows, owed = rows[first], owed[first]
            self._log_messages(EventType.MESSAGE_CLICKED, mids[rows], at(t, rows), self.history.clicked)
            self._pay(debtors[rows], owed, at(t, rows), channel=ch[rows])

    # ======================================================================================================
    # Payments
    # ======================================================================================================
    def _draw_payments(self, among: NDArray[np.int64] | None = None) -> None:
        active = self._rows_with(ArrangementStatus.ACTIVE, among)
        arr = self.config.arrangements
        # Only a row whose oldest open installment is due within the pay window owes something today (the open
        # installments fall due in order): the others are left out before the costlier probability.
        active = active[self.sched.open_due(active) <= self._day_of(active) + arr.pay_window_days]
        if not len(active):
            return
        p, owed = self.payment_probability(active, self._day_of(active))
        rows = active[owed > 0]
        p = p[owed > 0]
        d = self._day_of(rows)
        gid = self.gid[rows]
        u_go, u_partial, u_hour = self.streams.uniforms(_PAYMENT_DRAWS, gid, d)
        go = u_go < p
        partial = u_partial < arr.partial_payment_prob
        hour = 7.0 + 16.0 * u_hour
        self.pay_time[rows[go]] = at(d, go) + hour[go] / 24.0
        self.pay_partial[rows[go]] = partial[go]

    def payment_probability(
        self, ids: NDArray[np.int64], d: int | NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Latent: P(the debtor sets out to pay on day ``d``) and what they owe then (ground truth, oracle, info).

        ``d`` is a day, or each debtor's own day aligned with ``ids``.
        """
        arr = self.config.arrangements
        owed = self.sched.owed_now(ids, d, arr.pay_window_days)
        days_to_due = self.sched.open_due(ids) - d
        p = behaviour.pay_intent_probability(self.state, self.pop, self.config.population, arr, ids, days_to_due)
        able = self.state.cash[ids] >= owed - PAY_TOLERANCE_EUR
        partial = arr.partial_payment_prob * (self.state.cash[ids] >= MIN_PARTIAL_PAYMENT_EUR)
        p_effective = p * np.where(able, 1.0, partial)
        return p_effective, owed

    def _settle(self, debtors: NDArray[np.int64], t: Time) -> None:
        """Carry out today's planned payments of these debtors whose hour has come."""
        if not len(debtors):
            return
        when = self.pay_time[debtors]
        self.pay_time[debtors] = np.inf
        alive = self.status[debtors] == _ACTIVE
        debtors, when = debtors[alive], when[alive]
        if not len(debtors):
            return
        owed = self.sched.owed_now(debtors, self._payment_day(when), self.config.arrangements.pay_window_days)
        cash = self.state.cash[debtors]
        full = cash >= owed - PAY_TOLERANCE_EUR
        partial_amount = np.where(
            self.pay_partial[debtors] & (cash >= MIN_PARTIAL_PAYMENT_EUR), np.floor(np.minimum(cash, owed)), 0.0
        )
        amount = np.where(full, owed, partial_amount)
        ok = amount > 0
        order = np.argsort(when[ok], kind="stable")
        self._pay(debtors[ok][order], amount[ok][order], when[ok][order], channel=None)

    def _pay(
        self,
        debtors: NDArray[np.int64],
        amounts: NDArray[np.float64],
        t: NDArray[np.float64] | float,
        channel: NDArray[np.int64] | None,
    ) -> None:
        if not len(debtors):
            return
        times = np.broadcast_to(np.asarray(t, dtype=np.float64), debtors.shape)
        day = self._payment_day(times)
        self.state.cash[debtors] -= amounts
        h, s = self.history, self.sched
        done = s.pay(debtors, amounts, day)
        self._log(EventType.PAYMENT, times, debtors, amount_eur=amounts, channel=0 if channel is None else channel)
        h.last_payment_time[debtors] = times
        self._time_of[debtors] = times  # debtors are unique within one call
        if len(done.ids):
            t_done = self._time_of[done.ids]
            self._log(
                EventType.INSTALLMENT_PAID,
                t_done,
                done.ids,
                installment=done.installment,
                deferral_days=done.days_late,
                amount_eur=s.amount[done.ids, done.installment],
            )
            on_time = done.days_late <= 0
            np.add.at(h.on_time, done.ids[on_time], 1)
            self.state.streak[done.ids[on_time]] += 1.0
            self.state.streak[done.ids[~on_time]] = 0.0
            self.thank[done.ids] = True
            self.thank_installment[done.ids] = done.installment
        complete = debtors[s.first_open[debtors] >= s.n[debtors]]
        if len(complete):
            complete = np.unique(complete)
            self.status[complete] = ArrangementStatus.COMPLETED
            self.end_time[complete] = self._time_of[complete]
            self.thank[complete] = False
            self._log(EventType.COMPLETED, self._time_of[complete], complete)
            self._cancel_pending(complete, None, reminders_only=False)
        self._cancel_pending(debtors, None, reminders_only=True)  # (debtors are unique here)

    # ======================================================================================================
    # Outputs
    # ======================================================================================================
    def ground_truth(self) -> pd.DataFrame:
        """Latent facts per arrangement (never in the event log): type, income, responsiveness, shocks."""
        pop, st = self.pop, self.state
        frame = pd.DataFrame(
            {
                "arrangement_id": self.gid,
                "debtor_type": _categorical(pop.type, DEBTOR_TYPES),
                "income_schedule": _categorical(pop.schedule, INCOME_SCHEDULES),
                "pay_day": pop.pay_day,
                "income_per_pay_eur": pop.income_per_pay,
                "free_cash_share": pop.free_cash_share,
                "attention": pop.attention,
                "willingness": pop.willingness,
                "hour_profile": _categorical(pop.hour_profile, HOUR_PROFILES),
                "shocks": st.shocks,
                "shock_days": st.shock_days,
                "disengaged": st.disengaged,
                "noticed_messages": st.noticed_messages,
                "final_status": _categorical(self.status, tuple(s.name.lower() for s in ArrangementStatus)),
            }
        )
        for k, c in enumerate(CHANNELS):
            frame[f"notice_{c}"] = pop.notice[:, k]
        return frame

    def resource_queues(self) -> pd.DataFrame:
        """Queue lengths of the shared resources, sampled at noon and at the end of each day."""
        s = self.capacity.samples
        return pd.DataFrame(
            {"time": s.time, "resource": s.resource, "queued": s.queued, "busy": s.busy, "capacity": s.capacity}
        )


def _whole_day(t: Time) -> int | NDArray[np.int64]:
    """The day a time falls on (times are never negative), one or per element."""
    return int(t) if np.ndim(t) == 0 else np.floor(t).astype(np.int64)


def _categorical(codes: NDArray[np.integer], names: tuple[str, ...]) -> pd.Categorical[str]:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(list(names)))


def _masked_rule_names(batch: ContextBatch) -> NDArray[np.object_]:
    """Per row, the comma-separated names of the rules that masked something (applicability excluded)."""
    names = [n for n in batch.forbidden if n != "not_applicable"]
    code = np.zeros(len(batch), dtype=np.int64)
    for k, name in enumerate(names):
        code |= batch.forbidden[name].any(axis=1).astype(np.int64) << k
    out = np.full(len(batch), "", dtype=object)
    for c in np.unique(code):
        out[code == c] = ",".join(n for k, n in enumerate(names) if c >> k & 1)
    return out
