"""The fault table: one list of cases, each run end to end through `run_thread` (real SQLite
checkpoints and traces), each checked for its typed status, its reason, and that nothing
else broke (the healthy step beside it, the saved checkpoint, the time budget).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from langchain_core.tools import tool
from nova_act.types import act_errors
from nova_act.types.errors import AuthError, StartFailed
from pydantic import BaseModel

from graph.app.runner import run_thread
from graph.app.threads import read_trace, saved_run, trace_path
from graph.checkpoints import duet_home
from graph.context import Context
from graph.contracts import Decision, FinalState, Plan, RunStatus, Step
from graph.events import NodeUpdate
from graph.reasoning.bedrock import BEDROCK_MAX_ATTEMPTS
from graph.rendering import FENCED_BLOCK, RESULT_OUTPUT_CHARS
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import ConverseStub, failure, text, tool_input
from tools import (
    BrowserPool,
    PlaywrightExecutor,
    ToolError,
    ToolRegistry,
    current_idempotency_key,
    http_request_tool,
)
from tools.http import HTTP_DEPENDENCY, http_changes_things
from tools.nova_act import as_tool_error

BEDROCK_MODEL = "us.amazon.nova-2-lite-v1:0"
RUN_BUDGET_SECONDS = 60  # every case must end well within this


@dataclass
class Env:
    """What the cases run against: the demo site, a Converse stub, a browser pool."""

    site: str
    converse: ConverseStub
    pool: BrowserPool = field(default_factory=lambda: BrowserPool())


@dataclass(frozen=True)
class Fault:
    """One case: what the model says, which context limits apply, what must come out.

    `evidence` must appear in the run's reason, its answer, or a step's error.
    `prepare(thread_id)` sets the fault up before the run; `check` adds case-specific
    checks and returns what failed; `resume` resumes the run after it stopped and checks
    that it then completes with every step exactly once.
    """

    area: str
    name: str
    expect: RunStatus
    evidence: str
    script: Callable[[Env], list[Any]]
    context: dict[str, Any] = field(default_factory=dict)
    bedrock: bool = False
    browser: bool = False
    prepare: Callable[[str], None] | None = None
    check: Callable[[Env, str, FinalState, Any], list[str]] | None = None
    resume: bool = False


@dataclass
class Outcome:
    """What a case did and which of its checks failed (none: it passed)."""

    fault: Fault
    status: str
    reason: str
    seconds: float
    problems: list[str]

    @property
    def passed(self) -> bool:
        """Every check held."""
        return not self.problems


# --- tools that misbehave, each in one way ---------------------------------------------------

class Pair(BaseModel):
    """The output `schema_tool` promises."""

    name: str
    count: int


def fault_tools(env: Env) -> ToolRegistry:
    """`echo` (healthy) plus one tool per kind of fault."""

    @tool
    async def echo(label: str) -> str:
        """Return `label` (the healthy step beside every fault)."""
        return label

    @tool
    async def explode(label: str) -> str:
        """Raise an unexpected exception."""
        raise RuntimeError(f"kaboom while doing {label}")

    @tool
    async def sluggish(seconds: float) -> str:
        """Answer after `seconds`."""
        await asyncio.sleep(seconds)
        return "late"

    @tool
    async def hang() -> str:
        """Never answer."""
        await asyncio.Event().wait()
        return "never"

    @tool
    async def empty(kind: str) -> Any:
        """Return nothing: '', None, {} or []."""
        return {"str": "", "none": None, "dict": {}, "list": []}[kind]

    @tool
    async def huge(megabytes: int) -> str:
        """Return a string of `megabytes` MB."""
        return "x" * (megabytes * 1_000_000)

    @tool
    async def schema_tool(shape: str) -> Any:
        """Return output of the wrong `shape`: 'text', 'missing' or 'types'."""
        return {"text": "a sentence", "missing": {"name": "a"},
                "types": {"name": "a", "count": "many"}}[shape]

    @tool
    async def down(label: str) -> str:
        """Fail with a retryable error, every time."""
        raise ToolError("service unavailable", retryable=True, type_name="ServiceDown")

    @tool
    async def unserializable(label: str) -> Any:
        """Return an object JSON cannot hold."""
        return {"when": time, "bytes": b"\x00\xff", "set": {1, 2}}

    @tool
    async def nova_fault(error: str) -> str:
        """Raise the Nova Act SDK error class `error` through the executor's error mapping."""
        raise as_tool_error(NOVA_ACT_ERRORS[error]())

    @tool
    async def lock_checkpoints(seconds: float) -> str:
        """Hold an exclusive lock on the checkpoint database for `seconds` (another process
        locking the file), so the next checkpoint write fails. Once per case."""
        if LOCK_HOLDERS:
            return "locked before"
        taken = threading.Event()

        def hold() -> None:
            db = sqlite3.connect(duet_home() / "checkpoints.sqlite", isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            taken.set()
            time.sleep(seconds)
            db.execute("ROLLBACK")
            db.close()

        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        LOCK_HOLDERS.append(holder)
        taken.wait(10)
        return "locked"

    @tool
    async def crash_browser(session: str, after_seconds: float) -> str:
        """Kill the Chromium process of the run's browser session `session` mid-step (the
        pool's shared Chromium, for a context session)."""
        # The pool has no public way to reach a session held by another step: this tool
        # stands for a crash from outside, so it goes behind the pool's back on purpose.
        for _ in range(200):
            found = [s for (_, name, *_), s in env.pool._named.items() if name == session]
            if found and found[0].page is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise ToolError(f"no browser session {session!r} started")
        await asyncio.sleep(after_seconds)
        (found[0].chromium or env.pool._shared[0]).process.kill()
        return "killed"

    # Writes, registered as a user registers them: with side effects, with or without a key.
    @tool
    async def charge(seconds: float) -> str:
        """Charge a card (no idempotency key); answers after `seconds`."""
        WRITES.append(("charge", None))
        await asyncio.sleep(seconds)
        return "charged"

    @tool
    async def ambiguous_write(label: str) -> str:
        """A write that fails after reaching its target, with a retryable error."""
        WRITES.append(("ambiguous_write", None))
        raise ToolError("the connection dropped after the request was sent", retryable=True)

    @tool
    async def refused_write(label: str) -> str:
        """A write whose first call is refused before anything is sent, then succeeds."""
        WRITES.append(("refused_write", None))
        if len(WRITES) == 1:
            raise ToolError("connection refused", retryable=True, not_sent=True)
        return label

    @tool
    async def keyed_charge(seconds: float) -> str:
        """A write that sends the step's idempotency key; its first call is slow."""
        WRITES.append(("keyed_charge", current_idempotency_key()))
        await asyncio.sleep(seconds if len(WRITES) == 1 else 0)
        return "charged once"

    @tool
    async def nova_act_write(error: str) -> str:
        """Raise Nova Act SDK error `error` from a step that acts on a page (browser_act)."""
        WRITES.append(("nova_act_write", None))
        raise as_tool_error(NOVA_ACT_ERRORS[error]())

    registry = ToolRegistry([echo, explode, sluggish, hang, empty, huge, down, unserializable,
                             nova_fault, lock_checkpoints, crash_browser], read_only=True)
    registry.register(schema_tool, read_only=True, output_schema=Pair)
    for write in (charge, ambiguous_write, refused_write, nova_act_write):
        registry.register(write, side_effects=True)
    registry.register(http_request_tool, side_effects=http_changes_things,
                      takes_idempotency_key=True, dependency=HTTP_DEPENDENCY)
    registry.register(keyed_charge, side_effects=True, takes_idempotency_key=True)
    goto, _, _, read = PlaywrightExecutor(env.pool).tools()
    registry.register(goto, read_only=True)
    registry.register(read, read_only=True)
    return registry


LOCK_HOLDERS: list[threading.Thread] = []
WRITES: list[tuple[str, str | None]] = []  # (tool, idempotency key) of each write call
NOVA_ACT_ERRORS: dict[str, Callable[[], Exception]] = {
    cls.__name__: (lambda cls=cls: cls(message=f"{cls.__name__} from the service"))
    for cls in (act_errors.ActTimeoutError, act_errors.ActAgentFailed,
                act_errors.ActExceededMaxStepsError, act_errors.ActInvalidModelGenerationError,
                act_errors.ActGuardrailsError, act_errors.ActRateLimitExceededError,
                act_errors.ActRequestThrottledError, act_errors.ActDailyQuotaExceededError,
                act_errors.ActServerError, act_errors.ActServiceUnavailableError,
                act_errors.ActInternalServerError, act_errors.ActBadResponseError,
                act_errors.ActActuationError, act_errors.ActToolError,
                act_errors.ActStateGuardrailError)
} | {"AuthError": lambda: AuthError("the API key was rejected"),
     "StartFailed": lambda: StartFailed("the browser would not start")}


# --- scripts -------------------------------------------------------------------------------

def finish(reason: str = "enough") -> Decision:
    """The observer's 'finish'."""
    return Decision(action="finish", reason=reason)


def with_healthy(bad: Step) -> Plan:
    """A plan of the faulty step beside a healthy one."""
    return Plan(goal="exercise a fault", steps=[bad, Step(id="ok", tool="echo",
                                                         args={"label": "fine"})])


def healthy_plan(label: str = "fine") -> Plan:
    """A plan that succeeds."""
    return Plan(goal="g", steps=[Step(id="ok", tool="echo", args={"label": label})])


def tool_fault(tool_name: str, **args: Any) -> Callable[[Env], list[Any]]:
    """Plan the faulty step beside a healthy one, then finish and answer."""
    return lambda env: [with_healthy(Step(id="bad", tool=tool_name, args=args)),
                        finish("the faulty step failed"), "partial answer [ok]"]


def repeat(response: Any, times: int = 3) -> Callable[[Env], list[Any]]:
    """The same response `times` times."""
    return lambda env: [response] * times


def plan_call(args: dict[str, Any]) -> dict[str, Any]:
    """A raw structured-output call for `Plan` with `args` exactly as given."""
    return {"name": "Plan", "args": args}


def ever_new_plans(tool_name: str) -> Callable[[Env], list[Any]]:
    """A planner that writes a new plan (with a new label) every time it is asked."""
    labels = itertools.count()

    def script(env: Env) -> list[Any]:
        def next_plan(_messages: Any) -> Plan:
            return Plan(goal="g", steps=[Step(id="s", tool=tool_name,
                                              args={"label": f"v{next(labels)}"})])

        replan = Decision(action="replan", reason="let me try once more")
        return [next_plan, *([replan, next_plan] * 20), "answer"]
    return script


def sleep_then(seconds: float, response: Any) -> Callable[[Any], Any]:
    """A model call that takes `seconds` (a hang, when longer than the call timeout)."""
    def reply(_messages: Any) -> Any:
        time.sleep(seconds)
        return response
    return reply


def judged_steps(count: int) -> Plan:
    """A chain of steps that each ask the observer to look."""
    return Plan(goal="g", steps=[
        Step(id=f"j{i}", tool="echo", args={"label": str(i)}, needs_judgment=True,
             depends_on=[f"j{i - 1}"] if i else []) for i in range(count)])


# --- case-specific checks ------------------------------------------------------------------

def prompts_stay_small(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """No prompt pasted the huge output: each fenced block stays within the cap."""
    problems = []
    for prompt in model.prompts:
        for message in prompt:
            if any(len(block) > RESULT_OUTPUT_CHARS + 100
                   for block in FENCED_BLOCK.findall(str(message.content))):
                problems.append("a prompt holds an uncapped tool output")
    bad = next(r for r in final.results if r.step_id == "bad")
    if not (isinstance(bad.output, dict) and bad.output.get("truncated")):
        problems.append("the huge output was not capped in the state")
    return problems


def written(times: int, same_key: bool = False) -> Callable[..., list[str]]:
    """The write tool was called `times` times (with one idempotency key throughout)."""
    def check(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
        problems = [] if len(WRITES) == times else [f"{len(WRITES)} write calls, not {times}"]
        keys = {key for _, key in WRITES}
        if same_key and (len(keys) != 1 or None in keys):
            problems.append(f"idempotency keys {keys}")
        return problems
    return check


def write_fault(tool_name: str, expect: RunStatus, evidence: str, **args: Any
                ) -> tuple[Any, ...]:
    """The positional fields of a write case: the plan, then a finish and an answer."""
    return (expect, evidence, lambda env: [
        with_healthy(Step(id="bad", tool=tool_name, args=args)),
        finish("the write ended"), "answer [ok]"])


def blocked_before_sending(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """The faulty step was blocked by the allowlist: no request reached the other service."""
    bad = next(r for r in final.results if r.step_id == "bad")
    problems = [] if bad.status == "blocked" else [f"the step ended {bad.status}"]
    if env.converse.requests:
        problems.append("a request reached the other local service")
    return problems


def attempts_are_bounded(expected: int) -> Callable[..., list[str]]:
    """The faulty step ran exactly `expected` times (bounded retries)."""
    def check(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
        bad = next(r for r in final.results if r.step_id == "bad")
        return [] if bad.attempts == expected else [f"{bad.attempts} attempts, not {expected}"]
    return check


def bedrock_calls_are_bounded(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """botocore tried each call (the plan, then the final answer) exactly
    BEDROCK_MAX_ATTEMPTS times, then gave up; the answer fell back to the template."""
    sent = len(env.converse.requests)
    return [] if sent == 2 * BEDROCK_MAX_ATTEMPTS else [f"{sent} Converse requests"]


def one_plan_call(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """The plan in the prose counted as the first answer: no second plan call."""
    plans = sum("planner" in str(prompt[0].content) for prompt in model.prompts)
    return [] if plans == 1 else [f"{plans} plan calls"]


def feedback_reached_the_model(env: Env, thread: str, final: FinalState,
                               model: Any) -> list[str]:
    """The second plan prompt carried the validation error of the first reply."""
    second = " ".join(str(m.content) for m in model.prompts[1])
    return [] if "invalid Plan" in second else ["the planner was not told what was wrong"]


def full_disk_trace(thread: str) -> None:
    """Make the run's trace file the full device: every write fails with ENOSPC."""
    trace_path(thread).parent.mkdir(parents=True, exist_ok=True)
    trace_path(thread).symlink_to("/dev/full")


def trace_went_nowhere(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """The trace file is /dev/full: nothing was written, the run still completed."""
    return [] if str(trace_path(thread).resolve()) == os.path.realpath("/dev/full") else [
        "the trace was not the full device"]


def browser_was_replaced(env: Env, thread: str, final: FinalState, model: Any) -> list[str]:
    """The step in flight saw the crash and its retry ran in a new browser."""
    page = next(r for r in final.results if r.step_id == "page")
    return [] if page.status == "ok" and page.attempts >= 2 else [
        f"the page step ended {page.status} after {page.attempts} attempt(s)"]


def browser_plan(env: Env) -> list[Any]:
    """A slow page in session 'b' while another step kills that browser mid-load."""
    return [Plan(goal="read a slow page", steps=[
        Step(id="page", tool="browser_goto",
             args={"url": f"{env.site}/slow?seconds=3", "session": "b"}),
        Step(id="crash", tool="crash_browser", args={"session": "b", "after_seconds": 1.0}),
        Step(id="ok", tool="echo", args={"label": "fine"})]), finish("read"), "answer [page]"]


# --- the table -------------------------------------------------------------------------------

def _cycle() -> dict[str, Any]:
    return {"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"label": "a"}, "depends_on": ["b"]},
        {"id": "b", "tool": "echo", "args": {"label": "b"}, "depends_on": ["a"]}]}


FAULTS: list[Fault] = [
    # Tools
    Fault("tool", "raises an exception", RunStatus.FAILED, "RuntimeError",
          tool_fault("explode", label="x")),
    Fault("tool", "times out", RunStatus.FAILED, "StepTimeout",
          tool_fault("sluggish", seconds=5), {"step_timeout_seconds": 0.5, "max_retries": 1},
          check=attempts_are_bounded(2)),
    Fault("tool", "hangs forever", RunStatus.FAILED, "StepTimeout",
          tool_fault("hang"), {"step_timeout_seconds": 0.5, "max_retries": 0}),
    Fault("tool", "returns an empty string", RunStatus.COMPLETED, "",
          lambda env: [with_healthy(Step(id="bad", tool="empty", args={"kind": "str"})),
                       finish(), "empty [bad]"]),
    Fault("tool", "returns None", RunStatus.COMPLETED, "",
          lambda env: [with_healthy(Step(id="bad", tool="empty", args={"kind": "none"})),
                       finish(), "nothing [bad]"]),
    Fault("tool", "returns 5 MB", RunStatus.COMPLETED, "",
          lambda env: [with_healthy(Step(id="bad", tool="huge", args={"megabytes": 5})),
                       finish(), "big [bad]"], check=prompts_stay_small),
    Fault("tool", "output is text, schema wants an object", RunStatus.FAILED,
          "OutputSchemaMismatch", tool_fault("schema_tool", shape="text")),
    Fault("tool", "output misses a field", RunStatus.FAILED, "count: Field required",
          tool_fault("schema_tool", shape="missing")),
    Fault("tool", "output has a wrong type", RunStatus.FAILED, "OutputSchemaMismatch",
          tool_fault("schema_tool", shape="types")),
    Fault("tool", "retryable error that never clears", RunStatus.FAILED, "ServiceDown",
          tool_fault("down", label="x"), {"max_retries": 2}, check=attempts_are_bounded(3)),
    Fault("tool", "output JSON cannot hold", RunStatus.COMPLETED, "",
          lambda env: [with_healthy(Step(id="bad", tool="unserializable", args={"label": "x"})),
                       finish(), "odd [bad]"]),
    # Reasoning model
    Fault("model", "invalid JSON, every time", RunStatus.FAILED, "no valid plan after 3",
          repeat('{"goal": "g", "steps": [{"id": ')),
    Fault("model", "invalid JSON, then a valid plan", RunStatus.COMPLETED, "",
          lambda env: ['{"goal": "g", "steps": [', healthy_plan(), finish(), "done [ok]"],
          check=feedback_reached_the_model),
    Fault("model", "prose around one valid JSON plan (salvaged)", RunStatus.COMPLETED, "",
          lambda env: [f"Sure! Here is the plan: {healthy_plan().model_dump_json()} Hope it "
                       "helps.", finish(), "done [ok]"], check=one_plan_call),
    Fault("model", "prose around two JSON objects", RunStatus.FAILED, "no valid plan",
          repeat('Either {"goal": "g", "steps": []} or {"goal": "h", "steps": []}.')),
    Fault("model", "a required field is missing", RunStatus.FAILED, "goal",
          repeat(plan_call({"steps": []}))),
    Fault("model", "an extra field", RunStatus.FAILED, "priority",
          repeat(plan_call({"goal": "g", "steps": [], "priority": "high"}))),
    Fault("model", "wrong types", RunStatus.FAILED, "steps",
          repeat(plan_call({"goal": "g", "steps": "s1, then s2"}))),
    Fault("model", "a tool that does not exist, then a fix", RunStatus.COMPLETED, "",
          lambda env: [Plan(goal="g", steps=[Step(id="s", tool="send_email", args={})]),
                       healthy_plan(), finish(), "done [ok]"],
          check=lambda env, thread, final, model: [] if final.results[0].error.type ==
          "UnknownTool" else ["the unknown tool was not refused as UnknownTool"]),
    Fault("model", "hallucinates tools forever", RunStatus.LOOP_DETECTED,
          "replans in a row without a new successful step", ever_new_plans("send_email")),
    Fault("model", "bad arguments, planned again and again", RunStatus.LOOP_DETECTED,
          "InvalidArguments",
          lambda env: [Plan(goal="g", steps=[Step(id="s", tool="echo",
                                                  args={"label": 5, "colour": "red"})])] * 3,
          {"max_stalled_replans": 5}),
    Fault("model", "a dependency cycle", RunStatus.FAILED, "dependency cycle",
          repeat(plan_call(_cycle()))),
    Fault("model", "a planner that always replans", RunStatus.BUDGET_EXHAUSTED,
          "replan budget spent", ever_new_plans("echo"), {"max_replans": 4}),
    Fault("model", "a planner that repeats its plan", RunStatus.LOOP_DETECTED,
          "repeated an earlier plan",
          lambda env: [healthy_plan(), Decision(action="replan", reason="again"),
                       healthy_plan(), "answer"]),
    Fault("model", "an observer that never finishes", RunStatus.BUDGET_EXHAUSTED,
          "step budget spent",
          lambda env: [judged_steps(10), *[Decision(action="continue", reason="more")] * 10,
                       "answer"], {"max_steps": 4}),
    Fault("model", "an observer that answers garbage", RunStatus.FAILED, "invalid Decision",
          lambda env: [with_healthy(Step(id="bad", tool="explode", args={"label": "x"})),
                       "I think we should probably go on", "no really", "answer"]),
    Fault("model", "a model call that hangs", RunStatus.FAILED, "did not answer within",
          lambda env: [sleep_then(3, healthy_plan())], {"model_timeout_seconds": 0.5}),
    Fault("model", "the provider raises", RunStatus.FAILED, "ValueError",
          lambda env: [ValueError("the provider SDK broke")]),
    Fault("model", "spends the token budget", RunStatus.BUDGET_EXHAUSTED, "token budget",
          lambda env: [judged_steps(3), Decision(action="continue", reason="go"), "answer"],
          {"token_budget": 400}),
    Fault("model", "the final answer call fails", RunStatus.COMPLETED,
          "written without the model",
          lambda env: [healthy_plan(), finish(), RuntimeError("answer failed")],
          check=lambda env, thread, final, model: [] if "[ok]" in (final.final_answer or "")
          else ["the templated answer does not cite the step"]),
    Fault("model", "the summarizer fails", RunStatus.FAILED, "summar",
          lambda env: [judged_steps(6), *[Decision(action="continue", reason="go")] * 6,
                       RuntimeError("summary failed"), "answer"],
          {"summarize_threshold_tokens": 1, "keep_recent_results": 1}),
    Fault("model", "Bedrock throttles every call", RunStatus.FAILED, "ThrottlingException",
          lambda env: [failure(429, "ThrottlingException", "slow down")] * 12,
          bedrock=True, check=bedrock_calls_are_bounded),
    Fault("model", "Bedrock answers 5xx every time", RunStatus.FAILED,
          "ServiceUnavailableException",
          lambda env: [failure(503, "ServiceUnavailableException", "down")] * 12,
          bedrock=True, check=bedrock_calls_are_bounded),
    Fault("model", "Bedrock throttles, then answers", RunStatus.COMPLETED, "",
          lambda env: [failure(429, "ThrottlingException", "slow down"),
                       failure(500, "InternalServerException", "oops"),
                       tool_input(healthy_plan()), tool_input(finish()), text("done [ok]")],
          bedrock=True),
    # Executor
    *[Fault("executor", f"Nova Act {name}", RunStatus.FAILED, name,
            tool_fault("nova_fault", error=name), {"max_retries": 1})
      for name in NOVA_ACT_ERRORS],
    Fault("executor", "the browser crashes mid-step", RunStatus.COMPLETED, "",
          browser_plan, {"step_timeout_seconds": 30}, browser=True, check=browser_was_replaced),
    Fault("executor", "a page that never loads", RunStatus.FAILED, "StepTimeout",
          lambda env: [with_healthy(Step(id="bad", tool="browser_goto",
                                         args={"url": f"{env.site}/slow?seconds=60"})),
                       finish("the page never loaded"), "answer [ok]"],
          {"step_timeout_seconds": 2, "max_retries": 0}, browser=True),
    # Writes: a live retry must not repeat an effect that may have happened
    Fault("effects", "a keyless write times out: not retried, effect uncertain",
          *write_fault("charge", RunStatus.FAILED, "EffectUncertain", seconds=3),
          {"approval": "auto", "step_timeout_seconds": 0.3}, check=written(1)),
    Fault("effects", "a keyless write fails ambiguously: not retried, effect uncertain",
          *write_fault("ambiguous_write", RunStatus.FAILED, "EffectUncertain", label="x"),
          {"approval": "auto"}, check=written(1)),
    Fault("effects", "a keyless write refused before sending is retried",
          *write_fault("refused_write", RunStatus.COMPLETED, "", label="x"),
          {"approval": "auto"}, check=written(2)),
    Fault("effects", "a keyed write that times out is retried with the same key",
          *write_fault("keyed_charge", RunStatus.COMPLETED, "", seconds=3),
          {"approval": "auto", "step_timeout_seconds": 0.3}, check=written(2, same_key=True)),
    Fault("effects", "a browser_act that times out is not retried, effect uncertain",
          *write_fault("nova_act_write", RunStatus.FAILED, "EffectUncertain",
                       error="ActTimeoutError"),
          {"approval": "auto"}, check=written(1)),
    Fault("effects", "a browser_act throttled before acting is retried",
          *write_fault("nova_act_write", RunStatus.FAILED, "ActRequestThrottledError",
                       error="ActRequestThrottledError"),
          {"approval": "auto", "max_retries": 2}, check=written(3)),
    # Deny by default: this machine's services are not reachable unless named with a port
    Fault("sandbox", "the default allowlist reaches no host", RunStatus.FAILED,
          "outside the allowlist",
          lambda env: [with_healthy(Step(id="bad", tool="http_request",
                                         args={"url": f"{env.site}/api/customers/1"})),
                       finish("blocked"), "answer [ok]"], {"allowed_hosts": []},
          check=blocked_before_sending),
    Fault("sandbox", "a bare loopback entry opens no local service", RunStatus.FAILED,
          "need their port",
          lambda env: [with_healthy(Step(id="bad", tool="http_request",
                                         args={"url": f"{env.site}/api/customers/1"})),
                       finish("blocked"), "answer [ok]"],
          {"allowed_hosts": ["127.0.0.1", "localhost"]}, check=blocked_before_sending),
    Fault("sandbox", "an allowed host:port opens no other port of this machine",
          RunStatus.FAILED, "outside the allowlist",
          lambda env: [with_healthy(Step(id="bad", tool="http_request",
                                         args={"url": env.converse.url + "/model/x/converse",
                                               "method": "POST"})),
                       finish("blocked"), "answer [ok]"], {"approval": "auto"},
          check=blocked_before_sending),
    # Storage
    Fault("storage", "another process locks the checkpoint database for less than the busy "
          "timeout (the write waits its turn)", RunStatus.COMPLETED, "",
          lambda env: [Plan(goal="g", steps=[
              Step(id="lock", tool="lock_checkpoints", args={"seconds": 2}),
              Step(id="ok", tool="echo", args={"label": "fine"}, depends_on=["lock"])]),
              finish("done"), "answer [ok]"]),
    Fault("storage", "a checkpoint write fails (database locked past the busy timeout)",
          RunStatus.FAILED, "storage failed",
          lambda env: [Plan(goal="g", steps=[
              Step(id="lock", tool="lock_checkpoints", args={"seconds": 8}),
              Step(id="ok", tool="echo", args={"label": "fine"}, depends_on=["lock"])]),
              finish("done"), "answer [ok]"],
          {"checkpointer_timeout_seconds": 4}, resume=True),
    Fault("storage", "the trace file's disk is full", RunStatus.COMPLETED, "",
          lambda env: [healthy_plan(), finish(), "done [ok]"], prepare=full_disk_trace,
          check=trace_went_nowhere),
]


# --- running a case --------------------------------------------------------------------------

async def run_fault(fault: Fault, env: Env) -> Outcome:
    """Run one case end to end and check it; never raises for the case's own failure."""
    thread = f"fault-{FAULTS.index(fault)}"
    context = Context(**{"allowed_hosts": [urlsplit(env.site).netloc], "deadline_seconds": 45,
                         **fault.context})
    model: Any
    env.converse.requests.clear()
    if fault.bedrock:
        env.converse.script[:] = fault.script(env)
        context.model, context.bedrock_endpoint_url = BEDROCK_MODEL, env.converse.url
        model = None
    else:
        model = ScriptedChatModel(responses=fault.script(env))
    if fault.prepare:
        fault.prepare(thread)
    registry = fault_tools(env)
    LOCK_HOLDERS.clear()
    WRITES.clear()
    started = time.perf_counter()
    problems: list[str] = []
    try:
        _, final = await run_thread("exercise a fault", thread_id=thread, context=context,
                                    model=model, tools=registry)
    except Exception as exc:  # noqa: BLE001 - an escaped exception is the failure we count
        return Outcome(fault, "raised", f"{type(exc).__name__}: {exc}",
                       time.perf_counter() - started, ["an exception escaped run_thread"])
    seconds = time.perf_counter() - started
    if final.status != fault.expect:
        problems.append(f"status {final.status.value}, expected {fault.expect.value}")
    found = [final.reason, final.final_answer or ""] + [
        f"{r.error.type}: {r.error.message}" for r in final.results if r.error]
    if fault.evidence and not any(fault.evidence in text for text in found):
        problems.append(f"{fault.evidence!r} is in neither the reason nor any step error")
    if fault.expect == RunStatus.COMPLETED and not final.final_answer:
        problems.append("no final answer")
    healthy = [r for r in final.results if r.step_id == "ok" and r.status == "ok"]
    planned_ok = any(s.get("id") == "ok" for s in _planned_steps(thread))
    if planned_ok and not healthy and not fault.resume:
        problems.append("the healthy step beside the fault did not succeed")
    if seconds > RUN_BUDGET_SECONDS:
        problems.append(f"took {seconds:.0f}s")
    if fault.check:
        problems += fault.check(env, thread, final, model)
    if fault.resume:
        problems += await _resume_completes(thread, model)
    else:
        _, saved = await saved_run(thread)
        if saved.status != final.status:
            problems.append(f"the checkpoint says {saved.status.value}")
    return Outcome(fault, final.status.value, final.reason, seconds, problems)


async def _resume_completes(thread: str, model: Any) -> list[str]:
    """Resume the run stopped by the storage fault: it completes, each step exactly once."""
    for holder in LOCK_HOLDERS:
        holder.join(30)
    _, final = await run_thread(None, thread_id=thread, model=model)
    problems = [] if final.status == RunStatus.COMPLETED else [
        f"the resumed run ended {final.status.value}: {final.reason}"]
    ids = [r.step_id for r in final.results]
    if sorted(ids) != ["lock", "ok"]:
        problems.append(f"steps after resume: {ids}")
    return problems


def _planned_steps(thread: str) -> list[dict[str, Any]]:
    """The steps of the first plan, from the trace (empty when none was written)."""
    return next((e.plan for e in read_trace(trace_path(thread))
                 if isinstance(e, NodeUpdate) and e.plan), [])


async def run_faults(env: Env, faults: list[Fault] | None = None) -> list[Outcome]:
    """Run every case (or `faults`), one after another."""
    try:
        return [await run_fault(fault, env) for fault in (faults or FAULTS)]
    finally:
        await env.pool.aclose()
