"""Every wait has a bound that holds, and outages shorter than a bound do not fail the run:
against real servers in their own processes on loopback (a FastMCP server over streamable
HTTP, the demo CRM, a server that accepts connections and never answers), with the bounds
set small so each case takes seconds."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_site.server import free_port
from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.report import report_data
from graph.app.runner import run_thread
from graph.events import Event
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import host_of
from tests.fixtures.processes import serving
from tests.fixtures.stalled import stalled_server
from tools import ToolRegistry, default_registry

ROOT = Path(__file__).resolve().parents[2]
DUET = [sys.executable, "-m", "graph.app.cli"]


def _records(state: Path, kind: str) -> list[dict]:
    path = state / f"{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _web_server_config(tmp_path: Path) -> tuple[int, Path, Path]:
    """A free port for the test CRM over streamable HTTP, its state folder, and an
    `mcpServers` file naming it `web`."""
    port, state = free_port(), tmp_path / "web"
    state.mkdir()
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    return port, state, config


@contextmanager
def _mcp_on(port: int, state: Path, log: Path) -> Iterator[subprocess.Popen]:
    """The test CRM over streamable HTTP on `port`, in its own process (killed after)."""
    with serving([sys.executable, "-m", "tests.fixtures.mcp_servers", "http", str(state),
                  str(port)], f"http://127.0.0.1:{port}/mcp", log=log, kill=True) as process:
        yield process


@contextmanager
def _crm_on(port: int, db: Path, log: Path) -> Iterator[subprocess.Popen]:
    """The demo CRM on `port`, in its own process."""
    with serving([sys.executable, "-m", "demo_site.server", "--db", str(db), "--port",
                  str(port)], f"http://127.0.0.1:{port}/api/invoices", log=log,
                 kill=True) as process:
        yield process


def test_a_stalled_mcp_server_ends_the_run_within_its_bound_in_one_line(tmp_path):
    """`duet run` as a real process: the server accepts and never answers."""
    accepted = tmp_path / "accepted"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "s1", "tool": "web_list_invoices", "args": {}}]}))
    with stalled_server(accepted) as port:
        config = tmp_path / "mcp.json"
        config.write_text(json.dumps({"mcpServers": {
            "web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
        run = subprocess.run(
            [*DUET, "run", "read", "--plan-file", str(plan), "--mcp", str(config),
             "--allow-host", f"127.0.0.1:{port}", "--set", "mcp_timeout_seconds=2",
             "--thread", "stalled"],
            cwd=ROOT, env={**os.environ, "DUET_HOME": str(tmp_path / "home")},
            capture_output=True, text=True, timeout=120)
    # From the run's first connection to the server to the run's end (its last event).
    first = float(accepted.read_text().split()[1])
    trace = (tmp_path / "home" / "traces" / "stalled.jsonl").read_text().splitlines()
    ended = json.loads(trace[-1])
    assert ended["event"] == "run_finished" and ended["t"] - first < 2 + 5
    assert "Status: failed" in run.stdout
    assert "MCP server 'web' is unavailable (no answer within 2s (mcp_timeout_seconds))" in \
        " ".join(run.stdout.split())
    lines = run.stderr.strip().splitlines()
    assert lines == ["! mcp:web unavailable; the run goes on without it: no answer within 2s "
                     "(mcp_timeout_seconds)"], run.stderr


async def test_an_mcp_server_restarted_within_the_wait_lets_the_run_complete(tmp_path):
    """Killed during a read, back two seconds later on the same port: the session is
    reopened, the read runs again, and each write lands once."""
    port, state, config = _web_server_config(tmp_path)
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[
            Step(id="s1", tool="web_send_reminder", args={"invoice": 7, "text": "hi"},
                 side_effects=True),
            Step(id="s2", tool="web_wait_for_kill", args={"seconds": 1}, depends_on=["s1"]),
            Step(id="s3", tool="web_send_reminder", args={"invoice": 9, "text": "hi"},
                 side_effects=True, depends_on=["s2"])]),
        Decision(action="finish", reason="ok", answer="done [s1] [s3]")])
    events: list[Event] = []
    context = Context(mcp_config=str(config), allowed_hosts=[f"127.0.0.1:{port}"],
                      approval="auto", dependency_wait_seconds=20, max_retries=0)
    with _mcp_on(port, state, tmp_path / "first.log") as first:
        run = asyncio.create_task(run_thread("g", model=model, tools=ToolRegistry(),
                                             context=context, on_event=events.append))
        for _ in range(1200):
            if (state / "pid").exists() or run.done():
                break
            await asyncio.sleep(0.05)
        first.kill()
        first.wait()
    (state / "pid").unlink()
    await asyncio.sleep(2)
    with _mcp_on(port, state, tmp_path / "second.log"):
        thread, final = await asyncio.wait_for(run, 60)

    assert final.status == RunStatus.COMPLETED, final.reason
    results = {r.step_id: r for r in final.results}
    assert all(r.status == "ok" for r in results.values())
    assert results["s2"].attempts >= 2 and "MCP server 'web' to come back" in results["s2"].waited
    assert [e for e in events if e.event == "step_waiting"][0].step_id == "s2"
    assert not [e for e in events if e.event == "step_retried"]
    assert _records(state, "effects") == [{"tool": "send_reminder", "invoice": 7},
                                          {"tool": "send_reminder", "invoice": 9}]
    # The run report shows the wait on its step.
    steps = {s["step_id"]: s for s in (await report_data(thread))["steps"]}
    assert steps["s2"]["waited"] == results["s2"].waited and steps["s1"]["waited"] is None


def _http_plan(url: str, method: str = "GET") -> ScriptedChatModel:
    step = Step(id="s1", tool="http_request", args={"url": url, "method": method},
                side_effects=method != "GET")
    return ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step]), Decision(action="finish", reason="r", answer="a [s1]")])


async def test_a_stalled_http_target_ends_the_step_within_its_bound(tmp_path):
    with stalled_server() as port:
        started = time.monotonic()
        _, final = await run_thread("g", model=_http_plan(f"http://127.0.0.1:{port}/x"),
                                    tools=default_registry(), context=Context(
                                        allowed_hosts=[f"127.0.0.1:{port}"],
                                        http_timeout_seconds=1))
        took = time.monotonic() - started
    [result] = final.results
    assert result.status == "timeout" and result.attempts == 1
    assert result.error.type == "DependencyTimeout"
    assert result.error.message == f"the HTTP target 127.0.0.1:{port} gave no answer " \
                                   "within 1s (http_timeout_seconds)"
    assert took < 1 + 3


async def test_retries_of_a_step_share_its_dependencys_bound(site):
    """A target that answers 503 after 1 s, under `http_timeout_seconds=3`: the retry gets
    what is left of the 3 s, not 3 s more, so the step ends within its bound (before: three
    attempts, past it)."""
    url = f"{site}/slow?seconds=1&status=503"
    started = time.monotonic()
    _, final = await run_thread("g", model=_http_plan(url), tools=default_registry(),
                                context=Context(allowed_hosts=[host_of(site)],
                                                http_timeout_seconds=3))
    took = time.monotonic() - started
    [result] = final.results
    assert result.status == "error" and "answered 503" in result.error.message
    assert result.attempts == 2, result
    assert took < 3 + 1.5, took


async def test_a_refusing_http_target_is_waited_for_then_fails_typed(tmp_path):
    port = free_port()  # nothing listens
    events: list[Event] = []
    started = time.monotonic()
    _, final = await run_thread("g", model=_http_plan(f"http://127.0.0.1:{port}/x"),
                                tools=default_registry(), on_event=events.append, context=Context(
                                    allowed_hosts=[f"127.0.0.1:{port}"],
                                    dependency_wait_seconds=1.5))
    took = time.monotonic() - started
    [result] = final.results
    assert result.error.type == "TargetUnreachable" and result.attempts > 1
    assert "dependency_wait_seconds=1.5" in result.error.message
    assert [e.reason for e in events if e.event == "step_waiting"] == [
        f"the HTTP target 127.0.0.1:{port} to come back (TargetUnreachable)"]
    assert 1.5 <= took < 1.5 + 3


async def test_a_write_to_a_target_back_within_the_wait_lands_once(tmp_path):
    """The CRM starts once the step waits: the POST (refused until then, so nothing was
    sent) waits for it and lands once."""
    port = free_port()
    db = tmp_path / "crm.sqlite"
    model = _http_plan(f"http://127.0.0.1:{port}/api/notes", "POST")
    model.responses[0].steps[0].args["json_body"] = {"customer_id": 1, "text": "once"}
    events: list[Event] = []
    run = asyncio.create_task(run_thread(
        "g", model=model, tools=default_registry(), on_event=events.append,
        context=Context(allowed_hosts=[f"127.0.0.1:{port}"], approval="auto",
                        dependency_wait_seconds=30)))
    while not any(e.event == "step_waiting" for e in events):
        assert not run.done()
        await asyncio.sleep(0.05)
    with _crm_on(port, db, tmp_path / "crm.log"):
        _, final = await asyncio.wait_for(run, 60)
        import httpx

        notes = httpx.get(f"http://127.0.0.1:{port}/api/notes?customer_id=1").json()
    assert final.status == RunStatus.COMPLETED, final.reason
    assert [n["text"] for n in notes].count("once") == 1
    assert final.results[0].waited.startswith("waited ")


async def test_a_stalled_executor_deployment_ends_the_step_within_its_bound(tmp_path):
    with stalled_server() as port:
        started = time.monotonic()
        _, final = await run_thread("g", model=_http_plan("http://127.0.0.1:9/x"),
                                    tools=default_registry(), context=Context(
                                        allowed_hosts=["127.0.0.1:9"], http_timeout_seconds=1,
                                        executor_url=f"http://127.0.0.1:{port}"))
        took = time.monotonic() - started
    [result] = final.results
    assert result.error.type == "ExecutorTimeout" and result.attempts == 1
    assert "within 6s (the step's 1s + 5s)" in result.error.message
    assert result.duration_ms < (6 + 1) * 1000
    # The run's end tells the deployments (their named browser sessions), within 5 s more.
    assert took < 6 + 5 + 3



async def test_an_mcp_call_that_stalls_ends_within_its_bound_and_the_next_reopens(
        tmp_path, capfd, caplog):
    """The server answers its start, then one call never returns: that step ends within
    `mcp_timeout_seconds`, typed, with nothing on stderr; the next call gets a new session."""
    port, state, config = _web_server_config(tmp_path)
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="web_wait_for_kill", args={"seconds": 60})]),
        Decision(action="replan", reason="it stalled"),
        Plan(goal="g", steps=[Step(id="s2", tool="web_list_invoices", args={})]),
        Decision(action="finish", reason="ok", answer="two [s2]")])
    with _mcp_on(port, state, tmp_path / "web.log"):
        _, final = await run_thread("g", model=model, tools=ToolRegistry(), context=Context(
            mcp_config=str(config), allowed_hosts=[f"127.0.0.1:{port}"],
            mcp_timeout_seconds=2))
    assert final.status == RunStatus.COMPLETED, final.reason
    results = {r.step_id: r for r in final.results}
    assert results["s1"].status == "timeout" and results["s1"].attempts == 1
    assert results["s1"].error.message == ("MCP server 'web' gave no answer within 2s "
                                           "(mcp_timeout_seconds)")
    assert results["s1"].duration_ms < (2 + 1) * 1000
    assert results["s2"].status == "ok"
    assert capfd.readouterr().err == ""
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_mcp_server_stopped_mid_call_ends_the_run_within_its_bound(tmp_path):
    """The server answers its start, then is stopped (SIGSTOP) during a call: the step ends
    at `mcp_timeout_seconds`, and so does the run, within a small margin (before, closing
    the stalled session at the run's end waited as long again)."""
    port, state, config = _web_server_config(tmp_path)
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="web_wait_for_kill", args={"seconds": 60})])])
    with _mcp_on(port, state, tmp_path / "web.log") as server:
        run = asyncio.create_task(run_thread("g", model=model, tools=ToolRegistry(),
                                             context=Context(
            mcp_config=str(config), allowed_hosts=[f"127.0.0.1:{port}"],
            mcp_timeout_seconds=4)))
        while not (state / "pid").exists():
            assert not run.done()
            await asyncio.sleep(0.05)
        os.killpg(server.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            _, final = await asyncio.wait_for(run, 60)
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        took = time.monotonic() - stopped
    [result] = final.results
    assert result.error.type == "DependencyTimeout", result.error
    assert took < 4 + 2.5, took

