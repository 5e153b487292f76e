"""How messages reach debtors: sending, the print room and the post, calls, noticing, and what a message does.

A part of :class:`regsim.world.World` (a mixin: it reads the world's debtors, ledger and clock). A message goes
out at its send time: email and SMS at once; letters through the print room (a daily budget, posting hour,
working days) and the post (``delay_days_min..max`` days, read at ``channels.letter_read_hour``); calls through
the collectors and robocall lines (shared by the population, or each arrangement's own). Just before it goes
out a message is checked again (:meth:`regsim.ledger.Ledger.still_wanted`): a reminder of a paid installment,
or any message of an ended arrangement, is cancelled instead.

A delivered message is noticed with the debtor's per-channel probability at that hour (times
``fatigue.disengaged_notice`` once disengaged), after a read delay for email; what a noticed message does is
mechanisms 2, 4 and 6 of docs/mechanisms.md: annoyance, an opt-out when annoyed, a reminder's lasting boost
to attention (undermining the streak of a debtor who just paid), a thank-you's streak credit, and paying at
once through its link. What is observable (sent, delivered, opened, clicked, opted out) is the ledger's to
record.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from regsim import behaviour
from regsim.arrangement import ArrangementStatus
from regsim.clock import Time, at, whole_day
from regsim.config import CHANNELS
from regsim.decision import MessagePurpose
from regsim.payments import PAY_TOLERANCE_EUR
from regsim.population import hour_availability
from regsim.random import Purpose
from regsim.world_parts import WorldParts

__all__ = ["LETTER_DELIVERY_WEEKDAYS", "MessageDelivery", "letter_delivery_day", "waking_time"]

#: Weekdays (0 = Monday) on which PostNL delivers letters: Tuesday to Saturday, no Monday or Sunday delivery of
#: letters since 2020 (docs/calibration.md, production realities).
LETTER_DELIVERY_WEEKDAYS = (1, 2, 3, 4, 5)

_EMAIL, _SMS, _LETTER, _ROBOCALL, _COLLECTOR = (1 + CHANNELS.index(c) for c in CHANNELS)
_ACTIVE = int(ArrangementStatus.ACTIVE)  # (plain ints: see regsim.ledger)
_REMINDER, _THANK_YOU = int(MessagePurpose.REMINDER), int(MessagePurpose.THANK_YOU)
# Draws made together (same keys), each a pure function of its purpose and keys as ever.
_DELIVERY_DRAWS = (Purpose.NOTICE, Purpose.READ_DELAY, Purpose.OPEN_SIGNAL)
_NOTICE_DRAWS = (Purpose.OPT_OUT, Purpose.LINK_PAY)
Action = Callable[[NDArray[np.int64], Time], None]


def _draw_key(channel: NDArray[np.int64], hour: NDArray[np.int64]) -> NDArray[np.int64]:
    """A message's key among the draws of its debtor and day: its channel and send slot hour, never a global
    message number, so the same message draws the same whatever else the population was sent (common random
    numbers)."""
    return channel * 32 + hour


def letter_delivery_day(
    posted_day: NDArray[np.int64], delay_days: NDArray[np.int64], first_weekday: int
) -> NDArray[np.int64]:
    """The day a letter reaches the debtor: ``delay_days`` after posting, moved on to the next delivery day
    (:data:`LETTER_DELIVERY_WEEKDAYS`) when that falls on a Sunday or a Monday.

    Args:
        posted_day: The day each letter was posted.
        delay_days: The post's delay of each (``channels.letter.delay_days_min..max``).
        first_weekday: The weekday (0 = Monday) of simulation day 0.
    """
    day = np.asarray(posted_day, dtype=np.int64) + np.asarray(delay_days, dtype=np.int64)
    weekday = (first_weekday + day) % 7
    return day + np.where(weekday == 6, 2, np.where(weekday == 0, 1, 0))


def waking_time(t: NDArray[np.float64], waking_hours: tuple[float, float]) -> NDArray[np.float64]:
    """A moment a debtor reads a message (and may pay through its link): ``t`` itself in waking hours; a moment
    of the night is moved into the next waking hours, the night's span mapped in order onto the day's, so that
    reads delayed into the night come the next day rather than at daytime rates at night.

    Args:
        t: Moments (days since the epoch).
        waking_hours: The hours ``(first, until)`` in which debtors are up (``arrangements.pay_hours``).
    """
    first, until = waking_hours
    day = np.floor(t)
    hour = (t - day) * 24.0
    night = (hour < first) | (hour >= until)
    if not np.any(night):
        return t
    # Hours into the night (from ``until`` on), scaled onto the waking span of the morning after that night.
    into = np.where(hour >= until, hour - until, hour + 24.0 - until)
    night_length = 24.0 - (until - first)
    next_morning = np.where(hour >= until, day + 1.0, day)
    moved = next_morning + (first + into / night_length * (until - first)) / 24.0
    return np.where(night, moved, t)


class MessageDelivery(WorldParts):
    """The messaging part of the world (see the module docstring)."""

    # -- going out ------------------------------------------------------------------------------------------
    def _still_wanted(self, mids: NDArray[np.int64], t: Time) -> NDArray[np.bool_]:
        """Settle earlier payments of these debtors, then ask the ledger which messages may still go out."""
        debtors = self.ledger.messages.row[mids]
        due = self.pay_time[debtors] <= t
        if due.any():
            self._settle(np.unique(debtors[due]), t)
        return self.ledger.still_wanted(mids, t)

    def _send(self, mids: NDArray[np.int64], t: Time) -> None:
        """Messages whose send time has come: email and SMS go out; letters and calls are handed over."""
        ok = self._still_wanted(mids, t)
        mids, t = mids[ok], at(t, ok)
        if not len(mids):
            return
        ch = self.ledger.messages.channel[mids]
        is_direct = (ch == _EMAIL) | (ch == _SMS)
        direct = mids[is_direct]
        if len(direct):
            self.ledger.message_sent(direct, at(t, is_direct))
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
        """For the shared centres: whether queued messages are still wanted now."""
        return self._still_wanted(mids, self._now())

    def _post_letters(self, mids: NDArray[np.int64], t: Time) -> None:
        """Letters posted: they arrive after the post's delay, in the evening (Tuesday to Saturday).

        A letter the print room posts later than planned is checked against the contact cap once more: when the
        debtor already had ``max_contacts_per_week`` other contacts in the 7 days before the posting, it is
        cancelled rather than posted (the cap counts a contact from its planned time, and a letter held over a
        weekend or a full print room would otherwise land beside contacts planned after it).
        """
        m = self.ledger.messages
        rules = self.config.rules
        if rules.contact_cap_enabled:
            now = np.broadcast_to(np.asarray(t, dtype=np.float64), mids.shape)
            late = now > m.send_time[mids]
            if late.any():
                over = np.zeros(len(mids), dtype=bool)
                over[late] = self._contacts_before(mids[late], now[late]) >= rules.max_contacts_per_week
                if over.any():
                    self.ledger.cancel(mids[over], now[over])
                    mids, t = mids[~over], now[~over]
                    if not len(mids):
                        return
        self.ledger.message_sent(mids, t)
        letter = self.config.channels.letter
        u = self.streams.uniform(
            Purpose.DELIVERY_DELAY, self.gid[m.row[mids]], whole_day(t), _draw_key(m.channel[mids], m.hour[mids])
        )
        delay = letter.delay_days_min + np.floor(u * (letter.delay_days_max - letter.delay_days_min + 1))
        posted = np.floor(np.broadcast_to(np.asarray(t, dtype=np.float64), mids.shape)).astype(np.int64)
        day = letter_delivery_day(posted, delay.astype(np.int64), int(self.calendar.weekday[0]))
        np.add.at(self.state.letters_delivered, m.row[mids], 1)
        np.add.at(self.state.letter_days_in_post, m.row[mids], day - posted)
        weekday = (int(self.calendar.weekday[0]) + day) % 7
        closed = ~np.isin(weekday, LETTER_DELIVERY_WEEKDAYS)
        np.add.at(self.state.letters_on_closed_days, m.row[mids], closed)
        arrive = np.asarray(day + self.config.channels.letter_read_hour / 24.0, dtype=np.float64)
        self._at_each(arrive, self._deliver, mids)

    def _contacts_before(self, mids: NDArray[np.int64], now: NDArray[np.float64]) -> NDArray[np.int64]:
        """Other contacts of each message's debtor planned in the 7 days up to ``now`` (itself left out)."""
        times = self.ledger.history.contact_times[self.ledger.messages.row[mids]]
        within = (times > now[:, None] - 7.0) & (times <= now[:, None])
        own = self.ledger.messages.send_time[mids]
        return within.sum(axis=1) - ((own > now - 7.0) & (own <= now))

    def _connect(self, mids: NDArray[np.int64], t: Time) -> None:
        """Calls connect: they are made (and cost) whether or not the debtor answers."""
        self.ledger.message_sent(mids, t)
        self._deliver(mids, t)

    # -- reaching the debtor ----------------------------------------------------------------------------------
    def _deliver(self, mids: NDArray[np.int64], t: Time) -> None:
        """A message reaches the debtor: draw whether (and when) it is noticed and log what is observable."""
        m, pop = self.ledger.messages, self.pop
        debtors, ch = m.row[mids], m.channel[mids]
        gid, day = self.gid[debtors], whole_day(t)
        key = _draw_key(ch, m.hour[mids])
        hour = np.full(len(mids), (t - day) * 24.0)
        p = pop.notice[debtors, ch - 1] * hour_availability(pop.hour_profile[debtors], hour, ch)
        p = p * np.where(self.state.disengaged[debtors], self.config.population.fatigue.disengaged_notice, 1.0)
        # The three draws of a delivery share their keys: hashed together (the same draws as one by one).
        u_notice, u_read, u_open = self.streams.uniforms(_DELIVERY_DRAWS, gid, day, key)
        noticed = u_notice < p
        calls = (ch == _ROBOCALL) | (ch == _COLLECTOR)
        # Observable delivery: SMS and email receipts, answered calls; a letter's delivery is not observed.
        seen = ((ch == _EMAIL) | (ch == _SMS)) | (calls & noticed)
        if seen.any():
            self.ledger.message_delivered(mids[seen], t if np.ndim(t) == 0 else at(t, seen))
        read_mean = self._by_channel["read_delay_days"][ch]
        delay = read_mean * -np.log(u_read)  # Streams.exponential
        when = waking_time(t + delay, self.config.arrangements.pay_hours)
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
        np.add.at(self.state.noticed_by_channel, (debtors[noticed], ch[noticed] - 1), 1)
        now_rows = noticed & (delay <= 0)
        if now_rows.any():
            self._noticed(mids[now_rows], at(t, now_rows))
        later = noticed & (delay > 0)
        if later.any():
            rounded = np.ceil(when[later] * 24.0) / 24.0
            self._at_each(rounded, self._noticed, mids[later])

    def _opened(self, mids: NDArray[np.int64], t: Time) -> None:
        """An 'opened' signal reaches the creditor (observable; noisy for email, F6)."""
        self.ledger.message_opened(mids, t)

    def _noticed(self, mids: NDArray[np.int64], t: Time) -> None:
        """The debtor takes in a message: fatigue, memory, motivation, opt-outs and paying by link."""
        m, ledger = self.ledger.messages, self.ledger
        debtors = m.row[mids]
        alive = ledger.status[debtors] == _ACTIVE
        if not alive.all():  # (most messages reach an open arrangement: nothing to drop then)
            mids, debtors, t = mids[alive], debtors[alive], at(t, alive)
            if not len(mids):
                return
        due = self.pay_time[debtors] <= t
        if due.any():
            self._settle(np.unique(debtors[due]), t)
        ch, purpose = m.channel[mids], m.purpose[mids]
        gid, day = self.gid[debtors], whole_day(t)
        fat = self.config.population.fatigue
        st = self.state
        np.add.at(st.annoyance, debtors, self._fatigue_weight[ch])
        # Annoyed debtors opt out of the channel that keeps reaching them (observable).
        can_opt = (ch == _EMAIL) | (ch == _SMS) | (ch == _ROBOCALL)
        annoyed = st.annoyance[debtors] > fat.disengage_threshold
        u_opt, u_link = self.streams.uniforms(_NOTICE_DRAWS, gid, day, _draw_key(ch, m.hour[mids]))
        opt = can_opt & annoyed & (u_opt < fat.opt_out_per_contact) & ~ledger.history.opted_out[debtors, ch - 1]
        if opt.any():
            ledger.opt_out(debtors[opt], ch[opt], at(t, opt), mids[opt])
        impact = self._by_channel["impact"][ch]
        reminder = purpose == _REMINDER
        np.add.at(st.boost, debtors[reminder], (self.pop.reminder_effect[debtors] * impact)[reminder])
        habit = self.config.population.habit
        just_paid = reminder & (t - ledger.history.last_payment_time[debtors] < habit.just_paid_days)
        st.streak[debtors[just_paid]] *= 1.0 - habit.just_paid_penalty
        thanks = purpose == _THANK_YOU
        st.streak[debtors[thanks]] += habit.thank_you_bonus
        # Paying at once through the message's payment link.
        linkable = ~thanks
        link_p = self._by_channel["link_pay_prob"][ch]
        will = behaviour.effective_willingness(st, self.pop, fat, debtors)
        # What is owed is looked up only for the messages whose link draw succeeds (few do).
        rows = np.flatnonzero(linkable & (u_link < link_p * will))
        if len(rows):
            owed = ledger.sched.owed_now(debtors[rows], at(day, rows), self.config.arrangements.pay_window_days)
            able = (st.cash[debtors[rows]] >= owed - PAY_TOLERANCE_EUR) & (owed > 0)
            rows, owed = rows[able], owed[able]
        if len(rows):
            if len(rows) > 1:  # at most one link payment per debtor at one moment
                _, first = np.unique(debtors[rows], return_index=True)
                rows, owed = rows[first], owed[first]
            ledger.message_clicked(mids[rows], at(t, rows))
            self._pay(debtors[rows], owed, at(t, rows), channel=ch[rows])
        if self.desk is not None:  # self-service: a debtor who cannot pay may follow the link to the menu
            self.desk.after_notice(mids, t)
