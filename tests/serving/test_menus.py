"""The self-service API: ``POST /v1/menus`` and ``POST /v1/choices`` (issue 18, item 4).

A reliable payer (four installments paid on time, the fifth overdue) is offered every option; each option's
choice is followed up through the ledger (a re-plan, a concession off the balance, a referral, a case for the
collectors) and confirmed. Every bad request is refused with the field and the allowed values named and leaves
the store as it was; a retry with an ``Idempotency-Key`` returns the first answer; the routes are authenticated,
in the OpenAPI schema with examples, and counted in ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from serving import db
from serving.app import create_app
from serving.menu_store import menus
from serving.settings import DEFAULT_POPULATION
from tests.serving.conftest import AUTH, make_settings

AID = 7
PLAN = {"arrangement_id": AID, "debt_eur": 600.0, "n_installments": 6, "due_day": 1, "time": 0.0}


def self_service_population(folder: Path, enabled: bool = True) -> Path:
    """The default world with self-service switched on (or off), as a population file."""
    data = yaml.safe_load(Path(DEFAULT_POPULATION).read_text(encoding="utf-8"))
    data["self_service"]["enabled"] = enabled
    path = folder / f"population-self-service-{'on' if enabled else 'off'}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def client_for(store: str, folder: Path, enabled: bool = True, **overrides: Any) -> TestClient:
    population = str(self_service_population(folder, enabled))
    values: dict[str, Any] = {"policy": "rule-based-menu", "population": population, **overrides}
    settings = make_settings(store, **values)
    return TestClient(create_app(settings), headers=AUTH)


def in_arrears(client: TestClient, aid: int = AID, paid: int = 4) -> float:
    """Register ``aid``, pay ``paid`` installments on time, let the next one be missed; the time after."""
    created = client.post("/v1/arrangements", json={**PLAN, "arrangement_id": aid})
    assert created.status_code == 201, created.text
    inst = created.json()["installments"]
    assert client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "plan_created", "time": 0.0}).is_success
    for j in range(paid):
        pay = {"type": "payment", "arrangement_id": aid, "amount_eur": 100.0, "time": inst[j]["due_time"] - 1.5}
        assert client.post("/v1/events", json=pay).status_code == 200
    t = float(inst[paid]["due_time"] + 8)
    assert client.post("/v1/clock", json={"time": t}).json()["events"].get("installment_missed") == 1
    return t + 0.25


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(f"sqlite:///{tmp_path / 'store.db'}", tmp_path) as client:
        yield client


def _events(store: str, aid: int = AID) -> list[dict[str, Any]]:
    engine = sa.create_engine(store)
    try:
        with engine.connect() as conn:
            stmt = sa.select(db.events).where(db.events.c.arrangement_id == aid).order_by(db.events.c.seq)
            return [dict(r._mapping) for r in conn.execute(stmt)]
    finally:
        engine.dispose()


def _menus(store: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(store)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(menus).order_by(menus.c.menu_id))]
    finally:
        engine.dispose()


def test_menu_shows_each_option_with_its_caps_and_is_logged_with_its_propensity(store_url: str, tmp_path: Path) -> None:
    with client_for(store_url, tmp_path) as api:
        t = in_arrears(api)
        menu = api.post("/v1/menus", json={"arrangement_id": AID, "time": t})
        assert menu.status_code == 200, menu.text
        m = menu.json()
    by = {o["option"]: o for o in m["options"]}
    assert [o["option"] for o in m["options"]] == ["deferral", "plan", "waiver", "discount", "counselling", "custom"]
    # A reliable payer (4 of 5 on time): the top tiers, 10 days and 10%, capped above by their rules.
    assert by["deferral"]["deferral_days"] == 10 and by["deferral"]["capped_by"] == ["menu_deferral_cap"]
    assert [c["label"] for c in by["deferral"]["capped"]] == ["14 days"]
    assert by["discount"]["discount"] == 0.1 and [c["label"] for c in by["discount"]["capped"]] == ["20%"]
    assert by["plan"]["n_installments"] == 12 and by["waiver"]["shown"]
    assert m["allowed_choices"] == ["close", "deferral", "plan", "waiver", "discount", "counselling", "custom"]
    assert (m["policy"], m["policy_version"], m["propensity"]) == ("rule-based-menu", "1", 1.0)
    assert m["masked_rules"] == ["menu_deferral_cap", "menu_discount_cap"]
    shown = [e for e in _events(store_url) if e["event"] == "menu_shown"]
    assert len(shown) == 1
    e = shown[0]
    assert e["decision_id"] == m["menu_id"] and e["propensity"] == 1.0 and e["policy"] == "rule-based-menu"
    assert (e["a_deferral"], e["a_reduction"], e["a_due_day"], e["a_channel"]) == (3, 3, 2, 7)
    assert e["masked_rules"] == "menu_deferral_cap,menu_discount_cap"


def test_a_late_payer_is_offered_less_and_told_which_rule_capped_it(api: TestClient) -> None:
    t = in_arrears(api, paid=0)
    m = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()
    by = {o["option"]: o for o in m["options"]}
    assert by["deferral"]["deferral_days"] == 3  # seeds/002: a frequent late payer at most three days
    assert not by["waiver"]["shown"] and by["waiver"]["capped_by"] == ["menu_waiver_rule"]
    assert not by["discount"]["shown"] and by["discount"]["capped_by"] == ["menu_discount_cap"]
    assert "waiver" not in m["allowed_choices"] and "discount" not in m["allowed_choices"]


# What each option does, as the ledger logs it: (option, its term, follow-up, events, status, confirmed).
CASES = [
    ("deferral", {"deferral_days": 10}, "deferral", ["menu_choice", "deferral"], "active", True),
    ("plan", {"n_installments": 12}, "new_plan", ["menu_choice", "new_plan"], "active", True),
    ("waiver", {}, "concession", ["menu_choice", "concession"], "active", True),
    ("discount", {"discount": 0.1}, "concession", ["menu_choice", "concession"], "active", True),
    ("counselling", {}, "referred", ["menu_choice", "referred", "message_cancelled"], "referred", False),
    ("custom", {}, "queued_for_collectors", ["menu_choice"], "active", True),
    ("close", {}, "none", ["menu_choice"], "active", False),
]


@pytest.mark.parametrize(("option", "terms", "follow_up", "events", "status", "confirmed"), CASES)
def test_each_choice_is_followed_up_through_the_ledger_and_confirmed(
    api: TestClient, option: str, terms: dict[str, Any], follow_up: str, events: list[str], status: str, confirmed: bool
) -> None:
    t = in_arrears(api)
    m = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()
    before = api.get(f"/v1/arrangements/{AID}").json()
    body = {"arrangement_id": AID, "menu_id": m["menu_id"], "option": option, "time": t + 0.01, "language": "en"}
    answer = api.post("/v1/choices", json={**body, **terms})
    assert answer.status_code == 200, answer.text
    out = answer.json()
    assert (out["follow_up"], out["events"], out["status"]) == (follow_up, events, status)
    assert (out["confirmation"] is not None) == confirmed
    balance = 200.0  # two installments of EUR 100 open
    if option == "discount":
        assert out["concession_eur"] == pytest.approx(0.1 * balance) and out["balance_eur"] == pytest.approx(180.0)
    elif option == "waiver":
        # The F8 scale's collection costs of EUR 200 (15%, at least EUR 40), capped at 15% of the balance.
        assert out["concession_eur"] == pytest.approx(30.0) and out["balance_eur"] == pytest.approx(170.0)
    else:
        assert out["concession_eur"] is None
    if option == "plan":
        assert len([i for i in out["installments"] if i["status"] != "paid"]) == 12
    if option == "deferral":
        old = [i["due_time"] for i in before["installments"] if i["status"] != "paid"]
        new = [i["due_time"] for i in out["installments"] if i["status"] != "paid"]
        assert [b - a for a, b in zip(old, new, strict=True)] == [10] * len(old)
    if confirmed:
        c = out["confirmation"]
        assert c["channel"] == "email" and c["send_time"] == pytest.approx(t + 0.01)
        assert c["text"].startswith("You ")
        # The confirmation is a message like any other: production reports its events under its id.
        sent = {"type": "message_sent", "arrangement_id": AID, "message_id": c["message_id"], "time": t + 0.02}
        assert api.post("/v1/events", json=sent).status_code == 200
    if option == "custom":
        # The case waits in the collectors' queue; no new menu meanwhile.
        again = api.post("/v1/menus", json={"arrangement_id": AID, "time": t + 0.05})
        assert again.status_code == 409 and "custom solution waiting for the collectors" in again.json()["detail"]


def test_the_confirmation_is_worded_in_dutch_by_default(api: TestClient) -> None:
    t = in_arrears(api)
    m = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()
    out = api.post(
        "/v1/choices", json={"arrangement_id": AID, "menu_id": m["menu_id"], "option": "deferral", "time": t}
    ).json()
    assert out["confirmation"]["text"].startswith("U heeft gekozen voor later betalen: 10 dagen uitstel.")


def _bad_requests(t: float, menu_id: int) -> list[tuple[str, str, dict[str, Any], int, str]]:
    """(name, path, body, status, a phrase of the answer) for each bad request on a menu shown at ``t``."""
    choice = {"arrangement_id": AID, "menu_id": menu_id, "time": t + 0.1}
    return [
        ("unknown option", "/v1/choices", {**choice, "option": "lottery"}, 422, "option"),
        (
            "term of another option",
            "/v1/choices",
            {**choice, "option": "plan", "deferral_days": 10},
            422,
            "deferral_days: only with option 'deferral'",
        ),
        (
            "term not offered",
            "/v1/choices",
            {**choice, "option": "deferral", "deferral_days": 14},
            422,
            f"deferral_days: menu {menu_id} offers 10; allowed: [10]",
        ),
        (
            "plan length not offered",
            "/v1/choices",
            {**choice, "option": "plan", "n_installments": 6},
            422,
            f"n_installments: menu {menu_id} offers 12; allowed: [12]",
        ),
        (
            "discount not offered",
            "/v1/choices",
            {**choice, "option": "discount", "discount": 0.2},
            422,
            f"discount: menu {menu_id} offers 0.1; allowed: [0.1]",
        ),
        ("unknown menu", "/v1/choices", {**choice, "menu_id": menu_id + 1000, "option": "close"}, 404, "menu_id"),
        (
            "another arrangement's menu",
            "/v1/choices",
            {**choice, "arrangement_id": 8, "option": "close"},
            404,
            "menu_id",
        ),
        ("before the menu", "/v1/choices", {**choice, "option": "close", "time": t - 0.1}, 409, "before menu"),
        ("no time", "/v1/choices", {"arrangement_id": AID, "menu_id": menu_id, "option": "close"}, 422, "time"),
        ("unknown field", "/v1/choices", {**choice, "option": "close", "tip": 5}, 422, "tip"),
        # Beyond the largest id (2**53 - 1): refused by the schema, not an overflow in the store (a 500, once).
        ("menu id too large", "/v1/choices", {**choice, "menu_id": 2**80, "option": "close"}, 422, "menu_id"),
        ("case's menu id too large", "/v1/cases", {**choice, "menu_id": 2**80}, 422, "menu_id"),
        ("a boolean as a link's id", "/v1/debtor-links", {"arrangement_id": False}, 422, "arrangement_id"),
        ("unregistered arrangement", "/v1/menus", {"arrangement_id": 99, "time": t + 0.1}, 404, "not registered"),
        ("menu before the latest event", "/v1/menus", {"arrangement_id": AID, "time": t - 1.0}, 409, "before"),
        ("no token", "/v1/menus", {"arrangement_id": AID, "time": t + 0.1}, 401, "bearer"),
    ]


def test_bad_requests_are_refused_naming_the_field_and_leave_the_store_unchanged(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with client_for(store, tmp_path) as api:
        t = in_arrears(api)
        in_arrears(api, aid=8)
        menu_id = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()["menu_id"]
        events, rows = _events(store), _menus(store)
        for name, path, body, status, phrase in _bad_requests(t, menu_id):
            headers = {"Authorization": ""} if status == 401 else None
            answer = api.post(path, json=body, headers=headers)
            assert answer.status_code == status, (name, answer.text)
            assert phrase in answer.text, (name, answer.text)
            assert _events(store) == events and _menus(store) == rows, name
        # A choice on the menu, then every way a menu can no longer be answered.
        ok = api.post("/v1/choices", json={"arrangement_id": AID, "menu_id": menu_id, "option": "close", "time": t})
        assert ok.status_code == 200
        events, rows = _events(store), _menus(store)
        twice = api.post("/v1/choices", json={"arrangement_id": AID, "menu_id": menu_id, "option": "plan", "time": t})
        assert twice.status_code == 409 and "answered already ('close'" in twice.json()["detail"]
        first = api.post("/v1/menus", json={"arrangement_id": 8, "time": t}).json()["menu_id"]
        # A new menu once the visit window (self_service.visit.min_days_between_visits, 7 days) has passed.
        second = api.post("/v1/menus", json={"arrangement_id": 8, "time": t + 7.0}).json()["menu_id"]
        late = api.post("/v1/choices", json={"arrangement_id": 8, "menu_id": first, "option": "close", "time": t + 7.1})
        assert late.status_code == 409 and f"replaced by a later menu of arrangement 8 (menu {second})" in late.text
        assert _events(store) == events
        # Counselling ends the arrangement: no choice or menu after it.
        gone = api.post(
            "/v1/choices", json={"arrangement_id": 8, "menu_id": second, "option": "counselling", "time": t + 7.2}
        )
        assert gone.json()["status"] == "referred"
        refused = api.post("/v1/menus", json={"arrangement_id": 8, "time": t + 7.3})
        assert refused.status_code == 409 and "referred" in refused.json()["detail"]


def test_a_choice_not_on_the_menu_names_the_allowed_options(api: TestClient) -> None:
    t = in_arrears(api, paid=0)
    menu_id = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()["menu_id"]
    answer = api.post("/v1/choices", json={"arrangement_id": AID, "menu_id": menu_id, "option": "discount", "time": t})
    assert answer.status_code == 422
    (issue,) = answer.json()["detail"]
    assert issue["loc"] == ["body", "option"]
    assert (
        issue["msg"] == f"option: 'discount' is not on menu {menu_id}; allowed: "
        "['close', 'deferral', 'plan', 'counselling', 'custom']"
    )


def test_a_choice_on_an_ended_arrangement_is_refused(api: TestClient) -> None:
    t = in_arrears(api)
    menu_id = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()["menu_id"]
    assert api.post("/v1/events", json={"type": "referred", "arrangement_id": AID, "time": t + 0.1}).is_success
    answer = api.post(
        "/v1/choices", json={"arrangement_id": AID, "menu_id": menu_id, "option": "plan", "time": t + 0.2}
    )
    assert answer.status_code == 409 and answer.json()["detail"].startswith(f"arrangement {AID} is referred")


def test_a_menu_needs_arrears(api: TestClient) -> None:
    assert api.post("/v1/arrangements", json=PLAN).status_code == 201
    assert api.post("/v1/decisions", json={"arrangement_id": AID, "kind": "plan_created", "time": 0.0}).is_success
    answer = api.post("/v1/menus", json={"arrangement_id": AID, "time": 5.0})
    assert answer.status_code == 409 and "no installment overdue" in answer.json()["detail"]


def test_retries_with_an_idempotency_key_return_the_first_answer(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with client_for(store, tmp_path) as api:
        t = in_arrears(api)
        key = {"Idempotency-Key": "menu-7-first"}
        first = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}, headers=key)
        again = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}, headers=key)
        assert (again.status_code, again.content) == (first.status_code, first.content)
        assert len(_menus(store)) == 1
        body = {"arrangement_id": AID, "menu_id": first.json()["menu_id"], "option": "discount", "time": t}
        key = {"Idempotency-Key": "choice-7-first"}
        chosen = api.post("/v1/choices", json=body, headers=key)
        retried = api.post("/v1/choices", json=body, headers=key)
        assert chosen.status_code == 200 and retried.content == chosen.content
        assert [e["event"] for e in _events(store)].count("concession") == 1
        other = api.post("/v1/choices", json={**body, "option": "close"}, headers=key)
        assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]


def test_self_service_off_in_the_world_config_is_a_clear_409(tmp_path: Path) -> None:
    with client_for(f"sqlite:///{tmp_path / 'store.db'}", tmp_path, enabled=False) as api:
        assert api.post("/v1/arrangements", json=PLAN).status_code == 201
        for path, body in (
            ("/v1/menus", {"arrangement_id": AID, "time": 1.0}),
            ("/v1/choices", {"arrangement_id": AID, "menu_id": 1, "option": "close", "time": 1.0}),
        ):
            answer = api.post(path, json=body)
            assert answer.status_code == 409
            assert answer.json()["detail"].startswith("self-service is not enabled in this server's world config")


def test_routes_are_in_the_schema_with_examples_and_counted_in_metrics(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    for path, model in (("/v1/menus", "MenuIn"), ("/v1/choices", "ChoiceIn"), ("/v1/debtor-links", "DebtorLinkIn")):
        post = schema["paths"][path]["post"]
        assert post["security"], path
        assert schema["components"]["schemas"][model]["examples"], model
    t = in_arrears(api)
    api.post("/v1/menus", json={"arrangement_id": AID, "time": t})
    api.post("/v1/choices", json={"arrangement_id": AID, "menu_id": 10**6, "option": "close", "time": t})
    text = api.get("/metrics").text
    assert 'method="POST",route="/v1/menus",status="200"' in text
    assert 'method="POST",route="/v1/choices",status="404"' in text


def test_a_learning_menu_policy_chooses_the_menu_and_its_propensity_is_logged(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with client_for(store, tmp_path, policy="menu-ts") as api:
        t = in_arrears(api)
        m = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()
    assert (m["policy"], m["policy_version"]) == ("menu-ts", "1")
    assert 0.0 < m["propensity"] < 1.0  # Thompson sampling over six slots: not a sure menu
    for o in m["options"]:
        assert all(c["level"] != o["level"] for c in o["capped"]), o  # nothing the rules forbid is shown
    (shown,) = [e for e in _events(store) if e["event"] == "menu_shown"]
    assert shown["propensity"] == m["propensity"] and shown["policy"] == "menu-ts"


def test_migration_0005_makes_the_menus_table_the_code_reads_and_takes_it_back(store_url: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(db.normalise_url(store_url))
    try:
        assert db.upgrade_to_head(engine) == db.head_revision()
        with engine.connect() as conn:
            only_menus = sa.MetaData()
            menus.to_metadata(only_menus)
            diff = compare_metadata(
                MigrationContext.configure(
                    conn, opts={"include_name": lambda name, kind, _: kind != "table" or name == "menus"}
                ),
                only_menus,
            )
        assert diff == [], diff
        with engine.begin() as conn:
            command.downgrade(db._alembic_config(conn), "0004")
        assert "menus" not in sa.inspect(engine).get_table_names()
        assert db.upgrade_to_head(engine) == db.head_revision() and "menus" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_a_custom_case_waits_in_the_collectors_queue_until_staff_resolve_it(api: TestClient) -> None:
    t = in_arrears(api)
    menu_id = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()["menu_id"]
    assert api.get("/v1/cases").json() == {"cases": []}
    body = {"arrangement_id": AID, "menu_id": menu_id, "option": "custom", "time": t}
    assert api.post("/v1/choices", json=body).json()["follow_up"] == "queued_for_collectors"
    (case,) = api.get("/v1/cases").json()["cases"]
    assert (case["menu_id"], case["arrangement_id"], case["time"]) == (menu_id, AID, t)
    resolve = {"arrangement_id": AID, "menu_id": menu_id, "time": t + 2.0}
    too_long = api.post("/v1/cases", json={**resolve, "n_installments": 500})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "n_installments"]
    done = api.post("/v1/cases", json=resolve)
    assert done.status_code == 200, done.text
    out = done.json()
    # The world's staff terms (self_service.custom) and a collector call's cost (channels.collector).
    assert (out["n_installments"], out["deferral_days"], out["cost_eur"]) == (12, 14, 9.0)
    assert out["events"] == ["case_resolved", "new_plan", "deferral"]
    assert len([i for i in out["installments"] if i["status"] != "paid"]) == 12
    assert api.get("/v1/cases").json() == {"cases": []}
    again = api.post("/v1/cases", json=resolve)
    assert again.status_code == 409 and "resolved already" in again.json()["detail"]
    # A new menu is offered again once the case is resolved (when in arrears).
    other = api.post("/v1/menus", json={"arrangement_id": AID, "time": t + 2.5})
    assert other.status_code in (200, 409) and "custom solution waiting" not in other.text
    not_custom = api.post("/v1/cases", json={**resolve, "menu_id": menu_id + 1000})
    assert not_custom.status_code == 404 and "menu_id" in not_custom.text


def test_a_menu_shown_before_a_restart_is_answered_after_it_from_the_store(tmp_path: Path) -> None:
    """The menu and the arrangement's state come back from the store (the replay cache is empty after a restart)."""
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with client_for(store, tmp_path) as api:
        t = in_arrears(api)
        menu_id = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()["menu_id"]
    with client_for(store, tmp_path) as api:
        body = {"arrangement_id": AID, "menu_id": menu_id, "option": "waiver", "time": t + 0.5}
        out = api.post("/v1/choices", json=body).json()
        assert out["events"] == ["menu_choice", "concession"] and out["balance_eur"] == pytest.approx(170.0)
        again = api.post("/v1/choices", json=body)
        assert again.status_code == 409
    with client_for(store, tmp_path) as api:  # and the waiver, replayed from the log, holds after another restart
        assert api.get(f"/v1/arrangements/{AID}").json()["balance_eur"] == pytest.approx(170.0)


def test_a_reload_shows_the_standing_menu_until_the_visit_window_has_passed(tmp_path: Path) -> None:
    """As the world spaces a debtor's visits, an unanswered menu stands for min_days_between_visits (7 days).

    ``menu-ts`` draws its menu at random, so a redraw on a reload would show other options (and log another
    menu); within the window the same menu comes back, nothing logged; after it, or once answered, a new one.
    """
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with client_for(store, tmp_path, policy="menu-ts") as api:
        t = in_arrears(api)
        first = api.post("/v1/menus", json={"arrangement_id": AID, "time": t}).json()
        assert first["standing"] is False and first["policy"] == "menu-ts"
        for later in (t, t + 0.5, t + 6.9):
            again = api.post("/v1/menus", json={"arrangement_id": AID, "time": later})
            assert again.status_code == 200, again.text
            assert again.json()["standing"] is True and {**again.json(), "standing": False} == first
        shown = [e for e in _events(store) if e["event"] == "menu_shown"]
        assert len(shown) == 1 and len(_menus(store)) == 1
        # The window has passed: a new menu, which supersedes the unanswered one.
        after = api.post("/v1/menus", json={"arrangement_id": AID, "time": t + 7.0}).json()
        assert after["standing"] is False and after["menu_id"] != first["menu_id"]
        assert [m["state"] for m in _menus(store)] == ["superseded", "open"]
        # Answered: the next request draws a new menu at once.
        body = {"arrangement_id": AID, "menu_id": after["menu_id"], "option": "close", "time": t + 7.0}
        assert api.post("/v1/choices", json=body).status_code == 200
        answered = api.post("/v1/menus", json={"arrangement_id": AID, "time": t + 7.1}).json()
        assert answered["standing"] is False and answered["menu_id"] not in (first["menu_id"], after["menu_id"])
        assert [e["event"] for e in _events(store)].count("menu_shown") == 3
