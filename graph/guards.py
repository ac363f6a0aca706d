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
    if budgets.max_cost_usd is not None and usage.total_cost_usd >= budgets.max_cost_usd:
        return Stop(spent, f"cost budget spent (${usage.total_cost_usd:.4f} of "
                           f"max_cost_usd ${budgets.max_cost_usd:g})")
    if now - started_at >= budgets.deadline_seconds:
        return Stop(spent, deadline_passed(budgets))
    return None


class CostBudget:
    """What one node may still spend of the run's `max_cost_usd`.

    A call (a reasoning call, a Nova Act step) reserves its estimate before it starts
    (`reserve`): it starts only if what the run had spent, what ended since, the estimates
    of the calls still in flight and its own fit the budget. When it ends, `settle`
    replaces its estimate with what it cost. Without `max_cost_usd` every call fits.
    The event loop is the only thread that uses it."""

    def __init__(self, max_cost_usd: float | None, spent_usd: float):
        self.max_cost_usd = max_cost_usd
        self.spent_usd = spent_usd
        self.reserved_usd = 0.0

    def reserve(self, estimate_usd: float | None, call: str) -> Stop | None:
        """Reserve `estimate_usd` for `call` ("the plan call", "step s2 (browser_act)"), or
        the `Stop` that ends the run before it: `budget_exhausted` when it could pass the
        budget, `failed` when it has no price (`estimate_usd` None) to check it by."""
        if self.max_cost_usd is None:
            return None
        if estimate_usd is None:
            return Stop(RunStatus.FAILED, f"{call} cannot be priced, and max_cost_usd needs a "
                                          "price: set nova_act_prices (USD per agent-hour)")
        committed = self.spent_usd + self.reserved_usd
        if committed + estimate_usd > self.max_cost_usd:
            in_flight = f", ${self.reserved_usd:.4f} more in flight" if self.reserved_usd else ""
            return Stop(RunStatus.BUDGET_EXHAUSTED, (
                f"cost budget: {call} could cost up to ${estimate_usd:.4f}, past max_cost_usd "
                f"${self.max_cost_usd:g} (${self.spent_usd:.4f} spent{in_flight})"))
        self.reserved_usd += estimate_usd
        return None

    def settle(self, estimate_usd: float, cost_usd: float) -> None:
        """A call that reserved `estimate_usd` ended, having cost `cost_usd`."""
        if self.max_cost_usd is None:
            return
        self.reserved_usd = max(0.0, self.reserved_usd - estimate_usd)
        self.spent_usd += cost_usd


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
