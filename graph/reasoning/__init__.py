"""The reasoning agent: plans, decisions, summaries and answers.

`ModelReasoner` asks a LangChain chat model (Nova 2 Lite over Bedrock by default).
`PlanFileReasoner` is the offline planner mode: it runs a plan from a file and writes a
templated answer. Nothing switches between them silently: the run context or the caller
chooses, and with no AWS credentials the model mode fails with what to set.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from graph.context import Context
from graph.guards import CostBudget
from graph.reasoning.bedrock import (
    cache_point_minimum,
    chat_model_from_spec,
    output_bound,
    require_aws_credentials,
)
from graph.reasoning.chat import ModelReasoner
from graph.reasoning.offline import PlanFileError, PlanFileReasoner, templated_answer
from graph.reasoning.protocol import (
    ConfigurationError,
    CostLimitReached,
    ModelTimeout,
    ModelUnavailable,
    Reasoner,
    ReasoningError,
    Reply,
    StepStream,
)


def resolve_reasoner(context: Context, model: BaseChatModel | str | Reasoner | None,
                     cost: CostBudget | None = None) -> Reasoner:
    """Pick the reasoner of a run: offline plan file, the graph's model, or the context's
    model. A chat model's calls are checked against `cost` before each is made (a reasoner
    of your own is asked as it is). Raises `ConfigurationError` when the model cannot be
    used as configured (no AWS credentials, `token_prices` not a price table)."""
    if context.plan_file:
        return PlanFileReasoner(context.plan_file, context.plan_variables)
    if model is None:
        model = context.model
    if isinstance(model, str):
        model = chat_model_from_spec(model, context)
    if isinstance(model, BaseChatModel):
        return _model_reasoner(model, context, cost)
    return model


def _model_reasoner(model: BaseChatModel, context: Context,
                    cost: CostBudget | None) -> ModelReasoner:
    """A chat model's reasoner, with cache points (`prompt_caching`, where the model takes
    them), the run's token prices and the bound of one call's output."""
    try:
        prices = context.prices()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    minimum = cache_point_minimum(model) if context.prompt_caching else None
    return ModelReasoner(model, context.model_timeout_seconds, cache_min_tokens=minimum,
                         prices=prices, wait_seconds=context.dependency_wait_seconds,
                         output_bound=output_bound(model, context), cost=cost)


__all__ = [
    "ConfigurationError", "CostLimitReached", "ModelReasoner", "ModelTimeout",
    "ModelUnavailable", "PlanFileError",
    "PlanFileReasoner",
    "Reasoner",
    "ReasoningError", "Reply", "StepStream", "cache_point_minimum", "chat_model_from_spec",
    "require_aws_credentials",
    "resolve_reasoner", "templated_answer",
]
