"""One attempt of a step, and what to do after one that failed.

`attempt_tool` runs one call of a tool under its step's context and a time limit; in-process
execution (`graph.runtime.execution`) and an executor deployment (`graph.executor`) both run
it, and it never raises for a tool's failure. `classify` is the retry policy as a pure
function of a failed attempt: try again (`Retry`), wait for a dependency that is down
(`WaitForOutage`), end the step (`Stop`), or end it as a write that may have taken effect
(`Uncertain`).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass
from typing import Any

from graph.contracts import StepAttempt, StepError, StepStatus
from graph.redaction import redact_text
from tools.errors import ErrorKind, ToolError
from tools.people import PersonNeeded
from tools.registry import StepRefused, ToolRegistry
from tools.step import StepContext

BACKOFF_SECONDS = 0.2
# Less than this left of a dependency's bound after a failed attempt: no attempt more.
MIN_ATTEMPT_SECONDS = 1.0


@dataclass(frozen=True)
class Retry:
    """Try the step again after a pause (`backoff`): its error may pass."""


@dataclass(frozen=True)
class WaitForOutage:
    """Its dependency cannot be reached (refused, reset, gone): wait for it to come back,
    within `dependency_wait_seconds`, then try again."""


@dataclass(frozen=True)
class Stop:
    """The step ends with this attempt's error."""


@dataclass(frozen=True)
class Uncertain:
    """A write whose tool takes no idempotency key failed in a way that may have come after
    its effect: it ends `EffectUncertain`, never repeated blindly."""


Verdict = Retry | WaitForOutage | Stop | Uncertain


def classify(attempt: StepAttempt, *, keyless_write: bool, retries_left: int,
             seconds_left: float | None) -> Verdict:
    """What to do after the failed `attempt` of a step.

    `keyless_write`: the step changes things and its tool neither takes an idempotency key
    nor is idempotent, so it may run again only when no attempt reached the tool.
    `retries_left`: of `max_retries`. `seconds_left`: of the dependency's bound the
    attempts share (None: each attempt has a whole bound)."""
    assert attempt.error is not None, "a failed attempt has an error"
    sent = not attempt.not_sent
    if attempt.unreachable:
        # Down, not stalled: waited for, unless a write without a key may have reached it.
        return Uncertain() if keyless_write and sent else WaitForOutage()
    out_of_time = seconds_left is not None and seconds_left <= MIN_ATTEMPT_SECONDS
    if not attempt.error.retryable or retries_left <= 0 or out_of_time:
        return Stop()
    return Uncertain() if keyless_write and sent else Retry()


def backoff(retry: int) -> float:
    """The pause before retry number `retry` (1, 2, ...): exponential, with jitter, so
    parallel retries do not stampede."""
    return BACKOFF_SECONDS * 2 ** (retry - 1) * (0.5 + random.random())


def effect_uncertain(error: StepError) -> StepError:
    """The error of a write that failed in a way that may have come after its effect."""
    return StepError(type=ErrorKind.EFFECT_UNCERTAIN, message=(
        f"{error.type}: {error.message}. This step changes things and its tool takes no "
        "idempotency key, so it was not retried: it may have taken effect. Check its effect "
        "(read it back) before doing it again."))


def as_json(output: Any, limit: int) -> Any:
    """Tool output as plain JSON, secrets redacted, capped at `limit` characters so no result
    floods the state."""
    text = redact_text(json.dumps(output, default=str, ensure_ascii=False))
    if len(text) > limit:
        return {"truncated": True, "size": len(text), "preview": text[:limit]}
    return json.loads(text)


async def attempt_tool(registry: ToolRegistry, tool: str, args: dict[str, Any],
                       step: StepContext, timeout: float) -> StepAttempt:
    """One attempt of `tool` for `step`, within `timeout`. A failure is an attempt with a
    typed error, never an exception."""
    try:
        entry = registry.get(tool)
        output = await asyncio.wait_for(entry.ainvoke(args, step), timeout)
        entry.check_output(output)
        return StepAttempt(status="ok", output=as_json(output, step.policy.max_response_bytes))
    except Exception as exc:  # noqa: BLE001 - every tool failure becomes a result
        status, error = _error_of(exc, timeout)
        not_sent = getattr(exc, "not_sent", False)
        if step.waits.take_gave_up():
            # Stopped while waiting (for a browser slot): the tool never ran, so even a
            # write may be retried.
            not_sent = True
            error.message += f", waiting for {step.waits.reasons[-1]}"
        return StepAttempt(status=status, error=error, not_sent=not_sent,
                           unreachable=getattr(exc, "unreachable", False),
                           hand_off=exc.hand_off if isinstance(exc, PersonNeeded) else None)


def _error_of(exc: BaseException, timeout: float) -> tuple[StepStatus, StepError]:
    """The status and typed error of a failed call, its message redacted."""
    status: StepStatus
    if isinstance(exc, TimeoutError):
        status, error = "timeout", StepError(type=ErrorKind.STEP_TIMEOUT, retryable=True,
                                             message=f"no result within {timeout:g}s")
    elif isinstance(exc, ToolError):
        status = "blocked" if exc.status == "blocked" else "error"
        error = StepError(type=exc.type_name, message=str(exc), retryable=exc.retryable)
    elif isinstance(exc, StepRefused):
        status, error = "error", StepError(type=exc.kind, message=str(exc))
    else:
        status = "error"
        error = StepError(type=type(exc).__name__, message=str(exc) or repr(exc))
    return status, error.model_copy(update={"message": redact_text(error.message)})
