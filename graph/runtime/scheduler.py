"""The step scheduler: each step starts as soon as its own dependencies have succeeded.

LangGraph's supersteps are barriers (every task of a superstep ends before the next one
starts), so one graph task per step would run a plan in waves. Instead one node runs the
plan's ready steps as asyncio tasks and starts each further step the moment its last
dependency succeeds; finished steps are written to the step ledger (`graph.runtime.ledger`) as
they end, so a kill in the middle loses none of them.

A step that changes things starts only once approved: the context's `auto` and `deny`
policies answer at once; under `ask` the step is held, and the scheduler returns when
nothing else can run so that the `approve` node can ask a human. A step that hands its page
to a person (`tools.people`) is held the same way, and runs again once they answered. When
a step fails or needs judgment, no further step starts; the steps in flight finish, then
the reasoning agent decides. When the run's deadline passes, the steps in flight are
cancelled (each is recorded as `cancelled`; a write among them may have taken effect, and a
retry asks first), and the run ends `budget_exhausted`. Under a cost budget
(`max_cost_usd`), a step billed by Nova Act's agent-hour starts only once its whole time
bound, priced, fits what is left (`graph.guards.CostBudget`); otherwise nothing more starts
and the run ends `budget_exhausted` once the steps in flight have finished.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass
from typing import Literal

from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Plan, RunStatus, Step, StepError, StepResult, StepTally, Usage
from graph.guards import CostBudget, Stop, budget_stop, deadline_passed
from graph.runtime.execution import StepRunner
from graph.runtime.progress import ReferenceProblem, ready_steps, resolve_args
from graph.state import StepTask
from tools.auth import Auth, secret_names
from tools.errors import ErrorKind
from tools.registry import StepRefused, ToolRegistry


def standing_answer(approval: str, task: StepTask) -> Literal["approve", "reject"] | None:
    """The answer the approval policy gives without asking: `auto` approves, `deny` rejects,
    `ask` gives none (a human decides), and neither does `auto` for an escalated step."""
    if approval == "auto" and task.get("escalated"):
        return None
    return {"auto": "approve", "deny": "reject"}.get(approval)  # type: ignore[return-value]


def not_approved(task: StepTask, approval: str, because: str | None = None) -> StepResult:
    """The result of a step that a human or the approval policy did not approve; `because`
    is what the person who rejected it said, for the planner."""
    result = StepResult.rejected(
        task["step"], task["plan_version"], ErrorKind.NOT_APPROVED,
        f"a human or the approval policy ({approval}) did not approve this step")
    result.escalated = task.get("escalated")
    result.rejected_because = because
    return result


@dataclass(frozen=True)
class Outcome:
    """What a scheduling round produced: results in the order the steps finished, and the
    steps held back: waiting for a human's approval, or approved but not started (a
    failure or a budget stopped the round first); `stop` when the run's deadline passed
    while steps ran (they were cancelled: the run ends so), or when a step could not start
    within the cost budget."""

    results: list[StepResult]
    held: list[StepTask]
    stop: Stop | None = None


class Scheduler:
    """Runs one plan version's steps as a DAG. Use as `async with`: leaving the block
    cancels whatever still runs.

    `offer` starts steps of a plan that is still being written (read-only ones only);
    `run` takes the whole plan and returns when no further step can start. `cancel` stops
    the steps in flight and records them as `cancelled`.
    """

    def __init__(self, *, plan_version: int, done: dict[str, StepResult], tally: StepTally,
                 unseen_failure: bool, pending: list[StepTask], started_at: float,
                 usage: Usage, cost: CostBudget, context: Context, registry: ToolRegistry,
                 runtime: Runtime[Context] | None, auth: Auth):
        self.version = plan_version
        self.context, self.registry = context, registry
        self.budgets = context.budgets
        self.steps_runner = StepRunner(context, registry, runtime, auth)
        self.started_at, self.usage = started_at, usage
        self.cost = cost
        self.cost_stop: Stop | None = None
        self._reserved: dict[str, float] = {}  # Nova Act steps running: their estimates
        self.escalations: dict[str, str] = {}
        self.tally = tally
        self.done = dict(done)
        self.new: list[StepResult] = []
        self.new_tally = StepTally()
        self.steps: list[Step] = []
        # Which steps may have become ready: every step when it arrives, then the
        # dependents of each step that succeeds. Looking only at these keeps the work per
        # finished step independent of the plan's length.
        self._position: dict[str, int] = {}
        self._dependents: dict[str, list[Step]] = {}
        self._candidates: dict[str, Step] = {}
        self.complete = False
        self.approved = [task for task in pending if task["approved"]]
        self.held = [task for task in pending if not task["approved"]]
        self.running: dict[str, asyncio.Task[None]] = {}
        # Set when a step ends: `run` waits on it rather than on every running task (an
        # `asyncio.wait` over all of them costs work per task at each step's end).
        self._ended = asyncio.Event()
        self._failure: BaseException | None = None
        self._past_deadline = False
        self.cancel_reason = "cancelled"
        # An unobserved failure (a step the approve node rejected, say) means the reasoning
        # agent must look before anything else starts.
        self.stopping = unseen_failure
        # Steps run in the node's context (its trace run and config), wherever they start.
        self._node_context = contextvars.copy_context()

    async def __aenter__(self) -> Scheduler:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.cancel("the run stopped")

    @property
    def dispatched(self) -> bool:
        """True once any step has started or finished in this round."""
        return bool(self.running or self.new)

    def offer(self, step: Step) -> None:
        """A step of a plan still being written, already checked against the registry; it
        starts as soon as its dependencies allow, unless it changes things."""
        self.steps.append(step)
        self._index([step])
        self._launch_ready()

    async def run(self, plan: Plan, escalations: dict[str, str] | None = None) -> Outcome:
        """Run `plan` until no further step can start; return what happened. A step in
        `escalations` that changes things needs a human even under `approval: auto`."""
        self.steps, self.complete = list(plan.steps), True
        self._position, self._dependents = {}, {}
        self._index(self.steps)
        self.escalations = escalations or {}
        self._launch_ready()
        # The run's wall-clock limit: one timer for the round (a bound on each wait would
        # cost a task and a timer per finished step), which wakes the wait below.
        seconds_left = self.started_at + self.budgets.deadline_seconds - time.time()
        deadline = asyncio.get_running_loop().call_later(max(0.0, seconds_left),
                                                         self._deadline_passed)
        try:
            while self.running and self._failure is None and not self._past_deadline:
                self._ended.clear()
                await self._ended.wait()
        finally:
            deadline.cancel()
        stop = None
        if self._past_deadline and self.running:
            # What still runs is cancelled, not waited for.
            stop = Stop(RunStatus.BUDGET_EXHAUSTED, deadline_passed(self.budgets))
            await self.cancel(f"the run's {stop.reason}")
        if self._failure is not None:
            # Not a tool failure (those are results) but storage: stop everything.
            await self.cancel("the run stopped on an error")
            raise self._failure
        return Outcome(self.new, self.held + self.approved, stop or self.cost_stop)

    def _deadline_passed(self) -> None:
        """The run's deadline passed: `run` stops waiting for its steps."""
        self._past_deadline = True
        self._ended.set()

    async def cancel(self, reason: str) -> None:
        """Cancel the steps in flight; each is recorded as `cancelled` with `reason`."""
        self.stopping, self.cancel_reason = True, reason
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _over_budget(self) -> bool:
        """True when one more step would pass a budget (steps, tool calls, tokens, time)."""
        return budget_stop(tally=self.tally + self.new_tally, usage=self.usage,
                           started_at=self.started_at, budgets=self.budgets,
                           in_flight=len(self.running)) is not None

    def _reserve_cost(self, task: StepTask) -> Stop | None:
        """Reserve the cost budget a step may spend, or the `Stop` that keeps it from
        starting. Only a tool billed by Nova Act's agent-hour spends any: its estimate is
        its whole time bound, one call's (`browser_timeout_seconds`, the SDK's own limit)
        for each attempt the step may make, at the agent-hour price: retries happen within
        the step, with no check between them."""
        step = task["step"]
        try:
            dependency = self.registry.get(step.tool).dependency
        except StepRefused:
            return None  # it will not run (a plan of an earlier registry)
        if dependency is None or dependency.agent_time_bound_by is None:
            return None
        seconds = getattr(self.context, dependency.agent_time_bound_by) * (
            1 + self.context.max_retries)
        estimate = self.steps_runner.nova_act_price.cost_usd(seconds)
        stop = self.cost.reserve(
            estimate, f"step {step.id} ({step.tool}, up to {seconds:g} s of Nova Act)")
        if stop is None:
            self._reserved[step.id] = estimate or 0.0
        return stop

    def _task_of(self, step: Step) -> StepTask:
        """The step with its references resolved; a step that changes things starts
        unapproved."""
        try:
            args, problem = resolve_args(step.args, self.done), None
        except ReferenceProblem as exc:
            args, problem = step.args, str(exc)
        refused: StepRefused | None = None
        if problem is None and args != step.args and secret_names(args):
            # A step that uses a secret takes no reference (`SecretRules`): this one came
            # with the data.
            refused = StepRefused(ErrorKind.SECRET_STEERED, "a ${secret.…} reference came "
                                  "from another step's output: tool output must not choose "
                                  "a secret")
            problem = str(refused)
        try:
            changes = step.side_effects or self.registry.get(step.tool).changes_things(args)
        except StepRefused as exc:  # a plan of an earlier registry (a retried run)
            changes, problem, refused = step.side_effects, str(exc), exc
        task = StepTask(step=step, args=args, plan_version=self.version, problem=problem,
                        approved=problem is not None or not changes, side_effects=changes)
        if refused is not None:
            task["problem_kind"] = refused.kind
        if changes and step.id in self.escalations:
            task["escalated"] = self.escalations[step.id]
        if (session := args.get("session")) and any(
                later.args.get("session") == session for later in self._dependents.get(
                    step.id, ())):
            # Steps share a browser session by naming it (`tools.browser`): this one's
            # slot is kept for the next, so a task that started finishes first.
            task["session_continues"] = True
        return task

    def _launch_ready(self) -> None:
        """Start every step that may start now.

        The approval policy answers every ready step that changes things first; a denial,
        like a failure, stops what would start after it, not the steps ready beside it."""
        if self.stopping:
            return
        ready: list[StepTask] = []
        denied = False
        for task in self._take_ready():
            if task["approved"]:
                ready.append(task)
            elif self.complete:  # a step that changes things waits for the whole plan
                answer = standing_answer(self.context.approval, task)
                if answer is None:
                    self.held.append(task)
                elif answer == "reject":
                    self._record(task["step"], not_approved(task, self.context.approval),
                                 stops=False)
                    denied = True
                else:
                    ready.append({**task, "approved": True})
        for index, task in enumerate(ready):
            if not self.stopping and self._over_budget():
                self.stopping = True  # observe reports which budget ran out
            if not self.stopping and (stop := self._reserve_cost(task)):
                self.stopping, self.cost_stop = True, stop
            if self.stopping:
                # Approved steps that change things and did not start stay approved.
                self.approved += [t for t in ready[index:] if t.get("side_effects")]
                return
            self._launch(task)
        self.stopping = self.stopping or denied

    def _index(self, steps: list[Step]) -> None:
        """Know `steps`: their place in the plan and their dependents; each may be ready."""
        for step in steps:
            self._position[step.id] = len(self._position)
            for dep in step.depends_on:
                self._dependents.setdefault(dep, []).append(step)
            self._candidates[step.id] = step

    def _take_ready(self) -> list[StepTask]:
        """Take the steps that may start now: approved held steps first, then the plan's
        not started whose dependencies all succeeded, in plan order. Each is taken once:
        the candidates looked at are cleared."""
        approved, self.approved = self.approved, []
        taken = {task["step"].id for task in approved + self.held} | set(self.running)
        candidates = sorted(self._candidates.values(), key=lambda s: self._position[s.id])
        self._candidates = {}
        fresh = [self._task_of(step) for step in ready_steps(candidates, self.done)
                 if step.id not in taken]
        return approved + fresh

    def _launch(self, task: StepTask) -> None:
        step_id = task["step"].id
        self.running[step_id] = asyncio.create_task(
            self._run(task), name=f"step {step_id}", context=self._node_context.copy())

    async def _run(self, task: StepTask) -> None:
        step = task["step"]
        try:
            result = await self.steps_runner.run(task)
        except asyncio.CancelledError:
            # Cancelled by this scheduler (or with the run): the record is the result.
            result = StepResult(step_id=step.id, tool=step.tool, plan_version=self.version,
                                status="cancelled",
                                error=StepError(type="Cancelled", message=self.cancel_reason))
        except Exception as exc:  # the step ledger failed: `run` stops the round
            self._failure = self._failure or exc
            return
        finally:
            self.running.pop(step.id, None)
            self._ended.set()
        if (estimate := self._reserved.pop(step.id, None)) is not None:
            self.cost.settle(estimate, result.nova_act_cost_usd or 0.0)
        if result.hand_off is not None:
            # Held like a step waiting for approval: the approve node asks the person, and
            # the step runs again with their answer. The steps beside it go on.
            earlier = {key: value for key, value in task.items() if key != "person"}
            self.held.append({**earlier, "approved": False,  # type: ignore[typeddict-item]
                              "hand_off": result.hand_off})
            return
        self._record(step, result)
        self._launch_ready()

    def _record(self, step: Step, result: StepResult, stops: bool = True) -> None:
        self.done[step.id] = result
        self.new.append(result)
        self.new_tally += StepTally.of([result])
        if result.status == "ok":
            self._candidates.update((s.id, s) for s in self._dependents.get(step.id, ()))
        if stops and (result.status != "ok" or step.needs_judgment):
            self.stopping = True
