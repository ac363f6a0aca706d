"""A remote browser (`browser_cdp_url`) down or restarted: Debian's Chromium in a process of
its own, reached over CDP as a remote one would be. A browser that refuses is waited for
(`dependency_wait_seconds`) like any outage; one back within the wait runs the step."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from demo_site.server import free_port
from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.runner import run_thread
from graph.events import Event
from graph.testing import ScriptedChatModel
from tests.fixtures.processes import serving
from tools import default_registry
from tools.chromium import QUIET_FLAGS, chromium_path

pytestmark = pytest.mark.browser


def remote_browser(port: int, profile: Path) -> AbstractContextManager:
    """Chromium listening for CDP on `port`, in a process of its own (SIGKILLed after)."""
    return serving([chromium_path(), *QUIET_FLAGS, f"--user-data-dir={profile}",
                    "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}",
                    *(["--no-sandbox"] if os.geteuid() == 0 else []), "about:blank"],
                   f"http://127.0.0.1:{port}/json/version", kill=True)


async def _open(site: str, port: int, **settings):
    """Run one `browser_goto` of the slow page through the remote browser on `port`."""
    registry = default_registry()
    plan = Plan(goal="slow page", steps=[
        Step(id="slow", tool="browser_goto", args={"url": f"{site}/slow?seconds=3"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
    context = Context(**{"step_screenshots": False, "allowed_hosts": [urlsplit(site).netloc],
                         "browser_cdp_url": f"http://127.0.0.1:{port}", **settings})
    events: list[Event] = []
    run = asyncio.ensure_future(run_thread("open the slow page", context=context, model=model,
                                           tools=registry, on_event=events.append))
    return run, events, registry


@pytest.mark.timeout(120)
async def test_a_remote_browser_restarted_within_the_wait_runs_the_step(site, tmp_path):
    port = free_port()
    with remote_browser(port, tmp_path / "one"):
        run, events, registry = await _open(site, port, dependency_wait_seconds=30)
        try:
            while not any(e.event == "step_started" for e in events):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
        except BaseException:
            run.cancel()
            raise
    # Killed mid-step; back on its port 2 s later.
    await asyncio.sleep(2.0)
    try:
        with remote_browser(port, tmp_path / "two"):
            _, final = await asyncio.wait_for(run, 90)
    finally:
        await registry.aclose()
    [result] = final.results
    assert final.status == RunStatus.COMPLETED, result.error
    assert result.attempts >= 2 and result.waited
    # Its connection lost (`BrowserCrashed`), or refused as it reconnects
    # (`BrowserUnreachable`), as the kill lands: either way the browser was waited for.
    assert any(e.event == "step_waiting" and (
        "BrowserCrashed" in e.reason or "BrowserUnreachable" in e.reason)
        for e in events), [e for e in events if e.event == "step_waiting"]


@pytest.mark.timeout(60)
async def test_a_remote_browser_down_from_the_start_is_waited_for_then_typed(site):
    started = time.monotonic()
    run, _, registry = await _open(site, free_port(), dependency_wait_seconds=2)
    try:
        _, final = await asyncio.wait_for(run, 30)
    finally:
        await registry.aclose()
    took = time.monotonic() - started
    [result] = final.results
    assert final.status == RunStatus.FAILED
    assert result.error.type == "BrowserUnreachable", result.error
    assert "cannot be reached" in result.error.message
    assert "dependency_wait_seconds=2" in result.error.message
    assert result.not_sent
    assert 2 <= took < 15, took


@pytest.mark.timeout(60)
async def test_a_stalled_remote_browser_ends_the_run_within_the_bound(site, tmp_path,
                                                                      caplog):
    """Stopped (SIGSTOP) mid-step: the step's bound cancels it, the probe gets no answer,
    and what the step held there is dropped, not closed (no screenshot, no close waiting
    on it; the remote browser is not ours to kill): the run ends within the bound + the
    probe + a margin (before: 5 s for the screenshot and 5 s per close more)."""
    port = free_port()
    with remote_browser(port, tmp_path / "one") as browser:
        run, events, registry = await _open(site, port, playwright_timeout_seconds=6,
                                            step_screenshots=True)
        try:
            while not any(e.event == "step_started" for e in events):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)
            os.killpg(browser.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            _, final = await asyncio.wait_for(run, 40)
            took = time.monotonic() - stopped
        finally:
            os.killpg(browser.pid, signal.SIGCONT)
            await registry.aclose()
    [result] = final.results
    assert result.error.type == "DependencyTimeout", result.error
    assert took < 6 + 2 + 2, took
    assert [r.getMessage() for r in caplog.records if "dropped, not closed" in r.getMessage()]


@pytest.mark.timeout(60)
async def test_a_remote_browser_stalled_under_a_playwright_wait_is_not_tried_again(
        site, tmp_path, caplog):
    """Stopped between two steps of one session: the second step's element wait runs out
    (Playwright's own 5 s, inside the step's bound), the probe gets no answer, and the step
    ends `BrowserStalled` at once, not retried (another attempt would meet the same stall),
    with one warning."""
    port = free_port()
    steps = [Step(id="open", tool="browser_goto", args={"url": f"{site}/customers/1",
                                                        "session": "s"}),
             Step(id="read", tool="browser_read", depends_on=["open"],
                  args={"selector": "#never", "session": "s"})]
    model = ScriptedChatModel(responses=[Plan(goal="read", steps=steps),
                                         Decision(action="finish", reason="ok"), "ok"])
    context = Context(step_screenshots=False, allowed_hosts=[urlsplit(site).netloc],
                      browser_cdp_url=f"http://127.0.0.1:{port}")
    registry = default_registry()
    with remote_browser(port, tmp_path / "one") as browser:
        def stop_after_open(event: Event) -> None:
            if event.event == "step_finished" and event.step_id == "open":
                os.killpg(browser.pid, signal.SIGSTOP)
        try:
            _, final = await asyncio.wait_for(run_thread(
                "read", context=context, model=model, tools=registry,
                on_event=stop_after_open), 40)
        finally:
            os.killpg(browser.pid, signal.SIGCONT)
            await registry.aclose()
    read = [r for r in final.results if r.step_id == "read"][-1]
    assert read.error.type == "BrowserStalled", read.error
    assert read.attempts == 1
    assert read.duration_ms < (5 + 2 + 3) * 1000, read.duration_ms
    assert len([r for r in caplog.records if "dropped, not closed" in r.getMessage()]) == 1

