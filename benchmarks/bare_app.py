"""The reference of the server benchmark: a bare FastAPI app that returns a constant.

It answers the same routes the load generator hits on the regsim server (``POST /v1/decisions`` and
``POST /v1/decisions/batch``), parses the JSON body the same way FastAPI does for any route with a body, and
returns a constant: no authentication, no database, no policy. Its throughput under the same load generator,
the same uvicorn settings and the same core is what the regsim server's throughput is divided by.

Run it as ``uvicorn --factory benchmarks.bare_app:create_app`` (one worker).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

#: The constant answer; roughly the size of a real decision response.
DECISION: dict[str, Any] = {
    "decision_id": "00000000-0000-0000-0000-000000000000",
    "arrangement_id": "constant",
    "action": {"channel": "email", "send_slot": "morning"},
    "masked_by": {},
    "policy": {"name": "constant", "version": "0"},
    "propensity": 1.0,
}


def create_app() -> FastAPI:
    """The bare app (a factory, like ``serving.app``, so both start the same way under uvicorn)."""
    app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/v1/decisions")
    async def decide(body: dict[str, Any]) -> dict[str, Any]:
        return DECISION

    @app.post("/v1/decisions/batch")
    async def decide_batch(body: dict[str, Any]) -> dict[str, Any]:
        return {"decisions": [DECISION] * len(body.get("decisions", []))}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
