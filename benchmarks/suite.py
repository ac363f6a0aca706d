"""The figures. Each returns plain data; `report` turns it into a table and charts."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypedDict

from langchain.agents import create_agent
from langgraph.graph import END, START, StateGraph

from benchmarks import caching, real_http, sim
from benchmarks.browser import browser_sessions
from benchmarks.logins import browser_logins
from graph import Context, Plan, build_graph
from graph.checkpoints import open_checkpointer, open_store
from tests.fixtures.langgraph_server import langgraph_server
from tests.fixtures.postgres import postgres_bin, running_postgres
from tools import ToolRegistry, default_registry

ROOT = Path(__file__).resolve().parents[1]


async def _run_graph(plan: Plan, scale: float, *, checkpointer: Any = None,
                     store: Any = None, output_chars: int = 200, thread: str = "bench",
                     model_scale: float | None = None, responder: Any = None,
                     tools: ToolRegistry | None = None,
                     **context: Any) -> tuple[float, sim.SimulatedChatModel, dict]:
    """Our graph on `plan` with the simulated model; `tools` default to the simulated
    `work` tool (figures that need durations they control)."""
    model = sim.SimulatedChatModel(responses=[responder or sim.graph_responder(plan)] * 10_000,
                                   scale=scale if model_scale is None else model_scale)
    tools = tools if tools is not None else sim.registry(scale, output_chars)
    graph = build_graph(model=model, tools=tools, checkpointer=checkpointer, store=store)
    context = {"max_steps": 10_000, "max_tool_calls": 20_000, "token_budget": 10**9,
               "deadline_seconds": 10_000, "max_replans": 10_000, **context}
    start = time.perf_counter()
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
    try:
        out = await graph.ainvoke({"task": plan.goal}, config,
                                  context=Context(**context),
                                  durability="sync" if checkpointer else None)
    finally:
        await tools.aclose()
    assert out["status"] == "completed", out.get("reason")
    return time.perf_counter() - start, model, out


async def _run_react(k: int, scale: float, base: str | None = None
                     ) -> tuple[float, sim.SimulatedChatModel]:
    """ReAct, one tool call a turn: the simulated `work` tool, or with `base` (the delay
    server) the real `http_request` against it, each call as long as a `work` step."""
    if base is None:
        tool, call = sim.work_tool(scale), sim.work_call
    else:
        tool, call = real_http.http_tool(base), functools.partial(real_http.delay_call, base,
                                                                  scale)
    model = sim.SimulatedChatModel(responses=[sim.react_responder(k, call)] * (k + 1),
                                   scale=scale)
    agent = create_agent(model, tools=[tool])
    start = time.perf_counter()
    out = await agent.ainvoke({"messages": [("user", f"process {k} items")]},
                              {"recursion_limit": 4 * k + 10})
    assert "Processed all" in str(out["messages"][-1].content)
    return time.perf_counter() - start, model


def _model_seconds(model: sim.SimulatedChatModel) -> float:
    return sum(call["seconds"] for call in model.calls)


def _tokens(model: sim.SimulatedChatModel) -> dict[str, float]:
    inputs = sum(c["input_tokens"] for c in model.calls)
    outputs = sum(c["output_tokens"] for c in model.calls)
    cost = inputs / 1e6 * sim.PRICE_INPUT_PER_M + outputs / 1e6 * sim.PRICE_OUTPUT_PER_M
    return {"calls": len(model.calls), "input_tokens": inputs, "output_tokens": outputs,
            "cost_usd": cost}


async def parallel_speedup(ks: list[int], scale: float, base: str) -> list[dict[str, float]]:
    """Figure 1: k independent steps of the real `http_request` against the delay server
    (`base`), each as long as a simulated tool call; wall time against the critical path
    and baselines. The model is simulated: its reasoning calls are part of the figure."""
    rows = []
    for k in ks:
        real = {"tools": default_registry(), **real_http.sandbox_settings(base)}
        wall, model, _ = await _run_graph(real_http.as_http(sim.independent_plan(k), base,
                                                            scale), scale, **real)
        floor = sim.TOOL_S * scale + _model_seconds(model)  # one tool on the critical path
        sequential, seq_model, _ = await _run_graph(
            real_http.as_http(sim.chained_plan(k), base, scale), scale, **real)
        react, react_model = await _run_react(k, scale, base)
        rows.append({"k": k, "wall_s": wall, "critical_path_s": floor,
                     "wall_over_critical_path": wall / floor,
                     "sequential_s": sequential, "react_s": react,
                     "speedup_vs_sequential": sequential / wall, "speedup_vs_react": react / wall,
                     "reasoning_calls": len(model.calls), "react_calls": len(react_model.calls)})
    return rows


def _tool_phase(out: dict[str, Any]) -> float:
    """Seconds from the first step's start to the last step's end."""
    results = out["results"]
    start = min(r.started_at.timestamp() for r in results)
    return max(r.started_at.timestamp() + r.duration_ms / 1000 for r in results) - start


async def uneven_dags(ks: list[int], scale: float, base: str,
                      seed: int = 11) -> list[dict[str, float]]:
    """Figure 7: plans of long-tailed step durations, each step the real `http_request`
    against the delay server (`base`), which takes as long as the step says; the tool phase
    against the critical path, beside wave scheduling of the same requests in the same run.

    Scheduling alone: both get the whole plan at once (the model answers instantly here),
    as the critical path assumes; figure 8 measures the plan's streaming."""
    rows = []
    for k in ks:
        plan = sim.uneven_plan(k, seed + k)
        requests = real_http.as_http(plan, base, scale)
        _, _, out = await _run_graph(requests, scale, model_scale=0.0,
                                     tools=default_registry(), **real_http.sandbox_settings(base))
        ours, floor = _tool_phase(out), sim.critical_path(plan, scale)
        waves = await sim.run_in_waves(requests, real_http.http_tool(base))
        rows.append({"k": k, "critical_path_s": floor, "ours_s": ours, "waves_s": waves,
                     "ours_over_critical_path": ours / floor,
                     "waves_over_critical_path": waves / floor})
    return rows


async def first_tool_call(steps: int, scale: float) -> dict[str, float]:
    """Figure 8: when the first tool starts, as a fraction of the plan's generation time
    (20 independent steps, streamed; 1.0 would be waiting for the whole plan)."""
    _, model, out = await _run_graph(sim.independent_plan(steps), scale)
    plan_call = next(c for c in model.calls if c["kind"] == "plan")
    first = min(r.started_at.timestamp() for r in out["results"])
    generation = plan_call["ended"] - plan_call["started"]
    return {"steps": steps, "plan_generation_s": generation,
            "first_tool_after_s": first - plan_call["started"],
            "fraction": (first - plan_call["started"]) / generation,
            "steps_started_before_plan_ended": sum(
                r.started_at.timestamp() < plan_call["ended"] for r in out["results"])}


async def reasoning_cost(sizes: list[int]) -> list[dict[str, float]]:
    """Figure 2: reasoning calls, tokens and dollars per task, ours against ReAct."""
    rows = []
    for n in sizes:
        _, model, _ = await _run_graph(sim.independent_plan(n), 0.0)
        _, react_model = await _run_react(n, 0.0)
        ours, react = _tokens(model), _tokens(react_model)
        rows.append({"steps": n, **{f"ours_{key}": v for key, v in ours.items()},
                     **{f"react_{key}": v for key, v in react.items()},
                     "token_ratio": (react["input_tokens"] + react["output_tokens"])
                     / (ours["input_tokens"] + ours["output_tokens"]),
                     "cost_ratio": react["cost_usd"] / ours["cost_usd"]})
    return rows


async def context_growth(steps: int, early_steps: int = 20) -> dict[str, Any]:
    """Figure 3: prompt tokens of each reasoning call over a long run, summarizing or not.

    Every step needs judgment, so the model is asked after each one; a step's number is
    the count of `observe` calls so far.
    """
    series, ratios = {}, {}
    for label, threshold in (("summarization_on", 6_000), ("summarization_off", 10**9)):
        _, model, _ = await _run_graph(sim.chained_plan(steps, judged=True), 0.0,
                                       output_chars=600, summarize_threshold_tokens=threshold)
        series[label] = [call["input_tokens"] for call in model.calls]
        step, early = 0, 0
        for call in model.calls:
            step += call["kind"] == "observe"
            if step <= early_steps:
                early = max(early, call["input_tokens"])
        ratios[label] = max(series[label]) / early
    return {"steps": steps, "early_steps": early_steps, "series": series,
            "on_late_over_early": ratios["summarization_on"],
            "off_late_over_early": ratios["summarization_off"]}


class _BareState(TypedDict):
    done: int


async def _bare_loop(steps: int, saver: Any, thread: str) -> float:
    """Seconds a bare LangGraph loop of `steps` no-op tool calls takes, a checkpoint each."""
    tool = sim.work_tool(0.0)

    async def step(state: _BareState) -> dict[str, int]:
        await tool.ainvoke({"item": state["done"]})
        return {"done": state["done"] + 1}

    bare = StateGraph(_BareState)
    bare.add_node("step", step)
    bare.add_edge(START, "step")
    bare.add_conditional_edges("step", lambda s: "step" if s["done"] < steps else END)
    loop = bare.compile(checkpointer=saver)
    start = time.perf_counter()
    await loop.ainvoke({"done": 0}, {"configurable": {"thread_id": thread},
                                     "recursion_limit": steps * 2 + 10}, durability="sync")
    return time.perf_counter() - start


async def _stored_bytes(url: str, thread: str) -> int:
    """Bytes of the checkpoints (and their pending writes) a thread left in the saver."""
    if url.startswith("postgres"):
        import psycopg

        queries = ("SELECT SUM(pg_column_size(checkpoint) + pg_column_size(metadata)) "
                   "FROM checkpoints WHERE thread_id = %s",
                   "SELECT SUM(pg_column_size(blob)) FROM checkpoint_blobs WHERE thread_id = %s",
                   "SELECT SUM(pg_column_size(blob)) FROM checkpoint_writes WHERE thread_id = %s")
        async with await psycopg.AsyncConnection.connect(url) as db:
            sizes = [(await (await db.execute(q, (thread,))).fetchone())[0] for q in queries]
        return sum(size or 0 for size in sizes)
    with sqlite3.connect(url) as db:
        sizes = [db.execute(q, (thread,)).fetchone()[0] for q in (
            "SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints "
            "WHERE thread_id = ?", "SELECT SUM(LENGTH(value)) FROM writes WHERE thread_id = ?")]
    return sum(size or 0 for size in sizes)


WORKLOADS = {
    # What the figure's goals are about: one plan of chained no-op steps.
    "chained plan": lambda n: (sim.chained_plan(n), sim.graph_responder(sim.chained_plan(n))),
    # The state's worst case: a new plan for every step, so every step writes checkpoints.
    "a plan per step": lambda n: (Plan(goal=f"process {n} items one at a time", steps=[]),
                                  sim.stepwise_responder(n)),
}


async def long_runs(sizes: list[int], bare_steps: int,
                    backends: dict[str, str]) -> list[dict[str, Any]]:
    """Figure 4: time and checkpoint bytes per step as runs get longer, on each checkpointer
    (sync durability, ours with its step ledger in the store beside it), and a bare
    LangGraph loop on the same checkpointer. Tools and model take no time."""
    rows = []
    for backend, url in backends.items():
        async with open_checkpointer(url) as saver, open_store(url) as store:
            for workload, make in WORKLOADS.items():
                for n in sizes:
                    plan, responder = make(n)
                    thread = f"{workload}-{n}".replace(" ", "-")
                    seconds, _, _ = await _run_graph(plan, 0.0, checkpointer=saver,
                                                     store=store, thread=thread,
                                                     responder=responder)
                    rows.append({"backend": backend, "workload": workload, "steps": n,
                                 "ms_per_step": seconds / n * 1000,
                                 "kib_per_step": await _stored_bytes(url, thread) / n / 1024})
            seconds = await _bare_loop(bare_steps, saver, "bare")
            rows.append({"backend": backend, "workload": "bare LangGraph loop",
                         "steps": bare_steps, "ms_per_step": seconds / bare_steps * 1000,
                         "kib_per_step": await _stored_bytes(url, "bare") / bare_steps / 1024})
    return rows


@contextmanager
def executor_servers(count: int, scale: float, folder: Path) -> Iterator[list[str]]:
    """`count` executor deployments (`langgraph dev`, serving the executor graph and its
    step route) over the simulated tools."""
    env = {"DUET_BENCH_SCALE": str(scale), "PYTHONPATH": str(ROOT),
           "DUET_HOME": str(folder / "executor-home")}
    with ExitStack() as stack:
        yield [stack.enter_context(langgraph_server(
            folder / f"executor-{n}.log", env, config=ROOT / "benchmarks/executor.json"))
            for n in range(count)]


def _no_op_chain(n: int) -> Plan:
    """A chain of n steps of the simulated tool that take no time, wherever they run."""
    plan = sim.chained_plan(n)
    return plan.model_copy(update={"steps": [
        step.model_copy(update={"args": {**step.args, "seconds": 0}}) for step in plan.steps]})


async def remote_execution(k: int, chain: int, scale: float,
                           urls: list[str]) -> dict[str, Any]:
    """Figure 9: k simulated browser steps (independent) run in-process and on one and two
    executor servers (over their step route), the tool phase against the critical path;
    and the time a remote step adds, from a chain of no-op steps run both ways.

    First one no-op step on each server: what a planner and a server do once (the client
    and its first connection, the code each loads on first use) is not a step's cost."""
    for url in urls:
        await _run_graph(_no_op_chain(1), 0.0, executor_url=url, thread="warm-up")
    rows = []
    for how, setting in (("in-process", None), ("1 executor server", urls[0]),
                         ("2 executor servers", ",".join(urls))):
        # The whole plan at once (as in figure 7): this measures where the steps run.
        _, _, out = await _run_graph(sim.independent_plan(k), scale, model_scale=0.0,
                                     executor_url=setting)
        floor = sim.TOOL_S * scale
        rows.append({"how": how, "tool_phase_s": _tool_phase(out), "critical_path_s": floor,
                     "over_critical_path": _tool_phase(out) / floor})
    per_step = {}
    for how, setting in (("in-process", None), ("remote", urls[0])):
        _, _, out = await _run_graph(_no_op_chain(chain), 0.0, executor_url=setting)
        per_step[how] = _tool_phase(out) / chain * 1000
    return {"k": k, "rows": rows, "chain": chain,
            "in_process_ms_per_step": per_step["in-process"],
            "remote_ms_per_step": per_step["remote"],
            "overhead_ms_per_step": per_step["remote"] - per_step["in-process"]}


def _time_command(code: list[str], repeats: int, home: Path) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(code, check=True, capture_output=True, cwd=ROOT,
                       env={**os.environ, "DUET_HOME": str(home)})
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_event_seconds(home: Path, plan: Path, repeats: int) -> float:
    """Median seconds from starting `duet run` to its first trace event (`run_started`)."""
    times = []
    for attempt in range(repeats):
        thread = f"first-{attempt}"
        trace = home / "traces" / f"{thread}.jsonl"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "graph.app.cli", "run", "t", "--plan-file",
                                 str(plan), "--thread", thread, "--json"], cwd=ROOT,
                                env={**os.environ, "DUET_HOME": str(home)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (trace.exists() and trace.stat().st_size) and proc.poll() is None:
            time.sleep(0.002)
        times.append(time.perf_counter() - start)
        proc.wait()
    return statistics.median(times)


def startup(repeats: int) -> list[dict[str, float]]:
    """Figure 5: start-up of a process each, against plain Python and bare LangGraph."""
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        home, plan = Path(folder), Path(folder) / "plan.json"
        plan.write_text(json.dumps({"goal": "nothing to do", "steps": []}))
        subprocess.run([python, "-m", "graph.app.cli", "run", "t", "--plan-file", str(plan),
                        "--thread", "shown", "--json"], cwd=ROOT, capture_output=True,
                       env={**os.environ, "DUET_HOME": str(home)})
        commands = {
            "python (baseline)": [python, "-c", "pass"],
            "import langgraph.graph (baseline)": [python, "-c", "import langgraph.graph"],
            "import graph": [python, "-c", "import graph"],
            "build the graph": [python, "-c", "from graph import build_graph; build_graph()"],
            "duet --help": [python, "-m", "graph.app.cli", "--help"],
            "duet schema": [python, "-m", "graph.app.cli", "schema"],
            "duet show THREAD": [python, "-m", "graph.app.cli", "show", "shown"],
        }
        timings = {name: _time_command(code, repeats, home) for name, code in commands.items()}
        timings["duet run: first event"] = _first_event_seconds(home, plan, repeats)
    base = timings["import langgraph.graph (baseline)"]
    return [{"what": name, "seconds": s, "vs_langgraph_import": s / base}
            for name, s in timings.items()]


PROBE = """
import asyncio, json, sys, tempfile
from benchmarks import suite, sim
from graph.checkpoints import open_checkpointer, open_store
from langgraph.checkpoint.memory import InMemorySaver
mode, n = sys.argv[1], int(sys.argv[2])
async def main():
    if mode == "run":  # as `duet run` keeps it: SQLite checkpoints, the ledger beside them
        with tempfile.TemporaryDirectory() as folder:
            url = folder + "/run.sqlite"
            async with open_checkpointer(url) as saver, open_store(url) as store:
                await suite._run_graph(sim.chained_plan(n), 0.0, checkpointer=saver,
                                       store=store)
    elif mode == "threads":
        saver = InMemorySaver()
        await asyncio.gather(*(suite._run_graph(sim.independent_plan(5), 0.0, checkpointer=saver,
                                                thread=f"t{i}") for i in range(n)))
    else:
        from graph import build_graph
        build_graph()
asyncio.run(main())
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
status = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(json.dumps(int(status) / 1024))
"""


def _peak_mb(mode: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(n)], check=True,
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def memory(sizes: list[int], threads: int) -> list[dict[str, Any]]:
    """Figure 6: peak RSS of runs of each size and of concurrent threads, against the bare
    import."""
    base = _peak_mb("idle", 0)
    rows = [{"what": "import and build (baseline)", "peak_mb": base, "vs_baseline": 1.0}]
    runs = [(f"{n}-step run", "run", n) for n in sizes]
    for what, mode, n in (*runs, (f"{threads} concurrent threads", "threads", threads)):
        peak = _peak_mb(mode, n)
        rows.append({"what": what, "steps": n if mode == "run" else None, "peak_mb": peak,
                     "vs_baseline": peak / base})
    return rows


SIZES = {
    "full": {"ks": [1, 2, 4, 8, 16], "scale": 1.0, "cost_sizes": [5, 10, 20],
             "uneven_ks": [8, 16, 32], "first_tool_steps": 20, "context_steps": 200,
             "long_runs": [50, 200, 800], "bare_steps": 200, "repeats": 5, "threads": 50,
             "remote_k": 16, "remote_chain": 50, "http_ks": [100, 500], "http_fan_out_ms": 50,
             "browser_ks": [4, 8, 16], "browser_queue_ks": [16, 64], "browser_repeats": 3,
             "fixed_cost_repeats": 20, "login_repeats": 20,
             "caching_steps": [10, 20], "caching_tools": [10, 40]},
    "smoke": {"ks": [1, 4], "scale": 0.02, "cost_sizes": [5], "uneven_ks": [8],
              "first_tool_steps": 20, "context_steps": 40, "long_runs": [10, 40],
              "bare_steps": 20, "repeats": 1, "threads": 5, "remote_k": 4, "remote_chain": 5,
              "http_ks": [20], "http_fan_out_ms": 20, "browser_ks": [2], "browser_queue_ks": [6],
              "browser_repeats": 1, "fixed_cost_repeats": 3, "login_repeats": 2,
              "caching_steps": [5], "caching_tools": [40]},
}


def _served_figures(p: dict[str, Any], base: str,
                    folder: Path) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Figures 10, 11 and 13 and the fixed cost per run, by name: they need only the delay
    server at `base` (and the demo CRM, which figures 11 and 13 start in `folder`)."""
    return {
        "real_http": lambda: real_http.real_http(p["http_ks"], p["http_fan_out_ms"], base),
        "fixed_cost": lambda: real_http.fixed_cost(base, p["fixed_cost_repeats"]),
        "browser_sessions": lambda: browser_sessions(
            p["browser_ks"], p["browser_queue_ks"], p["browser_repeats"], folder),
        "browser_logins": lambda: browser_logins(p["login_repeats"], folder / "logins")}


ONLY = ("real_http", "fixed_cost", "browser_sessions", "browser_logins")


def run_only(names: list[str], size: str) -> dict[str, Any]:
    """Only the figures `names` (of `ONLY`), at `size`: to work on one part of the code.
    The table and its goals need every figure (`run_all`)."""
    p = SIZES[size]
    with tempfile.TemporaryDirectory() as folder, real_http.delay_server() as base:
        figures = _served_figures(p, base, Path(folder))
        return {"size": size, **{name: asyncio.run(figures[name]()) for name in names}}


def run_all(size: str) -> dict[str, Any]:
    """Every figure at `size` ('full' or 'smoke'). Figure 4 runs on Postgres too when it is
    installed (`scripts/setup` installs it)."""
    p = SIZES[size]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        backends = {"sqlite": str(Path(folder) / "long.sqlite")}
        if postgres_bin():
            backends["postgres"] = stack.enter_context(running_postgres())
        long = asyncio.run(long_runs(p["long_runs"], p["bare_steps"], backends))
        urls = stack.enter_context(executor_servers(2, p["scale"], Path(folder)))
        remote = asyncio.run(remote_execution(p["remote_k"], p["remote_chain"], p["scale"],
                                              urls))
        base = stack.enter_context(real_http.delay_server())
        speedup = asyncio.run(parallel_speedup(p["ks"], p["scale"], base))
        uneven = asyncio.run(uneven_dags(p["uneven_ks"], p["scale"], base))
        served = {name: asyncio.run(run()) for name, run in
                  _served_figures(p, base, Path(folder)).items()}
    return {
        "size": size,
        "parallel_speedup": speedup,
        "reasoning_cost": asyncio.run(reasoning_cost(p["cost_sizes"])),
        "uneven_dags": uneven,
        "first_tool_call": asyncio.run(first_tool_call(p["first_tool_steps"], p["scale"])),
        "context_growth": asyncio.run(context_growth(p["context_steps"])),
        "long_runs": long,
        "remote_execution": remote,
        **served,
        "prompt_caching": asyncio.run(caching.prompt_caching(p["caching_steps"],
                                                             p["caching_tools"])),
        "startup": startup(p["repeats"]),
        "memory": memory([p["long_runs"][0], p["long_runs"][-1]], p["threads"]),
        "settings": {"model_base_s": sim.MODEL_BASE_S,
                     "model_per_output_token_s": sim.MODEL_PER_OUTPUT_TOKEN_S,
                     "tool_s": sim.TOOL_S, "scale": p["scale"],
                     "price_input_per_m": sim.PRICE_INPUT_PER_M,
                     "price_output_per_m": sim.PRICE_OUTPUT_PER_M},
    }
