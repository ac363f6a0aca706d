"""`act`: run the plan's steps, each as soon as its own dependencies have succeeded.

The scheduler (`graph.runtime.scheduler`) runs them concurrently and returns when no further step
can start: the plan finished, a step failed or needs judgment, a budget ran out, or only
steps waiting for a human's approval are left.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.nodes.base import NodeDeps, cost_budget, load_auth, record_results, runtime_context
from graph.state import State


async def act(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Start the approved held steps and every step that is ready, until none can start.

    Not wrapped in `never_raises`: a tool's failure is already a result, and what escapes
    is storage failing, which the runner reports with how to resume.
    """
    plan = state["plan"]
    assert plan is not None, "act runs a plan"
    auth = await load_auth(runtime_context(runtime))
    async with deps.scheduler(runtime, state, plan_version=state["plan_version"],
                              cost=cost_budget(runtime, state), auth=auth) as scheduler:
        outcome = await scheduler.run(plan, state.get("escalations"))
    return await record_results(runtime, outcome.results) | {
        "plan_results": {r.step_id: r for r in outcome.results},
        "unseen": [r.step_id for r in outcome.results], "pending_steps": outcome.held,
        **(outcome.stop.as_update() if outcome.stop else {})}
