"""nova-duet: a plan-and-execute LangGraph agent (Nova 2 Lite reasons, Nova Act executes).

The public API: `build_graph`, the run `Context`, and the contracts.
"""

from graph.builder import build_graph
from graph.context import Context
from graph.contracts import (
    Decision,
    FinalState,
    Plan,
    RunStatus,
    Step,
    StepError,
    StepResult,
    Usage,
)
from graph.embedding import as_tool
from graph.reasoning import ConfigurationError, ModelReasoner, PlanFileReasoner

__all__ = [
    "ConfigurationError", "Context", "Decision", "FinalState", "ModelReasoner", "Plan",
    "PlanFileReasoner", "RunStatus", "Step", "StepError", "StepResult", "Usage", "as_tool",
    "build_graph",
]
