"""`review`: under `review_plan`, the whole plan waits for a person before any step runs.

One interrupt shows the plan (`review_request`): each step's tool and arguments, whether
it writes, the hosts it reaches and the secrets it uses, by name. The answer is a
`PlanReview` (`graph.answers`): `approve` runs the plan; `edit` runs the person's plan
instead, checked as any plan is (the `Plan` model, then the registry), as a new plan
version; `reject` sends the person's reason to the planner, whose new plan comes back here.
An answer that does not read, or an edited plan the registry refuses, is refused and asked
again. Steps that change things still wait for approval under `approval: ask`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from langgraph.runtime import Runtime

from graph.answers import PLAN_REVIEW, AnswerRefused, PlanReview, ask, read_plan_review
from graph.context import Context
from graph.contracts import Plan, Step
from graph.events import PlanReviewAnswered, emit, writer_of
from graph.guards import remember_plan
from graph.nodes.base import (
    NodeDeps,
    load_auth,
    never_raises,
    plan_escalations,
    runtime_context,
)
from graph.runtime.early import refuse_invalid_steps
from graph.runtime.progress import references_in
from graph.runtime.secrets import NO_SECRETS, SecretRules
from graph.state import State
from tools.auth import secret_names
from tools.registry import ToolRegistry

# The arguments that name where a step goes: `http_request`'s and the browser's `url`,
# Nova Act's `start_url`. A step without one acts where an earlier step of its browser
# session left off, or on what its tool's own source reaches (an MCP server).
URL_ARGUMENTS = ("url", "start_url")


def step_hosts(step: Step) -> list[str]:
    """The hosts the step reaches, from its URL arguments (`URL_ARGUMENTS`); a URL that an
    earlier step's output gives is shown as that reference (its host is known only when
    the step runs, and the allowlist applies either way)."""
    hosts = []
    for name in URL_ARGUMENTS:
        value = step.args.get(name)
        if not isinstance(value, str):
            continue
        if references_in(value):
            hosts.append(value)
        elif host := urlsplit(value).netloc:
            hosts.append(host)
    return hosts


def review_request(plan: Plan, version: int, registry: ToolRegistry,
                   escalations: dict[str, str]) -> dict[str, Any]:
    """What the review's interrupt shows: the plan, and for each step whether it `writes`
    (then also `destructive` and `escalated`, as an approval request says them), the
    `hosts` it reaches and the `secrets` it uses, by name."""
    def shown(step: Step) -> dict[str, Any]:
        entry = registry.get(step.tool)  # a plan under review passed the registry's checks
        writes = step.side_effects or entry.changes_things(step.args)
        return {"step_id": step.id, "tool": step.tool, "args": step.args,
                "depends_on": step.depends_on, "description": step.description,
                "writes": writes, "hosts": step_hosts(step),
                "secrets": sorted(secret_names(step.args)),
                **({"destructive": True} if writes and entry.destructive else {}),
                **({"escalated": escalations[step.id]}
                   if writes and step.id in escalations else {})}

    return {"kind": PLAN_REVIEW, "plan_version": version, "goal": plan.goal,
            "steps": [shown(step) for step in plan.steps],
            "answers": [{"action": "approve"}, {"action": "edit", "plan": "{...the plan to run}"},
                        {"action": "reject", "reason": "why"}]}


def checked_review(value: Any, registry: ToolRegistry, version: int,
                   secrets: SecretRules = NO_SECRETS) -> PlanReview:
    """`value` as a `PlanReview` whose edited plan, if any, the registry accepts (and the
    run's `secrets`: a person's edit is as trusted as the task); `AnswerRefused` saying
    what is wrong."""
    review = read_plan_review(value)
    if review.plan is not None and (refused := refuse_invalid_steps(review.plan, registry,
                                                                    version, secrets)):
        problems = "; ".join(f"{r.step_id}: {r.error.message}" for r in refused if r.error)
        raise AnswerRefused(f"the edited plan has invalid steps: {problems}")
    return review


@never_raises("review")
async def review(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Ask a person to approve, edit or reject the plan; record their answer."""
    plan, version = state["plan"], state["plan_version"]
    assert plan is not None, "review follows a plan"
    request = review_request(plan, version, deps.registry, state.get("escalations") or {})
    secrets = SecretRules.of(await load_auth(runtime_context(runtime)))
    answer = ask(request, lambda value: checked_review(value, deps.registry, version + 1,
                                                       secrets))
    edited = answer.plan
    emit(writer_of(runtime), PlanReviewAnswered(
        plan_version=version, action=answer.action, by=answer.by, reason=answer.reason,
        edited_version=version + 1 if edited is not None else None))
    update: dict[str, Any] = {"awaiting_review": False}
    # A plan made before any tool output was read is what later plans are checked
    # against (`graph.runtime.taint`): the person's edit of it takes its place, and a
    # rejected one leaves the place to the plan written next.
    first = state.get("first_plan") == plan
    if answer.action == "reject":
        return update | {"review_feedback": answer.reason,
                         **({"first_plan": None} if first else {})}
    if edited is None:
        return update
    first_plan = edited if first else state.get("first_plan") or edited
    return update | {
        "plan": edited, "plan_version": version + 1, "first_plan": first_plan,
        "escalations": plan_escalations(state, runtime_context(runtime), edited, first_plan),
        "plan_fingerprints": remember_plan(edited.fingerprint(),
                                           state.get("plan_fingerprints", []))}
