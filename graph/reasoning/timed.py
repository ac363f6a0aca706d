"""A reasoner that reports each of its calls: which kind, when it started and ended, and
what it cost (the run report's timeline and reasoning table come from these reports)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from graph.contracts import Decision, Plan, Usage
from graph.events import ReasoningCall
from graph.reasoning.chat import ModelReasoner
from graph.reasoning.protocol import Reasoner, ReasoningError, Reply

T = TypeVar("T")


class TimedReasoner:
    """Wraps a reasoner; `report` receives one `reasoning` event per call, failed or not,
    naming the chat model that answered (a reasoner of another kind names none)."""

    def __init__(self, inner: Reasoner, report: Callable[[ReasoningCall], None]):
        self.inner, self.report = inner, report
        chat = inner if isinstance(inner, ModelReasoner) else None
        self.model = chat.model_name if chat else None
        self.provider = chat.provider if chat else None

    async def plan(self, **arguments: Any) -> Reply[Plan]:
        """The wrapped reasoner's `plan`, reported as a `plan` call."""
        return await self._timed("plan", self.inner.plan(**arguments))

    async def observe(self, **arguments: Any) -> Reply[Decision]:
        """The wrapped reasoner's `observe`, reported as a `decision` call."""
        return await self._timed("decision", self.inner.observe(**arguments))

    async def summarize(self, **arguments: Any) -> Reply[str]:
        """The wrapped reasoner's `summarize`, reported as a `summary` call."""
        return await self._timed("summary", self.inner.summarize(**arguments))

    async def answer(self, **arguments: Any) -> Reply[str]:
        """The wrapped reasoner's `answer`, reported as a `answer` call."""
        return await self._timed("answer", self.inner.answer(**arguments))

    async def _timed(self, kind: str, call: Awaitable[Reply[T]]) -> Reply[T]:
        started = time.time()
        try:
            reply = await call
        except ReasoningError as exc:
            self._report(kind, started, exc.usage, error=type(exc).__name__)
            raise
        self._report(kind, started, reply.usage)
        return reply

    def _report(self, kind: str, started: float, usage: Usage, error: str | None = None,
                ) -> None:
        if not usage.reasoning_calls:
            return  # answered without a model (an offline plan file, a template)
        self.report(ReasoningCall(
            kind=kind, started=round(started, 3), ended=round(time.time(), 3),
            model=self.model, provider=self.provider,
            input_tokens=usage.input_tokens, cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens,
            cost_usd=usage.estimated_cost_usd, ok=error is None, error=error))
