"""Scripted chat models: test your tools and prompts against the graph without AWS.

>>> model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="done"), "answer"])
>>> graph = build_graph(model=model, tools=my_registry)

Each reasoning call takes the next response. A pydantic object (a `Plan`, a `Decision`)
becomes a structured tool call (its fields at their defaults left out, as a model sends
them), a string becomes plain text, a `ToolCall` dict is sent as is (to script malformed
output), a list of them is one reply calling several tools, an exception is raised, and
a callable is called with the prompt messages and its return value used. `prompts` records
what the model was sent.

A reply arrives whole unless `stream_fragment` is set: then streaming callers (the planner)
get it in pieces of that many characters, as from a model that streams.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ConfigDict, Field

from graph.rendering import estimate_tokens

Response = BaseModel | str | dict[str, Any] | Exception | Callable[[list[BaseMessage]], Any]


def load_script(path: str) -> ScriptedChatModel:
    """A scripted model from a JSON file: a list of {"plan": ...}, {"decision": ...},
    {"text": ...} or {"tool_call": {"name": ..., "args": ...}} entries, in call order."""
    from graph.contracts import Decision, Plan

    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    responses: list[Any] = []
    for entry in entries:
        if "plan" in entry:
            responses.append(Plan.model_validate(entry["plan"]))
        elif "decision" in entry:
            responses.append(Decision.model_validate(entry["decision"]))
        elif "tool_call" in entry:
            responses.append(entry["tool_call"])
        else:
            responses.append(entry["text"])
    return ScriptedChatModel(responses=responses)


class ScriptOver(Exception):
    """The script has no response left for a reasoning call."""


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays scripted responses in order and records every prompt."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    responses: list[Any] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[str] = Field(default_factory=list)
    stream_fragment: int | None = None
    lock: Any = Field(default_factory=threading.Lock, exclude=True)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        """Return a view of this model (same script) that answers with tool calls."""
        names = [convert_to_openai_tool(tool)["function"]["name"] for tool in tools]
        return self.model_copy(update={"bound_tools": names})

    def _next_response(self, messages: list[BaseMessage]) -> Any:
        with self.lock:
            self.prompts.append(list(messages))
            if not self.responses:
                raise ScriptOver(f"no scripted response left for call {len(self.prompts)}")
            response = self.responses.pop(0)
        return response(messages) if callable(response) else response

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        response = self._next_response(messages)
        if isinstance(response, Exception):
            raise response
        if isinstance(response, BaseModel):
            name = self.bound_tools[0] if self.bound_tools else type(response).__name__
            response = {"name": name,
                        "args": response.model_dump(mode="json", exclude_defaults=True)}
        if isinstance(response, dict):
            response = [response]
        if isinstance(response, list):
            calls = [{"id": f"call_{len(self.prompts)}_{n}", "type": "tool_call", **call}
                     for n, call in enumerate(response)]
            message = AIMessage(content="", tool_calls=calls)
            output_text = " ".join(json.dumps(call.get("args"), default=str) for call in response)
        else:
            message = AIMessage(content=str(response))
            output_text = str(response)
        message.usage_metadata = {
            "input_tokens": sum(estimate_tokens(str(m.content)) for m in messages),
            "output_tokens": estimate_tokens(output_text),
            "total_tokens": 0,
        }
        message.usage_metadata["total_tokens"] = (
            message.usage_metadata["input_tokens"] + message.usage_metadata["output_tokens"]
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: Any = None, **kwargs: Any
                       ) -> AsyncIterator[ChatGenerationChunk]:
        result = await self._agenerate(messages, stop=stop, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        for chunk in self.fragments(message):
            yield ChatGenerationChunk(message=chunk)

    def fragments(self, message: AIMessage) -> Iterator[AIMessageChunk]:
        """`message` as stream chunks: whole, or in `stream_fragment`-character pieces of its
        text or tool call's JSON; the last chunk carries the usage."""
        size = self.stream_fragment
        if message.tool_calls:
            call = message.tool_calls[0]
            text = json.dumps(call["args"], default=str)
            pieces = [text[at:at + size] for at in range(0, len(text), size)] if size else [text]
            chunks = [AIMessageChunk(content="", tool_call_chunks=[{
                "name": call["name"] if i == 0 else None, "id": call["id"] if i == 0 else None,
                "args": piece, "index": 0}]) for i, piece in enumerate(pieces)]
        else:
            text = str(message.content)
            pieces = [text[at:at + size] for at in range(0, len(text), size)] if size else [text]
            chunks = [AIMessageChunk(content=piece) for piece in pieces or [""]]
        chunks[-1].usage_metadata = message.usage_metadata
        yield from chunks
