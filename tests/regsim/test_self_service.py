"""Self-service (issue 18, mechanism 10): the menu in the world, its rules, the debtor's choice, the ledger's part.

Off by default, the feature must leave the world bit for bit as it was (a fingerprint of logs recorded before it
existed). On, every consequence of a choice goes through the ledger and a log's replay derives it again;
concessions are counted once in net recovery, counselling refers, custom cases wait for the collectors, and the
ownership effect raises the completion of chosen plans only while it is switched on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pytest

import agents
from regsim import WorldConfig, simulate
from regsim.arrangement import ArrangementStatus
from regsim.calendar import Calendar
from regsim.clock import Time
from regsim.context import ContextColumns
from regsim.decision import DecisionKind, RuleViolation
from regsim.eventlog import EventLog, EventType
from regsim.ledger import Ledger
from regsim.menu import MenuBatch, MenuDecisionBatch, MenuOption, MenuSpace, default_menu
from regsim.metrics import arrangement_outcomes
from regsim.rules import MenuRuleSet
from tests.regsim.replay_check import assert_replay_rederives_the_log

ON = {"enabled": True}


def fingerprint(table: pa.Table) -> str:
    """A digest of a log's values, column by column (dictionary columns by their decoded values)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        digest.update(name.encode())
        digest.update(repr(col.to_pylist()).encode())
    return digest.hexdigest()


#: Fingerprints of ``simulate(WorldConfig(), policy, arrangements=200, months=6, seed=11)`` at commit 890a675,
#: before self-service existed.
BEFORE_SELF_SERVICE = {
    "static-dunning": "221f3ddb3ec5e12fa08e9b7f6da5ecf83c6c5ea4ae612b360b8f210e45ac22fb",
    "random": "c2d1623a20ec82cc0a4dbaacc91d0e273e43da0140f67ab07e9816d5c26da972",
}


class WithMenus:
    """A registered policy that also tailors menus with ``menu`` (tests only)."""

    def __init__(self, base: str, menu: Callable[[MenuBatch], MenuDecisionBatch]) -> None:
        self._base = agents.make(base)
        self._menu = menu

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        return self._menu(menus)


def only(slot: int) -> Callable[[MenuBatch], MenuDecisionBatch]:
    """Menus that show one slot, at its highest allowed level (nothing else)."""

    def menu(menus: MenuBatch) -> MenuDecisionBatch:
        full = default_menu(menus)
        levels = np.zeros_like(full.levels)
        levels[:, slot] = full.levels[:, slot]
        return MenuDecisionBatch(levels, np.ones(len(menus)))

    return menu


def world_with(**self_service: Any) -> WorldConfig:
    return WorldConfig().with_overrides(self_service={"enabled": True, **self_service})


# ------------------------------------------------------------------------------------------------------------
# Off: nothing changes
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", sorted(BEFORE_SELF_SERVICE))
def test_with_self_service_off_the_world_is_bit_for_bit_what_it_was(policy: str) -> None:
    result = simulate(WorldConfig(), agents.make(policy), arrangements=200, months=6, seed=11)
    assert fingerprint(result.events) == BEFORE_SELF_SERVICE[policy]
    assert result.world.desk is None
    if policy != "static-dunning":
        return
    # Switched off, none of its settings reach the world either.
    off = WorldConfig().with_overrides(self_service={"visit": {"follow_prob": 1.0}, "ownership": {"theta": 1.0}})
    again = simulate(off, agents.make(policy), arrangements=200, months=6, seed=11)
    assert fingerprint(again.events) == BEFORE_SELF_SERVICE[policy]


# ------------------------------------------------------------------------------------------------------------
# The menu's rules
# ------------------------------------------------------------------------------------------------------------
def menu_batch(on_time: list[int], due: list[int], **extra: list[int]) -> MenuBatch:
    config = WorldConfig().self_service
    n = len(on_time)
    columns = {
        "arrangement_id": np.arange(n, dtype=np.int64),
        "installments_due": np.array(due, dtype=np.int16),
        "on_time": np.array(on_time, dtype=np.int16),
        "deferrals": np.array(extra.get("deferrals", [0] * n), dtype=np.int16),
        "installments_paid": np.array(extra.get("paid", [0] * n), dtype=np.int16),
    }
    space = MenuSpace.from_config(config)
    batch = MenuBatch(
        space,
        np.arange(n, dtype=np.int64),
        cast(ContextColumns, columns),
        np.array(extra.get("concessions", [0] * n), dtype=np.int64),
        np.array(extra.get("waived", [0] * n), dtype=bool),
        np.ones((n, space.mask_size), dtype=bool),
    )
    return MenuRuleSet(config, WorldConfig().rules, space).apply(batch)


def test_menu_caps_follow_the_history_band_and_name_their_rules() -> None:
    # A reliable payer (10 of 10 on time) and a frequent late payer (1 of 10), as seeds/002 describes.
    batch = menu_batch(on_time=[10, 1], due=[10, 10])
    space = batch.space
    menu = default_menu(batch)
    days = [space.deferral_days[lv] for lv in menu.levels[:, 0]]
    assert days == [10, 3]
    assert [space.plan_installments[lv] for lv in menu.levels[:, 1]] == [12, 3]
    assert [space.discounts[lv] for lv in menu.levels[:, 3]] == [0.1, 0.0]
    assert menu.levels[:, 2].tolist() == [1, 0]  # a waiver only for the better band
    late = batch.masked_by(1)
    assert late[(0, space.deferral_days.index(10))] == ("menu_deferral_cap",)
    assert late[(1, space.plan_installments.index(12))] == ("menu_plan_cap",)
    assert late[(2, 1)] == ("menu_waiver_rule",)
    assert late[(3, 1)] == ("menu_discount_cap",)
    assert (0, space.deferral_days.index(10)) not in batch.masked_by(0)
    # Level 0 (not shown) is never capped, and counselling and custom solutions are always on offer.
    assert batch.mask[:, list(space.offsets)].all()
    assert menu.levels[:, 4].tolist() == [1, 1] and menu.levels[:, 5].tolist() == [1, 1]


def test_menu_rules_count_concessions_deferrals_and_the_plans_length() -> None:
    batch = menu_batch(on_time=[10, 10], due=[10, 10], concessions=[1, 0], deferrals=[0, 3], paid=[0, 20])
    space = batch.space
    first, second = batch.masked_by(0), batch.masked_by(1)
    assert "menu_concession_cap" in first[(2, 1)] and first[(3, 1)] == ("menu_concession_cap",)
    assert second[(0, 1)] == ("menu_deferral_cap",)  # rules.max_deferrals (3) granted already
    assert second[(1, space.plan_installments.index(6))] == ("menu_plan_cap",)  # 20 paid + 6 > 24


def test_a_menu_showing_a_capped_level_is_refused_naming_the_rule() -> None:
    batch = menu_batch(on_time=[1], due=[10])
    rules = MenuRuleSet(WorldConfig().self_service, WorldConfig().rules, batch.space)
    levels = np.zeros((1, 6), dtype=np.int64)
    levels[0, 0] = batch.space.deferral_days.index(10)
    with pytest.raises(RuleViolation, match="menu_deferral_cap") as err:
        rules.check(batch, MenuDecisionBatch(levels, np.ones(1)))
    assert err.value.rules == ("menu_deferral_cap",)


# ------------------------------------------------------------------------------------------------------------
# The ledger's part: concessions, counselling
# ------------------------------------------------------------------------------------------------------------
class LogSink:
    """An event sink that writes to an event log (as the world does)."""

    def __init__(self) -> None:
        self.log = EventLog(WorldConfig().simulation.start_date)

    def keeps(self, event: EventType) -> bool:
        return True

    def record(self, event: EventType, t: Time, rows: np.ndarray, **columns: Any) -> None:
        self.log.append(event, t, rows, **columns)


def one_arrangement(debt: float = 300.0) -> tuple[Ledger, LogSink]:
    config = world_with()
    sink = LogSink()
    ledger = Ledger(config, 1, Calendar(config.simulation.start_date, 2000), sink)
    r = np.array([0])
    ledger.create(
        r,
        0.0,
        0,
        debt_eur=np.array([debt]),
        n_installments=np.array([3]),
        due_day=5,
        prior_payments=np.zeros(1, dtype=np.int64),
        prior_late_share=np.zeros(1),
        prior_pay_dom=np.full(1, -1),
    )
    z = np.zeros((1, 5), dtype=np.int64)
    ledger.decide(
        r,
        0.0,
        0,
        decision_ids=np.array([0]),
        kinds=np.array([int(DecisionKind.PLAN_CREATED)]),
        installments=np.array([0]),
        actions=z,
        propensity=np.ones(1),
        send_time=np.array([0.5]),
        masked_rules=[""],
        policy="test",
        policy_version="1",
    )
    return ledger, sink


def choose(ledger: Ledger, option: MenuOption, levels: list[int], t: float = 40.5) -> np.ndarray:
    return ledger.menu_chosen(
        np.array([0]),
        t,
        int(t),
        menu_ids=np.array([7]),
        installments=np.array([0]),
        levels=np.array([levels]),
        options=np.array([int(option)]),
    )


def test_a_discount_lowers_the_balance_and_is_counted_once_in_net_recovery() -> None:
    ledger, sink = one_arrangement()
    space = MenuSpace.from_config(WorldConfig().self_service)
    confirmation = choose(ledger, MenuOption.DISCOUNT, [0, 0, 0, space.discounts.index(0.1), 0, 0])
    assert ledger.sched.balance[0] == pytest.approx(270.0)
    assert ledger.sched.amount[0, :3].sum() == pytest.approx(270.0)
    assert ledger.concessions[0] == 1 and ledger.chosen[0]
    assert len(confirmation) == 1 and ledger.messages.decision[confirmation[0]] == 7  # a confirmation is sent
    ledger.pay(np.array([0]), np.array([270.0]), np.array([41.0]), 41)
    o = arrangement_outcomes(sink.log.to_table())
    assert o.concessions_eur.tolist() == [pytest.approx(30.0)]
    # The debt was 300: paid in full after the discount, it nets 270, the discount counted once (not 240).
    assert o.net_recovery_eur.tolist() == [pytest.approx(300.0 - 30.0)]


def test_a_waiver_is_a_concession_and_spares_the_debtor_collection_costs() -> None:
    ledger, sink = one_arrangement(debt=900.0)
    ledger.last_letter_time[0] = 1.0  # a letter long before: a breakdown could charge costs (F8)
    choose(ledger, MenuOption.WAIVER, [0, 0, 1, 0, 0, 0])
    assert ledger.costs_waived[0]
    conceded = 900.0 - ledger.sched.balance[0]
    assert conceded == pytest.approx(min(0.15 * 900.0, 135.0))  # the F8 scale on 900, capped at 15%
    ledger.end(np.array([0]), 90.0, ArrangementStatus.BROKEN)
    table = sink.log.to_table().to_pandas()
    assert table.loc[table.event == "broken", "collection_costs_eur"].tolist() == [0.0]
    o = arrangement_outcomes(sink.log.to_table())
    assert o.concessions_eur.tolist() == [pytest.approx(conceded)]


def test_counselling_ends_the_arrangement_as_referred() -> None:
    ledger, sink = one_arrangement()
    confirmation = choose(ledger, MenuOption.COUNSELLING, [0, 0, 0, 0, 1, 0])
    assert ledger.status[0] == ArrangementStatus.REFERRED and not len(confirmation)
    o = arrangement_outcomes(sink.log.to_table())
    assert o.end_kind.tolist() == ["referred"] and o.counselled.tolist() == [1]


def test_a_chosen_plan_respreads_the_balance_over_its_installments() -> None:
    ledger, sink = one_arrangement(debt=100.0)
    space = MenuSpace.from_config(WorldConfig().self_service)
    choose(ledger, MenuOption.PLAN, [0, space.plan_installments.index(3), 0, 0, 0, 0])
    s = ledger.sched
    # Three installments (33.34, 33.34, 33.32): rounded up to the cent, so no fourth one for a remainder.
    assert s.n[0] == 3 and s.amount[0, :3].tolist() == [33.34, 33.34, 33.32]
    assert (np.diff(s.due[0, :3]) > 0).all()
    assert EventType.NEW_PLAN in {EventType(c["event"]) for _, c in sink.log._chunks}


# ------------------------------------------------------------------------------------------------------------
# In the world
# ------------------------------------------------------------------------------------------------------------
def test_custom_solutions_wait_in_the_collectors_queue() -> None:
    # One collector taking a call an hour, and debtors who all ask for a custom solution.
    config = world_with(choice={"custom": {"alpha": 8.0, "beta_need": 0.0, "beta_shock": 0.0}}).with_overrides(
        capacity={"collectors": 1, "collector_minutes_per_call": 60.0}
    )
    result = simulate(config, WithMenus("static-dunning", only(5)), arrangements=800, months=8, seed=2)
    ev = result.events.to_pandas()
    chosen = ev[(ev.event == "menu_choice") & (ev.a_channel == int(MenuOption.CUSTOM))]
    resolved = ev[ev.event == "case_resolved"]
    assert len(chosen) > 20 and len(resolved) > 20
    asked = chosen.set_index("decision_id").time.reindex(resolved.decision_id)
    waited = resolved.set_index("decision_id").time - asked
    # (Cases are served on the hour: one chosen at an hour mark can be taken in that hour.)
    assert (waited >= 0).all() and waited.max() > 1.0  # one collector: some wait for days
    hours = np.round((resolved.time.to_numpy() % 1.0) * 24.0, 6)
    assert ((hours >= 9) & (hours < 17)).all()  # collectors' hours
    assert resolved.time.value_counts().max() <= 1  # one case an hour: the team's capacity, shared
    # Staff's solution goes through the ledger: a new plan and a deferral at the resolution, the call's cost charged.
    for kind in ("new_plan", "deferral"):
        assert set(resolved.time.round(9)) <= set(ev[ev.event == kind].time.round(9))
    o = arrangement_outcomes(result.events)
    assert o.custom_cases.sum() == len(resolved)


def test_replaying_a_log_with_menus_rederives_every_event_it_holds() -> None:
    config = world_with()
    result = simulate(config, agents.make("static-dunning"), arrangements=400, months=8, seed=4)
    kinds = assert_replay_rederives_the_log(config, result)
    assert {"menu_shown", "menu_choice", "new_plan", "concession", "case_resolved", "deferral"} <= kinds


def test_menus_are_logged_with_their_rules_and_propensity() -> None:
    result = simulate(world_with(), agents.make("static-dunning"), arrangements=300, months=8, seed=5)
    ev = result.events.to_pandas()
    shown, choice = ev[ev.event == "menu_shown"], ev[ev.event == "menu_choice"]
    assert len(shown) > 10 and shown.decision_id.tolist() == choice.decision_id.tolist()
    assert (shown.propensity == 1.0).all() and (shown.policy == "static-dunning").all()
    assert shown.masked_rules.str.contains("menu_").all()
    assert set(choice.a_channel) <= {int(o) for o in MenuOption}


def plan_choosers_completion(theta: float, enabled: bool = True) -> tuple[pa.Table, dict[int, int]]:
    config = world_with(
        ownership={"enabled": enabled, "theta": theta},
        choice={"plan": {"alpha": 3.0, "beta_need": 0.0, "beta_shock": 0.0, "gamma": 0.0}},
    )
    result = simulate(config, WithMenus("static-dunning", only(1)), arrangements=1000, months=12, seed=9)
    ev = result.events.to_pandas()
    first = ev[ev.event == "menu_choice"].drop_duplicates("arrangement_id")
    plan = first[first.a_channel == int(MenuOption.PLAN)].arrangement_id
    done = set(ev[ev.event == "completed"].arrangement_id)
    return result.events, {int(a): int(a in done) for a in plan}


def test_the_ownership_effect_raises_completion_of_chosen_plans_and_off_changes_nothing() -> None:
    """Paired on the same debtors and shocks (common random numbers): the same first choices, on and off."""
    _, on = plan_choosers_completion(theta=0.6)
    log_off, off = plan_choosers_completion(theta=0.0)
    assert on.keys() == off.keys() and len(on) > 100  # the same debtors chose the same plan at their first visit
    better = sum(on[a] > off[a] for a in on)
    worse = sum(on[a] < off[a] for a in on)
    assert better > 2 * worse + 5, (better, worse)
    # Switched off, its theta counts for nothing: the world is that of a zero effect, bit for bit.
    log_disabled, _ = plan_choosers_completion(theta=0.6, enabled=False)
    assert fingerprint(log_disabled) == fingerprint(log_off)
