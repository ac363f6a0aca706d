"""Browser sessions and the offline browser executor (Playwright over Debian's Chromium).

A Playwright session is a browser context of the pool's one shared Chromium: its own
cookies, storage and cache, and its own allowlist proxy (Chromium's per-context proxy), so
opening one costs a context, not a process. A Nova Act session is a Chromium process of its
own (the SDK drives the first context of the browser it is given, see docs/browser.md); a
remote browser (`browser_cdp_url`) is used as it is.

Steps name a `session` to share one (a logged-in page, a form filled in two steps);
without a name each step gets a fresh session, so independent steps run in parallel. A
step holds one of its run's `max_browser_sessions` slots only while it runs: a named session
between its steps holds none, so no plan shape can wait for a slot that no step will free.

A named session outlives its browser: after each of its steps the pool keeps its storage
state (cookies, local storage) and its page, and a session whose browser died is rebuilt
from them before its next step. A session the run's auth config keeps as a profile
(`tools.auth.profiles`) starts from the profile and saves into it. A step whose page is a
site's login page logs in first (`tools.browser_login`). A step whose page needs a person (a
CAPTCHA, an MFA code no recipe covers, its own `ask_person`) hands that page to one
(`tools.people`) and goes on from it once they answered.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tools import lifetime
from tools.auth.profiles import Profiles
from tools.auth.run import Auth
from tools.browser_login import Logins
from tools.chromium import Chromium
from tools.errors import BlockedError, ErrorKind, ToolError
from tools.pages import (
    ELEMENT_TIMEOUT_MS,
    MARK_JS,
    NAVIGATION_TIMEOUT_MS,
    find,
    first_line,
    save_screenshot,
    type_into,
    where,
)
from tools.people import CAPTCHA_SELECTORS, HandOff, PersonNeeded, devtools_links
from tools.proxy import AllowlistProxy
from tools.registry import BoundBy, Dependency
from tools.sandbox import DENY_ALL, SandboxPolicy
from tools.step import InjectedStep, RemoteBrowser, StepContext, StepWaits

log = logging.getLogger("duet.browser")

# Closing a context or a browser, and the screenshot a step ends with, wait no longer than
# this: a browser that stalled (stopped, hung) answers neither, and a step stopped by its
# time limit must still end.
CLOSE_SECONDS = 5.0
# After a step of a browser timed out, the browser must answer a CDP command within this,
# or it stalled (stopped, hung): it is killed, not waited on again (`BrowserPool.stall_checked`).
PROBE_SECONDS = 2.0

def browser_dependency(tool: str, bound_by: BoundBy = "step_timeout_seconds") -> Dependency:
    """What a browser tool's calls wait on: the browser, named with the tool."""
    return Dependency(f"the browser ({tool})", bound_by)

SessionKind = Literal["context", "process"]
# A named session: its run, its name, and what it was opened under (a step under another
# policy or browser gets a session of its own).
SessionKey = tuple[str, str, SandboxPolicy, RemoteBrowser | None]


@dataclass
class BrowserSession:
    """One session: a context of the shared Chromium (`context`), or a browser of its own
    reached over CDP (`cdp_url`: a local process, or a remote browser)."""

    cdp_url: str = ""
    cdp_headers: dict[str, str] = field(default_factory=dict)
    chromium: Chromium | None = None
    proxy: AllowlistProxy | None = None
    context: Any = None  # the Playwright BrowserContext of a context session
    page: Any = None
    browser: Any = None  # Playwright's CDP connection to a browser of the session's own
    extras: dict[str, Any] = field(default_factory=dict)  # what an executor keeps per session
    on_close: list[Callable[[], object]] = field(default_factory=list)
    stalled: bool = False  # a remote browser that gave no answer: nothing more is asked of it

    @property
    def kind(self) -> SessionKind:
        """`context` in the shared Chromium, or `process` (a browser of its own)."""
        return "context" if self.context is not None else "process"

    def browser_gone(self) -> bool:
        """True once the session's browser has gone (crashed or killed)."""
        if self.context is not None:
            browser = self.context.browser
            return browser is None or not browser.is_connected()
        if self.chromium is None:  # a remote browser: its connection tells
            return self.browser is not None and not self.browser.is_connected()
        return self.chromium.process is None or self.chromium.process.poll() is not None

    def alive(self) -> bool:
        """False once the session's browser has gone or stalled, or its page was closed."""
        if self.stalled or self.browser_gone():
            return False
        return self.context is None or self.page is None or not self.page.is_closed()

    def current_page(self) -> Any:
        """The page a step of this session sees (None before any): a context's own page, or
        the first page of a browser of its own (the one Nova Act drives too)."""
        if self.page is not None or self.browser is None or not self.browser.contexts:
            return self.page
        pages = self.browser.contexts[0].pages
        return pages[0] if pages else None

    def blocked(self) -> list[str]:
        """URLs the proxy refused so far (a remote browser enforces its own policy)."""
        return self.proxy.blocked if self.proxy else []

    async def aclose(self) -> None:
        """Run the executors' closers, close the context or the browser, stop the proxy."""
        for closer in self.on_close:
            try:
                await asyncio.to_thread(closer)
            except Exception:  # noqa: BLE001 - closing must go on: the browser must stop
                log.warning("closing a browser session: %s failed", closer, exc_info=True)
        wait = 0 if self.stalled else CLOSE_SECONDS  # a stalled one would answer neither
        if self.context is not None:
            await _quietly(self.context.close(), wait)
        if self.browser is not None:
            await _quietly(self.browser.close(), wait)
        if self.chromium:
            await asyncio.to_thread(self.chromium.close)
        if self.proxy:
            self.proxy.close()


@dataclass
class SessionMemory:
    """What a named session left after its last step, to rebuild it if its browser dies:
    its storage state (Playwright's: cookies and local storage) and its page's URL."""

    state: dict[str, Any] | None = None
    url: str | None = None


class _Slots:
    """A run's browser slots: at most `limit` of its browser steps run at once.

    Slots go to the tasks that started first, not first come, first served (which made
    every session's second step wait behind every other session's first, so no task
    finished until nearly all had started):
    - a waiting step of a session already open goes before the first step of a new one,
      and among them the step of the session that opened first;
    - a step whose session a later step uses next (`StepWaits.session_continues`) keeps
      its slot for that step, for at most `KEEP_SECONDS` (the next step asks within
      milliseconds of it, once the scheduler has its result).
    A step waits only while the run's other browser steps run, each of which ends, and a
    kept slot is freed after `KEEP_SECONDS` at the latest, so no plan shape can wait
    forever.
    """

    KEEP_SECONDS = 1.0

    def __init__(self, limit: int):
        self.limit = limit
        self.running = 0  # slots taken: by running steps, and kept for a session
        # Waiting steps as a heap of (rank, ticket, future): the future is set when the
        # step is handed a slot (already counted in `running`).
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tickets = itertools.count()
        self._opened: dict[Any, int] = {}  # a named session: its first step's ticket
        self._kept: dict[Any, asyncio.TimerHandle] = {}  # sessions a slot is kept for

    @asynccontextmanager
    async def held(self, waits: StepWaits, session: Any = None) -> AsyncIterator[None]:
        """Hold a slot for the enclosed block, as a step of `session` (a named session's
        key; None for a fresh one). A step that must wait says so in `waits` (its events
        and its result)."""
        if (kept := self._kept.pop(session, None)) is not None:
            kept.cancel()  # the slot kept for this session's next step: this step
        else:
            ticket = self._opened.get(session) if session is not None else None
            rank = 1 if ticket is None else 0
            if ticket is None:
                ticket = next(self._tickets)
                if session is not None:
                    self._opened[session] = ticket
            if self.running < self.limit and not self._waiting:
                self.running += 1
            else:
                await self._wait((rank, ticket, asyncio.get_running_loop().create_future()),
                                 waits)
        keep = session is not None and waits.session_continues
        try:
            yield
        except BaseException:
            self._release()
            raise
        if keep:
            self._kept[session] = asyncio.get_running_loop().call_later(
                self.KEEP_SECONDS, self._free_kept, session)
        else:
            self._release()

    async def _wait(self, place: tuple[int, int, asyncio.Future[None]],
                    waits: StepWaits) -> None:
        heapq.heappush(self._waiting, place)
        reason = (f"a browser slot: {self.limit} browser steps of this run are running "
                  f"(max_browser_sessions={self.limit})")
        started = time.monotonic()
        waits.began(reason)
        got_it = False
        try:
            await place[2]
            got_it = True
        except asyncio.CancelledError:
            if place[2].done() and not place[2].cancelled():
                self._release()  # handed a slot just as it was stopped: pass it on
            raise
        finally:
            waits.ended(time.monotonic() - started, got_it)

    def _free_kept(self, session: Any) -> None:
        """The session's next step did not ask in time: its kept slot goes to others."""
        if self._kept.pop(session, None) is not None:
            self._release()

    def _release(self) -> None:
        """Hand the slot to the first waiting step still waiting, or free it."""
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():  # a stopped step's future is cancelled: skip it
                future.set_result(None)
                return
        self.running -= 1


class BrowserPool:
    """Browser sessions of every run, each run's browser steps bounded by its
    `max_browser_sessions`; everything closed on every path by `aclose`."""

    def __init__(self, idle_seconds: float | None = None):
        self.idle_seconds = idle_seconds  # named sessions unused this long are closed
        self._slots: dict[tuple[str, int], _Slots] = {}
        self._named: dict[SessionKey, BrowserSession] = {}
        self._memory: dict[SessionKey, SessionMemory] = {}
        self.logins = Logins()
        self._used: dict[SessionKey, float] = {}
        # One step at a time in a named session (a lock per session name of a run).
        self._locks: dict[SessionKey, asyncio.Lock] = {}
        self._playwright: asyncio.Future[Any] | None = None  # its start, under way or done
        self._shared: tuple[Chromium, AllowlistProxy, Any] | None = None  # once running
        self._shared_start: asyncio.Future[tuple[Chromium, AllowlistProxy, Any]] | None = None
        self._shared_lock = asyncio.Lock()

    async def _pw(self) -> Any:
        """Playwright (its driver process), started once. Like the shared Chromium's, its
        start runs in a task of the pool's own that the asking step only waits for: a step
        cancelled by its timeout mid-start would otherwise drop a driver already running
        (alive as long as this process), and each later step would start over, and time out
        the same way on a slow machine."""
        if self._playwright is None or _failed(self._playwright):
            from playwright.async_api import async_playwright

            self._playwright = _pool_task(async_playwright().start())
        return await asyncio.shield(self._playwright)

    async def _shared_browser(self) -> Any:
        """The one Chromium that holds the context sessions, started on first use (and again
        if it died) in a task of its own (see `_pw`). Its own traffic, outside any context,
        goes to a proxy that allows nothing."""
        async with self._shared_lock:
            if self._shared is not None and not (
                    self._shared[2].is_connected() and self._shared[0].process is not None
                    and self._shared[0].process.poll() is None):
                log.warning("the shared Chromium died; starting a new one")
                await self._stop_shared()
            if self._shared_start is None or _failed(self._shared_start):
                self._shared_start = _pool_task(self._start_shared())
            start = self._shared_start
        return (await asyncio.shield(start))[2]

    async def _start_shared(self) -> tuple[Chromium, AllowlistProxy, Any]:
        proxy = await AllowlistProxy(DENY_ALL).astart()
        try:
            chromium = await asyncio.to_thread(_start_chromium, proxy.url)
        except Exception:
            proxy.close()
            raise
        try:
            browser = await (await self._pw()).chromium.connect_over_cdp(chromium.cdp_url)
        except Exception as exc:
            died = chromium.process is not None and chromium.process.poll() is not None
            await asyncio.to_thread(chromium.close)
            proxy.close()
            if died:  # killed as it started: waited for like a browser killed later
                raise ToolError(f"Chromium exited as it started: {first_line(exc)}",
                                retryable=True, type_name=ErrorKind.BROWSER_CRASHED,
                                unreachable=True) from exc
            raise
        self._shared = (chromium, proxy, browser)
        return self._shared

    async def _stop_shared(self) -> None:
        start, self._shared_start, self._shared = self._shared_start, None, None
        if start is None:
            return
        try:
            chromium, proxy, browser = await start  # a start under way finishes first
        except Exception:  # noqa: BLE001 - a start that failed cleaned up after itself
            return
        if self._shared is not None and self._shared[0] is chromium:
            self._shared = None  # set by a start that was still under way
        await _quietly(browser.close())
        await asyncio.to_thread(chromium.close)
        proxy.close()

    async def _open(self, policy: SandboxPolicy, remote: RemoteBrowser | None,
                    kind: SessionKind, state: dict[str, Any] | None = None) -> BrowserSession:
        """A new session under `policy`: a context of the shared Chromium behind its own
        allowlist proxy, a Chromium process of its own behind one, or the `remote`
        browser; with `state` (a storage state), holding its cookies and local storage."""
        if remote is not None:
            session = BrowserSession(remote.cdp_url, dict(remote.headers))
            if state:
                await self._restore(session, state)
            return session
        proxy = await AllowlistProxy(policy).astart()
        own: BrowserSession | None = None  # a browser of its own, once started
        try:
            if kind == "process":
                chromium = await asyncio.to_thread(_start_chromium, proxy.url)
                own = BrowserSession(chromium.cdp_url, chromium=chromium, proxy=proxy)
                if state:
                    await self._restore(own, state)
                return own
            browser = await self._shared_browser()
            # Playwright adds `<-loopback>` to the bypass list: loopback goes via the proxy.
            context = await self.stall_checked(browser.new_context(
                proxy={"server": proxy.url}, viewport={"width": 1280, "height": 900},
                **({"storage_state": state} if state else {})))
            return BrowserSession(context=context, proxy=proxy)
        except BaseException:  # a step's bound cancelling the open, too
            if own is not None:
                await own.aclose()
            proxy.close()
            raise

    async def _restore(self, session: BrowserSession, state: dict[str, Any]) -> None:
        """Put a storage state into the first context of a session's browser of its own
        (a context session gets it as it is made): its cookies now, its local storage by
        a script that sets each key a page of that origin lacks as the page loads (as Nova
        Act's own session providers do: CDP cannot write another origin's storage)."""
        if session.browser is None:
            session.browser = await self._connect(session)
        context = session.browser.contexts[0]
        if state.get("cookies"):
            await context.add_cookies(state["cookies"])
        if state.get("origins"):
            await context.add_init_script(_LOCAL_STORAGE_JS % json.dumps(state["origins"]))

    async def _state_of(self, session: BrowserSession) -> SessionMemory:
        """The session's storage state and page now (a browser of its own is connected to
        first, as `playwright_page` does)."""
        if session.context is not None:
            context = session.context
        else:
            if session.browser is None:
                session.browser = await self._connect(session, PROBE_SECONDS)
            context = session.browser.contexts[0]
        page = session.current_page()
        url = page.url if page is not None and page.url != "about:blank" else None
        return SessionMemory(await context.storage_state(), url)

    async def _remember(self, key: SessionKey, session: BrowserSession, auth: Auth) -> None:
        """Keep what session `key` holds after a step, to rebuild it if its browser dies,
        and save it as its profile when the run keeps one (and it changed). A browser that
        went away has nothing to give; a failure here never fails the step."""
        if session.stalled or self.browser_gone(session):
            return
        try:
            now = await asyncio.wait_for(self._state_of(session), CLOSE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the step's result matters more
            log.warning("could not keep the state of browser session %r: %s", key[1],
                        first_line(exc))
            return
        before = self._memory.get(key)
        self._memory[key] = now
        if auth.keeps(key[1]) and (before is None or before.state != now.state):
            assert auth.profiles_dir is not None and now.state is not None
            try:
                await asyncio.to_thread(Profiles(auth.profiles_dir).save, key[1], now.state)
            except Exception as exc:  # noqa: BLE001 - kept in memory still; said once
                log.warning("could not save the browser profile %r: %s", key[1],
                            first_line(exc))

    async def _named_session(self, key: SessionKey, kind: SessionKind,
                             auth: Auth) -> BrowserSession:
        """The named session `key`, opened on first use (from its profile, when the run
        keeps one) and kept until its run ends; rebuilt when its browser died."""
        await self._close_idle()
        self._used[key] = time.monotonic()
        session = self._named.get(key)
        if session is not None and not session.alive():
            log.warning("browser session %r died; rebuilding it", key[1])
            await self._named.pop(key).aclose()
            session = None
        if session is None:
            session = self._named[key] = await self._rebuilt(key, kind, auth)
        elif kind == "process" and session.kind == "context":
            raise ToolError(
                f"browser session {key[1]!r} was opened by a Playwright step (browser_goto, "
                "...) as a browser context; Nova Act needs a browser of its own: give its "
                "steps another session name", type_name=ErrorKind.SESSION_KIND_MISMATCH)
        return session

    async def _rebuilt(self, key: SessionKey, kind: SessionKind, auth: Auth) -> BrowserSession:
        """Session `key` opened anew: with what it held after its last step (its browser
        died), else its profile when the run keeps one, else empty; its last page opened
        again (where the step's login, if the site asks for one, happens)."""
        memory = self._memory.get(key) or SessionMemory()
        state = memory.state
        if state is None and auth.keeps(key[1]):
            assert auth.profiles_dir is not None
            state = await asyncio.to_thread(Profiles(auth.profiles_dir).load, key[1])
        session = await self._open(key[2], key[3], kind, state)
        if memory.url is not None:
            try:
                page = await self.stall_checked(self.playwright_page(session), session)
                await page.goto(memory.url, timeout=NAVIGATION_TIMEOUT_MS)
            except Exception as exc:  # noqa: BLE001 - the step says what it cannot find
                log.warning("browser session %r: could not open its last page again: %s",
                            key[1], first_line(exc))
        return session

    async def close_scope(self, scope: str) -> None:
        """Close the named sessions of run `scope` (it ended)."""
        self.logins.forget(scope)
        for key in [key for key in self._locks if key[0] == scope]:
            self._used.pop(key, None)
            self._memory.pop(key, None)
            self._locks.pop(key)
            if (session := self._named.pop(key, None)) is not None:
                await session.aclose()
        for slots in [key for key in self._slots if key[0] == scope]:
            del self._slots[slots]

    async def _close_idle(self) -> None:
        """Close named sessions unused for `idle_seconds` (their run may never say it
        ended: a caller that died, say). Checked whenever a named session is asked for."""
        if self.idle_seconds is None:
            return
        now = time.monotonic()
        for key in [k for k, used in self._used.items() if now - used > self.idle_seconds]:
            if self._locks[key].locked():
                continue  # in use right now (or about to be): not idle after all
            self._used.pop(key)
            self._memory.pop(key, None)
            self._locks.pop(key)
            if (session := self._named.pop(key, None)) is not None:
                await session.aclose()

    @asynccontextmanager
    async def session(self, step: StepContext, name: str | None,
                      kind: SessionKind = "context") -> AsyncIterator[BrowserSession]:
        """A session for one step, held under its lock and one of its run's slots: the run's
        session `name` (kept for later steps), or without a name a fresh one, closed when
        the step ends. `kind` is what a new local session is: a context of the shared
        Chromium, or a process of its own (what Nova Act needs)."""
        policy = step.policy
        limit = max(1, policy.max_browser_sessions)
        slots = self._slots.setdefault((step.scope, limit), _Slots(limit))
        if not name:
            async with slots.held(step.waits):
                session = await self._open(policy, step.browser, kind)
                try:
                    yield session
                finally:
                    await session.aclose()
            return
        key = (step.scope, name, policy, step.browser)
        # The session's lock first, then a slot: a step waiting for its session's earlier
        # step holds no slot, and a slot is held only by a step that can run.
        async with self._locks.setdefault(key, asyncio.Lock()), slots.held(step.waits, key):
            session = await self._named_session(key, kind, step.auth)
            try:
                yield session
            except Exception:
                await self._remember(key, session, step.auth)  # a failed step may have logged in
                raise
            else:
                await self._remember(key, session, step.auth)
            finally:
                if key in self._used:
                    self._used[key] = time.monotonic()  # idle from the end of its last step

    async def stall_checked(self, work: Awaitable[Any],
                            session: BrowserSession | None = None) -> Any:
        """`work`, a part of a step of `session` (None: of the shared Chromium, before the
        step has a session). When it times out (or its bound stops it), the session's local
        Chromium (the shared one, or its own) must answer a CDP command within
        `PROBE_SECONDS`; one that does not has stalled and is killed at once (its process
        group, SIGKILL): every later close of it is immediate, and the next step gets a new
        one (`_shared_browser`, `_named_session`), not the stalled one for its whole bound
        again. A browser that answers (the page was merely slow) is left alone; a remote one
        (`browser_cdp_url`) is not ours to kill: it is marked stalled instead, and what the
        step held there is dropped, not closed.

        `work` runs in a task of its own, which a cancel ends at once: Playwright drops the
        calls a cancelled task left pending only once that task is done, and a reply to one
        after the kill would be an error nobody retrieves."""
        try:
            return await asyncio.ensure_future(work)
        except BaseException as exc:
            if _timed_out(exc):
                await self._end_if_stalled(session)
            raise

    async def _end_if_stalled(self, session: BrowserSession | None) -> None:
        """Kill `session`'s local Chromium (None: the shared one) if it gives no answer; a
        remote one is marked stalled."""
        chromium: Chromium | None
        if session is None or session.context is not None:
            shared = self._shared
            if shared is None or (session is not None and session.context.browser is not shared[2]):
                return  # the shared Chromium was replaced already
            chromium, browser = shared[0], shared[2]
        else:
            chromium, browser = session.chromium, session.browser
        process = chromium.process if chromium is not None else None
        if chromium is not None and (process is None or process.poll() is not None):
            return  # gone already
        try:
            await asyncio.wait_for(self._probe(browser, session), PROBE_SECONDS)
            return
        except Exception as exc:  # noqa: BLE001 - no answer, whatever the reason: stalled
            if process is None:  # remote: not ours to kill, so not asked anything more
                assert session is not None
                session.stalled = True
                log.warning("the remote browser at %s gave no answer within %gs after a step "
                            "timed out (%s): what the step held there is dropped, not closed",
                            session.cdp_url, PROBE_SECONDS, first_line(exc))
                return
            log.warning("Chromium (pid %d) gave no answer within %gs after a step timed out "
                        "(%s): killing it; the next step starts a new one", process.pid,
                        PROBE_SECONDS, first_line(exc))
        await asyncio.to_thread(lifetime.stop, process, 0)
        async with self._shared_lock:
            if self._shared is not None and self._shared[0] is chromium:
                await self._stop_shared()  # out of the pool now: said once, above

    async def _probe(self, browser: Any, session: BrowserSession | None) -> None:
        """Ask `browser` its version over CDP. A session's browser of its own that no
        Playwright step connected to (Nova Act's) is connected to first, as `playwright_page`
        does."""
        if browser is None and session is not None:
            browser = session.browser = await self._connect(session, PROBE_SECONDS)
        cdp = await browser.new_browser_cdp_session()
        await cdp.send("Browser.getVersion")
        await cdp.detach()

    async def _connect(self, session: BrowserSession, seconds: float | None = None) -> Any:
        """Playwright's CDP connection to `session`'s browser of its own (with its headers),
        within `seconds` (None: Playwright's default)."""
        return await (await self._pw()).chromium.connect_over_cdp(
            session.cdp_url, headers=session.cdp_headers or None,
            **({} if seconds is None else {"timeout": seconds * 1000}))

    def browser_gone(self, session: BrowserSession) -> bool:
        """Whether `session`'s browser has gone: its own, or the shared Chromium (its
        process may be seen dead before Playwright notices the lost connection)."""
        shared = self._shared
        if shared is not None and session.context is not None and (
                session.context.browser is shared[2]):
            process = shared[0].process
            if process is None or process.poll() is not None:
                return True
        return session.browser_gone()

    async def playwright_page(self, session: BrowserSession) -> Any:
        """The session's page: a new page of its context, or (a browser of its own) the
        first page of the browser's first context, connecting over CDP on first use."""
        if session.page is not None and not session.page.is_closed():
            return session.page
        if session.context is not None:
            session.page = await session.context.new_page()
            return session.page
        if session.browser is None:
            try:
                session.browser = await self._connect(session)
            except Exception as exc:
                if not any(code in str(exc) for code in ("ECONNREFUSED", "ECONNRESET")):
                    raise
                # Down (a remote browser restarting, say): waited for like any outage.
                raise ToolError(f"the browser at {session.cdp_url} cannot be reached: "
                                f"{first_line(exc)}", retryable=True, not_sent=True,
                                type_name=ErrorKind.BROWSER_UNREACHABLE,
                                unreachable=True) from exc
        context = session.browser.contexts[0]
        session.page = context.pages[0] if context.pages else await context.new_page()
        return session.page

    async def devtools_of(self, session: BrowserSession, page: Any
                          ) -> tuple[str | None, str | None]:
        """The loopback DevTools link to `page` of `session` and its browser's CDP endpoint
        (`tools.people.devtools_links`); (None, None) for a browser elsewhere."""
        shared = self._shared
        cdp_url = (shared[0].cdp_url if session.context is not None and shared is not None
                   else session.cdp_url)
        if not cdp_url:
            return None, None
        cdp = await page.context.new_cdp_session(page)
        try:
            info = await cdp.send("Target.getTargetInfo")
        finally:
            await cdp.detach()
        return devtools_links(cdp_url, info["targetInfo"]["targetId"])

    async def handed(self, needed: PersonNeeded, page: Any, session: BrowserSession,
                     step: StepContext, session_name: str | None) -> ToolError:
        """`needed` completed with `session`'s `page`: its URL, a masked screenshot, the
        DevTools link. A fresh session ends with its step, so nobody could be handed its
        page: the step fails `PersonNeeded` instead, saying to name one."""
        if session_name is None:
            return ToolError(f"{needed}: give the step a `session` so a person can be "
                             "handed its page", type_name=ErrorKind.PERSON_NEEDED)
        shot = None
        if step.hand_off_files is not None:
            shot = step.hand_off_files.hand_off_screenshot
            await save_screenshot(page, step.hand_off_files.save_hand_off_screenshot)
        devtools, cdp_url = await self.devtools_of(session, page)
        return PersonNeeded(needed.hand_off.model_copy(update={
            "url": page.url, "session": session_name, "devtools": devtools,
            "cdp_url": cdp_url, "screenshot": str(shot) if shot and shot.exists() else None}))

    async def aclose(self) -> None:
        """Close every session, the shared Chromium and Playwright."""
        named, self._named, self._used, self._locks = list(self._named.values()), {}, {}, {}
        self._memory = {}
        for session in named:
            await session.aclose()
        await self._stop_shared()
        start, self._playwright = self._playwright, None
        if start is not None and not _failed(start):
            await _quietly((await start).stop())


async def _captcha_check(page: Any, step: StepContext) -> None:
    """`PersonNeeded` when the page shows a CAPTCHA: the site's own selectors (its login
    recipe's `captcha`), else the common widgets (`tools.people.CAPTCHA_SELECTORS`)."""
    recipe = step.auth.login_for(page.url)
    selectors = recipe.captcha if recipe is not None and recipe.captcha else CAPTCHA_SELECTORS
    if await page.locator(", ".join(selectors)).count():
        raise PersonNeeded(HandOff(kind="captcha", acted=True,
                                   asked=f"solve the CAPTCHA on {where(page.url)}, then "
                                         "answer done"))


def _start_chromium(proxy_url: str) -> Chromium:
    """A started Chromium behind `proxy_url` (blocking: its profile folder and launch run
    off the event loop, which a LangGraph server guards against blocking calls)."""
    return Chromium(proxy_url).start()


def _pool_task(start: Awaitable[Any]) -> asyncio.Future[Any]:
    """A start the pool owns (not the step that asked); its failure is read by whoever
    awaits it, and never reported as unretrieved when the asking step was cancelled."""
    task = asyncio.ensure_future(start)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def _timed_out(exc: BaseException) -> bool:
    """A step's part stopped by a time limit: its bound's (a cancel), or Playwright's own,
    raised as it is or as the error it stands for (`ElementNotFound`, raised from it)."""
    return any(isinstance(e, asyncio.CancelledError | TimeoutError)
               or type(e).__name__ == "TimeoutError" for e in (exc, exc.__context__))


def _failed(start: asyncio.Future[Any]) -> bool:
    return start.done() and (start.cancelled() or start.exception() is not None)


async def _quietly(awaitable: Any, seconds: float = CLOSE_SECONDS) -> None:
    """Close something of a browser, within `seconds`, whatever state it is in."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except Exception:  # noqa: BLE001 - closing a browser that died or stalled is fine
        pass


SESSION_HELP = "Share a browser with other steps of this name."
ASK_PERSON_HELP = ("What a person must check or do on the page (needs a `session`): the run "
                   "pauses until they answer, then the step goes on from the page as they "
                   "left it. browser_goto asks on the page it opened, the others before "
                   "they act.")


class Target(BaseModel):
    """Which element: a CSS selector, or an ARIA role with an accessible name."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = Field(default=None, description="CSS selector.")
    role: str | None = Field(default=None, description="ARIA role, e.g. 'button', 'textbox'.")
    name: str | None = Field(default=None, description="Accessible name, with `role`.")
    session: str | None = Field(default=None, description=SESSION_HELP)
    ask_person: str | None = Field(default=None, description=ASK_PERSON_HELP)
    step: InjectedStep


class GotoArgs(BaseModel):
    """Arguments of `browser_goto`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Absolute URL on an allowed host.")
    session: str | None = Field(default=None, description=SESSION_HELP)
    ask_person: str | None = Field(default=None, description=ASK_PERSON_HELP)
    step: InjectedStep


class FillArgs(Target):
    """Arguments of `browser_fill`."""

    value: str = Field(description="Text to type into the element; `${secret.NAME}` types "
                                   "that secret (on its hosts only).")


class ReadArgs(Target):
    """Arguments of `browser_read`."""

    kind: Literal["text", "table"] = Field(
        default="text", description="'text': the element's text; 'table': rows as objects.")


class PlaywrightExecutor:
    """Deterministic browser tools: goto, click, fill, read. No model involved."""

    def __init__(self, pool: BrowserPool):
        self.pool = pool

    async def _with_page(self, step: StepContext, session_name: str | None, action: Any,
                         navigates: Literal["no", "again", "on"] = "no",
                         ask_person: str | None = None) -> dict[str, Any]:
        """Run `action` on the session's page, logged in first when the page is a site's
        login page. `navigates` says what to do when the action lands on one: "again" log
        in and run it again (a goto), "on" log in and stay where the site leads (a click
        that followed a link), "no" nothing (it does not navigate). A page that needs a
        person (a CAPTCHA, the step's `ask_person`, a sign-in code no recipe covers) is
        handed to one: `PersonNeeded`, whose answer the step's next run finds in
        `step.person` (`_answered`)."""
        policy = step.policy
        opened: BrowserSession | None = None

        async def logged_in(page: Any) -> dict[str, Any]:
            finished = await self._answered(page, step) and navigates != "no"
            if navigates != "again":  # a goto leaves the page it finds
                await self.pool.logins.log_in_if_asked(page, step)
                self._ask_person(ask_person, step, acted=False)
            # A goto or a click the person finished for the step is not done again.
            result = {"title": await page.title()} if finished else await action(page)
            if navigates != "no" and await self.pool.logins.log_in_if_asked(page, step):
                if navigates == "again":
                    result = await action(page)
                else:
                    result["title"] = await page.title()
            if navigates == "again":
                self._ask_person(ask_person, step, acted=True)
            await _captcha_check(page, step)
            return result

        try:
            async with self.pool.session(step, session_name) as session:
                opened = session
                page = await self.pool.stall_checked(self.pool.playwright_page(session), session)
                blocked_before = len(session.blocked())
                try:
                    # Checked before the screenshot, which would wait on a stalled browser.
                    result = await self.pool.stall_checked(logged_in(page), session)
                except PersonNeeded as needed:
                    raise await self.pool.handed(needed, page, session, step,
                                                 session_name) from None
                finally:
                    # A browser that went away has nothing to show; a stalled one, no answer.
                    if (step.files is not None
                            and not (session.stalled or self.pool.browser_gone(session))):
                        await save_screenshot(page, step.files.save_screenshot,
                                              timeout_ms=CLOSE_SECONDS * 1000)
                blocked = session.blocked()[blocked_before:]
                if not policy.allows(page.url) and page.url != "about:blank":
                    raise BlockedError(f"the page went to {page.url}, outside the allowlist")
                if blocked:
                    result["blocked_requests"] = blocked
                return {"url": page.url, **result}
        except Exception as exc:
            if opened is not None and self.pool.browser_gone(opened):
                # Killed (stalled, see `stall_checked`) or crashed under the step: the pool
                # starts a new one for the next attempt, so the step waits for it like any
                # unreachable dependency.
                raise ToolError(f"the browser went away: {first_line(exc)}", retryable=True,
                                type_name=ErrorKind.BROWSER_CRASHED, unreachable=True) from exc
            if opened is not None and opened.stalled:
                # A remote browser that gave no answer to the probe: another attempt would
                # meet the same stall.
                raise ToolError(f"the browser at {opened.cdp_url} stalled: "
                                f"{first_line(exc)}, then no answer to a CDP probe within "
                                f"{PROBE_SECONDS:g}s",
                                type_name=ErrorKind.BROWSER_STALLED) from exc
            if isinstance(exc, ToolError):  # blocked or typed already
                raise
            raise _as_tool_error(exc) from exc

    @staticmethod
    def _ask_person(ask_person: str | None, step: StepContext, acted: bool) -> None:
        """The step's own `ask_person`, asked once (its next run has the answer)."""
        if ask_person and step.person is None:
            raise PersonNeeded(HandOff(kind="check", asked=ask_person, acted=acted))

    @staticmethod
    async def _answered(page: Any, step: StepContext) -> bool:
        """Apply the person's answer to the hand-off this step met before: type a value into
        the field it was asked for (marked first, so no screenshot shows it) and submit it.
        True when the person finished the step's action themselves (`done` after it
        acted). A value read back as its mask, or a page that is no longer the one handed
        over (the browser was rebuilt), is no answer: the step goes on and may ask again."""
        person, hand_off = step.person, step.hand_off
        if person is None or hand_off is None:
            return False
        if person.action == "done":
            return hand_off.acted
        if person.lost or page.url != hand_off.url:
            return False
        field = page.locator(hand_off.field or ":focus").first
        await field.evaluate(MARK_JS)
        await field.fill(person.value, timeout=ELEMENT_TIMEOUT_MS)
        if hand_off.submit:
            await page.locator(hand_off.submit).first.click(timeout=ELEMENT_TIMEOUT_MS)
        else:
            await field.press("Enter", timeout=ELEMENT_TIMEOUT_MS)
        await page.wait_for_load_state()
        return False

    async def goto(self, url: str, step: StepContext, session: str | None = None,
                   ask_person: str | None = None) -> dict[str, Any]:
        """Open `url`; a URL or redirect outside the allowlist is blocked. After a person's
        answer, a page already at `url` is not loaded again."""
        step.policy.check(url)

        async def action(page: Any) -> dict[str, Any]:
            if step.person is not None and page.url == url:
                return {"status": None, "title": await page.title()}
            response = await page.goto(url, timeout=NAVIGATION_TIMEOUT_MS)
            return {"status": response.status if response else None,
                    "title": await page.title()}

        return await self._with_page(step, session, action, navigates="again",
                                     ask_person=ask_person)

    async def click(self, step: StepContext, selector: str | None = None,
                    role: str | None = None, name: str | None = None,
                    session: str | None = None, ask_person: str | None = None
                    ) -> dict[str, Any]:
        """Click an element of the session's current page."""
        async def action(page: Any) -> dict[str, Any]:
            await (await find(page, selector, role, name)).click(timeout=ELEMENT_TIMEOUT_MS)
            await page.wait_for_load_state()
            return {"title": await page.title()}

        return await self._with_page(step, session, action, navigates="on",
                                     ask_person=ask_person)

    async def fill(self, value: str, step: StepContext, selector: str | None = None,
                   role: str | None = None, name: str | None = None,
                   session: str | None = None, ask_person: str | None = None
                   ) -> dict[str, Any]:
        """Type `value` into an element of the session's current page; a `${secret.NAME}` in
        it is the secret's value, put in only now and only on the secret's hosts (the
        result shows the reference, never the value)."""
        async def action(page: Any) -> dict[str, Any]:
            await type_into(await find(page, selector, role, name), value, step.auth, page)
            return {"filled": value}

        return await self._with_page(step, session, action, ask_person=ask_person)

    async def read(self, step: StepContext, selector: str | None = None,
                   role: str | None = None, name: str | None = None, kind: str = "text",
                   session: str | None = None, ask_person: str | None = None
                   ) -> dict[str, Any]:
        """Read an element's text, or a table's rows (header cells as keys)."""
        async def action(page: Any) -> dict[str, Any]:
            locator = await find(page, selector, role, name)
            if kind == "table":
                return {"rows": await locator.evaluate(_TABLE_ROWS_JS)}
            return {"text": (await locator.inner_text()).strip()}

        return await self._with_page(step, session, action, ask_person=ask_person)

    def tools(self) -> list[StructuredTool]:
        """The four tools, for a `ToolRegistry`."""
        return [
            StructuredTool.from_function(
                coroutine=self.goto, name="browser_goto", args_schema=GotoArgs,
                description="Open a URL in a browser session (offline executor, no model)."),
            StructuredTool.from_function(
                coroutine=self.click, name="browser_click", args_schema=Target,
                description="Click an element (CSS selector, or ARIA role and name)."),
            StructuredTool.from_function(
                coroutine=self.fill, name="browser_fill", args_schema=FillArgs,
                description="Type text into a form field (CSS selector, or role and name)."),
            StructuredTool.from_function(
                coroutine=self.read, name="browser_read", args_schema=ReadArgs,
                description="Read an element's text, or a table as rows (kind='table')."),
        ]


# A kept profile's local storage, set as each page of its origins loads (keys the page has
# already are left alone); `%s` is the storage state's `origins`.
_LOCAL_STORAGE_JS = """(() => {
  const origin = (%s).find(o => o.origin === window.location.origin);
  for (const item of (origin ? origin.localStorage : [])) {
    if (window.localStorage.getItem(item.name) === null) {
      window.localStorage.setItem(item.name, item.value);
    }
  }
})();"""

_TABLE_ROWS_JS = """table => {
  const headers = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
  return [...table.querySelectorAll('tbody tr')].map(tr => Object.fromEntries(
    [...tr.querySelectorAll('td')].map((td, i) => [headers[i] || String(i), td.innerText.trim()])));
}"""


def _as_tool_error(exc: Exception) -> ToolError:
    """Playwright's errors as typed tool errors (a timeout may pass; a crash will not)."""
    name = type(exc).__name__
    message = first_line(exc)
    if name == "TimeoutError":
        return ToolError(f"timed out: {message}", retryable=True,
                         type_name=ErrorKind.BROWSER_TIMEOUT)
    if "crash" in message.lower() or "closed" in message.lower():
        return ToolError(f"the browser failed: {message}", retryable=True,
                         type_name=ErrorKind.BROWSER_CRASHED)
    return ToolError(message, type_name=f"Browser{name}")
