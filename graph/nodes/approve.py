"""`approve`: steps that change things wait for a human (or the context's policy) first.

One interrupt per wave lists every such step. The answer maps step ids to "approve",
"reject", or {"edit": {new args}}; edited arguments are checked against the registry again.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from graph.context import Context
from graph.contracts import StepResult
from graph.nodes.base import NodeDeps, runtime_context
from graph.state import State, StepTask
from tools.registry import StepRefused


def approval_request(tasks: list[StepTask]) -> dict[str, Any]:
    """What the interrupt shows: each step's tool, arguments and purpose."""
    return {"kind": "approval", "answers": ["approve", "reject", {"edit": "{...new args}"}],
            "steps": [{"step_id": t["step"].id, "tool": t["step"].tool, "args": t["args"],
                       "description": t["step"].description} for t in tasks]}


async def approve(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Apply the approval policy to the queued wave; 'ask' interrupts the run."""
    context = runtime_context(runtime)
    wave = state.get("next_steps") or []
    pending = [t for t in wave if not t["approved"]]
    if context.approval == "auto":
        answers: dict[str, Any] = {t["step"].id: "approve" for t in pending}
    elif context.approval == "deny":
        answers = {t["step"].id: "reject" for t in pending}
    else:
        answers = interrupt(approval_request(pending)) or {}

    queued: list[StepTask] = []
    refused: list[StepResult] = []
    for task in wave:
        if task not in pending:
            queued.append(task)
            continue
        answer = answers.get(task["step"].id, "reject")
        if isinstance(answer, dict) and "edit" in answer:
            try:
                deps.registry.check(task["step"].tool, answer["edit"])
            except StepRefused as exc:
                refused.append(StepResult.rejected(task["step"], task["plan_version"],
                                                   exc.type_name, f"edited arguments: {exc}"))
                continue
            queued.append({**task, "args": answer["edit"], "approved": True})
        elif answer == "approve":
            queued.append({**task, "approved": True})
        else:
            refused.append(StepResult.rejected(
                task["step"], task["plan_version"], "NotApproved",
                f"a human or the approval policy ({context.approval}) did not approve this step"))
    return {"next_steps": queued, "results": refused}
