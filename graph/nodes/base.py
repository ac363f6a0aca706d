"""What every node shares: its dependencies, the never-raise wrapper, the scheduler."""

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
from graph.contracts import RunStatus, StepResult, Usage
from graph.ledger import LedgerUnavailable
from graph.reasoning import Reasoner, resolve_reasoner
from graph.scheduler import Scheduler
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

    def scheduler(self, runtime: Runtime[Context] | None, *, results: list[StepResult],
                  plan_version: int, observed: int, started_at: float, usage: Usage,
                  pending: list[StepTask] = ()) -> Scheduler:
        """A scheduler for `plan_version` of this run, seeing the run's `results` so far
        (those from `observed` on not yet read by the reasoning agent)."""
        return Scheduler(plan_version=plan_version, results=results, observed=observed,
                         pending=list(pending), started_at=started_at, usage=usage,
                         context=runtime_context(runtime), registry=self.registry,
                         runtime=runtime)


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
