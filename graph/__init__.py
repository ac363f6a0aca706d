"""nova-duet: a plan-and-execute LangGraph agent (Nova 2 Lite reasons, Nova Act executes).

The public API: `build_graph`, the run `Context`, and the contracts. Names are imported on
first use, so the CLI's light commands (`duet --help`, `duet schema`) do not load LangGraph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "build_graph": "graph.builder", "Context": "graph.context", "as_tool": "graph.langchain_tool",
    "ConfigurationError": "graph.reasoning", "ModelReasoner": "graph.reasoning",
    "PlanFileReasoner": "graph.reasoning",
    **{name: "graph.contracts" for name in ("Decision", "FinalState", "Plan", "RunStatus",
                                            "Step", "StepError", "StepResult", "Usage")},
}
__all__ = [
    "ConfigurationError", "Context", "Decision", "FinalState", "ModelReasoner", "Plan",
    "PlanFileReasoner", "RunStatus", "Step", "StepError", "StepResult", "Usage", "as_tool",
    "build_graph",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # what type checkers and editors see
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
    from graph.langchain_tool import as_tool
    from graph.reasoning import ConfigurationError, ModelReasoner, PlanFileReasoner
