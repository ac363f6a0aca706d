"""Logins the executor does, secrets typed in the browser, and kept profiles: the demo CRM
behind its login (password, then a TOTP code), Debian's Chromium through Playwright."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langchain_core.tools import tool
from PIL import Image

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.runner import run_thread
from graph.events import Event, StepStarted
from graph.testing import ScriptedChatModel
from tests.fixtures.logins import auth_config, crm_behind_login, make_auth, step_of  # noqa: F401 - `crm`
from tests.fixtures.processes import chromium_browsers
from tools import BrowserPool, PlaywrightExecutor, default_registry
from tools.auth import SecretNotAllowed
from tools.auth.errors import LoginFailed
from tools.auth.profiles import Profiles
from tools.step import StepFiles

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser() -> AsyncIterator[PlaywrightExecutor]:
    pool = BrowserPool()
    yield PlaywrightExecutor(pool)
    await pool.aclose()


async def test_a_first_visit_logs_in_with_the_recipe_and_the_step_carries_on(
        browser, crm, isolated_env):
    step = step_of(crm, make_auth(auth_config(crm), isolated_env))
    opened = await browser.goto(f"{crm.url}/customers/3", step, session="crm")
    assert opened["url"] == f"{crm.url}/customers/3" and opened["title"] == "Initech"
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]
    heading = await browser.read(step, selector="h1", session="crm")
    assert heading["text"] == "Initech"
    await browser.goto(f"{crm.url}/invoices", step, session="crm")
    assert len(crm.attempts()) == 2  # signed in: no login request since


async def test_a_second_run_with_the_kept_profile_sends_no_login_request(crm, isolated_env):
    auth = make_auth(auth_config(crm, profiles=("crm",)), isolated_env)
    first = BrowserPool()
    try:
        await PlaywrightExecutor(first).goto(f"{crm.url}/customers/3", step_of(crm, auth),
                                             session="crm")
    finally:
        await first.aclose()
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]
    kept = isolated_env / "profiles" / "crm.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert crm.credentials.password not in kept.read_text()
    assert Profiles(isolated_env / "profiles").summary("crm").domains == ("127.0.0.1",)

    # Another run, in another pool (as another process or executor sharing the folder).
    second = BrowserPool()
    try:
        opened = await PlaywrightExecutor(second).goto(
            f"{crm.url}/customers/4", step_of(crm, auth, scope="run-2"), session="crm")
    finally:
        await second.aclose()
    assert opened["url"] == f"{crm.url}/customers/4" and opened["title"] == "Umbrella"
    assert len(crm.attempts()) == 2  # no login request: the profile's session lives

    # A session that is not kept starts empty: it logs in.
    third = BrowserPool()
    try:
        await PlaywrightExecutor(third).goto(f"{crm.url}/customers/4",
                                             step_of(crm, auth, scope="run-3"), session="other")
    finally:
        await third.aclose()
    assert len(crm.attempts()) == 4


async def test_a_session_that_expires_mid_run_is_logged_in_again_once(browser, crm,
                                                                      isolated_env):
    step = step_of(crm, make_auth(auth_config(crm), isolated_env))
    await browser.goto(f"{crm.url}/customers/3", step, session="crm")
    crm.auth.expire_sessions()
    opened = await browser.goto(f"{crm.url}/customers/4", step, session="crm")
    assert opened["url"] == f"{crm.url}/customers/4" and opened["title"] == "Umbrella"
    # A link followed into the expired session: logged in, then where the link led.
    crm.auth.expire_sessions()
    clicked = await browser.click(step, selector="a[href='/invoices']", session="crm")
    assert clicked["url"] == f"{crm.url}/invoices"
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")] * 3


async def test_a_wrong_password_is_login_failed_naming_the_check_and_never_retried(
        browser, crm, isolated_env, monkeypatch):
    monkeypatch.setenv("CRM_PASSWORD", "not-the-password")
    step = step_of(crm, make_auth(auth_config(crm), isolated_env))
    with pytest.raises(LoginFailed) as failed:
        await browser.goto(f"{crm.url}/customers/3", step, session="crm")
    assert failed.value.type_name == "LoginFailed" and not failed.value.retryable
    assert "its check {not_url: '/login*'} does not hold" in str(failed.value)
    assert "not-the-password" not in str(failed.value)
    # Later steps of the run do not try again: one attempt in all.
    with pytest.raises(LoginFailed, match="earlier in this run"):
        await browser.goto(f"{crm.url}/customers/4", step, session="crm")
    assert crm.attempts() == [("password", "bad_password")]


async def test_a_secret_is_refused_on_a_lookalike_login_of_another_allowed_host(
        browser, crm, isolated_env):
    # The same server under `localhost`: allowed for the run, not for the secret.
    step = step_of(crm, make_auth(auth_config(crm), isolated_env))
    lure = f"http://{crm.other_host}/hostile/lookalike-login"
    opened = await browser.goto(lure, step, session="phish")
    assert opened["title"] == "Sign in" and crm.attempts() == []  # no recipe for this host
    await browser.fill(crm.credentials.username, step, selector="#username", session="phish")
    with pytest.raises(SecretNotAllowed) as refused:
        await browser.fill("${secret.crm_password}", step, selector="#password",
                           session="phish")
    assert refused.value.type_name == "SecretNotAllowed" and refused.value.status == "blocked"
    assert str(refused.value).startswith(f"secret 'crm_password' may not be sent to "
                                         f"{crm.other_host}")
    assert crm.auth.lure_posts() == []
    # Sent now, the form shows that nothing was typed into the password field.
    await browser.click(step, selector="button[type=submit]", session="phish")
    [posted] = crm.auth.lure_posts()
    assert dict(posted["fields"])["password"] == ""
    assert crm.credentials.password not in json.dumps(crm.auth.lure_posts())


def _magenta_pixels(png: Path) -> int:
    """Pixels of Playwright's mask colour (#FF00FF) in a screenshot."""
    colours = Image.open(png).convert("RGB").getcolors(1 << 24) or []
    return next((count for count, colour in colours if colour == (255, 0, 255)), 0)


async def test_a_field_given_a_secret_is_masked_in_the_steps_screenshot(browser, crm,
                                                                       isolated_env):
    config = auth_config(crm)
    del config["logins"]  # the login page stays as it is: no recipe logs in on it
    auth = make_auth(config, isolated_env)
    run = isolated_env / "runs" / "run-1"

    async def fill_login_form(name: str, username: str) -> Path:
        await browser.goto(f"{crm.url}/login", step_of(crm, auth), session=name)
        files = StepFiles(run, f"v1-{name}")
        filled = await browser.fill(username, step_of(crm, auth, files=files),
                                    selector="#username", session=name)
        assert filled["filled"] == username  # as planned: a reference stays a reference
        await browser.fill("${secret.crm_password}", step_of(crm, auth, files=files),
                           selector="#password", session=name)
        return files.screenshot

    # The password typed into the username field (a text field, shown in clear) as well.
    secret_in_both = await fill_login_form("both", "${secret.crm_password}")
    plain_username = await fill_login_form("plain", "ops")
    masked, masked_password_only = (_magenta_pixels(secret_in_both),
                                    _magenta_pixels(plain_username))
    # A password field is masked whatever it holds; a field given a secret too.
    assert masked_password_only > 1000
    assert masked > 1.8 * masked_password_only
    assert crm.attempts() == []  # the login page itself: the steps were not logins


@pytest.mark.timeout(180)
async def test_a_named_session_survives_chromium_killed_during_its_read(crm, isolated_env):
    """Logged in through the recipe, the session's Chromium is stopped, then SIGKILLed while
    the session's read waits on it: the read is retried in the session rebuilt from the
    state it kept (no new login) on the page it was on, and the run completes."""
    frozen: list[int] = []

    @tool
    def freeze_the_browser() -> str:
        """Stop this process's Chromium (the next browser step hangs on it)."""
        frozen.extend(chromium_browsers(os.getpid()))
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return f"stopped {len(frozen)}"

    registry = default_registry()
    registry.register(freeze_the_browser, read_only=True)
    plan = Plan(goal="read a customer", steps=[
        Step(id="open", tool="browser_goto",
             args={"url": f"{crm.url}/customers/3", "session": "crm"}),
        Step(id="freeze", tool="freeze_the_browser", depends_on=["open"]),
        Step(id="read", tool="browser_read", depends_on=["freeze"],
             args={"selector": "h1", "session": "crm"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
    context = Context(step_screenshots=False, approval="auto", allowed_hosts=[crm.host],
                      auth_config=json.dumps(auth_config(crm)), dependency_wait_seconds=60)
    events: list[Event] = []
    run = asyncio.ensure_future(run_thread("read customer 3", context=context, model=model,
                                           tools=registry, on_event=events.append))
    try:
        while not any(isinstance(e, StepStarted) and e.step_id == "read" for e in events):
            assert not run.done(), run.result()[1].reason
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the read is waiting on the stopped browser
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGKILL)
        _, final = await asyncio.wait_for(run, 150)
    finally:
        await registry.aclose()
    read = next(r for r in final.results if r.step_id == "read")
    assert final.status == RunStatus.COMPLETED, read.error
    assert read.output["text"] == "Initech" and read.attempts >= 2
    assert read.output["url"] == f"{crm.url}/customers/3"
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]  # its cookies came back
