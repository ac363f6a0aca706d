"""The scheduler: steps start on their own dependencies, early from a streamed plan, and a
plan that goes well costs two reasoning calls. Orders of events are asserted, not times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.app.threads import read_trace
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import tool_input
from tests.fixtures.loopback import host_of
from tests.integration.test_graph_scripted import calls, registry, step

ROOT = Path(__file__).resolve().parents[2]
MODEL = "us.amazon.nova-2-lite-v1:0"
async def events_of(graph, context: Context | None = None) -> tuple[list[tuple], dict]:
    """Run the graph; return its step events as (event, step_id) in order, and the output."""
    events, out = [], {}
    async for mode, chunk in graph.astream({"task": "t"}, context=context or Context(),
                                           stream_mode=["custom", "values"]):
        if mode == "custom" and "step_id" in chunk:  # not the reasoning calls' events
            events.append((chunk["event"], chunk["step_id"]))
        else:
            out = chunk
    return events, out


async def test_a_quick_chain_finishes_while_its_slow_sibling_still_runs():
    # Waves would hold q2 until `slow` ends; the DAG starts each step on its own inputs.
    plan = Plan(goal="g", steps=[
        step("slow", seconds=1.0), *[step(f"q{i}", deps=[f"q{i - 1}"] if i > 1 else [],
                                          seconds=0.05) for i in range(1, 5)],
        step("join", deps=["q4", "slow"], seconds=0.05)])
    model = ScriptedChatModel(responses=[
        plan, Decision(action="finish", reason="done", answer="all done [join]")])
    events, out = await events_of(build_graph(model=model, tools=registry()))
    assert out["status"] == RunStatus.COMPLETED
    finished = [s for e, s in events if e == "step_finished"]
    assert finished == ["q1", "q2", "q3", "q4", "slow", "join"]
    assert events.index(("step_started", "q4")) < events.index(("step_finished", "slow"))
    assert events.index(("step_started", "join")) > events.index(("step_finished", "slow"))


async def test_a_failure_mid_dag_starts_nothing_more_and_lets_the_flight_land():
    plan = Plan(goal="g", steps=[
        step("a", seconds=0.05), step("b", "broken", ["a"]), step("c", deps=["b"]),
        step("long", seconds=1.0), step("after_long", deps=["long"])])
    model = ScriptedChatModel(responses=[
        plan, Decision(action="finish", reason="b failed", answer="b failed [b]")])
    events, out = await events_of(build_graph(model=model, tools=registry()))
    by_id = {r.step_id: r.status for r in out["results"]}
    # `long` was in flight when b failed: it finished; nothing new started after the failure.
    assert by_id == {"a": "ok", "b": "error", "long": "ok"}
    assert "c" not in calls and "after_long" not in calls
    assert events.index(("step_finished", "b")) < events.index(("step_finished", "long"))
    assert out["status"] == RunStatus.FAILED
    # The agent was asked once, after `long` landed, and saw both results.
    observe_prompt = model.prompts[1][1].content
    assert "did not succeed" in observe_prompt and "[long] wait -> ok" in observe_prompt


async def test_the_join_decides_and_answers_in_one_call():
    plan = Plan(goal="g", steps=[step("a"), step("b", deps=["a"])])
    model = ScriptedChatModel(responses=[
        plan, Decision(action="finish", reason="done", answer="a then b [a][b]")])
    out = await build_graph(model=model, tools=registry()).ainvoke({"task": "t"},
                                                                   context=Context())
    assert out["status"] == RunStatus.COMPLETED
    assert out["final_answer"] == "a then b [a][b]"
    assert len(model.prompts) == 2 and out["usage"].reasoning_calls == 2
    assert "also write `answer`" in model.prompts[1][0].content


async def test_the_join_over_bedrock_costs_two_calls(converse):
    converse.script += [
        tool_input(Plan(goal="g", steps=[step("a")]), fragment=16),
        tool_input(Decision(action="finish", reason="ok", answer="done [a]")),
    ]
    out = await build_graph(tools=registry()).ainvoke(
        {"task": "t"}, context=Context(model=MODEL, bedrock_endpoint_url=converse.url))
    assert out["status"] == RunStatus.COMPLETED and out["final_answer"] == "done [a]"
    assert len(converse.requests) == 2 and converse.invalid == []
    assert converse.operations == ["converse-stream", "converse-stream"]


async def test_steps_start_while_the_plan_is_still_streaming(converse):
    plan = Plan(goal="g", steps=[step("s1", seconds=0.05), step("s2", seconds=0.05),
                                 step("s3", deps=["s1", "s2"], seconds=0.05)])
    converse.script += [
        tool_input(plan, fragment=8, pause=0.02),
        tool_input(Decision(action="finish", reason="ok", answer="done")),
    ]
    graph = build_graph(tools=registry())
    events, out = await events_of(graph, Context(model=MODEL, bedrock_endpoint_url=converse.url))
    assert out["status"] == RunStatus.COMPLETED
    plan_sent = converse.answered_at[0]
    started = {r.step_id: r.started_at.timestamp() for r in out["results"]}
    # Each step started while the plan was still arriving, s3 once s1 and s2 were done.
    assert started["s1"] < started["s2"] < started["s3"] < plan_sent
    assert events.index(("step_finished", "s1")) < events.index(("step_started", "s3"))
    assert events.index(("step_finished", "s2")) < events.index(("step_started", "s3"))


async def test_an_invalid_streamed_plan_cancels_what_it_started(converse, site):
    slow = {"url": f"{site}/slow?seconds=5"}
    invalid = {"goal": "g", "steps": [
        {"id": "s1", "tool": "http_request", "args": slow},
        {"id": "s2", "tool": "http_request", "args": {"url": f"{site}/api/customers/1"}},
        {"id": "s3", "tool": "delete_everything", "args": {}},
        {"id": "s4", "tool": "http_request", "args": slow}]}
    fixed = Plan(goal="g", steps=[Step(id="s1", tool="http_request",
                                       args={"url": f"{site}/api/customers/2"})])
    converse.script += [
        tool_input(invalid, fragment=12, pause=0.02),
        tool_input(fixed),
        tool_input(Decision(action="finish", reason="ok", answer="Initech [s1]")),
    ]
    context = Context(model=MODEL, bedrock_endpoint_url=converse.url,
                      allowed_hosts=[host_of(site)])
    events, out = await events_of(build_graph(), context)
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    outcomes = [(r.step_id, r.status, r.plan_version) for r in out["results"]]
    # s1 started early and was cancelled when s3 showed the plan invalid; s4 never started.
    assert ("s1", "cancelled", 1) in outcomes and ("s3", "rejected", 1) in outcomes
    assert ("s1", "ok", 2) in outcomes and not any(s == "s4" for s, _, _ in outcomes)
    cancelled = next(r for r in out["results"] if r.status == "cancelled")
    assert "invalid step" in cancelled.error.message
    replan = converse.requests[1]["messages"][0]["content"][0]["text"]
    assert "delete_everything" in replan and "cancelled" in replan


async def test_a_streamed_answer_that_is_not_a_plan_cancels_and_the_next_gets_a_new_version(
        converse, site):
    broken = (json.dumps({"goal": "g", "steps": [
        {"id": "s1", "tool": "http_request", "args": {"url": f"{site}/slow?seconds=5"}},
        {"id": "s2", "args": {}}, {"id": "s3", "tool": "http_request"}]}))
    converse.script += [
        tool_input(broken, fragment=12, pause=0.02),
        tool_input(Plan(goal="g", steps=[Step(id="s1", tool="http_request",
                                              args={"url": f"{site}/api/customers/1"})])),
        tool_input(Decision(action="finish", reason="ok", answer="Acme [s1]")),
    ]
    context = Context(model=MODEL, bedrock_endpoint_url=converse.url,
                      allowed_hosts=[host_of(site)])
    out = await build_graph().ainvoke({"task": "t"}, context=context)
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert [(r.step_id, r.status, r.plan_version) for r in out["results"]] == [
        ("s1", "cancelled", 1), ("s1", "ok", 2)]


def _duet(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graph.app.cli", *args], cwd=ROOT,
                            env={**os.environ, "DUET_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


KILL_DAG = """
goal: a DAG killed in the middle
steps:
  - {id: a, tool: http_request, args: {url: "{{ site }}/slow?seconds=0.1"}}
  - {id: b, tool: http_request, depends_on: [a], args: {url: "{{ site }}/slow?seconds=0.1"}}
  - {id: c, tool: http_request, depends_on: [a], args: {url: "{{ site }}/slow?seconds=0.1"}}
  - {id: slow, tool: http_request, args: {url: "{{ site }}/slow?seconds=3"}}
  - {id: d, tool: http_request, depends_on: [b, c, slow], args: {url: "{{ site }}/health"}}
"""


def test_a_dag_killed_mid_run_resumes_without_repeating_a_finished_step(tmp_path, site):
    (tmp_path / "dag.yaml").write_text(KILL_DAG)
    home, trace = tmp_path / "home", tmp_path / "home" / "traces" / "dag.jsonl"
    proc = _duet(home, "run", "dag", "--plan-file", str(tmp_path / "dag.yaml"), "--var",
                 f"site={site}", "--thread", "dag", "--json", "--allow-host", host_of(site))
    deadline = time.monotonic() + 60
    while not {("step_finished", "b"), ("step_finished", "c")} <= {
            (e.event, getattr(e, "step_id", None)) for e in read_trace(trace)}:
        assert time.monotonic() < deadline and proc.poll() is None, "b and c never finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # `slow` is in flight; no checkpoint since the plan
    proc.wait()

    resumed = _duet(home, "resume", "dag", "--json")
    final = json.loads(resumed.communicate(timeout=60)[0])
    assert final["status"] == "completed", final["reason"]
    events = read_trace(trace)
    started = [e.step_id for e in events if e.event == "step_started"]
    assert sorted(started) == ["a", "b", "c", "d", "slow", "slow"]  # only the one in flight
    assert sorted(e.step_id for e in events if e.event == "step_replayed") == ["a", "b", "c"]
    assert sorted(r["step_id"] for r in final["results"]) == ["a", "b", "c", "d", "slow"]
