"""The staff pages' routes: login and logout, a search by arrangement id, an arrangement, and the portfolio.

Server-rendered HTML (Jinja2 templates in ``serving/templates``, autoescaped; no script at all). Every page
but the login needs a staff session (:mod:`serving.pages.session`); without one, a page redirects to the login
form, which brings the user back after logging in. The pages read the store through the service, like the API's
``GET /v1/arrangements/{id}``; they change nothing but the session.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from serving import schemas
from serving.pages.portfolio import portfolio
from serving.pages.session import COOKIE, Session, SessionSigner, verify_password
from serving.refusals import NotFoundError
from serving.service import DecisionService
from serving.settings import ServerSettings

__all__ = ["PREFIX", "build_pages_router"]

#: Where the staff pages live.
PREFIX = "/staff"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SECURITY_HEADERS = {
    # No script, no frames, styles and forms from this server only.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class _Message:
    """One message of the contact history, its events side by side."""

    message_id: int | None
    decision_id: int | None
    channel: str
    times: dict[str, dt.datetime] = field(default_factory=dict)


def _messages(view: schemas.Overview) -> list[_Message]:
    out: dict[int | None, _Message] = {}
    for c in view.contact_history:
        m = out.setdefault(c.message_id, _Message(c.message_id, c.decision_id, c.channel))
        m.times.setdefault(c.event.removeprefix("message_"), c.at)
    return list(out.values())


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def build_pages_router(settings: ServerSettings, state: Callable[[Request], Any]) -> APIRouter:
    """The staff pages (off, answering 404 with the settings to set, without ``staff_users``).

    Args:
        settings: The server's settings (staff users, session secret and lifetime).
        state: The app's state for a request (its ``engine`` and ``service``).
    """
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    users = dict(u.partition(":")[::2] for u in settings.staff_users)
    signer = SessionSigner(settings.session_secret or "", settings.session_hours * 3600.0) if users else None

    def page(
        request: Request, template: str, status: int = 200, session: Session | None = None, **ctx: Any
    ) -> Response:
        assert signer is not None
        session = (
            session
            or signer.load(request.cookies.get(COOKIE), state(request).engine)
            or Session.anonymous(signer.lifetime_s)
        )
        html = env.get_template(template).render(user=session.user, csrf=session.csrf, prefix=PREFIX, **ctx)
        response = HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)
        _set_cookie(request, response, signer.dump(session), signer.lifetime_s)
        return response

    def staff(request: Request) -> Session | Response:
        """The logged-in session, or the answer to give instead (pages off; a redirect to the login)."""
        if signer is None:
            return HTMLResponse(
                "<!doctype html><title>Staff pages are off</title><h1>Staff pages are off</h1><p>Set "
                "REGSIM_STAFF_USERS and REGSIM_SESSION_SECRET to turn them on.</p>",
                status_code=404,
                headers=_SECURITY_HEADERS,
            )
        session = signer.load(request.cookies.get(COOKIE), state(request).engine)
        if session is None or session.user is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
        return session

    async def form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return {}
        raw = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=8)
        return {k: v[0] for k, v in raw.items()}

    def csrf_ok(request: Request, sent: str | None) -> Session | None:
        assert signer is not None
        session = signer.load(request.cookies.get(COOKIE), state(request).engine)
        if session is None or not sent or not hmac.compare_digest(session.csrf, sent):
            return None
        return session

    def safe_next(value: str | None) -> str:
        # Only a path of these pages: never an absolute URL (no open redirect).
        if value and value.startswith(PREFIX + "/") and not value.startswith("//"):
            return value
        return f"{PREFIX}/"

    @router.get("/style.css")
    def style() -> Response:
        return Response((TEMPLATES / "style.css").read_text(), media_type="text/css", headers=_SECURITY_HEADERS)

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if signer is None:
            answer = staff(request)
            assert isinstance(answer, Response)
            return answer
        return page(request, "login.html", next=safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if signer is None:
            answer = staff(request)
            assert isinstance(answer, Response)
            return answer
        fields = await form(request)
        target = safe_next(fields.get("next"))
        if await run_in_threadpool(csrf_ok, request, fields.get("csrf")) is None:
            error = "The form has expired or did not come from this site. Please log in again."
            return page(request, "login.html", 403, Session.anonymous(signer.lifetime_s), next=target, error=error)
        user, password = fields.get("username", ""), fields.get("password", "")
        stored = users.get(user)
        if stored is None or not verify_password(password, stored):
            error = "Unknown user name or wrong password."
            return page(request, "login.html", 401, Session.anonymous(signer.lifetime_s), next=target, error=error)
        # A new CSRF token with the new session (no token handed out before login stays valid after it).
        fresh = Session.anonymous(signer.lifetime_s)
        session = Session(user, fresh.csrf, fresh.expires)
        response = RedirectResponse(target, status_code=303)
        _set_cookie(request, response, signer.dump(session), signer.lifetime_s)
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        ended = None if signer is None else await run_in_threadpool(csrf_ok, request, (await form(request)).get("csrf"))
        if signer is None or ended is None:
            return HTMLResponse("<!doctype html><title>Refused</title><p>Refused.</p>", 403, headers=_SECURITY_HEADERS)
        if ended.user is not None:
            # The cookie, and any copy of it, is no session from now on (kept in the store: restarts too).
            await run_in_threadpool(signer.revoke, ended, state(request).engine)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        _set_cookie(request, response, signer.dump(Session.anonymous(signer.lifetime_s)), signer.lifetime_s)
        return response

    @router.get("/")
    def search(request: Request, arrangement_id: str | None = None) -> Response:
        session = staff(request)
        if isinstance(session, Response):
            return session
        if arrangement_id is None or arrangement_id.strip() == "":
            return page(request, "search.html", session=session, query="", error=None)
        text = arrangement_id.strip()
        if not text.isdigit() or int(text) > schemas.MAX_ID:
            error = f"Arrangement id: a whole number from 0 to {schemas.MAX_ID}, not {text!r}."
            return page(request, "search.html", 422, session=session, query=text, error=error)
        return RedirectResponse(f"{PREFIX}/arrangements/{int(text)}", status_code=303)

    @router.get("/arrangements/{arrangement_id}")
    def arrangement(request: Request, arrangement_id: int) -> Response:
        session = staff(request)
        if isinstance(session, Response):
            return session
        st = state(request)
        service: DecisionService = st.service
        try:
            with st.engine.connect() as conn:
                view = service.overview(conn, arrangement_id)
        except NotFoundError:
            error = f"No arrangement {arrangement_id} is registered."
            return page(request, "search.html", 404, session=session, query=str(arrangement_id), error=error)
        return page(request, "arrangement.html", session=session, view=view, messages=_messages(view), at=service.at_of)

    @router.get("/portfolio")
    def portfolio_page(request: Request) -> Response:
        session = staff(request)
        if isinstance(session, Response):
            return session
        st = state(request)
        with st.engine.connect() as conn:
            figures = portfolio(conn)
        now = dt.datetime.now(dt.UTC)
        return page(request, "portfolio.html", session=session, p=figures, now=now)

    return router


def _set_cookie(request: Request, response: Response, value: str, lifetime_s: float) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(lifetime_s),
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
