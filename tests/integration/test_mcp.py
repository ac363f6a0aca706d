"""MCP servers as tool sources, against real FastMCP servers in their own processes (one over
stdio, started by the run; one over streamable HTTP, started here): annotations decide the
class, sessions live as long as the run, a dead server is a typed error, secrets stay out,
and a tool's list reads as a list in the offline answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from demo_site.server import free_port
from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.cli import app
from graph.app.report.data import report_data
from graph.app.report.render import render
from graph.app.runner import run_thread
from graph.app.threads import read_trace, saved_run
from graph.events import Event
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import tool_input
from tests.fixtures.mcp_servers import http_server, stdio_config
from tools import ToolRegistry
from tools import mcp as _mcp  # noqa: F401 - before CliRunner swaps sys.stderr (errlog)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "us.amazon.nova-2-lite-v1:0"
TOKEN = "crm-token-5f1c9a77e2"  # the stdio server's secret (its config's env)
HEADER = "Bearer web-secret-0b7d41c2"  # the HTTP server's (its config's headers)


@pytest.fixture
def web(tmp_path: Path):
    """The CRM over streamable HTTP in its own process; yields (url, state folder)."""
    state = tmp_path / "web"
    with http_server(state, tmp_path / "web.log", HOLD_FIRST_CALL="30") as url:
        yield url, state


def config(tmp_path: Path, web_url: str) -> Path:
    """An mcpServers file: `crm` over stdio (a token in its env), `web` over HTTP (a header)."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "crm": stdio_config(tmp_path / "crm", CRM_TOKEN=TOKEN),
        "web": {"url": web_url, "headers": {"Authorization": HEADER}}}}))
    return path


def records(state: Path, kind: str) -> list[dict]:
    """What the server recorded: its `calls` or its `effects`."""
    path = state / f"{kind}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def context(tmp_path: Path, web_url: str, **fields) -> Context:
    return Context(mcp_config=str(config(tmp_path, web_url)),
                   allowed_hosts=[urlsplit(web_url).netloc], **fields)


def test_duet_tools_lists_each_mcp_tool_with_its_class(tmp_path, web):
    url, _ = web
    out = CliRunner().invoke(app, ["tools", "--mcp", str(config(tmp_path, url)), "--json",
                                   "--allow-host", urlsplit(url).netloc])
    assert out.exit_code == 0, out.output
    tools = {t["name"]: t for t in json.loads(out.stdout)}
    assert {k: tools["web_send_reminder"][k] for k in
            ("changes_things", "takes_idempotency_key", "signature", "source")} == {
        "changes_things": True, "takes_idempotency_key": False,
        "signature": "web_send_reminder(invoice: int, text: str)", "source": "mcp:web"}
    assert not tools["crm_list_invoices"]["changes_things"]
    assert tools["web_mark_reminded"]["changes_things"] and tools["web_mark_reminded"]["idempotent"]
    assert tools["crm_delete_customer"]["destructive"]
    assert tools["http_request"]["source"] == "builtin"

    # Without the allowlist entry the HTTP server is refused with the usual message.
    out = CliRunner().invoke(app, ["tools", "--mcp", str(config(tmp_path, url))],
                             env={"COLUMNS": "300"})
    assert out.exit_code == 0 and "web_send_reminder" not in out.stdout
    assert "crm_list_invoices" in out.stdout and "outside the allowlist" in out.stdout

    # A server that cannot be reached is listed as such at once: a listing does not wait.
    down = tmp_path / "down.json"
    port = free_port()
    down.write_text(json.dumps({"mcpServers": {"down": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    out = CliRunner().invoke(app, ["tools", "--mcp", str(down), "--allow-host",
                                   f"127.0.0.1:{port}"], env={"COLUMNS": "300"})
    assert out.exit_code == 0
    assert "MCP server 'down' (none of its tools): unavailable: ConnectError" in out.stdout
    assert "waited" not in out.stdout


async def test_reads_start_while_the_plan_streams_and_an_unannotated_write_asks(
        tmp_path, web, converse):
    url, web_state = web
    plan = Plan(goal="remind", steps=[
        Step(id="s1", tool="crm_list_invoices", args={}),
        Step(id="s2", tool="web_list_invoices", args={"status": "overdue"}),
        Step(id="s3", tool="crm_send_reminder", args={"invoice": 7, "text": "please pay"},
             depends_on=["s1"]),
        Step(id="s4", tool="web_delete_customer", args={"customer": 3}),
    ])
    converse.script += [tool_input(plan, fragment=8, pause=0.02)]
    events: list[Event] = []
    _, final = await run_thread(
        "remind", tools=ToolRegistry(), on_event=events.append,
        context=context(tmp_path, url, model=MODEL, bedrock_endpoint_url=converse.url))

    assert final.status == RunStatus.NEEDS_APPROVAL, final.reason
    started = {r.step_id: r.started_at.timestamp() for r in final.results}
    assert set(started) == {"s1", "s2"}  # the writes did not run
    assert max(started.values()) < converse.answered_at[0]  # both while the plan streamed
    assert records(tmp_path / "crm", "effects") == records(web_state, "effects") == []
    [asked] = [e.steps for e in events if e.event == "approval_requested"]
    assert {s["step_id"]: s.get("destructive", False) for s in asked} == {"s3": False,
                                                                         "s4": True}

    # Under `deny` the unannotated write is refused, never sent.
    plan.steps = plan.steps[:3]
    converse.script += [tool_input(plan),
                        tool_input(Decision(action="finish", reason="refused", answer="no"))]
    _, final = await run_thread(
        "remind", tools=ToolRegistry(),
        context=context(tmp_path, url, model=MODEL, bedrock_endpoint_url=converse.url,
                        approval="deny"))
    refused = {r.step_id: r.error.type for r in final.results if r.status == "rejected"}
    assert refused == {"s3": "NotApproved"}
    assert records(tmp_path / "crm", "effects") == records(web_state, "effects") == []


async def test_a_server_killed_mid_run_and_not_back_is_a_typed_error_and_the_run_goes_on(
        tmp_path, web):
    """Over streamable HTTP, killed for good: the step waits `dependency_wait_seconds` for
    it (reopening its session fails), then fails typed; the replan is told."""
    url, web_state = web
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="web_wait_for_kill", args={"seconds": 60}),
                              Step(id="s2", tool="crm_list_invoices", args={})]),
        Decision(action="replan", reason="web died"),
        Plan(goal="g", steps=[Step(id="s3", tool="crm_list_invoices", args={})]),
        Decision(action="finish", reason="ok", answer="two invoices [s3]")])
    run = asyncio.create_task(run_thread("g", model=model, tools=ToolRegistry(),
                                         context=context(tmp_path, url,
                                                         dependency_wait_seconds=1)))
    pid_file = web_state / "pid"
    for _ in range(600):
        if pid_file.exists() or run.done():
            break
        await asyncio.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    _, final = await asyncio.wait_for(run, 60)

    assert final.status == RunStatus.COMPLETED, final.reason
    results = {r.step_id: r for r in final.results}
    assert results["s1"].status == "error"
    assert results["s1"].error.type == "MCPServerUnavailable"
    assert "MCP server 'web'" in results["s1"].error.message
    assert "dependency_wait_seconds=1" in results["s1"].error.message
    assert "MCP server 'web' to come back" in results["s1"].waited
    assert results["s2"].status == results["s3"].status == "ok"
    # The replan was told: the dead server's tools are listed as unavailable.
    replan_prompt = "\n".join(str(m.content) for m in model.prompts[2])
    assert "web_list_invoices(status?: str) (UNAVAILABLE: MCP server 'web'" in replan_prompt


async def test_a_stdio_server_killed_mid_call_is_started_again_and_the_read_reruns(tmp_path,
                                                                                   web):
    """Over stdio the session's reopening starts the server again: the read that was in
    flight runs again on the new process and the run completes."""
    url, _ = web
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="crm_wait_for_kill", args={"seconds": 1})]),
        Decision(action="finish", reason="ok", answer="done [s1]")])
    run = asyncio.create_task(run_thread("g", model=model, tools=ToolRegistry(),
                                         context=context(tmp_path, url)))
    pid_file = tmp_path / "crm" / "pid"
    for _ in range(600):
        if pid_file.exists() or run.done():
            break
        await asyncio.sleep(0.05)
    first = int(pid_file.read_text())
    os.kill(first, signal.SIGKILL)
    _, final = await asyncio.wait_for(run, 60)

    assert final.status == RunStatus.COMPLETED, final.reason
    [result] = final.results
    assert result.status == "ok" and result.output == {"result": "not killed"}
    assert result.attempts >= 2 and int(pid_file.read_text()) != first


async def test_a_server_that_does_not_start_is_named_and_the_run_goes_on(tmp_path, web):
    url, _ = web
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "gone": {"command": str(tmp_path / "no-such-server")},
        "web": {"url": url}}}))
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="web_list_invoices", args={})]),
        Decision(action="finish", reason="ok", answer="done [s1]")])
    events: list[Event] = []
    _, final = await run_thread("g", model=model, tools=ToolRegistry(), on_event=events.append,
                                context=Context(mcp_config=str(path),
                                                allowed_hosts=[urlsplit(url).netloc]))
    assert final.status == RunStatus.COMPLETED, final.reason
    [warning] = [e for e in events if e.event == "tool_source_unavailable"]
    assert warning.source == "mcp:gone" and "FileNotFoundError" in warning.error
    # A missing executable is not an outage: left out at once, not waited for.
    assert "waited" not in warning.error
    assert not [e for e in events if e.event == "tool_source_waiting"]
    assert "MCP server 'gone' is UNAVAILABLE" in str(model.prompts[0][-1].content) + \
        str(model.prompts[0][0].content)


async def test_an_http_server_down_when_the_run_starts_joins_it_when_it_comes_up(tmp_path):
    """Refused at the run's start, listening two seconds later: its start is tried again
    (`dependency_wait_seconds`), its tools join the run, and each write lands once."""
    port, state = free_port(), tmp_path / "web"
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[
            Step(id="s1", tool="web_send_reminder", args={"invoice": 7, "text": "hi"},
                 side_effects=True),
            Step(id="s2", tool="web_list_invoices", args={}),
            Step(id="s3", tool="web_send_reminder", args={"invoice": 9, "text": "hi"},
                 side_effects=True, depends_on=["s2"])]),
        Decision(action="finish", reason="ok", answer="done [s1] [s3]")])
    events: list[Event] = []
    run = asyncio.create_task(run_thread(
        "g", model=model, tools=ToolRegistry(), on_event=events.append,
        context=Context(mcp_config=str(path), allowed_hosts=[f"127.0.0.1:{port}"],
                        approval="auto", dependency_wait_seconds=10)))
    await asyncio.sleep(2)
    assert not run.done()
    with contextlib.ExitStack() as stack:
        # Started off the event loop, so the run's attempts go on meanwhile.
        await asyncio.to_thread(stack.enter_context,
                                http_server(state, tmp_path / "web.log", port=port))
        thread, final = await asyncio.wait_for(run, 60)

    assert final.status == RunStatus.COMPLETED, final.reason
    assert sorted((r.step_id, r.status) for r in final.results) == [
        ("s1", "ok"), ("s2", "ok"), ("s3", "ok")]
    assert sorted((e["tool"], e["invoice"]) for e in records(state, "effects")) == [
        ("send_reminder", 7), ("send_reminder", 9)]  # each write once
    [waiting] = [e for e in events if e.event == "tool_source_waiting"]
    assert waiting.source == "mcp:web" and "ConnectError" in waiting.reason
    assert waiting.wait_seconds == 10
    [back] = [e for e in events if e.event == "tool_source_back"]
    assert back.source == "mcp:web" and 1.5 < back.waited_seconds < 10
    assert not [e for e in events if e.event == "tool_source_unavailable"]
    # The run report shows the wait.
    data = await report_data(thread)
    [wait] = data["source_waits"]
    assert (wait["source"], wait["ended"]) == ("mcp:web", "started") and wait["seconds"] > 1.5
    assert "mcp:web could not be reached as the run started (ConnectError" in render(data)


def test_an_http_server_down_for_good_ends_the_run_typed_after_the_wait(tmp_path):
    """`duet run` as a real process, two servers refusing throughout: their starts are
    tried again, at once, for `dependency_wait_seconds` (2), then the step naming a tool of
    one fails `UnknownTool` saying why, and stderr has one line per server."""
    port, other = free_port(), free_port()  # nothing listens there
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "web": {"url": f"http://127.0.0.1:{port}/mcp"},
        "files": {"url": f"http://127.0.0.1:{other}/mcp"}}}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "s1", "tool": "web_list_invoices", "args": {}}]}))
    home = tmp_path / "home"
    run = subprocess.run(
        [sys.executable, "-m", "graph.app.cli", "run", "read", "--plan-file", str(plan),
         "--mcp", str(path), "--allow-host", f"127.0.0.1:{port}", "--allow-host",
         f"127.0.0.1:{other}", "--thread", "down",
         "--set", "dependency_wait_seconds=2"],
        cwd=ROOT, env={**os.environ, "DUET_HOME": str(home), "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120)

    out = " ".join(run.stdout.split())
    assert "Status: failed" in out, run.stdout + run.stderr
    assert "… mcp:web waiting up to 2s for it to start: ConnectError" in out
    _, final = asyncio.run(saved_run("down", str(home / "checkpoints.sqlite")))
    [result] = final.results
    assert result.error.type == "UnknownTool"
    assert "MCP server 'web' is unavailable (ConnectError" in result.error.message
    assert "waited 2." in result.error.message
    assert "(dependency_wait_seconds=2))" in result.error.message
    lines = run.stderr.strip().splitlines()  # one per server
    assert sorted(line.split(";")[0] for line in lines) == ["! mcp:files unavailable",
                                                            "! mcp:web unavailable"], lines
    assert all(line.endswith("(dependency_wait_seconds=2)") for line in lines), lines
    # Both servers waited at once: the two waits end about 2 s after they began, not 4.
    trace = read_trace(home / "traces" / "down.jsonl")
    began = min(e.t for e in trace if e.event == "tool_source_waiting")
    gone = [e.t for e in trace if e.event == "tool_source_unavailable"]
    assert len(gone) == 2 and all(2 <= t - began < 2 + 3 for t in gone), (began, gone)
    assert trace[-1].event == "run_finished" and trace[-1].t - began < 2 + 5


async def test_a_stdio_server_whose_first_start_exits_is_started_again(tmp_path):
    """Its process exits before it answers, the first time only: started again, its tools
    join the run, which completes."""
    state = tmp_path / "crm"
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {
        "crm": stdio_config(state, "--fail-first-start")}}))
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="crm_list_invoices", args={})]),
        Decision(action="finish", reason="ok", answer="two [s1]")])
    events: list[Event] = []
    _, final = await run_thread("g", model=model, tools=ToolRegistry(), on_event=events.append,
                                context=Context(mcp_config=str(path),
                                                dependency_wait_seconds=20))

    assert final.status == RunStatus.COMPLETED, final.reason
    [result] = final.results
    assert result.status == "ok" and records(state, "calls") == [{"tool": "list_invoices"}]
    assert (state / "started-once").exists()  # the first start did exit
    [waiting] = [e for e in events if e.event == "tool_source_waiting"]
    assert waiting.source == "mcp:crm" and "Connection closed" in waiting.reason
    assert [e.source for e in events if e.event == "tool_source_back"] == ["mcp:crm"]


async def test_the_offline_answer_summarizes_an_mcp_tools_list_as_a_list(tmp_path):
    """FastMCP sends a list a tool returns as `{"result": [...]}` (MCP structured content is
    an object), and the step's output keeps it so; the offline planner's answer summarizes
    it as the list it is (its count and first items), as it does an HTTP list, not as a
    dict cut at 160 characters."""
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"crm": stdio_config(tmp_path / "crm")}}))
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: g\nsteps:\n  - {id: s1, tool: crm_list_invoices, args: {}}\n")
    _, final = await run_thread("Which invoices are overdue?", tools=ToolRegistry(),
                                context=Context(mcp_config=str(path), plan_file=str(plan)))

    assert final.status == RunStatus.COMPLETED, final.reason
    invoices = [{"id": 7, "status": "overdue"}, {"id": 9, "status": "overdue"}]
    assert final.results[0].output == {"result": invoices}
    assert ("- [s1] crm_list_invoices: ok - 2 item(s): " + json.dumps(invoices)
            in final.final_answer.splitlines())


def _duet(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graph.app.cli", *args], cwd=ROOT,
                            env={**os.environ, "DUET_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_an_idempotent_write_happens_once_across_a_kill_and_a_resume(tmp_path, web):
    url, web_state = web
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "who", "tool": "crm_whoami", "args": {}},
        {"id": "mark", "tool": "web_mark_reminded", "args": {"invoice": 7},
         "depends_on": ["who"]}]}))
    home = tmp_path / "home"
    proc = _duet(home, "run", "mark invoice 7", "--plan-file", str(plan), "--mcp",
                 str(config(tmp_path, url)), "--allow-host", urlsplit(url).netloc,
                 "--approve", "auto", "--thread", "idem", "--json")
    deadline = time.monotonic() + 60
    while not any(c["tool"] == "mark_reminded" for c in records(web_state, "calls")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the write took effect; its answer never came back
    proc.wait()

    resumed = _duet(home, "resume", "idem", "--json")
    final = json.loads(resumed.communicate(timeout=90)[0])
    assert final["status"] == "completed", final["reason"]
    marks = [c for c in records(web_state, "calls") if c["tool"] == "mark_reminded"]
    assert len(marks) == 2  # run again after the crash, as an idempotent tool may be
    assert records(web_state, "effects") == [{"tool": "mark_reminded", "invoice": 7}]
    trace = read_trace(home / "traces" / "idem.jsonl")
    assert [e.step_id for e in trace if e.event == "step_started"].count("mark") == 2

    # The servers' secrets reached no record of the run: not the settings, the trace, the
    # checkpoints or the report (the careless server's echo was cut from its output).
    results = {r["step_id"]: r for r in final["results"]}
    assert TOKEN not in json.dumps(results["who"])
    assert results["who"]["output"] == {"result": "logged in with [REDACTED]"}
    for path in [p for p in home.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert TOKEN.encode() not in data and HEADER.encode() not in data, path


@pytest.mark.parametrize(("content", "says"), [
    ("{not json", "cannot read the MCP config"),
    ('{"servers": {}}', "cannot read the MCP config"),
    ('{"mcpServers": {"old": {"url": "http://127.0.0.1:9/sse", "type": "sse"}}}',
     "transport 'sse' is not supported"),
])
def test_a_bad_config_stops_the_run_before_any_work(tmp_path, content, says):
    bad = tmp_path / "mcp.json"
    bad.write_text(content)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "s1", "tool": "http_request", "args": {"url": "http://127.0.0.1:9/"}}]}))
    out = CliRunner().invoke(app, ["run", "t", "--plan-file", str(plan), "--mcp", str(bad)])
    assert out.exit_code == 2 and says in out.output


async def test_studio_runs_get_the_mcp_servers_of_their_context(tmp_path):
    from langgraph_sdk import get_client

    from tests.fixtures.langgraph_server import langgraph_server

    served = tmp_path / "langgraph.json"  # as the repository's, reasoning graph only
    graphs = json.loads((ROOT / "langgraph.json").read_text())["graphs"]
    served.write_text(json.dumps({"python_version": "3.11", "dependencies": [str(ROOT)],
                                  "graphs": {"nova-duet": str(ROOT / graphs["nova-duet"])}}))
    servers = tmp_path / "mcp.json"
    servers.write_text(json.dumps({"mcpServers": {"crm": stdio_config(tmp_path / "crm")}}))
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"plan": {"goal": "count", "steps": [{"id": "s1", "tool": "crm_list_invoices",
                                              "args": {}}]}},
        {"decision": {"action": "finish", "reason": "ok", "answer": "two [s1]"}}]))
    with langgraph_server(tmp_path / "server.log", config=served) as url:
        client = get_client(url=url)
        [assistant] = await client.assistants.search(graph_id="nova-duet")
        schemas = await client.assistants.get_schemas(assistant["assistant_id"])
        assert "mcp_config" in schemas["context_schema"]["properties"]  # Studio shows it
        thread = await client.threads.create()
        final = await client.runs.wait(
            thread["thread_id"], "nova-duet", input={"task": "How many are overdue?"},
            context={"model": f"scripted:{script}", "mcp_config": str(servers)})
    assert final["status"] == "completed", final
    assert [r["output"] for r in final["results"]] == [
        {"result": [{"id": 7, "status": "overdue"}, {"id": 9, "status": "overdue"}]}]
    assert records(tmp_path / "crm", "calls") == [{"tool": "list_invoices"}]
