"""Sim-to-HTTP parity of self-service: menus and choices posted over HTTP give the world's menus and ledger events.

A world with self-service on is simulated under the rule-based menu; its production events are posted in log
order (as :func:`tests.serving.conftest.replay_through_api` does), and at each of its menu points the menu is
asked for (``POST /v1/menus``) and the simulated debtor's choice registered (``POST /v1/choices``). The server
builds each menu from its own store with the world's builder, rules and policy, so it must show the simulated
levels with the same propensity, policy and masked rules; what its ledger derives from each choice (re-plans,
deferrals, concessions, referrals, the confirmation and its messages) and afterwards must equal the world's.
A custom solution waits in the collectors' queue; when the world's staff resolve it, the resolution is posted
(``POST /v1/cases``, with the world's terms and cost) and the server's ledger derives the new plan and deferral.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

import agents
from regsim import simulate
from regsim.config import parse_world_config
from regsim.eventlog import read_events
from serving.app import create_app
from serving.cli import export_log
from serving.schemas_menu import OPTION_NAMES
from serving.settings import DEFAULT_POPULATION
from tests.serving.conftest import AUTH, DERIVED, make_settings, post_production_event
from tests.serving.test_menus import self_service_population

ARRANGEMENTS, MONTHS, SEED = 150, 6, 1
#: What the ledger derives, here and in the world: the arrangement's bookkeeping and a choice's consequences.
COMPARED = (*DERIVED, "new_plan", "concession", "referred", "menu_shown", "menu_choice", "case_resolved")
KEYS = (
    "event",
    "arrangement_id",
    "time",
    "installment",
    "deferral_days",
    "n_installments",
    "installment_eur",
    "amount_eur",
    "due_day",
    "reduction",
    "collection_costs_eur",
    "decision_id",
    "a_channel",
    "a_deferral",
    "a_reduction",
    "a_due_day",
    "propensity",
    "masked_rules",
    "policy",
)
_MENU_COLUMNS = ("a_deferral", "a_reduction", "a_due_day", "a_channel")


def _world_config() -> Any:
    data = yaml.safe_load(Path(DEFAULT_POPULATION).read_text(encoding="utf-8"))
    data["self_service"]["enabled"] = True
    return parse_world_config(data, source="default + self_service.enabled")


def _post_log(client: TestClient, rows: list[dict[str, Any]]) -> dict[int, int]:
    """Post the log's production events, menus and choices; the server's decision and menu ids -> the world's."""
    ids: dict[int, int] = {}
    message_of: dict[int, int] = {}  # simulated decision (or menu) id -> the server's id of its message
    decision_of: dict[int, int] = {}
    referred_by_choice: set[tuple[int, float]] = set()
    for r in rows:
        kind, aid, t = r["event"], r["arrangement_id"], r["time"]
        if kind == "decision":
            body = {"arrangement_id": aid, "kind": r["decision_kind"], "installment": r["installment"], "time": t}
            out = client.post("/v1/decisions", json=body)
            assert out.status_code == 200, out.text
            ids[out.json()["decision_id"]] = r["decision_id"]
            if out.json()["message_id"] is not None:
                message_of[r["decision_id"]] = out.json()["message_id"]
            continue
        if kind == "menu_shown":
            out = client.post("/v1/menus", json={"arrangement_id": aid, "time": t})
            assert out.status_code == 200, (r, out.text)
            ids[out.json()["menu_id"]] = r["decision_id"]
            continue
        if kind == "menu_choice":
            menu_id = next(k for k, v in ids.items() if v == r["decision_id"])
            option = OPTION_NAMES[int(r["a_channel"])]
            out = client.post(
                "/v1/choices", json={"arrangement_id": aid, "menu_id": menu_id, "option": option, "time": t}
            )
            assert out.status_code == 200, (r, out.text)
            if out.json()["confirmation"] is not None:
                message_of[r["decision_id"]] = out.json()["confirmation"]["message_id"]
            if option == "counselling":
                referred_by_choice.add((aid, t))
            continue
        if kind == "case_resolved":
            menu_id = next(k for k, v in ids.items() if v == r["decision_id"])
            body = {
                "arrangement_id": aid,
                "menu_id": menu_id,
                "time": t,
                "deferral_days": r["deferral_days"],
                "n_installments": r["n_installments"],
                "cost_eur": r["amount_eur"],
            }
            out = client.post("/v1/cases", json=body)
            assert out.status_code == 200, (r, out.text)
            continue
        if kind in COMPARED and not (kind == "referred" and (aid, t) not in referred_by_choice):
            continue  # derived by the server's ledger
        post_production_event(client, r, message_of, decision_of)
    return ids


def _keys(rows: list[dict[str, Any]], ids: dict[int, int] | None = None) -> Counter[tuple[Any, ...]]:
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        r = dict(r)
        if ids is not None and r["decision_id"] >= 0:
            r["decision_id"] = ids[r["decision_id"]]
        if r["event"] not in ("menu_shown", "menu_choice"):
            for name in (*_MENU_COLUMNS, "propensity", "masked_rules", "policy"):
                r[name] = None  # (the decisions' own columns are compared by test_parity)
        return tuple(round(r[k], 9) if isinstance(r[k], float) else r[k] for k in KEYS)

    return Counter(key(r) for r in rows if r["event"] in COMPARED)


def test_menus_and_choices_over_http_give_the_worlds_menus_and_ledger_events(tmp_path: Path) -> None:
    result = simulate(
        _world_config(), agents.make("rule-based-menu"), arrangements=ARRANGEMENTS, months=MONTHS, seed=SEED
    )
    rows = result.events.to_pylist()
    chosen = Counter(OPTION_NAMES[int(r["a_channel"])] for r in rows if r["event"] == "menu_choice")
    # The run has every consequence a choice can have, and custom cases resolved by the world's staff.
    for option in OPTION_NAMES:
        assert chosen[option] > 0, chosen
    assert any(r["event"] == "case_resolved" for r in rows)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    settings = make_settings(store, policy="rule-based-menu", population=str(self_service_population(tmp_path)))
    with TestClient(create_app(settings), headers=AUTH) as client:
        ids = _post_log(client, rows)
        resp = client.post("/v1/clock", json={"time": float(result.world.days - 1)})
        assert resp.status_code == 200
    served = read_events(export_log(store, tmp_path / "export")).to_pylist()
    want, got = _keys(rows), _keys(served, ids)
    assert sum(want.values()) > 0
    assert got == want, f"missing {list((want - got).items())[:3]}; extra {list((got - want).items())[:3]}"
