"""Figure 11: browser sessions at scale, in real Chromium against the demo CRM.

k independent two-step browser tasks (`browser_goto` then `browser_read` of the heading, in
a named session of its own) run through `build_graph` + `ainvoke` with the whole plan at once
(the simulated model at zero latency: the model is the only part simulated, so what is
measured is the browser path), against bare Playwright doing the same two operations in k
fresh contexts of one Chromium, in the same run, on the same CRM served in its own process.
Both browsers are started before timing; both run all k tasks at once (the graph with
`max_browser_sessions=k`); screenshots are off for the ratio (bare Playwright takes none) and
measured on, the default, beside it. Then plans of more tasks than slots run with the
default limit: they must finish, and tasks should finish in the order they started (a step of
a session already open gets a slot before a new session's first step), so each task's
completion time (p50, p95) is set against bare Playwright running as many tasks at once.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import sim
from graph import Context, Plan, Step, build_graph
from tests.fixtures.processes import serving
from tools import ToolRegistry, default_registry
from tools.chromium import QUIET_FLAGS, chromium_path


@contextmanager
def demo_crm(db: Path, *, auth: bool = False) -> Iterator[str]:
    """The demo CRM over `db` in a process of its own (`python -m demo_site.server`), with
    its login on when `auth` (`demo_site.auth.make_credentials(db)` first); yields its URL."""
    from demo_site.server import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving([sys.executable, "-m", "demo_site.server", "--db", str(db),
                  "--port", str(port), *(["--auth"] if auth else [])], f"{url}/health",
                 ready_status=200):
        yield url


def browser_tasks(site: str, k: int) -> Plan:
    """k independent tasks, each a goto then a read in a named session of its own."""
    steps: list[Step] = []
    for i in range(k):
        session = f"task{i}"
        steps += [Step(id=f"open{i}", tool="browser_goto",
                       args={"url": f"{site}/customers/{i % 3 + 1}", "session": session}),
                  Step(id=f"read{i}", tool="browser_read", depends_on=[f"open{i}"],
                       args={"selector": "h1", "session": session})]
    return Plan(goal=f"read {k} customers", steps=steps)


def _tool_phase(out: dict[str, Any]) -> float:
    results = out["results"]
    start = min(r.started_at.timestamp() for r in results)
    return max(r.started_at.timestamp() + r.duration_ms / 1000 for r in results) - start


async def _ours(registry: ToolRegistry, site: str, k: int, limit: int, screenshots: bool,
                timeout: float = 600) -> dict[str, Any]:
    """One run of k tasks through the graph; its tool phase, wall, and who waited."""
    plan = browser_tasks(site, k)
    model = sim.SimulatedChatModel(responses=[sim.graph_responder(plan)] * 4, scale=0.0)
    graph = build_graph(model=model, tools=registry)
    context = Context(allowed_hosts=[site.removeprefix("http://")], max_browser_sessions=limit,
                      step_screenshots=screenshots, max_steps=10_000, max_tool_calls=20_000)
    start = time.perf_counter()
    out = await asyncio.wait_for(graph.ainvoke({"task": plan.goal}, context=context), timeout)
    wall = time.perf_counter() - start
    statuses = sorted({r.status for r in out["results"]})
    errors = sorted({f"{r.step_id}: {r.error.type}: {r.error.message[:160]}"
                     for r in out["results"] if r.error})[:3]
    return {"status": str(out["status"].value), "statuses": statuses, "errors": errors,
            "wall_s": wall,
            "tool_phase_s": _tool_phase(out), "steps": len(out["results"]),
            "waited": sum(1 for r in out["results"] if r.waited),
            "completions": _completions(out)}


def _completions(out: dict[str, Any]) -> list[float]:
    """When each task finished (its read), in seconds from the first step's start."""
    results = out["results"]
    start = min(r.started_at.timestamp() for r in results)
    return sorted(r.started_at.timestamp() + r.duration_ms / 1000 - start
                  for r in results if r.step_id.startswith("read"))


async def _bare(browser: Any, site: str, k: int, slots: int | None = None) -> dict[str, Any]:
    """k fresh contexts of one browser, each opening its page and reading the heading; with
    `slots`, at most that many tasks at once (a semaphore held for a whole task, as a user
    would write it). Its wall, and when each task finished."""
    admitted = asyncio.Semaphore(slots or k)

    async def task(i: int) -> float:
        async with admitted:
            context = await browser.new_context()
            try:
                page = await context.new_page()
                await page.goto(f"{site}/customers/{i % 3 + 1}")
                await page.locator("h1").first.inner_text()
            finally:
                await context.close()
        return time.perf_counter() - start

    start = time.perf_counter()
    completions = await asyncio.gather(*(task(i) for i in range(k)))
    return {"wall_s": time.perf_counter() - start, "completions": sorted(completions)}


async def launch_bare(playwright: Any) -> Any:
    """Bare Playwright's browser: the pool's Chromium binary, with its quiet flags."""
    flags = [*QUIET_FLAGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    return await playwright.chromium.launch(executable_path=chromium_path(), args=flags)


def percentile(values: list[float], share: float) -> float:
    """The `share` quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _completion_figures(completions: list[float], wall: float) -> dict[str, float]:
    """p50 and p95 of per-task completion times, the wall of all tasks, and p50 / wall."""
    p50 = percentile(completions, 0.5)
    return {"p50_s": p50, "p95_s": percentile(completions, 0.95), "wall_s": wall,
            "p50_over_wall": p50 / wall}


async def browser_sessions(ks: list[int], queue_ks: list[int], repeats: int,
                           folder: Path) -> dict[str, Any]:
    """Figure 11 (see the module's docstring): medians of `repeats` runs at each k, all
    tasks at once; then at each of `queue_ks`, the tasks on the default slots, which must
    finish, with when each task finished against bare Playwright on as many slots."""
    from playwright.async_api import async_playwright

    limit = Context().max_browser_sessions
    with demo_crm(folder / "crm.sqlite") as site:
        registry = default_registry()  # one pool, so one shared Chromium, for every run
        async with async_playwright() as pw:
            bare_browser = await launch_bare(pw)
            try:
                await _ours(registry, site, 1, 1, False)  # starts the shared Chromium
                await _bare(bare_browser, site, 1)
                rows = []
                for k in ks:
                    ours, shots, bare = [], [], []
                    for _ in range(repeats):
                        ours.append(await _ours(registry, site, k, k, False))
                        shots.append(await _ours(registry, site, k, k, True))
                        bare.append((await _bare(bare_browser, site, k))["wall_s"])
                    assert all(r["status"] == "completed" for r in ours + shots), ours + shots
                    tool = statistics.median(r["tool_phase_s"] for r in ours)
                    rows.append({
                        "k": k, "ours_tool_phase_s": tool,
                        "ours_wall_s": statistics.median(r["wall_s"] for r in ours),
                        "screenshots_tool_phase_s": statistics.median(
                            r["tool_phase_s"] for r in shots),
                        "bare_s": statistics.median(bare),
                        "ratio": tool / statistics.median(bare)})
                queues = [await _queue(registry, bare_browser, site, k, limit, repeats)
                          for k in queue_ks]
            finally:
                await bare_browser.close()
                await registry.aclose()
    return {"rows": rows, "repeats": repeats, "queues": queues}


async def _queue(registry: ToolRegistry, bare_browser: Any, site: str, k: int, limit: int,
                 repeats: int) -> dict[str, Any]:
    """k tasks on `limit` slots, `repeats` times: whether every run finished, and the
    medians of its completion figures, ours and bare Playwright's."""
    ours, bare = [], []
    for _ in range(repeats):
        run = await _ours(registry, site, k, limit, False)
        ours.append(run)
        bare.append(await _bare(bare_browser, site, k, limit))
    figures = {f"ours_{name}": statistics.median(
        _completion_figures(r["completions"], r["tool_phase_s"])[name] for r in ours)
        for name in ("p50_s", "p95_s", "wall_s", "p50_over_wall")}
    figures |= {f"bare_{name}": statistics.median(
        _completion_figures(r["completions"], r["wall_s"])[name] for r in bare)
        for name in ("p50_s", "p95_s", "wall_s", "p50_over_wall")}
    return {"k": k, "limit": limit,
            "status": "completed" if all(r["status"] == "completed" for r in ours)
            else next(r["status"] for r in ours if r["status"] != "completed"),
            "statuses": sorted({s for r in ours for s in r["statuses"]}),
            "errors": [e for r in ours for e in r["errors"]][:3],
            "steps": ours[-1]["steps"], "waited": ours[-1]["waited"], **figures}
