"""Early start: a plan's steps start while the planner is still writing it.

While the planner streams the plan, each read-only step whose JSON object is complete (its
closing brace arrived), that passes the registry's checks and names only earlier steps as
dependencies starts at once; steps that change things wait for the whole plan and for
approval. A plan that turns out invalid cancels what it started, and the results say so.
Every step is checked against the registry first (`step_refusal`): an unknown tool, bad
arguments, a bad reference or a secret used where it may not be never run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from graph.contracts import Plan, Step, StepResult
from graph.runtime.progress import check_references, references_in
from graph.runtime.scheduler import Outcome, Scheduler
from graph.runtime.secrets import NO_SECRETS, SecretRules
from tools.errors import ErrorKind
from tools.registry import StepRefused, ToolRegistry


def step_refusal(step: Step, registry: ToolRegistry,
                 secrets: SecretRules = NO_SECRETS) -> StepRefused | None:
    """Why the step must not run (unknown tool, bad arguments or references, a use of a
    secret that `secrets` refuses), or None."""
    try:
        deferred = frozenset(key for key, value in step.args.items() if references_in(value))
        tool = registry.check(step.tool, step.args, deferred)
        problem = check_references(step)
        if problem:
            raise StepRefused(ErrorKind.INVALID_REFERENCE, problem)
    except StepRefused as exc:
        return exc
    return secrets.refusal(step, tool)


def refuse_invalid_steps(plan: Plan, registry: ToolRegistry, version: int,
                         secrets: SecretRules = NO_SECRETS) -> list[StepResult]:
    """A `rejected` result for each step `step_refusal` refuses."""
    return [StepResult.rejected(step, version, refusal.kind, str(refusal))
            for step in plan.steps if (refusal := step_refusal(step, registry, secrets))]


class EarlyStart:
    """Starts a plan's steps while the planner is still writing it (`on_steps`).

    Each answer the planner gives is an attempt; when an attempt turns out invalid, what it
    started is cancelled and kept in `discarded`, and the next attempt that starts steps
    gets the next plan version, so its results cannot be mistaken for the invalid one's.
    Leaving the `async with` block cancels whatever still runs.
    """

    def __init__(self, make: Callable[[int, list[StepResult]], Scheduler], version: int,
                 registry: ToolRegistry, secrets: SecretRules = NO_SECRETS):
        self.make, self.registry, self.secrets = make, registry, secrets
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

    async def run(self, plan: Plan, escalations: dict[str, str]) -> Outcome:
        """Run the whole, valid `plan` on from what started early, until no further step can
        start (see `Scheduler.run`)."""
        return await self.scheduler.run(plan, escalations)

    async def _offer(self, raw: Any) -> None:
        try:
            step = Step.model_validate(raw)
        except ValidationError:
            step = None
        if step is None or step.id in self.offered or step_refusal(step, self.registry,
                                                                   self.secrets):
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
