"""Build the plan-and-execute graph. `graph` is the default compiled graph for langgraph.json."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Checkpointer

from graph.context import Context
from graph.nodes import act, approve, finalize, observe, plan, retry, review, summarize
from graph.nodes.base import NodeDeps
from graph.reasoning import Reasoner
from graph.routing import (
    route_after_act,
    route_after_observe,
    route_after_plan,
    route_after_retry,
    route_after_review,
    route_after_summarize,
    route_start,
)
from graph.state import InputState, OutputState, State
from tools import default_registry
from tools.registry import ToolRegistry


def build_graph(
    *,
    model: BaseChatModel | str | Reasoner | None = None,
    tools: ToolRegistry | None = None,
    checkpointer: Checkpointer = None,
    store: BaseStore | None = None,
    name: str = "nova-duet",
) -> Any:
    """Compile the graph.

    Args:
        model: the reasoning model: a LangChain chat model, an `init_chat_model` string or
            a Bedrock model id. None uses `Context.model` (Nova 2 Lite) at run time.
            A `plan_file` in the run context selects the offline planner instead.
        tools: the tool registry; the default holds the built-in executors.
        checkpointer: where runs are saved so they can resume (None: not saved).
        store: holds the step ledger (`graph.runtime.ledger`), so a killed run resumes without
            running a finished step again; None keeps no ledger (a LangGraph server
            passes its own store).
        name: the graph's name in traces and Studio.
    """
    deps = NodeDeps(registry=tools if tools is not None else default_registry(), model=model)

    async def plan_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await plan.plan(state, runtime, deps)

    async def retry_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await retry.retry(state, runtime, deps)

    async def review_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await review.review(state, runtime, deps)

    async def approve_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await approve.approve(state, runtime, deps)

    async def act_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await act.act(state, runtime, deps)

    async def observe_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await observe.observe(state, runtime, deps)

    async def summarize_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await summarize.summarize(state, runtime, deps)

    async def finalize_node(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        return await finalize.finalize(state, runtime, deps)

    builder = StateGraph(
        State, context_schema=Context, input_schema=InputState, output_schema=OutputState
    )
    builder.add_node("plan", plan_node)
    builder.add_node("retry", retry_node)
    builder.add_node("review", review_node)
    builder.add_node("approve", approve_node)
    builder.add_node("act", act_node)
    builder.add_node("observe", observe_node)
    builder.add_node("summarize", summarize_node)
    builder.add_node("finalize", finalize_node)
    builder.add_conditional_edges(START, route_start, ["retry", "plan"])
    builder.add_conditional_edges("retry", route_after_retry, ["act", "plan", "review", END])
    builder.add_conditional_edges("plan", route_after_plan, ["plan", "summarize", "review",
                                                             "approve", "observe", "finalize"])
    builder.add_conditional_edges("review", route_after_review, ["act", "plan", "finalize"])
    builder.add_conditional_edges("act", route_after_act, ["approve", "observe", "finalize"])
    builder.add_edge("approve", "act")
    builder.add_conditional_edges("observe", route_after_observe,
                                  ["act", "plan", "summarize", "finalize"])
    builder.add_conditional_edges("summarize", route_after_summarize,
                                  ["act", "plan", "finalize"])
    builder.add_edge("finalize", END)
    return builder.compile(checkpointer=checkpointer, store=store, name=name)


graph = build_graph()
