"""`finalize`: write the answer, citing step ids; an honest partial answer after a guard stop.

When the join call already wrote the answer (`Decision.answer`), it is used as is: the
happy path costs two reasoning calls, the plan and the join.

It also puts every result of the run into the state's `results`, read from the step ledger:
once, at the end, so a finished run's state (what `invoke` returns, what Studio shows)
holds them all while no checkpoint before it does."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.contracts import RunStatus, Usage
from graph.guards import tokens_spent
from graph.nodes.base import NodeDeps, cost_budget, runtime_context
from graph.reasoning import ReasoningError, templated_answer
from graph.runtime.execution import store_of, thread_of
from graph.runtime.ledger import StepLedger
from graph.state import State


async def finalize(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Set the final status (if no earlier node did) and write `final_answer`."""
    context = runtime_context(runtime)
    status = RunStatus(state.get("status") or RunStatus.COMPLETED)
    reason = state.get("reason", "")
    usage = state.get("usage", Usage())
    arguments: dict[str, Any] = {"task": state["task"], "status": status.value, "reason": reason,
                 "summary": state.get("summary", ""),
                 "results": state.get("recent", [])}
    ended: dict[str, Any] = {"status": status, "reason": reason, "pending_steps": []}
    thread_id = thread_of(runtime)
    if context.executor_url:
        from graph.runtime.remote import remote_executor  # only runs that use one load it

        await remote_executor(context.executor_url).end_thread(thread_id)
    else:
        await deps.registry.end_scope(thread_id)  # its named browser sessions close
    if (store := store_of(runtime)) is not None:
        ended["results"] = Overwrite(await StepLedger(store, thread_id).results())
    decision = state.get("decision")
    if decision is not None and decision.action == "finish" and decision.answer:
        return ended | {"final_answer": decision.answer}
    try:
        if tokens_spent(usage, context.budgets):
            raise ReasoningError("the token budget is spent, so the model was not asked")
        if failure := state.get("model_failure"):
            raise ReasoningError(failure)
        reply = await deps.reasoner(runtime, state.get("plan"),
                                    cost_budget(runtime, state)).answer(**arguments)
        answer, spent = reply.value, reply.usage
    except Exception as exc:  # noqa: BLE001 - the run must still end with an answer
        # The template reports every step; the note says why no model wrote it.
        answer = f"{templated_answer(**arguments)}\n(written without the model: {exc})"
        spent = Usage()
    return ended | {"final_answer": answer, "usage": spent}
