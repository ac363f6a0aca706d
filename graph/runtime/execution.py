"""Run one step: its attempts (time limits, retries, waits for a dependency that is down),
the step ledger, a named trace run, live events.

A `StepRunner` holds what every step of a run shares (its tools, sandbox, bounds, ledger
and stream) and hands each attempt a `StepContext` (`tools.step`): what the step may use
is passed down, never read from ambient state. Every outcome is a typed `StepResult`; a
tool's failure never raises out of `StepRunner.run`. The scheduler
(`graph.runtime.scheduler`) calls it once per step, as soon as the step may start.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore

from graph.checkpoints import run_folder
from graph.context import Context
from graph.contracts import StepAttempt, StepError, StepRequest, StepResult
from graph.events import (
    Attempt,
    StepFinished,
    StepReplayed,
    StepRetried,
    StepSent,
    StepStarted,
    StepWaiting,
    emit,
    writer_of,
)
from graph.runtime.attempts import (
    Retry,
    Stop,
    Uncertain,
    WaitForOutage,
    as_json,
    attempt_tool,
    backoff,
    classify,
    effect_uncertain,
)
from graph.runtime.ledger import StepLedger, step_key, uncertain_result
from graph.state import StepTask
from tools.auth import Auth
from tools.backoff import OutageWait
from tools.errors import ErrorKind
from tools.registry import BoundBy, RegisteredTool, StepRefused, ToolRegistry, callbacks_listening
from tools.step import AgentTime, StepContext, StepFiles, StepWaits


def thread_of(runtime: Runtime[Context] | None) -> str:
    """The run's thread id ('default' for a graph compiled without a checkpointer)."""
    info = getattr(runtime, "execution_info", None)
    return getattr(info, "thread_id", None) or "default"


def store_of(runtime: Runtime[Context] | None) -> BaseStore | None:
    """The run's store, which holds its step ledger; None for a graph compiled without one
    (every result then lives in the state)."""
    return getattr(runtime, "store", None)


class StepRunner:
    """Runs the steps of one run: what they share is read once from the run's context, and
    each step gets the run's `auth` (`graph.runtime.secrets.run_auth`; a step sent to an
    executor deployment is given the deployment's)."""

    def __init__(self, context: Context, registry: ToolRegistry,
                 runtime: Runtime[Context] | None, auth: Auth):
        self.registry = registry
        self.thread_id = thread_of(runtime)
        self.policy = context.sandbox_policy()
        self.timeouts = context.timeouts
        self.max_retries = context.max_retries
        self.screenshots = context.step_screenshots
        self.browser = context.remote_browser()
        self.auth = auth
        self.executor_url = context.executor_url
        self.executor_tools = context.executor_tools
        self.store = store_of(runtime)
        self.writer = writer_of(runtime)
        self.ledger = StepLedger(self.store, self.thread_id) if self.store is not None else None
        self.nova_act_price = context.nova_act_price()

    def runs_remotely(self, entry: RegisteredTool) -> bool:
        """Whether a step of `entry` goes to the executor deployments (`executor_url`,
        `executor_tools`); a tool whose session lives in this process never does."""
        return bool(self.executor_url) and not entry.in_process and any(
            fnmatchcase(entry.name, pattern) for pattern in self.executor_tools)

    async def run(self, task: StepTask) -> StepResult:
        """Execute one step with a time limit, retrying only errors marked retryable.

        With a store, the step's result is written to the ledger when it ends, and a step
        the ledger already holds is replayed, not run (see `graph.runtime.ledger`)."""
        step = task["step"]
        side_effects = bool(task.get("side_effects"))
        # The key hashes the step's arguments: made only for the ledger or a write's key.
        key = step_key(self.thread_id, task) if self.ledger or side_effects else ""
        entry = await self.ledger.entry(key) if self.ledger else None
        if entry and entry["state"] == "done":
            # It ran and its result was written, but the checkpoint after it was lost.
            emit(self.writer, StepReplayed(step_id=step.id, tool=step.tool))
            return StepResult.model_validate(entry["result"])

        clock = time.perf_counter()
        base: dict[str, Any] = {
            "step_id": step.id, "tool": step.tool, "plan_version": task["plan_version"],
            "started_at": datetime.now(UTC), "escalated": task.get("escalated")}
        emit(self.writer, StepStarted(step_id=step.id, tool=step.tool))
        attempt_log: list[Attempt] = []
        # A tool that must wait before it can run (for a browser slot) says so as it starts to.
        waits = StepWaits(on_wait=lambda reason: emit(self.writer, StepWaiting(
            step_id=step.id, tool=step.tool, reason=reason)),
            session_continues=bool(task.get("session_continues")))
        agent_time = AgentTime()

        async def run_step(task: StepTask) -> StepResult:
            if task.get("problem"):
                return StepResult(**base, status="error", error=StepError(
                    type=task.get("problem_kind") or ErrorKind.REFERENCE_ERROR,
                    message=task["problem"] or ""))
            try:
                tool = self.registry.get(step.tool)
            except StepRefused as exc:  # a plan of an earlier registry (a retried run)
                return StepResult(**base, status="error",
                                  error=StepError(type=exc.kind, message=str(exc)))
            if entry and not tool.safe_to_repeat and "person" not in task:
                # It started before a crash and may have acted (after a hand-off it did:
                # the person's answer continues it).
                return uncertain_result(base)
            if side_effects and self.ledger:
                await self.ledger.started(key, task)
            files = StepFiles(run_folder(self.thread_id), f"v{task['plan_version']}-{step.id}")
            context = StepContext(
                policy=self.policy, scope=self.thread_id,
                idempotency_key=key if side_effects else None,
                files=files if self.screenshots else None, waits=waits,
                browser=self.browser, auth=self.auth, store=self.store,
                agent_time=agent_time, hand_off=task.get("hand_off"),
                person=task.get("person"), hand_off_files=files,
                **({"stream_writer": self.writer} if self.writer else {}))
            return await self._attempts(task, tool, base, context, attempt_log)

        if callbacks_listening():
            # One named run per step in traces (LangSmith), with what a reader filters on.
            # Otherwise the run is not made: setting it up cost a third of a step's own CPU.
            traced = RunnableLambda(run_step, name=f"step {step.id}")
            result = await traced.ainvoke(task, {"metadata": {
                "thread_id": self.thread_id, "step_id": step.id, "tool": step.tool,
                "plan_version": task["plan_version"]}})
        else:
            result = await run_step(task)
        result.duration_ms = (time.perf_counter() - clock) * 1000
        result.waited = waits.describe()
        if seconds := round(agent_time.seconds, 3):
            # Priced as it ends, at the price in force then (as a reasoning call is).
            result.nova_act_seconds = seconds
            result.nova_act_cost_usd = self.nova_act_price.cost_usd(seconds)
        if result.hand_off is not None:
            # Not a result: the scheduler holds the step until a person answers, then it
            # runs again (so nothing goes to the ledger, which would replay it).
            emit(self.writer, StepWaiting(step_id=step.id, tool=step.tool,
                                          reason=f"a person: {result.hand_off.asked}"))
            return result
        if self.ledger:
            await self.ledger.done(key, result, side_effects)
        emit(self.writer, StepFinished(
            step_id=step.id, tool=step.tool, status=result.status,
            duration_ms=round(result.duration_ms, 1), attempts=result.attempts,
            started=round(base["started_at"].timestamp(), 3),
            plan_version=task["plan_version"], error=result.error.type if result.error else None,
            attempt_log=attempt_log, nova_act_seconds=result.nova_act_seconds or None,
            nova_act_cost_usd=result.nova_act_cost_usd))
        return result

    async def _attempts(self, task: StepTask, tool: RegisteredTool, base: dict[str, Any],
                        step: StepContext, attempt_log: list[Attempt]) -> StepResult:
        """Attempt the step until one succeeds or `classify` says the step ends; each
        attempt goes to `attempt_log` as it ends."""
        seconds, setting = self.timeouts.of_call(tool.bound_by)
        dependency = tool.depends_on(task["args"])
        keyless_write = bool(task.get("side_effects")) and not tool.safe_to_repeat
        outage = _Outage(self.timeouts.dependency_wait_seconds, step.waits)
        # Under a dependency's own bound, the attempts after an error (a Playwright timeout,
        # say) share it: a stalled dependency that fails one attempt must not get a whole
        # bound again. Outage waits are not counted (the dependency was down, then back).
        shared = setting != "step_timeout_seconds"
        attempts = retries = 0
        spent = 0.0
        sent = False  # whether any attempt may have reached the tool
        while True:
            attempts += 1
            limit = seconds - spent if shared else seconds
            began, started = time.monotonic(), time.time()
            attempt = await self._attempt(task, tool, step, limit)
            spent += time.monotonic() - began
            error = (None if attempt.status == "ok"
                     else _named(attempt, dependency, limit, seconds, setting))
            attempt_log.append(Attempt(started=round(started, 3), ended=round(time.time(), 3),
                                       status=attempt.status, error=error.type if error else None))
            if error is None:
                outage.over()
                return StepResult(**base, status="ok", attempts=attempts, output=attempt.output)
            sent = sent or not attempt.not_sent
            verdict = classify(attempt.model_copy(update={"error": error}),
                               keyless_write=keyless_write,
                               retries_left=self.max_retries - retries,
                               seconds_left=seconds - spent if shared else None)
            if isinstance(verdict, WaitForOutage):
                down = (f"the executor at {attempt.executor}" if error.kind.of_executor
                        else dependency)
                if await outage.wait(down, error):
                    spent = 0.0  # back (or trying again): a whole bound for its answer
                    continue
                error = error.model_copy(update={"message": error.message + outage.gave_up(),
                                                 "retryable": False})
            outage.over()
            if isinstance(verdict, Uncertain):
                return StepResult(**base, status=attempt.status, error=effect_uncertain(error),
                                  attempts=attempts)
            if isinstance(verdict, WaitForOutage | Stop):
                return StepResult(**base, status=attempt.status, error=error,
                                  attempts=attempts, not_sent=not sent,
                                  hand_off=attempt.hand_off)
            assert isinstance(verdict, Retry)
            retries += 1
            emit(self.writer, StepRetried(step_id=task["step"].id, attempt=attempts,
                                          error=error.type))
            await asyncio.sleep(backoff(retries))

    async def _attempt(self, task: StepTask, tool: RegisteredTool, step: StepContext,
                       limit: float) -> StepAttempt:
        """One attempt, in this process or on an executor deployment."""
        if not self.runs_remotely(tool):
            return await attempt_tool(self.registry, tool.name, task["args"], step, limit)
        attempt = await self._attempt_remotely(task, step, limit)
        emit(self.writer, StepSent(step_id=task["step"].id, status=attempt.status,
                                   executor=attempt.executor))
        return attempt

    async def _attempt_remotely(self, task: StepTask, step: StepContext,
                                timeout: float) -> StepAttempt:
        """One attempt on an executor deployment; its screenshot is kept in this run's
        folder, as an in-process step's would be."""
        from graph.runtime.remote import remote_executor  # only runs that use one load it

        assert self.executor_url is not None
        request = StepRequest(
            tool=task["step"].tool, args=task["args"], step_id=task["step"].id,
            plan_version=task["plan_version"], thread=step.scope,
            idempotency_key=step.idempotency_key, timeout_seconds=timeout,
            policy=step.policy, screenshot=step.files is not None, trace=_trace_headers())
        attempt = await remote_executor(self.executor_url).attempt(request)
        step.agent_time.add(attempt.nova_act_seconds)
        if attempt.screenshot and step.files is not None:
            image = base64.b64decode(attempt.screenshot)
            await asyncio.to_thread(step.files.save_screenshot, image)
        # Redacted and capped again here: this process knows secrets the executor does not.
        output = as_json(attempt.output, step.policy.max_response_bytes)
        return attempt.model_copy(update={"output": output, "screenshot": None})


def _trace_headers() -> dict[str, str] | None:
    """The LangSmith headers of the step's run, when tracing is on."""
    from langsmith import get_current_run_tree

    run = get_current_run_tree()
    return run.to_headers() if run is not None else None


def _named(attempt: StepAttempt, dependency: str, limit: float, seconds: float,
           setting: BoundBy) -> StepError:
    """The attempt's error, a time limit named by what the step waited on and its bound.

    Under a dependency's own limit (`limit`: what was left of its bound) the dependency
    stalled: `DependencyTimeout`, not retried, so the step ends within that limit (a stall
    rarely passes within seconds; an outage is waited for instead). Under
    `step_timeout_seconds` it stays a `StepTimeout`, retried as before."""
    error = attempt.error or StepError(type=ErrorKind.UNKNOWN_ERROR, message="no error given")
    if not (attempt.status == "timeout" and error.kind is ErrorKind.STEP_TIMEOUT):
        return error
    plain = f"no result within {limit:g}s"  # and after it, what the step waited for
    said = (error.message.removeprefix(plain) if error.message.startswith(plain)
            else f": {error.message}")
    message = f"{dependency} gave no answer within {seconds:g}s ({setting}){said}"
    if setting == "step_timeout_seconds":
        return error.model_copy(update={"message": message})
    return StepError(type=ErrorKind.DEPENDENCY_TIMEOUT, retryable=False, message=message)


class _Outage(OutageWait):
    """A step's wait for a dependency that cannot be reached: attempts again with a growing
    pause until it answers or `limit` seconds have passed since it first failed. The step's
    `waits` record it, so a `step_waiting` event says so at once and the step's result (and
    the run report) says how long it waited."""

    def __init__(self, limit: float, waits: StepWaits):
        super().__init__(limit)
        self.waits = waits

    async def wait(self, dependency: str, error: StepError) -> bool:
        """Pause before the next attempt; False when the wait is over (the step fails)."""
        if self.since is None:
            self.waits.began(f"{dependency} to come back ({error.type})")
        return await self.pause()

    def over(self) -> None:
        """The wait is over (the dependency answered, or the step gives up): its length
        goes to the step's waits."""
        if self.since is not None:
            self.waits.ended(self.waited, True)
        self.since = None

    def gave_up(self) -> str:
        """What the error adds when the step stops waiting."""
        return (f" (waited {self.waited:.1f}s for it; "
                f"dependency_wait_seconds={self.limit:g})")
