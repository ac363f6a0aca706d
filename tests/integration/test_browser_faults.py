"""The shared Chromium killed or stalled under a Playwright step (Debian's Chromium, the
demo site's slow page): a read waits for the relaunched browser and runs; a write's outcome
is uncertain; a stalled browser ends the step and the run within
`playwright_timeout_seconds` and a few seconds, and does not stay in the pool."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from urllib.parse import urlsplit

import pytest

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.runner import run_thread
from graph.events import Event
from graph.runtime.attempts import attempt_tool
from graph.testing import ScriptedChatModel
from tests.fixtures.processes import chromium_browsers
from tools import BrowserPool, StepContext, default_registry
from tools.browser import PROBE_SECONDS

pytestmark = pytest.mark.browser


def _shared_chromium() -> list[int]:
    """This process's Chromium browser processes (not their zygotes and renderers)."""
    return chromium_browsers(os.getpid())


async def _let_go(stopped: list[int], registry) -> None:
    """Continue the browser processes a test stopped (so that closing them can end), then
    close the registry."""
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    await registry.aclose()


async def _run_with_fault(site: str, step: Step, fault: signal.Signals, **settings):
    """Open a page (the shared Chromium starts), then run `step`; send `fault` to the
    shared Chromium 1 s into it. The run's events come with the time they came."""
    registry = default_registry()
    warm = Step(id="warm", tool="browser_goto", args={"url": f"{site}/customers/1"})
    plan = Plan(goal="slow page", steps=[warm, step.model_copy(update={"depends_on": ["warm"]})])
    model = ScriptedChatModel(responses=[plan,
                                         Decision(action="finish", reason="ok"), "ok"])
    context = Context(step_screenshots=False, approval="auto",
                      allowed_hosts=[urlsplit(site).netloc],
                      **settings)
    events: list[tuple[Event, float]] = []
    run = asyncio.ensure_future(run_thread("open the slow page", context=context, model=model,
                                           tools=registry,
                                           on_event=lambda e: events.append(
                                               (e, time.monotonic()))))
    stopped: list[int] = []
    try:
        while not any(e.event == "step_started" and e.step_id == step.id for e, _ in events):
            assert not run.done(), run.result()[1].reason
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        stopped = _shared_chromium()
        assert stopped, "no Chromium under this process"
        for pid in stopped:
            os.kill(pid, fault)
        at = time.monotonic()
        _, final = await asyncio.wait_for(run, 120)
        return final, time.monotonic() - at, events
    finally:
        await _let_go(stopped, registry)


@pytest.mark.timeout(150)
async def test_a_read_waits_for_the_relaunched_chromium_and_runs(site):
    step = Step(id="slow", tool="browser_goto", args={"url": f"{site}/slow?seconds=4"})
    final, _, events = await _run_with_fault(site, step, signal.SIGKILL,
                                             dependency_wait_seconds=30)
    result = final.results[-1]
    assert final.status == RunStatus.COMPLETED, result.error
    assert result.status == "ok" and result.attempts >= 2
    assert result.waited  # the wait for the browser is in the step's result
    assert any(e.event == "step_waiting" and "BrowserCrashed" in e.reason
               for e, _ in events)


@pytest.mark.timeout(150)
async def test_a_write_under_a_killed_chromium_is_uncertain_not_repeated(site):
    # A fill whose element never appears is in flight for ELEMENT_TIMEOUT_MS.
    step = Step(id="slow", tool="browser_fill", side_effects=True,
                args={"selector": "#never", "value": "x"})
    final, _, events = await _run_with_fault(site, step, signal.SIGKILL)
    result = final.results[-1]
    assert result.status != "ok"
    assert result.attempts == 1  # not sent again: it may have acted
    assert result.error.type == "EffectUncertain", result.error
    assert "BrowserCrashed" in result.error.message
    assert not any(e.event in ("step_retried", "step_waiting") for e, _ in events)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(150)
async def test_a_stalled_chromium_ends_the_step_and_the_run_within_the_bound(site):
    bound = 8
    step = Step(id="slow", tool="browser_goto", args={"url": f"{site}/slow?seconds=4"})
    final, took, events = await _run_with_fault(site, step, signal.SIGSTOP,
                                                playwright_timeout_seconds=bound)
    result = final.results[-1]
    assert final.status == RunStatus.FAILED
    assert result.error.type == "DependencyTimeout", result.error
    assert "playwright_timeout_seconds" in result.error.message
    at = {e.event: t for e, t in events if getattr(e, "step_id", None) == "slow"}
    # The bound, then the probe (PROBE_SECONDS, 2 s) finds the browser stalled and kills it:
    # closing what the step held, and the pool at the run's end, is then immediate (before,
    # closing the context waited CLOSE_SECONDS on it, the pool's close as long again).
    margin = 4
    assert at["step_finished"] - at["step_started"] < bound + margin, at
    assert took < bound + margin, took  # from the stall (1 s into the step) to the run's end


@pytest.mark.timeout(120)
async def test_a_stalled_chromium_does_not_stay_in_the_pool(site):
    """Steps on one pool, as under `langgraph dev` (whose runs share it). A fill on a stalled
    Chromium times out waiting for its element (ELEMENT_TIMEOUT_MS, within the step's bound):
    the browser is found stalled and killed, so the step says it went away (not that no
    element matched), and the next step gets a new Chromium, and runs."""
    registry = default_registry()
    policy = Context(allowed_hosts=[urlsplit(site).netloc]).sandbox_policy()

    def attempt(tool: str, **args):
        return attempt_tool(registry, tool, args, StepContext(policy=policy), timeout=30)

    stopped: list[int] = []
    try:
        # The shared Chromium starts.
        assert (await attempt("browser_goto", url=f"{site}/customers/1")).status == "ok"
        fill = asyncio.ensure_future(attempt("browser_fill", selector="#never", value="x"))
        await asyncio.sleep(1.0)
        stopped = _shared_chromium()
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        failed = await fill
        assert failed.error.type == "BrowserCrashed" and failed.unreachable, failed.error
        assert all(_gone(pid) for pid in stopped), stopped  # killed, not left stopped
        again = await attempt("browser_goto", url=f"{site}/customers/1")
        assert again.status == "ok", again.error  # before: the stalled one, for its bound
        assert (running := _shared_chromium()) and not set(running) & set(stopped)
    finally:
        await _let_go(stopped, registry)


@pytest.mark.timeout(60)
async def test_a_browser_of_its_own_is_killed_only_when_it_stalled():
    """A session's own Chromium (Nova Act's kind): after a part of a step timed out, one
    that gives no CDP answer is killed; one that answers (a slow page) is left alone."""
    pool = BrowserPool()

    def timing_out():
        return pool.stall_checked(asyncio.wait_for(asyncio.sleep(5), 0.05), session)

    try:
        async with pool.session(StepContext(), None, kind="process") as session:
            os.kill(session.chromium.process.pid, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await timing_out()
            assert session.chromium.process.poll() is not None  # killed
            assert time.monotonic() - started < PROBE_SECONDS + 2
        async with pool.session(StepContext(), None, kind="process") as session:
            with pytest.raises(TimeoutError):
                await timing_out()
            assert session.chromium.process.poll() is None  # answered: still running
    finally:
        await pool.aclose()
