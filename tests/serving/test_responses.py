"""Decision answers are serialised from plain values (serving.responses): exactly the bytes of their schema's model.

The server does not build a :class:`serving.schemas.DecisionOut` per decision; it serialises the same values with
the same serialiser. These tests hold it to that: every answer of a varied run (contacts and no contact, masked
options, the fallback, single decisions and batches) is byte for byte what the model gives for it, so the
OpenAPI schema's response model, and the first response an ``Idempotency-Key`` stored, stay what clients get.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from serving import schemas
from serving.app import create_app
from serving.responses import DecisionAnswer, answer_json, answer_model, batch_json
from tests.serving.conftest import AUTH, make_settings


def _register(client: TestClient, aid: int) -> None:
    body = {
        "arrangement_id": aid,
        "time": 0.0,
        "debt_eur": 600.0 + 100.0 * (aid % 20),
        "n_installments": 3 + aid % 10,
        "due_day": 1 + aid % 28,
        "prior_payments": aid % 7,
        "prior_late_share": (aid % 5) / 5,
        "prior_pay_dom": None if aid % 7 == 0 else 1 + aid % 28,
        # Opt-outs mask channels: answers with masked options and rules.
        "opted_out": ["sms", "email"][: aid % 3],
    }
    assert client.post("/v1/arrangements", json=body).status_code == 201


def _as_the_model_gives_it(text: str, model: type[schemas.BaseModel]) -> None:
    assert model.model_validate_json(text).model_dump_json() == text


def test_answers_are_the_bytes_of_their_models(tmp_path: Path) -> None:
    # The random policy: contacts and none, re-plans, propensities below one.
    app = create_app(make_settings(f"sqlite:///{tmp_path / 'store.db'}", policy="random"))
    ids = list(range(1, 25))
    with TestClient(app, headers=AUTH) as client:
        for aid in ids:
            _register(client, aid)
        planned = client.post(
            "/v1/decisions/batch",
            json={"decisions": [{"arrangement_id": a, "kind": "plan_created", "time": 0.0} for a in ids]},
        )
        assert planned.status_code == 200
        _as_the_model_gives_it(planned.text, schemas.BatchDecisionOut)
        answers = planned.json()["decisions"]
        for aid in ids:
            # "at" and "time" both: the timestamps of answers come from either.
            when: dict[str, Any] = {"time": 3.25} if aid % 2 else {"at": "2026-01-08T06:00:00Z"}
            r = client.post("/v1/decisions", json={"arrangement_id": aid, "kind": "pre_due", **when})
            assert r.status_code == 200, r.text
            _as_the_model_gives_it(r.text, schemas.DecisionOut)
            answers.append(r.json())
    contacts = [a for a in answers if a["message_id"] is not None]
    assert contacts and len(contacts) < len(answers), "the run needs answers with and without a contact"
    assert any(a["masked"] for a in answers), "the run needs masked options"


def _answer(at: dt.datetime, contact: bool) -> DecisionAnswer:
    action = schemas.Action(
        channel="email", send_slot="day+1 09:00", due_day=None, deferral_days=14, reduction=0.1, indices=[1, 0, 0, 2, 1]
    )
    masked = [schemas.MaskedOption(part="channel", option="sms", rules=["opt_out"])]
    return {
        "decision_id": 12,
        "arrangement_id": 7,
        "kind": "missed",
        "installment": 2,
        "time": 33.395833333333336,
        "at": at,
        "action": action.model_dump(mode="json"),
        "message_id": 3 if contact else None,
        "send_time": 34.375 if contact else None,
        "send_at": at + dt.timedelta(days=1) if contact else None,
        "masked_rules": ["opt_out"],
        "masked": [m.model_dump(mode="json") for m in masked],
        "policy": "static-dunning",
        "policy_version": "1",
        "propensity": 1e-07,
        "fallback": True,
    }


def test_an_answer_with_every_optional_value_serialises_as_its_model() -> None:
    at = dt.datetime(2026, 1, 4, 9, 30, 0, 123456, tzinfo=dt.UTC)
    answers = [_answer(at, contact=True), _answer(at, contact=False)]
    for answer in answers:
        model = schemas.DecisionOut.model_validate(answer)
        assert answer_json(answer) == model.model_dump_json()
        assert answer_model(answer) == model
    batch = batch_json(answers)
    assert batch == schemas.BatchDecisionOut(decisions=[answer_model(a) for a in answers]).model_dump_json()
    assert json.loads(batch)["decisions"][1]["send_at"] is None
