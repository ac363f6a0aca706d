"""The story of issue 21: a plain LangChain tool registered with no declaration is treated
as one that changes things: it asks first, `deny` refuses it, and it never starts while the
plan is still streaming (the plan arrives over the Bedrock ConverseStream wire)."""

from __future__ import annotations

from langchain_core.tools import tool

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.runner import run_thread
from graph.events import Event
from tests.fixtures.converse import tool_input
from tools import ToolRegistry

MODEL = "us.amazon.nova-2-lite-v1:0"
sent: list[str] = []


@tool
async def send_email(to: str, body: str) -> str:
    """Send an email."""
    sent.append(to)
    return f"sent to {to}"


@tool
async def look(what: str) -> str:
    """Read something."""
    return what


# `mail` depends on nothing: were it read-only, it would start as soon as it streamed in.
PLAN = Plan(goal="g", steps=[Step(id="read", tool="look", args={"what": "inbox"}),
                             Step(id="mail", tool="send_email",
                                  args={"to": "a@example.com", "body": "hi"})])


def tools() -> ToolRegistry:
    sent.clear()
    registry = ToolRegistry([look], read_only=True)
    registry.register(send_email)  # as a new user would: no declaration
    return registry


async def run(converse, approval: str, *replies) -> tuple:
    converse.script += [tool_input(PLAN, fragment=8, pause=0.02), *map(tool_input, replies)]
    events: list[Event] = []
    _, final = await run_thread("mail them", tools=tools(), on_event=events.append,
                                context=Context(model=MODEL, bedrock_endpoint_url=converse.url,
                                                approval=approval))
    return final, events, {r.step_id: r for r in final.results}


async def test_an_undeclared_tool_asks_first_and_did_not_run(converse):
    final, events, results = await run(converse, "ask")
    assert final.status == RunStatus.NEEDS_APPROVAL
    assert sent == [] and set(results) == {"read"}
    [asked] = [e.steps for e in events if e.event == "approval_requested"]
    assert [s["tool"] for s in asked] == ["send_email"]


async def test_deny_refuses_an_undeclared_tool(converse):
    final, _, results = await run(converse, "deny",
                                  Decision(action="finish", reason="refused", answer="no"))
    assert sent == []
    assert results["mail"].status == "rejected" and results["mail"].error.type == "NotApproved"


async def test_an_undeclared_tool_never_starts_while_the_plan_streams(converse):
    final, _, results = await run(converse, "auto",
                                  Decision(action="finish", reason="ok", answer="sent [mail]"))
    assert final.status == RunStatus.COMPLETED and sent == ["a@example.com"]
    plan_sent = converse.answered_at[0]
    assert results["read"].started_at.timestamp() < plan_sent  # the read started early
    assert results["mail"].started_at.timestamp() > plan_sent  # the write waited for it all
