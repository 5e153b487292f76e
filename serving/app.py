"""The FastAPI application: ``create_app(settings)`` builds it; everything it needs is built in its lifespan.

Run for real with uvicorn (one worker)::

    REGSIM_POLICY=runs/bandit/policy REGSIM_STORE=sqlite:///regsim.db REGSIM_TOKENS=change-me-please \\
        uvicorn --factory serving.app:app_from_env --workers 1

Routes (all under bearer-token auth, checked before the body is read, except ``/healthz``, ``/readyz``, ``/docs``
and ``/openapi.json``): ``POST /v1/arrangements``,
``GET /v1/arrangements/{arrangement_id}``, ``POST /v1/decisions``, ``POST /v1/decisions/batch``,
``POST /v1/events``, ``POST /v1/clock``, ``GET /metrics``, ``GET /docs``, ``GET /openapi.json``; self-service
(:mod:`serving.menus_api`): ``POST /v1/menus``, ``POST /v1/choices``, ``GET``/``POST /v1/cases``,
``POST /v1/debtor-links``, and the debtor's
page under ``/self-service`` (:mod:`serving.pages.debtor`, reached by a signed link, no token).

Writes go through one writer (:mod:`serving.writer`): requests that arrive together share one transaction
(group commit), and each response is sent only after the commit of its transaction returned, so an
acknowledged decision is in the store. Replayed state is kept in a write-through cache (:mod:`serving.cache`);
one server process writes a store (:mod:`serving.lease`: a newer process takes over, the older one answers
503).
"""

from __future__ import annotations

import gc
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import agents
from regsim.config import load_world_config
from regsim.replay import LogReplay
from serving import db, schemas
from serving.auth import require_token
from serving.cache import ReplayCache
from serving.errors import HANDLED, error_response
from serving.fastpath import DecisionFastPath, replay_body
from serving.gate import ApiGate, bearer_token_ok
from serving.lease import WriterLease
from serving.menu_service import MenuService
from serving.menus_api import build_menus_router
from serving.metrics import Metrics, RequestRecorder
from serving.online import OnlineLearner, is_online
from serving.openapi import refine as refine_openapi
from serving.pages import build_pages_router
from serving.pages.debtor import build_debtor_router
from serving.policies import PolicyRunner, load
from serving.service import DecisionService
from serving.settings import ServerSettings
from serving.writer import OpKind, Writer

__all__ = ["ServerApp", "app_from_env", "create_app"]

log = logging.getLogger("regsim.serving")

#: The cyclic garbage collector's thresholds while the server runs (generation 0, 1, 2; see the lifespan).
GC_THRESHOLDS = (50_000, 20, 20)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorOut, "description": "The body is not parseable JSON (or nested too deeply)."},
    401: {"model": schemas.ErrorOut, "description": "Missing or invalid bearer token."},
    404: {"model": schemas.ErrorOut, "description": "Unknown arrangement or message."},
    409: {
        "model": schemas.ErrorOut,
        "description": "Conflicts with the arrangement's state, another item of the batch or an Idempotency-Key.",
    },
    413: {"model": schemas.ErrorOut, "description": "Request body larger than REGSIM_MAX_BODY_BYTES."},
    415: {"model": schemas.ErrorOut, "description": "The body is not declared as JSON (Content-Type)."},
    422: {
        "model": schemas.ValidationErrorOut,
        "description": "Parseable JSON that breaks the schema or the world's rules; each message names the field.",
    },
    503: {"model": schemas.ErrorOut, "description": "Another server process has taken over the store."},
}
_READ_ERRORS: dict[int | str, dict[str, Any]] = {k: v for k, v in _ERRORS.items() if k in (401, 404)}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes the POST safe to retry: a replay with the same key and body returns the first response.",
    ),
]


# ----------------------------------------------------------------------------------------------------------
# Middleware (pure ASGI: no per-request task overhead)
# ----------------------------------------------------------------------------------------------------------
class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413 (by Content-Length, or while reading)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _too_large(self, send: Send, size: str) -> None:
        body = json.dumps(
            {"detail": f"request body of {size} bytes exceeds the limit of {self.limit} bytes (REGSIM_MAX_BODY_BYTES)"}
        ).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    if int(value) > self.limit:
                        await self._too_large(send, value.decode())
                        return
                except ValueError:
                    break
                # Within the limit: the server reads exactly Content-Length bytes, no need to count them.
                await self.app(scope, receive, send)
                return
        # Read the body up to the limit (a chunked body has no Content-Length), then hand it on.
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send, f"more than {self.limit}")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay_body(b"".join(chunks), receive), send)


class RequestMetrics:
    """Count requests and time them, by route template (never by raw path: ids would explode the labels).

    Every answer is counted, the 5xx of an unexpected error included. One given before routing (401 or 415 of
    the gate, 413 of the body limit) is counted under the template of the route the path would have reached,
    found by matching the app's routes; only a path no route matches is ``unmatched``.
    """

    def __init__(self, app: ASGIApp, recorder: RequestRecorder, templates: Callable[[], Sequence[str]]) -> None:
        self.app, self.recorder, self.templates = app, recorder, templates
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and getattr(route, "path", None):
            return str(route.path)
        if self._compiled is None:  # the app's routes are all known once it answers
            self._compiled = [(compile_path(t)[0], t) for t in self.templates()]
        for pattern, template in self._compiled:
            if pattern.match(scope["path"]):
                return template
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            self.recorder.record(scope["method"], self._template(scope), status, time.perf_counter() - started)


class ServerApp(FastAPI):
    """The FastAPI app with :class:`serving.fastpath.DecisionFastPath` in front of its whole middleware stack.

    The fast path answers the common ``POST /v1/decisions`` itself (the framework's layers cost as much as the
    fast path's own work) and hands everything else to the framework unchanged.
    """

    def __init__(self, settings: ServerSettings, recorder: RequestRecorder, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front = DecisionFastPath(
            self._framework,
            tokens=settings.tokens,
            writer=lambda: getattr(getattr(self.state, "regsim", None), "writer", None),
            max_body_bytes=settings.max_body_bytes,
            recorder=recorder,
        )

    async def _framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.front(scope, receive, send)


# ----------------------------------------------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------------------------------------------
class _State:
    """What the lifespan builds."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.config = load_world_config(settings.population)
        rules_version = self.config.rules.version
        self.engine = db.make_engine(settings.store)
        self.revision = db.upgrade_to_head(self.engine)
        active = load(settings.policy, rules_version)
        fallback = agents.make(settings.fallback_policy)
        shadow = load(settings.shadow_policy, rules_version).policy if settings.shadow_policy else None
        space_rules = LogReplay(self.config, [], 1).rules
        self.metrics = Metrics()
        self.runner = PolicyRunner(active.policy, fallback, shadow, space_rules, settings.decision_budget_ms / 1000.0)
        self.online: OnlineLearner | None = None
        if is_online(active.policy):
            self.online = OnlineLearner(active.policy, active.origin, self.config, self.config.simulation.start_date)
            with self.engine.connect() as conn:
                restored = self.online.restore(conn)
            log.info("online policy %s: state %s", active.policy.name, "restored" if restored else "from its artifact")
        self.service = DecisionService(self.config, self.runner, self.metrics, self.online, settings.max_batch)
        self.menus = MenuService(self.service)
        self.cache = ReplayCache(self.config)
        self.lease = WriterLease(self.engine)
        self.writer = Writer(
            self.engine,
            self.service,
            self.cache,
            self.lease,
            self.metrics,
            linger_rounds=settings.group_linger_rounds,
            linger_max_s=settings.group_linger_max_ms / 1000.0,
            idempotency_retention_s=settings.idempotency_retention_hours * 3600.0,
        )

    def close(self) -> None:
        self.runner.close()
        self.engine.dispose()


def _state(request: Request) -> _State:
    state: _State = request.app.state.regsim
    return state


async def _write(request: Request, kind: OpKind, key: str | None, body: BaseModel) -> Response:
    """Queue a POST's effect for the writer (with its idempotency key); answer once its group has committed."""
    outcome = await _state(request).writer.write(kind, body, key, request.method, request.scope["path"])
    # The transaction has committed here: only now is the answer sent.
    return Response(outcome.body, outcome.status_code, media_type="application/json")


def _build_router() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @router.post(
        "/arrangements",
        response_model=schemas.ArrangementOut,
        status_code=201,
        responses={200: {"model": schemas.ArrangementOut, "description": "Already registered (updated)."}, **_ERRORS},
        summary="Register an arrangement or update its opt-outs",
    )
    async def post_arrangement(
        request: Request, body: schemas.ArrangementIn, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _write(request, "register", idempotency_key, body)

    @router.get(
        "/arrangements/{arrangement_id}",
        response_model=schemas.Overview,
        responses=_READ_ERRORS,
        summary="The call-centre overview of an arrangement",
    )
    def get_arrangement(
        request: Request, arrangement_id: Annotated[int, Path(ge=0, le=schemas.MAX_ID)]
    ) -> schemas.Overview:
        st = _state(request)
        with st.engine.connect() as conn:
            return st.service.overview(conn, arrangement_id)

    @router.post(
        "/decisions",
        response_model=schemas.DecisionOut,
        status_code=200,
        responses=_ERRORS,
        summary="The decision at one decision point",
    )
    async def post_decision(
        request: Request, body: schemas.DecisionIn, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _write(request, "decide", idempotency_key, body)

    @router.post(
        "/decisions/batch",
        response_model=schemas.BatchDecisionOut,
        status_code=200,
        responses=_ERRORS,
        summary="Decisions at many decision points, computed as one batch",
    )
    async def post_decisions(
        request: Request, body: schemas.BatchDecisionIn, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _write(request, "batch", idempotency_key, body)

    @router.post(
        "/events",
        response_model=schemas.EventOut,
        status_code=200,
        responses=_ERRORS,
        summary="Record what happened (payment, message event, missed installment, opt-out, breakdown, referral)",
    )
    async def post_event(
        request: Request, body: Annotated[schemas.EventIn, Body()], idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _write(request, "event", idempotency_key, body)

    @router.post(
        "/clock",
        response_model=schemas.ClockOut,
        status_code=200,
        responses=_ERRORS,
        summary="Time has passed (end of day): book due and missed installments and breakdowns of every arrangement",
    )
    async def post_clock(request: Request, body: schemas.ClockIn, idempotency_key: IdempotencyKey = None) -> Response:
        return await _write(request, "clock", idempotency_key, body)

    return router


def create_app(settings: ServerSettings) -> ServerApp:
    """The server's app for some settings; the policy, store and learner are built when it starts.

    Start-up fails with a clear error (naming the file or the versions) when the artifact does not verify,
    and with the field when a setting is invalid.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = _State(settings)
        app.state.regsim = state
        state.writer.start()
        # What start-up built lives as long as the process: keep it out of the cyclic collector's full passes.
        gc.freeze()
        # A write group allocates and frees tens of thousands of containers (store rows, answers), nearly all
        # freed by reference counting; with the default threshold (700) the collector ran about twenty times per
        # batch of 1,000 decisions, 7-12% of its CPU (benchmarks/bench_server.py). Collect when that many more
        # containers are alive than at the last collection: reference cycles are still collected.
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        log.info(
            "serving %s %s on %s (schema %s)",
            state.runner.active.name,
            state.runner.active.version,
            sa.make_url(db.normalise_url(settings.store)).render_as_string(hide_password=True),
            state.revision,
        )
        try:
            yield
        finally:
            await state.writer.stop()
            state.close()
            gc.set_threshold(*thresholds)

    recorder = RequestRecorder(lambda: getattr(getattr(app.state, "regsim", None), "metrics", None))
    app = ServerApp(
        settings,
        recorder,
        title="regsim policy server",
        version="1",
        summary="Decisions for payment arrangements, with status sync, a real database and a safe roll-out.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.include_router(_build_router())
    app.include_router(build_menus_router(_state))
    # The staff pages (HTML, a browser login; off without REGSIM_STAFF_USERS): serving/pages.
    app.include_router(build_pages_router(settings, _state))
    app.include_router(build_debtor_router(_state))
    world = load_world_config(settings.population)
    longest_plan = max(world.rules.max_total_installments, world.arrangements.max_installments)
    plain_openapi = app.openapi

    def openapi_with_ranges() -> dict[str, Any]:
        # The models' schema, plus the limits that depend on the world and the settings.
        if app.openapi_schema is None:
            schema = plain_openapi()
            app.openapi_schema = refine_openapi(schema, world.simulation.start_date, longest_plan, settings.max_batch)
        return app.openapi_schema

    app.openapi = openapi_with_ranges  # type: ignore[method-assign]

    @app.get("/healthz", response_model=schemas.Health, summary="Liveness (no auth)")
    def healthz() -> schemas.Health:
        return schemas.Health(status="ok")

    @app.get(
        "/readyz",
        response_model=schemas.Health,
        responses={503: {"model": schemas.ErrorOut, "description": "Not ready (starting, store, or lease lost)."}},
        summary="Readiness: policy loaded, store reachable, this process holds the store's writer lease",
        description="No token needed; the policy, its version and the schema revision are shown only to a "
        "request with a valid bearer token.",
    )
    def readyz(request: Request) -> Response:
        st: _State | None = getattr(request.app.state, "regsim", None)
        if st is None:
            return JSONResponse({"detail": "starting"}, status_code=503)
        try:
            with st.engine.connect() as conn:
                held = st.lease.held(conn)
        except sa.exc.SQLAlchemyError as exc:
            return JSONResponse({"detail": f"store unreachable: {type(exc).__name__}"}, status_code=503)
        if not held:
            detail = "lease lost: another server process has taken over this store; this one no longer writes"
            return JSONResponse({"detail": detail}, status_code=503)
        if not bearer_token_ok(request.headers.get("authorization", "").encode("latin-1"), settings.tokens):
            return JSONResponse(schemas.Health(status="ready").model_dump(exclude_none=True))
        health = schemas.Health(
            status="ready",
            policy=st.runner.active.name,
            policy_version=st.runner.active.version,
            schema_revision=st.revision,
        )
        return JSONResponse(health.model_dump())

    protected = [Depends(require_token)]

    @app.get(
        "/metrics",
        dependencies=protected,
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, 401: _ERRORS[401]},
        summary="Prometheus metrics",
    )
    def metrics(request: Request) -> Response:
        return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The schema and its page are public (the contract is no secret, and a browser cannot send a token to open
    # them); every call made from the page still needs the token, entered once with its "Authorize" button.
    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    # Swagger UI's script and style are served from the installed package (swagger-ui-bundle-v2), not from a
    # CDN: the page works where the server's users have no internet access.
    import swagger_ui_bundle

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=app.title,
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True, "tryItOutEnabled": True},
        )

    async def refused(_: Request, exc: Exception) -> JSONResponse:
        response = error_response(exc)
        assert response is not None, f"no answer for {type(exc).__name__}"
        return response

    for handled in HANDLED:
        app.add_exception_handler(handled, refused)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            # Starlette names only the first route at the path; a path served by several (GET and POST
            # /v1/cases) must list every method it answers.
            allowed = _methods_at(app, request.url.path)
            if allowed:
                return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(allowed)})
        if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
            # The JSON parser's recursion limit: a body nested that deep is malformed for this API.
            detail = "body: JSON nested too deeply to parse (no request of this API nests more than a few levels)"
            return JSONResponse({"detail": detail}, status_code=400)
        if exc.status_code == 400 and exc.__cause__ is not None:
            detail = f"body: not parseable ({type(exc.__cause__).__name__}: {exc.__cause__})"
            return JSONResponse({"detail": detail}, status_code=400)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        malformed = [e for e in exc.errors() if e.get("type") == "json_invalid"]
        if malformed:
            # Not JSON at all is 400 (as documented); JSON that breaks the schema is 422.
            e = malformed[0]
            where = e.get("loc", ("body", "?"))[-1]
            message = (e.get("ctx") or {}).get("error", e.get("msg", "invalid JSON"))
            return JSONResponse({"detail": f"body: not valid JSON ({message} at position {where})"}, status_code=400)
        # Every message starts with the field's path, so a client sees which field at a glance.
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            field = ".".join(p for p in loc if p != "body") or "body"
            errors.append(
                {
                    "type": e.get("type", "value_error"),
                    "loc": list(e.get("loc", ())),
                    "msg": f"{field}: {e.get('msg', '')}",
                }
            )
        return JSONResponse({"detail": errors}, status_code=422)

    # Outermost first: metrics see every answer; the gate answers before the body limit reads anything.
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(ApiGate, tokens=settings.tokens, json_routes=lambda: _templates(app, "post"))
    app.add_middleware(RequestMetrics, recorder=recorder, templates=lambda: _templates(app))
    return app


def _methods_at(app: FastAPI, path: str) -> list[str]:
    """Every method the app's schema documents at a request path (sorted; empty for paths outside it)."""
    methods: set[str] = set()
    for template, item in app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            methods |= {m.upper() for m in item}
    return sorted(methods)


def _templates(app: FastAPI, method: str | None = None) -> list[str]:
    """The app's route templates (of one method, lower case, if given): its OpenAPI schema's and the others'."""
    paths = [p for p, item in app.openapi()["paths"].items() if method is None or method in item]
    if method is None:
        paths += [p for r in app.router.routes if isinstance(p := getattr(r, "path", None), str)]
    return paths


def app_from_env() -> ServerApp:
    """The app configured from ``REGSIM_*`` environment variables (for ``uvicorn --factory``)."""
    return create_app(ServerSettings())
