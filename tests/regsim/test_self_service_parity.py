"""Self-service in the vector world (issue 18): a row's menu points are the lone arrangement's, event for event.

A :class:`regsim.vector_world.VectorWorld` row behaves as the one arrangement of a one-arrangement
:class:`regsim.world.World` with the same debtor and seed: the same menus shown, the same choices, concessions and
staff cases at the same moments, with the default menus answered at once and with menus asked from outside
(the row freezes mid-event and resumes where it stopped).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from regsim import WorldConfig
from regsim.clock import Time
from regsim.decision import DecisionKind
from regsim.eventlog import EventType
from regsim.menu import MenuBatch, MenuDecisionBatch, default_menu
from regsim.vector_world import SELF_SERVICE_EVENTS, Phase, VectorWorld
from regsim.world import World
from tests.regsim.policies_for_tests import EMAIL, SMS, ScriptedPolicy

MONTHS = 8
IDS = list(range(40))
#: Visits made likelier than by default, so that a few dozen debtors make many menu points.
CONFIG = WorldConfig().with_overrides(self_service={"enabled": True, "visit": {"follow_prob": 0.9}})
KEPT = (
    *sorted(SELF_SERVICE_EVENTS),
    *(EventType.PAYMENT, EventType.MESSAGE_SENT, EventType.DEFERRAL, EventType.NEW_PLAN, EventType.COMPLETED),
    *(EventType.BROKEN, EventType.REFERRED),
)


def tailored(menus: MenuBatch) -> MenuDecisionBatch:
    """A deterministic menu other than the default: every slot at its cap but the discount, by arrangement."""
    out = default_menu(menus)
    odd = menus.columns["arrangement_id"] % 2 == 1
    out.levels[odd, 3] = 0
    out.levels[~odd, 1] = np.minimum(out.levels[~odd, 1], 1)
    return out


class Menus(ScriptedPolicy):
    """Reminders by SMS and email (test policy), with the menus of :func:`tailored`."""

    def decide_menu(self, menus: MenuBatch) -> MenuDecisionBatch:
        return tailored(menus)


def reminders(menus: bool) -> ScriptedPolicy:
    kinds = {DecisionKind.PRE_DUE: SMS, DecisionKind.MISSED: SMS, DecisionKind.FOLLOW_UP: EMAIL}
    return (Menus if menus else ScriptedPolicy)("test", kinds)


class Recording(VectorWorld):
    """A vector world that keeps the times and rows' arrangements of the events compared (tests only)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[int, int, float, tuple[Any, ...]]] = []

    def record(self, event: EventType, t: Time, rows: np.ndarray, **columns: Any) -> None:
        super().record(event, t, rows, **columns)
        if event in KEPT:
            times = np.broadcast_to(np.asarray(t, dtype=np.float64), rows.shape)
            for i, row in enumerate(rows.tolist()):
                self.seen.append((int(self.gid[row]), int(event), float(times[i]), _values(columns, i)))


def _values(columns: dict[str, Any], i: int) -> tuple[Any, ...]:
    out = []
    for name in ("decision_id", "a_channel", "a_deferral", "a_reduction", "a_due_day", "amount_eur"):
        if name in columns:
            v = np.asarray(columns[name])
            v = v[i] if v.ndim else v
            out.append((name, v.item() if hasattr(v, "item") else v))
    return tuple(out)


def lone_worlds(menus: bool) -> list[tuple[int, int, float, tuple[Any, ...]]]:
    events = []
    for k in IDS:
        world = World(
            CONFIG,
            reminders(menus),
            arrangements=1,
            months=MONTHS,
            first_id=k,
            sample_queues=False,
            dedicated_capacity=True,
        ).run()
        for event, n, cols in world.log.chunks_since(0):
            if event in KEPT:
                for i in range(n):
                    t = float(np.broadcast_to(cols["time"], (n,))[i])
                    events.append((k, int(event), t, _values(cols, i)))
    return events


def vector_world(menus: bool, skip: bool) -> Recording:
    policy = reminders(menus)
    world = Recording(CONFIG, len(IDS), months=MONTHS, skip_quiet_days=skip, external_menus=menus)
    world.reset_rows(np.arange(len(IDS)), np.array(IDS))
    while True:
        world.advance()
        points = world.menu_points()
        if points is not None:  # menus first: a row at a menu point is mid-event
            menu_rows, menus_asked = points
            world.answer_menus(menu_rows, tailored(menus_asked).levels)
            continue
        if not world.frozen:
            break
        rows, batch = world.frozen[0]
        world.answer(rows, policy.decide_batch(batch).actions)
    assert (world.phase == Phase.DONE).all()
    return world


def _by_arrangement(events: list[tuple[int, int, float, tuple[Any, ...]]]) -> dict[int, list[Any]]:
    # Decision ids count per world: a lone world's start at 0, the vector world's run across rows; only their
    # order within an arrangement is compared.
    out: dict[int, list[Any]] = {}
    for k, event, t, values in events:
        out.setdefault(k, []).append((event, t, tuple(v for v in values if v[0] != "decision_id")))
    return out


@pytest.mark.parametrize("menus", [False, True], ids=["default-menus", "menus-from-outside"])
def test_a_row_shows_the_lone_arrangements_menus_and_choices(menus: bool) -> None:
    expected = _by_arrangement(lone_worlds(menus))
    got = _by_arrangement(vector_world(menus, skip=True).seen)
    shown = sum(e == int(EventType.MENU_SHOWN) for v in expected.values() for e, *_ in v)
    assert shown >= 10  # the comparison covers many menu points
    for k in IDS:
        assert got.get(k, []) == expected.get(k, []), k


def test_skipping_quiet_days_equals_every_day_with_self_service_on() -> None:
    fast, slow = vector_world(True, skip=True), vector_world(True, skip=False)
    # (Rows reach their events at other ticks when days are skipped: the order within each arrangement counts.)
    assert _by_arrangement(fast.seen) == _by_arrangement(slow.seen) and len(fast.seen) > 0
    np.testing.assert_array_equal(fast.clock, slow.clock)
    for name in ("cash", "annoyance", "streak", "shock_until"):
        np.testing.assert_array_equal(getattr(fast.state, name), getattr(slow.state, name), err_msg=name)
    np.testing.assert_array_equal(fast.ledger.chosen, slow.ledger.chosen)
