"""The real ChatBedrockConverse request path, against a loopback Converse server."""

from __future__ import annotations

import pytest

from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.reasoning import ConfigurationError, chat_model_from_spec
from tests.fixtures.converse import failure, text, tool_input
from tests.fixtures.loopback import host_of

MODEL = "us.amazon.nova-2-lite-v1:0"


def _context(stub, site: str | None = None, **overrides) -> Context:
    return Context(model=MODEL, bedrock_endpoint_url=stub.url,
                   allowed_hosts=[host_of(site)] if site else [], **overrides)


def _read_plan(site: str) -> Plan:
    return Plan(goal="count overdue invoices", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/invoices?status=overdue"}),
    ])


async def test_bedrock_plan_observe_finalize_over_converse(converse, site):
    converse.script += [
        tool_input(_read_plan(site)),
        tool_input(Decision(action="finish", reason="the list answers the question")),
        text("There are 3 overdue invoices [s1]."),
    ]
    out = await build_graph().ainvoke({"task": "How many invoices are overdue?"},
                                      context=_context(converse, site))
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert out["final_answer"] == "There are 3 overdue invoices [s1]."
    assert [r.status for r in out["results"]] == ["ok"]
    assert len(out["results"][0].output["json"]) == 3
    assert converse.invalid == []
    assert converse.model_ids == [MODEL] * 3
    plan_request, observe_request, final_request = converse.requests
    # Structured output goes through Converse tool use, forced where Nova allows it.
    assert plan_request["toolConfig"]["tools"][0]["toolSpec"]["name"] == "Plan"
    assert observe_request["toolConfig"]["tools"][0]["toolSpec"]["name"] == "Decision"
    assert "toolConfig" not in final_request
    # The planner sees the registered tools; tool output reaches prompts fenced as data.
    assert "http_request" in plan_request["system"][0]["text"]
    observed = observe_request["messages"][0]["content"][0]["text"]
    assert "<untrusted_tool_output>" in observed and "1002" in observed
    assert out["usage"].reasoning_calls == 3 and out["usage"].input_tokens > 0


async def test_bedrock_invalid_plan_is_sent_back_with_the_error(converse, site):
    cyclic = {"goal": "g", "steps": [
        {"id": "a", "tool": "http_request", "args": {"url": site}, "depends_on": ["b"]},
        {"id": "b", "tool": "http_request", "args": {"url": site}, "depends_on": ["a"]}]}
    converse.script += [
        tool_input({"goal": "missing steps"}),
        tool_input(cyclic),
        tool_input(_read_plan(site)),
        tool_input(Decision(action="finish", reason="done")),
        text("done [s1]"),
    ]
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse, site))
    assert out["status"] == RunStatus.COMPLETED
    second, third = converse.requests[1], converse.requests[2]
    assert "steps" in second["messages"][0]["content"][0]["text"]
    assert "dependency cycle" in third["messages"][0]["content"][0]["text"]


async def test_bedrock_plan_that_never_validates_fails_the_run(converse):
    converse.script += [text("I think you should check the invoices.")] * 3
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse))
    assert out["status"] == RunStatus.FAILED
    assert "no valid plan after 3 attempts" in out["reason"]
    assert out["results"] == [] and out["final_answer"]


async def test_bedrock_server_error_ends_the_run_failed_not_raised(converse):
    converse.script += [failure(400, "ValidationException", "model not ready")] * 3
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse))
    assert out["status"] == RunStatus.FAILED
    assert "ValidationException" in out["reason"] or "model not ready" in out["reason"]


def test_no_credentials_says_what_to_set():
    with pytest.raises(ConfigurationError) as raised:
        chat_model_from_spec(MODEL, Context())
    message = str(raised.value)
    assert "AWS_ACCESS_KEY_ID" in message and "AWS_PROFILE" in message
    assert "--plan-file" in message


async def test_no_credentials_run_fails_before_any_work(site):
    out = await build_graph().ainvoke({"task": "t"}, context=Context(model=MODEL))
    assert out["status"] == RunStatus.FAILED
    assert "No AWS credentials" in out["reason"]
    assert out["results"] == []


async def test_bedrock_throttling_and_5xx_are_retried_then_succeed(converse, site):
    converse.script += [
        failure(429, "ThrottlingException", "slow down"),
        failure(500, "InternalServerException", "try again"),
        tool_input(_read_plan(site)),
        tool_input(Decision(action="finish", reason="done")),
        text("3 overdue [s1]"),
    ]
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse, site))
    assert out["status"] == RunStatus.COMPLETED
    assert len(converse.requests) == 5  # the plan call was sent three times


async def test_bedrock_retries_are_bounded(converse):
    converse.script += [failure(503, "ServiceUnavailableException", "down")] * 12
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse))
    assert out["status"] == RunStatus.FAILED
    # At most 4 attempts per call, 3 plan attempts: never an unbounded loop.
    assert len(converse.requests) <= 12


async def test_a_plan_sent_as_prose_with_one_json_block_is_salvaged(converse, site):
    plan_json = _read_plan(site).model_dump_json(exclude_defaults=True)
    converse.script += [
        text(f"Sure! Here is the plan:\n```json\n{plan_json}\n```\nLet me know."),
        tool_input(Decision(action="finish", reason="done", answer="3 overdue [s1]")),
    ]
    events, out = [], None
    async for mode, chunk in build_graph().astream(
            {"task": "How many invoices are overdue?"}, context=_context(converse, site),
            stream_mode=["custom", "values"]):
        if mode == "custom":
            events.append(chunk)
        else:
            out = chunk
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert len(converse.requests) == 2  # no retry: the text's JSON counted as the answer
    assert {"event": "structured_output_salvaged", "schema": "Plan"} in events


async def test_prose_with_two_json_objects_goes_back_to_the_model(converse, site):
    plan_json = _read_plan(site).model_dump_json(exclude_defaults=True)
    converse.script += [
        text(f"Either {plan_json} or {plan_json}."),
        tool_input(_read_plan(site)),
        tool_input(Decision(action="finish", reason="done", answer="3 overdue [s1]")),
    ]
    out = await build_graph().ainvoke({"task": "t"}, context=_context(converse, site))
    assert out["status"] == RunStatus.COMPLETED
    retry = converse.requests[1]["messages"][0]["content"][0]["text"]
    assert "2 JSON objects" in retry
