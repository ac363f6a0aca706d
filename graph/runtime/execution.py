"""Run one step: its timeout and retries, the step ledger, a named trace run, live events.

Every outcome is a typed `StepResult`; a tool's failure never raises out of `execute_step`.
The scheduler (`graph.runtime.scheduler`) calls it once per step, as soon as the step may start.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from langchain_core.runnables import RunnableLambda
from langgraph.runtime import Runtime

from graph.checkpoints import run_folder
from graph.context import Context
from graph.contracts import StepAttempt, StepError, StepRequest, StepResult
from graph.redaction import redact_text
from graph.runtime.ledger import StepLedger, step_key, uncertain_result
from graph.state import StepTask
from tools.backoff import OutageWait
from tools.browser import PLAYWRIGHT_TOOLS
from tools.errors import ToolError
from tools.registry import RegisteredTool, ToolRegistry, callbacks_listening
from tools.sandbox import (
    SandboxPolicy,
    StepFiles,
    StepWaits,
    current_idempotency_key,
    current_step_files,
    current_step_waits,
    run_scope,
    use_idempotency_key,
    use_policy,
    use_step_files,
    use_step_waits,
)

BACKOFF_SECONDS = 0.2
# Less than this left of a dependency's bound after a failed attempt: no attempt more.
MIN_ATTEMPT_SECONDS = 1.0


def emit(runtime: Runtime[Context] | None, event: dict[str, Any]) -> None:
    """Send a step event to the run's `custom` stream, when something listens."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer(event)


def _as_json(output: Any, limit: int) -> Any:
    """Tool output as plain JSON, secrets redacted, capped at `limit` characters so no result
    floods the state."""
    text = redact_text(json.dumps(output, default=str, ensure_ascii=False))
    if len(text) > limit:
        return {"truncated": True, "size": len(text), "preview": text[:limit]}
    return json.loads(text)


def _error_of(exc: BaseException, timeout: float) -> tuple[str, StepError]:
    status, error = _classify(exc, timeout)
    return status, error.model_copy(update={"message": redact_text(error.message)})


def _uncertain(error: StepError) -> StepError:
    """The error of a write that failed in a way that may have come after its effect."""
    return StepError(type="EffectUncertain", message=(
        f"{error.type}: {error.message}. This step changes things and its tool takes no "
        "idempotency key, so it was not retried: it may have taken effect. Check its effect "
        "(read it back) before doing it again."))


def _classify(exc: BaseException, timeout: float) -> tuple[str, StepError]:
    if isinstance(exc, TimeoutError):
        return "timeout", StepError(type="StepTimeout", retryable=True,
                                    message=f"no result within {timeout:g}s")
    if isinstance(exc, ToolError):
        return exc.status, StepError(type=exc.type_name, message=str(exc),
                                     retryable=exc.retryable)
    return "error", StepError(type=type(exc).__name__, message=str(exc) or repr(exc))


async def execute_step(task: StepTask, context: Context, registry: ToolRegistry,
                       runtime: Runtime[Context] | None) -> StepResult:
    """Execute one step with a timeout, retrying only errors marked retryable.

    With a store, the step's result is written to the ledger when it ends, and a step the
    ledger already holds is replayed, not run (see `graph.runtime.ledger`).
    """
    step, thread_id = task["step"], run_scope()
    store = getattr(runtime, "store", None)
    ledger = StepLedger(store, thread_id) if store is not None else None
    side_effects = bool(task.get("side_effects"))
    # The key hashes the step's arguments: made only for the ledger or a write's key.
    key = step_key(thread_id, task) if ledger or side_effects else ""
    entry = await ledger.entry(key) if ledger else None
    if entry and entry["state"] == "done":
        # It ran and its result was written, but the checkpoint after it was lost.
        emit(runtime, {"event": "step_replayed", "step_id": step.id, "tool": step.tool})
        return StepResult.model_validate(entry["result"])

    clock = time.perf_counter()
    base = {"step_id": step.id, "tool": step.tool, "plan_version": task["plan_version"],
            "started_at": datetime.now(UTC), "escalated": task.get("escalated")}
    emit(runtime, {"event": "step_started", "step_id": step.id, "tool": step.tool})
    # A tool that must wait before it can run (for a browser slot) says so as it starts to.
    waits = StepWaits(on_wait=lambda reason: emit(runtime, {
        "event": "step_waiting", "step_id": step.id, "tool": step.tool, "reason": reason}),
        session_continues=bool(task.get("session_continues")))

    async def run_step(task: StepTask) -> StepResult:
        if task.get("problem"):
            return StepResult(**base, status="error",
                              error=StepError(type="ReferenceError", message=task["problem"]))
        if entry and not registry.get(step.tool).safe_to_repeat:
            return uncertain_result(base)  # it started before a crash and may have acted
        if side_effects and ledger:
            await ledger.started(key, task)
        files = (StepFiles(run_folder(thread_id), f"v{task['plan_version']}-{step.id}")
                 if context.step_screenshots else None)
        with (use_idempotency_key(key if side_effects else None), use_step_files(files),
              use_step_waits(waits)):
            return await _run_with_retries(task, context, registry, base, runtime)

    if callbacks_listening():
        # One named run per step in traces (LangSmith), with what a reader filters on.
        # Otherwise the run is not made: setting it up cost a third of a step's own CPU.
        traced = RunnableLambda(run_step, name=f"step {step.id}")
        result = await traced.ainvoke(task, {"metadata": {
            "thread_id": thread_id, "step_id": step.id, "tool": step.tool,
            "plan_version": task["plan_version"]}})
    else:
        result = await run_step(task)
    result.duration_ms = (time.perf_counter() - clock) * 1000
    result.waited = waits.describe()
    if ledger:
        await ledger.done(key, result, side_effects)
    emit(runtime, {"event": "step_finished", "step_id": step.id, "tool": step.tool,
                   "status": result.status, "duration_ms": round(result.duration_ms, 1),
                   "attempts": result.attempts})
    return result


async def attempt_tool(registry: ToolRegistry, tool: str, args: dict[str, Any],
                       policy: SandboxPolicy, timeout: float) -> StepAttempt:
    """One attempt of `tool` under `policy`, within `timeout`: what in-process execution
    and an executor deployment (`graph.executor`) both run. A failure is an attempt with
    a typed error, never an exception."""
    try:
        entry = registry.get(tool)
        with use_policy(policy):
            output = await asyncio.wait_for(entry.ainvoke(args), timeout)
        entry.check_output(output)
        return StepAttempt(status="ok", output=_as_json(output, policy.max_response_bytes))
    except Exception as exc:  # noqa: BLE001 - every tool failure becomes a result
        status, error = _error_of(exc, timeout)
        not_sent = getattr(exc, "not_sent", False)
        if (waits := current_step_waits()) is not None and waits.take_gave_up():
            # Stopped while waiting for a browser slot: the tool never ran, so even a
            # write may be retried.
            not_sent = True
            error.message += f", waiting for {waits.reasons[-1]}"
        return StepAttempt(status=status, error=error, not_sent=not_sent,
                           unreachable=getattr(exc, "unreachable", False))


async def _attempt_remotely(task: StepTask, context: Context, timeout: float) -> StepAttempt:
    """One attempt on an executor deployment (`context.executor_url`); its screenshot is
    kept in this run's folder, as an in-process step's would be."""
    from graph.runtime.remote import remote_executor  # only runs that use one load it

    policy = context.sandbox_policy()
    request = StepRequest(
        tool=task["step"].tool, args=task["args"], step_id=task["step"].id,
        plan_version=task["plan_version"], thread=run_scope(),
        idempotency_key=current_idempotency_key(), timeout_seconds=timeout,
        allowed_hosts=list(policy.allowed_hosts), max_response_bytes=policy.max_response_bytes,
        browser_max_steps=policy.browser_max_steps,
        browser_timeout_seconds=policy.browser_timeout_seconds,
        max_browser_sessions=policy.max_browser_sessions,
        screenshot=context.step_screenshots, trace=_trace_headers())
    attempt = await remote_executor(context.executor_url).attempt(request)
    if attempt.screenshot and (files := current_step_files()) is not None:
        image = base64.b64decode(attempt.screenshot)
        await asyncio.to_thread(files.save_screenshot, image)
    # Redacted and capped again here: this process knows secrets the executor does not.
    output = _as_json(attempt.output, policy.max_response_bytes)
    return attempt.model_copy(update={"output": output, "screenshot": None})


def _trace_headers() -> dict[str, str] | None:
    """The LangSmith headers of the step's run, when tracing is on."""
    from langsmith import get_current_run_tree

    run = get_current_run_tree()
    return run.to_headers() if run is not None else None


def step_bound(context: Context, entry: RegisteredTool) -> tuple[float, str]:
    """The time limit of one attempt of `entry`'s tool and the setting it comes from: its
    dependency's own (an HTTP target, an MCP server) when shorter than the limit of every
    tool, `step_timeout_seconds`."""
    if entry.source.startswith("mcp:"):
        own = ("mcp_timeout_seconds", context.mcp_timeout_seconds)
    elif entry.name == "http_request":
        own = ("http_timeout_seconds", context.http_timeout_seconds)
    elif entry.name in PLAYWRIGHT_TOOLS and entry.source == "builtin":
        own = ("playwright_timeout_seconds", context.playwright_timeout_seconds)
    else:
        own = ("step_timeout_seconds", context.step_timeout_seconds)
    setting, seconds = min(own, ("step_timeout_seconds", context.step_timeout_seconds),
                           key=lambda pair: pair[1])
    return seconds, setting


def dependency_of(entry: RegisteredTool, args: dict[str, Any]) -> str:
    """What a step of `entry` depends on, as errors and waits name it."""
    if entry.source.startswith("mcp:"):
        return f"MCP server {entry.source.removeprefix('mcp:')!r}"
    if entry.name == "http_request" and (host := urlsplit(str(args.get("url", ""))).netloc):
        return f"the HTTP target {host}"
    if entry.name.startswith("browser_"):
        return f"the browser ({entry.name})"
    return f"tool {entry.name!r}"


def _stalled(error: StepError, dependency: str, limit: float, seconds: float,
             setting: str) -> StepError:
    """A step's timeout (its attempt's `limit`: what was left of the bound), naming what it
    waited on and its bound. Under a dependency's own limit the dependency stalled:
    `DependencyTimeout`, not retried, so the step ends within that limit (a stall rarely
    passes within seconds; an outage is waited for instead). Under `step_timeout_seconds`
    it stays a `StepTimeout`, retried as before."""
    plain = f"no result within {limit:g}s"  # and after it, what the step waited for
    said = (error.message.removeprefix(plain) if error.message.startswith(plain)
            else f": {error.message}")
    message = f"{dependency} gave no answer within {seconds:g}s ({setting}){said}"
    if setting == "step_timeout_seconds":
        return error.model_copy(update={"message": message})
    return StepError(type="DependencyTimeout", retryable=False, message=message)


async def _run_with_retries(
    task: StepTask, context: Context, registry: ToolRegistry, base: dict[str, Any],
    runtime: Runtime[Context] | None,
) -> StepResult:
    step = task["step"]
    # A write that cannot carry a key is retried only after an error that proves nothing
    # was sent; a timeout or any other failure may have come after the effect.
    entry = registry.get(step.tool)
    keyless_write = bool(task.get("side_effects")) and not entry.safe_to_repeat
    # An MCP server's session lives in this process: its tools never go remote.
    remote = context.runs_remotely(step.tool) and not entry.source.startswith("mcp:")
    seconds, setting = step_bound(context, entry)
    dependency = dependency_of(entry, task["args"])
    outage = _Outage(context.dependency_wait_seconds)
    attempts = retries = 0
    sent = False  # whether any attempt may have reached the tool
    # Under a dependency's own bound, the attempts after an error (a Playwright timeout,
    # say) share it: a stalled dependency that fails one attempt must not get a whole
    # bound again. Outage waits are not counted (the dependency was down, then back).
    shared = setting != "step_timeout_seconds"
    spent = 0.0
    while True:
        attempts += 1
        limit = seconds - spent if shared else seconds
        began = time.monotonic()
        if remote:
            attempt = await _attempt_remotely(task, context, limit)
            emit(runtime, {"event": "step_sent", "step_id": step.id, "status": attempt.status,
                           "executor": attempt.executor})
        else:
            attempt = await attempt_tool(registry, step.tool, task["args"],
                                         context.sandbox_policy(), limit)
        spent += time.monotonic() - began
        if attempt.status == "ok":
            outage.over()
            return StepResult(**base, status="ok", attempts=attempts, output=attempt.output)
        sent = sent or not attempt.not_sent
        error = attempt.error or StepError(type="UnknownError", message="no error given")
        if attempt.status == "timeout" and error.type == "StepTimeout":
            # Named by what it waited on and the setting that bounds it.
            error = _stalled(error, dependency, limit, seconds, setting)
        if attempt.unreachable and (attempt.not_sent or not keyless_write):
            # Down, not stalled: wait for it to come back, within dependency_wait_seconds.
            down = (f"the executor at {attempt.executor}"
                    if error.type.startswith("Executor") else dependency)
            if await outage.wait(down, error):
                spent = 0.0  # back (or trying again): a whole bound for its answer
                continue
            error = error.model_copy(update={"message": error.message + outage.gave_up(),
                                             "retryable": False})
            outage.over()
            return StepResult(**base, status=attempt.status, error=error, attempts=attempts,
                              not_sent=not sent)
        outage.over()
        if attempt.unreachable and keyless_write and not attempt.not_sent:
            return StepResult(**base, status=attempt.status, error=_uncertain(error),
                              attempts=attempts)
        if not (error.retryable and retries < context.max_retries) or (
                shared and spent >= seconds - MIN_ATTEMPT_SECONDS):
            return StepResult(**base, status=attempt.status, error=error, attempts=attempts,
                              not_sent=not sent)
        if keyless_write and not attempt.not_sent:
            return StepResult(**base, status=attempt.status, error=_uncertain(error),
                              attempts=attempts)
        retries += 1
        emit(runtime, {"event": "step_retried", "step_id": step.id,
                       "attempt": attempts, "error": error.type})
        # Exponential backoff with jitter, so parallel retries do not stampede.
        await asyncio.sleep(BACKOFF_SECONDS * 2 ** (retries - 1) * (0.5 + random.random()))


class _Outage(OutageWait):
    """A step's wait for a dependency that cannot be reached: attempts again with a growing
    pause until it answers or `limit` seconds have passed since it first failed. The step's
    waits (`StepWaits`) record it, so a `step_waiting` event says so at once and the step's
    result (and the run report) says how long it waited."""

    async def wait(self, dependency: str, error: StepError) -> bool:
        """Pause before the next attempt; False when the wait is over (the step fails)."""
        if self.since is None and (waits := current_step_waits()) is not None:
            waits.began(f"{dependency} to come back ({error.type})")
        return await self.pause()

    def over(self) -> None:
        """The wait is over (the dependency answered, or the step gives up): its length
        goes to the step's waits."""
        if self.since is not None and (waits := current_step_waits()) is not None:
            waits.ended(self.waited, True)
        self.since = None

    def gave_up(self) -> str:
        """What the error adds when the step stops waiting."""
        waited = self.waited
        return f" (waited {waited:.1f}s for it; dependency_wait_seconds={self.limit:g})"
