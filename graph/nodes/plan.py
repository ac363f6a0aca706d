"""`plan`: the reasoning agent writes a plan; its steps start while it is still being written.

Every step is checked against the registry before it runs. While the planner streams the
plan, each read-only step whose JSON object is complete (its closing brace arrived), that
validates, and that names only earlier steps as dependencies starts at once (`EarlyStart`);
steps that change things wait for the whole plan and for approval. A plan that turns out
invalid cancels what it started, and the results say so. Once the plan is whole, the
scheduler runs it until the reasoning agent has something to decide.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite
from pydantic import ValidationError

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, Step, StepResult, StepTally, Usage
from graph.guards import budget_stop, remember_plan, repeated_plan, replan_stop
from graph.nodes.base import NodeDeps, keep, never_raises, reasoning_failed, runtime_context
from graph.reasoning import ReasoningError
from graph.runtime.progress import check_references, references_in, results_of_plan
from graph.runtime.scheduler import Scheduler
from graph.runtime.taint import escalations, trusted_text, untrusted_text
from graph.state import State
from tools.registry import StepRefused, ToolRegistry


def step_refusal(step: Step, registry: ToolRegistry) -> StepRefused | None:
    """Why the step must not run (unknown tool, bad arguments or references), or None."""
    try:
        deferred = frozenset(key for key, value in step.args.items() if references_in(value))
        registry.check(step.tool, step.args, deferred)
        problem = check_references(step)
        if problem:
            raise StepRefused("InvalidReference", problem)
    except StepRefused as exc:
        return exc
    return None


def refuse_invalid_steps(plan: Plan, registry: ToolRegistry, version: int) -> list[StepResult]:
    """A `rejected` result for each step naming an unknown tool, bad arguments or references."""
    return [StepResult.rejected(step, version, refusal.type_name, str(refusal))
            for step in plan.steps if (refusal := step_refusal(step, registry))]


class EarlyStart:
    """Starts a plan's steps while the planner is still writing it (`on_steps`).

    Each answer the planner gives is an attempt; when an attempt turns out invalid, what it
    started is cancelled and kept in `discarded`, and the next attempt that starts steps
    gets the next plan version, so its results cannot be mistaken for the invalid one's.
    Leaving the `async with` block cancels whatever still runs.
    """

    def __init__(self, make: Callable[[int, list[StepResult]], Scheduler], version: int,
                 registry: ToolRegistry):
        self.make, self.registry = make, registry
        self.version = version
        self.discarded: list[StepResult] = []
        self.scheduler = make(version, [])
        self.attempt = 0
        self.read = 0  # step objects of this attempt looked at so far
        self.offered: set[str] = set()
        self.closed = False

    async def __aenter__(self) -> EarlyStart:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.scheduler.cancel("the run stopped")

    def results(self) -> list[StepResult]:
        """Every result of a step started early, discarded attempts' included."""
        return self.discarded + self.scheduler.new

    async def on_steps(self, attempt: int, steps: list[Any]) -> None:
        """Offer each complete step of the answer being written not looked at yet."""
        if attempt != self.attempt:
            await self._discard(f"the planner's answer {self.attempt + 1} was not a valid plan")
            self.attempt = attempt
        while not self.closed and self.read < len(steps):
            raw, self.read = steps[self.read], self.read + 1
            await self._offer(raw)

    async def cancel(self, reason: str) -> None:
        """Cancel every step started early (the finished plan is not valid)."""
        await self.scheduler.cancel(reason)

    async def _offer(self, raw: Any) -> None:
        try:
            step = Step.model_validate(raw)
        except ValidationError:
            step = None
        if step is None or step.id in self.offered or step_refusal(step, self.registry):
            # The plan cannot be valid: stop what it started rather than let it run on.
            self.closed = True
            await self.scheduler.cancel("the plan being written has an invalid step")
            return
        if set(step.depends_on) <= self.offered:
            # Only steps whose dependencies came earlier (a later one may still be valid,
            # but starts with the whole plan); the scheduler holds back writes itself.
            self.offered.add(step.id)
            self.scheduler.offer(step)

    async def _discard(self, reason: str) -> None:
        """A new answer begins: the last one was invalid, and what it started is cancelled."""
        await self.scheduler.cancel(reason)
        if self.scheduler.dispatched:
            self.discarded += self.scheduler.new
            self.version += 1
        self.scheduler = self.make(self.version, self.discarded)
        self.read, self.offered, self.closed = 0, set(), False


@never_raises("plan")
async def plan(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Ask for a plan (or a new one after `replan`), starting its steps as they arrive;
    validate it; run it until there is something to decide."""
    context = runtime_context(runtime)
    started_at = state.get("started_at") or time.time()
    previous = state.get("plan")
    replans = state.get("replans", 0) + (1 if previous else 0)
    tally = state.get("tally", StepTally())
    stalled = (state.get("stalled_replans", 0) + 1
               if previous and tally.ok == state.get("ok_at_last_plan", 0) else 0)
    recent = state.get("recent", [])
    update: dict[str, Any] = {
        "started_at": started_at, "replans": replans, "stalled_replans": stalled,
        "ok_at_last_plan": tally.ok, "decision": None, "pending_steps": [],
        "unseen": Overwrite([]),
    }
    usage = state.get("usage") or Usage()
    stop = budget_stop(tally=tally, usage=usage, started_at=started_at, context=context)
    if previous and not stop:
        stop = replan_stop(replans=replans, stalled_replans=stalled, context=context)
    if stop:
        return update | {"status": stop[0], "reason": stop[1]}

    def make(version: int, discarded: list[StepResult]) -> Scheduler:
        return deps.scheduler(runtime, {**state, "started_at": started_at},
                              plan_version=version, extra=discarded)

    async with EarlyStart(make, state.get("plan_version", 0) + 1, deps.registry) as early:
        try:
            reply = await deps.reasoner(runtime).plan(
                task=state["task"], tools=deps.registry.describe(),
                summary=state.get("summary", ""), results=recent,
                previous_plan=previous, max_attempts=context.max_plan_attempts,
                on_steps=early.on_steps,
            )
        except ReasoningError as exc:
            await early.cancel("no valid plan came")
            return update | reasoning_failed(exc) | await keep(runtime, early.results())

        new_plan, version = reply.value, early.version
        fingerprint = new_plan.fingerprint()
        seen = state.get("plan_fingerprints", [])
        update |= {"plan": new_plan, "plan_version": version, "usage": reply.usage,
                   "plan_fingerprints": remember_plan(fingerprint, seen)}
        stop = repeated_plan(fingerprint, seen) or budget_stop(
            tally=tally, usage=usage + reply.usage, started_at=started_at, context=context)
        if stop:
            await early.cancel(f"the run stopped: {stop[1]}")
            return update | {"status": stop[0], "reason": stop[1],
                             **await keep(runtime, early.results())}

        refused = refuse_invalid_steps(new_plan, deps.registry, version)
        if refused:
            # Nothing more of a plan with an invalid step runs: the planner fixes it first.
            await early.cancel("the plan has invalid steps")
            ids = [r.step_id for r in refused]
            started = early.results()
            return update | await keep(runtime, started + refused) | {
                "plan_results": Overwrite(results_of_plan(started + refused, version)),
                "decision": Decision(action="replan", reason=f"steps {ids} were rejected"),
            }
        if not new_plan.steps:
            return update | {"status": RunStatus.COMPLETED, "reason": "the plan needs no tool",
                             "plan_results": Overwrite({})}
        first_plan = state.get("first_plan") or new_plan
        # What the planner read: a value it copies from tool output is in one of these.
        escalated = escalations(
            new_plan, untrusted_text(recent, state.get("summary", "")),
            trusted_text(state["task"], context.plan_variables, first_plan))
        update |= {"first_plan": first_plan, "escalations": escalated}
        outcome = await early.scheduler.run(new_plan, escalated)
    # Results of discarded attempts belong to no plan the agent must judge now.
    return update | await keep(runtime, early.discarded + outcome.results) | {
        "plan_results": Overwrite(results_of_plan(outcome.results, version)),
        "unseen": Overwrite([r.step_id for r in outcome.results]),
        "pending_steps": outcome.held}
