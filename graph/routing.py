"""Conditional edges. Each router is small, pure, and reads only the state and the context.

The runtime is optional: `update_state` (Studio's state editor, time travel) runs routers
without one, and the context's defaults apply then.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.base import runtime_context
from graph.nodes.summarize import needs_summary
from graph.runtime.progress import decision_trigger
from graph.state import State

Move = Literal["plan", "review", "act", "summarize", "approve", "observe", "finalize"]


def route_start(state: State) -> Literal["retry", "plan"]:
    """At the start: `retry` for the input `{"retry": True}`, else `plan` (a new run)."""
    return "retry" if state.get("retry") else "plan"


def route_after_retry(state: State) -> Literal["act", "plan", "review", "__end__"]:
    """After `retry`: `act` runs the last plan's steps that did not succeed, `plan` a run
    that ended before it had one; `review` when its plan waits for a person (a run that
    waited for review, or a retried plan file that changed); the end when the run was not
    one to retry (the node left it as it was)."""
    if state.get("status"):
        return "__end__"
    if state.get("awaiting_review"):
        return "review"
    return "act" if state.get("plan") else "plan"


def _answered(state: State) -> bool:
    """True when the run has ended and its answer is already written (by the join)."""
    decision = state.get("decision")
    return bool(state.get("status") and decision is not None and decision.answer)


def _after_steps(state: State) -> Literal["approve", "observe", "finalize"]:
    """Once the scheduler stopped: `approve` when only held steps wait, else `observe`."""
    if state.get("status"):
        return "finalize"
    done = state.get("plan_results", {})
    waiting = any(not task["approved"] for task in state.get("pending_steps") or [])
    plan = state.get("plan")
    trigger = plan and decision_trigger(plan, [done[i] for i in state.get("unseen", [])], done)
    return "approve" if waiting and not trigger else "observe"


def _next(state: State) -> Move:
    """Where a run goes once the reasoning agent decided and the history is small enough."""
    if state.get("status"):
        return "finalize"
    decision = state.get("decision")
    if decision is not None and decision.action == "replan":
        return "plan"
    return "act"


def route_after_plan(state: State, runtime: Runtime[Context] | None = None) -> Move:
    """After `plan` (which starts the plan's steps): `plan` again if steps were rejected
    (`summarize` first if the history outgrew the threshold); `finalize` when the run
    ended; `review` when the plan waits for a person; otherwise as after `act`."""
    decision = state.get("decision")
    if decision is not None and decision.action == "replan" and not state.get("status"):
        return "summarize" if needs_summary(state, runtime_context(runtime)) else "plan"
    if state.get("awaiting_review") and not state.get("status"):
        return "review"
    return _after_steps(state)


def route_after_review(state: State) -> Literal["act", "plan", "finalize"]:
    """After `review`: `plan` when the person rejected the plan (the planner reads why),
    `act` to run the approved or edited plan; `finalize` when the review failed."""
    if state.get("status"):
        return "finalize"
    return "plan" if state.get("review_feedback") else "act"


def route_after_act(state: State) -> Literal["approve", "observe", "finalize"]:
    """After `act`: `approve` when only steps waiting for approval are left, else `observe`
    (something failed, needs judgment or finished, or a budget ran out)."""
    return _after_steps(state)


def route_after_observe(state: State, runtime: Runtime[Context] | None = None) -> Move:
    """After `observe`: `finalize` when the join wrote the answer; `summarize` when the
    history passed the threshold; else `finalize`, `plan` (replan) or `act` (continue)."""
    if _answered(state):
        return "finalize"
    if needs_summary(state, runtime_context(runtime)):
        return "summarize"
    return _next(state)


def route_after_summarize(state: State) -> Move:
    """After `summarize`: continue, replan, or the end."""
    return _next(state)
