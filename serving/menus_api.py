"""The self-service API's routes: menus, choices, the collectors' queue of custom cases, and debtor links.

``POST /v1/menus``, ``POST /v1/choices``, ``POST /v1/cases`` and ``GET /v1/cases``, ``POST /v1/debtor-links``.

Thin routes, as the others of :mod:`serving.app`: each validates its body, queues its effect for the single
writer (an ``apply`` op of :mod:`serving.writer`, with its ``Idempotency-Key``) and answers once the
transaction has committed; the work is :class:`serving.menu_service.MenuService`'s, which the debtor's page
(:mod:`serving.pages.debtor`) calls too. Authenticated by the bearer token like every ``/v1`` route.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response

from serving import schemas
from serving.auth import require_token
from serving.debtor_links import LinkSigner
from serving.refusals import ConflictError
from serving.schemas_menu import (
    CaseIn,
    CaseOut,
    ChoiceIn,
    ChoiceOut,
    DebtorLinkIn,
    DebtorLinkOut,
    MenuIn,
    MenuOut,
    QueueOut,
)

__all__ = ["PAGE_PREFIX", "build_menus_router", "link_signer"]

#: Where the debtor's page lives (its links are ``PAGE_PREFIX/<token>``).
PAGE_PREFIX = "/self-service"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.ErrorOut, "description": "The body is not parseable JSON."},
    401: {"model": schemas.ErrorOut, "description": "Missing or invalid bearer token."},
    404: {"model": schemas.ErrorOut, "description": "Unknown arrangement or menu (the detail names the field)."},
    409: {
        "model": schemas.ErrorOut,
        "description": "Self-service is off in the server's world config; the arrangement is not active, not in "
        "arrears or has a custom case waiting; the menu was answered or superseded; an Idempotency-Key reused.",
    },
    413: {"model": schemas.ErrorOut, "description": "Request body larger than REGSIM_MAX_BODY_BYTES."},
    415: {"model": schemas.ErrorOut, "description": "The body is not declared as JSON (Content-Type)."},
    422: {
        "model": schemas.ValidationErrorOut,
        "description": "Breaks the schema, or a choice not on the menu (the field and the allowed values named).",
    },
    503: {"model": schemas.ErrorOut, "description": "Another server process has taken over the store."},
}

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


def link_signer(request: Request) -> LinkSigner | None:
    """The app's signer of debtor links (``None``: no ``debtor_link_secret``, the pages are off)."""
    settings = request.app.state.settings
    if settings.debtor_link_secret is None:
        return None
    signer: LinkSigner | None = getattr(request.app.state, "debtor_links", None)
    if signer is None:
        signer = LinkSigner(settings.debtor_link_secret, settings.debtor_link_days * 86_400.0)
        request.app.state.debtor_links = signer
    return signer


def build_menus_router(state: Callable[[Request], Any]) -> APIRouter:
    """The routes, on the app's state (``state(request)``: its ``writer`` and ``menus`` service)."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)])

    @router.post(
        "/menus",
        response_model=MenuOut,
        status_code=200,
        responses=_ERRORS,
        summary="The self-service menu for an arrangement in arrears, chosen by the policy and logged",
        description="Each option says whether it is shown, with which term, and which business rules capped or "
        "hid it. The menu is logged (``menu_shown``) with the propensity of the whole menu, the policy and its "
        "version. Within self_service.visit.min_days_between_visits of an unanswered menu (a reload, a repeat visit) "
        "the same menu is answered again (``standing: true``, nothing logged); after it, a new menu is drawn and "
        "supersedes the unanswered one.",
    )
    async def post_menu(request: Request, body: MenuIn, idempotency_key: IdempotencyKey = None) -> Response:
        st = state(request)
        outcome = await st.writer.write(
            "apply", body, idempotency_key, request.method, request.scope["path"], apply=st.menus.show
        )
        return Response(outcome.body, outcome.status_code, media_type="application/json")

    @router.post(
        "/choices",
        response_model=ChoiceOut,
        status_code=200,
        responses=_ERRORS,
        summary="The debtor's choice on a menu: registered, followed up through the ledger, confirmed",
        description="An option the menu shows (a term, if given, must be the one offered) or ``close``. Deferral "
        "and a new plan re-plan the arrangement, waiver and discount come off the balance (``concession``), "
        "counselling refers the arrangement, a custom solution is queued for the collectors; every choice but "
        "close and counselling schedules a confirmation message (report its events under its ``message_id``).",
    )
    async def post_choice(request: Request, body: ChoiceIn, idempotency_key: IdempotencyKey = None) -> Response:
        st = state(request)
        outcome = await st.writer.write(
            "apply", body, idempotency_key, request.method, request.scope["path"], apply=st.menus.choose
        )
        return Response(outcome.body, outcome.status_code, media_type="application/json")

    @router.post(
        "/cases",
        response_model=CaseOut,
        status_code=200,
        responses=_ERRORS,
        summary="Staff resolved a custom-solution case of the collectors' queue (a new plan and a deferral)",
    )
    async def post_case(request: Request, body: CaseIn, idempotency_key: IdempotencyKey = None) -> Response:
        st = state(request)
        outcome = await st.writer.write(
            "apply", body, idempotency_key, request.method, request.scope["path"], apply=st.menus.resolve
        )
        return Response(outcome.body, outcome.status_code, media_type="application/json")

    @router.get(
        "/cases",
        response_model=QueueOut,
        responses={401: _ERRORS[401]},
        summary="The collectors' queue: custom-solution cases waiting for staff, oldest first",
    )
    def get_cases(request: Request) -> QueueOut:
        st = state(request)
        with st.engine.connect() as conn:
            queue: QueueOut = st.menus.queue(conn)
        return queue

    @router.post(
        "/debtor-links",
        response_model=DebtorLinkOut,
        status_code=200,
        responses={k: v for k, v in _ERRORS.items() if k in (400, 401, 409, 413, 415, 422)},
        summary="A signed link to an arrangement's self-service page, to put in a reminder",
    )
    def post_debtor_link(request: Request, body: DebtorLinkIn) -> DebtorLinkOut:
        signer = link_signer(request)
        if signer is None:
            raise ConflictError("the debtor's pages are off: set REGSIM_DEBTOR_LINK_SECRET (32+ characters)")
        token, expires = signer.token(body.arrangement_id)
        return DebtorLinkOut(
            arrangement_id=body.arrangement_id,
            path=f"{PAGE_PREFIX}/{token}?lang={body.language}",
            expires_at=dt.datetime.fromtimestamp(expires, dt.UTC),
        )

    return router
