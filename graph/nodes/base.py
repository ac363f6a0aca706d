"""What every node shares: its dependencies, the never-raise wrapper, and wave building."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Plan, RunStatus, StepResult
from graph.progress import ReferenceProblem, ready_steps, resolve_args, results_of_plan
from graph.reasoning import Reasoner, resolve_reasoner
from graph.state import StepTask
from tools.registry import ToolRegistry

log = logging.getLogger("duet")


@dataclass(frozen=True)
class NodeDeps:
    """What `build_graph` gives the nodes: the tools and the reasoning model override."""

    registry: ToolRegistry
    model: BaseChatModel | str | Reasoner | None = None

    def reasoner(self, context: Context) -> Reasoner:
        """The reasoner for this run (see `resolve_reasoner`)."""
        return resolve_reasoner(context, self.model)


Node = Callable[..., Awaitable[dict[str, Any]]]


def never_raises(name: str) -> Callable[[Node], Node]:
    """Turn an unexpected exception in a node into a `failed` run instead of a crash.

    Interrupts and other LangGraph control flow still propagate.
    """

    def wrap(node: Node) -> Node:
        @functools.wraps(node)
        async def guarded(*args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                return await node(*args, **kwargs)
            except GraphBubbleUp:
                raise
            except Exception as exc:  # noqa: BLE001 - the contract is that invoke never raises
                log.exception("node %s failed", name)
                return {
                    "status": RunStatus.FAILED,
                    "reason": f"{name} failed: {type(exc).__name__}: {exc}",
                    "next_steps": [],
                }

        return guarded

    return wrap


def next_wave(
    plan: Plan, plan_version: int, results: list[StepResult], context: Context, deps: NodeDeps
) -> list[StepTask]:
    """The steps that can run now, with references resolved, within the step budget.

    A step that changes things is queued unapproved: the `approve` node sees it first.
    """
    done = results_of_plan(results, plan_version)
    remaining = context.max_steps - sum(1 for r in results if r.status != "rejected")
    tasks: list[StepTask] = []
    for step in ready_steps(plan, done)[: max(0, remaining)]:
        try:
            args, problem = resolve_args(step.args, done), None
        except ReferenceProblem as exc:
            args, problem = step.args, str(exc)
        changes = step.side_effects or deps.registry.get(step.tool).changes_things(args)
        tasks.append(StepTask(step=step, args=args, plan_version=plan_version, problem=problem,
                              approved=problem is not None or not changes, side_effects=changes))
    return tasks


def runtime_context(runtime: Runtime[Context] | None) -> Context:
    """The run's context, or the defaults when the caller passed none."""
    context = getattr(runtime, "context", None)
    return context if isinstance(context, Context) else Context()
