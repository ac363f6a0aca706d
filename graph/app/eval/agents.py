"""The two agents `duet eval` compares, each run once on one task against one instance of
the suite's environment (its variables, hosts and tools: `graph.app.eval.environment`).

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
from typing import TYPE_CHECKING, Any

from graph.answers import HANDOFF, PLAN_REVIEW, PlanReview
from graph.app.eval.environment import Instance
from graph.app.eval.suite import EvalTask
from graph.context import Context
from graph.contracts import Usage
from tools.auth import Auth
from tools.registry import ToolRegistry
from tools.step import AgentTime

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

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
    errors: list[str] = field(default_factory=list)  # the error type of each failed call


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

    def shared_tools(self) -> ToolRegistry:
        """The built-in tools every run of the eval shares (made on first use)."""
        from tools import default_registry

        if self.tools is None:
            self.tools = default_registry()
        return self.tools

    def run_tools(self, instance: Instance) -> ToolRegistry:
        """The tools of one run on `instance`: the shared entries, without the right to close
        the shared browsers (`run_thread` closes its registry at the end of the run), and
        the instance's own tools, closed with the run's registry."""
        registry = ToolRegistry(list(self.shared_tools()))
        if instance.tools is not None:
            own = instance.tools()
            for entry in own:
                registry.register(entry)
            registry.on_close(own.aclose)
        return registry


@dataclass
class Run:
    """Where one run goes: the task, the instance it runs on, and the MCP config of the
    run's servers (the instance's and the caller's `--mcp`, as one file), if any."""

    task: EvalTask
    instance: Instance
    mcp_config: str | None = None


def task_context(run: Run, settings: AgentSettings) -> Context:
    """The run context of a task on its instance: the instance's hosts reachable and nothing
    else, its variables in the reference plan, its auth config (if it has one)."""
    task = run.task
    context = Context(**{**task.context, **settings.context})  # the caller's settings win
    context.allowed_hosts = list(run.instance.allowed_hosts)
    if auth_config := getattr(run.instance, "auth_config", None):
        context.auth_config = auth_config
    context.approval = task.approval
    context.mcp_config = run.mcp_config
    if settings.model is None:
        context.plan_file, context.plan_variables = str(task.plan), dict(run.instance.variables)
    else:
        context.model = settings.model
    return context


def decider(task: EvalTask) -> Callable[[dict[str, Any]], Any]:
    """Answers every approval request of `task` with its `decide` setting, and approves
    every plan a run under `review_plan` asks to have reviewed (the eval's policy: the
    checkers judge what the plan did); a hand-off is refused (no person: the step fails
    `PersonNeeded`, naming what it needed)."""
    def decide(request: dict[str, Any]) -> Any:
        if request.get("kind") == PLAN_REVIEW:
            return PlanReview(action="approve")
        if request.get("kind") == HANDOFF:  # no person in an eval: the step fails, typed
            return {"action": "refuse", "reason": "an eval has no person to hand it to"}
        return {step["step_id"]: task.decide for step in request["steps"]}

    decide.by = f"the eval task's decide setting ({task.decide})"  # type: ignore[attr-defined]
    return decide


async def run_nova_duet(run: Run, text: str, settings: AgentSettings,
                        checkpointer_url: str | None = None) -> Outcome:
    """Run `text` with this graph, its checkpoints and step ledger at `checkpointer_url`
    (default: `duet run`'s); raises `ConfigurationError` before any work."""
    from graph.app.report import write_report
    from graph.app.runner import run_thread
    from graph.app.threads import new_thread_id

    thread_id = new_thread_id()
    tools = settings.run_tools(run.instance)
    try:
        _, final = await run_thread(
            text, thread_id=thread_id, context=task_context(run, settings), tools=tools,
            checkpointer_url=checkpointer_url, decide=decider(run.task))
    finally:
        await settings.shared_tools().end_scope(thread_id)
    ran = [r for r in final.results if r.status not in ("rejected", "cancelled")]
    report = await write_report(thread_id, checkpointer_url)
    return Outcome(status=final.status.value, answer=final.final_answer or "",
                   reason=final.reason, steps=len(ran), tools=[r.tool for r in ran],
                   usage=final.usage, report=str(report), thread=thread_id,
                   errors=[r.error.type for r in final.results if r.error])


async def run_react(run: Run, text: str, settings: AgentSettings, transcript: Path) -> Outcome:
    """Run `text` with a ReAct loop on the same model and tools (the run's MCP servers'
    too); the transcript (every message) is written to `transcript`. Raises
    `ConfigurationError` before any work."""
    from langchain.agents import create_agent
    from langchain_aws.middleware import BedrockPromptCachingMiddleware
    from langchain_core.messages import AIMessage, HumanMessage, messages_to_dict
    from langgraph.errors import GraphRecursionError

    from graph.app.threads import new_thread_id
    from graph.reasoning import chat_model_from_spec
    from graph.runtime.secrets import run_auth
    from prompts import load_prompt

    task = run.task
    context = task_context(run, settings)
    model = chat_model_from_spec(context.model, context)  # no credentials: raises here
    registry = settings.run_tools(run.instance)
    thread_id = new_thread_id()  # the scope of its named browser sessions
    calls: list[str] = []
    errors: list[str] = []
    agent_time = AgentTime()  # its Nova Act calls', counted into its cost as ours are
    status, reason = "completed", ""
    messages: list[Any] = []
    try:
        if context.mcp_config:
            await _add_mcp_servers(registry, context, transcript.parent / thread_id)
        auth = run_auth(context)
        tools = [_guarded(entry, registry, context, decider(task), calls, errors, thread_id,
                          agent_time, auth)
                 for entry in registry
                 if entry.why_unavailable() is None]
        system, user = load_prompt("react", task=text)
        assert isinstance(user, HumanMessage)
        # Caching as fair as ours: langchain-aws's own cache points (where the model takes them).
        caching = [BedrockPromptCachingMiddleware(unsupported_model_behavior="ignore")
                   ] if context.prompt_caching else []
        agent = create_agent(model, tools=tools, system_prompt=system.text, middleware=caching)
        messages = [user]
        config: RunnableConfig = {"recursion_limit": 2 * context.max_steps + 3,
                                  "configurable": {"thread_id": thread_id}}
        async with asyncio.timeout(context.deadline_seconds):
            async for state in agent.astream({"messages": [user]}, config,
                                             stream_mode="values"):
                messages = state["messages"]
    except GraphRecursionError:
        status, reason = "budget_exhausted", f"more than {context.max_steps} turns"
    except TimeoutError:
        status, reason = "budget_exhausted", f"deadline of {context.deadline_seconds:g}s"
    except Exception as exc:  # noqa: BLE001 - a failed run is a result of the eval
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        await settings.shared_tools().end_scope(thread_id)
        await registry.aclose()  # the run's own tools and MCP sessions, not the shared ones
    replies = [m for m in messages if isinstance(m, AIMessage)]
    seconds = round(agent_time.seconds, 3)
    usage = sum((Usage.of_metadata(m.usage_metadata or {}, context.prices()) for m in replies),
                Usage.of_nova_act(seconds, context.nova_act_price().cost_usd(seconds)))
    last = replies[-1] if replies else None
    if status == "completed" and (last is None or last.tool_calls):
        status, reason = "failed", "the agent stopped without a final answer"
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.write_text(json.dumps(messages_to_dict(messages), indent=1, default=str),
                          encoding="utf-8")
    return Outcome(status=status, answer=last.text if last is not None else "", reason=reason,
                   steps=len(calls), tools=calls, usage=usage, report=str(transcript),
                   thread=thread_id, errors=errors)


async def _add_mcp_servers(registry: ToolRegistry, context: Context, folder: Path) -> None:
    """Add the tools of the run's MCP servers, as `duet run` does (a server that cannot be
    reached is waited for, `dependency_wait_seconds`, as it is for the nova-duet agent; one
    that does not start leaves its tools out; the listing says why)."""
    from graph.app.runner import add_mcp_servers

    folder.mkdir(parents=True, exist_ok=True)
    await add_mcp_servers(registry, context, log_folder=folder)


def _guarded(entry: Any, registry: Any, context: Context,
             decide: Callable[[dict[str, Any]], dict[str, str]], calls: list[str],
             errors: list[str], thread_id: str, agent_time: AgentTime, auth: Auth) -> Any:
    """`entry`'s tool for the ReAct loop: the same name, description and arguments, run
    by `attempt_tool` under the run's sandbox policy and with its secrets (`auth`), after
    the approval policy; its Nova Act time goes to `agent_time`, each failed call's error
    type to `errors`."""
    from langchain_core.tools import StructuredTool

    from graph.runtime.attempts import attempt_tool
    from tools.step import StepContext

    policy = context.sandbox_policy()

    async def call(**args: Any) -> str:
        args = {name: value for name, value in args.items() if value is not None}
        if entry.changes_things(args):
            verdict = _approval(context.approval, decide, entry.name, args)
            if verdict:
                return f"refused: {verdict}"
        calls.append(entry.name)
        step = StepContext(policy=policy, scope=thread_id, browser=context.remote_browser(),
                           agent_time=agent_time, auth=auth)
        attempt = await attempt_tool(registry, entry.name, args, step,
                                     context.step_timeout_seconds)
        if attempt.status != "ok":
            error = attempt.error
            errors.extend([error.type] if error else [])
            return f"{attempt.status}: {error.type}: {error.message}" if error else attempt.status
        return json.dumps(attempt.output, ensure_ascii=False, default=str)

    return StructuredTool.from_function(coroutine=call, name=entry.name,
                                        description=entry.tool.description,
                                        args_schema=entry.tool.tool_call_schema)


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
