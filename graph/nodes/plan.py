"""`plan`: the reasoning agent writes a plan; the registry checks every step before any runs."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, StepResult, Usage
from graph.guards import budget_stop, repeated_plan, replan_stop
from graph.nodes.base import NodeDeps, never_raises, next_wave, runtime_context
from graph.progress import check_references, references_in
from graph.reasoning import ReasoningError
from graph.state import State
from tools.registry import StepRefused, ToolRegistry


def refuse_invalid_steps(plan: Plan, registry: ToolRegistry, version: int) -> list[StepResult]:
    """A `rejected` result for each step naming an unknown tool, bad arguments or references."""
    refused = []
    for step in plan.steps:
        try:
            deferred = frozenset(key for key, value in step.args.items() if references_in(value))
            registry.check(step.tool, step.args, deferred)
            problem = check_references(step)
            if problem:
                raise StepRefused("InvalidReference", problem)
        except StepRefused as exc:
            refused.append(StepResult.rejected(step, version, exc.type_name, str(exc)))
    return refused


def _ok_count(state: State) -> int:
    return sum(1 for r in state.get("results", []) if r.status == "ok")


@never_raises("plan")
async def plan(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Ask for a plan (or a new one after `replan`), validate it, and queue its first wave."""
    context = runtime_context(runtime)
    started_at = state.get("started_at") or time.time()
    previous = state.get("plan")
    replans = state.get("replans", 0) + (1 if previous else 0)
    ok_now = _ok_count(state)
    stalled = (state.get("stalled_replans", 0) + 1
               if previous and ok_now == state.get("ok_at_last_plan", 0) else 0)
    update: dict[str, Any] = {
        "started_at": started_at, "replans": replans, "stalled_replans": stalled,
        "ok_at_last_plan": ok_now, "decision": None, "next_steps": [],
    }
    results = state.get("results", [])
    stop = budget_stop(results=results, usage=state.get("usage", Usage()),
                       started_at=started_at, context=context)
    if previous and not stop:
        stop = replan_stop(replans=replans, stalled_replans=stalled, context=context)
    if stop:
        return update | {"status": stop[0], "reason": stop[1]}

    try:
        reply = await deps.reasoner(context).plan(
            task=state["task"], tools=deps.registry.describe(), summary=state.get("summary", ""),
            results=results[state.get("summarized_count", 0):], previous_plan=previous,
            max_attempts=context.max_plan_attempts,
        )
    except ReasoningError as exc:
        return update | {"status": RunStatus.FAILED, "reason": str(exc), "usage": exc.usage}

    new_plan, version = reply.value, state.get("plan_version", 0) + 1
    fingerprint = new_plan.fingerprint()
    seen = state.get("plan_fingerprints", [])
    update |= {"plan": new_plan, "plan_version": version, "usage": reply.usage,
               "plan_fingerprints": [*seen, fingerprint], "observed_count": len(results)}
    if stop := repeated_plan(fingerprint, seen):
        return update | {"status": stop[0], "reason": stop[1]}

    refused = refuse_invalid_steps(new_plan, deps.registry, version)
    if refused:
        # Nothing of a plan with an invalid step runs: the planner fixes it first.
        ids = [r.step_id for r in refused]
        return update | {
            "results": refused, "observed_count": len(results) + len(refused),
            "decision": Decision(action="replan", reason=f"steps {ids} were rejected"),
        }
    if not new_plan.steps:
        return update | {"status": RunStatus.COMPLETED, "reason": "the plan needs no tool"}
    return update | {"next_steps": next_wave(new_plan, version, results, context, deps)}
