"""Hand the browser to a person: an MFA code no recipe covers (the demo CRM behind its login)
and a CAPTCHA taken over through the DevTools link (a page served by the test), each run
end to end through `run_thread` with Debian's Chromium."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pyotp
import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.report import report_data, write_report
from graph.app.runner import run_thread
from graph.app.threads import recent_runs
from graph.testing import ScriptedChatModel
from tests.fixtures.langsmith import langsmith_capture  # noqa: F401 - a fixture
from tests.fixtures.logins import Crm, auth_config, crm_behind_login  # noqa: F401 - `crm`
from tests.fixtures.loopback import AwsHandler, serve
from tools import default_registry

pytestmark = pytest.mark.browser


def mfa_by_a_person(crm: Crm) -> dict:
    """The CRM's auth config whose login recognises the code page but has no TOTP secret."""
    config = auth_config(crm)
    del config["secrets"]["crm_otp"]
    del config["logins"]["crm"]["totp"]["secret"]
    return config


def read_customer(crm: Crm) -> Plan:
    return Plan(goal="read customer 3", steps=[
        Step(id="open", tool="browser_goto",
             args={"url": f"{crm.url}/customers/3", "session": "crm"}),
        Step(id="read", tool="browser_read", depends_on=["open"],
             args={"selector": "h1", "session": "crm"})])


def the_code(crm: Crm) -> str:
    return pyotp.TOTP(crm.credentials.totp_seed).now()


def files_holding(folder: Path, code: str) -> list[str]:
    """Files under `folder` holding `code` plain (where no other digit touches it: a
    timestamp may hold any six digits), URL-encoded, or in base64."""
    plain = re.compile(rf"(?<![0-9]){code}(?![0-9])".encode())
    forms = [quote(code).encode(), base64.b64encode(code.encode())]
    return [str(path) for path in folder.rglob("*") if path.is_file()
            and (plain.search(data := path.read_bytes()) or any(f in data for f in forms))]


def mfa_run(crm: Any) -> tuple[Context, ScriptedChatModel]:
    """A run that reads customer 3 on the CRM, whose MFA code only a person can give."""
    context = Context(approval="auto", allowed_hosts=[crm.host],
                      auth_config=json.dumps(mfa_by_a_person(crm)))
    return context, ScriptedChatModel(responses=[
        read_customer(crm), Decision(action="finish", reason="read"), "Initech"])


@pytest.mark.timeout(180)
async def test_an_mfa_code_no_recipe_covers_is_typed_from_a_person_and_kept_nowhere(
        crm, isolated_env, langsmith_capture):  # noqa: F811 - fixtures
    requests: list[dict[str, Any]] = []
    codes: list[str] = []

    def person(request: dict[str, Any]) -> dict[str, str]:
        requests.append(request)
        codes.append(the_code(crm))
        return {"action": "value", "value": codes[-1]}

    context, model = mfa_run(crm)
    registry = default_registry()
    try:
        thread, final = await run_thread("read customer 3", context=context, model=model,
                                         tools=registry, decide=person)
    finally:
        await registry.aclose()

    [asked] = requests
    assert asked["kind"] == "handoff" and asked["need"] == "mfa" and asked["step_id"] == "open"
    assert asked["url"] == f"{crm.url}/login/mfa"
    assert Path(asked["screenshot"]).read_bytes().startswith(b"\x89PNG")
    assert [form["action"] for form in asked["answers"]] == ["value", "refuse"]
    assert final.status == RunStatus.COMPLETED, final.reason
    read = next(r for r in final.results if r.step_id == "read")
    assert read.output["text"] == "Initech"
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]  # the person's code took

    page = await write_report(thread)
    [handed] = (await report_data(thread))["hand_offs"]
    assert (handed["step_id"], handed["need"], handed["answer"]) == ("open", "mfa", "value")
    assert 'class="hand-off"' in page.read_text()
    wait_for_all_tracers()
    assert any(isolated_env.rglob("*.sqlite")) and any(isolated_env.rglob("*.jsonl"))
    assert files_holding(isolated_env, codes[0]) == []
    traced = b"\n".join(langsmith_capture)
    assert b"handoff" in traced  # the interrupt was traced...
    assert not re.search(rf"(?<![0-9]){codes[0]}(?![0-9])".encode(), traced)  # ...not the code


CAPTCHA_PAGE = """<!doctype html><title>Are you human?</title>
<div data-captcha><button id="solve" onclick="document.cookie='solved=1; path=/';
location.href='/target'">I am human</button></div>"""


class CaptchaSite(AwsHandler):
    """`/target` behind a CAPTCHA (solved: a cookie); `/elsewhere`, where a person may go."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/elsewhere":
            page = "<!doctype html><title>Elsewhere</title><h1>Left here by the person</h1>"
        elif "solved=1" in self.headers.get("Cookie", ""):
            page = "<!doctype html><title>Target</title><h1>The target</h1>"
        else:
            page = CAPTCHA_PAGE
        self.reply(200, page, content_type="text/html")


@pytest.fixture
def captcha_site():
    server, url = serve(CaptchaSite)
    yield url
    server.shutdown()


def take_over(request: dict[str, Any], site: str) -> list[str]:
    """Play the person, in a thread of its own (sync Playwright): connect to the browser
    behind the DevTools link over CDP, solve the CAPTCHA, then leave the page elsewhere.
    Returns the titles the person saw."""
    from playwright.sync_api import sync_playwright

    seen: list[str] = []

    def person() -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.connect_over_cdp(request["cdp_url"])
            [page] = [page for context in browser.contexts for page in context.pages
                      if page.url == request["url"]]
            seen.append(page.title())
            page.click("#solve")
            page.wait_for_url(f"{site}/target")
            seen.append(page.title())
            page.goto(f"{site}/elsewhere")

    helper = threading.Thread(target=person)
    helper.start()
    helper.join(60)
    assert not helper.is_alive()
    return seen


@pytest.mark.timeout(180)
async def test_a_captcha_taken_over_through_devtools_goes_on_from_the_page_left(
        captcha_site, isolated_env):
    host = captcha_site.removeprefix("http://")
    requests: list[dict[str, Any]] = []
    seen: list[str] = []

    def person(request: dict[str, Any]) -> dict[str, str]:
        requests.append(request)
        seen.extend(take_over(request, captcha_site))
        return {"action": "done"}

    plan = Plan(goal="read the target", steps=[
        Step(id="open", tool="browser_goto",
             args={"url": f"{captcha_site}/target", "session": "s"}),
        Step(id="read", tool="browser_read", depends_on=["open"],
             args={"selector": "h1", "session": "s"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="read"), "ok"])
    registry = default_registry()
    try:
        _, final = await run_thread("read the target", model=model, tools=registry,
                                    decide=person, context=Context(
                                        approval="auto", allowed_hosts=[host]))
    finally:
        await registry.aclose()

    [asked] = requests
    assert asked["need"] == "captcha" and asked["url"] == f"{captcha_site}/target"
    port = asked["cdp_url"].rsplit(":", 1)[1]
    assert asked["devtools"].startswith(f"http://127.0.0.1:{port}/devtools/inspector.html?ws=")
    assert seen == ["Are you human?", "Target"]
    assert final.status == RunStatus.COMPLETED, final.reason
    opened = next(r for r in final.results if r.step_id == "open")
    read = next(r for r in final.results if r.step_id == "read")
    # The step went on from the page as the person left it: not loaded again.
    assert opened.output["url"] == f"{captcha_site}/elsewhere"
    assert read.output["text"] == "Left here by the person"


@pytest.mark.timeout(240)
async def test_an_unanswered_hand_off_waits_for_a_person_and_a_later_resume_finishes_it(
        crm, isolated_env):
    context, model = mfa_run(crm)
    registry = default_registry()
    try:
        thread, waiting = await run_thread("read customer 3", context=context, model=model,
                                           tools=registry)
        assert waiting.status == RunStatus.NEEDS_PERSON
        assert "waits for a person: the sign-in code (MFA) for crm" in waiting.reason
        [row] = await recent_runs()
        assert row["thread_id"] == thread and row["status"] == "needs_person"

        # Later (this run's browser is gone): the person answers, the step runs again,
        # signs in again and asks for a fresh code, which the person gives too.
        asked: list[dict[str, Any]] = []

        def person(request: dict[str, Any]) -> dict[str, str]:
            asked.append(request)
            return {"action": "value", "value": the_code(crm)}

        _, final = await run_thread(None, thread_id=thread, model=model, tools=registry,
                                    decide=person)
    finally:
        await registry.aclose()
    assert final.status == RunStatus.COMPLETED, final.reason
    assert [request["need"] for request in asked] == ["mfa", "mfa"]
    assert next(r for r in final.results if r.step_id == "read").output["text"] == "Initech"


@pytest.mark.timeout(120)
async def test_a_declared_check_with_no_person_is_refused_by_the_eval_policy_typed(
        captcha_site, isolated_env):
    from graph.app.eval.agents import decider

    eval_policy = decider(SimpleNamespace(decide="approve"))
    asked: list[dict[str, Any]] = []

    def no_person(request: dict[str, Any]) -> Any:
        asked.append(request)
        return eval_policy(request)

    plan = Plan(goal="check a page", steps=[
        Step(id="open", tool="browser_goto", args={
            "url": f"{captcha_site}/elsewhere", "session": "s",
            "ask_person": "check that the heading is right"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="done"),
                                         "could not check"])
    registry = default_registry()
    try:
        _, final = await run_thread("check a page", model=model, tools=registry,
                                    decide=no_person, context=Context(
                                        approval="auto",
                                        allowed_hosts=[captcha_site.removeprefix("http://")]))
    finally:
        await registry.aclose()
    [request] = asked
    assert request["need"] == "check" and request["asked"] == "check that the heading is right"
    assert request["url"] == f"{captcha_site}/elsewhere"
    assert final.status == RunStatus.FAILED, final.reason
    [opened] = final.results
    assert opened.status == "rejected" and opened.error.type == "PersonNeeded"
    assert opened.error.message == ("a person was needed (check: check that the heading is "
                                    "right) and refused: an eval has no person to hand it to")


@pytest.mark.timeout(180)
async def test_nova_acts_ui_takeover_hands_the_page_over_and_the_act_goes_on_from_it(
        site, nova_act_service, isolated_env):
    from tests.fixtures.nova_act_service import call, observe_then
    from tools import BrowserPool, NovaActExecutor, SandboxPolicy, StepContext
    from tools.people import PersonAnswer, PersonNeeded

    asked = "solve the CAPTCHA, then hand the page back"
    # The model asks for a human (a tool call of its own, with its message).
    takeover = {"callId": "human-1", "name": "human_UiTakeover", "input": {"message": asked}}
    nova_act_service.scripts.append(lambda step, seen: observe_then(takeover))
    nova_act_service.scripts.append(lambda step, seen: observe_then(takeover) if step == 0
                                    else [call("return", "done")])
    pool = BrowserPool()
    nova = NovaActExecutor(pool)
    step = StepContext(policy=SandboxPolicy(allowed_hosts=(site.removeprefix("http://"),),
                                            browser_max_steps=5, browser_timeout_seconds=60),
                       scope="run-1")
    try:
        with pytest.raises(PersonNeeded) as needed:
            await nova.act("file the form", f"{site}/customers", step, session="act")
        hand_off = needed.value.hand_off
        assert hand_off.kind == "nova_act_takeover" and hand_off.asked == asked
        assert hand_off.url == f"{site}/customers" and hand_off.devtools

        # The person takes the page over (over CDP, as the DevTools link does) and leaves
        # it on another page; the act goes on from there.
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.connect_over_cdp(hand_off.cdp_url)
            await browser.contexts[0].pages[0].goto(f"{site}/customers/2")
        answered = dataclasses.replace(step, hand_off=hand_off,
                                       person=PersonAnswer(action="done"))
        out = await nova.act("file the form", f"{site}/customers", answered, session="act")
    finally:
        await pool.aclose()
    assert out["steps"] == 2  # the takeover, said complete this time, then the return
    assert nova_act_service.observations[-1]["activeURL"] == f"{site}/customers/2"
