"""The reasoning agent: plans, decisions, summaries and answers.

`ModelReasoner` asks a LangChain chat model (Nova 2 Lite over Bedrock by default).
`PlanFileReasoner` is the offline planner mode: it runs a plan from a file and writes a
templated answer. Nothing switches between them silently: the run context or the caller
chooses, and with no AWS credentials the model mode fails with what to set.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from graph.context import Context
from graph.reasoning.bedrock import chat_model_from_spec, require_aws_credentials
from graph.reasoning.chat import ModelReasoner
from graph.reasoning.offline import PlanFileReasoner, templated_answer
from graph.reasoning.protocol import (
    ConfigurationError,
    ModelTimeout,
    Reasoner,
    ReasoningError,
    Reply,
    StepStream,
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
    "ConfigurationError", "ModelReasoner", "ModelTimeout", "PlanFileReasoner", "Reasoner",
    "ReasoningError", "Reply", "StepStream", "chat_model_from_spec", "require_aws_credentials",
    "resolve_reasoner", "templated_answer",
]
