"""The simulated world: a SimPy model of a debtor population under a decision policy.

Time is in days since the start (fractions are hours). Debtor state is a struct of arrays advanced for all
debtors at once, and arrangement state lives in the :class:`~regsim.ledger.Ledger`, the one place where it
changes. SimPy carries what needs a clock and a queue:

* the **population process** (:meth:`World._days`) runs the days in the order of :mod:`regsim.engine`: the
  morning (debtors' liquidity, referrals, arrivals, the ledger's bookkeeping, the day's decision points,
  answered at once), the draws of who pays today, the day's events, and the evening's payments;
* **message delivery** (:mod:`regsim.delivery`): every send time of a batch is one SimPy timeout; email and
  SMS arrive at once (email is read later), letters go through the print room and the post (days), calls
  through the shared collectors and robocall lines (:mod:`regsim.capacity`), whose queues are visible;
* **payments** (:mod:`regsim.payments`) at the hour each debtor set out to pay, or at once through a message's
  payment link.

A payment cancels every pending reminder for the installments it covers the moment it is recorded; a queued
letter or call is re-checked before it is sent, so a debtor never gets a reminder for an installment already
paid (unless the letter was already in the post).

The world runs either with a :class:`~regsim.decision.Policy` (``run()``) or driven from outside, one batch
of decision points at a time (``next_decision()`` / ``submit()``), which is how the Gymnasium adapter steps.
A one-arrangement world (``dedicated_capacity=True``) gives its debtor their own collectors, robocall lines
and print room; :class:`regsim.vector_world.VectorWorld` runs many such worlds as rows with their own clocks.

The behaviour equations are in :mod:`regsim.behaviour` and docs/mechanisms.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pandas as pd
import simpy
from numpy.typing import NDArray

from regsim import behaviour, engine
from regsim.arrangement import ArrangementStatus
from regsim.calendar import calendar_for
from regsim.capacity import DedicatedCapacity, SharedCapacity
from regsim.clock import Day, Time, at
from regsim.config import CHANNELS, DEBTOR_TYPES, INCOME_SCHEDULES, WorldConfig
from regsim.decision import ActionSpace, ContextBatch, DecisionBatch, DecisionKind, Policy
from regsim.delivery import MessageDelivery
from regsim.engine import Action
from regsim.eventlog import EventLog, EventType
from regsim.feedback import OutcomeMatcher
from regsim.ground_truth import GroundTruthView
from regsim.ledger import OPEN_STATUSES, Ledger
from regsim.payments import PaymentBehaviour
from regsim.population import HOUR_PROFILES, Population, draw_population
from regsim.random import Purpose, Streams
from regsim.rewards import RewardCosts, resolve_reward
from regsim.rules import RuleSet
from regsim.runoff import RunoffCap
from regsim.self_service import SelfServiceDesk

__all__ = ["World"]

_PLAN_MARGIN_DAYS = 3 * 366  # the calendar reaches past the horizon: plans run on after it
_ACTIVE = int(ArrangementStatus.ACTIVE)  # (a plain int: see regsim.ledger)
_OPEN_CODES = np.array([int(s) for s in OPEN_STATUSES], dtype=np.int8)


class World(PaymentBehaviour, MessageDelivery):
    """A population of arrangements under a policy, simulated day by day.

    Args:
        config: The world.
        policy: The policy to call at decision points; ``None`` to drive the world from outside with
            :meth:`next_decision` and :meth:`submit`. A policy with a positive ``feedback_window_days``
            is an online learner: the world calls its ``update(feedback)`` every evening with the decisions
            whose outcome window closed (see :mod:`regsim.feedback`), and with the rest, censored, at the end.
            Other policies are never updated.
        arrangements: Number of arrangements (default: ``config.simulation.arrangements``).
        months: Horizon in months of 30 days (default: ``config.simulation.months``, unless ``runoff`` is given).
        runoff: Run off instead of stopping at a horizon: follow each arrangement to its end or to its cap
            (:class:`regsim.runoff.RunoffCap`, from its arrival), and stop once every arrangement has ended or
            passed its cap. Not together with ``months``.
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
        runoff: RunoffCap | None = None,
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
        if runoff is not None and months is not None:
            raise ValueError("give either months (a fixed horizon) or runoff (follow to each cap), not both")
        self.runoff = runoff
        self.days = 30 * int(months if months is not None else sim.months)
        self.seed = int(seed if seed is not None else sim.seed)
        self.first_id = int(first_id)
        self.progress = progress
        self.streams = Streams(self.seed)
        self._cap_end: NDArray[np.float64] | None = None  # run-off: the time each arrangement stops being followed
        self.stopped_at = float("nan")  # when the day process ended: at the horizon, or once nothing counted more
        self.calendar = calendar_for(sim.start_date, self.days + _PLAN_MARGIN_DAYS)
        self.space = ActionSpace.from_config(config.decisions)
        self.rules = RuleSet(config.rules, self.space)
        self.gid = np.arange(self.first_id, self.first_id + self.n, dtype=np.int64)
        self.pop: Population = draw_population(config, self.gid, self.streams)
        if runoff is not None:
            # An arrangement is created at the start of its arrival day (see _create).
            self._cap_end = self.pop.arrival_day.astype(np.float64) + runoff.days(self.pop.n_installments)
            self.days = int(np.ceil(self._cap_end.max())) + 1 if self.n else 1
            self.calendar = calendar_for(sim.start_date, self.days + _PLAN_MARGIN_DAYS)
        self.log = EventLog(sim.start_date)
        self.ledger = Ledger(config, self.n, self.calendar, self)
        self._next_decision_id = 0
        self._day = 0  # today, shared by every row (subclasses may give rows their own clocks: _day_of)

        n = self.n
        self.state = behaviour.DebtorState.initial(self.pop, self.streams, self.gid)
        self.pay_time = np.full(n, np.inf)
        self.pay_partial = np.zeros(n, dtype=bool)
        self.thank = np.zeros(n, dtype=bool)
        self.thank_installment = np.full(n, -1, dtype=np.int64)
        order = np.argsort(self.pop.arrival_day, kind="stable")
        days, starts = np.unique(self.pop.arrival_day[order], return_index=True)
        self._arrivals = dict(zip(days.tolist(), np.split(order, starts[1:]), strict=True))
        channels = config.channels.ordered()
        # Per-channel constants indexed by the channel option (0 = no contact), built once.
        self._by_channel = {
            attr: np.array([0.0, *(getattr(c, attr) for c in channels)])
            for attr in ("read_delay_days", "open_tracking", "false_open", "impact", "link_pay_prob")
        }
        self._fatigue_weight = np.array([0.0, *(config.population.fatigue.weight[c] for c in CHANNELS)])

        if policy is not None and policy.requires_ground_truth:
            # Simulation only: a policy that reads latent state gets it here and nowhere else.
            policy.bind_ground_truth(GroundTruthView(self))
        window = policy.feedback_window_days if policy is not None else None
        self.matcher: OutcomeMatcher | None = None
        if policy is not None and window:
            self.matcher = OutcomeMatcher(float(window), resolve_reward(policy.feedback_reward), RewardCosts.of(config))
        self._feedback_cursor = 0
        ss = config.self_service
        # Self-service (mechanism 10) exists only when switched on: otherwise nothing of it runs or draws.
        self.desk: SelfServiceDesk | None = SelfServiceDesk(self) if ss.enabled else None
        self._ownership: float | None = ss.ownership.theta if ss.enabled and ss.ownership.enabled else None
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
            resolve=None if self.desk is None else self.desk.resolve,
            case_wanted=None if self.desk is None else self.desk.case_wanted,
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
    # The population process: a day in the order of regsim.engine
    # ======================================================================================================
    def _days(self) -> Generator[Any, Any, None]:
        for d in range(self.days):
            if not self._followed(d).any():
                break  # every arrangement has ended (or passed its run-off cap): nothing more counts
            if self.env.now < d:
                yield self.env.timeout(engine.until_morning(self.env.now, d))
            self._day = d
            ids, kinds, installments = self._begin_day(None)
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
            yield self.env.timeout(engine.until_evening(self.env.now, d))
            self._end_day(None, self.env.now)
            self._feed_back(float(d + 1), final=False)
            if self.progress is not None:
                self.progress(d + 1)
        self.stopped_at = float(self.env.now)  # (the clock runs on to the horizon: SimPy's run(until=...))
        self._feed_back(float(self.env.now), final=True)
        self.done = True
        if self._ready is not None and not self._ready.triggered:
            self._ready.succeed(None)

    def _followed(self, d: Day) -> NDArray[np.bool_]:
        """Per row, whether its arrangement can still change what counts on day ``d``: open, and (in a run-off)
        not past its cap (an event at the cap itself still counts, see :func:`regsim.metrics.arrangement_outcomes`)."""
        live = np.isin(self.ledger.status, _OPEN_CODES)
        return live if self._cap_end is None else live & (self._cap_end >= d)

    def _begin_day(
        self, rows: NDArray[np.int64] | None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        """The morning of these rows (``None``: all): liquidity, referrals, bookkeeping; returns the decision
        points (rows, kinds, installments)."""
        self._liquidity(rows)
        self._book_due_dates(rows)
        return self._decision_points(rows)

    def _end_day(self, rows: NDArray[np.int64] | None, evening: Time) -> None:
        """The evening of these rows (``None``: all): the day's planned payments not settled yet."""
        if rows is None:
            self._settle(np.flatnonzero(self.pay_time <= evening), evening)
            return
        due = self.pay_time[rows] <= evening
        self._settle(rows[due], at(evening, due))

    # -- the clock and the rows a day step covers -----------------------------------------------------------
    # The day methods below take ``rows`` (the rows whose day it is, sorted; ``None``: every row) and read
    # each row's day through ``_day_of``. Here every row shares ``self._day``; a world whose rows keep their
    # own clocks (:class:`regsim.vector_world.VectorWorld`) overrides these hooks, and how events are
    # scheduled (``_at``) and logged (``record``), never the dynamics.
    def _day_of(self, ids: NDArray[np.int64] | None) -> Day:
        """Today for these rows: the shared day (or each row's own day, aligned with ``ids``)."""
        return self._day

    def _time_at(self, ids: NDArray[np.int64]) -> Time:
        """The start of today for these rows, as a time."""
        return float(self._day)

    def _now(self) -> float:
        return float(self.env.now)

    def _rows_with(self, status: ArrangementStatus, rows: NDArray[np.int64] | None) -> NDArray[np.int64]:
        """The rows (among ``rows``; all if ``None``) whose arrangement has this status."""
        code = int(status)  # (a plain int: see regsim.ledger)
        if rows is None:
            return np.flatnonzero(self.ledger.status == code)
        return rows[self.ledger.status[rows] == code]

    def _arrivals_on(self, rows: NDArray[np.int64] | None) -> NDArray[np.int64] | None:
        """The rows whose arrangement arrives today (``None`` if none)."""
        return self._arrivals.get(self._day)

    def _payment_day(self, times: NDArray[np.float64]) -> Day:
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
            shocked = active[(self.state.shock_until[active] > d) & (self.ledger.sched.overdue(active) > 0)]
            if len(shocked):  # (few days: no draw on none)
                u = self.streams.uniform(Purpose.REFERRAL, self.gid[shocked], self._day_of(shocked))
                refer = shocked[u < self.config.population.shocks.referral_per_day]
                self._end(refer, self._time_at(refer), ArrangementStatus.REFERRED)
            disengage = behaviour.disengagement(
                self.state, self.config.population.fatigue, self.streams, self.gid, active, d
            )
            self.state.disengaged[disengage] = True

    # -- due dates, misses, breakdowns --------------------------------------------------------------------
    def _book_due_dates(self, rows: NDArray[np.int64] | None = None) -> None:
        arrivals = self._arrivals_on(rows)
        if arrivals is not None:
            self._create(arrivals)
        active = self._rows_with(ArrangementStatus.ACTIVE, rows)
        self._missed_today = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        if not len(active):
            return
        ids, inst = self.ledger.book(active, self._day_of(active))
        broken = active[self.ledger.status[active] == int(ArrangementStatus.BROKEN)]
        self.pay_time[broken] = np.inf
        self.thank[broken] = False
        if len(ids):
            self.state.streak[ids] = 0.0
            # One decision per arrangement: the oldest missed installment.
            order = np.lexsort((inst, ids))
            ids, inst = ids[order], inst[order]
            first = np.r_[True, ids[1:] != ids[:-1]]
            self._missed_today = (ids[first], inst[first])

    def _create(self, ids: NDArray[np.int64]) -> None:
        arr, pop = self.config.arrangements, self.pop
        self.ledger.create(
            ids,
            self._time_at(ids),
            self._day_of(ids),
            debt_eur=pop.debt_eur[ids],
            n_installments=pop.n_installments[ids],
            due_day=arr.default_due_day,
            prior_payments=pop.prior_payments[ids],
            prior_late_share=pop.prior_late_share[ids],
            prior_pay_dom=pop.prior_pay_dom[ids],
        )

    def _end(self, ids: NDArray[np.int64], t: Time, status: ArrangementStatus) -> None:
        """Arrangements end (broken, referred): the ledger books it; no payment or thank-you follows."""
        if not len(ids):
            return
        self.ledger.end(ids, t, status)
        self.pay_time[ids] = np.inf
        self.thank[ids] = False

    # -- decision points ----------------------------------------------------------------------------------
    def _decision_points(
        self, rows: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
        s, cfg = self.ledger.sched, self.config.decisions
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
        live = self.ledger.status[m_ids] == _ACTIVE
        add(m_ids[live], DecisionKind.MISSED, m_inst[live])
        if len(active):
            d = self._day_of(active)
            since_due = d - s.open_due(active)
            follow_up = (since_due[:, None] == np.asarray(cfg.follow_up_days, dtype=np.int64)[None, :]).any(axis=1)
            follow = active[(s.overdue(active) > 0) & follow_up]
            add(follow, DecisionKind.FOLLOW_UP, s.first_open[follow])
            j = np.minimum(s.came_due[active], s.capacity - 1)
            soon = (s.came_due[active] < s.n[active]) & (s.due_of(active, j) - d == cfg.pre_due_days)
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
        h = self.ledger.history
        columns = h.context_columns(ids, kinds, inst, self._day_of(ids), self.ledger.sched, self.calendar)
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
            self.matcher.observe(event, cols)
        self._feedback_cursor = self.log.n_chunks
        feedback = self.matcher.flush(now) if final else self.matcher.mature(now)
        if feedback is not None:
            self.policy.update(feedback)

    def _apply(self, batch: ContextBatch, dec: DecisionBatch) -> NDArray[np.int64]:
        """Carry out a batch of checked decisions (the ledger's) and schedule their messages; returns their ids."""
        ids = self._rows_of(batch)
        d = self._day_of(ids)
        a = dec.actions
        n = len(ids)
        decision_ids = np.arange(self._next_decision_id, self._next_decision_id + n, dtype=np.int64)
        self._next_decision_id += n
        weekday = self.calendar.weekday[d]
        send_time = self.rules.send_time(d, int(weekday) if np.ndim(d) == 0 else weekday.astype(np.int64), a[:, 1])
        keeps = self.keeps(EventType.DECISION)
        mids = self.ledger.decide(
            ids,
            self._time_at(ids),
            d,
            decision_ids=decision_ids,
            kinds=batch.columns["kind"].astype(np.int64),
            installments=batch.columns["installment"].astype(np.int64),
            actions=a,
            propensity=dec.propensity,
            send_time=send_time,
            masked_rules=_masked_rule_names(batch) if keeps else [],
            policy=self.policy_name,
            policy_version=self.policy_version,
        )
        if len(mids):
            self._at_each(self.ledger.messages.send_time[mids], self._send, mids)
        return decision_ids

    # -- the event sink of the ledger, and the event queue ------------------------------------------------------
    def keeps(self, event: EventType) -> bool:
        """Whether :meth:`record` keeps events of this type (a world that keeps only some overrides both)."""
        return True

    def record(self, event: EventType, t: Time, rows: NDArray[np.int64], **columns: Any) -> None:
        """Log events of these rows (the one place the world writes to its event log)."""
        self.log.append(event, t, self.gid[rows], **columns)

    def _at(self, t: float, action: Action, mids: NDArray[np.int64]) -> None:
        """Call ``action(mids, t)`` at simulation time ``t`` (one SimPy timeout for the whole group)."""
        event = self.env.timeout(max(0.0, t - self.env.now), value=mids)
        event.callbacks.append(lambda e: action(e.value, float(self.env.now)))

    def _at_each(self, times: NDArray[np.float64], action: Action, mids: NDArray[np.int64]) -> None:
        """Call ``action`` on each message at its own time ``times[i]``: one :meth:`_at` per distinct time, in
        increasing order of time (the order in which their events are created).

        Each group keeps the messages' own order. Most calls schedule one message or one time: those make one
        event without sorting; more distinct times are split from one stable sort rather than a mask per time.
        """
        n = len(times)
        if n == 0:
            return
        first = times[0]
        if n == 1 or bool((times == first).all()):
            self._at(float(first), action, mids.copy())
            return
        order = np.argsort(times, kind="stable")
        ordered = times[order]
        starts = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        bounds = [0, *starts.tolist(), n]
        for a, b in itertools.pairwise(bounds):
            self._at(float(ordered[a]), action, mids[order[a:b]])

    # ======================================================================================================
    # Outputs
    # ======================================================================================================
    @property
    def end_time(self) -> NDArray[np.float64]:
        """When each arrangement ended (NaN: still open)."""
        return self.ledger.end_time

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
                "final_status": _categorical(self.ledger.status, tuple(s.name.lower() for s in ArrangementStatus)),
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
