"""Figure 12: Bedrock prompt caching, this graph against ReAct, in input tokens and dollars.

Both contenders run the real `ChatBedrockConverse` request path (langchain-aws builds every
Converse request, cache points included) against the loopback Converse server of the tests
(`tests.fixtures.converse`), which stands in for the model: it answers from a script and
counts tokens (four characters a token) and cache reads and writes by Bedrock's prefix rule
for Nova models, the same rule for both. The model is simulated; the tokens are those of the
real requests. Tools are the simulated `work` tool (no time) plus a catalogue of lookup tools
that no plan calls: they only make the tool listing as long as a real deployment's.

This graph marks its prompts' stable prefixes (`prompt_caching`); ReAct (LangChain's
`create_agent`) gets langchain-aws's own `BedrockPromptCachingMiddleware`. Each setting runs
on a fresh cache: with caching on, a first run (cold: it writes the cache) and a second one
right after (warm: it reads what the first wrote, as a run within Bedrock's 5-minute TTL does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from langchain.agents import create_agent
from langchain_aws import ChatBedrockConverse
from langchain_aws.middleware import BedrockPromptCachingMiddleware
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, create_model

from benchmarks import sim
from graph import Context, Decision, build_graph
from graph.contracts import NOVA_2_LITE_PRICES, Usage
from prompts import load_prompt
from tests.fixtures.converse import ConverseStub, PromptCache, start, text, tool_input
from tools import ToolRegistry

MODEL = "us.amazon.nova-2-lite-v1:0"
GOAL = ("planner input cost with a warm cache at least 2x lower than without, at 20 steps "
        "and 40 tools")
KINDS = ("customer", "invoice", "contact", "deal", "ticket", "order", "product", "note")


def catalogue_tool(n: int) -> BaseTool:
    """A lookup tool of a CRM, as long as a typical registered tool (three arguments, each
    with a note): never called, it is the catalogue every prompt carries."""
    kind = KINDS[n % len(KINDS)]
    fields: dict[str, Any] = {
        "query": (str, Field(description=f"What to look for among the {kind}s: a name, an id "
                                         "or words they contain.")),
        "limit": (int, Field(default=20, description="At most this many results.")),
        "status": (str | None, Field(default=None, description=f"Only {kind}s with this "
                                                                "status.")),
    }
    schema: type[BaseModel] = create_model(f"Find{kind.title()}{n}", **fields)

    async def find(**_: Any) -> str:
        return "[]"

    return StructuredTool.from_function(
        coroutine=find, name=f"find_{kind}s_{n}", args_schema=schema,
        description=f"Search the CRM's {kind} records (set {n}) and return the matches as "
                    "JSON, newest first, with their ids.")


def tool_list(count: int) -> list[BaseTool]:
    """`work` and `count - 1` catalogue tools."""
    return [sim.work_tool(0.0), *(catalogue_tool(n) for n in range(1, count))]


def _system_text(body: dict[str, Any]) -> str:
    return next((block["text"] for block in body.get("system", []) if "text" in block), "")


def graph_answers(steps: int) -> Any:
    """This graph's reasoning calls answered by the prompt that asks: the plan of `steps`
    independent `work` steps, then the join, which finishes with the answer."""
    plan = sim.independent_plan(steps)

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        system = _system_text(body)
        if "planner" in system:
            return tool_input(plan)
        if "supervise" in system:
            return tool_input(Decision(action="finish", reason="all steps done",
                                       answer=f"Processed all {steps} items [s0]."))
        return text("Summary: items processed so far, all fine.")
    return answer


def react_answers(steps: int) -> Any:
    """ReAct: one `work` call a turn until `steps` are done, then the answer."""
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        done = sum("toolResult" in block for message in body["messages"]
                   for block in message["content"])
        if done < steps:
            return tool_input({"item": done}, name="work")
        return text(f"Processed all {steps} items.")
    return answer


@contextlib.contextmanager
def converse_server() -> Iterator[ConverseStub]:
    """The loopback Converse server, and dummy credentials for signing its requests."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    os.environ.pop("AWS_SESSION_TOKEN", None)
    stub = ConverseStub()
    server = start(stub)
    try:
        yield stub
    finally:
        server.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def converse_model(stub: ConverseStub) -> ChatBedrockConverse:
    """Nova 2 Lite's client, sending to the loopback server (one for every run: making the
    boto3 client is most of what a run of this figure costs)."""
    return ChatBedrockConverse(model=MODEL, region_name="us-east-1", endpoint_url=stub.url,
                               temperature=0)


async def run_ours(stub: ConverseStub, model: ChatBedrockConverse, steps: int, tools: int,
                   caching: bool) -> tuple[Usage, Usage]:
    """One run of this graph: its usage as it recorded it from the server's replies, and
    that of its plan call (the planner's) as the server reported it."""
    stub.script = [graph_answers(steps)] * 20
    first = len(stub.usages)
    registry = ToolRegistry(tool_list(tools), read_only=True)
    graph = build_graph(model=model, tools=registry)
    context = Context(model=MODEL, prompt_caching=caching, max_steps=1_000,
                      max_tool_calls=1_000, token_budget=10**9)
    try:
        out = await graph.ainvoke({"task": f"process {steps} items"},
                                  {"configurable": {"thread_id": "caching"}}, context=context)
    finally:
        await registry.aclose()
    assert out["status"] == "completed", out.get("reason")
    assert "planner" in _system_text(stub.requests[first])  # a run opens with its plan call
    served = stub.usages[first]
    plan_call = Usage.of_call(
        input_tokens=served["inputTokens"] + served["cacheReadInputTokens"]
        + served["cacheWriteInputTokens"], output_tokens=served["outputTokens"],
        cache_read_tokens=served["cacheReadInputTokens"],
        cache_write_tokens=served["cacheWriteInputTokens"])
    return out["usage"], plan_call


async def run_react(stub: ConverseStub, model: ChatBedrockConverse, steps: int, tools: int,
                    caching: bool) -> tuple[Usage, None]:
    """One run of ReAct with langchain-aws's caching middleware (or none); its usage from
    the replies' `usage_metadata`, priced as this graph prices its own."""
    stub.script = [react_answers(steps)] * (steps + 1)
    system, user = load_prompt("react", task=f"process {steps} items")
    middleware = [BedrockPromptCachingMiddleware()] if caching else []
    agent = create_agent(model, tools=tool_list(tools), system_prompt=str(system.content),
                         middleware=middleware)
    out = await agent.ainvoke({"messages": [user]}, {"recursion_limit": 4 * steps + 10})
    assert "Processed all" in str(out["messages"][-1].content)
    return sum((Usage.of_metadata(m.usage_metadata or {}, NOVA_2_LITE_PRICES)
                for m in out["messages"] if isinstance(m, AIMessage)), Usage()), None


def _input_usd(usage: Usage) -> float:
    return NOVA_2_LITE_PRICES.cost_usd(input_tokens=usage.input_tokens, output_tokens=0,
                                       cache_read_tokens=usage.cache_read_tokens,
                                       cache_write_tokens=usage.cache_write_tokens)


def _cache_points(requests: list[dict[str, Any]]) -> int:
    """Cache points sent in `requests` (whether or not their prefix could be cached)."""
    return sum("cachePoint" in block for request in requests
               for block in [*request.get("system", []),
                             *(b for m in request["messages"] for b in m["content"])])


def _row(agent: str, steps: int, tools: int, caching: str,
         usages: tuple[Usage, Usage | None], points: int) -> dict[str, Any]:
    usage, plan_call = usages
    return {"agent": agent, "steps": steps, "tools": tools, "caching": caching,
            "cache_points_sent": points,
            "plan_call_input_usd": _input_usd(plan_call) if plan_call else None,
            "plan_call_cache_read_tokens": plan_call.cache_read_tokens if plan_call else None,
            "calls": usage.reasoning_calls, "input_tokens": usage.input_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_tokens": usage.output_tokens, "input_usd": _input_usd(usage),
            "cost_usd": usage.estimated_cost_usd}


async def prompt_caching(step_counts: list[int], tool_counts: list[int]) -> dict[str, Any]:
    """Figure 12: per run, input tokens (and of them, read from and written to the cache)
    and dollars, caching off, on with a cold cache and on with a warm one."""
    rows = []
    with converse_server() as stub:
        model = converse_model(stub)
        for steps in step_counts:
            for tools in tool_counts:
                for agent, run in (("nova-duet", run_ours), ("ReAct", run_react)):
                    for state in ("off", "on, cold", "on, warm"):
                        if state != "on, warm":
                            stub.cache = PromptCache()
                        first = len(stub.requests)
                        usages = await run(stub, model, steps, tools, state != "off")
                        rows.append(_row(agent, steps, tools, state, usages,
                                         _cache_points(stub.requests[first:])))
        invalid = list(stub.invalid)
    assert not invalid, invalid  # every request, cache points included, valid for botocore
    return {"rows": rows, "goal": goal(rows, max(step_counts), max(tool_counts))}


def goal(rows: list[dict[str, Any]], steps: int, tools: int) -> dict[str, Any]:
    """This graph's input dollars without caching over those with a warm cache, at `steps`
    and `tools` (the goal's point when they are 20 and 40): of its plan call (the planner's
    call, what the goal names) and of the whole run (every reasoning call), both reported."""
    def ours(caching: str) -> dict[str, Any]:
        return next(r for r in rows if r["agent"] == "nova-duet" and r["steps"] == steps
                    and r["tools"] == tools and r["caching"] == caching)
    off, warm = ours("off"), ours("on, warm")
    plan_ratio = off["plan_call_input_usd"] / warm["plan_call_input_usd"]
    run_ratio = off["input_usd"] / warm["input_usd"]
    return {"steps": steps, "tools": tools, "plan_call_off_over_warm": plan_ratio,
            "run_off_over_warm": run_ratio, "met": plan_ratio >= 2.0,
            "met_per_run": run_ratio >= 2.0}


def markdown(figure: dict[str, Any]) -> list[str]:
    """Figure 12 as a Markdown table."""
    out = ["", "**12. Prompt caching** (per run: the real ChatBedrockConverse requests against "
           "the loopback Converse server, which simulates the model and counts cache tokens "
           "by Bedrock's prefix rule for Nova, the same for both; Nova 2 Lite prices, cache "
           "reads at a quarter of the input price)", "",
           "| agent | steps | tools | caching | calls | cache points sent | input tokens "
           "| of them read / written | output tokens | input USD | cost USD "
           "| plan call input USD |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in figure["rows"]:
        out.append(f"| {r['agent']} | {r['steps']} | {r['tools']} | {r['caching']} | "
                   f"{r['calls']} | {r['cache_points_sent']} | {r['input_tokens']} | "
                   f"{r['cache_read_tokens']} / "
                   f"{r['cache_write_tokens']} | {r['output_tokens']} | "
                   f"{r['input_usd']:.6f} | {r['cost_usd']:.6f} | "
                   + (f"{r['plan_call_input_usd']:.6f} |" if r["plan_call_input_usd"]
                      is not None else "- |"))
    return out


def verdicts(figure: dict[str, Any]) -> list[tuple[bool, str, str]]:
    """(met, goal, what was measured) for the report's verdict lines: the plan call's, and
    the whole run's, which the goal does not name but a reader will ask about."""
    g = figure["goal"]
    where = f"at {g['steps']} steps and {g['tools']} tools"
    return [(g["met"], GOAL, f"figure 12: plan call input USD without caching / with a warm "
                             f"cache = {g['plan_call_off_over_warm']:.2f}x {where}"),
            (g["met_per_run"], GOAL.replace("planner input cost", "a whole run's input cost"),
             f"figure 12: every reasoning call of the run, {g['run_off_over_warm']:.2f}x "
             f"{where}")]
