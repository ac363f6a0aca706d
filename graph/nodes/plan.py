"""`plan`: the reasoning agent writes a plan, checked against the registry.

The plan node asks for a plan (or a new one after `replan`, or after a person rejected the
last one), checks it and the guards, and hands it to the step runtime: its steps start
while the planner is still writing it (`graph.runtime.early.EarlyStart`), and once the plan
is whole and valid the scheduler runs it until the reasoning agent has something to decide.
Under `review_plan` nothing starts: the whole, valid plan waits for a person (`review`).
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.contracts import Decision, RunStatus, StepResult, StepTally, Usage
from graph.guards import budget_stop, remember_plan, repeated_plan, replan_stop
from graph.nodes.base import (
    NodeDeps,
    cost_budget,
    load_auth,
    never_raises,
    plan_escalations,
    reasoning_failed,
    record_results,
    runtime_context,
)
from graph.reasoning import ReasoningError
from graph.runtime.early import EarlyStart, refuse_invalid_steps
from graph.runtime.progress import results_of_plan
from graph.runtime.scheduler import Scheduler
from graph.runtime.secrets import SecretRules, planner_tools
from graph.runtime.taint import trusted_text, untrusted_text
from graph.state import State


@never_raises("plan")
async def plan(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Ask for a plan (or a new one after `replan` or a rejected review), starting its
    steps as they arrive; validate it; run it until there is something to decide, or
    (`review_plan`) leave it, unstarted, for a person's review."""
    context = runtime_context(runtime)
    budgets = context.budgets
    started_at = state.get("started_at") or time.time()
    previous = state.get("plan")
    replans = state.get("replans", 0) + (1 if previous else 0)
    tally = state.get("tally", StepTally())
    stalled = (state.get("stalled_replans", 0) + 1
               if previous and tally.ok == state.get("ok_at_last_plan", 0) else 0)
    recent = state.get("recent", [])
    update: dict[str, Any] = {
        "started_at": started_at, "replans": replans, "stalled_replans": stalled,
        "ok_at_last_plan": tally.ok, "decision": None, "pending_steps": [],
        "unseen": Overwrite([]), "review_feedback": "",
    }
    usage = state.get("usage") or Usage()
    stop = budget_stop(tally=tally, usage=usage, started_at=started_at, budgets=budgets)
    if previous and not stop:
        stop = replan_stop(replans=replans, stalled_replans=stalled, budgets=budgets)
    if stop:
        return update | stop.as_update()

    # The plan call and the steps that start while it streams spend from one budget.
    cost = cost_budget(runtime, state)
    auth = await load_auth(context)

    def make(version: int, discarded: list[StepResult]) -> Scheduler:
        return deps.scheduler(runtime, {**state, "started_at": started_at},
                              plan_version=version, cost=cost, auth=auth, extra=discarded)

    # What the planner read: a value it copies from tool output is in one of these.
    untrusted = untrusted_text(recent, state.get("summary", ""))
    secrets = SecretRules.of(auth, untrusted, trusted_text(
        state["task"], context.plan_variables, state.get("first_plan")))
    async with EarlyStart(make, state.get("plan_version", 0) + 1, deps.registry,
                          secrets) as early:
        try:
            reply = await deps.reasoner(runtime, previous, cost).plan(
                task=state["task"], tools=planner_tools(deps.registry, auth),
                summary=state.get("summary", ""), results=recent,
                previous_plan=previous, review_feedback=state.get("review_feedback", ""),
                max_attempts=context.max_plan_attempts,
                # Under review nothing may start before a person has seen the whole plan.
                on_steps=None if context.review_plan else early.on_steps,
            )
        except ReasoningError as exc:
            await early.cancel("no valid plan came")
            return update | reasoning_failed(exc) | await record_results(
                runtime, early.results(), exc.usage)

        new_plan, version = reply.value, early.version
        fingerprint = new_plan.fingerprint()
        seen = state.get("plan_fingerprints", [])
        update |= {"plan": new_plan, "plan_version": version, "usage": reply.usage,
                   "plan_fingerprints": remember_plan(fingerprint, seen)}
        stop = repeated_plan(fingerprint, seen) or budget_stop(
            tally=tally, usage=usage + reply.usage, started_at=started_at, budgets=budgets)
        if stop:
            await early.cancel(f"the run stopped: {stop.reason}")
            return update | stop.as_update() | await record_results(
                runtime, early.results(), reply.usage)

        refused = refuse_invalid_steps(new_plan, deps.registry, version, secrets)
        if refused:
            # Nothing more of a plan with an invalid step runs: the planner fixes it first.
            await early.cancel("the plan has invalid steps")
            ids = [r.step_id for r in refused]
            started = early.results()
            return update | await record_results(runtime, started + refused, reply.usage) | {
                "plan_results": Overwrite(results_of_plan(started + refused, version)),
                "decision": Decision(action="replan", reason=f"steps {ids} were rejected"),
            }
        if not new_plan.steps:
            return update | {"status": RunStatus.COMPLETED, "reason": "the plan needs no tool",
                             "plan_results": Overwrite({})}
        first_plan = state.get("first_plan") or new_plan
        escalated = plan_escalations(state, context, new_plan, first_plan)
        update |= {"first_plan": first_plan, "escalations": escalated}
        if context.review_plan:
            return update | {"awaiting_review": True, "plan_results": Overwrite({})}
        outcome = await early.run(new_plan, escalated)
    # Results of discarded attempts belong to no plan the agent must judge now.
    return update | await record_results(runtime, early.discarded + outcome.results,
                                         reply.usage) | {
        "plan_results": Overwrite(results_of_plan(outcome.results, version)),
        "unseen": Overwrite([r.step_id for r in outcome.results]),
        "pending_steps": outcome.held, **(outcome.stop.as_update() if outcome.stop else {})}
