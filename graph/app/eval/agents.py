"""The two agents `duet eval` compares, each run once on one task against one site.

- `nova-duet`: this graph (`graph.app.runner.run_thread`), planning with the model, or
  with the task's reference plan file (`--reference`).
- `react`: LangChain's `create_agent` (a tool-calling loop) with the same model, the same
  registry's tools, the same sandbox policy and the same approval policy: a tool call that
  changes things runs under `auto`, is refused under `deny`, and under `ask` runs only if
  the eval's decider approves it.

Both return an `Outcome`: status, answer, tools called, reasoning calls and tokens as the
model reported them, and where the run's report is.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from graph.app.eval.suite import EvalTask
from graph.context import Context
from graph.contracts import Usage
from tools.registry import ToolRegistry

AGENTS = ("nova-duet", "react")


@dataclass
class Outcome:
    """What one run of an agent on a task produced (before the checkers)."""

    status: str
    answer: str
    reason: str = ""
    steps: int = 0
    tools: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    report: str | None = None
    thread: str | None = None


@dataclass
class AgentSettings:
    """How agents run in this eval: the model (None: the reference plans), run settings
    every task gets (`bedrock_endpoint_url`, say; over a task's own), and where
    transcripts go.

    `tools` is the registry every run shares (one Playwright driver and browser pool for
    the whole eval); each run's named browser sessions close when that run ends."""

    model: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    out_dir: Path = Path(".")
    tools: ToolRegistry | None = None

    def run_tools(self) -> ToolRegistry:
        """The shared tools for one run: the same entries, without the right to close the
        shared browsers (`run_thread` closes its registry at the end of the run)."""
        from tools import default_registry

        if self.tools is None:
            self.tools = default_registry()
        return ToolRegistry(list(self.tools))


def task_context(task: EvalTask, site: str, settings: AgentSettings) -> Context:
    """The run context of `task` on `site`: its own site reachable and nothing else."""
    context = Context(**{**task.context, **settings.context})  # the caller's settings win
    context.allowed_hosts = [urlsplit(site).netloc]
    context.approval = task.approval
    if settings.model is None:
        context.plan_file, context.plan_variables = str(task.plan), {"site": site}
    else:
        context.model = settings.model
    return context


def decider(task: EvalTask) -> Callable[[dict[str, Any]], dict[str, str]]:
    """Answers every approval request of `task` with its `decide` setting."""
    def decide(request: dict[str, Any]) -> dict[str, str]:
        return {step["step_id"]: task.decide for step in request["steps"]}

    decide.by = f"the eval task's decide setting ({task.decide})"  # type: ignore[attr-defined]
    return decide


async def run_nova_duet(task: EvalTask, text: str, site: str, settings: AgentSettings,
                        checkpointer_url: str | None = None) -> Outcome:
    """Run `text` with this graph, its checkpoints and step ledger at `checkpointer_url`
    (default: `duet run`'s); raises `ConfigurationError` before any work."""
    from graph.app.report import write_report
    from graph.app.runner import run_thread
    from graph.app.threads import new_thread_id

    thread_id = new_thread_id()
    tools = settings.run_tools()
    try:
        _, final = await run_thread(
            text, thread_id=thread_id, context=task_context(task, site, settings), tools=tools,
            checkpointer_url=checkpointer_url, decide=decider(task))
    finally:
        await settings.tools.end_scope(thread_id)
    ran = [r for r in final.results if r.status not in ("rejected", "cancelled")]
    report = await write_report(thread_id, checkpointer_url)
    return Outcome(status=final.status.value, answer=final.final_answer or "",
                   reason=final.reason, steps=len(ran), tools=[r.tool for r in ran],
                   usage=final.usage, report=str(report), thread=thread_id)


async def run_react(task: EvalTask, text: str, site: str, settings: AgentSettings,
                    transcript: Path) -> Outcome:
    """Run `text` with a ReAct loop on the same model and tools; the transcript (every
    message) is written to `transcript`. Raises `ConfigurationError` before any work."""
    from langchain.agents import create_agent
    from langchain_aws.middleware import BedrockPromptCachingMiddleware
    from langchain_core.messages import AIMessage, messages_to_dict
    from langgraph.errors import GraphRecursionError

    from graph.app.threads import new_thread_id
    from graph.reasoning import chat_model_from_spec
    from prompts import load_prompt

    context = task_context(task, site, settings)
    model = chat_model_from_spec(context.model, context)  # no credentials: raises here
    registry = settings.run_tools()
    thread_id = new_thread_id()  # the scope of its named browser sessions
    calls: list[str] = []
    tools = [_guarded(entry, registry, context, decider(task), calls) for entry in registry
             if entry.why_unavailable() is None]
    system, user = load_prompt("react", task=text)
    # Caching as fair as ours: langchain-aws's own cache points (where the model takes them).
    caching = [BedrockPromptCachingMiddleware(unsupported_model_behavior="ignore")
               ] if context.prompt_caching else []
    agent = create_agent(model, tools=tools, system_prompt=system.content, middleware=caching)
    messages: list[Any] = [user]
    status, reason = "completed", ""
    try:
        async with asyncio.timeout(context.deadline_seconds):
            async for state in agent.astream(
                    {"messages": [user]},
                    {"recursion_limit": 2 * context.max_steps + 3,
                     "configurable": {"thread_id": thread_id}}, stream_mode="values"):
                messages = state["messages"]
    except GraphRecursionError:
        status, reason = "budget_exhausted", f"more than {context.max_steps} turns"
    except TimeoutError:
        status, reason = "budget_exhausted", f"deadline of {context.deadline_seconds:g}s"
    except Exception as exc:  # noqa: BLE001 - a failed run is a result of the eval
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        await settings.tools.end_scope(thread_id)
    replies = [m for m in messages if isinstance(m, AIMessage)]
    usage = sum((Usage.of_metadata(m.usage_metadata or {}, context.prices()) for m in replies),
                Usage())
    last = replies[-1] if replies else None
    if status == "completed" and (last is None or last.tool_calls):
        status, reason = "failed", "the agent stopped without a final answer"
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.write_text(json.dumps(messages_to_dict(messages), indent=1, default=str),
                          encoding="utf-8")
    return Outcome(status=status, answer=last.text if last is not None else "", reason=reason,
                   steps=len(calls), tools=calls, usage=usage, report=str(transcript),
                   thread=thread_id)


def _guarded(entry: Any, registry: Any, context: Context,
             decide: Callable[[dict[str, Any]], dict[str, str]], calls: list[str]) -> Any:
    """`entry`'s tool for the ReAct loop: the same name, description and arguments, run
    by `attempt_tool` under the run's sandbox policy, after the approval policy."""
    from langchain_core.tools import StructuredTool

    from graph.runtime.execution import attempt_tool

    policy = context.sandbox_policy()

    async def call(**args: Any) -> str:
        args = {name: value for name, value in args.items() if value is not None}
        if entry.changes_things(args):
            verdict = _approval(context.approval, decide, entry.name, args)
            if verdict:
                return f"refused: {verdict}"
        calls.append(entry.name)
        attempt = await attempt_tool(registry, entry.name, args, policy,
                                     context.step_timeout_seconds)
        if attempt.status != "ok":
            error = attempt.error
            return f"{attempt.status}: {error.type}: {error.message}" if error else attempt.status
        return json.dumps(attempt.output, ensure_ascii=False, default=str)

    return StructuredTool.from_function(coroutine=call, name=entry.name,
                                        description=entry.tool.description,
                                        args_schema=entry.tool.args_schema)


def _approval(policy: str, decide: Callable[[dict[str, Any]], dict[str, str]], tool: str,
              args: dict[str, Any]) -> str | None:
    """None when a call that changes things may run, else why not."""
    if policy == "auto":
        return None
    if policy == "deny":
        return "the approval policy is 'deny': steps that change things are rejected"
    step_id = f"react-{time.monotonic_ns()}"
    answer = decide({"steps": [{"step_id": step_id, "tool": tool, "args": args}]})
    if answer.get(step_id) == "approve":
        return None
    return "a human rejected this step"
