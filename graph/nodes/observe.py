"""`observe`: read what the scheduler left; ask the reasoning agent only when there is a
decision. When the plan has finished, that one call is the join: it decides and, when it
finishes the run, writes the answer too (`Decision.answer`)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, StepResult, Usage
from graph.guards import budget_stop, tokens_spent
from graph.nodes.base import NodeDeps, never_raises, runtime_context
from graph.progress import decision_trigger, plan_finished, plan_succeeded, results_of_plan
from graph.reasoning import ReasoningError
from graph.state import State


def end_status(plan: Plan, done: dict[str, StepResult]) -> RunStatus:
    """`completed` when every step of the final plan succeeded, else `failed`."""
    return RunStatus.COMPLETED if plan_succeeded(plan, done) else RunStatus.FAILED


@never_raises("observe")
async def observe(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Check budgets, then decide: continue, replan, or finish (with the answer)."""
    context = runtime_context(runtime)
    results = state.get("results", [])
    plan, version = state["plan"], state["plan_version"]
    new = results[state.get("observed_count", 0):]
    done = results_of_plan(results, version)
    update: dict[str, Any] = {"observed_count": len(results), "decision": None}

    usage = state.get("usage") or Usage()
    stop = budget_stop(results=results, usage=usage, started_at=state["started_at"],
                       context=context)
    if stop and not plan_finished(plan, done):
        return update | {"status": stop[0], "reason": stop[1]}
    if tokens_spent(usage, context):
        # The plan finished, but no reasoning call fits: finalize writes the template.
        return update | {"status": end_status(plan, done), "reason": stop[1] if stop else ""}

    trigger = decision_trigger(plan, new, done)
    if trigger is None:
        # Nothing failed, finished or waits for judgment, and the scheduler could start
        # nothing more: the steps left depend on steps that did not succeed.
        return update | {"status": end_status(plan, done), "reason": "nothing left to run"}

    try:
        reply = await deps.reasoner(context).observe(
            task=state["task"], plan=plan, summary=state.get("summary", ""),
            results=results[state.get("summarized_count", 0):], trigger=trigger,
        )
    except ReasoningError as exc:
        return update | {"status": RunStatus.FAILED, "reason": str(exc), "usage": exc.usage}
    decision: Decision = reply.value
    update |= {"decision": decision, "usage": reply.usage}
    if decision.action == "finish":
        return update | {"status": end_status(plan, done), "reason": decision.reason}
    return update
