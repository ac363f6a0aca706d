"""Browser sessions and the offline browser executor (Playwright over Debian's Chromium).

A session is one Chromium process (own profile) behind its own allowlist proxy, driven
over CDP. Steps name a `session` to share one (a logged-in page, a form filled in two
steps); without a name each step gets a fresh session, so independent steps run in
parallel. The same sessions serve the Nova Act executor (`tools.nova_act`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tools.chromium import Chromium
from tools.errors import BlockedError, ToolError
from tools.proxy import AllowlistProxy
from tools.sandbox import SandboxPolicy, current_policy, current_step_files, run_scope

log = logging.getLogger("duet.browser")

ELEMENT_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 20_000


@dataclass
class BrowserSession:
    """One browser: its CDP address, and (when local) its process and allowlist proxy."""

    cdp_url: str
    cdp_headers: dict[str, str] = field(default_factory=dict)
    chromium: Chromium | None = None
    proxy: AllowlistProxy | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    page: Any = None
    browser: Any = None
    extras: dict[str, Any] = field(default_factory=dict)  # what an executor keeps per session
    on_close: list[Callable[[], object]] = field(default_factory=list)

    def alive(self) -> bool:
        """False once a local browser's process has exited (crashed or killed)."""
        if self.chromium is None:
            return True
        return self.chromium.process is not None and self.chromium.process.poll() is None

    def blocked(self) -> list[str]:
        """URLs the proxy refused so far (a remote browser enforces its own policy)."""
        return self.proxy.blocked if self.proxy else []

    def close(self) -> None:
        """Run the executors' closers, then stop the browser and its proxy."""
        for closer in self.on_close:
            try:
                closer()
            except Exception:  # noqa: BLE001 - closing must go on: the browser must stop
                log.warning("closing a browser session: %s failed", closer, exc_info=True)
        if self.chromium:
            self.chromium.close()
        if self.proxy:
            self.proxy.close()


class BrowserPool:
    """Browser sessions with a concurrency limit, closed on every path by `aclose`."""

    def __init__(self, max_sessions: int = 4, idle_seconds: float | None = None):
        self.max_sessions = max_sessions
        self.idle_seconds = idle_seconds  # named sessions unused this long are closed
        self._slots = asyncio.Semaphore(max_sessions)
        self._named: dict[tuple[str, str, SandboxPolicy], BrowserSession] = {}
        self._used: dict[tuple[str, str, SandboxPolicy], float] = {}
        self._playwright: Any = None

    def _launch(self, policy: SandboxPolicy) -> BrowserSession:
        if policy.cdp_endpoint_url:
            return BrowserSession(policy.cdp_endpoint_url, dict(policy.cdp_headers))
        proxy = AllowlistProxy(policy).start()
        try:
            chromium = Chromium(proxy.url).start()
        except Exception:
            proxy.close()
            raise
        return BrowserSession(chromium.cdp_url, chromium=chromium, proxy=proxy)

    async def launch(self, policy: SandboxPolicy) -> BrowserSession:
        """A new session under `policy` (waits for a free slot).

        Locally a new Chromium behind its own allowlist proxy; with `policy.cdp_endpoint_url`
        a session of that remote browser (a managed, sandboxed browser service, say).
        """
        await self._slots.acquire()
        try:
            return await asyncio.to_thread(self._launch, policy)
        except Exception:
            self._slots.release()
            raise

    async def release(self, session: BrowserSession) -> None:
        """Close a session and free its slot."""
        if session.browser is not None:
            await _quietly(session.browser.close())
        await asyncio.to_thread(session.close)
        self._slots.release()

    async def named(self, scope: str, name: str, policy: SandboxPolicy) -> BrowserSession:
        """The session `name` of run `scope`, launched on first use and kept until `aclose`.

        Keyed by the policy too: its allowlist proxy enforces the policy it started with,
        so a run under another policy gets a session of its own."""
        await self._close_idle()
        key = (scope, name, policy)
        self._used[key] = time.monotonic()
        if key in self._named and not self._named[key].alive():
            # A crashed browser is replaced, so a retried step gets a working one.
            log.warning("browser session %r died; starting a new one", name)
            await self.release(self._named.pop(key))
        if key not in self._named:
            self._named[key] = await self.launch(policy)
        return self._named[key]

    async def close_scope(self, scope: str) -> None:
        """Close the named sessions of run `scope` (it ended)."""
        for key in [key for key in self._named if key[0] == scope]:
            self._used.pop(key, None)
            await self.release(self._named.pop(key))

    async def _close_idle(self) -> None:
        """Close named sessions unused for `idle_seconds` (their run may never say it
        ended: a caller that died, say). Checked whenever a named session is asked for."""
        if self.idle_seconds is None:
            return
        now = time.monotonic()
        for key in [k for k, used in self._used.items() if now - used > self.idle_seconds]:
            session = self._named.pop(key, None)
            self._used.pop(key)
            if session is not None and not session.lock.locked():
                await self.release(session)
            elif session is not None:
                self._named[key] = session  # in use right now: not idle after all

    @asynccontextmanager
    async def session(self, name: str | None, policy: SandboxPolicy
                      ) -> AsyncIterator[BrowserSession]:
        """A session for one step, held under its lock: the run's session `name` (kept for
        later steps), or without a name a fresh one, released when the step ends."""
        session = await self.named(run_scope(), name, policy) if name else await self.launch(policy)
        try:
            async with session.lock:
                yield session
        finally:
            if not name:
                await self.release(session)
            elif (key := (run_scope(), name, policy)) in self._used:
                self._used[key] = time.monotonic()  # idle from the end of its last step

    async def playwright_page(self, session: BrowserSession) -> Any:
        """The session's page, connecting Playwright over CDP on first use."""
        if session.page is None:
            if self._playwright is None:
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
            session.browser = await self._playwright.chromium.connect_over_cdp(
                session.cdp_url, headers=session.cdp_headers or None)
            context = session.browser.contexts[0]
            session.page = context.pages[0] if context.pages else await context.new_page()
        return session.page

    async def aclose(self) -> None:
        """Close every session and Playwright."""
        named, self._named, self._used = list(self._named.values()), {}, {}
        for session in named:
            await self.release(session)
        if self._playwright is not None:
            await _quietly(self._playwright.stop())
            self._playwright = None


async def _screenshot(page: Any) -> None:
    """Save the page as the step ends, when the step keeps files (for the run report); a
    page that cannot be captured does not fail the step. The file is written off the event
    loop (a LangGraph server refuses blocking calls on it)."""
    if (files := current_step_files()) is None:
        return
    try:
        image = await page.screenshot()
        await asyncio.to_thread(files.save_screenshot, image)
    except Exception:  # noqa: BLE001 - the step's result matters, its picture less
        log.warning("could not save a screenshot of step %s", files.name, exc_info=True)


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:  # noqa: BLE001 - closing a browser that already died is fine
        pass


class Target(BaseModel):
    """Which element: a CSS selector, or an ARIA role with an accessible name."""

    model_config = ConfigDict(extra="forbid")

    selector: str | None = Field(default=None, description="CSS selector.")
    role: str | None = Field(default=None, description="ARIA role, e.g. 'button', 'textbox'.")
    name: str | None = Field(default=None, description="Accessible name, with `role`.")
    session: str | None = Field(
        default=None, description="Share a browser with other steps of this name.")


class GotoArgs(BaseModel):
    """Arguments of `browser_goto`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Absolute URL on an allowed host.")
    session: str | None = Target.model_fields["session"]


class FillArgs(Target):
    """Arguments of `browser_fill`."""

    value: str = Field(description="Text to type into the element.")


class ReadArgs(Target):
    """Arguments of `browser_read`."""

    kind: Literal["text", "table"] = Field(
        default="text", description="'text': the element's text; 'table': rows as objects.")


class PlaywrightExecutor:
    """Deterministic browser tools: goto, click, fill, read. No model involved."""

    def __init__(self, pool: BrowserPool):
        self.pool = pool

    async def _with_page(self, session_name: str | None, action: Any) -> dict[str, Any]:
        policy = current_policy()
        try:
            async with self.pool.session(session_name, policy) as session:
                page = await self.pool.playwright_page(session)
                blocked_before = len(session.blocked())
                try:
                    result = await action(page)
                finally:
                    await _screenshot(page)
                blocked = session.blocked()[blocked_before:]
                if not policy.allows(page.url) and page.url != "about:blank":
                    raise BlockedError(f"the page went to {page.url}, outside the allowlist")
                if blocked:
                    result["blocked_requests"] = blocked
                return {"url": page.url, **result}
        except ToolError:  # blocked or typed already
            raise
        except Exception as exc:
            raise _as_tool_error(exc) from exc

    async def goto(self, url: str, session: str | None = None) -> dict[str, Any]:
        """Open `url`; a URL or redirect outside the allowlist is blocked."""
        current_policy().check(url)

        async def action(page: Any) -> dict[str, Any]:
            response = await page.goto(url, timeout=NAVIGATION_TIMEOUT_MS)
            return {"status": response.status if response else None,
                    "title": await page.title()}

        return await self._with_page(session, action)

    async def click(self, selector: str | None = None, role: str | None = None,
                    name: str | None = None, session: str | None = None) -> dict[str, Any]:
        """Click an element of the session's current page."""
        async def action(page: Any) -> dict[str, Any]:
            await (await _find(page, selector, role, name)).click(timeout=ELEMENT_TIMEOUT_MS)
            await page.wait_for_load_state()
            return {"title": await page.title()}

        return await self._with_page(session, action)

    async def fill(self, value: str, selector: str | None = None, role: str | None = None,
                   name: str | None = None, session: str | None = None) -> dict[str, Any]:
        """Type `value` into an element of the session's current page."""
        async def action(page: Any) -> dict[str, Any]:
            await (await _find(page, selector, role, name)).fill(value,
                                                                 timeout=ELEMENT_TIMEOUT_MS)
            return {"filled": value}

        return await self._with_page(session, action)

    async def read(self, selector: str | None = None, role: str | None = None,
                   name: str | None = None, kind: str = "text",
                   session: str | None = None) -> dict[str, Any]:
        """Read an element's text, or a table's rows (header cells as keys)."""
        async def action(page: Any) -> dict[str, Any]:
            locator = await _find(page, selector, role, name)
            if kind == "table":
                return {"rows": await locator.evaluate(_TABLE_ROWS_JS)}
            return {"text": (await locator.inner_text()).strip()}

        return await self._with_page(session, action)

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


_TABLE_ROWS_JS = """table => {
  const headers = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
  return [...table.querySelectorAll('tbody tr')].map(tr => Object.fromEntries(
    [...tr.querySelectorAll('td')].map((td, i) => [headers[i] || String(i), td.innerText.trim()])));
}"""


async def _find(page: Any, selector: str | None, role: str | None, name: str | None) -> Any:
    """The first element matching the target; `ElementNotFound` if none appears in time."""
    if selector:
        locator, target = page.locator(selector).first, f"selector {selector!r}"
    elif role:
        locator, target = page.get_by_role(role, name=name).first, f"role {role!r} {name!r}"
    else:
        raise ToolError("give a CSS `selector`, or an ARIA `role` (with `name`)",
                        type_name="BadTarget")
    try:
        await locator.wait_for(state="attached", timeout=ELEMENT_TIMEOUT_MS)
    except Exception as exc:
        if type(exc).__name__ != "TimeoutError":
            raise
        raise ToolError(f"no element matches {target} on {page.url}",
                        type_name="ElementNotFound") from None
    return locator


def _as_tool_error(exc: Exception) -> ToolError:
    """Playwright's errors as typed tool errors (a timeout may pass; a crash will not)."""
    name = type(exc).__name__
    message = str(exc).splitlines()[0] if str(exc) else name
    if name == "TimeoutError":
        return ToolError(f"timed out: {message}", retryable=True, type_name="BrowserTimeout")
    if "crash" in message.lower() or "closed" in message.lower():
        return ToolError(f"the browser failed: {message}", retryable=True,
                         type_name="BrowserCrashed")
    return ToolError(message, type_name=f"Browser{name}")
