"""Steps held for a person (`tools.people`): one `handoff` interrupt each, read, applied.

The `approve` node asks them beside its approvals. The request shows what is asked, the
page's URL, its masked screenshot and the DevTools link for a takeover; the answer is a
`PersonAnswer` (`graph.answers.read_hand_off_answer`). `value` and `done` put the step back
to run, with the answer (`StepTask.person`: a value is dumped masked, so only the step
that runs next in this process reads it); `refuse` rejects the step, `PersonNeeded`.
"""

from __future__ import annotations

from typing import Any

from graph.answers import HANDOFF, ask, read_hand_off_answer
from graph.contracts import StepResult
from graph.events import HandOffAnswered, emit
from graph.state import StepTask
from tools.errors import ErrorKind
from tools.people import PersonAnswer

_FORMS: dict[str, dict[str, str]] = {
    "value": {"action": "value", "value": "..."}, "done": {"action": "done"},
    "refuse": {"action": "refuse", "reason": "why"}}


def hand_off_request(task: StepTask) -> dict[str, Any]:
    """What the interrupt shows: the step, and its hand-off (`tools.people.HandOff`: what
    is `need`ed, what is asked, URL, session, screenshot, DevTools link), with the answers
    that fit."""
    hand_off, step = task["hand_off"], task["step"]
    return {**hand_off.model_dump(exclude={"kind", "field", "submit", "acted", "answers"},
                                  exclude_none=True),
            "kind": HANDOFF, "need": hand_off.kind, "step_id": step.id, "tool": step.tool,
            "description": step.description,
            "answers": [_FORMS[action] for action in hand_off.answers]}


def ask_person(task: StepTask, writer: Any) -> StepTask | StepResult:
    """Interrupt the run for `task`'s hand-off until a fitting answer comes; the task to run
    again with it, or the failed result of a refusal."""
    request = hand_off_request(task)
    answer: PersonAnswer = ask(request, lambda value: read_hand_off_answer(value, request))
    step = task["step"]
    emit(writer, HandOffAnswered(step_id=step.id, action=answer.action, by=answer.by))
    if answer.action == "refuse":
        why = f": {answer.reason}" if answer.reason else ""
        # Rejected, as a step a person did not approve: it goes no further.
        return StepResult.rejected(step, task["plan_version"], ErrorKind.PERSON_NEEDED,
                                   f"a person was needed ({task['hand_off'].kind}: "
                                   f"{task['hand_off'].asked}) and refused{why}")
    return {**task, "approved": True, "person": answer}
