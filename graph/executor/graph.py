"""The executor deployment's graph (`nova-duet-executor`), for LangGraph Studio and for
clients that want runs: one run executes one attempt of one step (`request`: a
`StepRequest`; `reply`: a `StepAttempt`) or ends a caller's run (`close_thread`: its named
browser sessions close). Planners use the step route beside it (`app.py`), which skips the
run queue; both run the same `StepService`, so they share its browsers and sessions.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from graph.contracts import EXECUTOR_GRAPH_ID, StepRequest
from graph.executor.service import StepService, default_service


class ExecutorState(TypedDict, total=False):
    """A run's input (`request`, or `close_thread`) and its output (`reply`)."""

    request: dict[str, Any]  # a StepRequest
    close_thread: str  # the caller's thread whose run ended
    reply: dict[str, Any]  # a StepAttempt, or {"closed": thread}


def build_executor_graph(service: StepService | None = None) -> Any:
    """The executor graph over `service` (the deployment's `default_service()` by default)."""
    steps = service or default_service()

    async def execute(state: ExecutorState) -> dict[str, Any]:
        if thread := state.get("close_thread"):
            await steps.end_thread(thread)
            return {"reply": {"closed": thread}}
        attempt = await steps.attempt(StepRequest.model_validate(state["request"]))
        return {"reply": attempt.model_dump(mode="json")}

    builder = StateGraph(ExecutorState)
    builder.add_node("execute", execute)
    builder.add_edge(START, "execute")
    builder.add_edge("execute", END)
    return builder.compile(name=EXECUTOR_GRAPH_ID)


graph = build_executor_graph()  # what `langgraph.json` serves as `nova-duet-executor`

__all__ = ["build_executor_graph", "graph"]
