"""Ways into other LangChain apps: the graph as a tool another agent can call."""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from graph.context import Context


class DuetTask(BaseModel):
    """What a calling agent passes."""

    task: str = Field(description="What to get done, in plain words, with any URLs needed.")


def as_tool(
    graph: Any,
    *,
    context: Context | None = None,
    name: str = "nova_duet",
    description: str = ("Plan and carry out a multi-step task with tools and a browser; "
                        "returns the answer and how the run ended."),
) -> StructuredTool:
    """Wrap a compiled nova-duet graph as a LangChain tool (for `create_agent` and others).

    The tool returns the run's status, answer and step count; each call is its own run.
    """
    async def run(task: str) -> dict[str, Any]:
        out = await graph.ainvoke({"task": task}, context=context or Context())
        return {"status": str(out["status"]), "answer": out.get("final_answer"),
                "reason": out.get("reason", ""), "steps": len(out.get("results", []))}

    return StructuredTool.from_function(coroutine=run, name=name, description=description,
                                        args_schema=DuetTask)
