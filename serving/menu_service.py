"""Self-service on the store: the menu for an arrangement in arrears, and the debtor's choice, through the ledger.

The server side of mechanism 10 (docs/mechanisms.md#mechanism-10), with the simulator's code at every step:

* **A menu** (:meth:`MenuService.show`): the arrangement is booked up to the request's time (the ledger's
  bookkeeping), its menu point built from the ledger's state by :func:`regsim.menu_points.menu_batch` (the
  world's builder) and masked by :class:`regsim.rules.MenuRuleSet`; the server's active policy chooses the menu
  (:func:`regsim.menu.decide_menus`: its ``decide_menu``, e.g. ``menu-ts`` or ``rule-based-menu``, else the
  world's :func:`~regsim.menu.default_menu`), the rules check it, and the ledger logs it
  (:meth:`regsim.ledger_menu.MenuLedger.menu_shown`: levels, propensity of the whole menu, policy, version,
  masked rules), so off-policy evaluation reads it as it reads a simulated menu. A menu is offered, as in the
  world, only to an active arrangement with an installment overdue and no custom case waiting. As the world
  lets a debtor visit at most once per ``self_service.visit.min_days_between_visits``, a menu **stands** for that
  long: while the arrangement's latest menu is unanswered and shown less than that many days before the
  request, the same menu is answered again (``standing: true``; nothing is drawn or logged, the ledger is only
  booked up to the request's time); after the window, or once the menu was answered, a new menu is drawn, and
  it supersedes the arrangement's unanswered ones.
* **A choice** (:meth:`MenuService.choose`): checked against the menu served (the option shown, the term it
  offered), then :meth:`regsim.ledger_menu.MenuLedger.menu_chosen` logs it and works out its consequences
  (deferral, new plan, waiver and discount as ``concession`` events, counselling refers the arrangement) and
  schedules the confirmation, which the server numbers as a message (report it with ``POST /v1/events``). A
  custom solution's case is queued for the collectors (:func:`serving.menu_store.queued_cases`).
* **A case resolved** (:meth:`MenuService.resolve`): staff took a queued custom case; as the world's collectors
  do, :meth:`regsim.ledger_menu.MenuLedger.case_resolved` sets up a new plan (by default the world's
  ``self_service.custom`` length, within the rules' cap) and a deferral, and logs the case's cost.

Both run inside the single writer's transaction (:mod:`serving.writer`'s ``apply`` ops); a refusal raises a
:class:`~serving.refusals.ServiceError` before anything is written, and the writer restores the workspace.
"""

from __future__ import annotations

import json
import math
import time as _time
from typing import Any

import numpy as np
import sqlalchemy as sa

from regsim.config import CHANNELS
from regsim.decision import RuleViolation
from regsim.eventlog import EventType
from regsim.menu import SLOT_NAMES, MenuBatch, MenuDecisionBatch, MenuOption, MenuSpace, decide_menus, default_menu
from regsim.menu_points import in_arrears, menu_batch
from regsim.rules import MenuRuleSet
from serving import db
from serving.cache import Workspace
from serving.late_events import mark_arrived
from serving.menu_store import (
    MenuRow,
    insert_menu,
    latest_menu,
    mark_chosen,
    mark_resolved,
    menu_row,
    queued_cases,
    supersede,
)
from serving.overview import installments_of
from serving.refusals import ConflictError, InvalidFieldError, NotFoundError
from serving.schemas_menu import (
    OPTION_NAMES,
    CappedLevel,
    CaseIn,
    CaseOut,
    ChoiceIn,
    ChoiceOut,
    Confirmation,
    MenuIn,
    MenuOut,
    OfferedOption,
    QueuedCase,
    QueueOut,
)
from serving.service import DecisionService
from serving.store import next_ids
from serving.store_rows import rows_of
from serving.translations import date, money, text
from serving.writer import Outcome

__all__ = ["DISABLED", "MenuService", "confirmation_words"]

#: The refusal when the server's world config has self-service off.
DISABLED = (
    "self-service is not enabled in this server's world config (self_service.enabled: false in the "
    "REGSIM_POPULATION file); enable it there to serve menus and choices"
)
_FOLLOW_UP = {
    "close": "none",
    "deferral": "deferral",
    "plan": "new_plan",
    "waiver": "concession",
    "discount": "concession",
    "counselling": "referred",
    "custom": "queued_for_collectors",
}
#: The parameter of each option with a term, and the option it belongs to.
_PARAMETER_OF = {"deferral_days": "deferral", "n_installments": "plan", "discount": "discount"}
_MENU_EVENTS = frozenset({"menu_shown"})
_CHOICE_EVENTS = frozenset({"menu_choice"})
_CASE_EVENTS = frozenset({"case_resolved"})


class MenuService:
    """Menus and choices on the store (see the module docstring).

    Args:
        service: The decision service (its workspace bookkeeping, time conversion and store writes).
    """

    def __init__(self, service: DecisionService) -> None:
        self.service = service
        config = service.config
        self.config = config.self_service
        self.enabled = self.config.enabled
        self.space = MenuSpace.from_config(self.config)
        self.rules = MenuRuleSet(self.config, config.rules, self.space)

    def _require_enabled(self) -> None:
        if not self.enabled:
            raise ConflictError(DISABLED)

    # ======================================================================================================
    # Menus
    # ======================================================================================================
    def show(self, conn: sa.Connection, ws: Workspace, req: MenuIn) -> Outcome:
        """The menu for ``req``'s arrangement at its time: chosen by the active policy, logged (uncommitted)."""
        menu = self.menu(conn, ws, req)
        return Outcome(200, menu.model_dump_json())

    def menu(self, conn: sa.Connection, ws: Workspace, req: MenuIn) -> MenuOut:
        """:meth:`show`'s menu as a model (for the debtor's page)."""
        self._require_enabled()
        s = self.service
        t = s.time_of(req)
        aid = req.arrangement_id
        info = s._info(ws, aid)
        s._check_time(info, t)
        rp = ws.replay
        rows = s._book(ws, aid, t, EventType.MENU_SHOWN)
        status = ws.status_of(aid)
        r = np.array([rp.row[aid]], dtype=np.int64)
        if status != "active":
            raise ConflictError(f"arrangement {aid} is {status}: a menu is offered to an active arrangement only")
        if not in_arrears(rp.ledger, r)[0]:
            raise ConflictError(
                f"arrangement {aid} has no installment overdue at time {t}: the self-service menu is offered to a "
                "debtor in arrears (as in the world)"
            )
        waiting = queued_cases(conn, aid)
        if waiting:
            raise ConflictError(
                f"arrangement {aid} has a custom solution waiting for the collectors (menu {waiting[0].menu_id}); "
                "no menu is offered until staff have resolved it"
            )
        standing = self.standing(conn, aid, t)
        if standing is not None:  # the debtor reloaded, or came back within the visit window: the same menu
            s._store(conn, rows)
            s._touch(conn, ws, [aid], [t])
            s._learn(t, rows)
            return MenuOut.model_validate_json(standing.menu_json).model_copy(update={"standing": True})
        (menu_id,) = next_ids(conn, "decision", 1)
        batch = menu_batch(
            rp.ledger,
            r,
            np.array([aid], dtype=np.int64),
            np.array([math.floor(t)], dtype=np.int64),
            np.array([menu_id], dtype=np.int64),
            self.space,
            self.rules,
            rp.calendar,
        )
        decided, policy, version = self._decide(batch)
        installment = int(rp.ledger.sched.first_open[r[0]])
        rp.ledger.menu_shown(
            r,
            t,
            menu_ids=batch.menu_ids,
            installments=np.array([installment], dtype=np.int64),
            levels=decided.levels,
            propensity=decided.propensity,
            masked_rules=batch.rule_names(),
            policy=policy,
            policy_version=version,
        )
        shown = rows_of(rp).take()
        mark_arrived(shown, _MENU_EVENTS, _time.time())
        rows += shown
        s._store(conn, rows)
        s._touch(conn, ws, [aid], [t])
        s._learn(t, rows)
        out = self._menu_out(batch, decided, menu_id, aid, t, installment, policy, version)
        supersede(conn, aid)
        levels = tuple(int(v) for v in decided.levels[0])
        insert_menu(
            conn,
            menu_id=menu_id,
            arrangement_id=aid,
            time=t,
            installment=installment,
            levels=levels,
            propensity=float(decided.propensity[0]),
            policy=policy,
            policy_version=version,
            menu_json=out.model_dump_json(),
            answers_json=None if req.answers is None else req.answers.model_dump_json(),
        )
        return out

    def standing(self, conn: sa.Connection, aid: int, t: float) -> MenuRow | None:
        """The arrangement's standing menu at time ``t``, if any (see the module docstring).

        Args:
            conn: The store.
            aid: The arrangement.
            t: The request's time (days since the epoch).

        Returns:
            Its latest menu when that is unanswered (``open``) and was shown less than
            ``self_service.visit.min_days_between_visits`` days before ``t`` (the world's spacing of visits);
            ``None`` when a new menu is to be drawn.
        """
        m = latest_menu(conn, aid)
        if m is None or m.state != "open" or t - m.time >= self.config.visit.min_days_between_visits:
            return None
        return m

    def _decide(self, batch: MenuBatch) -> tuple[MenuDecisionBatch, str, str]:
        """The active policy's menu, checked; a menu that breaks the rules is replaced by the rule-based one."""
        policy = self.service.runner.active
        decided = decide_menus(policy, batch)
        try:
            self.rules.check(batch, decided)
        except RuleViolation:
            # (The world refuses such a menu; a server answers a debtor all the same, with today's menu.)
            self.service.count(self.service.metrics.fallbacks.labels("menu_rule_violation"))
            return default_menu(batch), "rule-based-menu", "1"
        return decided, str(policy.name), str(policy.version)

    def _menu_out(
        self,
        batch: MenuBatch,
        decided: MenuDecisionBatch,
        menu_id: int,
        aid: int,
        t: float,
        installment: int,
        policy: str,
        version: str,
    ) -> MenuOut:
        levels = [int(v) for v in decided.levels[0]]
        capped: dict[int, list[CappedLevel]] = {k: [] for k in range(len(SLOT_NAMES))}
        for (slot, level), rules in sorted(batch.masked_by(0).items()):
            label = self.space.level_labels(slot)[level]
            capped[slot].append(CappedLevel(level=level, label=label, rules=list(rules)))
        options = []
        for slot, name in enumerate(SLOT_NAMES):
            lv = levels[slot]
            options.append(
                OfferedOption(
                    option=OPTION_NAMES[slot + 1],
                    shown=lv > 0,
                    level=lv,
                    deferral_days=self.space.deferral_days[lv] if name == "deferral" and lv else None,
                    n_installments=self.space.plan_installments[lv] if name == "plan" and lv else None,
                    discount=self.space.discounts[lv] if name == "discount" and lv else None,
                    capped=capped[slot],
                    capped_by=sorted({r for c in capped[slot] for r in c.rules}),
                )
            )
        s = self.service
        return MenuOut(
            menu_id=menu_id,
            arrangement_id=aid,
            time=t,
            at=s.at_of(t),
            installment=installment,
            options=options,
            allowed_choices=["close", *(o.option for o in options if o.shown)],
            masked_rules=[m for m in batch.rule_names()[0].split(",") if m],
            policy=policy,
            policy_version=version,
            propensity=float(decided.propensity[0]),
        )

    # ======================================================================================================
    # Choices
    # ======================================================================================================
    def choose(self, conn: sa.Connection, ws: Workspace, req: ChoiceIn) -> Outcome:
        """Register ``req``'s choice and its consequences through the ledger (uncommitted)."""
        return Outcome(200, self.choice(conn, ws, req).model_dump_json())

    def choice(self, conn: sa.Connection, ws: Workspace, req: ChoiceIn) -> ChoiceOut:
        """:meth:`choose`'s answer as a model (for the debtor's page)."""
        self._require_enabled()
        s = self.service
        t = s.time_of(req)
        aid = req.arrangement_id
        info = s._info(ws, aid)
        m = self._answerable(conn, req, t)
        s._check_time(info, t)
        self._check_terms(req, m)
        rp = ws.replay
        rows = s._book(ws, aid, t, EventType.MENU_CHOICE)
        status = ws.status_of(aid)
        if status != "active":
            raise ConflictError(f"arrangement {aid} is {status}: a choice needs an active arrangement")
        r = np.array([rp.row[aid]], dtype=np.int64)
        code = OPTION_NAMES.index(req.option)
        confirms = code not in (MenuOption.CLOSE, MenuOption.COUNSELLING)
        message_ids = next_ids(conn, "message", 1) if confirms else [-1]
        positions = rp.ledger.menu_chosen(
            r,
            t,
            math.floor(t),
            menu_ids=np.array([m.menu_id], dtype=np.int64),
            installments=np.array([m.installment], dtype=np.int64),
            levels=np.array([m.levels], dtype=np.int64),
            options=np.array([code], dtype=np.int64),
            message_ids=np.array(message_ids, dtype=np.int64),
        )
        chosen = rows_of(rp).take()
        mark_arrived(chosen, _CHOICE_EVENTS, _time.time())
        s._store(conn, rows + chosen)
        confirmation = self._confirmation(conn, ws, aid, int(positions[0])) if len(positions) else None
        s._touch(conn, ws, [aid], [t])
        s._learn(t, rows + chosen)
        out = self._choice_out(ws, aid, req, t, chosen, confirmation)
        if out.confirmation is not None:
            out.confirmation.text = confirmation_words(req.language, out, self.offered_days(m))
        mark_chosen(conn, m.menu_id, req.option, t, out.model_dump_json(), queued=req.option == "custom")
        return out

    def _answerable(self, conn: sa.Connection, req: ChoiceIn, t: float) -> MenuRow:
        """The menu a choice answers, if it may still be answered."""
        m = menu_row(conn, req.menu_id)
        if m is None or m.arrangement_id != req.arrangement_id:
            raise NotFoundError(
                f"menu_id: menu {req.menu_id} of arrangement {req.arrangement_id} is not in the store "
                "(POST /v1/menus first)"
            )
        if m.state == "chosen":
            raise ConflictError(
                f"menu_id: menu {m.menu_id} was answered already ({m.chosen_option!r} at time {m.chosen_time}); "
                "a menu takes one choice"
            )
        if m.state == "superseded":
            newer = latest_menu(conn, m.arrangement_id)
            raise ConflictError(
                f"menu_id: menu {m.menu_id} was replaced by a later menu of arrangement {m.arrangement_id}"
                f"{'' if newer is None else f' (menu {newer.menu_id})'}; answer that one"
            )
        if t < m.time:
            raise ConflictError(f"time: {t} is before menu {m.menu_id} was shown ({m.time})")
        return m

    def _check_terms(self, req: ChoiceIn, m: MenuRow) -> None:
        """The option must be on the menu, and any term given must be the one the menu offered."""
        allowed = ["close", *(OPTION_NAMES[k + 1] for k, lv in enumerate(m.levels) if lv > 0)]
        if req.option not in allowed:
            raise InvalidFieldError(
                ("body", "option"),
                f"option: {req.option!r} is not on menu {m.menu_id}; allowed: {allowed}",
                req.option,
            )
        offered: dict[str, float] = {
            "deferral_days": self.space.deferral_days[m.levels[0]],
            "n_installments": self.space.plan_installments[m.levels[1]],
            "discount": self.space.discounts[m.levels[3]],
        }
        for name, option in _PARAMETER_OF.items():
            given = getattr(req, name)
            if given is None:
                continue
            if req.option != option:
                raise InvalidFieldError(
                    ("body", name), f"{name}: only with option {option!r}, not {req.option!r}; leave it out", given
                )
            if not math.isclose(float(given), float(offered[name]), abs_tol=1e-9):
                raise InvalidFieldError(
                    ("body", name),
                    f"{name}: menu {m.menu_id} offers {offered[name]}; allowed: [{offered[name]}]",
                    given,
                )

    def _confirmation(self, conn: sa.Connection, ws: Workspace, aid: int, k: int) -> Confirmation:
        """Store the confirmation message the ledger scheduled (book position ``k``); its text comes later."""
        book = ws.replay.ledger.messages
        channel = ("none", *CHANNELS)[int(book.channel[k])]
        send = float(book.send_time[k])
        conn.execute(
            sa.insert(db.messages).values(
                message_id=int(book.message_id[k]),
                arrangement_id=aid,
                decision_id=int(book.decision[k]),
                installment=int(book.installment[k]),
                channel=channel,
                purpose="confirmation",
                send_time=send,
                state="pending",
                state_time=None,
            )
        )
        return Confirmation(
            message_id=int(book.message_id[k]),
            channel=channel,
            send_time=send,
            send_at=self.service.at_of(send),
            text="",
        )

    def _choice_out(
        self,
        ws: Workspace,
        aid: int,
        req: ChoiceIn,
        t: float,
        chosen: list[dict[str, Any]],
        confirmation: Confirmation | None,
    ) -> ChoiceOut:
        rp = ws.replay
        conceded = [float(r["amount_eur"]) for r in chosen if r["event"] == "concession"]
        return ChoiceOut(
            menu_id=req.menu_id,
            arrangement_id=aid,
            option=req.option,
            time=t,
            at=self.service.at_of(t),
            status=ws.status_of(aid),
            follow_up=_FOLLOW_UP[req.option],
            concession_eur=sum(conceded) if conceded else None,
            balance_eur=float(rp.ledger.sched.balance[rp.row[aid]]),
            installments=installments_of(rp, aid, self.service.epoch),
            events=[str(r["event"]) for r in chosen],
            confirmation=confirmation,
        )

    def offered_days(self, m: MenuRow) -> int:
        """The deferral days a stored menu offered (0: none)."""
        return int(self.space.deferral_days[m.levels[0]])

    # ======================================================================================================
    # The collectors' queue
    # ======================================================================================================
    def resolve(self, conn: sa.Connection, ws: Workspace, req: CaseIn) -> Outcome:
        """Staff resolved a queued custom case: a new plan and a deferral through the ledger (uncommitted)."""
        self._require_enabled()
        s = self.service
        t = s.time_of(req)
        aid = req.arrangement_id
        info = s._info(ws, aid)
        m = menu_row(conn, req.menu_id)
        if m is None or m.arrangement_id != aid:
            raise NotFoundError(f"menu_id: menu {req.menu_id} of arrangement {aid} is not in the store")
        if m.case_state != "queued":
            state = (
                "resolved already" if m.case_state == "resolved" else f"no custom solution (chose {m.chosen_option!r})"
            )
            raise ConflictError(f"menu_id: menu {m.menu_id} has no case waiting in the collectors' queue: {state}")
        s._check_time(info, t)
        rp = ws.replay
        rows = s._book(ws, aid, t, EventType.CASE_RESOLVED)
        status = ws.status_of(aid)
        if status != "active":
            raise ConflictError(f"arrangement {aid} is {status}: a case is resolved on an active arrangement only")
        r = np.array([rp.row[aid]], dtype=np.int64)
        custom = self.config.custom
        room = self.service.config.rules.max_total_installments - int(rp.ledger.sched.first_open[r[0]])
        if req.n_installments is None:
            n = int(np.clip(custom.plan_installments, 1, max(room, 1)))  # as the world's staff do
        elif req.n_installments > room:
            raise InvalidFieldError(
                ("body", "n_installments"),
                f"n_installments: at most {room} (rules.max_total_installments less the installments paid), "
                f"got {req.n_installments}",
                req.n_installments,
            )
        else:
            n = req.n_installments
        days = custom.deferral_days if req.deferral_days is None else req.deferral_days
        cost = self.service.config.channels.collector.cost_eur if req.cost_eur is None else req.cost_eur
        rp.ledger.case_resolved(
            r,
            t,
            math.floor(t),
            menu_ids=np.array([m.menu_id], dtype=np.int64),
            deferral_days=np.array([days], dtype=np.int64),
            n_installments=np.array([n], dtype=np.int64),
            cost_eur=np.array([cost]),
        )
        done = rows_of(rp).take()
        mark_arrived(done, _CASE_EVENTS, _time.time())
        s._store(conn, rows + done)
        s._touch(conn, ws, [aid], [t])
        s._learn(t, rows + done)
        mark_resolved(conn, m.menu_id)
        out = CaseOut(
            menu_id=m.menu_id,
            arrangement_id=aid,
            time=t,
            at=s.at_of(t),
            deferral_days=days,
            n_installments=n,
            cost_eur=cost,
            events=[str(e["event"]) for e in done],
            installments=installments_of(rp, aid, s.epoch),
        )
        return Outcome(200, out.model_dump_json())

    def queue(self, conn: sa.Connection) -> QueueOut:
        """The collectors' queue of custom cases, oldest first (read only)."""
        s = self.service
        return QueueOut(
            cases=[
                QueuedCase(
                    menu_id=m.menu_id,
                    arrangement_id=m.arrangement_id,
                    time=float(m.chosen_time or m.time),
                    at=s.at_of(float(m.chosen_time or m.time)),
                )
                for m in queued_cases(conn)
            ]
        )

    # ======================================================================================================
    # Reads (the debtor's page)
    # ======================================================================================================
    @staticmethod
    def stored_menu(conn: sa.Connection, menu_id: int) -> tuple[MenuRow, MenuOut] | None:
        """A stored menu and its answer as served (``None``: no such menu)."""
        m = menu_row(conn, menu_id)
        return None if m is None else (m, MenuOut.model_validate(json.loads(m.menu_json)))


def confirmation_words(language: str, out: ChoiceOut, deferral_days: int) -> str:
    """The words of a choice's confirmation in ``language`` (:mod:`serving.translations`), from its answer.

    Args:
        language: ``nl`` or ``en``.
        out: The registered choice (its plan after the choice, its concession).
        deferral_days: The days of deferral the menu offered (used for a deferral).
    """
    open_ = [i for i in out.installments if i.status != "paid"]
    values: dict[str, object] = {
        "days": deferral_days,
        "n": len(open_),
        "concession": money(language, out.concession_eur or 0.0),
        "amount": money(language, open_[0].amount_eur - open_[0].paid_eur) if open_ else "",
        "date": date(language, open_[0].due_date) if open_ else "",
    }
    return text(language, f"confirm_{out.option}", **values)
