"""A long run's footprint: checkpoints that grow linearly, results kept in the step ledger
and still shown whole (after the end, on resume, after time travel), and old checkpoints."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from langchain_core.tools import tool

from benchmarks.sim import stepwise_responder
from graph import Context, StepResult, build_graph
from graph.app.threads import saved_run
from graph.checkpoints import open_checkpointer, open_store
from graph.runtime.ledger import StepLedger
from graph.testing import ScriptedChatModel
from tools import ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
executed: list[int] = []
# Budgets that a long run of one-step plans stays within (the defaults end it early), and
# a prompt window that the short run already fills (the summary then folds older results).
ROOMY = Context(max_replans=1_000, max_steps=1_000, max_tool_calls=1_000, token_budget=10**9,
                summarize_threshold_tokens=1_000, keep_recent_results=4)


@tool
async def fetch_item(item: int) -> str:
    """Return a 300-character record for `item`."""
    executed.append(item)
    return f"item {item}: " + "x" * 290


def checkpoint_bytes(path: Path) -> int:
    """Bytes of every checkpoint and pending write the SQLite saver stored."""
    with sqlite3.connect(path) as db:
        (checkpoints,) = db.execute("SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) "
                                    "FROM checkpoints").fetchone()
        (writes,) = db.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes").fetchone()
    return checkpoints + writes


async def long_run(tmp_path: Path, plans: int, thread: str = "long"):
    url = str(tmp_path / f"{thread}-{plans}.sqlite")
    model = ScriptedChatModel(responses=[stepwise_responder(plans, "fetch_item")] * 5 * plans)
    async with open_checkpointer(url) as saver, open_store(url) as store:
        graph = build_graph(model=model, tools=ToolRegistry([fetch_item], read_only=True),
                            checkpointer=saver, store=store)
        config = {"configurable": {"thread_id": thread}, "recursion_limit": 10 * plans}
        out = await graph.ainvoke({"task": "fetch the items"}, config,
                                  context=ROOMY, durability="sync")
    return out, Path(url)


async def test_a_long_runs_checkpoints_grow_linearly_and_keep_every_result(tmp_path):
    short, short_db = await long_run(tmp_path, 15)
    long, long_db = await long_run(tmp_path, 60)
    assert long["status"] == "completed", long["reason"]
    assert [r.step_id for r in long["results"]] == [f"i{k}" for k in range(60)]
    per_step_short = checkpoint_bytes(short_db) / 15
    per_step_long = checkpoint_bytes(long_db) / 60
    # Every result in every checkpoint made this quadratic: 4x the steps cost about 4x
    # the bytes per step. Now a step's checkpoints hold a bounded window of results.
    assert per_step_long < 1.3 * per_step_short, (per_step_short, per_step_long)


async def test_results_live_in_the_ledger_and_survive_time_travel(tmp_path):
    executed.clear()
    out, db = await long_run(tmp_path, 12, thread="travel")
    assert executed == list(range(12))
    url = str(db)
    async with open_checkpointer(url) as saver, open_store(url) as store:
        model = ScriptedChatModel(responses=[stepwise_responder(12, "fetch_item")] * 60)
        graph = build_graph(model=model, tools=ToolRegistry([fetch_item], read_only=True),
                            checkpointer=saver, store=store)
        config = {"configurable": {"thread_id": "travel"}}
        history = [s async for s in graph.aget_state_history(config)]
        # No checkpoint before the end holds the run's results: the ledger does.
        mid_run = [s for s in history if not s.values.get("status") and s.next]
        assert mid_run and not any(s.values.get("results") for s in mid_run)
        assert max(len(s.values.get("recent", [])) for s in mid_run) < 12
        assert len(await StepLedger(store, "travel").results()) == 12

        # Travel back to before step i6 ran, and run from there again.
        before = next(s for s in reversed(history)
                      if s.next == ("plan",) and s.values.get("tally")
                      and s.values["tally"].results == 6)
        again = await graph.ainvoke(None, before.config, context=ROOMY, durability="sync")
    assert again["status"] == "completed"
    assert [r.step_id for r in again["results"]] == [f"i{k}" for k in range(12)]
    # The replayed steps came from the ledger: no item was fetched twice.
    assert executed == list(range(12))
    _, final = await saved_run("travel", url)
    assert [r.step_id for r in final.results] == [f"i{k}" for k in range(12)]


def duet(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graph.app.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DUET_HOME": str(home)})


async def test_a_run_saved_before_the_ledger_is_shown_but_not_resumed(tmp_path, monkeypatch):
    # A checkpoint in the old shape: every result in the state, no tally, not ended.
    home = tmp_path / "home"
    monkeypatch.setenv("DUET_HOME", str(home))
    from langgraph.checkpoint.base import empty_checkpoint

    from graph.app.threads import save_settings

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": []}))
    save_settings("old", "an old task", Context(plan_file=str(plan)), None)
    old = [StepResult(step_id=f"s{k}", tool="fetch_item", status="ok", output=k)
           for k in range(3)]
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"task": "an old task", "results": old, "observed_count": 3,
                                    "plan_version": 1}
    checkpoint["channel_versions"] = dict.fromkeys(checkpoint["channel_values"], 1)
    async with open_checkpointer() as saver:
        await saver.aput({"configurable": {"thread_id": "old", "checkpoint_ns": ""}},
                         checkpoint, {"source": "loop", "step": 3}, {})

    shown = duet(home, "show", "old", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [r["step_id"] for r in json.loads(shown.stdout)["results"]] == ["s0", "s1", "s2"]
    resumed = duet(home, "resume", "old")
    assert resumed.returncode == 2
    said = " ".join(resumed.stderr.split())  # the terminal wraps it
    assert "saved by an earlier nova-duet" in said and "Start the task again" in said
