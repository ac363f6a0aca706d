"""OpenTelemetry: runs export their spans over OTLP/HTTP to a real receiver on loopback,
which decodes them as a collector would (`tests.fixtures.otlp`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files

from langchain_core.tracers.langchain import wait_for_all_tracers

from benchmarks.caching import catalogue_tool
from graph import Context, Decision, Plan, Step
from graph.app.runner import run_thread
from graph.app.threads import read_trace, trace_path
from graph.events import ReasoningCall
from graph.testing import ScriptedChatModel
from tests.fixtures.converse import text, tool_input
from tests.fixtures.langsmith import SECRETS
from tests.fixtures.loopback import AwsHandler, host_of, serve
from tests.fixtures.otlp import ReceivedSpan, Receiver
from tests.fixtures.stalled import stalled_server
from tools import default_registry

DUET = [sys.executable, "-m", "graph.app.cli"]
RUN = "invoke_agent nova-duet"
MODEL = "us.amazon.nova-2-lite-v1:0"
CLIENT, ERROR = 3, 2  # Span.SpanKind.SPAN_KIND_CLIENT, Status.STATUS_CODE_ERROR


def _duet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*DUET, *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})


def _the_run(receiver: Receiver) -> ReceivedSpan:
    """The one run span received: the root of its trace."""
    [run] = receiver.named(RUN)
    assert run.parent_span_id == ""
    return run


def _within(child: ReceivedSpan, parent: ReceivedSpan) -> bool:
    return parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns


def test_the_demo_exports_run_step_and_attempt_spans(otlp_receiver, isolated_env):
    # `duet demo` in its own process, as a user runs it, its exporter set by the standard
    # variables; a header carries a credential the receiver must get and no span may hold.
    out = _duet("demo", "--json", env={
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=otel-header-do-not-leak-4242",
        "OTEL_SERVICE_NAME": "duet-demo-tests"})
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "completed"

    run = _the_run(otlp_receiver)
    assert run.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert run.attributes["gen_ai.agent.name"] == "nova-duet"
    assert run.attributes["duet.thread_id"] == final["thread_id"]
    assert run.attributes["gen_ai.conversation.id"] == final["thread_id"]
    assert run.attributes["duet.run.status"] == "completed"
    assert run.attributes["duet.run.began"] == "start"
    assert run.resource["service.name"] == "duet-demo-tests"
    assert {s.trace_id for s in otlp_receiver.spans} == {run.trace_id}

    # Every step is a child of the run, with what a reader filters on.
    steps = otlp_receiver.children(run)
    results = {r["step_id"]: r for r in final["results"]}
    assert {s.attributes["duet.step.id"] for s in steps} == set(results)
    assert len(steps) == len(results) == 13
    for step in steps:
        result = results[step.attributes["duet.step.id"]]
        assert step.name == f"execute_tool {result['tool']}"
        assert step.attributes["gen_ai.tool.name"] == result["tool"]
        assert step.attributes["gen_ai.operation.name"] == "execute_tool"
        assert step.attributes["duet.step.status"] == "ok" and step.status_code != ERROR
        assert step.attributes["duet.step.attempts"] == result["attempts"] == 1
        assert step.attributes["duet.plan.version"] == 1
        assert _within(step, run)
        # Each attempt is a child of its step.
        [attempt] = otlp_receiver.children(step)
        assert attempt.name == "attempt 1"
        assert attempt.attributes == {"duet.step.id": step.attributes["duet.step.id"],
                                      "duet.attempt.number": 1, "duet.attempt.status": "ok"}
        assert _within(attempt, step)
    assert {s.name for s in steps} == {"execute_tool http_request", "execute_tool browser_goto",
                                       "execute_tool browser_read", "execute_tool browser_fill",
                                       "execute_tool browser_click"}
    # The offline planner calls no model: no model-call span.
    assert not [s for s in otlp_receiver.spans if s.name.startswith("chat")]
    assert len(otlp_receiver.spans) == 1 + 13 + 13

    # The header reached the receiver; no span holds it, nor any tool argument or output.
    assert {h.get("x-collector-key") for h in otlp_receiver.headers} == {
        "otel-header-do-not-leak-4242"}
    sent = b"".join(otlp_receiver.bodies)
    for leaked in (b"otel-header-do-not-leak-4242", b"Payment reminder", b"2026-09-15",
                   b"reminded"):
        assert leaked not in sent


async def test_model_calls_carry_genai_usage_and_langsmith_still_receives(
        otlp_receiver, converse, langsmith_capture, site):
    # The real ChatBedrockConverse against the loopback Converse server, which reports
    # usage (cache reads and writes as Bedrock counts them); the same task twice, so the
    # second run's plan call reads what the first one wrote to the prompt cache (a catalogue
    # of 40 tools makes the planner's prefix long enough for Nova's cache).
    plan = Plan(goal="count overdue invoices", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/invoices?status=overdue"})])
    context = Context(model=MODEL, bedrock_endpoint_url=converse.url,
                      allowed_hosts=[host_of(site)])
    threads, finals = [], []
    for _ in range(2):
        converse.script += [tool_input(plan), tool_input(Decision(action="finish", reason="ok")),
                            text("There are 3 overdue invoices [s1].")]
        registry = default_registry().extended()
        for n in range(1, 40):
            registry.register(catalogue_tool(n), read_only=True)
        thread_id, final = await run_thread("How many invoices are overdue?", context=context,
                                            tools=registry)
        assert final.status == "completed", final.reason
        threads.append(thread_id)
        finals.append(final)

    runs = otlp_receiver.named(RUN)
    assert [r.attributes["duet.thread_id"] for r in runs] == threads
    calls = [c for run in runs for c in otlp_receiver.children(run) if c.name.startswith("chat")]
    assert [c.name for c in calls] == [f"chat {MODEL}"] * 6
    assert [c.attributes["duet.reasoning.kind"] for c in calls] == ["plan", "decision",
                                                                     "answer"] * 2
    for call in calls:
        assert call.kind == CLIENT
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.provider.name"] == "aws.bedrock"
        assert call.attributes["gen_ai.system"] == "aws.bedrock"
        assert call.attributes["gen_ai.request.model"] == MODEL
    # The counts the Converse server reported, call by call (Bedrock's inputTokens leaves
    # the cached part out; the convention's input tokens count it in).
    assert len(converse.usages) == 6
    for call, usage in zip(calls, converse.usages, strict=True):
        read, written = usage.get("cacheReadInputTokens", 0), usage.get("cacheWriteInputTokens", 0)
        assert call.attributes["gen_ai.usage.input_tokens"] == (
            usage["inputTokens"] + read + written)
        assert call.attributes["gen_ai.usage.output_tokens"] == usage["outputTokens"] > 0
        assert call.attributes.get("gen_ai.usage.cache_read.input_tokens", 0) == read
        assert call.attributes.get("gen_ai.usage.cache_creation.input_tokens", 0) == written
    assert calls[0].attributes["gen_ai.usage.cache_creation.input_tokens"] > 0
    assert calls[3].attributes["gen_ai.usage.cache_read.input_tokens"] > 0
    # Each run's spans add up to its usage, as the trace's events say it.
    for run, thread_id, final in zip(runs, threads, finals, strict=True):
        mine = [c for c in calls if c.trace_id == run.trace_id]
        assert all(c.parent_span_id == run.span_id and _within(c, run) for c in mine)
        assert sum(c.attributes["gen_ai.usage.input_tokens"] for c in mine) == (
            final.usage.input_tokens)
        assert sum(c.attributes["gen_ai.usage.output_tokens"] for c in mine) == (
            final.usage.output_tokens)
        events = [e for e in read_trace(trace_path(thread_id)) if isinstance(e, ReasoningCall)]
        assert [(e.model, e.provider) for e in events] == [(MODEL, "amazon_bedrock")] * 3

    # LangSmith received the same runs, beside the OTLP export.
    wait_for_all_tracers()
    langsmith = b"\n".join(langsmith_capture).decode("utf-8", errors="replace")
    assert "ChatBedrockConverse" in langsmith and "step s1" in langsmith
    assert threads[0] in langsmith
    sent = b"".join(otlp_receiver.bodies)
    for secret in [*SECRETS.values(), "AKIATESTDONOTLEAK"]:
        assert secret.encode() not in sent
    assert b"untrusted_tool_output" not in sent and b"1002" not in sent


@contextmanager
def _flaky_site() -> Iterator[tuple[str, list[str]]]:
    """A loopback server whose /flaky answers 503 once, then 200; /missing always 404.
    Yields its URL and the paths it was asked for."""
    seen: list[str] = []

    class Handler(AwsHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            if self.path == "/flaky":
                first = seen.count("/flaky") == 1
                self.reply(503 if first else 200, {"ok": not first})
            else:
                self.reply(404, {"detail": "no such thing"})

    server, url = serve(Handler)
    try:
        yield url, seen
    finally:
        server.shutdown()


async def test_a_retried_step_has_a_span_per_attempt_and_a_failed_one_its_error(
        otlp_receiver):
    with _flaky_site() as (url, seen):
        plan = Plan(goal="g", steps=[
            Step(id="flaky", tool="http_request", args={"url": f"{url}/flaky"}),
            Step(id="missing", tool="http_request", args={"url": f"{url}/missing"})])
        model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="enough"),
                                             "It answered the second time [flaky]."])
        _, final = await run_thread("t", model=model,
                                    context=Context(allowed_hosts=[host_of(url)]))
    assert seen.count("/flaky") == 2 and seen.count("/missing") == 1

    run = _the_run(otlp_receiver)
    assert run.attributes["duet.run.status"] == final.status
    steps = {s.attributes["duet.step.id"]: s for s in otlp_receiver.children(run)
             if s.name == "execute_tool http_request"}
    flaky, missing = steps["flaky"], steps["missing"]
    assert flaky.attributes["duet.step.status"] == "ok"
    assert flaky.attributes["duet.step.attempts"] == 2
    first, second = otlp_receiver.children(flaky)
    assert (first.name, second.name) == ("attempt 1", "attempt 2")
    assert first.attributes["duet.attempt.status"] == "error"
    assert first.attributes["error.type"] == "ToolError" and first.status_code == ERROR
    assert second.attributes["duet.attempt.status"] == "ok" and second.status_code != ERROR
    assert first.end_ns <= second.start_ns and _within(second, flaky)
    # A 404 is not retried: one attempt, and the step's span says it failed, and why.
    assert missing.attributes["duet.step.status"] == "error"
    assert missing.attributes["error.type"] == "ToolError" and missing.status_code == ERROR
    assert len(otlp_receiver.children(missing)) == 1
    # The scripted model names its provider as LangChain does, and no model id.
    calls = [s for s in otlp_receiver.children(run) if s.name == "chat"]
    assert [c.attributes["gen_ai.provider.name"] for c in calls] == ["scriptedchatmodel"] * 3
    assert all("gen_ai.request.model" not in c.attributes for c in calls)
    assert b"no such thing" not in b"".join(otlp_receiver.bodies)


async def test_a_stalled_receiver_holds_a_run_no_longer_than_the_export_timeout(
        monkeypatch, caplog):
    from graph.app.telemetry.spans import shutdown

    with stalled_server() as port:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                           f"http://127.0.0.1:{port}/v1/traces")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        model = ScriptedChatModel(responses=[Plan(goal="g", steps=[]), "nothing to do"])
        try:
            began = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="duet"):
                _, final = await run_thread("t", model=model)
            took = time.monotonic() - began
            assert final.status == "completed"
            assert took < 1 + 3, took  # the export timeout, and the run itself
            assert "were not all sent within 1s" in caplog.text
        finally:
            began = time.monotonic()
            shutdown()
            assert time.monotonic() - began < 1.5


def test_without_an_endpoint_no_exporter_is_loaded(tmp_path):
    # In a fresh process: a whole run, and OpenTelemetry's exporter never imported.
    probe = (
        "import asyncio, sys\n"
        "from graph import Plan\n"
        "from graph.app.runner import run_thread\n"
        "from graph.testing import ScriptedChatModel\n"
        "model = ScriptedChatModel(responses=[Plan(goal='g', steps=[]), 'done'])\n"
        "_, final = asyncio.run(run_thread('t', model=model))\n"
        "print(final.status.value, sorted(m for m in sys.modules if m.startswith(\n"
        "    ('opentelemetry.exporter', 'graph.app.telemetry.'))))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "DUET_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["completed", "[]"]


def test_an_export_that_cannot_be_made_is_refused_before_any_work(isolated_env):
    plan = files("demo_site").joinpath("plans/overdue_followup.yaml")
    out = _duet("run", "t", "--plan-file", str(plan), "--var", "site=http://127.0.0.1:9",
                env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                     "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: OTEL_EXPORTER_OTLP_PROTOCOL=grpc: nova-duet exports traces over OTLP/HTTP "
        "(http/protobuf) only; point the endpoint at the collector's HTTP port (4318 by "
        "default)"]
    assert not (isolated_env / "traces").exists()
