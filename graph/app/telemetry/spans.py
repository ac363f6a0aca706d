"""A run's OpenTelemetry spans, built from its events and exported over OTLP/HTTP (protobuf).

One span for the run (`invoke_agent nova-duet`: the root, or a child of the caller's
current span), and under it one per call of the reasoning model (`chat <model>`) and one
per step (`execute_tool <tool>`), with one per attempt under its step (`attempt <n>`).
Spans are made as the events that complete them are recorded (`RunSpans.record`), with the
times the events carry. None carries tool output, tool arguments, prompts, answers or error
messages: ids, names, statuses, error kinds, counts, tokens and times only.

The exporter is the process's: made with the first run that exports, again when the
OpenTelemetry environment changed, flushed at the end of each run and shut down at exit,
each wait bounded by the export timeout (`graph.app.telemetry.export_timeout`).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.re import parse_env_headers
from opentelemetry.util.types import AttributeValue

from graph.contracts import RunStatus
from graph.events import (
    Event,
    ReasoningCall,
    Resumed,
    RunFinished,
    RunRetried,
    RunStarted,
    StepFinished,
)
from graph.redaction import also_redact

__all__ = ["RunSpans", "shutdown"]

log = logging.getLogger("duet")

AGENT = "nova-duet"

# The OpenTelemetry GenAI semantic conventions (status: development), as published at
# https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/ and in the registry of
# https://github.com/open-telemetry/semantic-conventions-genai (model/gen-ai/spans.yaml):
# an inference span is named "{gen_ai.operation.name} {gen_ai.request.model}", kind CLIENT;
# an agent's run "invoke_agent {gen_ai.agent.name}"; a tool's "execute_tool
# {gen_ai.tool.name}". `gen_ai.system` is the name `gen_ai.provider.name` replaced (after
# v1.36): both are sent, as backends read one or the other.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"  # every input token, cached ones included
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
AGENT_NAME = "gen_ai.agent.name"
CONVERSATION_ID = "gen_ai.conversation.id"
TOOL_NAME = "gen_ai.tool.name"
ERROR_TYPE = "error.type"  # OpenTelemetry's general attribute for what failed
OTHER_ERROR = "_OTHER"  # its value when no better one is known
# LangChain's provider names (`ls_provider`) that the conventions spell otherwise.
PROVIDERS = {"amazon_bedrock": "aws.bedrock", "bedrock": "aws.bedrock",
             "bedrock_converse": "aws.bedrock"}
# Run statuses that are not failures: the run ended well, or waits for a human.
RUN_OK = {RunStatus.COMPLETED, RunStatus.NEEDS_APPROVAL, RunStatus.NEEDS_PERSON}
# How a run in this process began, by the event that says so.
BEGAN = {"run_started": "start", "resume": "resume", "run_retried": "retry"}


class RunSpans:
    """The spans of one run of a thread in this process (a start, a resume or a retry):
    the run's span begins when this is made; `record` makes the spans each event completes;
    `end` ends the run's span and sends every span."""

    def __init__(self, thread_id: str, timeout_seconds: float):
        self._exporter = _exporter(timeout_seconds)
        self._tracer = self._exporter.provider.get_tracer(AGENT)
        self._run = self._tracer.start_span(f"invoke_agent {AGENT}", attributes={
            OPERATION: "invoke_agent", AGENT_NAME: AGENT, CONVERSATION_ID: thread_id,
            "duet.thread_id": thread_id})
        self._under_run = trace.set_span_in_context(self._run)
        self._status: str | None = None

    def record(self, event: Event) -> None:
        """Make the spans `event` completes (a model call; a step and its attempts), or note
        what it says of the run (how it began, its status)."""
        match event:
            case ReasoningCall():
                self._model_call(event)
            case StepFinished():
                self._step(event)
            case RunStarted() | Resumed() | RunRetried():
                self._run.set_attribute("duet.run.began", BEGAN[event.event])
            case RunFinished():
                self._status = event.status

    async def end(self) -> None:
        """End the run's span, with the run's status (an error when the run stopped before
        it ended), and send every span not sent yet, waiting at most the export timeout:
        what is left then is sent in the background while the program runs."""
        if self._status is None:
            _failed(self._run, OTHER_ERROR, "the run stopped before it ended")
        else:
            self._run.set_attribute("duet.run.status", self._status)
            if self._status not in RUN_OK:
                _failed(self._run, self._status, self._status)
        self._run.end()
        if not await asyncio.to_thread(self._exporter.flush):
            log.warning("OpenTelemetry: this run's spans were not all sent within %gs (the "
                        "export timeout); they are sent while the program runs",
                        self._exporter.timeout_seconds)

    def _model_call(self, call: ReasoningCall) -> None:
        attributes: dict[str, AttributeValue] = {
            OPERATION: "chat", INPUT_TOKENS: call.input_tokens,
            OUTPUT_TOKENS: call.output_tokens, "duet.reasoning.kind": call.kind,
            "duet.cost_usd": call.cost_usd}
        if call.provider:
            attributes[PROVIDER] = attributes[SYSTEM] = PROVIDERS.get(call.provider,
                                                                      call.provider)
        if call.model:
            attributes[REQUEST_MODEL] = call.model
        # The conventions ask for cache counts when the provider reports them, non-zero.
        if call.cache_read_tokens:
            attributes[CACHE_READ_TOKENS] = call.cache_read_tokens
        if call.cache_write_tokens:
            attributes[CACHE_WRITE_TOKENS] = call.cache_write_tokens
        span = self._tracer.start_span(
            f"chat {call.model}" if call.model else "chat", context=self._under_run,
            kind=SpanKind.CLIENT, attributes=attributes, start_time=_ns(call.started))
        if not call.ok:
            _failed(span, call.error or OTHER_ERROR, "the call failed")
        span.end(end_time=_ns(call.ended))

    def _step(self, step: StepFinished) -> None:
        ended = step.t or time.time()
        started = step.started if step.started is not None else ended - step.duration_ms / 1000
        attributes: dict[str, AttributeValue] = {
            OPERATION: "execute_tool", TOOL_NAME: step.tool, "duet.step.id": step.step_id,
            "duet.step.status": step.status, "duet.step.attempts": step.attempts}
        if step.plan_version is not None:
            attributes["duet.plan.version"] = step.plan_version
        span = self._tracer.start_span(f"execute_tool {step.tool}", context=self._under_run,
                                       attributes=attributes, start_time=_ns(started))
        if step.status != "ok":
            _failed(span, step.error or OTHER_ERROR, step.status)
        under_step = trace.set_span_in_context(span)
        for number, attempt in enumerate(step.attempt_log, start=1):
            child = self._tracer.start_span(
                f"attempt {number}", context=under_step, start_time=_ns(attempt.started),
                attributes={"duet.step.id": step.step_id, "duet.attempt.number": number,
                            "duet.attempt.status": attempt.status})
            if attempt.status != "ok":
                _failed(child, attempt.error or OTHER_ERROR, attempt.status)
            child.end(end_time=_ns(attempt.ended))
        span.end(end_time=_ns(ended))


def _failed(span: Span, error_type: str, description: str) -> None:
    """Mark `span` as failed, its kind of error in `error.type`."""
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def _ns(seconds: float) -> int:
    """Epoch seconds as OpenTelemetry's nanoseconds."""
    return int(seconds * 1e9)


def _within(seconds: float, work: Callable[[], object]) -> bool:
    """Run `work` in a daemon thread and wait at most `seconds` for it; True when it ended.

    The SDK's own flush takes no bound yet (the batch processor leaves its `timeout_millis`
    unused): a collector that stalls must hold neither a run nor the program's exit."""
    done = threading.Event()

    def run() -> None:
        try:
            work()
        finally:
            done.set()

    threading.Thread(target=run, name="duet-otel-export", daemon=True).start()
    return done.wait(seconds)


@dataclass(frozen=True)
class _Exporter:
    """The process's tracer provider, the OpenTelemetry environment it was made from, and
    the bound of one export."""

    provider: TracerProvider
    environment: frozenset[tuple[str, str]]
    timeout_seconds: float

    def flush(self) -> bool:
        """Send every ended span; False when that took longer than the export timeout."""
        return _within(self.timeout_seconds, self.provider.force_flush)

    def shutdown(self) -> None:
        """Send what is left and stop, within the export timeout."""
        _within(self.timeout_seconds, self.provider.shutdown)


_current: _Exporter | None = None
_lock = threading.Lock()


def _exporter(timeout_seconds: float) -> _Exporter:
    """The process's exporter, made on first use and made again (the old one shut down)
    when the OpenTelemetry environment changed since."""
    global _current
    environment = frozenset((k, v) for k, v in os.environ.items() if k.startswith("OTEL_"))
    with _lock:
        if _current is not None and _current.environment == environment:
            return _current
        if _current is not None:
            _current.shutdown()
        # Exit is handled by `shutdown` (registered below), which bounds its wait.
        provider = TracerProvider(resource=_resource(), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            timeout=timeout_seconds)))
        # Header values are credentials (an API key): never in a log line or a trace.
        headers = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                   or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS") or "")
        also_redact(parse_env_headers(headers, liberal=True).values())
        _current = _Exporter(provider, environment, timeout_seconds)
        return _current


def _resource() -> Resource:
    """What the spans come from: the environment's resource (`OTEL_SERVICE_NAME`,
    `OTEL_RESOURCE_ATTRIBUTES`), named `nova-duet` unless it names itself."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": AGENT}))
    return resource


def shutdown() -> None:
    """Send the spans not sent yet and stop the exporter, within the export timeout (at
    exit; a test that changes receivers, at its end)."""
    global _current
    with _lock:
        current, _current = _current, None
    if current is not None:
        current.shutdown()


atexit.register(shutdown)
