"""Shared resources of the whole population (DOMAIN.md mechanism 8), with visible queues.

* **Collectors** (``simpy.Resource``): a human call takes ``collector_minutes_per_call`` of one collector's
  time, on weekdays within working hours. When escalations outrun the team, calls wait in the queue.
* **Robocall lines** (``simpy.Resource``): a robocall holds a line for a few minutes, within calling hours.
* **The print room** (a SimPy process over a FIFO queue): each working day at the posting hour it posts up
  to ``letters_per_day`` letters, oldest first; the rest wait for the next working day.

A queued message can still be cancelled (e.g. the debtor paid); the resource checks with the world before it
spends time on it. Queue lengths are sampled every day at noon and at the end of the day.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy
from numpy.typing import NDArray

from regsim.calendar import Calendar
from regsim.config import CapacityConfig

__all__ = ["QueueSample", "SharedCapacity"]

_MINUTES_PER_DAY = 1440.0


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


class SharedCapacity:
    """Collectors, robocall lines and the print room of a run.

    Args:
        env: The SimPy environment.
        config: The capacity section of the world config.
        calendar: The run's calendar (for working days).
        connect: Called as ``connect(message_id, time)`` when a call connects.
        post: Called as ``post(message_ids, time)`` when letters are posted.
        wanted: Called as ``wanted(message_ids)``; False where a message was cancelled meanwhile.
        sample_queues: Whether to record queue samples (see :attr:`samples`).
        quiet_hours: Hours (start, end) in which the rules allow contact.
        quiet_weekdays: Weekdays (0=Monday) on which the rules allow no contact.
    """

    def __init__(
        self,
        env: simpy.Environment,
        config: CapacityConfig,
        calendar: Calendar,
        connect: Callable[[int, float], None],
        post: Callable[[NDArray[np.int64], float], None],
        wanted: Callable[[NDArray[np.int64]], NDArray[np.bool_]],
        sample_queues: bool = True,
        quiet_hours: tuple[int, int] = (0, 24),
        quiet_weekdays: tuple[int, ...] = (),
    ) -> None:
        self.env = env
        self.config = config
        self.calendar = calendar
        self._connect = connect
        self._post = post
        self._wanted = wanted
        # Calls respect the working hours and the rules' quiet hours and days (both must allow a call).
        self._collector_hours = _overlap(config.collector_hours, quiet_hours)
        self._robocall_hours = _overlap(config.robocall_hours, quiet_hours)
        self._collector_closed = frozenset((5, 6, *quiet_weekdays))
        self._robocall_closed = frozenset(quiet_weekdays)
        self.collectors = simpy.Resource(env, capacity=config.collectors)
        self.robocall_lines = simpy.Resource(env, capacity=config.robocall_lines)
        self.letter_queue: deque[NDArray[np.int64]] = deque()
        self.letters_queued = 0
        self.samples = QueueSample()
        env.process(self._print_room())
        if sample_queues:
            env.process(self._sampler())

    # -- calls --------------------------------------------------------------------------------------------
    def call(self, message_id: int, collector: bool) -> None:
        """Queue a call (a collector's if ``collector``, else a robocall)."""
        if collector:
            self.env.process(
                self._call(
                    self.collectors,
                    self.config.collector_minutes_per_call,
                    self._collector_hours,
                    self._collector_closed,
                    message_id,
                )
            )
        else:
            self.env.process(
                self._call(
                    self.robocall_lines,
                    self.config.robocall_minutes_per_call,
                    self._robocall_hours,
                    self._robocall_closed,
                    message_id,
                )
            )

    def _wait_for_open(self, now: float, hours: tuple[float, float], closed: frozenset[int], minutes: float) -> float:
        """Days until a call of ``minutes`` may start within ``hours`` on a day not in ``closed`` (weekdays)."""
        day = int(now)
        start, end = hours[0] / 24.0, hours[1] / 24.0
        length = minutes / _MINUTES_PER_DAY
        for k in range(15):
            d = day + k
            if int(self.calendar.weekday[min(d, self.calendar.days - 1)]) in closed:
                continue
            t = max(now, d + start)
            if t + length <= d + end:
                return t - now
        raise RuntimeError(f"no opening for a call of {minutes} minutes within two weeks (hours {hours})")

    def _call(
        self,
        resource: simpy.Resource,
        minutes: float,
        hours: tuple[float, float],
        closed: frozenset[int],
        message_id: int,
    ) -> Generator[Any, Any, None]:
        # Wait for working time *before* taking a line or a collector, so nobody holds one overnight; if the
        # queue only frees one after closing time, hand it back and wait for the next opening.
        while True:
            wait = self._wait_for_open(self.env.now, hours, closed, minutes)
            if wait > 0:
                yield self.env.timeout(wait)
            with resource.request() as request:
                yield request
                if self._wait_for_open(self.env.now, hours, closed, minutes) > 0:
                    continue
                if not self._wanted(np.array([message_id], dtype=np.int64))[0]:
                    return
                # The call connects (and is logged) when it starts; it then holds the resource.
                self._connect(message_id, self.env.now)
                yield self.env.timeout(minutes / _MINUTES_PER_DAY)
                return

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
            ("collectors", len(self.collectors.queue), self.collectors.count, self.collectors.capacity),
            ("robocall_lines", len(self.robocall_lines.queue), self.robocall_lines.count, self.robocall_lines.capacity),
            ("print_room", self.letters_queued, 0, self.config.letters_per_day),
        ):
            s.time.append(float(self.env.now))
            s.resource.append(name)
            s.queued.append(int(queued))
            s.busy.append(int(busy))
            s.capacity.append(int(cap))
