"""What every node shares: its dependencies, the never-raise wrapper, the scheduler, and
where new results go."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Plan, RunStatus, StepResult, StepTally, Usage
from graph.events import emit, writer_of
from graph.guards import CostBudget
from graph.reasoning import (
    CostLimitReached,
    ModelTimeout,
    ModelUnavailable,
    Reasoner,
    ReasoningError,
    resolve_reasoner,
)
from graph.reasoning.timed import TimedReasoner
from graph.runtime.execution import store_of, thread_of
from graph.runtime.ledger import LedgerUnavailable, StepLedger
from graph.runtime.scheduler import Scheduler
from graph.runtime.secrets import run_auth
from graph.runtime.taint import escalations, trusted_text, untrusted_text
from graph.state import State
from tools.auth import Auth
from tools.registry import ToolRegistry

log = logging.getLogger("duet")


def reasoning_failed(exc: ReasoningError) -> dict[str, Any]:
    """What a node returns when its reasoning call failed: the run ends `failed`. A model
    that could not be reached or did not answer in time is not asked again for the final
    answer (`model_failure`): that call would wait its whole bound too, so the run would end
    only after twice the bound it states."""
    if isinstance(exc, CostLimitReached):
        # Not a failure: the call was not made, and a raised budget continues the run.
        return {"status": RunStatus.BUDGET_EXHAUSTED, "reason": str(exc), "usage": exc.usage}
    update: dict[str, Any] = {"status": RunStatus.FAILED, "reason": str(exc),
                              "usage": exc.usage}
    if isinstance(exc, ModelTimeout | ModelUnavailable):
        update["model_failure"] = str(exc)
    return update


def cost_budget(runtime: Runtime[Context] | None, state: State) -> CostBudget:
    """What a node may spend of the run's `max_cost_usd`: its reasoning calls and the steps
    it starts share it."""
    spent = (state.get("usage") or Usage()).total_cost_usd
    return CostBudget(runtime_context(runtime).max_cost_usd, spent)


@dataclass(frozen=True)
class NodeDeps:
    """What `build_graph` gives the nodes: the tools and the reasoning model override."""

    registry: ToolRegistry
    model: BaseChatModel | str | Reasoner | None = None

    def reasoner(self, runtime: Runtime[Context] | None, plan: Plan | None,
                 cost: CostBudget) -> Reasoner:
        """The reasoner for this run, whose plan is now `plan` (see `resolve_reasoner`),
        each call checked against `cost` before it is made; each call it makes is reported
        on the run's stream (a `reasoning` event, for the run report)."""
        inner = resolve_reasoner(runtime_context(runtime), self.model, plan, cost)
        writer = writer_of(runtime)
        return TimedReasoner(inner, lambda event: emit(writer, event))

    def scheduler(self, runtime: Runtime[Context] | None, state: State, *,
                  plan_version: int, cost: CostBudget, auth: Auth,
                  extra: Sequence[StepResult] = ()) -> Scheduler:
        """A scheduler for `plan_version` of this run, its Nova Act steps checked against
        `cost`, its steps given the run's `auth` (`load_auth`). A new version starts with no
        results; `extra` are results not in the state yet (early-started steps of a
        discarded answer), which count against the budgets."""
        current = plan_version == state.get("plan_version")
        done = state.get("plan_results", {}) if current else {}
        unseen = state.get("unseen", []) if current else []
        return Scheduler(
            plan_version=plan_version, done=done,
            tally=state.get("tally", StepTally()) + StepTally.of(list(extra)),
            unseen_failure=any(done[i].status != "ok" for i in unseen if i in done),
            pending=list(state.get("pending_steps") or []) if current else [],
            started_at=state.get("started_at") or 0.0, usage=state.get("usage") or Usage(),
            cost=cost, context=runtime_context(runtime), registry=self.registry,
            runtime=runtime, auth=auth)


def plan_escalations(state: State, context: Context, plan: Plan,
                     first_plan: Plan) -> dict[str, str]:
    """The steps of `plan` that change things with values the planner read in tool output
    and the user never gave (`graph.runtime.taint`): each needs a human even under
    `approval: auto`, and why."""
    recent, summary = state.get("recent", []), state.get("summary", "")
    return escalations(plan, untrusted_text(recent, summary),
                       trusted_text(state["task"], context.plan_variables, first_plan))


async def load_auth(context: Context) -> Auth:
    """The run's `Auth` (`graph.runtime.secrets.run_auth`), made once per node for the
    planner's listing, the plan check and every step; its config file is read (the first
    time in a process) off the event loop, which other runs share."""
    return await asyncio.to_thread(run_auth, context)


Node = Callable[..., Awaitable[dict[str, Any]]]


def never_raises(name: str) -> Callable[[Node], Node]:
    """Turn an unexpected exception in a node into a `failed` run instead of a crash.

    Interrupts and other LangGraph control flow still propagate, and so does a failed
    step ledger: like a failed checkpoint write, the runner ends the run resumable.
    """

    def wrap(node: Node) -> Node:
        @functools.wraps(node)
        async def guarded(*args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                return await node(*args, **kwargs)
            except (GraphBubbleUp, LedgerUnavailable):
                raise
            except Exception as exc:  # noqa: BLE001 - the contract is that invoke never raises
                log.exception("node %s failed", name)
                return {
                    "status": RunStatus.FAILED,
                    "reason": f"{name} failed: {type(exc).__name__}: {exc}",
                    "pending_steps": [],
                }

        return guarded

    return wrap


def runtime_context(runtime: Runtime[Context] | None) -> Context:
    """The run's context, or the defaults when the caller passed none."""
    context = getattr(runtime, "context", None)
    return context if isinstance(context, Context) else Context()


async def record_results(runtime: Runtime[Context] | None, results: list[StepResult],
                         spent: Usage | None = None) -> dict[str, Any]:
    """Record new results: steps that did not run go to the step ledger now (steps that ran
    wrote theirs as they ended); without a store every result goes to the state's
    `results`. Returns the state update: the prompt window, the counts, and the usage:
    `spent` (the node's reasoning calls') plus the steps' Nova Act time, when either is
    given."""
    update: dict[str, Any] = {"recent": results, "tally": StepTally.of(results)}
    steps = Usage.of_steps(results)
    if spent is not None or steps.nova_act_seconds:
        update["usage"] = (spent or Usage()) + steps
    store = store_of(runtime)
    if store is None:
        return update | {"results": results}
    ledger = StepLedger(store, thread_of(runtime))
    for result in results:
        if result.status in {"rejected", "cancelled"}:  # a step run never ends so
            await ledger.unrun(result)
    return update

