"""The reasoning graph as a LangGraph server serves it, with each run's own MCP servers.

A graph factory (`langgraph.json`: `./graph/app/served.py:nova_duet`): the server calls it
for every access to the graph. For a run whose context names an `mcp_config`, it opens
those servers for that run, yields a graph with their tools, and closes them when the run
ends (an approval interrupt ends a run too; its resume opens them again). Every other
access (schemas, state reads, Studio's drawing, runs without MCP) gets the default graph.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from langgraph_sdk.runtime import ServerRuntime

from graph.builder import build_graph, graph
from graph.context import Context

log = logging.getLogger("duet")


@contextlib.asynccontextmanager
async def nova_duet(runtime: ServerRuntime) -> AsyncIterator[Any]:
    """The graph for one access of the server (see the module's docstring)."""
    execution = runtime.execution_runtime
    context = execution.context if execution is not None else None
    fields = context if isinstance(context, dict) else vars(context) if context else {}
    if not fields.get("mcp_config"):
        yield graph
        return
    from graph.app.runner import add_mcp_servers
    from tools import default_registry

    run_context = Context(**{k: v for k, v in fields.items() if k in Context.__dataclass_fields__})
    registry = default_registry()
    try:
        def waiting(server: str, reason: str) -> None:
            log.warning("waiting up to %gs for MCP server %r to start: %s",
                        run_context.dependency_wait_seconds, server, reason)

        for status in await add_mcp_servers(registry, run_context, on_wait=waiting):
            if status.error:
                log.warning("this run goes on without MCP server %r: %s", status.name,
                            status.error)
        yield build_graph(tools=registry)
    finally:
        await registry.aclose()
