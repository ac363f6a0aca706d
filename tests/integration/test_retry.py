"""`duet retry`: a run that failed continues once the cause is fixed, against real servers in
their own processes (a FastMCP server over streamable HTTP killed mid-run and started again,
the demo CRM): steps that succeeded are not sent again, each write lands once, and a write
whose effect is uncertain asks a human instead of being repeated."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from langchain_core.tools import tool
from typer.testing import CliRunner

from demo_site.server import free_port
from graph import Context, RunStatus
from graph.app.cli import app
from graph.app.runner import retry_thread, run_thread
from graph.app.threads import NotRetryable, read_trace
from graph.events import Event
from tests.fixtures.loopback import host_of
from tests.fixtures.processes import serving
from tools import ToolRegistry
from tools import mcp as _mcp  # noqa: F401 - before CliRunner swaps sys.stderr (errlog)
from tools.errors import ToolError

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def crm_server(state: Path, port: int, log: Path):
    """The fixture CRM over streamable HTTP on `port`, in its own process; yields it."""
    state.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}/mcp"
    with serving([sys.executable, "-m", "tests.fixtures.mcp_servers", "http", str(state),
                  str(port)], url, log=log, env={**os.environ, "HOLD_FIRST_CALL": "30"},
                 kill=True) as process:
        yield process


def calls(state: Path, tool: str | None = None) -> list[dict]:
    path = state / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if tool is None or r["tool"] == tool]


def effects(state: Path) -> list[dict]:
    path = state / "effects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def mcp_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
    return path


def plan_file(tmp_path: Path, steps: list[dict]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"goal": "remind", "steps": steps}))
    return path


def started(home: Path, thread: str) -> list[str]:
    return [e.step_id for e in read_trace(home / "traces" / f"{thread}.jsonl")
            if e.event == "step_started"]


def wait_for(condition, process: subprocess.Popen | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        assert process is None or process.poll() is None, process.stdout.read()
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_a_run_whose_mcp_server_was_killed_completes_with_duet_retry(tmp_path, isolated_env):
    state, port = tmp_path / "web", free_port()
    plan = plan_file(tmp_path, [
        {"id": "list", "tool": "web_list_invoices", "args": {}},
        {"id": "send7", "tool": "web_send_reminder", "args": {"invoice": 7, "text": "pay"},
         "depends_on": ["list"]},  # a keyless write: it succeeds before the kill
        {"id": "mark7", "tool": "web_mark_reminded", "args": {"invoice": 7},
         "depends_on": ["send7"]},  # idempotent: its effect lands, then the server dies
        {"id": "send9", "tool": "web_send_reminder", "args": {"invoice": 9, "text": "pay"},
         "depends_on": ["mark7"]},
        {"id": "mark9", "tool": "web_mark_reminded", "args": {"invoice": 9},
         "depends_on": ["mark7"]}])
    duet = [sys.executable, "-m", "graph.app.cli"]
    with crm_server(state, port, tmp_path / "web1.log") as server:
        run = subprocess.Popen(
            [*duet, "run", "remind", "--plan-file", str(plan), "--mcp",
             str(mcp_file(tmp_path, port)), "--allow-host", f"127.0.0.1:{port}", "--approve",
             "auto", "--thread", "outage", "--json",
             "--set", "dependency_wait_seconds=1"],  # so the outage ends the run
            cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        wait_for(lambda: calls(state, "mark_reminded"), run)
        server.send_signal(signal.SIGKILL)  # mid-call: the effect landed, no answer came
        out, stderr = run.communicate(timeout=90)
    first = json.loads(out)
    assert run.returncode == 1 and first["status"] == "failed", stderr[-2000:]
    [killed] = [r for r in first["results"] if r["step_id"] == "mark7"]
    assert killed["error"]["type"] == "MCPServerUnavailable"
    assert {r["step_id"] for r in first["results"]} == {"list", "send7", "mark7"}

    with crm_server(state, port, tmp_path / "web2.log"):  # the cause is fixed
        retried = subprocess.run([*duet, "retry", "outage", "--json"], cwd=ROOT,
                                 env=os.environ.copy(), capture_output=True, text=True,
                                 timeout=120)
    final = json.loads(retried.stdout)
    assert retried.returncode == 0 and final["status"] == "completed", retried.stderr[-2000:]
    assert final["thread_id"] == "outage" and final["report"]
    # What succeeded was not sent again; the idempotent write in flight was, once.
    assert len(calls(state, "list_invoices")) == 1
    assert len(calls(state, "send_reminder")) == 2  # send7 before the kill, send9 after
    assert len(calls(state, "mark_reminded")) == 3  # mark7, mark7 again, mark9
    assert sorted((e["tool"], e["invoice"]) for e in effects(state)) == [
        ("mark_reminded", 7), ("mark_reminded", 9), ("send_reminder", 7),
        ("send_reminder", 9)]  # each write landed once
    assert sorted(started(isolated_env, "outage")) == [
        "list", "mark7", "mark7", "mark9", "send7", "send9"]
    # The run's record keeps the failed attempt before the retry's result.
    assert [r["status"] for r in final["results"] if r["step_id"] == "mark7"] == ["error", "ok"]
    [event] = [e for e in read_trace(isolated_env / "traces" / "outage.jsonl")
               if e.event == "run_retried"]
    assert event.after == "failed" and event.again == ["mark7", "send9", "mark9"]
    assert event.kept == ["list", "send7"] and event.uncertain == []

    shown = CliRunner().invoke(app, ["show", "outage"], env={"COLUMNS": "200"})
    assert "completed" in shown.stdout and "retried 1 time(s)" in shown.stdout
    report = json.loads(CliRunner().invoke(app, ["report", "outage", "--json"]).stdout)
    assert report["status"] == "completed" and report["retries"] == [
        {"retry": 1, "after": "failed", "at": event.t, "again": ["mark7", "send9", "mark9"],
         "reason": first["reason"]}]


async def test_a_keyless_write_cut_off_by_the_kill_asks_a_human_on_retry(tmp_path):
    state, port = tmp_path / "web", free_port()
    context = Context(mcp_config=str(mcp_file(tmp_path, port)), approval="auto",
                      dependency_wait_seconds=1,
                      allowed_hosts=[f"127.0.0.1:{port}"], plan_file=str(plan_file(tmp_path, [
                          {"id": "list", "tool": "web_list_invoices", "args": {}},
                          {"id": "letter", "tool": "web_post_letter", "args": {"invoice": 7},
                           "depends_on": ["list"]}])))
    with crm_server(state, port, tmp_path / "web1.log") as server:
        run = asyncio.create_task(run_thread("post a letter", thread_id="letter",
                                             context=context))
        while not (state / "pid").exists():
            assert not run.done()
            await asyncio.sleep(0.05)
        server.send_signal(signal.SIGKILL)  # the letter was posted; its answer never came
        _, first = await asyncio.wait_for(run, 60)
    assert first.status == RunStatus.FAILED, first.reason

    events: list[Event] = []
    with crm_server(state, port, tmp_path / "web2.log"):
        _, waiting = await retry_thread("letter", on_event=events.append)
        assert waiting.status == RunStatus.NEEDS_APPROVAL, waiting.reason  # even under auto
        [asked] = [e.steps for e in events if e.event == "approval_requested"]
        assert [s["step_id"] for s in asked] == ["letter"]
        assert "may have taken effect" in asked[0]["escalated"]

        def reject(request: dict) -> dict:
            return {step["step_id"]: "reject" for step in request["steps"]}

        _, refused = await run_thread(None, thread_id="letter", decide=reject)
        assert refused.status == RunStatus.FAILED
        # A refusal does not make the effect certain: the next retry asks again.
        _, again = await retry_thread("letter")
        assert again.status == RunStatus.NEEDS_APPROVAL
        with pytest.raises(NotRetryable, match="has not ended"):
            await retry_thread("letter")
    assert len(calls(state, "post_letter")) == 1 and len(calls(state, "list_invoices")) == 1
    assert effects(state) == [{"tool": "post_letter", "invoice": 7}]  # never repeated


async def test_a_keyless_write_whose_server_refused_runs_again_on_retry_without_asking(
        tmp_path):
    """A write of your own tool whose server refused it (`ToolError(unreachable=True,
    not_sent=True)`: nothing reached it) fails once the wait is over; `retry_thread` with
    the server back runs it under `auto` instead of asking whether it took effect (as it
    must for a write that was sent and failed)."""
    server_up, letters = False, []

    @tool
    async def post_letter(invoice: int) -> str:
        """Post a letter for an invoice (a write without an idempotency key)."""
        if not server_up:
            raise ToolError("the post office refused the connection", retryable=True,
                            not_sent=True, unreachable=True)
        letters.append(invoice)
        return "posted"

    def registry() -> ToolRegistry:
        tools = ToolRegistry()
        tools.register(post_letter, side_effects=True)
        return tools

    context = Context(approval="auto", dependency_wait_seconds=0.5, plan_file=str(plan_file(
        tmp_path, [{"id": "letter", "tool": "post_letter", "args": {"invoice": 7}}])))
    _, first = await run_thread("post a letter", thread_id="refused", context=context,
                                tools=registry())
    assert first.status == RunStatus.FAILED, first.reason
    [letter] = first.results
    assert letter.not_sent and letter.attempts > 1, letter

    server_up = True
    _, final = await retry_thread("refused", tools=registry())
    assert final.status == RunStatus.COMPLETED, final.reason  # not needs_approval
    assert letters == [7]


def test_a_run_that_spent_its_step_budget_continues_with_a_raised_one(tmp_path, site,
                                                                      isolated_env):
    plan = plan_file(tmp_path, [
        {"id": f"n{i}", "tool": "http_request", "depends_on": [f"n{i - 1}"] if i else [],
         "args": {"url": f"{site}/api/notes", "method": "POST",
                  "json_body": {"customer_id": 1, "text": f"note {i}"}}} for i in range(3)])
    cli = CliRunner()
    out = cli.invoke(app, ["run", "three notes", "--plan-file", str(plan), "--allow-host",
                           host_of(site), "--approve", "auto", "--set", "max_steps=2",
                           "--thread", "capped", "--json"])
    assert out.exit_code == 1 and json.loads(out.stdout)["status"] == "budget_exhausted"

    # `duet resume` says the run ended and how to continue it, in text and in JSON.
    said = cli.invoke(app, ["resume", "capped"])
    assert "had already ended (budget_exhausted)" in said.output
    assert "duet retry capped" in said.output
    resumed = json.loads(cli.invoke(app, ["resume", "capped", "--json"]).stdout)
    assert resumed["resume"]["ended"] == "budget_exhausted"
    assert resumed["resume"]["retry"] == "duet retry capped"

    # Budgets count over the whole run: a retry without more steps stops at once.
    again = json.loads(cli.invoke(app, ["retry", "capped", "--json"]).stdout)
    assert again["status"] == "budget_exhausted" and "(2/2)" in again["reason"]
    out = cli.invoke(app, ["retry", "capped", "--set", "max_steps=5", "--json"])
    final = json.loads(out.stdout)
    assert out.exit_code == 0 and final["status"] == "completed", final["reason"]
    texts = sorted(t for (t,) in sqlite3.connect(tmp_path / "crm.sqlite").execute(
        "SELECT text FROM notes"))
    assert texts == ["note 0", "note 1", "note 2"]  # each write once
    assert started(isolated_env, "capped") == ["n0", "n1", "n2"]
    settings = json.loads((isolated_env / "runs" / "capped.json").read_text())
    assert settings["context"]["max_steps"] == 5  # a later resume keeps it

    # A completed run is not retried: a typed refusal, exit 2.
    refused = cli.invoke(app, ["retry", "capped", "--set", "max_steps=9"])
    assert refused.exit_code == 2 and "ended completed" in refused.output
    assert json.loads((isolated_env / "runs" / "capped.json").read_text())["context"][
        "max_steps"] == 5  # a refused retry changes nothing
