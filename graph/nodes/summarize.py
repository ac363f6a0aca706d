"""`summarize`: fold older results into a running summary so prompts stay bounded."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graph.context import Context
from graph.nodes.base import (
    NodeDeps,
    cost_budget,
    never_raises,
    reasoning_failed,
    runtime_context,
)
from graph.reasoning import ReasoningError
from graph.rendering import estimate_tokens, render_plan, render_results
from graph.state import State

SUMMARY_MAX_CHARS = 4_000


def prompt_estimate(state: State) -> int:
    """Estimated tokens the next reasoning call spends on run history (summary, plan, results)."""
    recent = state.get("recent", [])
    plan = state.get("plan")
    plan_text = render_plan(plan) if plan else ""
    return estimate_tokens(state.get("summary", "") + plan_text + render_results(recent))


def needs_summary(state: State, context: Context) -> bool:
    """True when the history passes the threshold and enough old results wait to be folded.

    Folding waits for twice `keep_recent_results` unsummarized results, so a run whose
    fixed part (a long plan, say) alone passes the threshold folds every
    `keep_recent_results` steps, not at every step.
    """
    return (len(state.get("recent", [])) >= 2 * context.keep_recent_results
            and prompt_estimate(state) > context.summarize_threshold_tokens)


@never_raises("summarize")
async def summarize(state: State, runtime: Runtime[Context], deps: NodeDeps) -> dict[str, Any]:
    """Fold all but the `keep_recent_results` newest results into the summary."""
    context = runtime_context(runtime)
    recent = state.get("recent", [])
    cut = max(0, len(recent) - context.keep_recent_results)
    folded, kept = recent[:cut], recent[cut:]
    try:
        reply = await deps.reasoner(runtime, state.get("plan"),
                                    cost_budget(runtime, state)).summarize(
            task=state["task"], summary=state.get("summary", ""), results=folded
        )
    except ReasoningError as exc:
        return reasoning_failed(exc)
    summary = reply.value
    if len(summary) > SUMMARY_MAX_CHARS:
        # The model was asked for a short summary; this cap holds even if it ignores that.
        summary = "..." + summary[-SUMMARY_MAX_CHARS:]
    return {"summary": summary, "recent": Overwrite(kept), "usage": reply.usage,
            "summarized_count": state.get("summarized_count", 0) + len(folded)}
