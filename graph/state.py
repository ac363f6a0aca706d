"""Graph state: what the caller passes in, what it gets back, and what the nodes share."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict

from graph.contracts import Decision, Plan, RunStatus, Step, StepResult, Usage


class StepTask(TypedDict):
    """A step ready to start: its references resolved, and whether it may start (a step
    that changes things waits for approval)."""

    step: Step
    args: dict[str, Any]
    plan_version: int
    problem: str | None
    approved: bool
    side_effects: NotRequired[bool]
    escalated: NotRequired[str]  # why it needs a human even under `approval: auto`


class InputState(TypedDict):
    """What a caller passes to `invoke`."""

    task: str


class OutputState(TypedDict, total=False):
    """What a finished run returns (the final state fields of the contract)."""

    status: RunStatus
    final_answer: str | None
    results: list[StepResult]
    reason: str
    usage: Usage


class State(InputState, OutputState, total=False):
    """Everything the nodes share. Nodes return only the keys they change."""

    results: Annotated[list[StepResult], operator.add]
    usage: Annotated[Usage, operator.add]
    plan: Plan | None
    plan_version: int
    pending_steps: list[StepTask]  # ready steps that change things, held for approval
    first_plan: Plan | None  # made before any tool output was read (`graph.taint`)
    escalations: dict[str, str]  # steps of the current plan that need a human, and why
    observed_count: int
    plan_fingerprints: list[str]
    replans: int
    stalled_replans: int
    ok_at_last_plan: int
    decision: Decision | None
    summary: str
    summarized_count: int
    started_at: float
