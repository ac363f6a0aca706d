"""Budgets and loop detection: the checks that guarantee every run ends."""

from __future__ import annotations

import time

from graph.context import Context
from graph.contracts import RunStatus, StepTally, Usage

Stop = tuple[RunStatus, str]


def budget_stop(
    *, tally: StepTally, usage: Usage, started_at: float, context: Context,
    now: float | None = None, in_flight: int = 0,
) -> Stop | None:
    """The budget a run has used up, if any: steps, tool calls, tokens or wall clock.

    `in_flight` steps count as one step and one tool call each (the scheduler asks before
    it starts one more)."""
    now = time.time() if now is None else now
    steps = tally.executed + in_flight
    if steps >= context.max_steps:
        return RunStatus.BUDGET_EXHAUSTED, f"step budget spent ({steps}/{context.max_steps})"
    calls = tally.attempts + in_flight
    if calls >= context.max_tool_calls:
        return (RunStatus.BUDGET_EXHAUSTED,
                f"tool-call budget spent ({calls}/{context.max_tool_calls})")
    if usage.total_tokens >= context.token_budget:
        return (RunStatus.BUDGET_EXHAUSTED,
                f"token budget spent ({usage.total_tokens}/{context.token_budget})")
    if now - started_at >= context.deadline_seconds:
        return RunStatus.BUDGET_EXHAUSTED, f"deadline of {context.deadline_seconds:g}s passed"
    return None


def tokens_spent(usage: Usage, context: Context) -> bool:
    """True when no further reasoning call fits the token budget."""
    return usage.total_tokens >= context.token_budget


def replan_stop(*, replans: int, stalled_replans: int, context: Context) -> Stop | None:
    """Why no new plan may be asked for: too many replans, or replans without progress."""
    if replans > context.max_replans:
        return RunStatus.BUDGET_EXHAUSTED, f"replan budget spent ({context.max_replans})"
    if stalled_replans > context.max_stalled_replans:
        return (RunStatus.LOOP_DETECTED,
                f"{stalled_replans} replans in a row without a new successful step")
    return None


# How many plans back a repeated plan is recognised. Bounded so the state does not grow with
# the run; a loop over older plans still meets the replan budget and the stalled-replan guard.
PLANS_REMEMBERED = 32


def remember_plan(fingerprint: str, seen: list[str]) -> list[str]:
    """The fingerprints to keep after a new plan: the newest `PLANS_REMEMBERED`."""
    return [*seen, fingerprint][-PLANS_REMEMBERED:]


def repeated_plan(fingerprint: str, seen: list[str]) -> Stop | None:
    """A plan identical in effect to an earlier one is a loop."""
    if fingerprint in seen:
        return RunStatus.LOOP_DETECTED, f"the planner repeated an earlier plan ({fingerprint})"
    return None
