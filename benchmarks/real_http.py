"""The real `http_request` tool against a real loopback server in its own process.

The server (`benchmarks.http_server`) answers `GET /delay/{ms}` after `ms` milliseconds, so
a step's duration is set by the server, not by a tool that sleeps. Three contenders send
the same requests in the same run:
- nova-duet: `build_graph` + `ainvoke` with the built-in registry and a sandbox allowing
  exactly the server; the simulated model answers at once with the whole plan (the model is
  not what this measures);
- bare: one shared `httpx.AsyncClient` and `asyncio`, each request sent the moment its
  dependencies have answered (at most 100 at once, the pool's connections);
- ReAct: LangChain's `create_agent` with the same tool and sandbox; its (instant) model
  asks for every request whose dependencies have answered in one turn, so the tool node
  runs them concurrently (ReAct at its best).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.tools import StructuredTool

from benchmarks import sim
from demo_site.server import free_port
from graph import Context, Plan, Step, build_graph
from tests.fixtures.processes import serving
from tools import SandboxPolicy, StepContext, default_registry, http_request_tool
from tools.http import clients as http_clients


@contextmanager
def delay_server() -> Iterator[str]:
    """`benchmarks.http_server` in its own process on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving([sys.executable, "-m", "benchmarks.http_server", "--port", str(port)],
                 f"{url}/ok", ready_status=200):
        yield url


def as_http(plan: Plan, base: str, scale: float = 1.0) -> Plan:
    """A simulated plan of `work` steps as GETs of the delay server, step for step: each
    step takes the server as long as the `work` step would have slept (times `scale`)."""
    return Plan(goal=plan.goal, steps=[
        Step(id=s.id, tool="http_request", depends_on=s.depends_on,
             args={"url": _delay_url(base, s.args.get("seconds", sim.TOOL_S) * scale,
                                     s.args["item"])}) for s in plan.steps])


def delay_call(base: str, scale: float, item: int) -> dict[str, Any]:
    """A ReAct model's call of `http_request` on `item`, as long as a `work` step."""
    return {"name": "http_request", "args": {"url": _delay_url(base, sim.TOOL_S * scale, item)}}


def _delay_url(base: str, seconds: float, item: int) -> str:
    return f"{base}/delay/{round(seconds * 1000)}?item={item}"


def sandbox_settings(base: str) -> dict[str, Any]:
    """Run settings allowing exactly the delay server, its writes approved (there are none)."""
    return {"allowed_hosts": [base.removeprefix("http://")], "approval": "auto"}


def policy(base: str) -> SandboxPolicy:
    """The sandbox of a run under `sandbox_settings(base)`, for tools called outside one."""
    return Context(**sandbox_settings(base)).sandbox_policy()


def http_tool(base: str, spans: list[tuple[float, float]] | None = None) -> StructuredTool:
    """`http_request` for callers outside a run (a ReAct agent's tool node, the wave
    scheduler), which hand a tool no `InjectedStep`: the arguments the model sees, each call
    under the sandbox of a run under `sandbox_settings(base)`. With `spans`, each call's
    start and end are recorded."""
    step = StepContext(policy=policy(base))
    request = http_request_tool.coroutine
    assert request is not None

    async def call(**args: Any) -> Any:
        begun = time.time()
        try:
            return await request(step=step, **args)
        finally:
            if spans is not None:
                spans.append((begun, time.time()))
    return StructuredTool.from_function(coroutine=call, name=http_request_tool.name,
                                        description=http_request_tool.description,
                                        args_schema=http_request_tool.tool_call_schema)


def fan_out(k: int, milliseconds: int) -> Plan:
    """k independent `work` steps of `milliseconds` each."""
    return Plan(goal=f"fetch {k} items", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i, "seconds": milliseconds / 1000})
        for i in range(k)])


def uneven(k: int, seed: int) -> Plan:
    """k steps of 20 to 400 ms (uniform), each depending on up to two of the previous five."""
    rng = random.Random(seed)
    steps = []
    for i in range(k):
        earlier = list(range(max(0, i - 5), i))
        deps = rng.sample(earlier, min(len(earlier), rng.choice([0, 1, 2])))
        steps.append(Step(id=f"s{i}", tool="work", depends_on=[f"s{d}" for d in sorted(deps)],
                          args={"item": i, "seconds": rng.randint(20, 400) / 1000}))
    return Plan(goal=f"fetch {k} items of uneven length", steps=steps)


def _context(base: str) -> Context:
    """Budgets out of the way, the sandbox allowing exactly the delay server."""
    return Context(max_steps=100_000, max_tool_calls=100_000, token_budget=10**9,
                   deadline_seconds=10_000, **sandbox_settings(base))


async def run_ours(plan: Plan, base: str) -> dict[str, float]:
    """nova-duet on the plan (given whole): wall, tool phase and process CPU."""
    model = sim.SimulatedChatModel(responses=[sim.graph_responder(plan)] * 4, scale=0.0,
                                   stream_fragment=None)
    registry = default_registry()
    graph = build_graph(model=model, tools=registry)
    cpu, start = time.process_time(), time.perf_counter()
    out = await graph.ainvoke({"task": plan.goal}, context=_context(base))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    await registry.aclose()
    assert out["status"] == "completed", out.get("reason")
    spans = [(r.started_at.timestamp(), r.started_at.timestamp() + r.duration_ms / 1000)
             for r in out["results"]]
    return _figures(spans, wall, cpu)


async def run_bare(plan: Plan) -> dict[str, float]:
    """The same requests with one shared `httpx.AsyncClient`, each sent as soon as its
    dependencies have answered."""
    spans: list[tuple[float, float]] = []
    # As a careful user would: past the pool's 100 connections, requests wait on a
    # semaphore (waiting in httpx's own pool costs CPU per waiter, and times out at 500).
    admitted = asyncio.Semaphore(100)
    async with httpx.AsyncClient() as client:
        finished: dict[str, asyncio.Task[None]] = {}

        async def send(step: Step) -> None:
            await asyncio.gather(*(finished[dep] for dep in step.depends_on))
            begun = time.time()
            async with admitted:
                response = await client.get(step.args["url"])
            response.json()
            spans.append((begun, time.time()))

        cpu, start = time.process_time(), time.perf_counter()
        for step in plan.steps:  # plans list dependencies first
            finished[step.id] = asyncio.create_task(send(step))
        await asyncio.gather(*finished.values())
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return _figures(spans, wall, cpu)


def _react_turns(plan: Plan) -> Callable[[list[BaseMessage]], Any]:
    """Each turn asks for every step whose dependencies have answered; then the answer."""
    by_id = {step.id: step for step in plan.steps}

    def respond(messages: list[BaseMessage]) -> Any:
        asked = {call["id"] for m in messages if isinstance(m, AIMessage)
                 for call in m.tool_calls}
        done = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
        ready = [s for s in plan.steps if s.id not in asked
                 and all(d in done for d in s.depends_on)]
        if not ready:
            return f"Fetched all {len(by_id)} items."
        return [{"name": "http_request", "args": s.args, "id": s.id} for s in ready]
    return respond


async def run_react(plan: Plan, base: str) -> dict[str, float]:
    """`create_agent` over the same tool and sandbox, every ready call in one turn."""
    model = sim.SimulatedChatModel(responses=[_react_turns(plan)] * (len(plan.steps) + 1),
                                   scale=0.0, stream_fragment=None)
    spans: list[tuple[float, float]] = []
    agent = create_agent(model, tools=[http_tool(base, spans)])
    cpu, start = time.process_time(), time.perf_counter()
    out = await agent.ainvoke({"messages": [("user", plan.goal)]},
                              {"recursion_limit": 4 * len(plan.steps) + 10})
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    # The shared client's connections closed, as ours closes them with its registry: each
    # contender starts from a fresh pool, as bare httpx does (a pool left with idle
    # connections made the next run's pool work 4x, whoever ran next).
    await http_clients.aclose()
    assert "Fetched all" in str(out["messages"][-1].content)
    return _figures(spans, wall, cpu)


async def fixed_cost(base: str, repeats: int) -> dict[str, float]:
    """Fixed cost per run: from `ainvoke` to the first tool call, with the plan in hand (the
    simulated model answers at once with a one-GET plan), in milliseconds, median of
    `repeats` runs, the graph compiled beforehand; ReAct's on the same GET beside it."""
    plan = as_http(fan_out(1, 0), base)
    ours, react = [], []
    for _ in range(repeats):
        model = sim.SimulatedChatModel(responses=[sim.graph_responder(plan)] * 4, scale=0.0,
                                       stream_fragment=None)
        registry = default_registry()
        graph = build_graph(model=model, tools=registry)
        start = time.time()
        out = await graph.ainvoke({"task": plan.goal}, context=_context(base))
        await registry.aclose()
        assert out["status"] == "completed", out.get("reason")
        ours.append((out["results"][0].started_at.timestamp() - start) * 1000)
        model = sim.SimulatedChatModel(responses=[_react_turns(plan)] * 2, scale=0.0,
                                       stream_fragment=None)
        spans: list[tuple[float, float]] = []
        agent = create_agent(model, tools=[http_tool(base, spans)])
        start = time.time()
        await agent.ainvoke({"messages": [("user", plan.goal)]})
        react.append((spans[0][0] - start) * 1000)
    return {"repeats": repeats, "ours_ms": statistics.median(ours),
            "react_ms": statistics.median(react)}


def _figures(spans: list[tuple[float, float]], wall: float, cpu: float) -> dict[str, float]:
    """Tool phase (first request sent to last answer), wall and CPU per step."""
    phase = max(end for _, end in spans) - min(begun for begun, _ in spans)
    return {"tool_phase_s": phase, "wall_s": wall, "cpu_ms_per_step": cpu / len(spans) * 1000}


def critical_path(plan: Plan) -> float:
    """The longest chain of server delays through the plan, in seconds."""
    return sim.critical_path(plan, 1.0)


async def real_http(ks: list[int], fan_out_ms: int, base: str,
                    seed: int = 7) -> list[dict[str, Any]]:
    """The figure: a fan-out and an uneven DAG at each k, the three contenders on each,
    against the delay server at `base`."""
    rows = []
    for k in ks:
        for shape, plan in (("fan-out", fan_out(k, fan_out_ms)), ("uneven DAG",
                                                                    uneven(k, seed + k))):
            floor = critical_path(plan)
            requests = as_http(plan, base)
            bare = await run_bare(requests)
            ours = await run_ours(requests, base)
            react = await run_react(requests, base)
            rows.append({"k": k, "shape": shape, "critical_path_s": floor,
                         **{f"{who}_{key}": value for who, figures in
                            (("bare", bare), ("ours", ours), ("react", react))
                            for key, value in figures.items()},
                         "ours_over_bare": ours["tool_phase_s"] / bare["tool_phase_s"],
                         "react_over_bare": react["tool_phase_s"] / bare["tool_phase_s"],
                         "ours_over_critical_path": ours["tool_phase_s"] / floor,
                         "cpu_ms_per_step_above_bare": ours["cpu_ms_per_step"]
                         - bare["cpu_ms_per_step"]})
    return rows
