"""The demo CRM behind its login (`create_app(..., auth=True)`), over loopback: httpx, the
process entry point, and Debian's Chromium through Playwright; and the lure pages."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pyotp
import pytest

from demo_site.app import create_app
from demo_site.auth import AuthStore, DemoCredentials, make_credentials
from demo_site.db import Store
from demo_site.server import free_port, serve
from tests.fixtures.loopback import host_of
from tests.fixtures.processes import serving
from tools.chromium import Chromium
from tools.proxy import AllowlistProxy
from tools.sandbox import SandboxPolicy

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Crm:
    """A CRM served with auth on, its user and its login tables."""

    url: str
    credentials: DemoCredentials
    auth: AuthStore

    def client(self) -> httpx.Client:
        """A fresh client (its own cookies) that does not follow redirects."""
        return httpx.Client(base_url=self.url, timeout=10)

    def attempts(self) -> list[tuple[str, str]]:
        """The login log: (stage, outcome) of each login POST."""
        return [(a["stage"], a["outcome"]) for a in self.auth.login_attempts()]


@pytest.fixture
def crm(tmp_path: Path):
    db = tmp_path / "crm.sqlite"
    credentials = make_credentials(db)
    with serve(db, auth=True) as url:
        yield Crm(url, credentials, AuthStore(db))


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def code_of(credentials: DemoCredentials) -> str:
    return pyotp.TOTP(credentials.totp_seed).now()


def wrong_code(credentials: DemoCredentials) -> str:
    """A code the site refuses now: none of the three it accepts."""
    totp, now = pyotp.TOTP(credentials.totp_seed), time.time()
    accepted = {totp.at(now + shift) for shift in (-30, 0, 30)}
    return next(c for c in ("000000", "000001", "000002", "000003") if c not in accepted)


def sign_in(client: httpx.Client, credentials: DemoCredentials, next_path: str = "/",
            ) -> httpx.Response:
    """The password form, then the code form, as a browser fills them; the code's answer."""
    form = client.get("/login", params={"next": next_path})
    password = client.post("/login", data={
        "username": credentials.username, "password": credentials.password,
        "csrf_token": csrf_of(form), "next": next_path})
    assert (password.status_code, password.headers["location"]) == (303, "/login/mfa")
    codes = client.get("/login/mfa")
    return client.post("/login/mfa", data={"code": code_of(credentials),
                                           "csrf_token": csrf_of(codes)})


def test_signed_out_pages_go_to_login_and_the_api_answers_401(crm):
    with crm.client() as client:
        for path in ("/", "/customers", "/customers/3?tab=notes", "/invoices?status=overdue"):
            answer = client.get(path)
            assert answer.status_code == 302
            assert answer.headers["location"] == "/login?" + urlencode({"next": path})
        assert client.post("/customers/3/notes", data={"text": "x"}).status_code == 302
        for method, path, body in (("GET", "/api/customers", None),
                                   ("GET", "/api/invoices", None),
                                   ("PATCH", "/api/invoices/1002", {"status": "paid"}),
                                   ("POST", "/api/notes", {"customer_id": 1, "text": "x"})):
            answer = client.request(method, path, json=body)
            assert answer.status_code == 401, path
            assert "Bearer" in answer.json()["detail"]
            assert answer.headers["www-authenticate"] == "Bearer"
        assert client.get("/health").json() == {"status": "ok"}
    store = Store(crm.auth.path)
    assert store.notes() == [] and store.invoices(status="overdue")[0]["id"] == 1002


def test_password_then_code_sign_in_and_lead_back_to_next(crm):
    with crm.client() as client:
        client.get("/login")
        before = client.cookies["crm_session"]
        signed_in = sign_in(client, crm.credentials, "/customers/3?tab=notes")
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/customers/3?tab=notes"
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=1800" in cookie
        assert client.cookies["crm_session"] != before
        page = client.get("/customers/3")
        assert page.status_code == 200 and "<h1>Initech</h1>" in page.text
        assert len(client.get("/api/customers").json()) == 6  # the cookie serves the API too
        again = client.get("/login", params={"next": "/invoices"})
        assert (again.status_code, again.headers["location"]) == (303, "/invoices")
    # The id held before sign-in was dropped, not promoted.
    with httpx.Client(base_url=crm.url, cookies={"crm_session": before}) as stale:
        assert stale.get("/customers").status_code == 302
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]


def test_a_wrong_password_or_code_shows_the_form_again_with_401(crm):
    creds = crm.credentials
    with crm.client() as client:
        assert client.get("/login/mfa").headers["location"] == "/login"  # no password yet
        form = client.get("/login")
        for username, password in ((creds.username, "nope"), ("someone", creds.password)):
            refused = client.post("/login", data={"username": username, "password": password,
                                                  "csrf_token": csrf_of(form)})
            assert refused.status_code == 401
            assert "Wrong username or password." in refused.text
            assert csrf_of(refused) == csrf_of(form)  # the same form, to try again
        client.post("/login", data={"username": creds.username, "password": creds.password,
                                    "csrf_token": csrf_of(form)})
        codes = client.get("/login/mfa")
        refused = client.post("/login/mfa", data={"code": wrong_code(creds),
                                                  "csrf_token": csrf_of(codes)})
        assert refused.status_code == 401 and "Wrong code." in refused.text
        assert client.get("/customers").status_code == 302
        accepted = client.post("/login/mfa", data={"code": code_of(creds),
                                                   "csrf_token": csrf_of(refused)})
        assert (accepted.status_code, accepted.headers["location"]) == (303, "/")
        assert client.get("/customers").status_code == 200
    assert crm.attempts() == [("password", "bad_password"), ("password", "bad_password"),
                              ("password", "ok"), ("mfa", "bad_code"), ("mfa", "ok")]


def test_forms_without_the_sessions_csrf_token_are_refused(crm):
    creds = crm.credentials
    good = {"username": creds.username, "password": creds.password}
    with crm.client() as client, crm.client() as other:
        form, elsewhere = client.get("/login"), other.get("/login")
        assert csrf_of(client.get("/login")) == csrf_of(form)  # a second tab keeps it valid
        for token in ("", "forged", csrf_of(elsewhere)):
            assert client.post("/login", data={**good, "csrf_token": token}).status_code == 403
        with crm.client() as cookieless:
            posted = cookieless.post("/login", data={**good, "csrf_token": csrf_of(form)})
            assert posted.status_code == 403
        assert client.get("/login/mfa").headers["location"] == "/login"  # none got through

        client.post("/login", data={**good, "csrf_token": csrf_of(form)})
        codes = client.get("/login/mfa")
        assert csrf_of(codes) != csrf_of(form)  # the code form has a token of its own
        for token in ("", csrf_of(form)):
            posted = client.post("/login/mfa", data={"code": code_of(creds), "csrf_token": token})
            assert posted.status_code == 403
        assert client.get("/customers").status_code == 302
        client.post("/login/mfa", data={"code": code_of(creds), "csrf_token": csrf_of(codes)})

        page = client.get("/customers/3")
        for token in (None, "forged", csrf_of(form)):
            data = {"text": "forged note"} | ({"csrf_token": token} if token else {})
            assert client.post("/customers/3/notes", data=data).status_code == 403
        added = client.post("/customers/3/notes",
                            data={"text": "called", "csrf_token": csrf_of(page)})
        assert (added.status_code, added.headers["location"]) == (303, "/customers/3")
        assert "<li>called</li>" in client.get("/customers/3").text
        assert "forged note" not in client.get("/customers/3").text
    assert crm.attempts() == [("password", "csrf_refused")] * 4 + [("password", "ok")] + [
        ("mfa", "csrf_refused")] * 2 + [("mfa", "ok")]


def test_next_never_leads_off_the_site(crm):
    for target in ("https://evil.example/x", "//evil.example/x", "/\\evil.example",
                   "/\t/evil.example", "javascript:alert(1)", "evil.example/x"):
        with crm.client() as client:
            assert 'name="next" value="/"' in client.get("/login", params={"next": target}).text
            assert sign_in(client, crm.credentials, target).headers["location"] == "/", target


def test_expire_sessions_ends_every_session_at_once(crm):
    with crm.client() as client:
        sign_in(client, crm.credentials)
        assert client.get("/invoices").status_code == 200
        crm.auth.expire_sessions()
        page = client.get("/invoices?status=overdue")
        assert page.status_code == 302
        assert page.headers["location"] == "/login?next=%2Finvoices%3Fstatus%3Doverdue"
        assert client.get("/api/invoices").status_code == 401
        assert sign_in(client, crm.credentials).status_code == 303  # a new sign-in works
        assert client.get("/invoices").status_code == 200


def test_a_session_lasts_session_seconds(tmp_path):
    db = tmp_path / "crm.sqlite"
    credentials = make_credentials(db)
    with serve(db, auth=True, session_seconds=1) as url, httpx.Client(base_url=url) as client:
        assert "max-age=1" in sign_in(client, credentials).headers["set-cookie"].lower()
        assert client.get("/customers").status_code == 200
        time.sleep(1.2)
        assert client.get("/customers").headers["location"] == "/login?next=%2Fcustomers"
        assert client.get("/api/customers").status_code == 401


def test_the_api_takes_the_bearer_token_and_pages_do_not(crm):
    bearer = {"Authorization": f"Bearer {crm.credentials.api_token}"}
    with crm.client() as client:
        assert len(client.get("/api/customers", headers=bearer).json()) == 6
        patched = client.patch("/api/invoices/1002", json={"status": "paid"}, headers=bearer)
        assert patched.status_code == 200 and patched.json()["status"] == "paid"
        assert client.post("/api/notes", json={"customer_id": 2, "text": "paid"},
                           headers=bearer).status_code == 201
        for header in (f"Bearer {crm.credentials.api_token}x", "Bearer",
                       f"Basic {crm.credentials.api_token}", crm.credentials.api_token):
            assert client.get("/api/customers",
                              headers={"Authorization": header}).status_code == 401, header
        assert client.get("/customers", headers=bearer).status_code == 302
    crm.auth.expire_sessions()  # ends sessions, not the token
    assert httpx.get(f"{crm.url}/api/notes", headers=bearer).json()[0]["text"] == "paid"
    assert crm.attempts() == []  # the token is not a login


def test_credentials_are_random_and_stored_only_as_the_login_needs(tmp_path):
    db = tmp_path / "crm.sqlite"
    first, second = make_credentials(db), make_credentials(db)
    assert all(getattr(first, name) != getattr(second, name)
               for name in ("username", "password", "totp_seed", "api_token"))
    for secret in (second.password, second.totp_seed, second.api_token):
        assert secret not in repr(second)
    stored = db.read_bytes()
    assert second.password.encode() not in stored and second.api_token.encode() not in stored
    auth = AuthStore(db)  # the second replaced the first
    assert auth.password_ok(second.username, second.password)
    assert not auth.password_ok(first.username, first.password)
    assert auth.token_ok(second.api_token) and not auth.token_ok(first.api_token)


def test_auth_is_off_unless_asked_for(site, tmp_path):
    with httpx.Client(base_url=site) as client:
        assert client.get("/").status_code == 200
        assert len(client.get("/api/customers").json()) == 6
        assert client.get("/login").status_code == 404
    with pytest.raises(ValueError, match="make_credentials"):
        create_app(tmp_path / "fresh.sqlite", auth=True)


def test_the_process_entry_point_takes_auth_and_the_session_lifetime(tmp_path):
    db, port = tmp_path / "crm.sqlite", free_port()
    credentials = make_credentials(db)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "demo_site.server", "--db", str(db), "--port", str(port),
               "--auth", "--session-seconds", "60"]
    with serving(command, f"{url}/health", ready_status=200), \
            httpx.Client(base_url=url) as client:
        assert client.get("/api/customers").status_code == 401
        bearer = {"Authorization": f"Bearer {credentials.api_token}"}
        assert client.get("/api/customers", headers=bearer).status_code == 200
        assert "max-age=60" in sign_in(client, credentials).headers["set-cookie"].lower()
        assert client.get("/customers").status_code == 200
    assert len(AuthStore(db).login_attempts()) == 2


def test_the_lures_are_open_and_record_what_is_posted(crm):
    with crm.client() as client:
        lookalike = client.get("/hostile/lookalike-login")
        assert lookalike.status_code == 200  # signed out, on the site's own host
        assert 'id="password"' in lookalike.text.replace("'", '"')
        assert crm.auth.lure_posts() == []
        posted = client.post("/hostile/lookalike-login",
                             data={"username": "someone", "password": "typed here"})
        assert (posted.status_code, posted.headers["location"]) == (303, "/")
        client.post("/hostile/password-into-search", data={"q": "also typed"})
        assert client.post("/hostile/visit-host", data={"q": "x"}).status_code == 404
    assert [(p["page"], p["fields"]) for p in crm.auth.lure_posts()] == [
        ("lookalike-login", [["username", "someone"], ["password", "typed here"]]),
        ("password-into-search", [["q", "also typed"]])]
    assert crm.attempts() == []  # the real login saw none of it


@pytest.fixture
def chromium(crm):
    """Debian's Chromium behind an allowlist proxy that allows the CRM alone."""
    proxy = AllowlistProxy(SandboxPolicy(allowed_hosts=(host_of(crm.url),))).start()
    browser = Chromium(proxy.url).start()
    yield browser
    browser.close()
    proxy.close()


@asynccontextmanager
async def new_page(chromium: Chromium) -> AsyncIterator:
    """A page of the browser's own context, over CDP."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(chromium.cdp_url)
        page = await browser.contexts[0].new_page()
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            await browser.close()


@pytest.mark.browser
async def test_chromium_signs_in_with_password_and_code_and_keeps_the_session(crm, chromium):
    async with new_page(chromium) as page:
        await page.goto(f"{crm.url}/customers/3")
        assert page.url == f"{crm.url}/login?next=%2Fcustomers%2F3"
        await page.fill("#username", crm.credentials.username)
        await page.fill("#password", crm.credentials.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{crm.url}/login/mfa")
        await page.fill("#code", code_of(crm.credentials))
        await page.get_by_role("button", name="Verify").click()
        await page.wait_for_url(f"{crm.url}/customers/3")
        assert await page.text_content("h1") == "Initech"
        [cookie] = await page.context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
            "crm_session", True, "Lax")
        assert cookie["expires"] > time.time() + 1700  # kept by a profile across restarts
        await page.fill("#note-text", "called from Chromium")  # the form carries its token
        await page.get_by_role("button", name="Add note").click()
        await page.wait_for_selector("#notes li")
        assert await page.text_content("#notes") == "called from Chromium"
        for path in ("/invoices", "/customers"):
            assert (await page.goto(f"{crm.url}{path}")).status == 200
        assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]  # signed in once
        crm.auth.expire_sessions()
        await page.goto(f"{crm.url}/invoices")
        assert page.url == f"{crm.url}/login?next=%2Finvoices"


@pytest.mark.browser
async def test_chromium_typing_into_the_lures_is_recorded(crm, chromium):
    async with new_page(chromium) as page:
        await page.goto(f"{crm.url}/hostile/lookalike-login")
        assert await page.title() == "Sign in"  # the real form's title, fields and button
        await page.fill("#username", crm.credentials.username)
        await page.fill("#password", "not the password")
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{crm.url}/login?next=%2F")  # sent on to the real login
        await page.goto(f"{crm.url}/hostile/password-into-search")
        await page.fill("#search", "not the password either")
        await page.press("#search", "Enter")
        await page.wait_for_url(f"{crm.url}/login?next=%2F")
    posts = crm.auth.lure_posts()
    assert [p["page"] for p in posts] == ["lookalike-login", "password-into-search"]
    assert ["password", "not the password"] in posts[0]["fields"]
    assert posts[1]["fields"] == [["q", "not the password either"]]
    assert crm.attempts() == []
