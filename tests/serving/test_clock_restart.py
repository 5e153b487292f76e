"""Bookkeeping that ``POST /v1/clock`` stored is the state a restarted server reads back (SQLite and PostgreSQL).

The clock books installments falling due and missed after an arrangement's last reported event; nothing from
outside follows them. A server that rebuilds the arrangement from the store must start from that bookkeeping:
show the missed installment as overdue, and never derive (and store) it a second time at the next event.
"""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import AUTH, make_settings

PLAN = {"arrangement_id": 7, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}


def _stored(store_url: str) -> Counter[tuple[str, int]]:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT event, installment FROM events WHERE arrangement_id = 7"))
            return Counter((str(event), int(installment)) for event, installment in rows)
    finally:
        engine.dispose()


def test_a_restarted_server_starts_from_the_bookkeeping_the_clock_stored(store_url: str) -> None:
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as api:
        assert api.post("/v1/arrangements", json=PLAN).status_code == 201
        assert api.post("/v1/decisions", json={"arrangement_id": 7, "kind": "plan_created", "time": 0.0}).is_success
        # Installment 0 falls due on day 27 and is missed on day 28; the clock books both.
        tick = api.post("/v1/clock", json={"time": 40.0}).json()
        assert tick["events"] == {"installment_due": 1, "installment_missed": 1}
    with TestClient(create_app(make_settings(store_url)), headers=AUTH) as api:
        view = api.get("/v1/arrangements/7").json()
        assert [i["status"] for i in view["installments"]] == ["overdue", "open", "open"]
        decided = api.post(
            "/v1/decisions", json={"arrangement_id": 7, "kind": "missed", "installment": 0, "time": 41.0}
        )
        assert decided.status_code == 200, decided.text
        paid = api.post("/v1/events", json={"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": 42.5})
        assert paid.json()["installments_paid"] == [0]
    stored = _stored(store_url)
    assert stored[("installment_due", 0)] == 1 and stored[("installment_missed", 0)] == 1
