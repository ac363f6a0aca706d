"""The Postgres checkpointer (`DUET_CHECKPOINTER=postgresql://...`) on a real server."""

from __future__ import annotations

import asyncio
import json
import os

from langgraph.types import Command

from graph import Context, Decision, Plan, RunStatus, build_graph
from graph.checkpoints import open_checkpointer
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import host_of
from tests.integration.test_approval import PLAN, approval_tools, sent
from tests.integration.test_cli import duet, read_plan


async def test_concurrent_threads_keep_their_own_state(postgres_url):
    async with open_checkpointer(postgres_url) as saver:
        async def run(i: int):
            model = ScriptedChatModel(responses=[
                Plan(goal=f"g{i}", steps=[]), f"answer {i}"])
            graph = build_graph(model=model, checkpointer=saver)
            config = {"configurable": {"thread_id": f"pg-{i}"}}
            out = await graph.ainvoke({"task": f"task {i}"}, config, context=Context())
            return graph, config, out

        runs = await asyncio.gather(*(run(i) for i in range(20)))
        for i, (graph, config, out) in enumerate(runs):
            assert out["final_answer"] == f"answer {i}"
            state = await graph.aget_state(config)
            assert state.values["task"] == f"task {i}"
            history = [s async for s in graph.aget_state_history(config)]
            assert len(history) >= 3 and all(
                s.values.get("task") in (None, f"task {i}") for s in history)


async def test_an_interrupted_run_resumes_from_postgres_in_a_new_connection(postgres_url):
    config = {"configurable": {"thread_id": "pg-approval"}}
    model = ScriptedChatModel(responses=[PLAN, Decision(action="finish", reason="sent"),
                                         "sent [mail]"])
    tools = approval_tools()
    async with open_checkpointer(postgres_url) as saver:
        graph = build_graph(model=model, tools=tools, checkpointer=saver)
        out = await graph.ainvoke({"task": "t"}, config, context=Context())
        pending = out["__interrupt__"][0]
        assert sent == []
    async with open_checkpointer(postgres_url) as saver:  # a new connection, as a new process
        graph = build_graph(model=model, tools=tools, checkpointer=saver)
        out = await graph.ainvoke(Command(resume={pending.id: {"mail": "approve"}}), config,
                                  context=Context())
        assert out["status"] == RunStatus.COMPLETED and len(sent) == 1
        history = [s async for s in graph.aget_state_history(config)]
        assert [s.next for s in history][-1] == ("__start__",)


def test_cli_runs_and_shows_with_duet_checkpointer(postgres_url, site, tmp_path, monkeypatch):
    monkeypatch.setenv("DUET_CHECKPOINTER", postgres_url)
    plan = read_plan(tmp_path, f"{site}/api/customers/1")
    out = duet("run", "read customer 1", "--plan-file", str(plan), "--thread", "pg-cli", "--json",
               "--allow-host", host_of(site))
    assert out.returncode == 0, out.stderr
    shown = json.loads(duet("show", "pg-cli", "--json").stdout)
    assert shown["status"] == "completed" and shown["results"][0]["output"]["json"]["id"] == 1
    assert os.environ["DUET_CHECKPOINTER"].startswith("postgresql://")
