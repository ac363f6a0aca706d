"""`observe`: read a wave's results; ask the reasoning agent only when there is a decision."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, StepResult, Usage
from graph.guards import budget_stop
from graph.nodes.base import NodeDeps, never_raises, next_wave, runtime_context
from graph.progress import plan_finished, plan_succeeded, results_of_plan
from graph.reasoning import ReasoningError
from graph.state import State


def decision_trigger(plan: Plan, new: list[StepResult], done: dict[str, StepResult]) -> str | None:
    """Why the reasoning agent must look now, or None for routine progress.

    It must look when a step did not succeed, when the plan is finished, or when a
    finished step is marked `needs_judgment`. Anything else costs no reasoning call.
    """
    failed = [r.step_id for r in new if r.status != "ok"]
    if failed:
        return f"steps {failed} did not succeed"
    if plan_finished(plan, done):
        return "the plan finished"
    judged = {s.id for s in plan.steps if s.needs_judgment}
    to_judge = [r.step_id for r in new if r.step_id in judged]
    if to_judge:
        return f"steps {to_judge} need your judgment before the plan goes on"
    return None


def end_status(plan: Plan, done: dict[str, StepResult]) -> RunStatus:
    """`completed` when every step of the final plan succeeded, else `failed`."""
    return RunStatus.COMPLETED if plan_succeeded(plan, done) else RunStatus.FAILED


@never_raises("observe")
async def observe(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Join a wave: check budgets, decide (if needed), and queue the next wave."""
    context = runtime_context(runtime)
    results = state.get("results", [])
    plan, version = state["plan"], state["plan_version"]
    new = results[state.get("observed_count", 0):]
    done = results_of_plan(results, version)
    update: dict[str, Any] = {"observed_count": len(results), "next_steps": [], "decision": None}

    stop = budget_stop(results=results, usage=state.get("usage", Usage()),
                       started_at=state["started_at"], context=context)
    if stop and not plan_finished(plan, done):
        return update | {"status": stop[0], "reason": stop[1]}

    trigger = decision_trigger(plan, new, done)
    if trigger is None:
        return update | {"next_steps": next_wave(plan, version, results, context, deps)}

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
    if decision.action == "continue":
        wave = next_wave(plan, version, results, context, deps)
        if not wave:
            return update | {"status": end_status(plan, done),
                             "reason": f"nothing left to run: {decision.reason}"}
        return update | {"next_steps": wave}
    return update
