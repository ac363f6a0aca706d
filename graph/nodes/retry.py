"""`retry`: continue a run that ended `failed` or `budget_exhausted`, once the cause is fixed.

The input `{"retry": True}` on the run's thread (`duet retry`, `retry_thread`, a client of a
LangGraph server) starts here. The last plan's steps that succeeded stay as they are: their
results are kept and they are never sent again. The others run again under the rules of a
resume: their ledger entries are set aside (`StepLedger.set_aside`), so each runs anew with
the same idempotency key; a step that changes things, whose tool takes no key and is not
idempotent, and that ran and failed may have taken effect, so it waits for a human (an
escalation: even `approval: auto` asks) instead of being repeated silently. One that failed
before any attempt reached its tool (`StepResult.not_sent`: its server refused) runs again.

A run of a plan file (offline planner mode) reads its file again: once the file is fixed,
the retry runs its plan, keeping only the results of the steps the file still holds
unchanged that succeeded; a self-healing replay whose model replanned keeps the model's plan.

Budgets: steps, tool calls, tokens and replans count over the whole run, retries included,
so a run that spent one continues only once it is raised (`duet retry --set max_steps=...`);
the deadline and the stalled-replan count start again with each retry.
"""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.contracts import Plan, StepResult
from graph.events import RunRetried, emit, writer_of
from graph.nodes.base import NodeDeps, never_raises, runtime_context
from graph.reasoning import PlanFileReasoner
from graph.runtime.execution import store_of, thread_of
from graph.runtime.ledger import StepLedger
from graph.runtime.progress import ReferenceProblem, resolve_args
from graph.state import RETRYABLE, State

# Step statuses of a tool that was called: its effect may have happened.
CALLED = {"error", "timeout", "cancelled"}


def uncertain_writes(state: State, failed: list[StepResult], deps: NodeDeps) -> dict[str, str]:
    """The failed steps whose effect may have happened and that cannot safely run again
    (they change things; their tool takes no idempotency key and is not idempotent),
    with why each needs a human."""
    plan, kept = state["plan"], state.get("plan_results", {})
    assert plan is not None, "only a run with a plan has failed steps"
    steps = {step.id: step for step in plan.steps}
    uncertain = {}
    for result in failed:
        step = steps.get(result.step_id)
        if step is None or result.status not in CALLED or result.not_sent:
            continue
        entry = deps.registry.get(step.tool) if step.tool in deps.registry else None
        try:
            args = resolve_args(step.args, kept)
        except ReferenceProblem:
            args = step.args
        writes = step.side_effects or entry is None or entry.changes_things(args)
        if writes and not (entry is not None and entry.safe_to_repeat):
            error = result.error.type if result.error else result.status
            uncertain[step.id] = (
                f"retried after it failed ({error}): it may have taken effect before it "
                "failed, and its tool takes no idempotency key, so it is not repeated "
                "without you; check its effect (read it back) before you approve")
    return uncertain


@never_raises("retry")
async def retry(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Set the run up to continue: status cleared, failed steps of the last plan made to run
    again (see the module's docstring). A run that did not end so is left as it is, and so
    is one where this fails (it ends `failed` with why)."""
    status = state.get("status")
    if status not in RETRYABLE:
        return {"retry": False}
    retries = state.get("retries", 0) + 1
    done = state.get("plan_results", {})
    plan, context = state.get("plan"), runtime_context(runtime)
    # A self-healing replay that replanned goes on with the model's plan, not the file's.
    healed = context.self_healing and state.get("replans", 0) > 0
    fresh = None if healed else _plan_file(context)
    kept = {step_id: r for step_id, r in done.items() if r.status == "ok"
            and (fresh is None or plan is None or _unchanged(step_id, plan, fresh))}
    failed = [r for r in done.values() if r.status != "ok"]
    uncertain = uncertain_writes(state, failed, deps) if plan else {}
    update: dict[str, Any] = {
        "retry": False, "retries": retries, "status": None, "reason": "", "decision": None,
        "model_failure": "",
        "final_answer": None, "started_at": time.time(), "stalled_replans": 0,
        "unseen": Overwrite([]), "pending_steps": [], "plan_results": Overwrite(kept),
        "escalations": {**(state.get("escalations") or {}), **uncertain},
    }
    if fresh is not None and plan is not None:
        # A plan file changed since its plan was reviewed: the new one is reviewed too.
        update["awaiting_review"] = (runtime_context(runtime).review_plan
                                     and fresh.fingerprint() != plan.fingerprint())
        update["plan"] = plan = fresh
    if (store := store_of(runtime)) is not None:
        # `finalize` wrote the whole list; until the retry ends, the ledger holds them.
        update["results"] = Overwrite([])
        if failed:
            await StepLedger(store, thread_of(runtime)).set_aside(
                state["plan_version"], {r.step_id for r in failed}, retries)
    again = [step.id for step in plan.steps if step.id not in kept] if plan else []
    emit(writer_of(runtime), RunRetried(
        retry=retries, after=str(status), reason=state.get("reason", ""), again=again,
        kept=sorted(kept), uncertain=sorted(uncertain)))
    return update


def _plan_file(context: Context) -> Plan | None:
    """The plan of the run's plan file as it is now (offline planner mode), or None."""
    replay = PlanFileReasoner.of(context)
    return replay.load_plan() if replay is not None else None


def _unchanged(step_id: str, old: Plan, new: Plan) -> bool:
    """Whether step `step_id` is the same step in both plans (tool, arguments, wiring)."""
    before = next((s for s in old.steps if s.id == step_id), None)
    after = next((s for s in new.steps if s.id == step_id), None)
    return before is not None and after is not None and (
        before.tool, before.args, before.depends_on) == (after.tool, after.args,
                                                          after.depends_on)
