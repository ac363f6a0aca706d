"""`approve`: steps that change things wait for a human (or the context's policy) first.

The scheduler holds each such step once it is ready to start; when nothing else can run,
one interrupt lists every held step. The answer maps step ids to a `StepAnswer`
(`graph.answers`): "approve", "reject", {"reject": "why"} (the planner reads why) or
{"edit": {new args}} (checked against the registry again). A step left out is rejected;
an answer of another form, or for a step not asked about, is refused and asked again.
A step that handed its page to a person is asked about on its own (`graph.nodes.people`).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.answers import APPROVAL, EditStep, RejectStep, StepAnswer, ask, read_step_answers
from graph.context import Context
from graph.contracts import StepResult
from graph.events import writer_of
from graph.nodes.base import NodeDeps, record_results, runtime_context
from graph.nodes.people import ask_person
from graph.runtime.scheduler import not_approved, standing_answer
from graph.state import State, StepTask
from tools.registry import StepRefused, ToolRegistry


def approval_request(tasks: list[StepTask], registry: ToolRegistry) -> dict[str, Any]:
    """What the interrupt shows: each step's tool, arguments and purpose; `destructive` when
    its tool says so (MCP's `destructiveHint`), `escalated` with why a human must decide."""
    def shown(task: StepTask) -> dict[str, Any]:
        step = task["step"]
        destructive = step.tool in registry and registry.get(step.tool).destructive
        return {"step_id": step.id, "tool": step.tool, "args": task["args"],
                "description": step.description,
                **({"destructive": True} if destructive else {}),
                **({"escalated": task["escalated"]} if task.get("escalated") else {})}

    return {"kind": APPROVAL,
            "answers": ["approve", "reject", {"reject": "why"}, {"edit": "{...new args}"}],
            "steps": [shown(task) for task in tasks]}


async def approve(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Apply the approval policy to the held steps; 'ask' interrupts the run."""
    context = runtime_context(runtime)
    held = state.get("pending_steps") or []
    queued: list[StepTask] = []
    refused: list[StepResult] = []
    for task in [t for t in held if not t["approved"] and "hand_off" in t]:
        answered = ask_person(task, writer_of(runtime))
        if isinstance(answered, StepResult):
            refused.append(answered)
        else:
            queued.append(answered)
    held = [t for t in held if t["approved"] or "hand_off" not in t]
    pending = [t for t in held if not t["approved"]]
    answers: dict[str, StepAnswer] = {}
    for task in pending:
        if (standing := standing_answer(context.approval, task)) is not None:
            answers[task["step"].id] = standing
    if asked := [t for t in pending if t["step"].id not in answers]:
        ids = [t["step"].id for t in asked]
        answers |= ask(approval_request(asked, deps.registry),
                       lambda value: read_step_answers(value, ids))

    for task in held:
        if task not in pending:
            queued.append(task)
            continue
        answer = answers.get(task["step"].id, "reject")
        if isinstance(answer, EditStep):
            try:
                deps.registry.check(task["step"].tool, answer.edit)
            except StepRefused as exc:
                refused.append(StepResult.rejected(task["step"], task["plan_version"],
                                                   exc.kind, f"edited arguments: {exc}"))
                continue
            queued.append({**task, "args": answer.edit, "approved": True})
        elif answer == "approve":
            queued.append({**task, "approved": True})
        else:
            because = answer.reject if isinstance(answer, RejectStep) else None
            refused.append(not_approved(task, context.approval, because))
    return await record_results(runtime, refused) | {
        "plan_results": {r.step_id: r for r in refused},
        "unseen": [r.step_id for r in refused], "pending_steps": queued}
