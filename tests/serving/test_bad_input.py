"""Bad input, authentication order, readiness and request metrics (SQLite and PostgreSQL, ``store_url``).

Every malformed body gets a 4xx naming what is wrong, the token is checked before the body is read, every
answer (5xx and 413 included) is counted under its route, and readiness follows the writer lease.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.lease import WriterLease
from tests.serving.conftest import AUTH, make_settings

PLAN = {"arrangement_id": 7, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}
POSTS = ("/v1/arrangements", "/v1/decisions", "/v1/decisions/batch", "/v1/events", "/v1/clock")


def _count(client: TestClient, route: str, status: int) -> float:
    text = client.get("/metrics", headers=AUTH).text
    pattern = rf'regsim_http_requests_total\{{method="POST",route="{re.escape(route)}",status="{status}"\}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def test_deeply_nested_json_is_a_400_on_every_post_and_is_counted(api: TestClient) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    for path in POSTS:
        before = _count(api, path, 400)
        r = api.post(path, content=nested, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert "nested too deeply" in r.json()["detail"]
        assert _count(api, path, 400) == before + 1


@pytest.mark.parametrize("path", POSTS)
def test_malformed_json_is_400_and_schema_errors_are_422(api: TestClient, path: str) -> None:
    r = api.post(path, content=b'{"arrangement_id": 7,', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"].startswith("body: not valid JSON"), r.text
    assert api.post(path, json={"unknown_field": 1}).status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"arrangement_id": True, "kind": "plan_created", "time": 0.0}, "arrangement_id"),
        ({"arrangement_id": "7", "kind": "plan_created", "time": 0.0}, "arrangement_id"),
        ({"arrangement_id": 7, "kind": "plan_created", "time": "0"}, "time"),
        ({"arrangement_id": 7, "kind": "plan_created", "time": True}, "time"),
        ({"arrangement_id": 7, "kind": "plan_created", "at": 1767225600}, "at"),
        ({"arrangement_id": 7, "kind": "plan_created", "at": "2026-01-01"}, "at"),
        ({"arrangement_id": 7, "kind": "plan_created", "time": None, "at": "2026-01-01T00:00:00Z"}, "time"),
        ({"arrangement_id": 7, "kind": "plan_created", "installment": "0", "time": 0.0}, "installment"),
    ],
)
def test_ids_and_times_are_strictly_typed(api: TestClient, body: dict[str, Any], field: str) -> None:
    assert api.post("/v1/arrangements", json=PLAN).status_code == 201
    r = api.post("/v1/decisions", json=body)
    assert r.status_code == 422, r.text
    assert any(e["msg"].startswith(field) for e in r.json()["detail"]), r.json()
    # ... and nothing was decided.
    assert api.get("/v1/arrangements/7").json()["last_decision"] is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_wrong_content_type_is_415_naming_it(api: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    for path in POSTS:
        r = api.post(path, content=b'{"time": 0.0}', headers=headers)
        assert r.status_code == 415, (path, r.status_code)
        assert "content-type" in r.json()["detail"] and "application/json" in r.json()["detail"]
        assert _count(api, path, 415) >= 1


@pytest.mark.parametrize("body", [b"{not json", b"[" * 50_000, b'{"arrangement_id": 7}', b""])
def test_authentication_comes_before_the_body(store_url: str, body: bytes) -> None:
    with TestClient(create_app(make_settings(store_url))) as client:
        for path in POSTS:
            for headers in ({"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {}):
                r = client.post(path, content=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
            assert _count(client, path, 401) == 3


def test_a_too_large_body_is_counted_under_its_route(store_url: str) -> None:
    with TestClient(create_app(make_settings(store_url, max_body_bytes=64)), headers=AUTH) as client:
        r = client.post("/v1/events", content=b"{" + b" " * 100 + b"}", headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert _count(client, "/v1/events", 413) == 1
        assert "unmatched" not in client.get("/metrics").text


def test_an_unexpected_error_is_a_500_counted_under_its_route(api: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.post("/v1/arrangements", json=PLAN).status_code == 201
    writer = api.app.state.regsim.writer  # type: ignore[attr-defined]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(writer, "write", broken)
    ask = {"arrangement_id": 7, "kind": "plan_created", "time": 0.0}
    # The same running app (no second lifespan), with errors answered as in production rather than raised.
    raw = TestClient(api.app, headers=AUTH, raise_server_exceptions=False)
    for content_type in ("application/json", "application/vnd.regsim+json"):  # the fast path, the framework
        r = raw.post("/v1/decisions", json=ask, headers={"Content-Type": content_type})
        assert r.status_code == 500
    assert _count(raw, "/v1/decisions", 500) == 2


def test_readiness_follows_the_lease_and_discloses_nothing_without_a_token(api: TestClient) -> None:
    assert api.get("/readyz", headers={"Authorization": ""}).json() == {"status": "ready"}
    full = api.get("/readyz").json()
    assert full["status"] == "ready" and full["policy"] == "static-dunning" and full["schema_revision"]
    # A newer server takes the store's lease: this one answers 503 to writes and is no longer ready.
    WriterLease(api.app.state.regsim.engine)  # type: ignore[attr-defined]
    assert api.post("/v1/arrangements", json=PLAN).status_code == 503
    r = api.get("/readyz")
    assert r.status_code == 503 and "lease" in r.json()["detail"]
    assert api.get("/readyz", headers={"Authorization": ""}).status_code == 503


# -- idempotency keys: hashed, purged after the retention period ---------------------------------------------
def test_idempotency_keys_are_stored_as_hashes_and_purged_after_retention(store_url: str) -> None:
    import datetime as dt

    import sqlalchemy as sa

    from serving import db
    from serving.idempotency import key_digest

    key = "debtor.name@example.org"
    ask = {"arrangement_id": 7, "kind": "plan_created", "time": 0.0}
    with TestClient(create_app(make_settings(store_url, idempotency_retention_hours=1.0)), headers=AUTH) as client:
        assert client.post("/v1/arrangements", json=PLAN).status_code == 201
        first = client.post("/v1/decisions", json=ask, headers={"Idempotency-Key": key})
        assert client.post("/v1/decisions", json=ask, headers={"Idempotency-Key": key}).json() == first.json()
        state = client.app.state.regsim  # type: ignore[attr-defined]
        with state.engine.connect() as conn:
            rows = conn.execute(sa.select(db.idempotency_keys)).mappings().all()
        assert [r["key_hash"] for r in rows] == [key_digest(key)]
        assert key not in str([dict(r) for r in rows])
        # Two hours later (the key's first use moved back), the next write purges it: the key is new again.
        with state.engine.begin() as conn:
            conn.execute(
                sa.update(db.idempotency_keys).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
            )
        state.writer._next_purge = 0.0
        again = client.post("/v1/decisions", json=ask, headers={"Idempotency-Key": "another-key"})
        assert again.status_code == 409  # plan already created: a new request, refused on its merits
        with state.engine.connect() as conn:
            hashes = {r[0] for r in conn.execute(sa.select(db.idempotency_keys.c.key_hash))}
        assert key_digest(key) not in hashes
        replay = client.post("/v1/decisions", json=ask, headers={"Idempotency-Key": key})
        assert replay.status_code == 409  # no longer a replay of the first answer


def test_the_migration_hashes_keys_stored_before_it(tmp_path: Any) -> None:
    import sqlalchemy as sa
    from alembic import command

    from serving import db
    from serving.idempotency import key_digest

    engine = db.make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with engine.begin() as conn:
            command.upgrade(db._alembic_config(conn), "0001")
            conn.execute(
                sa.text(
                    "INSERT INTO idempotency_keys VALUES ('k-1', 'POST', '/v1/clock', 'abc', 200, '{}', "
                    "'2026-12-01 10:00:00.000000')"
                )
            )
        assert db.upgrade_to_head(engine) == db.head_revision()
        with engine.connect() as conn:
            rows = conn.execute(sa.select(db.idempotency_keys.c.key_hash, db.idempotency_keys.c.request_hash)).all()
        assert [tuple(r) for r in rows] == [(key_digest("k-1"), "abc")]
    finally:
        engine.dispose()


def test_the_docs_page_is_public_and_serves_swagger_ui_itself(api: TestClient) -> None:
    page = api.get("/docs", headers={"Authorization": ""})
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text and "cdn" not in page.text
    script = api.get("/docs/assets/swagger-ui-bundle.js", headers={"Authorization": ""})
    assert script.status_code == 200 and len(script.content) > 100_000
    assert api.get("/openapi.json", headers={"Authorization": ""}).json()["openapi"].startswith("3.1")


def test_a_405_lists_every_method_its_path_answers(api: TestClient) -> None:
    """``/v1/cases`` is served by two routes (GET and POST): the ``Allow`` header names both, as the schema does."""
    paths = api.get("/openapi.json").json()["paths"]
    for path, method in [("/v1/cases", "delete"), ("/v1/arrangements/7", "post"), ("/v1/decisions", "put")]:
        r = api.request(method, path)
        assert r.status_code == 405, (path, r.status_code)
        template = path if path in paths else "/v1/arrangements/{arrangement_id}"
        assert r.headers["allow"].split(", ") == sorted(m.upper() for m in paths[template]), path
