"""The reasoning agent: plans, decisions, summaries and answers.

`ModelReasoner` asks a LangChain chat model (Nova 2 Lite over Bedrock by default).
`PlanFileReasoner` is the offline planner mode: it runs a plan from a file and writes a
templated answer. Nothing switches between them silently: the run context or the caller
chooses, and with no AWS credentials the model mode fails with what to set.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import yaml
from jinja2 import Environment, StrictUndefined, TemplateError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from graph.context import Context
from graph.contracts import Decision, Plan, StepResult, Usage
from graph.rendering import estimate_tokens, render_plan, render_results
from prompts import load_prompt

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ConfigurationError(Exception):
    """The run cannot start as configured; the message says what to set."""


class ReasoningError(Exception):
    """The reasoning model could not produce a usable answer. Carries the usage spent."""

    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


class ModelTimeout(ReasoningError):
    """A reasoning call took longer than `model_timeout_seconds` (not retried as bad output)."""


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A reasoning result and what it cost."""

    value: T
    usage: Usage


class Reasoner(Protocol):
    """What the graph asks of the reasoning agent."""

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int,
    ) -> Reply[Plan]:
        """Return a valid plan, or raise `ReasoningError` after `max_attempts` tries."""
        ...

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Decide what happens after new results."""
        ...

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """Fold `results` into `summary`."""
        ...

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """Write the final answer, citing step ids."""
        ...


def _usage_of(message: BaseMessage | None, prompt: list[BaseMessage]) -> Usage:
    """Token usage reported by the model, or an estimate when the model reports none."""
    metadata = getattr(message, "usage_metadata", None) if message is not None else None
    if metadata:
        return Usage(
            reasoning_calls=1,
            input_tokens=metadata.get("input_tokens", 0),
            output_tokens=metadata.get("output_tokens", 0),
        )
    output = str(message.content) if message is not None else ""
    if isinstance(message, AIMessage) and message.tool_calls:
        output += json.dumps([call["args"] for call in message.tool_calls], default=str)
    return Usage(
        reasoning_calls=1,
        input_tokens=sum(estimate_tokens(str(m.content)) for m in prompt),
        output_tokens=estimate_tokens(output),
    )


class ModelReasoner:
    """Reasoning with a LangChain chat model and structured output (tool calling)."""

    def __init__(self, model: BaseChatModel, timeout_seconds: float | None = None):
        self.model = model
        self.timeout_seconds = timeout_seconds

    async def _call(self, runnable: Any, prompt: list[BaseMessage]) -> Any:
        """One model call, given up after `timeout_seconds` (a hung call must not hang a run)."""
        try:
            return await asyncio.wait_for(runnable.ainvoke(prompt), self.timeout_seconds)
        except TimeoutError:
            raise ModelTimeout(
                f"the reasoning model did not answer within {self.timeout_seconds:g}s") from None

    async def _structured(self, schema: type[M], prompt: list[BaseMessage]) -> Reply[M]:
        runnable = self.model.with_structured_output(schema, include_raw=True)
        out: dict[str, Any] = await self._call(runnable, prompt)
        usage = _usage_of(out.get("raw"), prompt)
        parsed = out.get("parsed")
        if out.get("parsing_error") is not None or parsed is None:
            error = out.get("parsing_error") or "the reply had no structured output"
            raise ReasoningError(f"invalid {schema.__name__}: {_short(error)}", usage)
        return Reply(parsed, usage)

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int,
    ) -> Reply[Plan]:
        """Ask for a plan; send validation errors back to the model up to `max_attempts` times."""
        spent, feedback = Usage(), ""
        for _ in range(max(1, max_attempts)):
            prompt = load_prompt(
                "plan", tools=tools, task=task, summary=summary,
                results=render_results(results), feedback=feedback,
                previous_plan=render_plan(previous_plan) if previous_plan else "",
            )
            try:
                reply = await self._structured(Plan, prompt)
            except ModelTimeout:
                raise
            except ReasoningError as exc:
                spent, feedback = spent + exc.usage, str(exc)
                continue
            return Reply(reply.value, spent + reply.usage)
        raise ReasoningError(f"no valid plan after {max_attempts} attempts; last error: {feedback}",
                             spent)

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Ask for a `Decision` (one retry on invalid output)."""
        prompt = load_prompt(
            "observe", task=task, plan=render_plan(plan), summary=summary,
            results=render_results(results), trigger=trigger,
        )
        try:
            return await self._structured(Decision, prompt)
        except ModelTimeout:
            raise
        except ReasoningError as first:
            reply = await self._structured(Decision, prompt)
            return Reply(reply.value, first.usage + reply.usage)

    async def _text(self, name: str, **variables: object) -> Reply[str]:
        prompt = load_prompt(name, **variables)
        message = await self._call(self.model, prompt)
        return Reply(_text_of(message), _usage_of(message, prompt))

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """Merge results into the running summary."""
        return await self._text(
            "summarize", task=task, summary=summary, results=render_results(results)
        )

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """Write the final answer."""
        return await self._text(
            "finalize", task=task, status=status, reason=reason, summary=summary,
            results=render_results(results),
        )


def _text_of(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content.strip()
    parts = [block.get("text", "") for block in message.content if isinstance(block, dict)]
    return "".join(parts).strip()


def _short(error: object, limit: int = 600) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


class PlanFileReasoner:
    """Offline planner mode: the plan comes from a JSON or YAML file, the answer from a template.

    It makes no model call and costs no tokens. It cannot replan: after a failed step it
    finishes, and the run reports the failure.
    """

    def __init__(self, path: str | Path, variables: dict[str, str] | None = None):
        self.path = Path(path)
        self.variables = variables or {}

    def load_plan(self) -> Plan:
        """Read, render (Jinja `{{ name }}` from `variables`) and validate the plan file.

        Raises `ReasoningError` with the problem.
        """
        try:
            template = Environment(undefined=StrictUndefined).from_string(
                self.path.read_text(encoding="utf-8"))
            text = template.render(**self.variables)
            data = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
            return Plan.model_validate(data)
        except (OSError, ValueError, yaml.YAMLError, ValidationError, TemplateError) as exc:
            raise ReasoningError(
                f"plan file {str(self.path)!r} is not a valid plan: {exc}") from exc

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int,
    ) -> Reply[Plan]:
        """Return the file's plan; a second plan cannot be had offline."""
        if previous_plan is not None:
            raise ReasoningError("the offline planner runs one plan file and cannot replan")
        return Reply(self.load_plan(), Usage())

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Finish on any failure or at the end of the plan, continue otherwise."""
        failed = [r.step_id for r in results if r.status != "ok"]
        if failed:
            return Reply(Decision(action="finish", reason=f"steps {failed} did not succeed"),
                         Usage())
        if "finished" in trigger:
            return Reply(Decision(action="finish", reason="every step succeeded"), Usage())
        return Reply(Decision(action="continue", reason="offline plans are followed as written"),
                     Usage())

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """Keep counts per status and the last step ids, not outputs."""
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        ids = ", ".join(r.step_id for r in results[-5:])
        return Reply(f"{summary}\nFolded {len(results)} results ({line}); last: {ids}.".strip(),
                     Usage())

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """A templated report of every step, citing ids."""
        text = templated_answer(task=task, status=status, reason=reason, summary=summary,
                                results=results)
        return Reply(f"{text}\n(offline planner: no model was called)", Usage())


def templated_answer(
    *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
) -> str:
    """An answer written without a model: the status and one line per step, citing ids."""
    lines = [f"Task: {task}", f"Status: {status}" + (f" ({reason})" if reason else "")]
    if summary:
        lines.append(f"Earlier: {summary}")
    for result in results:
        detail = result.error.message if result.error else _brief(result.output)
        lines.append(f"- [{result.step_id}] {result.tool}: {result.status} - {detail}")
    return "\n".join(lines)


def _brief(output: object, limit: int = 160) -> str:
    """A short rendering of a result, without the envelope of the built-in executors."""
    if isinstance(output, dict):
        for key in ("json", "rows", "text"):
            if key in output:
                output = output[key]
                break
    if isinstance(output, list):
        head = json.dumps(output[:2], default=str, ensure_ascii=False)
        return f"{len(output)} item(s): {head[:limit]}" + ("..." if len(head) > limit else "")
    text = json.dumps(output, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


MISSING_CREDENTIALS = (
    "No AWS credentials found for Amazon Bedrock (model {model!r}). Set AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), and AWS_REGION; or run offline with a plan file (`duet run --plan-file "
    "FILE`, or `plan_file` in the run context)."
)


def require_aws_credentials(model_id: str) -> None:
    """Raise `ConfigurationError` saying what to set when boto3 finds no credentials."""
    import boto3

    if boto3.Session().get_credentials() is None:
        raise ConfigurationError(MISSING_CREDENTIALS.format(model=model_id))


_PROVIDER_PREFIX = re.compile(r"[a-z_-]+")


BEDROCK_MAX_ATTEMPTS = 4


@lru_cache(maxsize=16)
def _bedrock_model(
    model_id: str, region: str, endpoint_url: str | None, reasoning_effort: str | None
) -> BaseChatModel:
    from botocore.config import Config
    from langchain_aws import ChatBedrockConverse

    # Throttling and 5xx are retried a bounded number of times, with exponential backoff
    # and jitter (botocore's "standard" mode); the model call timeout bounds the total.
    retries = Config(retries={"mode": "standard", "total_max_attempts": BEDROCK_MAX_ATTEMPTS},
                     connect_timeout=10, read_timeout=120)
    return ChatBedrockConverse(
        model=model_id, region_name=region, endpoint_url=endpoint_url,
        reasoning_effort=reasoning_effort, temperature=0, config=retries,
    )


@lru_cache(maxsize=16)
def _scripted_model(path: str) -> BaseChatModel:
    from graph.testing import load_script

    return load_script(path)


def chat_model_from_spec(spec: str, context: Context) -> BaseChatModel:
    """A chat model from a Bedrock model id, an `init_chat_model` string ('provider:model'),
    or 'scripted:/path/script.json' (a `ScriptedChatModel`, one per file and process: for
    offline tests of a served graph, named as such)."""
    provider, sep, rest = spec.partition(":")
    if provider == "scripted":
        return _scripted_model(rest)
    if sep and _PROVIDER_PREFIX.fullmatch(provider) and provider not in ("bedrock_converse",):
        from langchain.chat_models import init_chat_model

        return init_chat_model(spec)
    model_id = rest if provider == "bedrock_converse" else spec
    require_aws_credentials(model_id)
    return _bedrock_model(
        model_id, context.region, context.bedrock_endpoint_url, context.reasoning_effort
    )


def resolve_reasoner(context: Context, model: BaseChatModel | str | Reasoner | None) -> Reasoner:
    """Pick the reasoner of a run: offline plan file, the graph's model, or the context's model."""
    if context.plan_file:
        return PlanFileReasoner(context.plan_file, context.plan_variables)
    if model is None:
        model = context.model
    if isinstance(model, str):
        return ModelReasoner(chat_model_from_spec(model, context), context.model_timeout_seconds)
    if isinstance(model, BaseChatModel):
        return ModelReasoner(model, context.model_timeout_seconds)
    return model


__all__ = [
    "ConfigurationError", "ModelReasoner", "PlanFileReasoner", "Reasoner", "ReasoningError",
    "Reply", "resolve_reasoner", "require_aws_credentials", "templated_answer",
]
