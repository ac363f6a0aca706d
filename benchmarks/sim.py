"""Simulated reasoning model and tools with fixed, documented latencies.

Latencies are assumptions, not measurements of Bedrock: a reasoning call costs
`MODEL_BASE_S` plus `MODEL_PER_OUTPUT_TOKEN_S` per output token (a time to first token of
about half a second and about 250 output tokens a second, the order of magnitude small
hosted models show), and a tool call costs `TOOL_S` (a browser or API step of one second).
`scale` multiplies all of them, so a smoke run is fast and the ratios keep their meaning.

Token counts are those of the real rendered prompts (the graph's prompt files, the real
tool and output schemas sent with each call), counted at four characters a token: Nova's
tokenizer is not public, so this is an estimate, applied the same way to every contender.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from graph.contracts import NOVA_2_LITE_PRICES, Decision, Plan, Step
from graph.rendering import estimate_tokens
from graph.testing import ScriptedChatModel
from tools import ToolRegistry

MODEL_BASE_S = 0.5
MODEL_PER_OUTPUT_TOKEN_S = 0.004
TOOL_S = 1.0
PRICE_INPUT_PER_M, PRICE_OUTPUT_PER_M = NOVA_2_LITE_PRICES


class SimulatedChatModel(ScriptedChatModel):
    """A scripted model that takes time like a hosted one and counts schema tokens too."""

    scale: float = 1.0
    schema_tokens: int = 0
    calls: list[dict[str, float]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> SimulatedChatModel:  # type: ignore[override]
        """Bind, remembering how many tokens the tool schemas add to every request."""
        bound = super().bind_tools(tools, **kwargs)
        schemas = json.dumps([convert_to_openai_tool(tool) for tool in tools])
        return bound.model_copy(update={"schema_tokens": estimate_tokens(schemas)})

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        result = self._generate(messages, stop=stop, **kwargs)
        usage = result.generations[0].message.usage_metadata
        usage["input_tokens"] += self.schema_tokens
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        seconds = self.scale * (MODEL_BASE_S + MODEL_PER_OUTPUT_TOKEN_S * usage["output_tokens"])
        self.calls.append({"input_tokens": usage["input_tokens"],
                           "output_tokens": usage["output_tokens"], "seconds": seconds,
                           "kind": call_kind(messages)})
        await asyncio.sleep(seconds)
        return result


def call_kind(messages: list[BaseMessage]) -> str:
    """Which reasoning call a prompt is: plan, observe, summarize, finalize, or react."""
    system = str(messages[0].content) if messages else ""
    for marker, kind in (("planner", "plan"), ("supervise", "observe"),
                         ("running summary", "summarize"), ("final answer", "finalize")):
        if marker in system:
            return kind
    return "react"


def work_tool(scale: float, output_chars: int = 200) -> StructuredTool:
    """`work(item)`: one executor step that takes `TOOL_S * scale` and returns some text."""
    async def work(item: int) -> str:
        await asyncio.sleep(TOOL_S * scale)
        return f"item {item}: " + "r" * output_chars

    return StructuredTool.from_function(coroutine=work, name="work",
                                        description="Process one item and report on it.")


def registry(scale: float, output_chars: int = 200) -> ToolRegistry:
    """The benchmark's tool registry: just `work`."""
    return ToolRegistry([work_tool(scale, output_chars)])


def independent_plan(k: int) -> Plan:
    """k steps with no dependency between them."""
    return Plan(goal=f"process {k} items", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i}) for i in range(k)])


def chained_plan(k: int, judged: bool = False) -> Plan:
    """k steps, each depending on the one before (optionally each needing judgment)."""
    return Plan(goal=f"process {k} items in order", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i}, needs_judgment=judged,
             depends_on=[f"s{i - 1}"] if i else []) for i in range(k)])


def graph_responder(plan: Plan) -> Callable[[list[BaseMessage]], Any]:
    """Answers for our graph's reasoning calls, chosen by the prompt that asks."""
    def respond(messages: list[BaseMessage]) -> Any:
        kind = call_kind(messages)
        if kind == "plan":
            return plan
        if kind == "observe":
            finished = "the plan finished" in str(messages[-1].content)
            return Decision(action="finish" if finished else "continue",
                            reason="all steps done" if finished else "on track")
        if kind == "summarize":
            return "Summary: items processed so far, all fine; nothing failed."
        return f"Processed all {len(plan.steps)} items [" + "][".join(
            s.id for s in plan.steps[:5]) + "]."
    return respond


def react_responder(k: int) -> Callable[[list[BaseMessage]], Any]:
    """ReAct: one tool call per turn until k are done, then the answer."""
    def respond(messages: list[BaseMessage]) -> Any:
        done = sum(isinstance(m, ToolMessage) for m in messages)
        if done < k:
            return {"name": "work", "args": {"item": done}}
        return f"Processed all {k} items."
    return respond
