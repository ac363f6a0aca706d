"""The step path's parts on their own: the retry policy, the bounds tools declare, the step
context a tool asks for, and the rules that keep the path explicit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, ConfigDict

from graph.context import Context
from graph.contracts import StepAttempt, StepError
from graph.runtime.attempts import Retry, Stop, Uncertain, WaitForOutage, classify
from graph.settings import Timeouts
from tools import default_registry
from tools.errors import ErrorKind
from tools.registry import StepRefused, ToolRegistry
from tools.sandbox import SandboxPolicy
from tools.step import InjectedStep, StepContext, current_idempotency_key

ROOT = Path(__file__).resolve().parents[2]


def failed(*, retryable: bool = True, not_sent: bool = False,
           unreachable: bool = False) -> StepAttempt:
    return StepAttempt(status="error", not_sent=not_sent, unreachable=unreachable,
                       error=StepError(type=ErrorKind.TOOL_ERROR, message="x",
                                       retryable=retryable))


def verdict(attempt: StepAttempt, *, keyless_write: bool = False, retries_left: int = 2,
            seconds_left: float | None = None) -> type:
    return type(classify(attempt, keyless_write=keyless_write, retries_left=retries_left,
                         seconds_left=seconds_left))


def test_classify_waits_for_a_dependency_that_is_down_unless_a_keyless_write_was_sent():
    assert verdict(failed(unreachable=True)) is WaitForOutage
    assert verdict(failed(unreachable=True, retryable=False)) is WaitForOutage
    assert verdict(failed(unreachable=True, not_sent=True), keyless_write=True) is WaitForOutage
    assert verdict(failed(unreachable=True), keyless_write=True) is Uncertain


def test_classify_retries_a_retryable_error_while_retries_and_the_bound_last():
    assert verdict(failed()) is Retry
    assert verdict(failed(retryable=False)) is Stop
    assert verdict(failed(), retries_left=0) is Stop
    assert verdict(failed(), seconds_left=0.5) is Stop
    assert verdict(failed(), seconds_left=1.0) is Stop
    assert verdict(failed(), seconds_left=5.0) is Retry


def test_classify_never_repeats_a_keyless_write_that_may_have_been_sent():
    assert verdict(failed(), keyless_write=True) is Uncertain
    assert verdict(failed(not_sent=True), keyless_write=True) is Retry
    # Out of retries it ends with its own error: nothing was repeated.
    assert verdict(failed(), keyless_write=True, retries_left=0) is Stop


def test_a_call_is_bounded_by_its_dependency_when_that_is_shorter():
    timeouts = Timeouts(step_timeout_seconds=100, http_timeout_seconds=30,
                        playwright_timeout_seconds=200)
    assert timeouts.of_call("http_timeout_seconds") == (30, "http_timeout_seconds")
    assert timeouts.of_call("playwright_timeout_seconds") == (100, "step_timeout_seconds")
    assert timeouts.of_call("step_timeout_seconds") == (100, "step_timeout_seconds")


def test_the_built_in_tools_declare_what_they_wait_on_and_their_bound():
    registry = default_registry()
    http, goto, act = (registry.get(name) for name in
                       ("http_request", "browser_goto", "browser_act"))
    assert http.bound_by == "http_timeout_seconds"
    assert http.depends_on({"url": "http://127.0.0.1:9/x"}) == "the HTTP target 127.0.0.1:9"
    assert goto.bound_by == "playwright_timeout_seconds"
    assert goto.depends_on({}) == "the browser (browser_goto)"
    assert act.bound_by == "step_timeout_seconds"
    assert not http.in_process


def test_settings_groups_take_the_flat_settings_by_name_and_defaults_are_written_once():
    context = Context(max_steps=7, http_timeout_seconds=3, max_browser_sessions=2)
    assert context.budgets.max_steps == 7 and context.timeouts.http_timeout_seconds == 3
    assert context.sandbox_policy().max_browser_sessions == 2
    assert Context().sandbox_policy() == SandboxPolicy()
    assert Context().timeouts == Timeouts()


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    step: InjectedStep


async def test_a_tool_that_declares_the_step_context_gets_it_and_the_planner_never_sees_it():
    seen: list[StepContext] = []

    async def send(to: str, step: StepContext) -> str:
        seen.append(step)
        return f"{to} in {step.scope} with {step.idempotency_key}"

    registry = ToolRegistry()
    entry = registry.register(StructuredTool.from_function(
        coroutine=send, name="send", description="Send.", args_schema=_Args))
    assert entry.step_arg == "step"
    assert entry.signature() == "send(to: str)"
    assert "step" not in entry.args_json_schema["properties"]
    with pytest.raises(StepRefused, match="step: not an argument"):
        registry.check("send", {"to": "x", "step": "forged"})
    context = StepContext(scope="run-1", idempotency_key="k1")
    assert await entry.ainvoke({"to": "a"}, context) == "a in run-1 with k1"
    assert seen == [context]


async def test_a_plain_tool_stays_plain_and_still_reads_the_idempotency_key():
    @tool
    async def charge(amount: int) -> str:
        """Charge."""
        return f"{amount} {current_idempotency_key()}"

    entry = ToolRegistry([charge]).get("charge")
    assert entry.step_arg is None
    assert await entry.ainvoke({"amount": 3}, StepContext(idempotency_key="k9")) == "3 k9"
    assert current_idempotency_key() is None  # set for that one call only


def _python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def test_no_step_data_travels_through_a_context_variable_but_the_idempotency_key():
    made = [path.relative_to(ROOT).as_posix() for path in _python_files("graph", "tools")
            if any(isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ContextVar"
                   for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))]
    assert made == ["tools/step.py"]


def test_the_step_runtime_never_branches_on_a_tool_name():
    names = {"http_request", "browser_goto", "browser_click", "browser_fill", "browser_read",
             "browser_act", "browser_extract"}
    found = []
    for path in _python_files("graph/runtime"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in names or node.value in ("browser_", "mcp:")):
                found.append((path.name, node.value))
    assert found == []


def test_no_consumer_of_events_or_errors_compares_strings():
    """Events are read as `graph.events` classes and errors by `ErrorKind`: no code indexes
    an event dict or compares an error's type with a string."""
    found = []
    for path in _python_files("graph", "tools"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                    and node.slice.value == "event"):
                found.append((path.name, node.lineno, "event dict"))
            if isinstance(node, ast.Compare) and any(
                    isinstance(side, ast.Attribute) and side.attr in ("type", "type_name")
                    for side in (node.left, *node.comparators)) and any(
                    isinstance(side, ast.Constant) and isinstance(side.value, str)
                    for side in (node.left, *node.comparators)):
                found.append((path.name, node.lineno, "error type"))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "startswith" and isinstance(node.func.value,
                                                                      ast.Attribute)
                    and node.func.value.attr in ("type", "type_name")):
                found.append((path.name, node.lineno, "error type prefix"))
    assert found == []


def test_a_users_own_tool_error_keeps_its_class_name_and_ours_are_named_by_kind():
    from tools.errors import BlockedError, ToolError

    class RateLimited(ToolError):
        pass

    assert RateLimited("slow down").type_name == "RateLimited"
    assert BlockedError("no").type_name == ErrorKind.BLOCKED
    assert ToolError("x", type_name=ErrorKind.ELEMENT_NOT_FOUND).type_name == "ElementNotFound"
