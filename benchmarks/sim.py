"""Simulated reasoning model and tools with fixed, documented latencies.

Latencies are assumptions, not measurements of Bedrock: a reasoning call costs
`MODEL_BASE_S` plus `MODEL_PER_OUTPUT_TOKEN_S` per output token (a time to first token of
about half a second and about 250 output tokens a second, the order of magnitude small
hosted models show), and a tool call costs `TOOL_S` (a browser or API step of one second)
unless the step says how long it takes. `scale` multiplies all of them, so a smoke run is
fast and the ratios keep their meaning.

The model streams as hosted models do: after the time to first token, its output arrives in
pieces of `FRAGMENT_CHARS` characters spread over the rest of the call. A caller that reads
the stream sees early pieces early; one that waits for the whole reply waits exactly as long
as before. The total time of a call is the same either way, for every contender.

Token counts are those of the real rendered prompts (the graph's prompt files, the real
tool and output schemas sent with each call), counted at four characters a token: Nova's
tokenizer is not public, so this is an estimate, applied the same way to every contender.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
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
FRAGMENT_CHARS = 16
PRICE_INPUT_PER_M, PRICE_OUTPUT_PER_M = NOVA_2_LITE_PRICES.input, NOVA_2_LITE_PRICES.output


class SimulatedChatModel(ScriptedChatModel):
    """A scripted model that takes time like a hosted one and counts schema tokens too."""

    scale: float = 1.0
    schema_tokens: int = 0
    stream_fragment: int | None = FRAGMENT_CHARS
    calls: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, **kwargs: Any) -> SimulatedChatModel:  # type: ignore[override]
        """Bind, remembering how many tokens the tool schemas add to every request."""
        bound = super().bind_tools(tools, **kwargs)
        schemas = json.dumps([convert_to_openai_tool(tool) for tool in tools])
        return bound.model_copy(update={"schema_tokens": estimate_tokens(schemas)})

    def _reply(self, messages: list[BaseMessage], **kwargs: Any) -> tuple[ChatResult, dict]:
        """The scripted reply, its usage with the schemas counted, and its timing."""
        result = self._generate(messages, **kwargs)
        usage = result.generations[0].message.usage_metadata
        usage["input_tokens"] += self.schema_tokens
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        seconds = self.scale * (MODEL_BASE_S + MODEL_PER_OUTPUT_TOKEN_S * usage["output_tokens"])
        call = {"input_tokens": usage["input_tokens"], "output_tokens": usage["output_tokens"],
                "seconds": seconds, "kind": call_kind(messages), "started": time.time()}
        self.calls.append(call)
        return result, call

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None,
                         run_manager: Any = None, **kwargs: Any) -> ChatResult:
        result, call = self._reply(messages, **kwargs)
        await asyncio.sleep(call["seconds"])
        call["ended"] = time.time()
        return result

    async def _astream(self, messages: list[BaseMessage], stop: Any = None,
                       run_manager: Any = None, **kwargs: Any):
        result, call = self._reply(messages, **kwargs)
        chunks = list(self.fragments(result.generations[0].message))
        first_token = self.scale * MODEL_BASE_S
        await asyncio.sleep(first_token)
        for chunk in chunks:
            await asyncio.sleep((call["seconds"] - first_token) / len(chunks))
            yield ChatGenerationChunk(message=chunk)
        call["ended"] = time.time()


def call_kind(messages: list[BaseMessage]) -> str:
    """Which reasoning call a prompt is: plan, observe, summarize, finalize, or react."""
    system = str(messages[0].content) if messages else ""
    for marker, kind in (("planner", "plan"), ("supervise", "observe"),
                         ("running summary", "summarize"), ("final answer", "finalize")):
        if marker in system:
            return kind
    return "react"


def work_tool(scale: float, output_chars: int = 200) -> StructuredTool:
    """`work(item, seconds)`: one executor step that takes `seconds * scale` (`TOOL_S` by
    default) and returns some text."""
    async def work(item: int, seconds: float = TOOL_S) -> str:
        await asyncio.sleep(seconds * scale)
        return f"item {item}: " + "r" * output_chars

    return StructuredTool.from_function(coroutine=work, name="work",
                                        description="Process one item and report on it.")


def registry(scale: float, output_chars: int = 200) -> ToolRegistry:
    """The benchmark's tool registry: just `work`."""
    return ToolRegistry([work_tool(scale, output_chars)], read_only=True)


def independent_plan(k: int) -> Plan:
    """k steps with no dependency between them."""
    return Plan(goal=f"process {k} items", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i}) for i in range(k)])


def chained_plan(k: int, judged: bool = False) -> Plan:
    """k steps, each depending on the one before (optionally each needing judgment)."""
    return Plan(goal=f"process {k} items in order", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i}, needs_judgment=judged,
             depends_on=[f"s{i - 1}"] if i else []) for i in range(k)])


def uneven_plan(k: int, seed: int) -> Plan:
    """k steps of long-tailed durations (log-normal, median half of `TOOL_S`, clipped to
    0.05 to 8 of it), each depending on up to two random earlier steps; seeded."""
    rng = random.Random(seed)
    steps = []
    for i in range(k):
        deps = rng.sample(range(i), min(i, rng.choice([0, 1, 1, 2])))
        seconds = min(8.0, max(0.05, rng.lognormvariate(-0.7, 1.0))) * TOOL_S
        steps.append(Step(id=f"s{i}", tool="work", args={"item": i, "seconds": round(seconds, 3)},
                          depends_on=[f"s{d}" for d in sorted(deps)]))
    return Plan(goal=f"process {k} items of uneven length", steps=steps)


def critical_path(plan: Plan, scale: float) -> float:
    """The longest chain of step durations through the plan's dependencies."""
    finish: dict[str, float] = {}
    for step in plan.steps:  # plans list dependencies first
        start = max((finish[d] for d in step.depends_on), default=0.0)
        finish[step.id] = start + step.args.get("seconds", TOOL_S) * scale
    return max(finish.values())


async def run_in_waves(plan: Plan, tool: StructuredTool) -> float:
    """The wave scheduling nova-duet had: all ready steps at once, the next wave when every
    step of this one has finished. Same tool, no graph around it; returns the seconds."""
    done: set[str] = set()
    started = time.perf_counter()
    while len(done) < len(plan.steps):
        wave = [s for s in plan.steps if s.id not in done and set(s.depends_on) <= done]
        await asyncio.gather(*(tool.ainvoke(s.args) for s in wave))
        done |= {s.id for s in wave}
    return time.perf_counter() - started


def graph_responder(plan: Plan) -> Callable[[list[BaseMessage]], Any]:
    """Answers for our graph's reasoning calls, chosen by the prompt that asks. At the end
    of the plan the join finishes and answers in the same call."""
    answer = f"Processed all {len(plan.steps)} items [" + "][".join(
        s.id for s in plan.steps[:5]) + "]."

    def respond(messages: list[BaseMessage]) -> Any:
        kind = call_kind(messages)
        if kind == "plan":
            return plan
        if kind == "observe":
            if "the plan finished" in str(messages[-1].content):
                return Decision(action="finish", reason="all steps done", answer=answer)
            return Decision(action="continue", reason="on track")
        if kind == "summarize":
            return "Summary: items processed so far, all fine; nothing failed."
        return answer
    return respond


def stepwise_responder(k: int, tool: str = "work") -> Callable[[list[BaseMessage]], Any]:
    """A planner that plans one step at a time: each plan runs `tool` on the next item, and
    each join asks for a new plan until k items are done. Every step is then its own few
    supersteps (plan, observe), so a long run writes checkpoints at every step."""
    def respond(messages: list[BaseMessage]) -> Any:
        kind, prompt = call_kind(messages), str(messages[-1].content)
        # The current plan's goal (or, when planning, the previous plan's) names its item.
        shown = re.findall(r"goal: item (\d+)", prompt)
        item = int(shown[-1]) if shown else -1
        if kind == "plan":
            return Plan(goal=f"item {item + 1}", steps=[
                Step(id=f"i{item + 1}", tool=tool, args={"item": item + 1})])
        if kind == "summarize":
            return "Summary: the earlier items are done; all succeeded."
        if kind == "observe" and item + 1 < k:
            return Decision(action="replan", reason="on to the next item")
        return Decision(action="finish", reason="all done", answer=f"Processed all {k} items "
                        "[i0].")
    return respond


def work_call(item: int) -> dict[str, Any]:
    """A ReAct model's call of the `work` tool on `item`."""
    return {"name": "work", "args": {"item": item}}


def react_responder(k: int, call: Callable[[int], dict[str, Any]] = work_call
                    ) -> Callable[[list[BaseMessage]], Any]:
    """ReAct: one tool call per turn (`call(item)`) until k are done, then the answer."""
    def respond(messages: list[BaseMessage]) -> Any:
        done = sum(isinstance(m, ToolMessage) for m in messages)
        if done < k:
            return call(done)
        return f"Processed all {k} items."
    return respond
