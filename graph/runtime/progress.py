"""Where a plan stands: which steps are done, which can run next, with what arguments."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from graph.contracts import Plan, Step, StepResult

# `${s1.output...}`; never `${secret.NAME}`, which names a secret (`tools.auth`), not a step.
REFERENCE = re.compile(r"\$\{(?!secret\.)([A-Za-z0-9_.-]+)\}")


class ReferenceProblem(Exception):
    """A `${step.output...}` reference that cannot be resolved."""


def results_of_plan(results: list[StepResult], plan_version: int) -> dict[str, StepResult]:
    """The results of one plan version, by step id."""
    return {r.step_id: r for r in results if r.plan_version == plan_version}


def ready_steps(steps: Iterable[Step], done: dict[str, StepResult]) -> list[Step]:
    """Steps not yet run whose dependencies all succeeded, in plan order."""
    return [
        step
        for step in steps
        if step.id not in done
        and all(dep in done and done[dep].status == "ok" for dep in step.depends_on)
    ]


def plan_finished(plan: Plan, done: dict[str, StepResult]) -> bool:
    """True when every step of the plan has a result."""
    return all(step.id in done for step in plan.steps)


def plan_succeeded(plan: Plan, done: dict[str, StepResult]) -> bool:
    """True when every step of the plan succeeded."""
    return all(step.id in done and done[step.id].status == "ok" for step in plan.steps)


def decision_trigger(plan: Plan, new: list[StepResult], done: dict[str, StepResult]) -> str | None:
    """Why the reasoning agent must look now, or None for routine progress.

    It must look when a step did not succeed, when the plan is finished, or when a
    finished step is marked `needs_judgment`. Anything else, and no new result at all
    (it decided on these already), costs no reasoning call.
    """
    if not new:
        return None
    failed = [r.step_id for r in new if r.status != "ok"]
    if failed:
        return f"steps {failed} did not succeed"
    if plan_finished(plan, done):
        return "the plan finished"
    judged = {s.id for s in plan.steps if s.needs_judgment}
    to_judge = [r.step_id for r in new if r.step_id in judged]
    if to_judge:
        return f"steps {to_judge} need your judgment before the plan goes on"
    return None


def references_in(value: Any) -> list[str]:
    """Every `${...}` reference path in an argument value."""
    if isinstance(value, str):
        return REFERENCE.findall(value)
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in references_in(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in references_in(item)]
    return []


def check_references(step: Step) -> str | None:
    """Why the step's references are invalid (not `<dep>.output...` of a dependency), or None."""
    for ref in references_in(step.args):
        step_id, _, rest = ref.partition(".")
        if step_id not in step.depends_on:
            return f"reference ${{{ref}}} names {step_id!r}, which is not in depends_on"
        if not (rest == "output" or rest.startswith("output.")):
            return f"reference ${{{ref}}} must read '{step_id}.output' or a part of it"
    return None


def _lookup(ref: str, done: dict[str, StepResult]) -> Any:
    step_id, *path = ref.split(".")
    value: Any = done[step_id].output
    for part in path[1:]:
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise ReferenceProblem(f"${{{ref}}}: no {part!r} in the output") from None
    return value


def resolve_args(args: Any, done: dict[str, StepResult]) -> Any:
    """Replace `${s1.output.a.0.b}` with that value from the finished step s1.

    A string that is one whole reference takes the value as is (a number stays a number);
    a reference inside a longer string is written into it as text.
    """
    if isinstance(args, dict):
        return {key: resolve_args(value, done) for key, value in args.items()}
    if isinstance(args, list):
        return [resolve_args(value, done) for value in args]
    if not isinstance(args, str):
        return args
    whole = REFERENCE.fullmatch(args)
    if whole:
        return _lookup(whole.group(1), done)
    return REFERENCE.sub(lambda match: str(_lookup(match.group(1), done)), args)
