"""Run settings in groups: what a run may spend (`Budgets`) and how long anything may take
(`Timeouts`). Each group's defaults are the run settings' defaults (`graph.context.Context`
takes them from here), and a group's field names are the flat names `--set` and LangGraph
Studio use, so a `Context` makes each group by name (`Context.budgets`, `Context.timeouts`);
the sandbox's group is `tools.sandbox.SandboxPolicy`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tools.registry import BoundBy


@dataclass(frozen=True)
class Budgets:
    """What a run may spend; one more step, call or token past any of them ends it
    `budget_exhausted` (`graph.guards`), and so does a reasoning call or a Nova Act step
    that could pass `max_cost_usd` (None: no cost limit). Steps, tool calls, tokens, cost
    and replans count over the whole run, retries included; the deadline starts again with
    each retry."""

    max_steps: int = 200
    max_tool_calls: int = 400
    token_budget: int = 200_000
    max_cost_usd: float | None = None
    deadline_seconds: float = 600.0
    max_replans: int = 3
    max_stalled_replans: int = 2


@dataclass(frozen=True)
class Timeouts:
    """The bound of every wait: of a tool call (by what it waits on: `step_timeout_seconds`
    for any tool, its dependency's own when shorter), of a reasoning call, of a database
    operation, and of the wait for a dependency that cannot be reached."""

    step_timeout_seconds: float = 300.0
    http_timeout_seconds: float = 30.0
    mcp_timeout_seconds: float = 30.0
    playwright_timeout_seconds: float = 60.0
    model_timeout_seconds: float = 180.0
    checkpointer_timeout_seconds: float = 20.0
    dependency_wait_seconds: float = 30.0

    def of_call(self, bound_by: BoundBy) -> tuple[float, BoundBy]:
        """The bound of one call of a tool bounded by `bound_by`, and the setting it comes
        from: its own when shorter than `step_timeout_seconds`, the limit of every tool."""
        own: float = getattr(self, bound_by)
        if own < self.step_timeout_seconds:
            return own, bound_by
        return self.step_timeout_seconds, "step_timeout_seconds"
