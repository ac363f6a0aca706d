"""Concurrency and load: many threads at once on one checkpointer (SQLite or Postgres).

Each thread's plan writes outputs that carry its own id (two parallel steps, then a step
that joins them through `${...}` references). Checked: no output, answer or checkpoint of a
thread holds another thread's id, every thread saved as many checkpoints as a run alone
does, and the throughput.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.tools import tool

from graph.builder import build_graph
from graph.checkpoints import open_checkpointer, open_store
from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, Step
from graph.testing import ScriptedChatModel
from tools import ToolRegistry

_TASK = re.compile(r"load-run (t\d+)")


@tool
async def tag(label: str) -> str:
    """Return `label` after a short wait (so the threads interleave)."""
    await asyncio.sleep(0.02)
    return label


def _respond(messages: list[BaseMessage]) -> Any:
    text = "\n".join(str(m.content) for m in messages)
    thread = _TASK.search(text).group(1)
    if "You are the planner" in text:
        return Plan(goal=f"tag {thread}", steps=[
            Step(id="a", tool="tag", args={"label": f"{thread}-a"}),
            Step(id="b", tool="tag", args={"label": f"{thread}-b"}),
            Step(id="join", tool="tag", depends_on=["a", "b"],
                 args={"label": "${a.output}+${b.output}"})])
    if "You supervise the execution" in text:
        return Decision(action="finish", reason=f"{thread} done")
    return f"{thread}: done [join]"


@dataclass
class LoadResult:
    """What a load run measured and found."""

    backend: str
    threads: int
    seconds: float
    solo_seconds: float
    checkpoints: int
    problems: list[str] = field(default_factory=list)

    @property
    def runs_per_second(self) -> float:
        """Finished runs per second of wall clock, all threads at once."""
        return self.threads / self.seconds

    @property
    def speedup(self) -> float:
        """Concurrent throughput over running the same threads one after another."""
        return self.solo_seconds * self.threads / self.seconds


async def run_load(url: str, backend: str, threads: int = 50) -> LoadResult:
    """Run `threads` runs at once on the checkpointer at `url`, then check every thread."""
    model = ScriptedChatModel(responses=[_respond] * (4 * threads + 8))
    async with open_checkpointer(url) as saver, open_store(url) as store:
        graph = build_graph(model=model, tools=ToolRegistry([tag], read_only=True),
                            checkpointer=saver, store=store)
        context = Context(max_tool_calls=10)

        async def one(thread: str) -> dict[str, Any]:
            config = {"configurable": {"thread_id": f"{backend}-{thread}"}}
            return await graph.ainvoke({"task": f"load-run {thread}"}, config,
                                       context=context, durability="sync")

        started = time.perf_counter()
        await one("t0")
        solo = time.perf_counter() - started
        solo_history = await _history(graph, f"{backend}-t0")
        started = time.perf_counter()
        outs = await asyncio.gather(*(one(f"t{i}") for i in range(1, threads + 1)))
        seconds = time.perf_counter() - started
        result = LoadResult(backend, threads, seconds, solo, 0)
        for index, out in enumerate(outs, start=1):
            result.problems += await _check_thread(graph, backend, f"t{index}", out,
                                                   len(solo_history), result)
    return result


async def _history(graph: Any, thread_id: str) -> list[Any]:
    return [s async for s in graph.aget_state_history({"configurable": {"thread_id": thread_id}})]


async def _check_thread(graph: Any, backend: str, thread: str, out: dict[str, Any],
                        expected_checkpoints: int, result: LoadResult) -> list[str]:
    problems = []
    if out["status"] != RunStatus.COMPLETED:
        problems.append(f"{thread} ended {out['status']}")
    outputs = [r.output for r in out["results"]]
    if sorted(outputs) != sorted([f"{thread}-a", f"{thread}-b", f"{thread}-a+{thread}-b"]):
        problems.append(f"{thread} has outputs {outputs}")
    if out["final_answer"] != f"{thread}: done [join]":
        problems.append(f"{thread} has the answer {out['final_answer']!r}")
    history = await _history(graph, f"{backend}-{thread}")
    result.checkpoints += len(history)
    if len(history) != expected_checkpoints:
        problems.append(f"{thread} saved {len(history)} checkpoints, not {expected_checkpoints}")
    foreign = {m for s in history for m in re.findall(r"\bt\d+\b", repr(s.values))} - {thread}
    if foreign:
        problems.append(f"{thread}'s checkpoints mention {sorted(foreign)}")
    return problems
