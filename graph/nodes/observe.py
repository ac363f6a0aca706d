"""`observe`: read what the scheduler left; ask the reasoning agent only when there is a
decision. When the plan has finished, that one call is the join: it decides and, when it
finishes the run, writes the answer too (`Decision.answer`)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, StepResult, StepTally, Usage
from graph.guards import budget_stop, tokens_spent
from graph.nodes.base import (
    NodeDeps,
    cost_budget,
    never_raises,
    reasoning_failed,
    runtime_context,
)
from graph.reasoning import ReasoningError
from graph.runtime.progress import decision_trigger, plan_finished, plan_succeeded
from graph.state import State


def end_status(plan: Plan, done: dict[str, StepResult]) -> RunStatus:
    """`completed` when every step of the final plan succeeded, else `failed`."""
    return RunStatus.COMPLETED if plan_succeeded(plan, done) else RunStatus.FAILED


@never_raises("observe")
async def observe(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Check budgets, then decide: continue, replan, or finish (with the answer)."""
    context = runtime_context(runtime)
    budgets = context.budgets
    plan, done = state["plan"], state.get("plan_results", {})
    assert plan is not None, "observe follows a plan"
    new = [done[step_id] for step_id in state.get("unseen", [])]
    update: dict[str, Any] = {"unseen": Overwrite([]), "decision": None}

    usage = state.get("usage") or Usage()
    stop = budget_stop(tally=state.get("tally", StepTally()), usage=usage,
                       started_at=state["started_at"], budgets=budgets)
    if stop and not plan_finished(plan, done):
        return update | stop.as_update()
    if tokens_spent(usage, budgets):
        # The plan finished, but no reasoning call fits: finalize writes the template.
        return update | {"status": end_status(plan, done),
                         "reason": stop.reason if stop else ""}

    trigger = decision_trigger(plan, new, done)
    if trigger is None:
        # Nothing failed, finished or waits for judgment, and the scheduler could start
        # nothing more: the steps left depend on steps that did not succeed.
        return update | {"status": end_status(plan, done), "reason": "nothing left to run"}

    try:
        reply = await deps.reasoner(runtime, plan, cost_budget(runtime, state)).observe(
            task=state["task"], plan=plan, summary=state.get("summary", ""),
            results=state.get("recent", []), trigger=trigger,
        )
    except ReasoningError as exc:
        return update | reasoning_failed(exc)
    decision: Decision = reply.value
    update |= {"decision": decision, "usage": reply.usage}
    if decision.action == "finish":
        return update | {"status": end_status(plan, done), "reason": decision.reason}
    return update
