"""Shared resources of the whole population (mechanism 8, docs/mechanisms.md), with visible queues.

* **Collectors** and **robocall lines** are call centres: a SimPy process per centre serves its FIFO queue of
  calls on the hour, up to its hourly capacity (``collectors * 60 / collector_minutes_per_call`` and
  ``robocall_lines * 60 / robocall_minutes_per_call``; where that is not a whole number, the fraction carries
  from one served hour to the next, so 6.4 calls an hour serve 6, 6, 7, 6, 7, ..., 32 calls in 5 hours),
  within working hours that the rules' quiet hours and
  days also allow (collectors work weekdays only). When escalations outrun the team, calls wait in the queue,
  hours or days. Calls connect in batches at the hour mark, which is the resolution at which debtors'
  availability is modelled (an hour-of-day profile), so nothing behavioural is lost and a batch is one
  vectorised step instead of one SimPy process per call.
* **The print room** posts up to ``letters_per_day`` letters, oldest first, each working day at the posting
  hour; the rest wait for the next working day.

A queued message can still be cancelled (e.g. the debtor paid): every centre re-checks with the world, at the
moment it would serve a message, whether the message is still wanted. Queue lengths are sampled every day at
noon and at the end of the day.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from numpy.typing import NDArray

from regsim.calendar import Calendar
from regsim.config import CapacityConfig

__all__ = ["DedicatedCapacity", "QueueSample", "SharedCapacity", "next_opening"]


@dataclass
class QueueSample:
    """Queue lengths and use of the shared resources, column-wise."""

    time: list[float] = field(default_factory=list)
    resource: list[str] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    capacity: list[int] = field(default_factory=list)


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, float]:
    start, end = max(a[0], b[0]), min(a[1], b[1])
    if start >= end:
        raise ValueError(f"working hours {list(a)} and allowed contact hours {list(b)} do not overlap")
    return float(start), float(end)


_SEARCH_HOURS = 24 * 15  # how far ahead an opening is looked for


def next_opening(
    now: NDArray[np.float64], hours: tuple[float, float], closed: frozenset[int], calendar: Calendar, name: str
) -> NDArray[np.float64]:
    """For each time, the first hour mark at or after it within working ``hours`` on a day not ``closed``."""
    hour = np.ceil(np.asarray(now, dtype=np.float64) * 24.0 - 1e-9).astype(np.int64)
    closed_day = np.isin(np.arange(7), list(closed))
    found = np.zeros(len(hour), dtype=bool)
    for _ in range(_SEARCH_HOURS):
        day, h = np.divmod(hour, 24)
        weekday = calendar.weekday[np.minimum(day, calendar.days - 1)]
        found = ~closed_day[weekday] & (hours[0] <= h) & (h < hours[1])
        if found.all():
            return hour / 24.0
        hour = np.where(found, hour, hour + 1)
    raise RuntimeError(f"{name}: no working hour within two weeks (hours {hours})")


def _opening_table(hours: tuple[float, float], closed: frozenset[int], calendar: Calendar) -> NDArray[np.int64]:
    """For every hour mark of the calendar (and the search window past its end), the first opening at or after it.

    Hour marks are judged as :func:`next_opening` judges them (days past the calendar take its last weekday); a
    mark with no opening up to the table's end gets one past the search window, so a lookup can tell.
    """
    size = calendar.days * 24 + _SEARCH_HOURS
    hour = np.arange(size)
    day, h = np.divmod(hour, 24)
    closed_day = np.isin(np.arange(7), list(closed))
    weekday = calendar.weekday[np.minimum(day, calendar.days - 1)]
    works = ~closed_day[weekday] & (hours[0] <= h) & (h < hours[1])
    # The next working mark of each mark: a running minimum from the end.
    table = np.where(works, hour, size + _SEARCH_HOURS)
    return np.minimum.accumulate(table[::-1])[::-1].astype(np.int64)


class _CallCentre:
    """A team (collectors) or a bank of lines (robocalls) serving a FIFO queue of calls on the hour."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        servers: int,
        minutes_per_call: float,
        hours: tuple[float, float],
        closed_weekdays: frozenset[int],
        calendar: Calendar,
        connect: Callable[[NDArray[np.int64], float], None],
        wanted: Callable[[NDArray[np.int64]], NDArray[np.bool_]],
        resolve: Callable[[NDArray[np.int64], float], None] | None = None,
        case_wanted: Callable[[NDArray[np.int64]], NDArray[np.bool_]] | None = None,
    ) -> None:
        self.env = env
        self.name = name
        # Cases (self-service custom solutions) share the queue with calls; they are queued as ``-1 - case``.
        self._resolve = resolve
        self._case_wanted = case_wanted
        # Calls per working hour. A whole rate serves that many each hour; a fractional one carries its fraction
        # to the next served hour (a floor would lose it: a world scaled down for calibration, 4 collectors at
        # 37.5 minutes, would serve 6 calls an hour instead of 6.4, and its queues would wait longer than the
        # book it stands for).
        self.rate = servers * 60.0 / minutes_per_call
        self.per_hour = max(1, math.ceil(self.rate))  # the most calls one hour serves
        self._fraction = 0.0  # the capacity carried into the next served hour (in [0, 1))
        self.hours = hours
        self.closed = closed_weekdays
        self.calendar = calendar
        self._connect = connect
        self._wanted = wanted
        self.queue: deque[NDArray[np.int64]] = deque()
        self.queued = 0
        self.served_this_hour = 0
        self._running = False
        self._next_hour = 0.0
        self._openings: NDArray[np.int64] | None = None

    def submit(self, message_ids: NDArray[np.int64]) -> None:
        if not len(message_ids):
            return
        self.queue.append(message_ids)
        self.queued += len(message_ids)
        if not self._running:
            self._running = True
            self.env.process(self._serve())

    def _next_opening(self, now: float) -> float:
        """The first hour mark at or after ``now`` at which the centre works.

        :func:`next_opening`'s answer, looked up in the table of each hour mark's next opening (built on the
        first call): the centre asks once per hour it serves, and a search from the evening walks the night's
        hours one array step at a time. Outside the table (never in a run) the search itself answers.
        """
        if self._openings is None:
            self._openings = _opening_table(self.hours, self.closed, self.calendar)
        hour = math.ceil(float(now) * 24.0 - 1e-9)  # (the same IEEE operations as next_opening's)
        if 0 <= hour < self.calendar.days * 24:
            opening = int(self._openings[hour])
            if opening - hour < _SEARCH_HOURS:
                return opening / 24.0
        return float(next_opening(np.array([now]), self.hours, self.closed, self.calendar, self.name)[0])

    def _serve(self) -> Generator[Any, Any, None]:
        # Runs while calls wait; a call queued at an hour mark is served from that hour on.
        while self.queue:
            # A call queued on an hour mark is served in that hour; each hour is served once.
            at = self._next_opening(max(self.env.now, self._next_hour))
            yield self.env.timeout(at - self.env.now)
            self._next_hour = at + 1.0 / 24.0
            allowance = self._fraction + self.rate
            budget = int(allowance)
            self._fraction = allowance - budget
            batch, cases = [], []
            while budget > 0 and self.queue:
                head = self.queue.popleft()
                if len(head) and head[0] < 0:  # a group of cases: staff take them in the same hours
                    assert self._case_wanted is not None and self._resolve is not None
                    head = head[self._case_wanted(-1 - head)]
                    take, rest = head[:budget], head[budget:]
                    cases.append(-1 - take)
                    budget -= len(take)
                    if len(rest):
                        self.queue.appendleft(rest)
                    continue
                head = head[self._wanted(head)]
                take, rest = head[:budget], head[budget:]
                batch.append(take)
                budget -= len(take)
                if len(rest):
                    self.queue.appendleft(rest)
            self.queued = sum(len(q) for q in self.queue)
            served = np.concatenate(batch) if batch else np.zeros(0, dtype=np.int64)
            self.served_this_hour = len(served)
            if len(served):
                self._connect(served, float(self.env.now))
            if cases:
                assert self._resolve is not None
                self.served_this_hour += sum(len(c) for c in cases)
                self._resolve(np.concatenate(cases), float(self.env.now))
        self.served_this_hour = 0
        self._running = False


class DedicatedCapacity:
    """One arrangement's own collectors, robocall lines and print room: the same hours, no queue.

    What a one-arrangement world (``regsim/Arrangement-v0``) and each row of a
    :class:`regsim.vector_world.VectorWorld` have: a lone debtor never waits behind another, so a call connects at
    the next hour at which its centre works (:class:`SharedCapacity`'s hours and days, quiet hours included), and
    a letter goes out at the next posting (a working day at the posting hour); the world re-checks at that
    moment that the message is still wanted. Capacity limits do not bind a lone debtor and are not modelled.

    Args:
        config: The capacity section of the world config.
        calendar: The run's calendar.
        quiet_hours: Hours (start, end) in which the rules allow contact.
        quiet_weekdays: Weekdays (0=Monday) on which the rules allow no contact.
    """

    def __init__(
        self,
        config: CapacityConfig,
        calendar: Calendar,
        quiet_hours: tuple[int, int] = (0, 24),
        quiet_weekdays: tuple[int, ...] = (),
    ) -> None:
        self.config = config
        self.calendar = calendar
        self._collectors = (_overlap(config.collector_hours, quiet_hours), frozenset((5, 6, *quiet_weekdays)))
        self._robocalls = (_overlap(config.robocall_hours, quiet_hours), frozenset(quiet_weekdays))
        self._tables: dict[bool, NDArray[np.int64]] = {}

    def call_times(self, now: NDArray[np.float64], collector: bool) -> NDArray[np.float64]:
        """When calls placed at ``now`` connect (the next working hour of the collectors or robocall lines).

        The same as :func:`next_opening`, looked up in a table of each hour's next opening over the calendar.
        """
        hours, closed = self._collectors if collector else self._robocalls
        name = "collectors" if collector else "robocall_lines"
        table = self._tables.get(collector)
        if table is None:
            table = self._tables[collector] = _opening_table(hours, closed, self.calendar)
        hour = np.ceil(np.asarray(now, dtype=np.float64) * 24.0 - 1e-9).astype(np.int64)
        inside = (hour >= 0) & (hour < self.calendar.days * 24)
        if not inside.all():  # past the calendar (never in a run): the search itself
            return next_opening(now, hours, closed, self.calendar, name)
        opening = table[hour]
        if (opening - hour >= _SEARCH_HOURS).any():
            raise RuntimeError(f"{name}: no working hour within two weeks (hours {hours})")
        return opening / 24.0

    def post_times(self, now: NDArray[np.float64]) -> NDArray[np.float64]:
        """When letters queued at ``now`` are posted: the first posting hour at or after it on a working day."""
        post_at = self.config.letter_post_hour / 24.0
        now = np.asarray(now, dtype=np.float64)
        day = np.floor(now).astype(np.int64)
        day = np.where(day + post_at >= now, day, day + 1)
        for _ in range(7):
            weekend = (day < self.calendar.days) & (self.calendar.weekday[np.minimum(day, self.calendar.days - 1)] >= 5)
            if not weekend.any():
                break
            day = day + weekend
        return np.asarray(day + post_at, dtype=np.float64)


class SharedCapacity:
    """Collectors, robocall lines and the print room of a run.

    Args:
        env: The SimPy environment.
        config: The capacity section of the world config.
        calendar: The run's calendar (for working days).
        connect: Called as ``connect(message_ids, time)`` when calls connect.
        post: Called as ``post(message_ids, time)`` when letters are posted.
        wanted: Called as ``wanted(message_ids)``; False where a message was cancelled meanwhile.
        sample_queues: Whether to record queue samples (see :attr:`samples`).
        quiet_hours: Hours (start, end) in which the rules allow contact.
        quiet_weekdays: Weekdays (0=Monday) on which the rules allow no contact.
        print_room: Whether to run the print room (a world with :class:`DedicatedCapacity` has no use for it).
        resolve: Called as ``resolve(case_ids, time)`` when collectors take self-service cases (:meth:`queue_cases`).
        case_wanted: Called as ``case_wanted(case_ids)``; False where a case is no longer open.
    """

    def __init__(
        self,
        env: simpy.Environment,
        config: CapacityConfig,
        calendar: Calendar,
        connect: Callable[[NDArray[np.int64], float], None],
        post: Callable[[NDArray[np.int64], float], None],
        wanted: Callable[[NDArray[np.int64]], NDArray[np.bool_]],
        sample_queues: bool = True,
        quiet_hours: tuple[int, int] = (0, 24),
        quiet_weekdays: tuple[int, ...] = (),
        print_room: bool = True,
        resolve: Callable[[NDArray[np.int64], float], None] | None = None,
        case_wanted: Callable[[NDArray[np.int64]], NDArray[np.bool_]] | None = None,
    ) -> None:
        self.env = env
        self.config = config
        self.calendar = calendar
        self._connect = connect
        self._post = post
        self._wanted = wanted
        # Calls respect the working hours and the rules' quiet hours and days (both must allow a call).
        self.collectors = _CallCentre(
            env,
            "collectors",
            config.collectors,
            config.collector_minutes_per_call,
            _overlap(config.collector_hours, quiet_hours),
            frozenset((5, 6, *quiet_weekdays)),
            calendar,
            connect,
            wanted,
            resolve,
            case_wanted,
        )
        self.robocall_lines = _CallCentre(
            env,
            "robocall_lines",
            config.robocall_lines,
            config.robocall_minutes_per_call,
            _overlap(config.robocall_hours, quiet_hours),
            frozenset(quiet_weekdays),
            calendar,
            connect,
            wanted,
        )
        self.letter_queue: deque[NDArray[np.int64]] = deque()
        self.letters_queued = 0
        self.samples = QueueSample()
        if print_room:
            env.process(self._print_room())
        if sample_queues:
            env.process(self._sampler())

    # -- calls --------------------------------------------------------------------------------------------
    def call(self, message_ids: NDArray[np.int64], collector: bool) -> None:
        """Queue calls (by collectors if ``collector``, else robocalls), oldest first."""
        (self.collectors if collector else self.robocall_lines).submit(message_ids)

    def queue_cases(self, case_ids: NDArray[np.int64]) -> None:
        """Queue self-service cases (custom solutions) for the collectors, behind the calls already waiting.

        A case takes a collector's call slot, as a call does (the shared capacity of mechanism 8).
        """
        if len(case_ids):
            self.collectors.submit(-1 - np.asarray(case_ids, dtype=np.int64))

    # -- letters ------------------------------------------------------------------------------------------
    def queue_letters(self, message_ids: NDArray[np.int64]) -> None:
        """Queue letters for the print room, oldest first."""
        if len(message_ids):
            self.letter_queue.append(message_ids)
            self.letters_queued += len(message_ids)

    def _print_room(self) -> Generator[Any, Any, None]:
        post_at = self.config.letter_post_hour / 24.0
        day = 0
        while True:
            yield self.env.timeout(max(0.0, day + post_at - self.env.now))
            if day >= self.calendar.days or self.calendar.weekday[day] < 5:
                budget = self.config.letters_per_day
                batch: list[NDArray[np.int64]] = []
                while budget > 0 and self.letter_queue:
                    head = self.letter_queue.popleft()
                    head = head[self._wanted(head)]
                    take, rest = head[:budget], head[budget:]
                    batch.append(take)
                    budget -= len(take)
                    if len(rest):
                        self.letter_queue.appendleft(rest)
                self.letters_queued = sum(len(q) for q in self.letter_queue)
                if batch:
                    self._post(np.concatenate(batch), self.env.now)
            day += 1

    # -- observation --------------------------------------------------------------------------------------
    def _sampler(self) -> Generator[Any, Any, None]:
        while True:
            for at in (0.5, 0.999):
                yield self.env.timeout(max(0.0, int(self.env.now) + at - self.env.now))
                self._sample()
            yield self.env.timeout(int(self.env.now) + 1 - self.env.now)

    def _sample(self) -> None:
        s = self.samples
        for name, queued, busy, cap in (
            ("collectors", self.collectors.queued, self.collectors.served_this_hour, self.collectors.per_hour),
            (
                "robocall_lines",
                self.robocall_lines.queued,
                self.robocall_lines.served_this_hour,
                self.robocall_lines.per_hour,
            ),
            ("print_room", self.letters_queued, 0, self.config.letters_per_day),
        ):
            s.time.append(float(self.env.now))
            s.resource.append(name)
            s.queued.append(int(queued))
            s.busy.append(int(busy))
            s.capacity.append(int(cap))
