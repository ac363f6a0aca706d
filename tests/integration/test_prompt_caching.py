"""Bedrock prompt caching through the real ChatBedrockConverse, against the loopback Converse
server (which validates each request against botocore's model and counts cache tokens as
Bedrock does for Nova): where cache points go, what `Usage` records, how it is priced, the
setting that turns it off, and where the cached tokens are shown."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from benchmarks import caching
from graph import Context, Decision, Plan, Step, build_graph
from graph.app.cli import app
from graph.app.report import report_data, write_report
from graph.app.runner import run_thread
from graph.app.threads import trace_path
from graph.contracts import TokenPrices, Usage
from graph.reasoning import ConfigurationError, resolve_reasoner
from graph.testing import ScriptedChatModel
from prompts import CACHE_MARKER, load_prompt
from tests.fixtures.converse import PromptCache, tool_input
from tools import ToolRegistry

MODEL = "us.amazon.nova-2-lite-v1:0"
CACHE_POINT = {"cachePoint": {"type": "default"}}
# Distinct prices for each kind of token, so a cost priced the wrong way shows.
PRICES = TokenPrices(input=1.0, output=2.0, cache_read=0.1, cache_write=1.25)


def _plan(steps: int, note: str = "") -> Plan:
    return Plan(goal=f"process {steps} items", steps=[
        Step(id=f"s{i}", tool="work", args={"item": i, "seconds": 0},
             description=note) for i in range(steps)])


def _context(converse, **overrides) -> Context:
    return Context(model=MODEL, bedrock_endpoint_url=converse.url,
                   token_prices=PRICES.model_dump_json(), **overrides)


async def _run(converse, plan: Plan, tools: int, **overrides) -> dict:
    """One run of `plan` with `tools` tools registered: the plan, then a join that finishes."""
    converse.script += [tool_input(plan), tool_input(
        Decision(action="finish", reason="done", answer="Processed the items [s0]."))]
    registry = ToolRegistry(caching.tool_list(tools), read_only=True)
    try:
        out = await build_graph(tools=registry).ainvoke(
            {"task": plan.goal}, context=_context(converse, **overrides))
    finally:
        await registry.aclose()
    assert out["status"] == "completed", out["reason"]
    return out


def _blocks(request: dict) -> list[dict]:
    return [*request.get("system", []), *request.get("toolConfig", {}).get("tools", []),
            *(block for message in request["messages"] for block in message["content"])]


def _expected_cost(served: list[dict]) -> float:
    return sum(PRICES.cost_usd(
        input_tokens=u["inputTokens"] + u["cacheReadInputTokens"] + u["cacheWriteInputTokens"],
        output_tokens=u["outputTokens"], cache_read_tokens=u["cacheReadInputTokens"],
        cache_write_tokens=u["cacheWriteInputTokens"]) for u in served)


async def test_the_plan_call_caches_its_catalogue_and_usage_records_what_bedrock_reports(
        converse):
    first = await _run(converse, _plan(3), tools=40)
    second = await _run(converse, _plan(3), tools=40)
    assert converse.invalid == []  # cache points as botocore's model and the server allow
    plan_request = converse.requests[0]
    # The catalogue is in the system prompt (Nova caches system and messages, not
    # toolConfig), and the cache point closes it.
    assert plan_request["system"][-1] == CACHE_POINT and len(plan_request["system"]) == 2
    assert "find_invoices_1(query: str" in plan_request["system"][0]["text"]
    assert CACHE_POINT not in plan_request["toolConfig"]["tools"]
    served = converse.usages
    # The first run writes the prefix, the second reads it: exactly what the server said.
    assert served[0]["cacheWriteInputTokens"] > 1000 and served[0]["cacheReadInputTokens"] == 0
    assert served[2]["cacheReadInputTokens"] == served[0]["cacheWriteInputTokens"]
    assert served[2]["cacheWriteInputTokens"] == 0
    for out, calls in ((first, served[:2]), (second, served[2:])):
        usage = out["usage"]
        assert usage.cache_read_tokens == sum(u["cacheReadInputTokens"] for u in calls)
        assert usage.cache_write_tokens == sum(u["cacheWriteInputTokens"] for u in calls)
        assert usage.input_tokens == sum(u["inputTokens"] + u["cacheReadInputTokens"]
                                         + u["cacheWriteInputTokens"] for u in calls)
        # Each kind of input token at its own price.
        assert usage.estimated_cost_usd == pytest.approx(_expected_cost(calls), abs=2e-6)
    assert second["usage"].estimated_cost_usd < first["usage"].estimated_cost_usd


async def test_a_replan_reads_what_the_first_plan_call_wrote(converse):
    last = Plan(goal="the last item", steps=[
        Step(id="s9", tool="work", args={"item": 9, "seconds": 0})])
    converse.script += [tool_input(_plan(2)),
                        tool_input(Decision(action="replan", reason="one item more"))]
    out = await _run(converse, last, tools=40)  # then the new plan, and a join that finishes
    plans = [u for u, r in zip(converse.usages, converse.requests, strict=True)
             if r.get("toolConfig", {}).get("tools", [{}])[0].get("toolSpec", {}).get("name")
             == "Plan"]
    assert len(plans) == 2 and plans[0]["cacheWriteInputTokens"] > 1000
    assert (plans[1]["cacheReadInputTokens"], plans[1]["cacheWriteInputTokens"]) == (
        plans[0]["cacheWriteInputTokens"], 0)
    assert out["usage"].cache_read_tokens == plans[1]["cacheReadInputTokens"]


async def test_a_decision_caches_the_plan_after_its_system_prompt(converse):
    """The join's stable prefix is its system prompt, the task and the plan: with a plan
    long enough to be cached, the cache point follows the plan, before the results."""
    await _run(converse, _plan(30, note="Process this item and keep its report for the "
                                         "answer; nothing else needs it."), tools=1)
    join = converse.requests[1]
    content = join["messages"][0]["content"]
    assert [("cachePoint" in block) for block in content] == [False, True, False]
    assert '"id":"s29"' in content[0]["text"] and "Results:" in content[2]["text"]
    assert "<untrusted_tool_output>" not in content[0]["text"]
    assert converse.usages[1]["cacheWriteInputTokens"] > 1000 and converse.invalid == []


async def test_no_cache_point_where_the_prefix_is_too_short_to_be_cached(converse):
    await _run(converse, _plan(2), tools=1)  # one tool, a two-step plan: far below 1,000
    assert converse.invalid == []
    assert all(CACHE_POINT not in _blocks(request) for request in converse.requests)


async def test_the_setting_turns_caching_off(converse):
    for _ in range(2):
        out = await _run(converse, _plan(3), tools=40, prompt_caching=False)
        assert (out["usage"].cache_read_tokens, out["usage"].cache_write_tokens) == (0, 0)
    assert all(CACHE_POINT not in _blocks(request) for request in converse.requests)
    assert all(u["cacheReadInputTokens"] == u["cacheWriteInputTokens"] == 0
               for u in converse.usages)


def test_the_price_table_is_the_users_from_a_setting_or_a_file(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(PRICES.model_dump_json())
    assert Context(token_prices=str(path)).prices() == PRICES
    assert Context().prices().source and Context().prices().as_of  # the default says whence
    usage = Usage.of_call(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=500_000,
                          cache_write_tokens=250_000, prices=PRICES)
    assert usage.estimated_cost_usd == pytest.approx(0.25 * 1.0 + 0.5 * 0.1 + 0.25 * 1.25)
    with pytest.raises(ConfigurationError, match="token_prices"):
        resolve_reasoner(Context(token_prices='{"input": 1}'), ScriptedChatModel(responses=[]))


@pytest.mark.parametrize("name, variables", [
    ("plan", {"tools": "### work(item: int)", "task": "t", "summary": "s", "results": "r",
              "feedback": "f", "previous_plan": "p", "review": "v"}),
    ("observe", {"task": "t", "plan": "goal: g", "summary": "s", "results": "r",
                 "trigger": "x"}),
    ("summarize", {"task": "t", "summary": "", "results": "r"}),
    ("finalize", {"task": "t", "status": "ok", "reason": "", "summary": "", "results": "r"}),
])
def test_cache_points_change_no_word_of_a_prompt(name, variables):
    plain = [m.content for m in load_prompt(name, **variables)]
    marked = [m.content for m in load_prompt(name, 1, **variables)]  # every point placed
    assert all(isinstance(content, str) and CACHE_MARKER not in content for content in plain)
    assert any(CACHE_POINT in content for content in marked)
    texts = [content if isinstance(content, str)  # a message without a cache point
             else "\n\n".join(b["text"] for b in content if "text" in b) for content in marked]
    assert texts == plain


def test_the_server_counts_cache_tokens_by_bedrocks_prefix_rule():
    cache = PromptCache()
    long_text = {"text": "x" * 8_000}
    tokens = len(json.dumps(long_text)) // 4  # a block's tokens: its JSON, four characters each
    body = {"system": [long_text, CACHE_POINT],
            "messages": [{"role": "user", "content": [{"text": "task"}]}]}
    cold, warm = cache.usage(MODEL, body), cache.usage(MODEL, body)
    assert (cold["cacheWriteInputTokens"], cold["cacheReadInputTokens"]) == (tokens, 0)
    assert (warm["cacheWriteInputTokens"], warm["cacheReadInputTokens"]) == (0, tokens)
    assert cold["inputTokens"] == warm["inputTokens"] > 0  # the task, after the cache point
    assert cache.usage("another-model", body)["cacheReadInputTokens"] == 0  # per model
    short = {"system": [{"text": "short"}, CACHE_POINT], "messages": body["messages"]}
    assert cache.usage(MODEL, short)["cacheWriteInputTokens"] == 0  # below the minimum
    tools = {**body, "toolConfig": {"tools": [CACHE_POINT]}}
    with pytest.raises(ValueError, match="toolConfig"):
        cache.usage(MODEL, tools)


def test_report_show_and_trace_show_the_cached_tokens(converse):
    async def two_runs() -> str:
        for thread in ("cold", "warm"):
            converse.script += [tool_input(_plan(3)), tool_input(
                Decision(action="finish", reason="done", answer="Done [s0]."))]
            registry = ToolRegistry(caching.tool_list(40), read_only=True)
            await run_thread(_plan(3).goal, thread_id=thread, context=_context(converse),
                             tools=registry)
            await registry.aclose()
        return thread

    thread = asyncio.run(two_runs())
    read = converse.usages[2]["cacheReadInputTokens"]
    data = asyncio.run(report_data(thread))
    assert data["totals"]["cache_read_tokens"] == read > 0
    assert data["reasoning"][0]["cache_read_tokens"] == read  # from the trace's event
    html = asyncio.run(write_report(thread)).read_text()
    assert "cache read" in html and f"<td>{read}</td>" in html
    shown = CliRunner().invoke(app, ["show", thread])
    assert shown.exit_code == 0, shown.output
    assert f"cache read {read}" in " ".join(shown.output.split())
    events = [json.loads(line) for line in trace_path(thread).read_text().splitlines()]
    assert any(e.get("event") == "reasoning" and e.get("cache_read_tokens") == read
               for e in events)


async def test_figure_12_runs_both_contenders_on_the_same_server():
    figure = await caching.prompt_caching([2], [40])
    rows = {(r["agent"], r["caching"]): r for r in figure["rows"]}
    assert rows[("nova-duet", "on, cold")]["cache_write_tokens"] > 1000
    assert rows[("nova-duet", "on, warm")]["cache_read_tokens"] > 1000
    assert rows[("nova-duet", "off")]["cache_read_tokens"] == 0
    assert rows[("nova-duet", "on, warm")]["input_usd"] < rows[("nova-duet", "off")]["input_usd"]
    assert rows[("ReAct", "off")]["calls"] == 3 and rows[("ReAct", "on, warm")]["calls"] == 3
    # ReAct's caching is langchain-aws's own middleware: it does send cache points.
    assert rows[("ReAct", "on, cold")]["cache_points_sent"] > 0
    assert rows[("ReAct", "off")]["cache_points_sent"] == 0
    assert figure["goal"]["plan_call_off_over_warm"] > 1
