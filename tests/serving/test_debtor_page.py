"""The debtor's self-service page: a signed link, a few questions, the menu, the confirmation; Dutch and English.

The flows are checked through the test client (links, CSRF, the questions, a choice through the service code of
``POST /v1/choices``, both languages, the pages off); then a real browser (Debian's ``chromium`` through
``chromium-driver``, driven by Selenium) follows a reminder's link to a server started with uvicorn, answers the
questions and picks an option with the keyboard alone, sees the confirmation in Dutch and in English, and
checks that every control has a label and the headings are in order. Screenshots go to
``runs/test-artifacts/debtor-page/`` (git ignores ``runs/``). The browser test is skipped, with the reason,
where Chromium or Selenium is missing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving import db
from serving.app import create_app
from serving.menu_store import menus
from serving.settings import DEFAULT_POPULATION
from tests.serving.conftest import AUTH, TOKEN, make_settings
from tests.serving.live_server import chromium
from tests.serving.live_server import live_server as run_live_server
from tests.serving.test_menus import self_service_population

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "runs" / "test-artifacts" / "debtor-page"
LINK_SECRET = "a-debtor-link-secret-of-at-least-32-chars"
EPOCH = dt.date(2026, 1, 5)  # the default world's simulation.start_date
assert f"start_date: '{EPOCH.isoformat()}'" in Path(DEFAULT_POPULATION).read_text(encoding="utf-8")

Post = Callable[[str, dict[str, Any]], Any]


def _now_days() -> float:
    epoch = dt.datetime.combine(EPOCH, dt.time(), tzinfo=dt.UTC).timestamp()
    return (time.time() - epoch) / 86_400.0


def in_arrears_now(post: Post, get: Callable[[str], Any]) -> int:
    """An arrangement (registered in the past, nothing paid) whose first installment is overdue now, unbroken.

    The page works on the server's clock, so the plan is placed in the past: arrangements starting about six
    weeks ago with their due day of the month one to two weeks ago are registered, the clock is advanced to now,
    and the first one with exactly one installment overdue is returned.
    """
    now = _now_days()
    today = EPOCH + dt.timedelta(days=int(now))
    candidates = []
    for k, (back, lag) in enumerate(itertools.product((38, 44, 50), (7, 10, 13))):
        aid, t0 = 100 + k, float(int(now) - back)
        due_day = min((today - dt.timedelta(days=lag)).day, 28)
        plan = {"arrangement_id": aid, "debt_eur": 600.0, "n_installments": 6, "due_day": due_day, "time": t0}
        created = post("/v1/arrangements", plan)
        assert created.status_code == 201
        assert post("/v1/decisions", {"arrangement_id": aid, "kind": "plan_created", "time": t0}).status_code == 200
        due = [i["due_time"] for i in created.json()["installments"]]
        if due[0] + 2 < now < due[1]:  # the first installment missed, the second not due yet
            candidates.append(aid)
    assert post("/v1/clock", {"time": now - 0.001}).status_code == 200
    for aid in candidates:
        if get(f"/v1/arrangements/{aid}").json()["status"] == "active":
            return aid
    raise AssertionError("no candidate arrangement is in arrears now")


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "policy": "rule-based-menu",
        "population": str(self_service_population(tmp_path)),
        "debtor_link_secret": LINK_SECRET,
    }
    values.update(overrides)
    return make_settings(f"sqlite:///{tmp_path / 'store.db'}", **values)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(tmp_path)), follow_redirects=False) as client:
        yield client


def _api(client: TestClient) -> tuple[Post, Callable[[str], Any]]:
    return (lambda p, b: client.post(p, json=b, headers=AUTH)), (lambda p: client.get(p, headers=AUTH))


def _link(client: TestClient, aid: int, language: str = "nl") -> str:
    made = client.post("/v1/debtor-links", json={"arrangement_id": aid, "language": language}, headers=AUTH)
    assert made.status_code == 200, made.text
    return str(made.json()["path"])


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _rows(client: TestClient, table: sa.Table) -> list[dict[str, Any]]:
    engine = client.app.state.regsim.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table))]


def test_the_page_asks_shows_the_menu_and_confirms_through_the_choice_service(page: TestClient) -> None:
    aid = in_arrears_now(*_api(page))
    path = _link(page, aid)
    token = path.split("/")[2].split("?")[0]
    start = page.get(path)
    assert start.status_code == 200 and '<html lang="nl">' in start.text and "<h1>Een paar vragen</h1>" in start.text
    assert "script" not in start.text.lower()
    assert start.headers["content-security-policy"].startswith("default-src 'none'")
    cookie = start.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/self-service" in cookie
    # Every radio button has its label.
    ids = re.findall(r'<input type="radio" id="([^"]+)"', start.text)
    assert len(ids) == 10 and all(f'<label for="{i}">' in start.text for i in ids)
    # A form without the page's CSRF token is refused, and nothing is stored.
    answers = {"lang": "nl", "can_pay_now": "no", "reason": "unexpected_costs", "when_able": "within_a_month"}
    forged = page.post(f"/self-service/{token}/answers", data={**answers, "csrf": "forged"})
    assert forged.status_code == 403 and _rows(page, menus) == []
    # The first question is required.
    missing = page.post(f"/self-service/{token}/answers", data={"lang": "nl", "csrf": _csrf(start.text)})
    assert missing.status_code == 422 and "Beantwoord alstublieft de eerste vraag." in missing.text
    # "I can pay": no menu.
    form = page.get(path)
    paying = page.post(
        f"/self-service/{token}/answers", data={**answers, "can_pay_now": "yes", "csrf": _csrf(form.text)}
    )
    assert paying.status_code == 200 and "Dank u wel" in paying.text and _rows(page, menus) == []
    # "I cannot pay": the menu, through POST /v1/menus's code, with the answers recorded.
    form = page.get(path)
    asked = page.post(f"/self-service/{token}/answers", data={**answers, "csrf": _csrf(form.text)})
    assert asked.status_code == 303
    (row,) = _rows(page, menus)
    assert row["state"] == "open" and '"reason":"unexpected_costs"' in row["answers_json"]
    assert asked.headers["location"] == f"/self-service/{token}/menu/{row['menu_id']}?lang=nl"
    shown = page.get(asked.headers["location"])
    assert "<h1>Kies een oplossing</h1>" in shown.text
    options = re.findall(r'<input type="radio" id="option-([a-z]+)"', shown.text)
    assert options[-1] == "close" and "deferral" in options and "plan" in options
    assert all(f'<label for="option-{o}">' in shown.text for o in options)
    choice = {"lang": "nl", "menu_id": str(row["menu_id"]), "option": "plan", "csrf": _csrf(shown.text)}
    bad = page.post(f"/self-service/{token}/choice", data={**choice, "option": "lottery"})
    assert bad.status_code == 422 and "Kies alstublieft een van de mogelijkheden." in bad.text
    choice["csrf"] = _csrf(bad.text)
    chosen = page.post(f"/self-service/{token}/choice", data=choice)
    assert (
        chosen.status_code == 303
        and chosen.headers["location"] == f"/self-service/{token}/done/{row['menu_id']}?lang=nl"
    )
    done = page.get(chosen.headers["location"])
    assert "<h1>Uw keuze is vastgelegd</h1>" in done.text and "nieuwe betalingsregeling" in done.text
    assert "per e-mail" in done.text
    english = page.get(f"/self-service/{token}/done/{row['menu_id']}?lang=en")
    assert '<html lang="en">' in english.text and "<h1>Your choice is registered</h1>" in english.text
    assert "You chose a new payment plan" in english.text
    # The choice went through the ledger, as POST /v1/choices does: logged, re-planned, confirmed.
    events = [e["event"] for e in _rows(page, db.events) if e["arrangement_id"] == aid]
    assert events[-3:] == ["menu_shown", "menu_choice", "new_plan"]
    confirmations = [m for m in _rows(page, db.messages) if m["decision_id"] == row["menu_id"]]
    assert len(confirmations) == 1 and confirmations[0]["purpose"] == "confirmation"
    # Posting the same choice again changes nothing.
    again = page.post(f"/self-service/{token}/choice", data=choice)
    assert again.status_code == 303 and again.headers["location"] == chosen.headers["location"]
    assert [e["event"] for e in _rows(page, db.events) if e["arrangement_id"] == aid] == events


def test_a_reload_or_a_second_visit_shows_the_standing_menu_again(tmp_path: Path) -> None:
    """``menu-ts`` draws at random: following the link again, or answering the questions again, within the
    visit window leads to the menu already shown, and nothing new is logged."""
    with TestClient(create_app(_settings(tmp_path, policy="menu-ts")), follow_redirects=False) as page:
        aid = in_arrears_now(*_api(page))
        path = _link(page, aid)
        token = path.split("/")[2].split("?")[0]
        answers = {"lang": "nl", "can_pay_now": "no", "reason": "unexpected_costs", "when_able": "within_a_month"}
        asked = page.post(f"/self-service/{token}/answers", data={**answers, "csrf": _csrf(page.get(path).text)})
        assert asked.status_code == 303
        shown = page.get(asked.headers["location"])
        options = re.findall(r'<input type="radio" id="option-([a-z]+)"', shown.text)
        again = page.get(path)
        assert again.status_code == 303 and again.headers["location"] == asked.headers["location"]
        reasked = page.post(f"/self-service/{token}/answers", data={**answers, "csrf": _csrf(shown.text)})
        assert reasked.status_code == 303 and reasked.headers["location"] == asked.headers["location"]
        assert re.findall(r'<input type="radio" id="option-([a-z]+)"', page.get(asked.headers["location"]).text) == (
            options
        )
        assert len(_rows(page, menus)) == 1
        events = [e["event"] for e in _rows(page, db.events) if e["arrangement_id"] == aid]
        assert events.count("menu_shown") == 1


def test_a_forged_or_expired_link_opens_nothing(page: TestClient) -> None:
    aid = in_arrears_now(*_api(page))
    path = _link(page, aid)
    token = path.split("/")[2].split("?")[0]
    number, expires, signature = token.split(".")
    for forged in (f"{aid + 1}.{expires}.{signature}", f"{number}.{int(expires) + 1}.{signature}", "7", "x.y.z"):
        answer = page.get(f"/self-service/{forged}?lang=en")
        assert answer.status_code == 404 and "This link does not work" in answer.text, forged
    signer = page.app.state.debtor_links  # type: ignore[attr-defined]
    old, _ = signer.token(aid, now=time.time() - signer.lifetime_s - 10)
    assert page.get(f"/self-service/{old}").status_code == 404
    # The API token and the staff login are no way in; the link is.
    assert page.get(f"/self-service/{aid}", headers=AUTH).status_code == 404
    assert page.get(path).status_code == 200


def test_the_page_says_when_there_is_nothing_to_arrange(page: TestClient) -> None:
    post, _ = _api(page)
    now = _now_days()
    plan = {"arrangement_id": 5, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": now - 1.0}
    assert post("/v1/arrangements", plan).status_code == 201
    assert post("/v1/decisions", {"arrangement_id": 5, "kind": "plan_created", "time": now - 1.0}).status_code == 200
    up_to_date = page.get(_link(page, 5, "en"))
    assert up_to_date.status_code == 200 and "Your payments are up to date." in up_to_date.text


def test_the_pages_are_off_without_a_link_secret_or_without_self_service(tmp_path: Path) -> None:
    for overrides in ({"debtor_link_secret": None}, {"population": str(self_service_population(tmp_path, False))}):
        with TestClient(create_app(_settings(tmp_path, **overrides)), follow_redirects=False) as client:
            answer = client.get("/self-service/1.2.3?lang=en")
            assert answer.status_code == 404 and "Self-service is not available" in answer.text
    with TestClient(create_app(_settings(tmp_path, debtor_link_secret=None))) as client:
        made = client.post("/v1/debtor-links", json={"arrangement_id": 1}, headers=AUTH)
        assert made.status_code == 409 and "REGSIM_DEBTOR_LINK_SECRET" in made.json()["detail"]


# -- in a real browser -----------------------------------------------------------------------------------
@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    settings = {
        "REGSIM_POLICY": "rule-based-menu",
        "REGSIM_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "REGSIM_TOKENS": TOKEN,
        "REGSIM_POPULATION": str(self_service_population(tmp_path)),
        "REGSIM_DEBTOR_LINK_SECRET": LINK_SECRET,
    }
    with run_live_server(tmp_path, settings) as base:
        yield base


def test_debtor_page_in_chromium_with_the_keyboard_alone(live_server: str) -> None:
    found = chromium()
    if found is None:
        pytest.skip("Chromium not installed: apt-get install chromium chromium-driver (scripts/setup.sh does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with httpx.Client(base_url=live_server, headers=AUTH) as api:
        aid = in_arrears_now(lambda p, b: api.post(p, json=b), api.get)
        made = api.post("/v1/debtor-links", json={"arrangement_id": aid, "language": "nl"})
        assert made.status_code == 200, made.text
        link = made.json()["path"]
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,1200"):
        options.add_argument(arg)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=found[1]))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []

    def heading_becomes(text: str) -> None:
        wait = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        wait.until(lambda b: b.find_element(By.TAG_NAME, "h1").text == text)

    def press(*keys: str) -> None:
        browser.switch_to.active_element.send_keys(*keys)

    def tab_to(element_id: str) -> None:
        """Tab through the page until ``element_id`` has the focus (the keyboard's way to reach a control)."""
        for _ in range(40):
            press(Keys.TAB)
            if browser.switch_to.active_element.get_attribute("id") == element_id:
                return
        raise AssertionError(f"{element_id} is not reachable with the Tab key")

    def check_accessible(lang: str) -> None:
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == lang
        levels = [int(h.tag_name[1]) for h in browser.find_elements(By.CSS_SELECTOR, "h1, h2, h3, h4")]
        assert levels[0] == 1 and all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
        for control in browser.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea, button"):
            if control.tag_name == "button":
                assert control.text.strip(), "a button without text"
                continue
            labels = browser.find_elements(By.CSS_SELECTOR, f"label[for='{control.get_attribute('id')}']")
            assert len(labels) == 1 and labels[0].text.strip(), control.get_attribute("outerHTML")

    try:
        browser.get(f"{live_server}{link}")
        heading_becomes("Een paar vragen")
        check_accessible("nl")
        shots.append(_shot(browser, "1-questions-nl"))
        # The questions, with the keyboard alone: into each group with Tab, a choice with Space or the arrows.
        tab_to("can_pay_now-no")
        press(Keys.SPACE)
        tab_to("reason-income_dropped")
        press(Keys.ARROW_DOWN)  # "unexpected costs"
        tab_to("when_able-within_two_weeks")
        press(Keys.ARROW_DOWN)  # "within a month"
        assert browser.find_element(By.ID, "reason-unexpected_costs").is_selected()
        assert browser.find_element(By.ID, "when_able-within_a_month").is_selected()
        shots.append(_shot(browser, "2-questions-answered-nl"))
        press(Keys.TAB)
        assert browser.switch_to.active_element.tag_name == "button"
        press(Keys.ENTER)
        heading_becomes("Kies een oplossing")
        check_accessible("nl")
        labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".choice label")]
        assert labels[0].startswith("Later betalen:") and labels[-1] == "Geen van deze: ik sluit deze pagina"
        shots.append(_shot(browser, "3-menu-nl"))
        tab_to("option-deferral")
        press(Keys.ARROW_DOWN)  # the new payment plan
        assert browser.find_element(By.ID, "option-plan").is_selected()
        press(Keys.TAB)
        press(Keys.ENTER)
        heading_becomes("Uw keuze is vastgelegd")
        check_accessible("nl")
        confirmation = browser.find_element(By.CSS_SELECTOR, ".confirmation").text
        assert confirmation.startswith("U heeft gekozen voor een nieuwe betalingsregeling"), confirmation
        shots.append(_shot(browser, "4-confirmation-nl"))
        # The language switch, by keyboard too.
        english = browser.find_element(By.CSS_SELECTOR, "nav a[lang=en]")
        english.send_keys(Keys.ENTER)
        heading_becomes("Your choice is registered")
        check_accessible("en")
        confirmation = browser.find_element(By.CSS_SELECTOR, ".confirmation").text
        assert confirmation.startswith("You chose a new payment plan"), confirmation
        shots.append(_shot(browser, "5-confirmation-en"))
        browser.get(f"{live_server}{link.replace('lang=nl', 'lang=en')}")
        heading_becomes("Nothing to arrange")  # the new plan has nothing overdue
        shots.append(_shot(browser, "6-after-the-choice-en"))
    finally:
        browser.quit()
    print("debtor page screenshots:", *shots, sep="\n  ")


def _shot(browser: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1000, max(700, int(height) + 120))
    assert browser.save_screenshot(str(path))
    return path
