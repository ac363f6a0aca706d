"""The reasoning agent: plans, decisions, summaries and answers.

`ModelReasoner` asks a LangChain chat model (Nova 2 Lite over Bedrock by default).
`PlanFileReasoner` is the offline planner mode: it runs a plan from a file and writes a
templated answer. `SelfHealingReplay` replays a plan file and hands over to the model at
its first failed step (`self_healing`). Nothing switches between them silently: the run
context or the caller chooses, and with no AWS credentials the model mode fails with what
to set.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from graph.context import Context
from graph.contracts import Plan
from graph.guards import CostBudget
from graph.reasoning.bedrock import (
    cache_point_minimum,
    chat_model_from_spec,
    output_bound,
    require_aws_credentials,
)
from graph.reasoning.chat import ModelReasoner
from graph.reasoning.healing import SelfHealingReplay
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
                     current_plan: Plan | None = None,
                     cost: CostBudget | None = None) -> Reasoner:
    """Pick the reasoner of a run: the offline plan file (or `plan_text`), the graph's
    model, or the context's model; with a plan file and `self_healing`, the replay that
    hands over to that model (`current_plan`, the run's plan now, says whether it has). A
    chat model's calls are checked against `cost` before each is made (a reasoner of your
    own is asked as it is). Raises `ConfigurationError` when the model cannot be used as
    configured (no AWS credentials, `token_prices` not a price table)."""
    replay = PlanFileReasoner.of(context)
    if replay is not None and not context.self_healing:
        return replay
    if model is None:
        model = context.model
    if isinstance(model, str):
        model = chat_model_from_spec(model, context)
    reasoner = (_model_reasoner(model, context, cost) if isinstance(model, BaseChatModel)
                else model)
    if replay is None:
        return reasoner
    return SelfHealingReplay(replay, reasoner, current_plan)


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
    "ReasoningError", "Reply", "SelfHealingReplay", "StepStream", "cache_point_minimum",
    "chat_model_from_spec", "require_aws_credentials",
    "resolve_reasoner", "templated_answer",
]
