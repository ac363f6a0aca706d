"""Conditional edges. Each router is small, pure, and reads only the state and the context.

The runtime is optional: `update_state` (Studio's state editor, time travel) runs routers
without one, and the context's defaults apply then.
"""

from __future__ import annotations

from typing import Literal

from langgraph.runtime import Runtime
from langgraph.types import Send

from graph.context import Context
from graph.nodes.base import runtime_context
from graph.nodes.summarize import needs_summary
from graph.state import State

Move = Literal["plan", "summarize", "approve", "observe", "finalize"]


def _wave_or(state: State, fallback: Literal["observe", "finalize"]) -> list[Send] | Move:
    """The queued wave: to `approve` if a step awaits approval, else one `act` task a step."""
    tasks = state.get("next_steps") or []
    if not tasks:
        return fallback
    if not all(task["approved"] for task in tasks):
        return "approve"
    return [Send("act", task) for task in tasks]


def _next(state: State) -> list[Send] | Move:
    """Where a run goes once the history is small enough to show the model."""
    if state.get("status"):
        return "finalize"
    decision = state.get("decision")
    if decision is not None and decision.action == "replan":
        return "plan"
    return _wave_or(state, "finalize")


def route_after_plan(state: State, runtime: Runtime[Context] | None = None) -> list[Send] | Move:
    """After `plan`: its first wave to `act`; `plan` again if steps were rejected;
    `summarize` first if the history outgrew the threshold; `finalize` when the run ended."""
    if state.get("decision") is not None and needs_summary(state, runtime_context(runtime)):
        return "summarize"
    return _next(state)


def route_after_observe(
    state: State, runtime: Runtime[Context] | None = None
) -> list[Send] | Move:
    """After `observe`: `summarize` when the history passed the threshold, else as `_next`."""
    if needs_summary(state, runtime_context(runtime)):
        return "summarize"
    return _next(state)


def route_after_summarize(state: State) -> list[Send] | Move:
    """After `summarize`: the next wave, a replan, or the end."""
    return _next(state)


def route_after_approve(state: State) -> list[Send] | Move:
    """After `approve`: the approved steps to `act`; `observe` when none is left to run."""
    return _wave_or(state, "observe")
