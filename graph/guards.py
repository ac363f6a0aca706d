"""Budgets and loop detection: the checks that guarantee every run ends."""

from __future__ import annotations

import time
from dataclasses import dataclass

from graph.contracts import RunStatus, StepTally, Usage
from graph.settings import Budgets


@dataclass(frozen=True)
class Stop:
    """Why a run must end now: the status it ends with and the reason it gives."""

    status: RunStatus
    reason: str

    def as_update(self) -> dict[str, object]:
        """The state update that ends the run so."""
        return {"status": self.status, "reason": self.reason}


def budget_stop(
    *, tally: StepTally, usage: Usage, started_at: float, budgets: Budgets,
    now: float | None = None, in_flight: int = 0,
) -> Stop | None:
    """The budget a run has used up, if any: steps, tool calls, tokens or wall clock.

    `in_flight` steps count as one step and one tool call each (the scheduler asks before
    it starts one more)."""
    now = time.time() if now is None else now
    spent = RunStatus.BUDGET_EXHAUSTED
    steps = tally.executed + in_flight
    if steps >= budgets.max_steps:
        return Stop(spent, f"step budget spent ({steps}/{budgets.max_steps})")
    calls = tally.attempts + in_flight
    if calls >= budgets.max_tool_calls:
        return Stop(spent, f"tool-call budget spent ({calls}/{budgets.max_tool_calls})")
    if usage.total_tokens >= budgets.token_budget:
        return Stop(spent, f"token budget spent ({usage.total_tokens}/{budgets.token_budget})")
    if now - started_at >= budgets.deadline_seconds:
        return Stop(spent, deadline_passed(budgets))
    return None


def deadline_passed(budgets: Budgets) -> str:
    """The reason a run gives when its deadline passed."""
    return f"deadline of {budgets.deadline_seconds:g}s passed"


def tokens_spent(usage: Usage, budgets: Budgets) -> bool:
    """True when no further reasoning call fits the token budget."""
    return usage.total_tokens >= budgets.token_budget


def replan_stop(*, replans: int, stalled_replans: int, budgets: Budgets) -> Stop | None:
    """Why no new plan may be asked for: too many replans, or replans without progress."""
    if replans > budgets.max_replans:
        return Stop(RunStatus.BUDGET_EXHAUSTED, f"replan budget spent ({budgets.max_replans})")
    if stalled_replans > budgets.max_stalled_replans:
        return Stop(RunStatus.LOOP_DETECTED,
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
        return Stop(RunStatus.LOOP_DETECTED,
                    f"the planner repeated an earlier plan ({fingerprint})")
    return None
