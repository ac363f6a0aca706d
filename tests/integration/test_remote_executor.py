"""The execution agent as its own deployment: real `langgraph dev` servers on loopback, one
serving the executor deployment (its step route and its graph, bounded to the demo site),
one the reasoning graph, driven through the CLI, `langgraph_sdk` and the planner's client."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from langchain_core.tracers.langchain import wait_for_all_tracers
from langgraph_sdk import get_client

from demo_site import serve
from demo_site.server import free_port
from graph import Context, Decision, Plan, Step, build_graph
from graph.app.doctor import check_executor
from graph.app.threads import read_trace
from graph.contracts import EXECUTOR_GRAPH_ID, EXECUTOR_STEP_PATH, StepRequest
from graph.runtime.remote import RemoteExecutor
from graph.testing import ScriptedChatModel
from tests.fixtures.langgraph_server import langgraph_process, langgraph_server
from tests.fixtures.loopback import host_of
from tools.sandbox import SandboxPolicy

ROOT = Path(__file__).resolve().parents[2]
DEMO_PLAN = str(files("demo_site").joinpath("plans/overdue_followup.yaml"))


@pytest.fixture(scope="module")
def crm(tmp_path_factory):
    """The demo CRM for this module: (its URL, its database file)."""
    db = tmp_path_factory.mktemp("crm") / "crm.sqlite"
    with serve(db) as url:
        yield url, db


@pytest.fixture(scope="module")
def executor(tmp_path_factory, crm):
    """An executor deployment that may reach the CRM and nothing else."""
    folder = tmp_path_factory.mktemp("executor")
    env = {"DUET_EXECUTOR_ALLOWED_HOSTS": host_of(crm[0]), "DUET_HOME": str(folder / "home")}
    with langgraph_server(folder / "server.log", env) as url:
        yield url


def duet(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graph.app.cli", *args], cwd=ROOT,
                            env={**os.environ, "DUET_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def notes(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(row[0] for row in conn.execute("SELECT text FROM notes"))


def test_a_demo_run_executes_every_step_remotely_and_writes_once(crm, executor, tmp_path):
    site, db = crm
    before = notes(db)
    run = duet(tmp_path, "run", "follow up", "--plan-file", DEMO_PLAN, "--var", f"site={site}",
               "--allow-host", host_of(site), "--approve", "auto", "--executor-url", executor,
               "--thread", "remote-demo", "--json")
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err[-3000:]
    final = json.loads(out)
    assert final["status"] == "completed"
    events = read_trace(tmp_path / "traces" / "remote-demo.jsonl")
    sent = {e.step_id: e.executor for e in events if e.event == "step_sent"}
    assert sent == dict.fromkeys([r["step_id"] for r in final["results"]], executor)
    # The browser steps shared the named session `crm` on the executor: the page that
    # open_page opened is the one read_page read.
    rows = next(r for r in final["results"] if r["step_id"] == "read_page")["output"]["rows"]
    assert [r["Status"] for r in rows] == ["reminded"] * 3
    added = [n for n in notes(db) if n not in before]
    # Three over the API, one through the customer page's form.
    assert len(added) == 4 and len(set(added)) == 4, "each note written exactly once"
    # The executor sent the page back: the report embeds it like an in-process one.
    assert (tmp_path / "runs" / "remote-demo" / "steps" / "v1-open_page.png").is_file()


KILL_PLAN = """
goal: write two notes, wait, then write one more
steps:
  - {id: note0, tool: http_request, args: {url: "{{ site }}/api/notes", method: POST,
     json_body: {customer_id: 2, text: "remote 0"}}}
  - {id: note1, tool: http_request, args: {url: "{{ site }}/api/notes", method: POST,
     json_body: {customer_id: 2, text: "remote 1"}}}
  - {id: wait, tool: http_request, depends_on: [note0, note1],
     args: {url: "{{ site }}/slow?seconds=3"}}
  - {id: last, tool: http_request, depends_on: [wait], args: {url: "{{ site }}/api/notes",
     method: POST, json_body: {customer_id: 2, text: "remote last"}}}
"""


def test_the_reasoning_process_killed_mid_run_resumes(crm, executor, tmp_path):
    site, db = crm
    (tmp_path / "plan.yaml").write_text(KILL_PLAN)
    trace = tmp_path / "traces" / "remote-kill.jsonl"
    run = duet(tmp_path, "run", "notes", "--plan-file", str(tmp_path / "plan.yaml"), "--var",
               f"site={site}", "--allow-host", host_of(site), "--approve", "auto",
               "--executor-url", executor, "--thread", "remote-kill", "--json")
    deadline = time.monotonic() + 60
    while not any(e.event == "step_started" and getattr(e, "step_id", None) == "wait"
                  for e in read_trace(trace)):
        assert time.monotonic() < deadline and run.poll() is None, "the run never reached wait"
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()

    resumed = duet(tmp_path, "resume", "remote-kill", "--json")
    out, err = resumed.communicate(timeout=120)
    assert json.loads(out)["status"] == "completed", err[-3000:]
    assert [n for n in notes(db) if n.startswith("remote")] == [
        "remote 0", "remote 1", "remote last"], "each write happened exactly once"


def test_an_executor_stopped_mid_step_gives_a_typed_error(crm, tmp_path):
    site, _ = crm
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "slow", "tool": "http_request", "args": {"url": f"{site}/slow?seconds=5"}}]}))
    env = {"DUET_EXECUTOR_ALLOWED_HOSTS": host_of(site), "DUET_HOME": str(tmp_path / "exec")}
    trace = tmp_path / "traces" / "stopped.jsonl"
    with langgraph_process(tmp_path / "server.log", env) as (url, server):
        run = duet(tmp_path, "run", "slow", "--plan-file", str(plan), "--allow-host",
                   host_of(site), "--executor-url", url, "--thread", "stopped", "--json",
                   "--set", "dependency_wait_seconds=2")
        deadline = time.monotonic() + 60
        while not any(e.event == "step_started" for e in read_trace(trace)):
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        time.sleep(1.0)  # the step is on the executor now
        # Killed, not stopped: a stopped server lets its requests in flight finish.
        server.kill()
        server.wait()
    started = time.monotonic()
    out, err = run.communicate(timeout=60)
    assert time.monotonic() - started < 30, "the run did not hang on a dead executor"
    final = json.loads(out)
    assert final["status"] == "failed"
    error = final["results"][0]["error"]
    assert error["type"] == "ExecutorUnavailable"
    assert "dependency_wait_seconds=2" in error["message"]
    events = read_trace(trace)
    # A read-only step on a dead executor waits for it (dependency_wait_seconds), sending
    # again with backoff, then fails.
    [waiting] = [e for e in events if e.event == "step_waiting"]
    assert waiting.reason.endswith("to come back (ExecutorUnavailable)")
    assert len([e for e in events if e.event == "step_sent"]) >= 2
    assert final["results"][0]["waited"].startswith("waited ")


def test_the_executor_refuses_a_host_its_deployment_does_not_allow(crm, executor, tmp_path):
    site, _ = crm
    with serve(tmp_path / "other.sqlite") as other:
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"goal": "g", "steps": [
            {"id": "other", "tool": "http_request", "args": {"url": f"{other}/health"}}]}))
        run = duet(tmp_path, "run", "read elsewhere", "--plan-file", str(plan), "--allow-host",
                   host_of(site), "--allow-host", host_of(other), "--executor-url", executor,
                   "--json")
        out, err = run.communicate(timeout=120)
        assert httpx.get(f"{other}/health").status_code == 200  # it is there, and allowed here
    result = json.loads(out)["results"][0]
    assert result["status"] == "blocked", err[-2000:]
    assert "DUET_EXECUTOR_ALLOWED_HOSTS" in result["error"]["message"]


async def test_through_the_sdk_named_sessions_persist_across_remote_steps(
        crm, executor, tmp_path):
    site, _ = crm
    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        {"plan": {"goal": "look", "steps": [
            {"id": "open", "tool": "browser_goto",
             "args": {"url": f"{site}/invoices", "session": "s"}},
            {"id": "read", "tool": "browser_read", "depends_on": ["open"],
             "args": {"selector": "#invoices", "kind": "table", "session": "s"}}]}},
        {"decision": {"action": "finish", "reason": "read", "answer": "Read it [read]."}}]))
    env = {"DUET_HOME": str(tmp_path / "reasoning"), "DUET_EXECUTOR_HEADERS": "{}"}
    with langgraph_server(tmp_path / "reasoning.log", env, port=free_port()) as reasoning:
        client = get_client(url=reasoning)
        thread = await client.threads.create()
        sent, result = [], {}
        async for part in client.runs.stream(
                thread["thread_id"], "nova-duet", input={"task": "Read the invoices"},
                context={"model": f"scripted:{script}", "allowed_hosts": [host_of(site)],
                         "executor_url": executor}, stream_mode=["custom", "values"]):
            if part.event == "custom" and part.data["event"] == "step_sent":
                sent.append((part.data["step_id"], part.data["executor"]))
            elif part.event == "values":
                result = part.data
    assert result["status"] == "completed", result.get("reason")
    assert sent == [("open", executor), ("read", executor)]
    by_id = {r["step_id"]: r for r in result["results"]}
    assert by_id["open"]["output"]["title"] == "Invoices"
    assert by_id["read"]["status"] == "ok" and by_id["read"]["output"]["rows"]


async def test_the_executors_runs_nest_under_the_steps_run(crm, langsmith_capture, tmp_path):
    site, _ = crm
    env = {"DUET_EXECUTOR_ALLOWED_HOSTS": host_of(site), "DUET_HOME": str(tmp_path / "exec"),
           "LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": langsmith_capture.url,
           "LANGSMITH_API_KEY": "loopback-only"}
    plan = Plan(goal="g", steps=[
        Step(id="r", tool="http_request", args={"url": f"{site}/api/customers/1"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok",
                                                        answer="Acme [r]")])
    with langgraph_server(tmp_path / "executor.log", env) as url:
        out = await build_graph(model=model).ainvoke(
            {"task": "who is customer 1?"}, {"configurable": {"thread_id": "nested"}},
            context=Context(allowed_hosts=[host_of(site)], executor_url=url))
        assert out["status"] == "completed", out["reason"]
        wait_for_all_tracers()
        deadline = time.monotonic() + 30
        while '"name":"executehttp_request"' not in _text(langsmith_capture):
            assert time.monotonic() < deadline, "the executor posted no trace"
            time.sleep(0.5)
    text = _text(langsmith_capture)
    step_run = re.search(r'"id":"([0-9a-f-]{36})"[^{}]*?"name":"stepr"', text) or re.search(
        r'"name":"stepr"[^{}]*?"id":"([0-9a-f-]{36})"', text)
    assert step_run, "the step's run was traced"
    executed = r'"name":"executehttp_request"'
    orders = re.findall(r'"dotted_order":"([^"]+)"[^{}]*?' + executed, text) + re.findall(
        executed + r'[^{}]*?"dotted_order":"([^"]+)"', text)
    assert orders and all(step_run.group(1) in order for order in orders), (
        "the executor's run continues the step's trace")


def _text(payloads: list[bytes]) -> str:
    return b"\n".join(payloads).decode("utf-8", errors="replace").replace(" ", "")


def test_doctor_checks_the_executor_url(executor, tmp_path):
    def doctor(url: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graph.app.cli", "doctor"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "DUET_HOME": str(tmp_path),
                                   "DUET_EXECUTOR_URL": url})

    served = doctor(executor)
    assert served.returncode == 0 and "✓ executor" in served.stdout, served.stdout
    closed = f"http://127.0.0.1:{free_port()}"
    down = doctor(closed)
    assert down.returncode == 1 and "✗ executor" in down.stdout
    assert "cannot be reached" in " ".join(down.stdout.split())


def step_request(tool: str, args: dict, thread: str, hosts: list[str], **extra) -> StepRequest:
    """One attempt of a step, as the planner sends it."""
    return StepRequest(tool=tool, args=args, step_id="s", plan_version=1, thread=thread,
                       timeout_seconds=60, policy=SandboxPolicy(
                           allowed_hosts=tuple(hosts), max_response_bytes=256_000,
                           browser_max_steps=5, browser_timeout_seconds=60), **extra)


async def test_the_route_and_the_graph_share_the_deployments_sessions(crm, executor):
    site, _ = crm
    hosts = [host_of(site)]
    route = RemoteExecutor(executor, httpx.AsyncClient())
    opened = await route.attempt(step_request(
        "browser_goto", {"url": f"{site}/invoices", "session": "g"}, "shared", hosts))
    assert opened.status == "ok" and opened.output["title"] == "Invoices", opened.error
    assert opened.executor == executor and opened.screenshot, "the page came back"
    # A run of the executor graph (for Studio and clients that want runs) reads the page
    # the route opened: one service behind both.
    client = get_client(url=executor)
    request = step_request("browser_read", {"selector": "#invoices", "kind": "table",
                                            "session": "g"}, "shared", hosts, screenshot=False)
    out = await client.runs.wait(None, EXECUTOR_GRAPH_ID,
                                 input={"request": request.model_dump(mode="json")})
    assert out["reply"]["status"] == "ok" and out["reply"]["output"]["rows"], out["reply"]
    closed = await client.runs.wait(None, EXECUTOR_GRAPH_ID, input={"close_thread": "shared"})
    assert closed["reply"] == {"closed": "shared"}
    await route.end_thread("shared")  # the route's end of a thread answers too, once more


async def test_a_deployment_that_refuses_or_lacks_the_route_gives_typed_errors(
        crm, monkeypatch):
    site, _ = crm
    request = step_request("http_request", {"url": f"{site}/health"}, "t", [host_of(site)])
    # The CRM is a server, but not an executor deployment: it has no step route.
    attempt = await RemoteExecutor(site, httpx.AsyncClient()).attempt(request)
    assert attempt.error.type == "ExecutorError" and "404" in attempt.error.message
    assert not attempt.error.retryable and attempt.not_sent
    for malformed in ("not json", '["Authorization"]', '{"Authorization": 1}'):
        monkeypatch.setenv("DUET_EXECUTOR_HEADERS", malformed)
        attempt = await RemoteExecutor(site, httpx.AsyncClient()).attempt(request)
        assert "DUET_EXECUTOR_HEADERS" in attempt.error.message and attempt.not_sent


def test_executor_tools_set_from_the_cli_keeps_http_steps_in_the_planner(
        crm, executor, tmp_path):
    site, _ = crm
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "api", "tool": "http_request", "args": {"url": f"{site}/api/customers/1"}},
        {"id": "page", "tool": "browser_goto", "args": {"url": f"{site}/invoices"}}]}))
    run = duet(tmp_path, "run", "read", "--plan-file", str(plan), "--allow-host", host_of(site),
               "--executor-url", executor, "--set", "executor_tools=browser_*",
               "--thread", "split", "--json")
    out, err = run.communicate(timeout=120)
    final = json.loads(out)
    assert final["status"] == "completed", err[-2000:]
    assert {r["step_id"]: r["status"] for r in final["results"]} == {"api": "ok", "page": "ok"}
    sent = [e.step_id for e in read_trace(tmp_path / "traces" / "split.jsonl")
            if e.event == "step_sent"]
    assert sent == ["page"], "only the browser step went to the executor"


async def test_with_auth_on_the_route_needs_the_planners_token(crm, tmp_path, monkeypatch):
    site, _ = crm
    token = secrets.token_urlsafe(16)
    env = {"DUET_EXECUTOR_ALLOWED_HOSTS": host_of(site), "DUET_HOME": str(tmp_path / "exec"),
           "DUET_TEST_EXECUTOR_TOKEN": token}
    plan = Plan(goal="g", steps=[
        Step(id="r", tool="http_request", args={"url": f"{site}/api/customers/1"})])

    async def run(thread: str) -> dict:
        model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok",
                                                            answer="Acme [r]")])
        return await build_graph(model=model).ainvoke(
            {"task": "who is customer 1?"}, {"configurable": {"thread_id": thread}},
            context=Context(allowed_hosts=[host_of(site)], executor_url=url))

    config = Path(__file__).resolve().parents[1] / "fixtures" / "executor_auth.json"
    with langgraph_server(tmp_path / "executor.log", env, config=config) as url:
        # The route is behind the deployment's auth, as its graphs are.
        assert httpx.post(url + EXECUTOR_STEP_PATH, content="{}").status_code == 401
        assert httpx.post(f"{url}/assistants/search", json={}).status_code == 401
        monkeypatch.delenv("DUET_EXECUTOR_HEADERS", raising=False)
        refused = (await run("no-token"))["results"][0]
        assert refused.status == "error" and refused.error.type == "ExecutorError"
        assert "401" in refused.error.message and "DUET_EXECUTOR_HEADERS" in refused.error.message
        assert refused.attempts == 1, "a refused token is not retried"
        doctor = check_executor(Context(executor_url=url))
        assert not doctor.ok and "DUET_EXECUTOR_HEADERS" in doctor.detail
        monkeypatch.setenv("DUET_EXECUTOR_HEADERS",
                           json.dumps({"Authorization": f"Bearer {token}"}))
        assert check_executor(Context(executor_url=url)).ok
        out = await run("token")
    assert out["status"] == "completed", out["reason"]
    assert out["results"][0].output["json"]["name"] == "Acme Corp"
    assert token not in json.dumps(out, default=str), "the token is never saved with a run"
