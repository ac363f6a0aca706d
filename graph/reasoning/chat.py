"""Reasoning with a LangChain chat model (Nova 2 Lite over Bedrock by default).

Structured answers (a `Plan`, a `Decision`) are one forced tool call whose schema is the
contract's compact form (`graph.contracts.tool_schema`). Plans are streamed: the steps are
handed on while the model is still writing the rest, so the first can start early.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks
from pydantic import BaseModel, ValidationError

from graph.contracts import (
    NOVA_2_LITE_PRICES,
    Decision,
    Plan,
    StepResult,
    TokenPrices,
    Usage,
    tool_schema,
)
from graph.events import StructuredOutputSalvaged, emit_in_run
from graph.guards import CostBudget
from graph.reasoning.bedrock import NOVA_2_LITE_MAX_OUTPUT_TOKENS, endpoint_unreachable
from graph.reasoning.protocol import (
    CostLimitReached,
    ModelTimeout,
    ModelUnavailable,
    ReasoningError,
    Reply,
    StepStream,
)
from graph.rendering import estimate_tokens, render_plan, render_results
from prompts import load_prompt
from tools.backoff import OutageWait

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
log = logging.getLogger("duet")


def _usage_of(message: BaseMessage | None, prompt: list[BaseMessage],
              prices: TokenPrices) -> Usage:
    """Token usage reported by the model (cache reads and writes included), or an estimate
    when the model reports none."""
    metadata = getattr(message, "usage_metadata", None) if message is not None else None
    if metadata:
        return Usage.of_metadata(metadata, prices)
    output = str(message.content) if message is not None else ""
    if isinstance(message, AIMessage) and message.tool_calls:
        output += json.dumps([call["args"] for call in message.tool_calls], default=str)
    return Usage.of_call(input_tokens=sum(estimate_tokens(_text_of(m)) for m in prompt),
                         output_tokens=estimate_tokens(output), prices=prices)


def _tool_arguments(message: BaseMessage) -> Any:
    """The arguments of the reply's first tool call, parsed strictly; None without one.

    A streamed reply's `tool_calls` are parsed leniently (an unfinished JSON text is closed
    for it), so the raw text of its chunks is parsed again here."""
    if isinstance(message, AIMessageChunk) and message.tool_call_chunks:
        raw = message.tool_call_chunks[0].get("args") or "{}"
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"the tool call's arguments are not JSON: {exc}") from None
    if isinstance(message, AIMessage):
        if message.tool_calls:
            return message.tool_calls[0]["args"]
        if message.invalid_tool_calls:
            error = message.invalid_tool_calls[0].get("error") or "not JSON"
            raise ValueError(f"the tool call's arguments are invalid: {error}")
    return None


class CompleteItems:
    """The complete elements of the array under the top-level `key` of a JSON text that
    grows as it streams in: an element counts from its own closing brace on, not when the
    next one begins. Each call reads only what arrived since the last one."""

    def __init__(self, key: str):
        self.key = json.dumps(key)
        self.items: list[Any] = []
        self._decoder = json.JSONDecoder()
        self._scanned, self._depth, self._key_start = 0, 0, 0
        self._in_string = self._escaped = False
        self._last_key = ""
        self._next: int | None = None  # where the next element starts, once found

    def __call__(self, text: str) -> list[Any]:
        """Every complete element of the array in `text` so far."""
        if self._next is None:
            self._find_array(text)
        while self._next is not None:
            at = self._next
            while at < len(text) and text[at] in " \t\r\n,":
                at += 1
            if at >= len(text) or text[at] == "]":
                break
            try:
                value, self._next = self._decoder.raw_decode(text, at)
            except ValueError:
                break  # the element is still being written
            self.items.append(value)
        return self.items

    def _find_array(self, text: str) -> None:
        for at in range(self._scanned, len(text)):
            char = text[at]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                    if self._depth == 1:
                        self._last_key = text[self._key_start:at + 1]
            elif char == '"':
                self._in_string, self._key_start = True, at
            elif char in "{[":
                self._depth += 1
                if char == "[" and self._depth == 2 and self._last_key == self.key:
                    self._next = at + 1
                    return
            elif char in "}]":
                self._depth -= 1
        self._scanned = len(text)


def _json_objects(text: str) -> list[Any]:
    """Every top-level JSON object in `text` (bare, or inside a fenced block)."""
    decoder, found, at = json.JSONDecoder(), [], text.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            end = at + 1
        else:
            found.append(value)
        at = text.find("{", end)
    return found


def _salvaged(schema: type[M], message: BaseMessage | None) -> M:
    """A reply that came as text instead of a tool call: its one JSON object, when it holds
    exactly one and that validates; the trace says so. Raises `ValueError` otherwise."""
    objects = _json_objects(_text_of(message)) if message is not None else []
    if len(objects) != 1:
        raise ValueError(f"the reply had no structured output (a text with {len(objects)} "
                         "JSON objects)")
    value = schema.model_validate(objects[0])
    log.info("salvaged a %s from a reply in text", schema.__name__)
    emit_in_run(StructuredOutputSalvaged(schema=schema.__name__))  # else the log line is all
    return value


class ModelReasoner:
    """Reasoning with a LangChain chat model and structured output (tool calling).

    `cache_min_tokens`: the model's minimum prefix per Bedrock cache point; given, each
    prompt's stable prefixes are marked for the prompt cache (`prompts.load_prompt`).
    `prices` prices each call's tokens. A model endpoint that cannot be reached (refused,
    reset before any answer) is called again with backoff for up to `wait_seconds`
    (`dependency_wait_seconds`), then the call fails `ModelUnavailable`. `provider` and
    `model_name` name the model as LangChain names it to LangSmith (`amazon_bedrock` and
    the Bedrock model id, for Nova 2 Lite).

    With a `cost` budget, each call is checked before it is made, without a model call: its
    prompt's input tokens (`estimate_tokens` of its text and tool definition) at the input
    price, plus `output_bound` output tokens at the output price, must fit what is left;
    otherwise it raises `CostLimitReached` and no request is sent."""

    def __init__(self, model: BaseChatModel, timeout_seconds: float | None = None, *,
                 cache_min_tokens: int | None = None,
                 prices: TokenPrices = NOVA_2_LITE_PRICES, wait_seconds: float = 0.0,
                 output_bound: int = NOVA_2_LITE_MAX_OUTPUT_TOKENS,
                 cost: CostBudget | None = None):
        self.model = model
        # LangChain's own naming of a model (what LangSmith records), for every integration.
        names = model._get_ls_params()
        self.provider: str = names.get("ls_provider") or model._llm_type
        self.model_name: str | None = names.get("ls_model_name")
        self.timeout_seconds = timeout_seconds
        self.cache_min_tokens = cache_min_tokens
        self.prices = prices
        self.wait_seconds = wait_seconds
        self.output_bound = output_bound
        self.cost = cost

    def _reserve(self, prompt: list[BaseMessage], call: str,
                 spec: dict[str, Any] | None = None) -> float:
        """Reserve the estimate of `call` in the cost budget (see the class); raises
        `CostLimitReached` when it could pass it."""
        if self.cost is None:
            return 0.0
        text = "".join(_text_of(message) for message in prompt)
        if spec is not None:
            text += json.dumps(spec)  # the tool definition is input too
        estimate = self.prices.cost_usd(input_tokens=estimate_tokens(text),
                                        output_tokens=self.output_bound)
        if stop := self.cost.reserve(estimate, f"the {call} call"):
            raise CostLimitReached(stop.reason)
        return estimate

    def _settle(self, estimate: float, usage: Usage) -> None:
        """The call that reserved `estimate` ended, having used `usage`."""
        if self.cost is not None:
            self.cost.settle(estimate, usage.estimated_cost_usd)

    async def _reaching(self, call: Any) -> R:
        """`await call()`, again while the endpoint is down, within `wait_seconds`. `call`
        raises `_Unreached` for an outage it may be retried after (nothing was answered)."""
        wait = OutageWait(self.wait_seconds)
        while True:
            try:
                return await call()
            except _Unreached as down:
                if wait.since is None:
                    log.info("the reasoning model is unreachable; waiting up to %gs",
                             self.wait_seconds)
                if not await wait.pause():
                    raise ModelUnavailable(
                        f"the reasoning model could not be reached: {down.cause} (waited "
                        f"{wait.waited:.1f}s; dependency_wait_seconds={self.wait_seconds:g})"
                    ) from None

    def _prompt(self, name: str, **variables: object) -> list[BaseMessage]:
        return load_prompt(name, self.cache_min_tokens, **variables)

    def _timeout(self) -> ModelTimeout:
        return ModelTimeout(
            f"the reasoning model did not answer within {self.timeout_seconds:g}s")

    async def _structured(self, schema: type[M], prompt: list[BaseMessage],
                          on_text: Any = None) -> Reply[M]:
        """One forced tool call of `schema`, streamed. `on_text(raw)` sees the tool call's
        JSON text so far after each piece of it but the first, so a reply that arrives whole
        (from a model that does not stream) is never handed on in parts."""
        spec = tool_schema(schema)
        runnable = self.model.bind_tools([spec], tool_choice=spec["title"])

        async def stream() -> list[BaseMessage]:
            chunks: list[BaseMessage] = []
            raw, pieces = "", 0
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    async for chunk in runnable.astream(prompt):
                        chunks.append(chunk)
                        piece = "".join(c.get("args") or "" for c in
                                        getattr(chunk, "tool_call_chunks", [])[:1])
                        if not piece:
                            continue
                        raw, pieces = raw + piece, pieces + 1
                        if on_text is not None and pieces > 1:
                            await on_text(raw)
            except TimeoutError:
                raise self._timeout() from None
            except Exception as exc:
                # Cut off mid-answer, the steps handed on may not be asked for again.
                _raise_unreached(exc, answered=bool(chunks))
                raise
            return chunks

        estimate = self._reserve(prompt, schema.__name__.lower(), spec)
        try:
            chunks: list[BaseMessage] = await self._reaching(stream)
        except BaseException:
            self._settle(estimate, Usage())  # what a failed call used is not known
            raise
        # Merged once: adding chunks one by one re-parses the whole JSON text each time.
        message = (add_ai_message_chunks(*chunks) if len(chunks) > 1  # type: ignore[arg-type]
                   else chunks[0] if chunks else None)
        usage = _usage_of(message, prompt, self.prices)
        self._settle(estimate, usage)
        try:
            arguments = _tool_arguments(message) if message is not None else None
            if arguments is None:
                return Reply(_salvaged(schema, message), usage)
            return Reply(schema.model_validate(arguments), usage)
        except (ValueError, ValidationError) as exc:
            raise ReasoningError(f"invalid {schema.__name__}: {_short(exc)}", usage) from None

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int, on_steps: StepStream | None = None,
        review_feedback: str = "",
    ) -> Reply[Plan]:
        """Ask for a plan (with why a person rejected the previous one, when they did); send
        validation errors back to the model up to `max_attempts` times."""
        spent, feedback = Usage(), ""
        for attempt in range(max(1, max_attempts)):
            prompt = self._prompt(
                "plan", tools=tools, task=task, summary=summary,
                results=render_results(results), feedback=feedback,
                previous_plan=render_plan(previous_plan) if previous_plan else "",
                review=review_feedback,
            )

            steps = CompleteItems("steps")

            async def partial(raw: str, attempt: int = attempt,
                              steps: CompleteItems = steps) -> None:
                if on_steps is not None:
                    await on_steps(attempt, steps(raw))

            if on_steps is not None:
                await on_steps(attempt, [])  # a new answer begins: the last one was invalid

            try:
                reply = await self._structured(Plan, prompt, partial)
            except CostLimitReached as exc:
                raise CostLimitReached(str(exc), spent) from None
            except (ModelTimeout, ModelUnavailable):
                raise  # not the answer's fault: asking again would wait again
            except ReasoningError as exc:
                spent, feedback = spent + exc.usage, str(exc)
                continue
            return Reply(reply.value, spent + reply.usage)
        raise ReasoningError(f"no valid plan after {max_attempts} attempts; last error: {feedback}",
                             spent)

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Ask for a `Decision`, with the answer when it finishes (one retry on invalid
        output)."""
        prompt = self._prompt(
            "observe", task=task, plan=render_plan(plan), summary=summary,
            results=render_results(results), trigger=trigger,
        )
        try:
            return await self._structured(Decision, prompt)
        except (ModelTimeout, ModelUnavailable, CostLimitReached):
            raise
        except ReasoningError as first:
            try:
                reply = await self._structured(Decision, prompt)
            except CostLimitReached as exc:
                raise CostLimitReached(str(exc), first.usage) from None
            return Reply(reply.value, first.usage + reply.usage)

    async def _text(self, name: str, **variables: object) -> Reply[str]:
        prompt = self._prompt(name, **variables)

        async def ask() -> BaseMessage:
            try:
                return await asyncio.wait_for(self.model.ainvoke(prompt), self.timeout_seconds)
            except TimeoutError:
                raise self._timeout() from None
            except Exception as exc:
                _raise_unreached(exc, answered=False)
                raise

        estimate = self._reserve(prompt, name)
        try:
            message: BaseMessage = await self._reaching(ask)
        except BaseException:
            self._settle(estimate, Usage())
            raise
        usage = _usage_of(message, prompt, self.prices)
        self._settle(estimate, usage)
        return Reply(_text_of(message), usage)

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


class _Unreached(Exception):
    """The model's endpoint could not be reached and nothing was answered: call again."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.cause = f"{type(cause).__name__}: {cause}"


def _raise_unreached(exc: Exception, *, answered: bool) -> None:
    """Raise for an outage: `_Unreached` (call again) before any answer, after part of one
    `ModelUnavailable` at once."""
    if endpoint_unreachable(exc):
        if answered:
            raise ModelUnavailable(f"the reasoning model's connection broke mid-answer: "
                                   f"{type(exc).__name__}: {exc}") from None
        raise _Unreached(exc) from None


def _text_of(message: BaseMessage) -> str:
    if isinstance(message.content, str):
        return message.content.strip()
    parts = [block.get("text", "") for block in message.content if isinstance(block, dict)]
    return "".join(parts).strip()


def _short(error: object, limit: int = 600) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."
