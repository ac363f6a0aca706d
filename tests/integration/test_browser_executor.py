"""The offline browser executor: Playwright over Debian's Chromium, behind the allowlist proxy."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from demo_site.server import free_port
from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.testing import ScriptedChatModel
from tools import (
    BlockedError,
    BrowserPool,
    PlaywrightExecutor,
    SandboxPolicy,
    StepContext,
    ToolError,
    default_registry,
)
from tools.step import RemoteBrowser

pytestmark = pytest.mark.browser


@pytest.fixture
async def browser():
    pool = BrowserPool()
    yield PlaywrightExecutor(pool)
    await pool.aclose()


@pytest.fixture
def step(site) -> StepContext:
    return StepContext(policy=SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,)))


async def test_goto_fill_click_read_in_one_session(browser, step, site):
    opened = await browser.goto(f"{site}/customers/3", step, session="crm")
    assert opened["status"] == 200 and opened["title"] == "Initech"
    await browser.fill("called about the invoice", step, selector="#note-text", session="crm")
    clicked = await browser.click(step, role="button", name="Add note", session="crm")
    assert clicked["url"] == f"{site}/customers/3"  # the form posted and redirected back
    notes = await browser.read(step, selector="#notes", session="crm")
    assert notes["text"] == "called about the invoice"
    table = await browser.read(step, role="table", name="Invoices", kind="table",
                               session="crm")
    assert table["rows"] == [{"ID": "1003", "Amount": "45.5", "Due": "2026-12-20",
                              "Status": "open"}]


async def test_missing_selector_is_a_typed_error(browser, step, site):
    await browser.goto(f"{site}/customers", step, session="s")
    with pytest.raises(ToolError) as raised:
        await browser.click(step, selector="#does-not-exist", session="s")
    assert raised.value.type_name == "ElementNotFound" and not raised.value.retryable


async def test_goto_outside_the_allowlist_is_blocked(browser, step):
    with pytest.raises(BlockedError):
        await browser.goto("http://example.com/", step)


async def test_redirect_off_the_allowlist_is_blocked_by_the_proxy(browser, step, site):
    target = f"http://127.0.0.1:{free_port()}/steal?data=secret"
    with pytest.raises(BlockedError, match="outside the allowlist"):
        await browser.goto(f"{site}/redirect?to={target}", step)


async def test_slow_page_times_out_and_the_session_is_released(site):
    registry = default_registry()
    plan = Plan(goal="g", steps=[
        Step(id="slow", tool="browser_goto", args={"url": f"{site}/slow?seconds=30"}),
    ])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="slow"), "x",
                                         Plan(goal="g", steps=[Step(
                                             id="fast", tool="browser_goto",
                                             args={"url": f"{site}/customers"})]),
                                         Decision(action="finish", reason="ok"), "ok"])
    graph = build_graph(model=model, tools=registry)
    context = Context(step_timeout_seconds=3, max_retries=0, max_browser_sessions=1,
                      allowed_hosts=[urlsplit(site).netloc])
    try:
        out = await graph.ainvoke({"task": "slow"}, context=context)
        assert out["results"][0].status == "timeout"
        assert out["status"] == RunStatus.FAILED
        # The only session slot was given back: the next browser step runs.
        out = await graph.ainvoke({"task": "fast"}, context=context)
        assert out["status"] == RunStatus.COMPLETED
    finally:
        await registry.aclose()


async def test_independent_browser_steps_run_in_parallel_sessions(site):
    registry = default_registry()
    plan = Plan(goal="g", steps=[
        Step(id=f"open{i}", tool="browser_goto", args={"url": f"{site}/customers/{i}"})
        for i in (1, 2)])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
    graph = build_graph(model=model, tools=registry)
    try:
        out = await graph.ainvoke({"task": "t"}, context=Context(
            max_browser_sessions=2, allowed_hosts=[urlsplit(site).netloc]))
    finally:
        await registry.aclose()
    assert out["status"] == RunStatus.COMPLETED
    titles = sorted(r.output["title"] for r in out["results"])
    assert titles == ["Acme Corp", "Globex"]
    (a_start, a_ms), (b_start, b_ms) = [(r.started_at.timestamp(), r.duration_ms)
                                        for r in out["results"]]
    assert max(a_start, b_start) < min(a_start + a_ms / 1000, b_start + b_ms / 1000)


async def test_a_remote_browser_over_cdp_is_one_setting_away(site):
    import httpx

    from tools.chromium import Chromium
    from tools.proxy import AllowlistProxy

    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,))
    proxy = AllowlistProxy(policy).start()
    remote = Chromium(proxy.url).start()  # stands in for a managed browser service
    pool = BrowserPool()
    try:
        step = StepContext(policy=policy, browser=RemoteBrowser(
            remote.cdp_url, (("Authorization", "Bearer x"),)))
        opened = await PlaywrightExecutor(pool).goto(f"{site}/invoices", step, session="remote")
        assert opened["title"] == "Invoices"
        pages = httpx.get(f"{remote.cdp_url}/json/list").json()
        assert any(p["url"] == f"{site}/invoices" for p in pages), "the remote browser was used"
    finally:
        await pool.aclose()
        remote.close()
        proxy.close()


async def test_named_sessions_close_when_their_run_ends_or_sit_idle(site):
    pool = BrowserPool(idle_seconds=0.5)
    executor = PlaywrightExecutor(pool)
    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,))
    try:
        await executor.goto(f"{site}/customers", StepContext(policy=policy, scope="run-a"),
                            session="kept")
        await executor.goto(f"{site}/invoices", StepContext(policy=policy, scope="run-b"),
                            session="idle")
        ended = pool._named[("run-a", "kept", policy, None)]
        await pool.close_scope("run-a")  # run-a ended: its session closed, run-b's stays
        assert not ended.alive() and [key[0] for key in pool._named] == ["run-b"]
        idle = pool._named[("run-b", "idle", policy, None)]
        await asyncio.sleep(0.8)
        await executor.goto(f"{site}/customers", StepContext(policy=policy, scope="run-c"),
                            session="new")
        # Asking for a session reaps those unused for idle_seconds.
        assert not idle.alive() and [key[0] for key in pool._named] == ["run-c"]
    finally:
        await pool.aclose()
