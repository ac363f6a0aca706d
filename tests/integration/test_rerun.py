"""Rerun a finished run without the model: `duet export` writes its final plan as a plan
file, `duet run --plan-file` reruns it with other values and no reasoning call, a replay
whose world changed ends naming the step, and with a model it heals instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from demo_site import serve
from graph.app.cli.runs import DEMO_TASK
from graph.app.export import NotExportable, export_plan
from graph.app.runner import retry_thread, run_thread
from graph.app.threads import read_trace
from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus
from graph.events import ReplayHandedOver
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import tool_input
from tests.fixtures.langgraph_server import langgraph_server
from tests.fixtures.loopback import AwsHandler, host_of
from tests.fixtures.loopback import serve as serve_handler

DUET = [sys.executable, "-m", "graph.app.cli"]
ROOT = Path(__file__).resolve().parents[2]
DEMO_PLAN = str(ROOT / "demo_site" / "plans" / "overdue_followup.yaml")
MODEL = "us.amazon.nova-2-lite-v1:0"


def duet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DUET, *args], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy(), cwd=ROOT)


def test_an_exported_demo_run_reruns_on_another_site_with_no_reasoning_call(site, tmp_path):
    first = duet("run", DEMO_TASK, "--plan-file", DEMO_PLAN, "--var", f"site={site}",
                 "--allow-host", host_of(site), "--approve", "auto", "--json")
    assert first.returncode == 0, first.stderr
    thread = json.loads(first.stdout)["thread_id"]

    exported = duet("export", thread, "--json")
    assert exported.returncode == 0, exported.stderr
    info = json.loads(exported.stdout)
    # The run's own variable, and the task's word "reminded" (the new invoice status).
    assert info["variables"] == {"site": site, "status": "reminded"}
    text = Path(info["path"]).read_text()
    assert '"{{ site }}/api/invoices?status=overdue"' in text
    assert "${s1.output.json.0.customer_id}" in text  # plan references stay
    assert info["rerun"].startswith("duet run 'Follow up every overdue invoice")
    assert f"--allow-host {host_of(site)} --approve auto" in info["rerun"]

    notes_before = len(httpx.get(f"{site}/api/notes").json())
    with serve(tmp_path / "other.sqlite") as other:
        other_before = len(httpx.get(f"{other}/api/notes").json())
        rerun = duet("run", DEMO_TASK, "--plan-file", info["path"], "--var", f"site={other}",
                     "--allow-host", host_of(other), "--approve", "auto", "--json")
        assert rerun.returncode == 0, rerun.stderr
        final = json.loads(rerun.stdout)
        assert final["status"] == "completed" and final["usage"]["reasoning_calls"] == 0
        results = {r["step_id"]: r for r in final["results"]}
        assert results["verify"]["output"]["json"] == []
        assert [row["Status"] for row in results["read_page"]["output"]["rows"]] == [
            "reminded"] * 3
        # The answer is the offline template, citing the steps.
        assert "[verify] http_request: ok" in final["final_answer"]
        assert "offline planner: no model was called" in final["final_answer"]
        # Three over the API, one through the customer page's form.
        assert len(httpx.get(f"{other}/api/notes").json()) == other_before + 4

    # With no --var it replays on the first site, whose world changed: nothing is overdue
    # any more, so the first note has no invoice to name. It ends naming the step.
    again = duet("run", DEMO_TASK, "--plan-file", info["path"], "--allow-host", host_of(site),
                 "--approve", "auto", "--json")
    assert again.returncode == 1, again.stderr
    final = json.loads(again.stdout)
    assert final["status"] == "failed" and final["usage"]["reasoning_calls"] == 0
    assert final["reason"].startswith("the replay stopped at step 'note1' (http_request) "
                                      "ended error: ReferenceError: ${s1.output.json.0."), final
    assert len(httpx.get(f"{site}/api/notes").json()) == notes_before  # no second note


class _Shop(AwsHandler):
    """A small API whose orders move from /v1 to /v2 once `moved`; counts requests."""

    seen: Counter[str] = Counter()
    moved = False
    v3_open = False

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        path = self.path.partition("?")[0]
        type(self).seen[path] += 1
        if path == "/customers/3":
            self.reply(200, {"id": 3, "name": "Hooli"})
        elif path == "/v1/orders" and not type(self).moved:
            self.reply(200, [{"id": 71, "customer_id": 3}])
        elif ((path == "/v2/orders" and type(self).moved)
              or (path == "/v3/orders" and type(self).v3_open)):
            self.reply(200, {"orders": [{"id": 71, "customer_id": 3}]})
        else:
            self.reply(404, {"detail": "no such page: the orders moved to /v2/orders"})

    def do_POST(self) -> None:  # noqa: N802
        type(self).seen[self.path] += 1
        self.body()
        self.reply(201, {"id": 1})


@pytest.fixture
def shop():
    _Shop.seen, _Shop.moved, _Shop.v3_open = Counter(), False, False
    server, url = serve_handler(_Shop)
    yield url
    server.shutdown()


async def test_a_replay_whose_page_changed_ends_naming_it_or_hands_over_to_the_model(
        shop, tmp_path, converse, isolated_env):
    task = f"Add a note for customer 3 of the shop at {shop} and list their orders."
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"goal": "Note customer 3 and read their orders", "steps": [
        {"id": "customer", "tool": "http_request", "args": {"url": f"{shop}/customers/3"}},
        {"id": "note", "tool": "http_request", "depends_on": ["customer"],
         "side_effects": True, "args": {"url": f"{shop}/notes", "method": "POST",
                                        "json_body": {"customer_id": 3, "text": "called"}}},
        {"id": "orders", "tool": "http_request", "depends_on": ["note"],
         "args": {"url": f"{shop}/v1/orders?customer_id=3"}}]}))
    context = Context(plan_file=str(plan), approval="auto", allowed_hosts=[host_of(shop)])
    thread, final = await run_thread(task, context=context)
    assert final.status == RunStatus.COMPLETED, final.reason
    exported = (await export_plan(thread)).write(tmp_path / "exported.yaml")

    _Shop.moved, _Shop.seen = True, Counter()
    command = ["run", task, "--plan-file", str(exported), "--allow-host", host_of(shop),
               "--approve", "auto", "--json"]
    plain = duet(*command)
    assert plain.returncode == 1, plain.stderr
    ended = json.loads(plain.stdout)
    assert ended["usage"]["reasoning_calls"] == 0
    assert ended["reason"] == (
        "the replay stopped at step 'orders' (http_request) ended error: ToolError: GET "
        f"{shop}/v1/orders?customer_id=3 answered 404: "
        '{"detail": "no such page: the orders moved to /v2/orders"}')

    # With a model, the model (the loopback Converse server) takes over from the failure.
    healed_plan = Plan.model_validate({"goal": "Read customer 3's orders", "steps": [
        {"id": "orders_v2", "tool": "http_request",
         "args": {"url": f"{shop}/v2/orders?customer_id=3"}}]})
    converse.script = [
        tool_input(Decision(action="replan", reason="the orders moved to /v2")),
        tool_input(healed_plan),
        tool_input(Decision(action="finish", reason="done",
                            answer="Noted customer 3 [note]; order 71 [orders_v2].")),
    ]
    _Shop.seen = Counter()
    healing = duet(*command, "--model", MODEL, "--set", f"bedrock_endpoint_url={converse.url}")
    assert healing.returncode == 0, healing.stderr
    healed = json.loads(healing.stdout)
    assert healed["status"] == "completed", healed["reason"]
    assert healed["final_answer"] == "Noted customer 3 [note]; order 71 [orders_v2]."
    assert healed["usage"]["reasoning_calls"] == 3 and not converse.script
    # The replay's steps that succeeded ran once: the model's plan did not send them again.
    assert _Shop.seen == Counter({"/customers/3": 1, "/notes": 1, "/v1/orders": 1,
                                  "/v2/orders": 1})
    assert [(r["step_id"], r["status"], r["plan_version"]) for r in healed["results"]] == [
        ("customer", "ok", 1), ("note", "ok", 1), ("orders", "error", 1),
        ("orders_v2", "ok", 2)]
    # The model was asked first with the failed step's result, then to replan from it.
    decision, replan = (json.dumps(request) for request in converse.requests[:2])
    assert "no such page: the orders moved to /v2/orders" in decision
    assert "the replay stopped at step 'orders'" in decision
    assert "[orders] http_request -> error" in decision
    assert all(f"[{step}] http_request -> {status}" in replan for step, status in (
        ("customer", "ok"), ("note", "ok"), ("orders", "error")))
    assert "Write a new plan that reaches the goal from where things stand" in replan
    handed = [e for e in read_trace(isolated_env / "traces" / f"{healed['thread_id']}.jsonl")
              if isinstance(e, ReplayHandedOver)]
    assert [e.steps for e in handed] == [["orders"]]


async def test_a_retry_of_a_healed_run_goes_on_with_the_models_plan(shop, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "orders of customer 3", "steps": [
        {"id": "customer", "tool": "http_request", "args": {"url": f"{shop}/customers/3"}},
        {"id": "orders", "tool": "http_request", "depends_on": ["customer"],
         "args": {"url": f"{shop}/v1/orders"}}]}))
    _Shop.moved = True
    model = ScriptedChatModel(responses=[
        Decision(action="replan", reason="v1 is gone"),
        Plan.model_validate({"goal": "g", "steps": [
            {"id": "v3", "tool": "http_request", "args": {"url": f"{shop}/v3/orders"}}]}),
        Decision(action="finish", reason="v3 is not open yet", answer="Not yet [v3]."),
        Decision(action="finish", reason="read", answer="Order 71 [v3]."),
    ])
    context = Context(plan_file=str(plan), self_healing=True, allowed_hosts=[host_of(shop)])
    thread, final = await run_thread("orders of customer 3", context=context, model=model)
    assert final.status == RunStatus.FAILED and final.reason == "v3 is not open yet"

    _Shop.v3_open = True
    _, again = await retry_thread(thread, model=model)
    assert again.status == RunStatus.COMPLETED and again.final_answer == "Order 71 [v3]."
    # The file's plan was not read again: its steps neither ran again nor came back.
    assert _Shop.seen == Counter({"/customers/3": 1, "/v1/orders": 1, "/v3/orders": 2})
    assert not model.responses


async def test_export_refuses_a_run_that_has_not_ended_in_one_line(shop, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "note", "steps": [
        {"id": "note", "tool": "http_request", "side_effects": True,
         "args": {"url": f"{shop}/notes", "method": "POST", "json_body": {"text": "x"}}}]}))
    thread, final = await run_thread("note", context=Context(
        plan_file=str(plan), allowed_hosts=[host_of(shop)]))  # waits for approval
    assert final.status == RunStatus.NEEDS_APPROVAL
    with pytest.raises(NotExportable) as caught:
        await export_plan(thread)
    assert str(caught.value) == (f"thread {thread!r} has not ended (steps ['note'] wait for "
                                 f"approval): `duet resume {thread}` finishes it first")
    out = duet("export", thread)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {caught.value}"


async def test_a_served_graph_reruns_an_exported_plan_given_as_text(site, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(json.dumps({"goal": "Note customer 4", "steps": [
        {"id": "read", "tool": "http_request", "args": {"url": f"{site}/api/customers/4"}},
        {"id": "note", "tool": "http_request", "depends_on": ["read"], "args": {
            "url": f"{site}/api/notes", "method": "POST",
            "json_body": {"customer_id": 4, "text": "exported"}}}]}))
    thread, final = await run_thread("Add a note for customer 4", context=Context(
        plan_file=str(plan), approval="auto", allowed_hosts=[host_of(site)]))
    assert final.status == RunStatus.COMPLETED, final.reason
    exported = await export_plan(thread)
    assert exported.variables == {"customer_id": "4"}

    with langgraph_server(tmp_path / "server.log") as server:
        client = get_client(url=server)
        run = await client.runs.wait(
            None, "nova-duet", input={"task": "Add a note for customer 2"},
            context={"plan_text": exported.text, "plan_variables": {"customer_id": "2"},
                     "approval": "auto", "allowed_hosts": [host_of(site)]})
        assert run["status"] == "completed", run
        assert run["usage"]["reasoning_calls"] == 0
        notes = httpx.get(f"{site}/api/notes?customer_id=2").json()
        assert [n["text"] for n in notes] == ["exported"]
