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

__all__ = ["MessageDelivery"]

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
        """Letters posted: they arrive after the post's delay, in the evening."""
        self.ledger.message_sent(mids, t)
        m = self.ledger.messages
        letter = self.config.channels.letter
        u = self.streams.uniform(
            Purpose.DELIVERY_DELAY, self.gid[m.row[mids]], whole_day(t), _draw_key(m.channel[mids], m.hour[mids])
        )
        delay = letter.delay_days_min + np.floor(u * (letter.delay_days_max - letter.delay_days_min + 1))
        arrive = np.floor(t) + delay + self.config.channels.letter_read_hour / 24.0
        self._at_each(arrive, self._deliver, mids)

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
        self.ledger.message_opened(mids, t)

    def _noticed(self, mids: NDArray[np.int64], t: Time) -> None:
        """The debtor takes in a message: fatigue, memory, motivation, opt-outs and paying by link."""
        m, ledger = self.ledger.messages, self.ledger
        debtors = m.row[mids]
        alive = ledger.status[debtors] == _ACTIVE
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
