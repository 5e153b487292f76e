"""Self-service in the simulated world: visits to the page, the menu asked of the policy, the debtor's choice.

Mechanism 10 (docs/mechanisms.md#mechanism-10). :class:`SelfServiceDesk` is the part of a
:class:`regsim.world.World` that exists only when ``self_service.enabled``:

* **Visits.** When a debtor takes in a reminder (:meth:`SelfServiceDesk.after_notice`, called at the end of
  :meth:`regsim.delivery.MessageDelivery._noticed`) while in arrears and short of what is owed, they follow its
  link with probability ``visit.follow_prob`` times their effective willingness (a keyed draw,
  ``Purpose.MENU_VISIT``), at most once per ``visit.min_days_between_visits`` and never while a custom case of
  theirs waits.
* **The menu.** The policy's ``decide_menu`` (or the rule-based :func:`regsim.menu.default_menu`) answers a
  :class:`regsim.menu.MenuBatch` masked by the menu rules (:class:`regsim.rules.MenuRuleSet`); a menu that shows
  a capped level is refused with :class:`~regsim.decision.RuleViolation`. The ledger logs it.
* **The choice.** The MNL of :mod:`regsim.choice` on the debtor's latent need, shock and willingness, with one
  keyed Gumbel draw per option type (``Purpose.MENU_CHOICE``, index = the option code): common random numbers
  across policies and menus. The ledger applies the consequences and schedules the confirmation, which the world
  sends as any message.
* **Custom cases** wait in the collectors' queue (shared capacity; in a world with dedicated capacity, until the
  collectors' next working hour) and are resolved by staff through the ledger.

What the choice model saw at each visit (latent: need, shock, willingness) is kept in :attr:`visits`, a side
channel for tests and calibration, never in the event log.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
from numpy.typing import NDArray

from regsim import behaviour
from regsim.arrangement import ArrangementStatus
from regsim.choice import N_OPTIONS, MnlParams, draw_choice, utilities
from regsim.clock import Time, at, whole_day
from regsim.decision import ContextBatch, MessagePurpose
from regsim.menu import MenuBatch, MenuDecisionBatch, MenuOption, MenuSpace, decide_menus
from regsim.menu_points import menu_batch
from regsim.payments import PAY_TOLERANCE_EUR
from regsim.random import Purpose
from regsim.rules import MenuRuleSet

if TYPE_CHECKING:
    from regsim.world import World

__all__ = ["SelfServiceDesk", "VisitRecord"]

_ACTIVE = int(ArrangementStatus.ACTIVE)
_REMINDER = int(MessagePurpose.REMINDER)
_OPTION_INDEX = np.arange(N_OPTIONS, dtype=np.int64)


@dataclass
class VisitRecord:
    """Latent facts of every visit (simulation only): what the choice model saw, and what was chosen."""

    menu_id: list[NDArray[np.int64]] = field(default_factory=list)
    arrangement_id: list[NDArray[np.int64]] = field(default_factory=list)
    need: list[NDArray[np.float64]] = field(default_factory=list)
    shock: list[NDArray[np.float64]] = field(default_factory=list)
    unwill: list[NDArray[np.float64]] = field(default_factory=list)
    levels: list[NDArray[np.int64]] = field(default_factory=list)
    chosen: list[NDArray[np.int64]] = field(default_factory=list)

    def arrays(self) -> dict[str, NDArray[np.float64] | NDArray[np.int64]]:
        """Every field concatenated over visits (empty arrays when there were none)."""
        out: dict[str, NDArray[np.float64] | NDArray[np.int64]] = {}
        for name in ("menu_id", "arrangement_id", "need", "shock", "unwill", "chosen"):
            parts = getattr(self, name)
            out[name] = np.concatenate(parts) if parts else np.zeros(0)
        out["levels"] = np.concatenate(self.levels) if self.levels else np.zeros((0, 6), dtype=np.int64)
        return out


class SelfServiceDesk:
    """The self-service part of a world (see the module docstring).

    Args:
        world: The world it belongs to (``world.config.self_service.enabled``).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.config = world.config.self_service
        self.space = MenuSpace.from_config(self.config)
        self.rules = MenuRuleSet(self.config, world.config.rules, self.space)
        self.params = MnlParams.from_config(self.config.choice)
        n = world.n
        self.last_visit = np.full(n, -np.inf)
        self.case_pending = np.zeros(n, dtype=bool)
        self._case_row: list[int] = []
        self._case_menu: list[int] = []
        self.visits = VisitRecord()
        self._staff_cost = world.config.channels.collector.cost_eur
        self.external = False
        """Menus of a policy-less world come from outside (:meth:`next_point`, :meth:`submit`); else the default."""
        self.pending: MenuBatch | None = None
        self._answer: simpy.Event | None = None

    # -- visits -------------------------------------------------------------------------------------------
    def after_notice(self, mids: NDArray[np.int64], t: Time) -> None:
        """Debtors who took in these messages (active) may follow a reminder's link to the page."""
        w = self.world
        ledger, m = w.ledger, w.ledger.messages
        debtors = m.row[mids]
        keep = (m.purpose[mids] == _REMINDER) & (ledger.status[debtors] == _ACTIVE)
        keep &= (ledger.sched.overdue(debtors) > 0) & ~self.case_pending[debtors]
        now = np.broadcast_to(np.asarray(t, dtype=np.float64), mids.shape)
        keep &= now - self.last_visit[debtors] >= self.config.visit.min_days_between_visits
        if not keep.any():
            return
        mids, debtors, now = mids[keep], debtors[keep], now[keep]
        day = whole_day(now)
        owed = ledger.sched.owed_now(debtors, day, w.config.arrangements.pay_window_days)
        short = w.state.cash[debtors] < owed - PAY_TOLERANCE_EUR
        will = behaviour.effective_willingness(w.state, w.pop, w.config.population.fatigue, debtors)
        key = m.channel[mids] * 24 + m.hour[mids]
        u = w.streams.uniform(Purpose.MENU_VISIT, w.gid[debtors], day, key)
        go = np.flatnonzero(short & (u < self.config.visit.follow_prob * will))
        if not len(go):
            return
        _, first = np.unique(debtors[go], return_index=True)  # one visit per debtor at one moment
        go = go[np.sort(first)]
        self.show(debtors[go], now[go], owed[go])

    def show(self, rows: NDArray[np.int64], t: NDArray[np.float64], owed: NDArray[np.float64]) -> None:
        """Menu points of these rows (distinct, active, in arrears) at ``t``: the menu, the choice, its consequences."""
        w = self.world
        ledger = w.ledger
        day = np.asarray(whole_day(t), dtype=np.int64)
        self.last_visit[rows] = t
        menu_ids = np.arange(w._next_decision_id, w._next_decision_id + len(rows), dtype=np.int64)
        w._next_decision_id += len(rows)
        batch = menu_batch(ledger, rows, w.gid[rows], day, menu_ids, self.space, self.rules, w.calendar)
        if w.policy is None and self.external:  # asked from outside: the world stops here until it is answered
            self.hold(batch, rows, t, owed)
            return
        self._carry_out(batch, decide_menus(w.policy, batch), rows, t, owed)

    def hold(
        self, batch: MenuBatch, rows: NDArray[np.int64], t: NDArray[np.float64], owed: NDArray[np.float64]
    ) -> None:
        """Hold menu points asked from outside until they are answered, then carry them out.

        Here the world's SimPy process waits (:meth:`next_point`, :meth:`submit`); a world whose rows keep their
        own clocks freezes the rows instead (:class:`regsim.vector_world.VectorWorld`).
        """
        self.world.env.process(self._ask(batch, rows, t, owed))

    def carry_out(
        self,
        batch: MenuBatch,
        menus: MenuDecisionBatch,
        rows: NDArray[np.int64],
        t: NDArray[np.float64],
        owed: NDArray[np.float64],
    ) -> None:
        """Carry out held menu points with the menus given (checked against the rules first)."""
        self._carry_out(batch, menus, rows, t, owed)

    def _ask(
        self, batch: MenuBatch, rows: NDArray[np.int64], t: NDArray[np.float64], owed: NDArray[np.float64]
    ) -> Generator[Any, Any, None]:
        """The menu point handed out by the world's ``next_decision`` run (:meth:`next_point`), then carried out."""
        w = self.world
        self.pending, self._answer = batch, w.env.event()
        assert w._ready is not None and not w._ready.triggered, "one decision point at a time"
        w._ready.succeed(batch)
        menus = yield self._answer
        self._carry_out(batch, menus, rows, t, owed)

    def next_point(self) -> ContextBatch | MenuBatch | None:
        """Drive a policy-less world with external menus: its next decision point or menu point (``None``: done).

        Arrangement decision points are answered with the world's ``submit``, menu points with :meth:`submit`.
        """
        if self.pending is not None:
            return self.pending
        point: ContextBatch | MenuBatch | None = self.world.next_decision()  # (a MenuBatch when _ask handed one)
        return point

    def submit(self, menus: MenuDecisionBatch) -> None:
        """Answer the pending menu point; the world resumes at the next :meth:`next_point`.

        Raises:
            RuleViolation: A menu shows a capped level; nothing is applied and the menu point stays pending.
        """
        if self.pending is None or self._answer is None:
            raise RuntimeError("no menu point is pending; call next_point() first")
        self.rules.check(self.pending, menus)
        answer, self._answer, self.pending = self._answer, None, None
        answer.succeed(menus)

    def _carry_out(
        self,
        batch: MenuBatch,
        menus: MenuDecisionBatch,
        rows: NDArray[np.int64],
        t: NDArray[np.float64],
        owed: NDArray[np.float64],
    ) -> None:
        """Log checked menus, draw the debtors' choices and apply them through the ledger."""
        w = self.world
        ledger = w.ledger
        day = np.asarray(whole_day(t), dtype=np.int64)
        menu_ids, inst = batch.menu_ids, ledger.sched.first_open[rows]
        self.rules.check(batch, menus)
        ledger.menu_shown(
            rows,
            t,
            menu_ids=menu_ids,
            installments=inst,
            levels=menus.levels,
            propensity=menus.propensity,
            masked_rules=batch.rule_names(),
            policy=w.policy_name,
            policy_version=w.policy_version,
        )
        # The debtor's choice: latent need, shock and willingness (mechanism 10).
        need = 1.0 - np.minimum(w.state.cash[rows] / np.maximum(owed, 1e-9), 1.0)
        shock = (w.state.shock_until[rows] > day).astype(np.float64)
        unwill = 1.0 - w.pop.willingness[rows]
        shown, terms = self.space.scaled_terms(menus.levels)
        v = utilities(self.params, terms, need, shock, unwill)
        u = w.streams.uniform(Purpose.MENU_CHOICE, w.gid[rows][:, None], day[:, None], _OPTION_INDEX[None, :])
        chosen = draw_choice(v, shown, u)
        rec = self.visits
        rec.menu_id.append(menu_ids)
        rec.arrangement_id.append(w.gid[rows])
        rec.need.append(need)
        rec.shock.append(shock)
        rec.unwill.append(unwill)
        rec.levels.append(menus.levels)
        rec.chosen.append(chosen)
        mids = ledger.menu_chosen(
            rows, t, day, menu_ids=menu_ids, installments=inst, levels=menus.levels, options=chosen
        )
        if len(mids):
            w._at_each(ledger.messages.send_time[mids], w._send, mids)
        ended = chosen == MenuOption.COUNSELLING
        if ended.any():
            w.pay_time[rows[ended]] = np.inf
            w.thank[rows[ended]] = False
        custom = np.flatnonzero(chosen == MenuOption.CUSTOM)
        if len(custom):
            self._queue_cases(rows[custom], menu_ids[custom], t[custom])

    # -- custom cases -------------------------------------------------------------------------------------
    def _queue_cases(self, rows: NDArray[np.int64], menu_ids: NDArray[np.int64], t: NDArray[np.float64]) -> None:
        w = self.world
        cases = np.arange(len(self._case_row), len(self._case_row) + len(rows), dtype=np.int64)
        self._case_row += rows.tolist()
        self._case_menu += menu_ids.tolist()
        self.case_pending[rows] = True
        if w.dedicated is None:
            w.capacity.queue_cases(cases)
        else:
            w._at_each(w.dedicated.call_times(t, collector=True), self.resolve, cases)

    def case_wanted(self, cases: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each case is still open (its arrangement active); closed ones are dropped."""
        rows = np.asarray(self._case_row, dtype=np.int64)[cases]
        ok = self.world.ledger.status[rows] == _ACTIVE
        self.case_pending[rows[~ok]] = False
        return np.asarray(ok)

    def resolve(self, cases: NDArray[np.int64], t: Time) -> None:
        """Staff take these cases (at ``t``): a new plan and a deferral through the ledger."""
        ok = self.case_wanted(cases)
        cases = cases[ok]
        if not len(cases):
            return
        w = self.world
        rows = np.asarray(self._case_row, dtype=np.int64)[cases]
        self.case_pending[rows] = False
        custom = self.config.custom
        room = w.config.rules.max_total_installments - w.ledger.sched.first_open[rows]
        n = np.clip(np.full(len(rows), custom.plan_installments), 1, np.maximum(room, 1))
        w.ledger.case_resolved(
            rows,
            at(t, ok),
            whole_day(at(t, ok)),
            menu_ids=np.asarray(self._case_menu, dtype=np.int64)[cases],
            deferral_days=np.full(len(rows), custom.deferral_days, dtype=np.int64),
            n_installments=n.astype(np.int64),
            cost_eur=np.full(len(rows), self._staff_cost),
        )
