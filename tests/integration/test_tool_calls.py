"""A step's tool call: the direct call of a registered tool (no LangChain run set up when
nothing listens) validates, fails and returns as `BaseTool.ainvoke` does, and takes
LangChain's own path, with its runs, when tracing or a callback handler is on."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.tools import StructuredTool
from langchain_core.tracers.langchain import wait_for_all_tracers
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graph.runtime.attempts import attempt_tool
from tools import StepContext, ToolRegistry
from tools.errors import ToolError


class EchoArgs(BaseModel):
    """An argument of each kind: required, defaulted, default factory, aliased, optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str
    times: int = 1
    tags: list[str] = Field(default_factory=list)
    colour: str = Field(default="red", alias="color")
    note: str | None = None


async def echo(**kwargs: Any) -> dict[str, Any]:
    """Returns what it was called with; `text="fail"` raises the tool's typed error."""
    if kwargs["text"] == "fail":
        raise ToolError("the echo failed", type_name="EchoFailed")
    return kwargs


def echo_tool() -> StructuredTool:
    return StructuredTool.from_function(coroutine=echo, name="echo", description="Echo.",
                                        args_schema=EchoArgs)


@pytest.fixture
def langchain_path_counted(monkeypatch):
    """Counts calls of LangChain's own `BaseTool.arun` (the direct call makes none)."""
    calls: list[str] = []
    arun = StructuredTool.arun

    async def counted(self, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.name)
        return await arun(self, *args, **kwargs)

    monkeypatch.setattr(StructuredTool, "arun", counted)
    return calls


ARGUMENTS = [{"text": "hi"}, {"text": "hi", "times": "3", "color": "blue"},
             {"text": "hi", "colour": "green", "note": None, "tags": ["a"]}]


@pytest.mark.parametrize("args", ARGUMENTS)
async def test_the_direct_call_passes_what_langchain_passes(args, langchain_path_counted):
    entry = ToolRegistry([echo_tool()]).get("echo")
    direct = await entry.ainvoke(dict(args), StepContext())
    assert langchain_path_counted == []  # nothing listened: LangChain's path was not taken
    assert direct == await echo_tool().ainvoke(dict(args))
    assert langchain_path_counted == ["echo"]


@pytest.mark.parametrize("args", [{}, {"text": "hi", "times": "many"}, {"text": "hi", "x": 1}])
async def test_bad_arguments_fail_as_they_do_in_langchain(args, langchain_path_counted):
    entry = ToolRegistry([echo_tool()]).get("echo")
    with pytest.raises(ValidationError) as direct:
        await entry.ainvoke(dict(args), StepContext())
    with pytest.raises(ValidationError) as langchain:
        await echo_tool().ainvoke(dict(args))
    assert direct.value.errors() == langchain.value.errors()
    assert langchain_path_counted == ["echo"]  # only the second call took LangChain's path
    attempt = await attempt_tool(ToolRegistry([echo_tool()]), "echo", dict(args),
                                 StepContext(), 5)
    assert attempt.status == "error" and attempt.error.type == "ValidationError"


async def test_a_tool_error_is_the_same_typed_error():
    attempt = await attempt_tool(ToolRegistry([echo_tool()]), "echo", {"text": "fail"},
                                 StepContext(), 5)
    assert (attempt.status, attempt.error.type, attempt.error.message) == (
        "error", "EchoFailed", "the echo failed")


def test_tools_langchain_does_more_for_take_its_path():
    async def with_config(text: str, config: RunnableConfig) -> str:
        return text

    plain = ToolRegistry([echo_tool()]).get("echo")
    assert plain._direct_call is not None
    others = [StructuredTool.from_function(coroutine=with_config, name="configured",
                                             description="Takes its config."),
              echo_tool().model_copy(update={"name": "handled", "handle_tool_error": True}),
              echo_tool().model_copy(update={"name": "artifact",
                                             "response_format": "content_and_artifact"})]
    assert [ToolRegistry([t]).get(t.name)._direct_call for t in others] == [None] * 3


class ToolRuns(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.started: list[str] = []

    async def on_tool_start(self, serialized: dict[str, Any], input_str: str,
                            **kwargs: Any) -> None:
        self.started.append(serialized["name"])


async def test_a_listening_callback_handler_sees_the_tool_run(langchain_path_counted):
    entry = ToolRegistry([echo_tool()]).get("echo")
    handler = ToolRuns()

    async def call(args: dict[str, Any]) -> Any:
        return await entry.ainvoke(args, StepContext())

    step = RunnableLambda(call, name="step")
    assert await step.ainvoke({"text": "hi"}, {"callbacks": [handler]}) == {
        "text": "hi", "times": 1, "tags": [], "colour": "red", "note": None}
    assert handler.started == ["echo"] and langchain_path_counted == ["echo"]


async def test_with_tracing_on_the_tool_run_reaches_langsmith(langsmith_capture,
                                                              langchain_path_counted):
    attempt = await attempt_tool(ToolRegistry([echo_tool()]), "echo",
                                 {"text": "traced-echo-call"}, StepContext(), 5)
    assert attempt.status == "ok"
    wait_for_all_tracers()
    text = b"\n".join(langsmith_capture).decode("utf-8", errors="replace")
    assert '"name":"echo"' in text.replace(" ", "") and "traced-echo-call" in text
    assert langchain_path_counted == ["echo"]
