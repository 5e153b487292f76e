"""Property-based fuzzing of the server's OpenAPI schema with schemathesis.

For every operation of ``/openapi.json``, schemathesis generates requests from the schema (valid ones and,
in the negative mode, invalid ones), sends them to the app in-process (ASGI, the app's lifespan running once)
with the bearer token, and checks that:

* no answer is a 5xx (``not_a_server_error``);
* every status code is one the operation documents (``status_code_conformance``);
* every body and content type match the documented response schema (``response_schema_conformance``,
  ``content_type_conformance``, ``response_headers_conformance``);
* a schema-valid request is never refused as invalid, a schema-invalid one never accepted
  (``positive_data_acceptance``, ``negative_data_rejection``), and the checks of auth, methods and resources
  hold (``ignored_auth``, ``missing_required_header``, ``unsupported_method``, ``use_after_free``,
  ``ensure_resource_availability``). The phases and the stateful run of the schemathesis command line are
  ``tests/serving/test_schemathesis_run.py``.

Random arrangement ids would nearly all be unknown (404), so a few arrangements are registered first (at the
ids Hypothesis favours: 0, 1, small numbers and the largest allowed id), some with their plan-creation
decision taken and a reminder planned, and about half of the valid requests are pointed at them: fuzzed
decisions, events and overviews then reach real state (200s, 404s and 409s), not only the validation layer.
The app runs the online LinUCB bandit (the policy with the most server-side state) on SQLite and on PostgreSQL.

A second app has **self-service on** in its world config (``self_service.enabled: true``, the ``menu-ts``
policy, SQLite) and arrangements in arrears, some with a custom case waiting for the collectors; the
self-service operations (menus, choices, cases, debtor links) are fuzzed on it, half of the valid requests
steered at those arrangements on a clock that only moves forward, a choice at the arrangement's latest menu with
an option it allows, a case at a queued one, so that their success paths (200) are fuzzed too, not only their
409 (a test checks each answered 200 at least once).

Examples are bounded and derandomized (the same requests every run); the heavier run is ``statistical``.
Schemathesis' own pytest integration (``schemathesis.pytest.from_fixture``) fails under pytest 9
(``'Function' object has no attribute '_nodeid'``), so each operation's Hypothesis strategy
(``APIOperation.as_strategy``) is driven with ``@given`` here; a test checks that the list of fuzzed operations is
exactly the schema's, so a new route cannot escape the fuzz.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from serving.app import create_app
from serving.menu_store import latest_menu, queued_cases
from serving.schemas import MAX_ID
from serving.schemas_menu import MenuOut
from tests.serving.conftest import AUTH, make_settings
from tests.serving.postgres import PostgresServer
from tests.serving.test_menus import self_service_population

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    use_after_free,
    ensure_resource_availability,
    ignored_auth,
]

#: Every operation of the API (a test checks this is exactly the schema's list).
OPERATIONS = (
    ("POST", "/v1/arrangements"),
    ("GET", "/v1/arrangements/{arrangement_id}"),
    ("POST", "/v1/decisions"),
    ("POST", "/v1/decisions/batch"),
    ("POST", "/v1/events"),
    ("POST", "/v1/clock"),
    ("POST", "/v1/menus"),
    ("POST", "/v1/choices"),
    ("POST", "/v1/cases"),
    ("GET", "/v1/cases"),
    ("POST", "/v1/debtor-links"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
)

#: Operations that take input (parameters or a body): the only ones an invalid request can be made for.
WITH_INPUT = tuple(op for op in OPERATIONS if op[0] == "POST" or "{" in op[1])
#: (method, path, mode) of every fuzz run: valid requests everywhere, invalid ones where there is input.
RUNS = [(*op, GenerationMode.POSITIVE) for op in OPERATIONS] + [(*op, GenerationMode.NEGATIVE) for op in WITH_INPUT]
RUN_IDS = [f"{m} {p} {mode}" for m, p, mode in RUNS]

#: Ids registered before fuzzing; the first ones also get their plan-creation decision (active arrangements).
SEEDED_IDS = (0, 1, 2, 3, 4, 5, 10, MAX_ID)
ACTIVE_IDS = (0, 1, 2, 3, MAX_ID)

_DATABASES = itertools.count()


def _seed(schema: Any) -> None:
    """Register arrangements and plan their first reminders through the API itself."""
    register = schema["/v1/arrangements"]["POST"]
    batch = schema["/v1/decisions/batch"]["POST"]
    for aid in SEEDED_IDS:
        body = {
            "arrangement_id": aid,
            "time": 0.0,
            "debt_eur": 1200.0,
            "n_installments": 6,
            "due_day": 1 + aid % 28,
            "prior_payments": 3,
            "prior_late_share": 0.25,
            "prior_pay_dom": 5,
            "opted_out": ["sms"] if aid % 2 else [],
        }
        response = register.Case(body=body).call(headers=AUTH)
        assert response.status_code == 201, response.text
    decisions = [{"arrangement_id": aid, "kind": "plan_created", "time": 0.0} for aid in ACTIVE_IDS]
    response = batch.Case(body={"decisions": decisions}).call(headers=AUTH)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, linucb_artifact: Any
) -> Iterator[Any]:
    """The app's OpenAPI schema, loaded over ASGI with the token; the app started (once per store) and seeded."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database(f"regsim_fuzz_{next(_DATABASES)}")
    app = create_app(make_settings(url, policy=str(linucb_artifact)))
    # from_asgi starts the app's lifespan, which schemathesis keeps for every later call to this app.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    try:
        _seed(schema)
        yield schema
    finally:
        # Runs the lifespan's shutdown (the engine is disposed), so that the database can be dropped.
        asgi.shutdown_lifespans()


_SETTINGS: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


def _steer(item: Any, data: st.DataObject) -> None:
    """Point a generated (valid) request body at seeded state, half of the time, at a time near the start.

    A schema cannot say which ids exist, and random times are mostly centuries away, so unsteered valid
    requests would nearly all end in 404 or 409 and seldom reach the decision code.
    """
    if not isinstance(item, dict):
        return
    if "arrangement_id" in item and data.draw(st.booleans(), label="seeded id"):
        item["arrangement_id"] = data.draw(st.sampled_from(SEEDED_IDS), label="arrangement_id")
        if "time" in item or "at" in item:
            item.pop("at", None)
            item["time"] = data.draw(st.floats(0.0, 400.0), label="time")


def _fuzz(schema: Any, method: str, path: str, mode: GenerationMode, max_examples: int) -> None:
    operation = schema[path][method]
    # The token is fixed: a fuzzed Authorization header would only ever exercise the 401 path.
    strategy = operation.as_strategy(mode, headers=dict(AUTH))

    @settings(max_examples=max_examples, **_SETTINGS)
    @given(case=strategy, data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        if mode.is_positive:
            if case.path_parameters and data.draw(st.booleans(), label="seeded path id"):
                case.path_parameters["arrangement_id"] = data.draw(st.sampled_from(SEEDED_IDS))
            _steer(case.body, data)
            if isinstance(case.body, dict):
                for item in case.body.get("decisions", []):
                    _steer(item, data)
        case.call_and_validate(headers=dict(AUTH), checks=CHECKS)

    run()


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=RUN_IDS)
def test_every_operation_answers_within_its_schema(
    fuzz_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(fuzz_schema, method, path, mode, max_examples=12)


@pytest.mark.statistical
@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=RUN_IDS)
def test_every_operation_answers_within_its_schema_many_examples(
    fuzz_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(fuzz_schema, method, path, mode, max_examples=300)


def test_every_route_is_fuzzed_and_documents_its_errors(fuzz_schema: Any) -> None:
    """The fuzz covers the whole API, and every POST documents the error statuses it can return."""
    paths = fuzz_schema.raw_schema["paths"]
    in_schema = {(method.upper(), path) for path, item in paths.items() for method in item if method != "parameters"}
    assert in_schema == set(OPERATIONS)
    for method, path in OPERATIONS:
        operation = paths[path][method.lower()]
        has_input = "requestBody" in operation or any(p["in"] != "header" for p in operation.get("parameters", []))
        assert has_input == ((method, path) in WITH_INPUT), f"{method} {path}: update WITH_INPUT"
    for method, path in OPERATIONS:
        if method == "POST":
            documented = set(paths[path]["post"]["responses"])
            assert {"401", "409", "413", "422"} <= documented, f"POST {path} documents only {sorted(documented)}"


# ----------------------------------------------------------------------------------------------------------
# Self-service on: the menus, choices and cases routes on arrangements in arrears
# ----------------------------------------------------------------------------------------------------------
#: The self-service operations, fuzzed on the app with self-service on.
MENU_OPERATIONS = (
    ("POST", "/v1/menus"),
    ("POST", "/v1/choices"),
    ("POST", "/v1/cases"),
    ("GET", "/v1/cases"),
    ("POST", "/v1/debtor-links"),
)
MENU_RUNS = [(*op, GenerationMode.POSITIVE) for op in MENU_OPERATIONS] + [
    (*op, GenerationMode.NEGATIVE) for op in MENU_OPERATIONS if op in WITH_INPUT
]
MENU_RUN_IDS = [f"{m} {p} {mode}" for m, p, mode in MENU_RUNS]
#: Arrangements in arrears (menus and choices), and those with a custom case queued (cases).
ARREARS_IDS = tuple(range(700, 708))
CASE_IDS = tuple(range(720, 726))


class _Clock:
    """Request times that only move forward (a steered request is never before the arrangement's present)."""

    def __init__(self, start: float) -> None:
        self.t = start

    def next(self) -> float:
        self.t += 0.05
        return round(self.t, 6)


class MenuFuzz:
    """The schema of the app with self-service on, its engine, the clock and the statuses each operation answered."""

    def __init__(self, schema: Any, engine: Any, start: float) -> None:
        self.schema = schema
        self.engine = engine
        self.clock = _Clock(start)
        self.statuses: collections.defaultdict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(
            collections.Counter
        )


def _seed_menus(schema: Any) -> float:
    """Arrangements in arrears (a menu shown), and others with a custom case queued; the time after."""
    post = {path: schema[path]["POST"] for path in ("/v1/arrangements", "/v1/decisions", "/v1/clock", "/v1/menus")}
    choose = schema["/v1/choices"]["POST"]
    due = 0.0
    for aid in ARREARS_IDS + CASE_IDS:
        body: dict[str, Any] = {
            "arrangement_id": aid,
            "time": 0.0,
            "debt_eur": 600.0,
            "n_installments": 6,
            "due_day": 1,
        }
        created = post["/v1/arrangements"].Case(body=body).call(headers=AUTH)
        assert created.status_code == 201, created.text
        due = float(created.json()["installments"][0]["due_time"])
        decided = {"arrangement_id": aid, "kind": "plan_created", "time": 0.0}
        assert post["/v1/decisions"].Case(body=decided).call(headers=AUTH).status_code == 200
    t = due + 8.25  # the first installment missed
    assert post["/v1/clock"].Case(body={"time": t}).call(headers=AUTH).status_code == 200
    for aid in CASE_IDS:
        for _ in range(20):  # menu-ts shows the custom solution on most menus; an answered menu draws a new one
            menu = post["/v1/menus"].Case(body={"arrangement_id": aid, "time": t}).call(headers=AUTH)
            assert menu.status_code == 200, menu.text
            m = menu.json()
            option = "custom" if "custom" in m["allowed_choices"] else "close"
            body = {"arrangement_id": aid, "menu_id": m["menu_id"], "option": option, "time": t}
            assert choose.Case(body=body).call(headers=AUTH).status_code == 200
            if option == "custom":
                break
        else:
            raise AssertionError(f"no custom solution offered to arrangement {aid}")
    return t


@pytest.fixture(scope="module")
def menu_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MenuFuzz]:
    """The app with self-service on (SQLite, ``menu-ts``, debtor links on), seeded with arrangements in arrears
    and queued cases."""
    folder: Path = tmp_path_factory.mktemp("fuzz-menus")
    settings = make_settings(
        f"sqlite:///{folder / 'store.db'}",
        policy="menu-ts",
        population=str(self_service_population(folder)),
        debtor_link_secret="a-debtor-link-secret-of-at-least-32-chars",
    )
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    try:
        start = _seed_menus(schema)
        yield MenuFuzz(schema, app.state.regsim.engine, start)
    finally:
        asgi.shutdown_lifespans()


def _steer_menu(fuzz: MenuFuzz, path: str, item: Any, data: st.DataObject) -> None:
    """Point a valid body at a seeded arrangement, at the clock's time, half of the time.

    A choice goes to the arrangement's latest menu with an option it allows (no term: a term given must be the
    offered one, which the fuzz cannot know); a case to a queued custom case, on the world's terms.

    Every draw is made whatever the store holds, and none depends on it (the option is an index into the menu's
    allowed choices): the store changes between test cases, and hypothesis refuses a strategy whose draws follow
    external state (``FlakyStrategyDefinition`` when it replays a case after earlier ones answered menus).
    """
    if not isinstance(item, dict) or "arrangement_id" not in item or not data.draw(st.booleans(), label="seeded"):
        return
    if "time" in item or "at" in item:
        item.pop("at", None)
        item["time"] = fuzz.clock.next()
    ids = CASE_IDS if path == "/v1/cases" else ARREARS_IDS
    aid = data.draw(st.sampled_from(ids), label="arrangement_id")
    item["arrangement_id"] = aid
    pick = data.draw(st.integers(0, 15), label="option index")
    with fuzz.engine.connect() as conn:
        if path == "/v1/choices":
            m = latest_menu(conn, aid)
            if m is not None:
                item["menu_id"] = m.menu_id
                allowed = MenuOut.model_validate_json(m.menu_json).allowed_choices
                item["option"] = allowed[pick % len(allowed)]
                for term in ("deferral_days", "n_installments", "discount"):
                    item.pop(term, None)
        elif path == "/v1/cases":
            waiting = queued_cases(conn, aid)
            if waiting:
                item["menu_id"] = waiting[0].menu_id
                item.pop("n_installments", None)  # the plan length cap depends on the arrangement


def _fuzz_menus(fuzz: MenuFuzz, method: str, path: str, mode: GenerationMode, max_examples: int) -> None:
    strategy = fuzz.schema[path][method].as_strategy(mode, headers=dict(AUTH))

    @settings(max_examples=max_examples, **_SETTINGS)
    @given(case=strategy, data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        if mode.is_positive:
            _steer_menu(fuzz, path, case.body, data)
        response = case.call_and_validate(headers=dict(AUTH), checks=CHECKS)
        fuzz.statuses[(method, path)][response.status_code] += 1

    run()


@pytest.mark.parametrize(("method", "path", "mode"), MENU_RUNS, ids=MENU_RUN_IDS)
def test_self_service_operations_answer_within_their_schema_with_self_service_on(
    menu_fuzz: MenuFuzz, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz_menus(menu_fuzz, method, path, mode, max_examples=12)
    if mode.is_positive and method == "POST":
        # The success path was fuzzed, not only the refusals.
        assert menu_fuzz.statuses[(method, path)][200] >= 1, dict(menu_fuzz.statuses[(method, path)])


@pytest.mark.statistical
@pytest.mark.parametrize(("method", "path", "mode"), MENU_RUNS, ids=MENU_RUN_IDS)
def test_self_service_operations_answer_within_their_schema_with_self_service_on_many_examples(
    menu_fuzz: MenuFuzz, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz_menus(menu_fuzz, method, path, mode, max_examples=300)
