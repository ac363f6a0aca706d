"""The Postgres checkpointer's database refusing, killed and restarted, and stalled, under a
real `duet run` (a real server, SIGKILLed or SIGSTOPped while a slow step is in flight), and
its history read while it is stalled."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from graph import Context, Plan, build_graph
from graph.checkpoints import CheckpointerUnavailable, open_checkpointer
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import host_of
from tests.fixtures.postgres import postgres_bin, postgres_server
from tests.integration.test_cli import DUET, ROOT

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed "
                                "here (bash scripts/setup installs Debian's postgresql package)")


def _plan(tmp_path: Path, site: str) -> Path:
    """A slow read (the fault lands during it), then a read after it."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "slow", "tool": "http_request", "args": {"url": f"{site}/slow?seconds=3"}},
        {"id": "after", "tool": "http_request", "depends_on": ["slow"],
         "args": {"url": f"{site}/api/customers/1"}}]}))
    return plan


def _start(tmp_path: Path, site: str, url: str, thread: str, *settings: str
           ) -> subprocess.Popen:
    env = {**os.environ, "DUET_CHECKPOINTER": url, "DUET_HOME": str(tmp_path / "home")}
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return subprocess.Popen(
        [*DUET, "run", "t", "--plan-file", str(_plan(tmp_path, site)), "--thread", thread,
         "--json", "--allow-host", host_of(site), *sets],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for_slow_step(tmp_path: Path, thread: str, run: subprocess.Popen) -> None:
    trace = tmp_path / "home" / "traces" / f"{thread}.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and run.poll() is None:
        if trace.exists() and '"step_started"' in trace.read_text():
            time.sleep(0.5)  # into the step: its ledger and checkpoint writes come next
            return
        time.sleep(0.05)
    raise AssertionError(f"the slow step never started: {run.communicate()}")


def _stderr_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _duet(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DUET_CHECKPOINTER": url, "DUET_HOME": str(tmp_path / "home")}
    return subprocess.run([*DUET, *args, "--json"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_refused_from_the_start_is_one_typed_line_and_exit_2(tmp_path, site):
    with postgres_server() as server:
        server.kill()  # down from the start: its port refuses
        run = _start(tmp_path, site, server.url, "pg-refused", "dependency_wait_seconds=1")
        out, err = run.communicate(timeout=60)
        assert run.returncode == 2, err
        lines = _stderr_lines(err)
        assert len(lines) == 1, err
        assert "checkpointer database postgres at 127.0.0.1" in lines[0]
        assert "`duet resume pg-refused`" in lines[0] and "Traceback" not in err
        payload = json.loads(out)
        assert payload["error"]["type"] == "CheckpointerUnavailable"
        assert payload["continue_with"] == "duet resume pg-refused"
        # Nothing lost: with the database up, `duet retry` (as `duet resume`) runs it.
        server.start()
        retried = _duet(tmp_path, server.url, "retry", "pg-refused")
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout)["status"] == "completed"


def test_killed_and_restarted_within_the_wait_the_run_completes(tmp_path, site):
    with postgres_server() as server:
        run = _start(tmp_path, site, server.url, "pg-restarted")
        _wait_for_slow_step(tmp_path, "pg-restarted", run)
        server.kill()
        time.sleep(2.0)
        server.start()
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    final = json.loads(out)
    assert final["status"] == "completed", final["reason"]
    assert [r["status"] for r in final["results"]] == ["ok", "ok"]
    assert _stderr_lines(err) == [], err


def test_stalled_database_ends_the_run_within_one_bound_typed(tmp_path, site):
    with postgres_server() as server:
        run = _start(tmp_path, site, server.url, "pg-stalled",
                     "checkpointer_timeout_seconds=8")
        _wait_for_slow_step(tmp_path, "pg-stalled", run)
        server.signal(signal.SIGSTOP)
        stalled = time.monotonic()
        try:
            out, err = run.communicate(timeout=60)
        finally:
            server.signal(signal.SIGCONT)
        took = time.monotonic() - stalled
        # The step's 2.5 s left, one bound for the write that finds the stall (its ledger
        # entry), a 2 s probe for LangGraph's record of that failure in the checkpoint (one
        # stall, one bound), and a margin for a loaded machine. Two bounds would be 18.5 s.
        assert took < 2.5 + 8 + 2 + 4, took
        assert run.returncode == 1, err
        final = json.loads(out)
        assert final["status"] == "failed"
        assert "did not answer within 8s (checkpointer_timeout_seconds)" in final["reason"]
        lines = _stderr_lines(err)
        assert len(lines) == 1 and "did not answer within 8s" in lines[0], err
        # Nothing lost: with the database answering again, either command its reason names
        # finishes the run (the slow read, whose result was never recorded, runs again).
        assert "`duet resume pg-stalled` (or `duet retry`)" in final["reason"]
        retried = _duet(tmp_path, server.url, "retry", "pg-stalled")
        assert retried.returncode == 0, retried.stderr
        done = json.loads(retried.stdout)
        assert done["status"] == "completed"
        assert [r["step_id"] for r in done["results"]] == ["slow", "after"]


def test_killed_past_the_wait_ends_typed_after_one_wait(tmp_path, site):
    with postgres_server() as server:
        run = _start(tmp_path, site, server.url, "pg-killed", "dependency_wait_seconds=3")
        _wait_for_slow_step(tmp_path, "pg-killed", run)
        server.kill()
        killed = time.monotonic()
        out, err = run.communicate(timeout=60)
        took = time.monotonic() - killed
        # The step's 2.5 s left, one wait of 3 s for every write that meets the outage (the
        # ledger's, then LangGraph's record of its failure), and a margin.
        assert took < 2.5 + 3 + 6, took
        final = json.loads(out)
        assert run.returncode == 1 and final["status"] == "failed", err
        assert "cannot be reached" in final["reason"] and "dependency_wait_seconds" in final[
            "reason"]
        assert len(_stderr_lines(err)) == 1, err
        server.start()
        retried = _duet(tmp_path, server.url, "retry", "pg-killed")
        assert retried.returncode == 0, retried.stderr
        assert json.loads(retried.stdout)["status"] == "completed"


async def _history(graph, config) -> list:
    return [state async for state in graph.aget_state_history(config)]


async def test_history_of_a_stalled_database_ends_typed_within_its_bound():
    context = Context(checkpointer_timeout_seconds=5)
    config = {"configurable": {"thread_id": "pg-history"}}
    with postgres_server() as server:
        async with open_checkpointer(server.url, context) as saver:
            model = ScriptedChatModel(responses=[Plan(goal="g", steps=[]), "answer"])
            graph = build_graph(model=model, checkpointer=saver)
            await graph.ainvoke({"task": "t"}, config, context=context)
            server.signal(signal.SIGSTOP)
            try:
                began = time.monotonic()
                with pytest.raises(CheckpointerUnavailable, match="did not answer within 5s"):
                    await asyncio.wait_for(_history(graph, config), 5 + 10)
                listed = time.monotonic() - began
                # Found stalled moments ago: the next read gets a probe, not a whole bound.
                began = time.monotonic()
                with pytest.raises(CheckpointerUnavailable, match="did not answer within 5s"):
                    await asyncio.wait_for(graph.aget_state(config), 5 + 10)
                probed = time.monotonic() - began
            finally:
                server.signal(signal.SIGCONT)
            assert 5 <= listed < 5 + 3, listed
            assert probed < 2 + 1.5, probed
            # Answering again: the history reads in full, on a new connection.
            history = await _history(graph, config)
            assert len(history) >= 3 and history[0].values["final_answer"] == "answer"
