"""Plan review (`review_plan`): the whole plan waits for a person before any step runs; they
approve it, edit it or reject it with a reason the planner reads; a bad answer is refused
with the review still pending. And a step's rejection reason reaches the planner."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from graph import Context, Decision, Plan, Step, build_graph
from graph.app.eval import AgentSettings, load_suite, run_suite
from graph.app.report import report_data
from graph.app.runner import retry_thread, run_thread
from graph.events import PlanReviewAnswered, PlanReviewRequested, StepStarted, parse_event
from graph.rendering import FENCED_BLOCK
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import tool_input
from tests.fixtures.loopback import AwsHandler, host_of, serve
from tests.integration.test_cli import DUET, ROOT, duet

MODEL = "us.amazon.nova-2-lite-v1:0"
CONFIG = {"configurable": {"thread_id": "review"}}


@pytest.fixture
def target():
    """A loopback JSON server that records every request it gets: (method, path, body)."""
    requests: list[tuple[str, str, object]] = []

    class Handler(AwsHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            requests.append(("GET", self.path, None))
            found = self.path != "/missing"
            self.reply(200 if found else 404, {"items": [1, 2]} if found else "not found")

        def do_POST(self) -> None:  # noqa: N802
            requests.append(("POST", self.path, json.loads(self.body() or b"null")))
            self.reply(200, {"saved": True})

    server, url = serve(Handler)
    yield url, requests
    server.shutdown()


def note_plan(url: str, text: str = "hello") -> Plan:
    """A read, then a write that depends on it."""
    return Plan(goal="leave a note", steps=[
        Step(id="read", tool="http_request", args={"url": f"{url}/items"}),
        Step(id="write", tool="http_request", depends_on=["read"], args={
            "url": f"{url}/notes", "method": "POST", "json_body": {"text": text}})])


def scripted_graph(*responses):
    # Streamed in small pieces: without review, the read would start while the plan streams.
    model = ScriptedChatModel(responses=list(responses), stream_fragment=8)
    return build_graph(model=model, checkpointer=InMemorySaver()), model


async def drive(graph, inputs, context: Context):
    """Run until the graph stops; the custom-stream events' names, the state values, and
    the pending interrupt's id and request (None when the run ended)."""
    events = []
    async for chunk in graph.astream(inputs, CONFIG, context=context, stream_mode="custom"):
        events.append(chunk)
    state = await graph.aget_state(CONFIG)
    pending = state.interrupts[0] if state.interrupts else None
    return events, state.values, pending


def started(events) -> list[str]:
    """The ids of the steps that started, in order."""
    return [e.step_id for e in map(parse_event, events) if isinstance(e, StepStarted)]


async def test_nothing_runs_before_the_plan_is_approved_and_then_it_runs(target):
    url, requests = target
    # The contrast: without review the read starts while the plan is still being written.
    graph, _ = scripted_graph(note_plan(url))
    events, _, pending = await drive(graph, {"task": "note"},
                                     Context(approval="ask", allowed_hosts=[host_of(url)]))
    assert started(events) == ["read"] and pending.value["kind"] == "approval"
    requests.clear()

    graph, _ = scripted_graph(note_plan(url),
                              Decision(action="finish", reason="noted", answer="Noted [write]."))
    context = Context(review_plan=True, approval="auto", allowed_hosts=[host_of(url)])
    events, values, pending = await drive(graph, {"task": "note"}, context)
    assert started(events) == [] and requests == [], "nothing ran before the review"
    request = pending.value
    assert request["kind"] == "plan_review" and request["plan_version"] == 1
    assert [(s["step_id"], s["writes"], s["hosts"]) for s in request["steps"]] == [
        ("read", False, [host_of(url)]), ("write", True, [host_of(url)])]
    assert values["awaiting_review"] is True

    events, values, pending = await drive(
        graph, Command(resume={pending.id: {"action": "approve", "by": "ana"}}), context)
    assert pending is None and values["status"] == "completed"
    assert [e for e in events if e.get("event") == "plan_review_answered"] == [
        PlanReviewAnswered(plan_version=1, action="approve", by="ana").dump()]
    assert started(events) == ["read", "write"]
    assert requests == [("GET", "/items", None), ("POST", "/notes", {"text": "hello"})]


async def test_an_edited_plan_runs_as_edited(target):
    url, requests = target
    graph, model = scripted_graph(note_plan(url, "as planned"),
                                  Decision(action="finish", reason="noted"), "Noted [write].")
    context = Context(review_plan=True, approval="auto", allowed_hosts=[host_of(url)])
    _, _, pending = await drive(graph, {"task": "note"}, context)
    edited = note_plan(url, "as edited").model_dump(mode="json")
    events, values, pending = await drive(
        graph, Command(resume={pending.id: {"action": "edit", "plan": edited}}), context)
    assert pending is None and values["status"] == "completed", values.get("reason")
    assert requests == [("GET", "/items", None), ("POST", "/notes", {"text": "as edited"})]
    assert [(r.step_id, r.plan_version) for r in values["results"]] == [
        ("read", 2), ("write", 2)], "the edit runs as a new plan version"
    assert values["plan"].steps[1].args["json_body"] == {"text": "as edited"}
    assert len(model.prompts) == 3, "the edit needed no new plan"


async def test_a_bad_answer_is_refused_and_the_review_stays_pending(target):
    url, requests = target
    graph, _ = scripted_graph(note_plan(url), Decision(action="finish", reason="ok"), "ok")
    context = Context(review_plan=True, approval="auto", allowed_hosts=[host_of(url)])
    _, _, pending = await drive(graph, {"task": "note"}, context)
    unknown_tool = {"goal": "g", "steps": [{"id": "x", "tool": "no_such_tool"}]}
    for answer, error in [
        ({"action": "maybe"}, "action"),
        ({"action": "reject"}, "a rejection gives its reason"),
        ({"action": "approve", "plan": note_plan(url).model_dump()}, "only an edit gives a plan"),
        ({"action": "edit", "plan": unknown_tool}, "the edited plan has invalid steps: x:"),
        ({"action": "edit", "plan": {"goal": "g"}}, "plan.steps"),
        ("yes", "not a plan review answer"),
    ]:
        events, values, pending = await drive(graph, Command(resume={pending.id: answer}),
                                              context)
        assert pending is not None and pending.value["kind"] == "plan_review", answer
        assert error in pending.value["error"], (answer, pending.value["error"])
        assert started(events) == [] and requests == [] and not values.get("status")
    _, values, pending = await drive(graph, Command(resume={pending.id: {"action": "approve"}}),
                                     context)
    assert pending is None and values["status"] == "completed"
    assert [method for method, _, _ in requests] == ["GET", "POST"]


async def test_a_retry_sent_to_a_run_waiting_for_review_reviews_again(target):
    url, requests = target
    graph, _ = scripted_graph(note_plan(url), Decision(action="finish", reason="ok"), "ok")
    context = Context(review_plan=True, approval="auto", allowed_hosts=[host_of(url)])
    await drive(graph, {"task": "note"}, context)
    events, _, pending = await drive(graph, {"retry": True}, context)
    assert pending.value["kind"] == "plan_review" and started(events) == []
    assert requests == []


async def test_a_rejected_plan_comes_back_rewritten_with_the_reason_in_the_planners_prompt(
        converse, target):
    url, requests = target
    reason = "Write 'second draft' instead: the first text is wrong."
    converse.script += [tool_input(note_plan(url, "first draft")),
                        tool_input(note_plan(url, "second draft")),
                        tool_input(Decision(action="finish", reason="noted",
                                            answer="Noted [write]."))]
    graph = build_graph(checkpointer=InMemorySaver())
    context = Context(model=MODEL, bedrock_endpoint_url=converse.url, review_plan=True,
                      approval="auto", allowed_hosts=[host_of(url)])
    _, _, pending = await drive(graph, {"task": "note"}, context)
    assert pending.value["plan_version"] == 1 and requests == []

    events, _, pending = await drive(
        graph, Command(resume={pending.id: {"action": "reject", "reason": reason}}), context)
    # The new plan comes back for review; nothing ran in between.
    assert pending.value["kind"] == "plan_review" and pending.value["plan_version"] == 2
    assert pending.value["steps"][1]["args"]["json_body"] == {"text": "second draft"}
    assert started(events) == [] and requests == []
    first, second = (json.dumps(body) for body in converse.requests[:2])
    assert reason not in first and reason in second, "the planner read the person's reason"
    assert "rejected" in second and "first draft" in second  # with the plan it rejected

    _, values, pending = await drive(graph, Command(resume={pending.id: {"action": "approve"}}),
                                     context)
    assert pending is None and values["status"] == "completed"
    assert requests == [("GET", "/items", None), ("POST", "/notes", {"text": "second draft"})]
    assert converse.invalid == [] and len(converse.requests) == 3


async def test_a_steps_rejection_reason_reaches_the_planner_as_the_persons_words(target):
    url, requests = target
    graph, model = scripted_graph(note_plan(url), Decision(action="finish", reason="refused"),
                                  "Not written [write].")
    context = Context(approval="ask", allowed_hosts=[host_of(url)])
    _, _, pending = await drive(graph, {"task": "note"}, context)
    # A malformed answer is refused, not read as a rejection; the request stays pending.
    _, _, pending = await drive(graph, Command(resume={pending.id: {"write": "aprove"}}),
                                context)
    assert pending.value["kind"] == "approval" and "'aprove' is not an answer" in (
        pending.value["error"])
    _, _, pending = await drive(graph, Command(resume={pending.id: {"read": "approve"}}),
                                context)
    assert "not asked about: ['read']" in pending.value["error"]
    why = "Not today: the customer asked us to wait until Monday."
    _, values, pending = await drive(
        graph, Command(resume={pending.id: {"write": {"reject": why}}}), context)
    assert pending is None and [m for m, _, _ in requests] == ["GET"]
    write = next(r for r in values["results"] if r.step_id == "write")
    assert write.status == "rejected" and write.rejected_because == why
    observed = model.prompts[1][1].content  # the decision's prompt, after the rejection
    assert f"The person who rejected it said: {why}" in observed
    assert not any(why in block for block in FENCED_BLOCK.findall(observed)), (
        "a person's words are not fenced as tool output")


async def test_run_thread_answers_a_review_with_decide_and_the_report_says_who(target):
    url, requests = target
    model = ScriptedChatModel(responses=[note_plan(url), Decision(action="finish", reason="ok"),
                                         "Noted [write]."])
    asked = []

    def decide(request):
        asked.append(request["kind"])
        return {"action": "approve"}

    decide.by = "the reviewer on call"
    seen = []
    thread, final = await run_thread(
        "note", model=model, on_event=seen.append, decide=decide,
        context=Context(review_plan=True, approval="auto", allowed_hosts=[host_of(url)]))
    assert final.status == "completed" and asked == ["plan_review"]
    kinds = [type(e) for e in seen]
    assert kinds.index(PlanReviewRequested) < kinds.index(PlanReviewAnswered) < kinds.index(
        StepStarted), "nothing started before the review was answered"
    data = await report_data(thread)
    assert data["review_plan"] is True
    assert [(r["action"], r["by"], r["plan_version"]) for r in data["reviews"]] == [
        ("approve", "the reviewer on call", 1)]


async def test_a_retried_plan_file_that_changed_is_reviewed_again(tmp_path, target):
    url, requests = target
    path = tmp_path / "plan.json"

    def write_plan(target_path: str) -> None:
        path.write_text(Plan(goal="read", steps=[Step(id="s", tool="http_request", args={
            "url": f"{url}{target_path}"})]).model_dump_json())

    reviewed = []

    def decide(request):
        reviewed.append(request["steps"][0]["args"]["url"])
        return {"action": "approve"}

    write_plan("/missing")
    context = Context(plan_file=str(path), review_plan=True, allowed_hosts=[host_of(url)])
    thread, final = await run_thread("read", context=context, decide=decide)
    assert final.status == "failed" and reviewed == [f"{url}/missing"]
    write_plan("/items")
    _, final = await retry_thread(thread, decide=decide)
    assert final.status == "completed"
    assert reviewed == [f"{url}/missing", f"{url}/items"], "the changed plan was reviewed"
    assert [p for _, p, _ in requests] == ["/missing", "/items"]


async def test_eval_approves_the_plans_of_runs_under_review(tmp_path):
    suite = load_suite()
    task = next(t for t in suite.tasks if t.id == "write-mark-paid")
    rows = await run_suite(suite, [task], ["nova-duet"], AgentSettings(
        context={"review_plan": True}, out_dir=tmp_path))
    assert rows[0].passed and rows[0].status == "completed", rows[0].checks
    page = Path(rows[0].report).read_text()
    assert page.count('<tr class="review" data-action="approve">') == 1
    assert f"the eval task&#39;s decide setting ({task.decide})" in page


def test_cli_review_waits_then_refuses_bad_answers_in_one_line_then_runs_the_edit(
        tmp_path, target, isolated_env):
    url, requests = target
    plan, edited, invalid = (tmp_path / name for name in ("plan.json", "edited.json",
                                                          "invalid.json"))
    plan.write_text(note_plan(url, "planned").model_dump_json())
    edited.write_text(note_plan(url, "edited").model_dump_json())
    invalid.write_text(json.dumps({"goal": "g", "steps": [{"id": "x", "tool": "nope"}]}))
    first = duet("run", "note", "--plan-file", str(plan), "--review", "--approve", "auto",
                 "--allow-host", host_of(url), "--thread", "rv1", "--json")
    assert first.returncode == 1, first.stderr
    waiting = json.loads(first.stdout)
    assert waiting["status"] == "needs_approval"
    assert waiting["reason"] == "plan v1 waits for review (steps ['read', 'write'])"
    assert requests == []

    for args, said in [
        (["--decide", "reject"], "a plan review is rejected with a reason"),
        (["--reason", "why"], "--reason goes with --decide reject"),
        (["--edit-plan", str(invalid)], "the edited plan has invalid steps: x:"),
    ]:
        out = duet("resume", "rv1", *args, "--json")
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert said in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert requests == []
    shown = json.loads(duet("show", "rv1", "--json").stdout)
    assert shown["status"] == "needs_approval", "a refused answer leaves the run waiting"

    done = duet("resume", "rv1", "--edit-plan", str(edited), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert requests == [("GET", "/items", None), ("POST", "/notes", {"text": "edited"})]
    report = json.loads(duet("report", "rv1", "--json").stdout)
    assert [(r["action"], r["by"], r["edited_version"]) for r in report["reviews"]] == [
        ("edit", f"the --edit-plan {edited} option", 2)]


def test_at_a_terminal_the_plan_is_reviewed_and_a_rejected_step_says_why(tmp_path, target,
                                                                        isolated_env):
    """`duet run --review` at a terminal (stdin a pseudo-terminal): a wrong choice and an
    edit file that is not there are asked again; the edit runs; its write, rejected with a
    reason, never runs and its result carries the reason."""
    url, requests = target
    plan, edited = tmp_path / "plan.json", tmp_path / "edited.json"
    plan.write_text(note_plan(url, "planned").model_dump_json())
    edited.write_text(note_plan(url, "edited").model_dump_json())
    answers = f"maybe\nedit\n{tmp_path / 'absent.json'}\nedit\n{edited}\nn\nnot before Monday\n"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*DUET, "run", "note", "--plan-file", str(plan), "--review", "--thread", "tty1",
         "--allow-host", host_of(url)], stdin=terminal, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT)
    os.close(terminal)
    try:
        os.write(controller, answers.encode())
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        os.close(controller)
    assert process.returncode == 1, out + err
    assert "'maybe' is not one of 'approve', 'edit', 'reject'" in out
    assert "cannot read it" in err
    assert "● review plan v1 edited: runs as plan v2 by a human at the terminal" in out
    assert requests == [("GET", "/items", None)], "the rejected write never ran"
    final = json.loads(duet("show", "tty1", "--json").stdout)
    write = next(r for r in final["results"] if r["step_id"] == "write")
    assert write["status"] == "rejected" and write["rejected_because"] == "not before Monday"
    report = json.loads(duet("report", "tty1", "--json").stdout)
    assert [(r["action"], r["by"]) for r in report["reviews"]] == [
        ("edit", "a human at the terminal")]
    assert [(a["step_id"], a["answer"], a["reason"], a["by"]) for a in report["approvals"]] == [
        ("write", "reject", "not before Monday", "a human at the terminal")]
