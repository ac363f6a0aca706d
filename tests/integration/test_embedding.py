"""nova-duet inside other LangChain apps: as a subgraph node, and as another agent's tool."""

from __future__ import annotations

from typing import TypedDict

from langchain.agents import create_agent
from langgraph.graph import END, START, StateGraph

from graph import Context, Decision, Plan, RunStatus, Step, as_tool, build_graph
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import host_of


def _duet(site: str, answer: str):
    plan = Plan(goal="read", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/customers/4"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), answer])
    return build_graph(model=model)


class Parent(TypedDict, total=False):
    """A parent graph's state that shares the subgraph's keys (task in, status/answer out)."""

    task: str
    status: str
    final_answer: str | None
    report: str


async def test_as_a_subgraph_node_with_shared_keys(site):
    def write_report(state: Parent) -> dict:
        return {"report": f"[{state['status']}] {state['final_answer']}"}

    parent = StateGraph(Parent, context_schema=Context)
    parent.add_node("duet", _duet(site, "Umbrella [s1]"))
    parent.add_node("report", write_report)
    parent.add_edge(START, "duet")
    parent.add_edge("duet", "report")
    parent.add_edge("report", END)
    out = await parent.compile().ainvoke({"task": "who is customer 4?"},
                                         context=Context(allowed_hosts=[host_of(site)]))
    assert out["report"] == "[completed] Umbrella [s1]"


async def test_as_a_tool_of_another_agent(site):
    tool = as_tool(_duet(site, "Customer 4 is Umbrella [s1]."),
                   context=Context(allowed_hosts=[host_of(site)]))
    outer = ScriptedChatModel(responses=[
        {"name": "nova_duet", "args": {"task": "Who is customer 4 in the CRM?"}},
        "The CRM says customer 4 is Umbrella."])
    agent = create_agent(outer, tools=[tool])
    out = await agent.ainvoke({"messages": [("user", "Who is customer 4?")]})
    tool_message = out["messages"][2]
    assert "Umbrella" in tool_message.content
    assert out["messages"][-1].content == "The CRM says customer 4 is Umbrella."
    assert RunStatus.COMPLETED.value in tool_message.content
