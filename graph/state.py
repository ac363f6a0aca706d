"""Graph state: what the caller passes in, what it gets back, and what the nodes share.

Every checkpoint stores the whole state (SQLite's saver writes all of it each time), so the
state holds only what routing and prompts need, whose size does not depend on how long the
run has gone on: the plan, the current plan's results, the results the next prompt shows
(bounded by summarization) and counts. Each result is kept once, in the step ledger in the
graph's store (`graph.runtime.ledger`); `finalize` copies the whole list into `results` once, so
`invoke`, Studio and `duet show` see every result. A graph compiled without a store has no
ledger: there `results` grows with every step instead.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict

from graph.contracts import (
    Decision,
    Plan,
    RunStatus,
    Step,
    StepResult,
    StepTally,
    Usage,
)
from tools.people import HandOff, PersonAnswer


class StepTask(TypedDict):
    """A step ready to start: its references resolved, and whether it may start (a step
    that changes things waits for approval)."""

    step: Step
    args: dict[str, Any]
    plan_version: int
    problem: str | None  # why it cannot run (it fails with `problem_kind`, unrun)
    approved: bool
    problem_kind: NotRequired[str]  # an `ErrorKind`; a bad reference's without one
    side_effects: NotRequired[bool]
    escalated: NotRequired[str]  # why it needs a human even under `approval: auto`
    session_continues: NotRequired[bool]  # a step that depends on it uses its `session`
    hand_off: NotRequired[HandOff]  # it handed its page to a person (`tools.people`)...
    person: NotRequired[PersonAnswer]  # ...who answered (a value is dumped masked)


# How a run may end for `retry` to continue it (`graph.nodes.retry`); the others either
# finished (`completed`), wait for a human (`needs_approval`, `needs_person`: resumed
# instead) or stopped on a guard that another attempt would meet again (`loop_detected`).
RETRYABLE = frozenset({RunStatus.FAILED, RunStatus.BUDGET_EXHAUSTED})


class InputState(TypedDict):
    """What a caller passes to `invoke`: a task for a new run, or `{"retry": True}` on the
    thread of a run that ended `failed` or `budget_exhausted` (`graph.nodes.retry`)."""

    task: str
    retry: NotRequired[bool]


class OutputState(TypedDict, total=False):
    """What a finished run returns (the final state fields of the contract)."""

    status: RunStatus
    final_answer: str | None
    results: list[StepResult]
    reason: str
    usage: Usage


class State(InputState, OutputState, total=False):
    """Everything the nodes share. Nodes return only the keys they change."""

    results: Annotated[list[StepResult], operator.add]  # see the module's docstring
    usage: Annotated[Usage, operator.add]
    plan: Plan | None
    plan_version: int
    plan_results: Annotated[dict[str, StepResult], operator.or_]  # this plan's, by id
    unseen: Annotated[list[str], operator.add]  # its step ids the reasoner has not read
    recent: Annotated[list[StepResult], operator.add]  # not yet folded into the summary
    tally: Annotated[StepTally, operator.add]
    pending_steps: list[StepTask]  # ready steps that change things, held for approval
    first_plan: Plan | None  # made before any tool output was read (`graph.runtime.taint`)
    escalations: dict[str, str]  # steps of the current plan that need a human, and why
    awaiting_review: bool  # the plan waits for a person's review before any step runs
    review_feedback: str  # why a person rejected the last plan: the next plan prompt says it
    plan_fingerprints: list[str]
    replans: int
    stalled_replans: int
    ok_at_last_plan: int
    decision: Decision | None
    summary: str
    summarized_count: int  # results folded into the summary so far
    started_at: float  # of this attempt: the run's, or its latest retry's (the deadline)
    retries: int  # how often the run was retried
    model_failure: str  # why the model could not be asked (down, stalled): not asked again
