"""The staff pages: a browser login (form, signed session cookie, CSRF), a search, an arrangement, the portfolio.

The flows are checked through the test client; then a real browser (Debian's ``chromium`` driven through
``chromium-driver`` by Selenium) logs in to a server started with uvicorn on a free port, searches an
arrangement, checks what the pages show and saves screenshots under ``runs/test-artifacts/staff-pages/``
(git ignores ``runs/``). The browser test is skipped, with the reason, where Chromium or Selenium is missing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serving import db
from serving.app import create_app
from serving.pages.session import hash_password
from tests.serving.conftest import AUTH, TOKEN, make_settings
from tests.serving.live_server import chromium
from tests.serving.live_server import live_server as run_live_server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "runs" / "test-artifacts" / "staff-pages"
PASSWORD = "correct horse battery staple"
SECRET = "a-session-secret-of-at-least-32-characters"
_HASH = hash_password(PASSWORD, salt=b"0123456789abcdef")  # (a fixed salt: hashed once per test run)
PLAN = {"arrangement_id": 7, "debt_eur": 300.0, "n_installments": 3, "due_day": 1, "time": 0.0}


def _seed(post: Any) -> dict[str, Any]:
    """One arrangement with a plan, a reminder sent and opened, a payment, and a planned next action."""
    assert post("/v1/arrangements", PLAN).status_code == 201
    assert post("/v1/decisions", {"arrangement_id": 7, "kind": "plan_created", "time": 0.0}).status_code == 200
    pre = post("/v1/decisions", {"arrangement_id": 7, "kind": "pre_due", "time": 22.0}).json()
    message = {"arrangement_id": 7, "message_id": pre["message_id"]}
    assert post("/v1/events", {**message, "type": "message_sent", "time": pre["send_time"]}).status_code == 200
    assert post("/v1/events", {**message, "type": "message_opened", "time": pre["send_time"] + 0.2}).status_code == 200
    paid = post("/v1/events", {"arrangement_id": 7, "type": "payment", "amount_eur": 100.0, "time": 25.0})
    assert paid.status_code == 200
    # The thank-you decision after the payment plans the next message.
    thanks = post("/v1/decisions", {"arrangement_id": 7, "kind": "payment_received", "time": 25.0}).json()
    return {"pre": pre, "thanks": thanks}


@pytest.fixture
def staff(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'store.db'}", staff_users=(f"alice:{_HASH}",), session_secret=SECRET
    )
    with TestClient(create_app(settings), follow_redirects=False) as client:
        yield client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _login(client: TestClient, password: str = PASSWORD) -> Any:
    form = client.get("/staff/login")
    return client.post(
        "/staff/login",
        data={"username": "alice", "password": password, "csrf": _csrf(form.text), "next": "/staff/portfolio"},
    )


def test_login_session_csrf_and_logout(staff: TestClient) -> None:
    page = staff.get("/staff/arrangements/7")
    assert page.status_code == 303 and page.headers["location"].startswith("/staff/login?next=")
    # A form not from the login page (no or another CSRF token) is refused; so is a wrong password.
    refused = staff.post("/staff/login", data={"username": "alice", "password": PASSWORD, "csrf": "forged"})
    assert refused.status_code == 403
    assert _login(staff, "wrong password").status_code == 401
    ok = _login(staff)
    assert ok.status_code == 303 and ok.headers["location"] == "/staff/portfolio"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/staff" in cookie
    assert staff.get("/staff/portfolio").status_code == 200
    # A tampered cookie is no session.
    value = staff.cookies.get("regsim_staff")
    assert value is not None
    domain = next(iter(staff.cookies.jar)).domain
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    staff.cookies.set("regsim_staff", tampered, domain=domain, path="/staff")
    assert staff.get("/staff/portfolio").status_code == 303
    staff.cookies.set("regsim_staff", value, domain=domain, path="/staff")
    # Logging out needs the page's token; afterwards the pages redirect to the login again.
    assert staff.post("/staff/logout", data={"csrf": "forged"}).status_code == 403
    token = _csrf(staff.get("/staff/").text)
    assert staff.post("/staff/logout", data={"csrf": token}).status_code == 303
    assert staff.get("/staff/portfolio").status_code == 303
    # Logging out ends the session on the server: a copy of the cookie taken before is no session.
    staff.cookies.set("regsim_staff", value, domain=domain, path="/staff")
    assert staff.get("/staff/portfolio").status_code == 303
    # An open redirect is not possible through the login's "next".
    form = staff.get("/staff/login")
    away = staff.post(
        "/staff/login",
        data={"username": "alice", "password": PASSWORD, "csrf": _csrf(form.text), "next": "https://evil.example/"},
    )
    assert away.headers["location"] == "/staff/"
    # A staff cookie is no API token, and the API token is no staff login.
    assert staff.get("/v1/arrangements/7").status_code == 401
    staff.cookies.clear()
    assert staff.get("/staff/portfolio", headers=AUTH).status_code == 303


def test_logout_stays_revoked_after_a_restart(store_url: str) -> None:
    """A session ended by logout is refused after the server restarts on the same store (SQLite, PostgreSQL).

    Revocations are rows of ``revoked_sessions`` (migration 0004), not this process's memory: a second app on the
    store refuses the logged-out cookie's copy while a session logged in alongside it, never logged out, stays
    valid there; a row past its expiry is purged at the next logout.
    """
    settings = make_settings(store_url, staff_users=(f"alice:{_HASH}",), session_secret=SECRET)
    with TestClient(create_app(settings), follow_redirects=False) as first:
        assert _login(first).status_code == 303
        ended = first.cookies.get("regsim_staff")
        first.cookies.clear()
        assert _login(first).status_code == 303
        kept = first.cookies.get("regsim_staff")
        assert ended is not None and kept is not None and ended != kept
        first.cookies.clear()
        first.cookies.set("regsim_staff", ended, path="/staff")
        token = _csrf(first.get("/staff/").text)
        assert first.post("/staff/logout", data={"csrf": token}).status_code == 303
    with TestClient(create_app(settings), follow_redirects=False) as second:
        second.cookies.set("regsim_staff", ended, path="/staff")
        assert second.get("/staff/portfolio").status_code == 303  # refused: back to the login
        second.cookies.set("regsim_staff", kept, path="/staff")
        assert second.get("/staff/portfolio").status_code == 200
        engine = second.app.state.regsim.engine  # type: ignore[attr-defined]
        with engine.begin() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(db.revoked_sessions)).scalar_one() == 1
            # Expired rows go at the next logout (the cookie's own expiry refuses it by then).
            conn.execute(sa.update(db.revoked_sessions).values(expires_at=time.time() - 1.0))
        token = _csrf(second.get("/staff/").text)
        assert second.post("/staff/logout", data={"csrf": token}).status_code == 303
        with engine.connect() as conn:
            rows = conn.execute(sa.select(db.revoked_sessions.c.expires_at)).scalars().all()
        assert len(rows) == 1 and rows[0] > time.time()  # the purged one gone, the new logout kept


def test_pages_show_the_arrangement_search_and_portfolio(staff: TestClient) -> None:
    seeded = _seed(lambda path, body: staff.post(path, json=body, headers=AUTH))
    _login(staff)
    assert staff.get("/staff/?arrangement_id=7").headers["location"] == "/staff/arrangements/7"
    assert staff.get("/staff/?arrangement_id=x7").status_code == 422
    missing = staff.get("/staff/arrangements/999")
    assert missing.status_code == 404 and "No arrangement 999" in missing.text
    page = staff.get("/staff/arrangements/7")
    assert page.status_code == 200
    html = page.text
    assert "<caption>The plan as it stands</caption>" in html and '<th scope="col">Opened</th>' in html
    assert "paid" in html and seeded["thanks"]["policy"] in html
    assert "script" not in html.lower()
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    portfolio = staff.get("/staff/portfolio").text
    assert "Collected (EUR)" in portfolio and "100.00" in portfolio


def test_regsim_staff_user_prints_an_entry_that_logs_in(tmp_path: Path) -> None:
    regsim = Path(sys.executable).with_name("regsim")  # the installed command, as an operator runs it
    made = subprocess.run(
        [str(regsim), "staff-user", "bob", "--password-stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    entry = made.stdout.strip()
    assert entry.startswith("bob:scrypt$") and PASSWORD not in entry
    short = subprocess.run(
        [str(regsim), "staff-user", "bob", "--password-stdin"], input="short\n", capture_output=True, text=True
    )
    assert short.returncode == 2 and "at least 12 characters" in short.stderr
    settings = make_settings(f"sqlite:///{tmp_path / 's.db'}", staff_users=(entry,), session_secret=SECRET)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        form = client.get("/staff/login")
        ok = client.post(
            "/staff/login", data={"username": "bob", "password": PASSWORD, "csrf": _csrf(form.text), "next": "/staff/"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/staff/"


def test_pages_are_off_without_staff_users(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(f"sqlite:///{tmp_path / 's.db'}")), follow_redirects=False) as client:
        off = client.get("/staff/login")
        assert off.status_code == 404 and "REGSIM_STAFF_USERS" in off.text


# -- in a real browser -----------------------------------------------------------------------------------
@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[str]:
    settings = {
        "REGSIM_POLICY": "static-dunning",
        "REGSIM_STORE": f"sqlite:///{tmp_path / 'store.db'}",
        "REGSIM_TOKENS": TOKEN,
        "REGSIM_STAFF_USERS": f"alice:{_HASH}",
        "REGSIM_SESSION_SECRET": SECRET,
    }
    with run_live_server(tmp_path, settings) as base:
        yield base


def test_staff_pages_in_chromium(live_server: str) -> None:
    found = chromium()
    if found is None:
        pytest.skip("Chromium not installed: apt-get install chromium chromium-driver (scripts/setup.sh does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def heading_becomes(text: str) -> None:
        """Wait for the next page's heading: a click returns before the browser has loaded what it asked for."""
        wait = WebDriverWait(browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        wait.until(lambda b: b.find_element(By.TAG_NAME, "h1").text == text)

    with httpx.Client(base_url=live_server, headers=AUTH) as api:
        seeded = _seed(lambda path, body: api.post(path, json=body))
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1500"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=found[1])
    browser = webdriver.Chrome(options=options, service=service)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = []
    try:
        browser.get(f"{live_server}/staff/arrangements/7")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Log in"  # redirected to the form
        browser.find_element(By.ID, "username").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        shots.append(_shot(browser, "1-login"))
        browser.find_element(By.CSS_SELECTOR, "form.stacked button").click()
        heading_becomes("Arrangement 7")  # and brought back

        browser.get(f"{live_server}/staff/")
        field = browser.find_element(By.ID, "arrangement_id")
        field.send_keys("7")
        shots.append(_shot(browser, "2-search"))
        field.submit()
        heading_becomes("Arrangement 7")
        rows = browser.find_elements(By.CSS_SELECTOR, "#installments tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[4].text for r in rows] == ["paid", "open", "open"]
        contacts = browser.find_elements(By.CSS_SELECTOR, "#contacts tbody tr")
        reminder = [c for c in contacts if c.find_element(By.TAG_NAME, "td").text == str(seeded["pre"]["message_id"])]
        assert len(reminder) == 1
        cells = [td.text for td in reminder[0].find_elements(By.TAG_NAME, "td")]
        assert cells[2] and cells[4], cells  # sent and opened
        assert "100.00" in browser.find_element(By.ID, "payments").text
        next_action = browser.find_element(By.ID, "next-action").text
        decision = browser.find_element(By.ID, "next-decision").text
        assert "planned for" in next_action, next_action
        assert "static-dunning" in decision and "Propensity" in decision and "masked other options" in decision
        shots.append(_shot(browser, "3-arrangement"))

        browser.find_element(By.LINK_TEXT, "Portfolio").click()
        heading_becomes("Portfolio")
        kpis = browser.find_element(By.ID, "kpis").text
        assert "Arrangements 1" in kpis and "Collected (EUR) 100.00" in kpis, kpis
        assert "email" in browser.find_element(By.ID, "channels").text
        shots.append(_shot(browser, "4-portfolio"))

        browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
        heading_becomes("Log in")
    finally:
        browser.quit()
    print("staff page screenshots:", *shots, sep="\n  ")


def _shot(browser: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, max(800, int(height) + 120))
    assert browser.save_screenshot(str(path))
    return path
