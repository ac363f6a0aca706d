"""The run's cost budget (`max_cost_usd`): a run ends `budget_exhausted` before the call that
would pass it, and `duet retry` with a raised budget completes it. Reasoning calls are the
real ChatBedrockConverse requests to the loopback Converse server; Nova Act is the real SDK
and Chromium against the loopback Nova Act service."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from graph import Context, Decision, Plan, RunStatus, Step
from graph.app.cli import app
from graph.app.report import report_data
from graph.app.runner import retry_thread, run_thread
from graph.app.threads import read_trace
from graph.contracts import StepRequest
from graph.events import StepFinished
from graph.executor.service import StepService
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import text, tool_input
from tests.fixtures.loopback import host_of
from tests.fixtures.nova_act_service import call
from tools import default_registry

MODEL = "us.amazon.nova-2-lite-v1:0"
NOTES_SCHEMA = {"type": "object", "properties": {"notes": {"type": "integer"}},
                "required": ["notes"]}
# Input free, so a call's estimate is exactly its output bound: 1000 tokens at $2.50 per
# million, $0.0025. The budget fits one call's bound and a little more, less than any reply.
FREE_INPUT = json.dumps({"input": 0, "output": 2.5, "cache_read": 0, "cache_write": 0,
                         "source": "the test's: input free"})
ONE_CALL = 0.0025


def test_a_run_ends_before_the_reasoning_call_that_would_pass_its_budget_and_retry_completes(
        converse, site, isolated_env):
    plan = Plan(goal="count overdue invoices", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/invoices?status=overdue"})])
    converse.script += [tool_input(plan)]
    cli = CliRunner()
    out = cli.invoke(app, [
        "run", "How many invoices are overdue?", "--model", MODEL, "--thread", "budget",
        "--allow-host", host_of(site), "--json",
        "--set", f"bedrock_endpoint_url={converse.url}", "--set", "prompt_caching=false",
        "--set", f"token_prices={FREE_INPUT}", "--set", "max_output_tokens=1000",
        "--set", f"max_cost_usd={ONE_CALL + 0.000003}"])
    first = json.loads(out.stdout)
    assert out.exit_code == 1 and first["status"] == "budget_exhausted", out.output[-2000:]
    # The plan call fitted; the decision call after it would not have: it was never sent.
    assert len(converse.requests) == 1
    assert converse.requests[0]["inferenceConfig"]["maxTokens"] == 1000  # a real bound
    assert first["reason"].startswith("cost budget: the decision call could cost up to "
                                      "$0.0025, past max_cost_usd $0.002503")
    spent = converse.usages[0]["outputTokens"] * 2.5 / 1e6
    assert first["usage"]["reasoning_calls"] == 1
    assert first["usage"]["total_cost_usd"] == pytest.approx(spent, abs=1e-6)
    assert [r["status"] for r in first["results"]] == ["ok"]
    assert "written without the model: cost budget: the finalize call" in first["final_answer"]

    # Every step had succeeded: the retry ends the run `completed` and the model writes the
    # answer (the decision it was not asked for has nothing left to decide).
    converse.script += [text("3 invoices are overdue [s1].")]
    out = cli.invoke(app, ["retry", "budget", "--set", "max_cost_usd=0.05", "--json"])
    final = json.loads(out.stdout)
    assert out.exit_code == 0 and final["status"] == "completed", out.output[-2000:]
    assert final["final_answer"] == "3 invoices are overdue [s1]."
    assert len(converse.requests) == 2 and converse.invalid == []
    assert "toolConfig" not in converse.requests[1]  # the answer call
    assert [r["step_id"] for r in final["results"]] == ["s1"]  # not run again
    assert final["usage"]["reasoning_calls"] == 2  # over the whole run
    assert final["usage"]["total_cost_usd"] < 0.05


def _slow_count(notes: int, seconds: float):
    """An act whose agent takes `seconds` before it returns: Nova Act time it bills."""
    def script(step: int, observation: dict):
        time.sleep(seconds)
        return [call("return", json.dumps({"notes": notes}))]
    return script


def _count_step(step_id: str, site: str, customer: int, **more) -> Step:
    return Step(id=step_id, tool="browser_extract", args={
        "instruction": "count the notes", "start_url": f"{site}/customers/{customer}",
        "schema": NOTES_SCHEMA}, **more)


@pytest.mark.browser
async def test_nova_act_time_is_priced_and_a_step_that_could_pass_the_budget_waits_for_retry(
        site, nova_act_service, isolated_env):
    nova_act_service.scripts += [_slow_count(0, 0.6), _slow_count(2, 0.3)]
    plan = Plan(goal="count notes", steps=[
        _count_step("s1", site, 1), _count_step("s2", site, 2, depends_on=["s1"])])
    model = ScriptedChatModel(responses=[
        plan, "Acme has no notes [s1]; Globex was not read.",
        Decision(action="finish", reason="both read", answer="0 [s1] and 2 [s2] notes")])
    # $0.1 a second of agent time; a step's bound is 10 s (one attempt): $1.00. The budget
    # fits the plan call and s1's bound, not s1's cost (0.6 s or more: $0.06) and s2's bound.
    context = Context(allowed_hosts=[urlsplit(site).netloc], browser_timeout_seconds=10,
                      max_retries=0, max_output_tokens=100, max_cost_usd=1.05,
                      nova_act_prices='{"agent_hour": 360, "source": "the test\'s"}')
    events: list = []
    _, first = await run_thread("count notes", thread_id="acts", context=context, model=model,
                                on_event=events.append)
    assert first.status == RunStatus.BUDGET_EXHAUSTED, first.reason
    assert first.reason.startswith("cost budget: step s2 (browser_extract, up to 10 s of "
                                   "Nova Act) could cost up to $1.0000, past max_cost_usd $1.05")
    assert sum(op == "CreateAct" for op, _ in nova_act_service.requests) == 1  # s2 never began
    [s1] = first.results
    assert s1.status == "ok" and 0.6 <= s1.nova_act_seconds <= s1.duration_ms / 1000
    assert s1.nova_act_cost_usd == pytest.approx(s1.nova_act_seconds * 0.1, abs=1e-6)
    usage = first.usage
    assert usage.nova_act_seconds == s1.nova_act_seconds and usage.reasoning_calls == 2
    assert usage.total_cost_usd == pytest.approx(usage.estimated_cost_usd
                                                 + s1.nova_act_cost_usd, abs=1e-6)
    [finished] = [e for e in events if isinstance(e, StepFinished)]
    assert finished.nova_act_seconds == s1.nova_act_seconds
    assert finished.nova_act_cost_usd == s1.nova_act_cost_usd

    _, final = await retry_thread("acts", settings={"max_cost_usd": 5.0}, model=model)
    assert final.status == RunStatus.COMPLETED, final.reason
    assert final.final_answer == "0 [s1] and 2 [s2] notes"
    assert [(r.step_id, r.output["data"]["notes"]) for r in final.results] == [
        ("s1", 0), ("s2", 2)]
    s2 = final.results[1]
    assert 0.3 <= s2.nova_act_seconds and final.usage.nova_act_seconds == pytest.approx(
        s1.nova_act_seconds + s2.nova_act_seconds)
    # The trace, the report and `duet show` carry each step's Nova Act time and the total.
    trace = read_trace(isolated_env / "traces" / "acts.jsonl")
    assert [e.step_id for e in trace if isinstance(e, StepFinished) and e.nova_act_seconds
            ] == ["s1", "s2"]
    report = await report_data("acts")
    assert [s["nova_act_seconds"] for s in report["steps"]] == [
        s1.nova_act_seconds, s2.nova_act_seconds]
    assert report["totals"]["cost_usd"] == pytest.approx(final.usage.total_cost_usd)
    assert report["totals"]["nova_act_cost_usd"] == pytest.approx(final.usage.nova_act_cost_usd)
    # (`duet show` runs its own event loop: in a thread of its own here.)
    shown = await asyncio.to_thread(CliRunner().invoke, app, ["show", "acts"],
                                    env={"COLUMNS": "200"})
    assert "Nova Act s" in shown.stdout and f"{s2.nova_act_seconds:.1f}" in shown.stdout
    assert f"Nova Act {final.usage.nova_act_seconds:.1f} s" in shown.stdout


async def test_without_a_nova_act_price_a_cost_budget_refuses_nova_act_steps(
        site, monkeypatch, isolated_env):
    monkeypatch.setenv("NOVA_ACT_API_KEY", "never-used")  # the tools are offered
    model = ScriptedChatModel(responses=[Plan(goal="g", steps=[_count_step("s1", site, 1)]),
                                         "not read"])
    _, final = await run_thread("count", thread_id="unpriced", model=model, context=Context(
        allowed_hosts=[urlsplit(site).netloc], max_output_tokens=100, max_cost_usd=1.0))
    assert final.status == RunStatus.FAILED and final.results == []
    assert final.reason == ("step s1 (browser_extract, up to 720 s of Nova Act) cannot be "
                            "priced, and max_cost_usd needs a price: set nova_act_prices "
                            "(USD per agent-hour)")


@pytest.mark.browser
async def test_an_executor_deployment_reports_the_nova_act_time_of_an_attempt(
        site, nova_act_service):
    nova_act_service.scripts.append(_slow_count(1, 0.3))
    service = StepService(default_registry(), (urlsplit(site).netloc,))
    policy = Context(allowed_hosts=[urlsplit(site).netloc]).sandbox_policy()
    try:
        attempt = await service.attempt(StepRequest(
            tool="browser_extract", args=_count_step("s1", site, 1).args, step_id="s1",
            plan_version=1, thread="remote", timeout_seconds=60, policy=policy,
            screenshot=False))
    finally:
        await service.aclose()
    assert attempt.status == "ok" and attempt.output["data"] == {"notes": 1}
    assert 0.3 <= attempt.nova_act_seconds < 60
