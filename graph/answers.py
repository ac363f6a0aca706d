"""What a person answers when a run pauses for them: typed resume values, and how they are read.

A run pauses with one LangGraph interrupt whose value says its `kind`: `plan_review` (the
whole plan before any step runs, under `review_plan`; answered with a `PlanReview`) or
`approval` (steps that change things, held under `approval: ask`; answered with a
`StepAnswer` per step id) or `handoff` (a step handed its page to a person,
`tools.people`; answered with a `PersonAnswer`: a value to type, `done`, or `refuse`).
`ask` interrupts until an answer reads: one that does not fit
is refused and the same request is asked again with `error` saying why, so the run still
waits; nothing is dropped and nothing crashes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from graph.contracts import Plan
from graph.redaction import redact_secret_forms
from tools.errors import ConfigError
from tools.people import PersonAnswer

T = TypeVar("T")

PLAN_REVIEW = "plan_review"
APPROVAL = "approval"
HANDOFF = "handoff"


class AnswerRefused(ConfigError):
    """A resume value that does not answer the interrupt it was given to; the run still
    waits for one that does."""


class PlanReview(BaseModel):
    """A person's answer to a plan review: `approve` runs the plan; `edit` runs `plan`
    instead (checked as any plan is: the `Plan` model, then the tool registry); `reject`
    sends `reason` to the planner, whose new plan comes back for review. `by` names who
    answered (the trace and the run report show it)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "edit", "reject"]
    plan: Plan | None = Field(default=None, description="With 'edit': the plan to run.")
    reason: str = Field(default="", description="With 'reject': why; the planner reads it.")
    by: str = Field(default="", description="Who answered.")

    @model_validator(mode="after")
    def _fits_its_action(self) -> PlanReview:
        if self.action == "edit" and self.plan is None:
            raise ValueError("an edit gives the plan to run: {'action': 'edit', 'plan': {...}}")
        if self.action != "edit" and self.plan is not None:
            raise ValueError(f"only an edit gives a plan, not {self.action!r}")
        if self.action == "reject" and not self.reason.strip():
            raise ValueError("a rejection gives its reason, for the planner: "
                             "{'action': 'reject', 'reason': 'why'}")
        return self


class RejectStep(BaseModel):
    """`{"reject": "why"}`: the step does not run, and the planner reads why."""

    model_config = ConfigDict(extra="forbid")

    reject: str = Field(min_length=1)


class EditStep(BaseModel):
    """`{"edit": {new arguments}}`: the step runs with these arguments (checked against the
    registry; a refused edit rejects the step, as the planner then reads)."""

    model_config = ConfigDict(extra="forbid")

    edit: dict[str, Any]


StepAnswer = Literal["approve", "reject"] | RejectStep | EditStep
# How a caller answers for a person (`graph.app.runner.run_thread`'s `decide`): given an
# interrupt's request, a `PlanReview` for a plan review, a `StepAnswer` by step id for an
# approval, a `PersonAnswer` for a hand-off (dicts of the same shapes do), or None to
# leave the run waiting.
Decide = Callable[[dict[str, Any]], PlanReview | PersonAnswer | dict[str, Any] | None]
_STEP_ANSWER: TypeAdapter[StepAnswer] = TypeAdapter(StepAnswer)
STEP_ANSWER_FORMS = "'approve', 'reject', {'reject': 'why'} or {'edit': {new arguments}}"


def read_plan_review(value: Any) -> PlanReview:
    """`value` (a `PlanReview` or its JSON) as a `PlanReview`; `AnswerRefused` saying what
    is wrong."""
    try:
        return PlanReview.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        problem = str(error["msg"]).removeprefix("Value error, ")
        raise AnswerRefused(f"not a plan review answer: {where + ': ' if where else ''}"
                            f"{problem}") from None


def read_hand_off_answer(value: Any, request: dict[str, Any]) -> PersonAnswer:
    """`value` (a `PersonAnswer` or its JSON) as a `PersonAnswer` of one of the actions the
    hand-off `request` offers; `AnswerRefused` saying what is wrong. A value is cut from
    every record of this process from now on (`graph.redaction`), before anything carries
    it."""
    offered = [form["action"] for form in request.get("answers", [])]
    try:
        answer = PersonAnswer.model_validate(value)
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise AnswerRefused(f"not a hand-off answer: {problem}; answer one of "
                            f"{_hand_off_forms(offered)}") from None
    if answer.lost:
        raise AnswerRefused("that is the value's mask, not the value: give the value again")
    if answer.action not in offered:
        raise AnswerRefused(f"{answer.action!r} does not answer this hand-off; answer one "
                            f"of {_hand_off_forms(offered)}")
    if answer.value:
        redact_secret_forms([answer.value])
    return answer


def _hand_off_forms(offered: Collection[str]) -> str:
    forms = {"value": "{'action': 'value', 'value': '...'}", "done": "{'action': 'done'}",
             "refuse": "{'action': 'refuse', 'reason': 'why'}"}
    return ", ".join(forms[action] for action in offered)


def read_step_answers(value: Any, asked: Collection[str]) -> dict[str, StepAnswer]:
    """`value` as an answer per step id; no value answers nothing (every step asked about is
    then rejected, as is a step left out). `AnswerRefused` for a value that is not a map
    of step ids, a step not asked about, or an answer of another form."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AnswerRefused(f"approvals are answered with a map of step ids, not "
                            f"{type(value).__name__}: {{'step id': {STEP_ANSWER_FORMS}}}")
    if unknown := sorted(set(value) - set(asked)):
        raise AnswerRefused(f"answers for steps that were not asked about: {unknown} "
                            f"(asked: {sorted(asked)})")
    answers: dict[str, StepAnswer] = {}
    for step_id, answer in value.items():
        try:
            answers[step_id] = _STEP_ANSWER.validate_python(answer)
        except ValidationError:
            raise AnswerRefused(f"step {step_id!r}: {answer!r} is not an answer; answer "
                                f"{STEP_ANSWER_FORMS}") from None
    return answers


def ask(request: dict[str, Any], read: Callable[[Any], T]) -> T:
    """Interrupt the run with `request` until an answer that `read` accepts comes back; a
    refused one puts the same request back, with `error` saying why (`AnswerRefused`)."""
    # Here, not at the top: `duet show` reads this module's types without loading LangGraph.
    from langgraph.types import interrupt

    refused: str | None = None
    while True:
        # On resume the node runs again and each interrupt in turn gets its saved answer,
        # so refused answers are read (and refused) again before the newest is.
        answer = interrupt(request if refused is None else {**request, "error": refused})
        try:
            return read(answer)
        except AnswerRefused as exc:
            refused = str(exc)
