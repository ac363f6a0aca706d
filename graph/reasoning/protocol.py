"""What the graph asks of the reasoning agent, and the errors and replies it gets back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from graph.contracts import Decision, Plan, StepResult, Usage
from tools.errors import ConfigError

T = TypeVar("T")

# Called while a plan is still being written: the attempt number (0 for the first answer,
# 1 after one invalid answer...) and the steps whose JSON objects are complete so far (an
# empty list when an answer begins). The plan node starts read-only steps from it.
StepStream = Callable[[int, list[Any]], Awaitable[None]]


class ConfigurationError(ConfigError):
    """The run cannot start as configured; the message says what to set."""


class ReasoningError(Exception):
    """The reasoning model could not produce a usable answer. Carries the usage spent."""

    def __init__(self, message: str, usage: Usage | None = None):
        super().__init__(message)
        self.usage = usage or Usage()


class ModelTimeout(ReasoningError):
    """A reasoning call took longer than `model_timeout_seconds` (not retried as bad output)."""


class ModelUnavailable(ReasoningError):
    """The model's endpoint could not be reached (refused, reset) for longer than
    `dependency_wait_seconds` (not retried as bad output)."""


class CostLimitReached(ReasoningError):
    """A reasoning call was not made: its estimate could pass the run's `max_cost_usd`
    (`graph.guards.CostBudget`). The run ends `budget_exhausted`."""


@dataclass(frozen=True)
class Reply(Generic[T]):
    """A reasoning result and what it cost."""

    value: T
    usage: Usage


class Reasoner(Protocol):
    """What the graph asks of the reasoning agent."""

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int, on_steps: StepStream | None = None,
        review_feedback: str = "",
    ) -> Reply[Plan]:
        """Return a valid plan, or raise `ReasoningError` after `max_attempts` tries.

        A reasoner that streams calls `on_steps` as the plan's steps arrive.
        `review_feedback`: why a person rejected `previous_plan` before any of it ran."""
        ...

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Decide what happens after new results (with the answer when finishing)."""
        ...

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """Fold `results` into `summary`."""
        ...

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """Write the final answer, citing step ids."""
        ...
