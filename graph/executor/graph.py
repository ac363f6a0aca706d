"""The execution agent as its own LangGraph deployment (`nova-duet-executor`).

One run executes one attempt of one step (`StepRequest` in, `StepAttempt` out) with the
same function as in-process execution (`graph.runtime.execution.attempt_tool`), or ends a caller's
run (`close_thread`: its named browser sessions close). The caller keeps everything else:
approval, the step ledger and idempotency keys, retries, traces and events.

The deployment enforces its own sandbox. Its allowlist (`DUET_EXECUTOR_ALLOWED_HOSTS`,
comma-separated; empty allows nothing) bounds every request: a caller can narrow it, never
widen it. It runs its own registry, so it executes only the tools it has; named browser
sessions live per caller thread and close when the caller's run ends or after
`DUET_EXECUTOR_IDLE_SECONDS` without use.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypedDict

import langsmith
from langgraph.graph import END, START, StateGraph

from graph.contracts import EXECUTOR_GRAPH_ID, StepAttempt, StepRequest
from graph.runtime.execution import attempt_tool
from tools import default_registry
from tools.registry import ToolRegistry
from tools.sandbox import (
    SandboxPolicy,
    StepFiles,
    use_idempotency_key,
    use_scope,
    use_step_files,
)


class ExecutorState(TypedDict, total=False):
    """A run's input (`request`, or `close_thread`) and its output (`reply`)."""

    request: dict[str, Any]  # a StepRequest
    close_thread: str  # the caller's thread whose run ended
    reply: dict[str, Any]  # a StepAttempt, or {"closed": thread}


def deployment_hosts() -> tuple[str, ...]:
    """The hosts this deployment may reach at most (`DUET_EXECUTOR_ALLOWED_HOSTS`)."""
    hosts = os.environ.get("DUET_EXECUTOR_ALLOWED_HOSTS", "")
    return tuple(host.strip() for host in hosts.split(",") if host.strip())


def bounded(request: StepRequest, hosts: tuple[str, ...]) -> SandboxPolicy:
    """The request's sandbox, its allowlist cut to what the deployment allows."""
    return SandboxPolicy(
        allowed_hosts=tuple(h for h in request.allowed_hosts if h in hosts),
        max_response_bytes=request.max_response_bytes,
        browser_max_steps=request.browser_max_steps,
        browser_timeout_seconds=request.browser_timeout_seconds,
        max_browser_sessions=request.max_browser_sessions,
        denied_hint=f"this executor deployment allows only {list(hosts)} "
                    "(DUET_EXECUTOR_ALLOWED_HOSTS)")


def _traced(request: StepRequest) -> AbstractContextManager[Any]:
    """A run in the caller's trace, under the step's run (when the caller traces)."""
    if not request.trace:
        return nullcontext()
    return langsmith.trace(f"execute {request.tool}", run_type="tool", parent=request.trace,
                           inputs={"step_id": request.step_id, "tool": request.tool,
                                   "plan_version": request.plan_version})


def _base64_of(path: Path) -> str | None:
    """A file's bytes in base64, or None when there is no such file."""
    return base64.b64encode(path.read_bytes()).decode() if path.is_file() else None


def build_executor_graph(registry: ToolRegistry | None = None,
                         allowed_hosts: tuple[str, ...] | None = None) -> Any:
    """The executor graph over `registry` (the built-in executors by default), bounded by
    `allowed_hosts` (the environment's `DUET_EXECUTOR_ALLOWED_HOSTS` by default)."""
    tools = registry if registry is not None else default_registry(
        idle_seconds=float(os.environ.get("DUET_EXECUTOR_IDLE_SECONDS", "600")))
    hosts = deployment_hosts() if allowed_hosts is None else allowed_hosts

    async def execute(state: ExecutorState) -> dict[str, Any]:
        if thread := state.get("close_thread"):
            await tools.end_scope(thread)
            return {"reply": {"closed": thread}}
        request = StepRequest.model_validate(state["request"])
        # The server's event loop refuses blocking calls: files are made and read off it.
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="duet-step-"))
        files = StepFiles(folder, "step") if request.screenshot else None
        try:
            with (use_scope(request.thread), use_idempotency_key(request.idempotency_key),
                  use_step_files(files), _traced(request) as run):
                attempt = await attempt_tool(tools, request.tool, request.args,
                                             bounded(request, hosts), request.timeout_seconds)
                if run is not None:
                    run.end(outputs={"status": attempt.status})
            if files is not None:
                attempt.screenshot = await asyncio.to_thread(_base64_of, files.screenshot)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        return {"reply": attempt.model_dump(mode="json")}

    builder = StateGraph(ExecutorState)
    builder.add_node("execute", execute)
    builder.add_edge(START, "execute")
    builder.add_edge("execute", END)
    return builder.compile(name=EXECUTOR_GRAPH_ID)


graph = build_executor_graph()  # what `langgraph.json` serves as `nova-duet-executor`

__all__ = ["StepAttempt", "build_executor_graph", "graph"]
