"""The debtor's self-service page: a few questions, the menu in plain language, the confirmation (Dutch, English).

Reached by the signed per-arrangement link a reminder carries (``/self-service/<token>``, made by ``POST
/v1/debtor-links``; :mod:`serving.debtor_links`), never by the staff login or the API token. Server-rendered
(Jinja2 templates ``serving/templates/debtor_*.html``, autoescaped, no script), every text from the catalogue
(:mod:`serving.translations`), chosen by ``?lang=nl`` or ``?lang=en`` (a switch on every page).

The flow, each form post answered with a redirect to a page that can be reloaded (post, redirect, get):

1. ``GET /self-service/<token>``: the questions (can you pay now; why not; when can you pay again), or a
   plain page saying why there is nothing to arrange (closed, up to date, a custom case waiting). While a menu
   of the arrangement stands (unanswered, shown less than ``self_service.visit.min_days_between_visits`` ago:
   :meth:`serving.menu_service.MenuService.standing`), the link leads straight to that menu.
2. ``POST .../answers``: "I can pay" ends at a thank-you page; otherwise the menu is asked for through the
   same service code as ``POST /v1/menus`` (:meth:`serving.menu_service.MenuService.show`, through the writer),
   with the answers recorded, and the browser is sent to the menu.
3. ``GET .../menu/<menu_id>``: the options shown, one radio button each with a label and a line of help, and
   "none of these".
4. ``POST .../choice``: through :meth:`serving.menu_service.MenuService.choose` (``POST /v1/choices``'s code),
   then ``GET .../done/<menu_id>``: the confirmation.

Every form carries a CSRF token, checked against the page's signed cookie. The page's time is the server's
clock (days since the world's epoch).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from serving.debtor_links import COOKIE, LinkSigner
from serving.menu_service import MenuService, confirmation_words
from serving.menu_store import MenuRow, menu_row, queued_cases
from serving.menus_api import PAGE_PREFIX, link_signer
from serving.refusals import ServiceError
from serving.schemas_menu import LANGUAGES, Answers, ChoiceIn, ChoiceOut, MenuIn, MenuOut, OfferedOption
from serving.translations import catalogue, money

__all__ = ["build_debtor_router"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the link's token must not leak to another site
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class _Choice:
    """One radio button of the menu: its value, label and help line."""

    value: str
    label: str
    help: str


def _language(value: str | None) -> str:
    return value if value in LANGUAGES else "nl"


def build_debtor_router(state: Callable[[Request], Any]) -> APIRouter:
    """The debtor's page (off, answering a plain 404 page, without ``debtor_link_secret``)."""
    router = APIRouter(prefix=PAGE_PREFIX, include_in_schema=False)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

    def render(request: Request, template: str, lang: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        texts = catalogue(lang)
        switch = [(code, catalogue(code)["lang_name"], f"{request.url.path}?lang={code}") for code in LANGUAGES]
        html = env.get_template(template).render(t=texts, lang=lang, switch=switch, prefix=PAGE_PREFIX, **ctx)
        return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)

    def notice(request: Request, lang: str, title: str, body: str, status: int) -> HTMLResponse:
        texts = catalogue(lang)
        return render(request, "debtor_notice.html", lang, status, title=texts[title], body=texts[body])

    def form_page(
        request: Request, template: str, lang: str, signer: LinkSigner, aid: int, status: int = 200, **ctx: Any
    ) -> HTMLResponse:
        # The CSRF token is made first, so the form and the cookie carry the same one.
        token, cookie = signer.new_csrf(aid)
        response = render(request, template, lang, status, csrf=token, **ctx)
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, cookie, path=PAGE_PREFIX, httponly=True, samesite="strict", secure=secure)
        return response

    def opened(request: Request, token: str, lang: str) -> tuple[LinkSigner, int] | HTMLResponse:
        """The signer and arrangement of a link, or the page to show instead (off, invalid link)."""
        signer = link_signer(request)
        st = state(request)
        if signer is None or not st.menus.enabled:
            return notice(request, lang, "off_title", "off_text", 404)
        link = signer.verify(token)
        if link is None:
            return notice(request, lang, "link_invalid_title", "link_invalid_text", 404)
        return signer, link.arrangement_id

    def now_days(request: Request) -> float:
        epoch = state(request).service.epoch
        return (time.time() - dt.datetime.combine(epoch, dt.time(), tzinfo=dt.UTC).timestamp()) / 86_400.0

    async def form(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return {}
        raw = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=12)
        return {k: v[0] for k, v in raw.items()}

    def situation(request: Request, aid: int) -> dict[str, Any] | str:
        """What the questions page shows of the arrangement, or the notice key saying why there is nothing."""
        st = state(request)
        with st.engine.connect() as conn:
            ws = st.service.load(conn, [aid], st.service.template)
            if ws.info.get(aid) is None:
                return "link_invalid_text"
            waiting = bool(queued_cases(conn, aid))
        rp = ws.replay
        row = rp.row[aid]
        sch = rp.ledger.sched
        rp.ledger.catch_up(np.array([row], dtype=np.int64), int(now_days(request)))
        if ws.status_of(aid) != "active":
            return "not_active_text"
        if waiting:
            return "case_waiting_text"
        overdue = int(sch.overdue(np.array([row]))[0])
        if overdue <= 0:
            return "not_in_arrears_text"
        first = int(sch.first_open[row])
        owed = float(sum(sch.amount[row, j] - sch.paid[row, j] for j in range(first, first + overdue)))
        return {"overdue": owed, "balance": float(sch.balance[row])}

    def questions(
        request: Request, token: str, lang: str, signer: LinkSigner, aid: int, error: str | None, status: int = 200
    ) -> HTMLResponse:
        found = situation(request, aid)
        if isinstance(found, str):
            title = "link_invalid_title" if found == "link_invalid_text" else "not_active_title"
            return notice(request, lang, title, found, 404 if found == "link_invalid_text" else 200)
        amounts = {k: money(lang, v) for k, v in found.items()}
        action = f"{PAGE_PREFIX}/{token}/answers"
        return form_page(
            request, "debtor_questions.html", lang, signer, aid, status, action=action, error=error, amounts=amounts
        )

    @router.get("/debtor.css")
    def style() -> Response:
        css = (TEMPLATES / "debtor.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css", headers=_SECURITY_HEADERS)

    @router.get("/{token}")
    def start(request: Request, token: str, lang: str | None = None) -> Response:
        language = _language(lang)
        found = opened(request, token, language)
        if isinstance(found, HTMLResponse):
            return found
        signer, aid = found
        # A menu standing (unanswered, within the visit window): the debtor sees it again, not a new one.
        with state(request).engine.connect() as conn:
            standing = state(request).menus.standing(conn, aid, now_days(request))
        if standing is not None and isinstance(situation(request, aid), dict):
            return RedirectResponse(f"{PAGE_PREFIX}/{token}/menu/{standing.menu_id}?lang={language}", status_code=303)
        return questions(request, token, language, signer, aid, None)

    @router.post("/{token}/answers")
    async def answers(request: Request, token: str) -> Response:
        fields = await form(request)
        lang = _language(fields.get("lang"))
        found = opened(request, token, lang)
        if isinstance(found, HTMLResponse):
            return found
        signer, aid = found
        if not signer.csrf_ok(request.cookies.get(COOKIE), aid, fields.get("csrf")):
            return notice(request, lang, "error_title", "expired_form", 403)
        try:
            given = Answers(
                can_pay_now=fields.get("can_pay_now"),
                reason=fields.get("reason") or None,
                when_able=fields.get("when_able") or None,
            )
        except ValidationError:
            texts = catalogue(lang)
            return await run_in_threadpool(questions, request, token, lang, signer, aid, texts["q_required"], 422)
        if given.can_pay_now == "yes":
            return notice(request, lang, "pay_title", "pay_text", 200)
        st = state(request)
        body = MenuIn(arrangement_id=aid, time=now_days(request), answers=given)
        try:
            outcome = await st.writer.write("apply", body, None, "POST", request.scope["path"], apply=st.menus.show)
        except ServiceError:
            return await run_in_threadpool(questions, request, token, lang, signer, aid, None)
        menu_id = int(json.loads(outcome.body)["menu_id"])
        return RedirectResponse(f"{PAGE_PREFIX}/{token}/menu/{menu_id}?lang={lang}", status_code=303)

    def stored(request: Request, aid: int, menu_id: int) -> MenuRow | None:
        with state(request).engine.connect() as conn:
            m = menu_row(conn, menu_id)
        return m if m is not None and m.arrangement_id == aid else None

    def menu_page(
        request: Request, token: str, lang: str, signer: LinkSigner, m: MenuRow, error: str | None, status: int = 200
    ) -> HTMLResponse:
        menu = MenuOut.model_validate_json(m.menu_json)
        with state(request).engine.connect() as conn:
            ws = state(request).service.load(conn, [m.arrangement_id], state(request).service.template)
        rp = ws.replay
        row = rp.row[m.arrangement_id]
        balance = float(rp.ledger.sched.balance[row])
        options = [_choice(lang, o, balance) for o in menu.options if o.shown]
        texts = catalogue(lang)
        options.append(_Choice("close", texts["opt_close"], texts["opt_close_help"]))
        action = f"{PAGE_PREFIX}/{token}/choice"
        return form_page(
            request,
            "debtor_menu.html",
            lang,
            signer,
            m.arrangement_id,
            status,
            action=action,
            menu_id=m.menu_id,
            options=options,
            only_close=len(options) == 1,
            error=error,
        )

    @router.get("/{token}/menu/{menu_id}")
    def menu(request: Request, token: str, menu_id: int, lang: str | None = None) -> Response:
        language = _language(lang)
        found = opened(request, token, language)
        if isinstance(found, HTMLResponse):
            return found
        signer, aid = found
        m = stored(request, aid, menu_id)
        if m is None or m.state == "superseded":
            return RedirectResponse(f"{PAGE_PREFIX}/{token}?lang={language}", status_code=303)
        if m.state == "chosen":
            return RedirectResponse(f"{PAGE_PREFIX}/{token}/done/{menu_id}?lang={language}", status_code=303)
        return menu_page(request, token, language, signer, m, None)

    @router.post("/{token}/choice")
    async def choice(request: Request, token: str) -> Response:
        fields = await form(request)
        lang = _language(fields.get("lang"))
        found = opened(request, token, lang)
        if isinstance(found, HTMLResponse):
            return found
        signer, aid = found
        if not signer.csrf_ok(request.cookies.get(COOKIE), aid, fields.get("csrf")):
            return notice(request, lang, "error_title", "expired_form", 403)
        menu_id = fields.get("menu_id", "")
        m = stored(request, aid, int(menu_id)) if menu_id.isdigit() else None
        if m is None:
            return RedirectResponse(f"{PAGE_PREFIX}/{token}?lang={lang}", status_code=303)
        option = fields.get("option")
        allowed = MenuOut.model_validate_json(m.menu_json).allowed_choices
        if option not in allowed:
            texts = catalogue(lang)
            return await run_in_threadpool(menu_page, request, token, lang, signer, m, texts["menu_required"], 422)
        st = state(request)
        body = ChoiceIn(
            arrangement_id=aid,
            menu_id=m.menu_id,
            option=option,
            language=lang,
            time=max(now_days(request), m.time),
        )
        # Answered already, superseded or ended: the pages it redirects to say what holds now.
        with contextlib.suppress(ServiceError):
            await st.writer.write("apply", body, None, "POST", request.scope["path"], apply=st.menus.choose)
        return RedirectResponse(f"{PAGE_PREFIX}/{token}/done/{m.menu_id}?lang={lang}", status_code=303)

    @router.get("/{token}/done/{menu_id}")
    def done(request: Request, token: str, menu_id: int, lang: str | None = None) -> Response:
        language = _language(lang)
        found = opened(request, token, language)
        if isinstance(found, HTMLResponse):
            return found
        _, aid = found
        m = stored(request, aid, menu_id)
        if m is None or m.choice_json is None:
            return RedirectResponse(f"{PAGE_PREFIX}/{token}?lang={language}", status_code=303)
        out = ChoiceOut.model_validate_json(m.choice_json)
        menus: MenuService = state(request).menus
        words = confirmation_words(language, out, menus.offered_days(m))
        texts = catalogue(language)
        channel = None if out.confirmation is None else texts[f"channel_{out.confirmation.channel}"]
        return render(request, "debtor_done.html", language, words=words, channel=channel, out=out)

    return router


def _choice(lang: str, o: OfferedOption, balance: float) -> _Choice:
    """An option shown, in plain words (its term and what it means for the balance)."""
    texts = catalogue(lang)
    values: dict[str, object] = {"balance": money(lang, balance)}
    if o.option == "deferral":
        values["days"] = o.deferral_days
    elif o.option == "plan":
        n = int(o.n_installments or 1)
        values.update(n=n, amount=money(lang, balance / n))
    elif o.option == "discount":
        fraction = float(o.discount or 0.0)
        values.update(pct=f"{fraction:.0%}", amount=money(lang, fraction * balance))
    return _Choice(o.option, texts[f"opt_{o.option}"].format(**values), texts[f"opt_{o.option}_help"].format(**values))
