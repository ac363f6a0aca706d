"""Run, resume, retry and inspect threads with a checkpointer: what the CLI (and notebooks)
call: `run_thread` (start or resume) and `retry_thread` (continue a run that failed).

Each run streams node updates and step events (`graph.events`) to `on_event`, appends them
to a JSONL trace in `duet_home()/traces/`, exports them as OpenTelemetry spans when an OTLP
endpoint is set (`graph.app.telemetry`), and saves the run's settings so `resume`
continues it as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Command
from pydantic_core import to_jsonable_python

from graph.answers import (
    HANDOFF,
    PLAN_REVIEW,
    AnswerRefused,
    Decide,
    read_hand_off_answer,
    read_plan_review,
    read_step_answers,
)
from graph.app.telemetry import run_spans
from graph.app.threads import (
    IncompatibleThread,
    NotRetryable,
    UnknownThread,
    final_state,
    latest,
    load_settings,
    new_thread_id,
    save_settings,
    saved_before_ledger,
    trace_path,
)
from graph.builder import build_graph
from graph.checkpoints import open_checkpointer, open_store, run_folder
from graph.context import Context
from graph.contracts import FinalState, RunStatus
from graph.events import (
    ApprovalAnswered,
    ApprovalRequested,
    Event,
    HandOffRequested,
    NodeUpdate,
    PlanReviewRequested,
    Resumed,
    RunFinished,
    RunStarted,
    StorageFailed,
    ToolSourceBack,
    ToolSourceUnavailable,
    ToolSourceWaiting,
    parse_event,
)
from graph.reasoning import (
    ConfigurationError,
    PlanFileError,
    PlanFileReasoner,
    resolve_reasoner,
)
from graph.redaction import also_redact, redact
from graph.runtime.early import step_refusal
from graph.runtime.ledger import StepLedger
from graph.runtime.secrets import SecretRules, run_auth
from graph.state import RETRYABLE
from tools import default_registry
from tools.errors import ErrorKind
from tools.registry import ToolRegistry

__all__ = ["add_mcp_servers", "check_plan_file", "retry_thread", "run_thread"]

log = logging.getLogger("duet")


def _summarize_update(node: str, update: dict[str, Any]) -> NodeUpdate:
    """The part of a node update worth a trace line (never raw tool output)."""
    fields: dict[str, Any] = {"node": node}
    if plan := update.get("plan"):
        fields["plan"] = [{"id": s.id, "tool": s.tool, "depends_on": s.depends_on,
                           "args": s.args} for s in plan.steps]  # `emit` redacts secrets
        fields["plan_version"] = update.get("plan_version")
        fields["goal"] = plan.goal
    if decision := update.get("decision"):
        fields["decision"] = decision.model_dump()
    for key in ("status", "reason", "summarized_count"):
        if update.get(key) not in (None, ""):  # a retry clears status and reason
            fields[key] = update[key]
    if usage := update.get("usage"):
        fields["usage"] = usage.model_dump()
    new = update.get("recent")  # the node's new results (`summarize` overwrites it instead)
    if isinstance(new, list) and (rejected := [r for r in new if r.status == "rejected"]):
        fields["rejected"] = [{"step_id": r.step_id, "error": r.error.message}
                              for r in rejected]
    return NodeUpdate(**fields)


async def run_thread(
    task: str | None,
    *,
    thread_id: str | None = None,
    context: Context | None = None,
    model: BaseChatModel | str | None = None,
    tools: ToolRegistry | None = None,
    checkpointer_url: str | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    decide: Decide | None = None,
) -> tuple[str, FinalState]:
    """Start a run of `task`, or with `task=None` resume `thread_id` from its last checkpoint.

    When the run pauses for a person, `decide(request)` answers it (`graph.answers.Decide`:
    a `PlanReview` for a plan review, a `StepAnswer` per step for an approval, a
    `PersonAnswer` for a hand-off, None to leave it waiting); without `decide` the run
    stops there with status `needs_approval` (`needs_person` for a hand-off), resumable
    later. A hand-off's value never leaves memory: it is sent to the graph as a
    `PersonAnswer`, which every record holds masked (`tools.people`). A `by` attribute
    on `decide` names who answers, in the trace and the run report. An answer that does
    not fit its request raises `AnswerRefused`, the run still waiting: before anything is
    sent when its form is wrong, after the graph refused it otherwise (an edited plan with
    an invalid step).
    Resuming a run that has ended runs nothing: a `resume` event says so, with its status
    (`ended`) and, when `retry_thread` continues it, the command that does (`retry`).
    Returns the thread id and the final state. Raises `ConfigurationError` before any work
    when the reasoning model cannot be used (no AWS credentials, say), `AuthConfigError`
    when the auth config is wrong (see `graph.runtime.secrets.run_auth`), `PlanFileError`
    when the plan file (offline planner mode) cannot run (see `check_plan_file`), and
    `TelemetryConfigError` when the OpenTelemetry environment asks for an export that
    cannot be made (see `graph.app.telemetry`).
    """
    if task is None:
        if thread_id is None:
            raise UnknownThread("resume needs a thread id")
        return await _run_saved(thread_id, model=model, tools=tools,
                                checkpointer_url=checkpointer_url, on_event=on_event,
                                decide=decide)
    thread_id = thread_id or new_thread_id()
    context = context or Context()
    return await _run(thread_id, task, task, context, model, tools, checkpointer_url,
                      on_event, decide)


async def retry_thread(
    thread_id: str,
    *,
    settings: dict[str, Any] | None = None,
    model: BaseChatModel | str | None = None,
    tools: ToolRegistry | None = None,
    checkpointer_url: str | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    decide: Decide | None = None,
) -> tuple[str, FinalState]:
    """Continue a run that ended `failed` or `budget_exhausted`, once the cause is fixed
    (`duet retry`; see `graph.nodes.retry`): the last plan's steps that succeeded are kept
    and never sent again, the others run again under the rules of a resume (a write whose
    effect is uncertain and whose tool takes no idempotency key asks a human first).

    `settings` changes run settings from then on (`Context` fields, as `duet retry --set`),
    saved with the run so a later resume keeps them: a run that spent its step budget
    continues once `max_steps` is raised (budgets count over the whole run; the deadline
    starts again). A run that stopped before it could end (its storage failed, its process
    was killed) is resumed instead, as `run_thread` would. Raises `NotRetryable` before any
    work for a run that ended otherwise or waits for approval, `UnknownThread` for none;
    otherwise as `run_thread`.
    """
    return await _run_saved(thread_id, model=model, tools=tools, settings=settings or {},
                            checkpointer_url=checkpointer_url, on_event=on_event,
                            decide=decide, retry=True)


async def _run_saved(thread_id: str, *, model: BaseChatModel | str | None,
                     tools: ToolRegistry | None, checkpointer_url: str | None,
                     on_event: Callable[[Event], None], decide: Decide | None,
                     settings: dict[str, Any] | None = None,
                     retry: bool = False) -> tuple[str, FinalState]:
    """Resume or retry a saved run with its saved settings (and `settings` on top)."""
    saved = load_settings(thread_id)
    context, task = Context(**saved["context"]), saved["task"]
    model = model or saved.get("model")
    if settings:
        context = dataclasses.replace(context, **settings)
    return await _run(thread_id, None, task, context, model, tools, checkpointer_url,
                      on_event, decide, retry=retry, save=bool(settings))


async def _run(thread_id: str, task: str | None, saved_task: str, context: Context,
               model: BaseChatModel | str | None, tools: ToolRegistry | None,
               checkpointer_url: str | None, on_event: Callable[[Event], None],
               decide: Decide | None, *, retry: bool = False,
               save: bool = False) -> tuple[str, FinalState]:
    """Open the run's tools and storage, drive the graph, close them. A new run's settings
    are saved before its storage opens (so a resume finds them if that fails); with `save`,
    a retry's changed settings once the thread is known to continue."""
    resolve_reasoner(context, model)  # fail fast on configuration, before any work
    try:
        context.nova_act_price()  # read by the steps: a bad table stops the run here
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    run_auth(context)
    checks_plan = task is not None or retry  # a resume goes on with the plan it has
    config = {"configurable": {"thread_id": thread_id}}
    spans = run_spans(thread_id)  # None without an OTLP endpoint
    trace = _Trace(trace_path(thread_id))

    def emit(event: Event | dict[str, Any]) -> None:
        """Stamp, redact, trace and report one event (or a chunk of the custom stream)."""
        data = event.dump() if not isinstance(event, dict) else event
        recorded = parse_event(redact({**data, "t": round(time.time(), 3),
                                       "thread_id": thread_id}))
        if recorded is None:
            return  # a chunk a user's tool wrote to the stream: not a run event
        trace.write(recorded.dump())
        if spans is not None:
            spans.record(recorded)
        on_event(recorded)

    registry = tools if tools is not None else default_registry()
    if context.mcp_config:
        registry = registry.extended()  # the caller's registry stays as it was
    try:
        try:
            if checks_plan and not context.mcp_config:
                check_plan_file(context, registry)
            if task is not None:
                save_settings(thread_id, task, context, model)
            async with (open_checkpointer(checkpointer_url, context) as saver,
                        open_store(checkpointer_url, context) as store):
                # Only a resume can meet a state of the earlier shape (a new run has none).
                saved, waiting = (await latest(saver, thread_id)) if task is None else ({}, [])
                if retry and saved.get("status") is None and not waiting:
                    # Stopped before it could end (its storage failed, its process was
                    # killed, or it never reached its first checkpoint): what continues it
                    # is a resume, under the same rules.
                    retry = False
                if retry and saved.get("status") not in RETRYABLE:
                    raise NotRetryable(_not_retryable(thread_id, saved))
                if not saved.get("status") and saved_before_ledger(saved):
                    raise IncompatibleThread(
                        f"thread {thread_id!r} was saved by an earlier nova-duet, whose state "
                        "kept every result: `duet show` reads it, but this version cannot "
                        "continue it. Start the task again, or finish it with the earlier "
                        "version.")
                if save:
                    save_settings(thread_id, saved_task, context, model)
                if context.mcp_config:
                    await _add_run_mcp_servers(registry, context, emit,
                                               run_folder(thread_id))
                    if checks_plan:
                        check_plan_file(context, registry)
                graph = build_graph(model=model, tools=registry, checkpointer=saver,
                                    store=store)
                final = await _drive(graph, task, saved_task, config, context, decide, emit,
                                     StepLedger(store, thread_id), retry)
        finally:
            await registry.aclose()  # MCP sessions, once per run, close here
        emit(RunFinished(status=final.status, usage=final.usage.model_dump()))
        return thread_id, final
    finally:
        trace.close()
        if spans is not None:
            await spans.end()


def _not_retryable(thread_id: str, values: dict[str, Any]) -> str:
    """Why `retry` refuses the run, and what continues it instead."""
    status = values.get("status")
    if status is None:
        return (f"thread {thread_id!r} has not ended (it waits for approval): "
                f"`duet resume {thread_id}` answers it")
    return (f"thread {thread_id!r} ended {status}: only a run that ended "
            f"{' or '.join(sorted(RETRYABLE))} can be retried")


class _Trace:
    """The run's JSONL trace: opened once, a line written per event (line-buffered, so a
    killed run keeps every line it wrote), rather than opened anew for each event on the
    event loop. A full disk or a broken trace folder must not stop a run with real effects
    (the checkpoint still records every step): that is said once, and the run goes on."""

    def __init__(self, path: Path):
        self.path = path
        self._out: IO[str] | None = None
        self._failed = False

    def write(self, event: dict[str, Any]) -> None:
        """Append `event` (as JSON) as one line."""
        if self._failed:
            return
        try:
            if self._out is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._out = self.path.open("a", encoding="utf-8", buffering=1)
            self._out.write(json.dumps(event, default=str) + "\n")
        except OSError as exc:
            self._failed = True
            log.warning("cannot write the trace %s: %s", self.path, exc)

    def close(self) -> None:
        """Close the file (what was written is on disk already)."""
        if self._out is not None:
            try:
                self._out.close()
            except OSError:
                pass  # the failure was reported when the line was written
            self._out = None


def check_plan_file(context: Context, registry: ToolRegistry) -> None:
    """Raise `PlanFileError` (one line: the file, the step, the problem) when the run's plan
    file (or `plan_text`) cannot run: not YAML or JSON, not a plan (bad fields, a cycle, an
    unknown dependency), or a step the registry refuses (an unknown tool, bad arguments, a
    bad reference, a secret the run does not have or in an argument that may hold none).
    A tool of a tool source that did not start (an MCP server) is not refused here: its
    step fails in the run, saying why. Nothing is sent before this passes."""
    replay = PlanFileReasoner.of(context)
    if replay is None:
        return
    secrets = SecretRules.of(run_auth(context))
    missing = registry.missing()
    for step in replay.load_plan().steps:
        refusal = step_refusal(step, registry, secrets)
        if refusal is not None and not (missing and refusal.kind is ErrorKind.UNKNOWN_TOOL):
            raise PlanFileError(replay.source, str(refusal), step.id)


async def add_mcp_servers(registry: ToolRegistry, context: Context, *,
                          log_folder: Path | None = None,
                          on_wait: Callable[[str, str], None] = lambda server, reason: None,
                          ) -> list[Any]:
    """Add the tools of the MCP servers of a run with `context` (`context.mcp_config`),
    under its sandbox and bounds, their `env` and `headers` kept out of every record (see
    `tools.mcp.add_mcp_servers`). Returns each server's status."""
    from tools.mcp import add_mcp_servers as add  # only runs with MCP servers load the SDK

    assert context.mcp_config is not None
    return await add(registry, context.mcp_config, context.sandbox_policy(),
                     mcp_timeout_seconds=context.mcp_timeout_seconds,
                     dependency_wait_seconds=context.dependency_wait_seconds,
                     remember_secret=also_redact, log_folder=log_folder, on_wait=on_wait)


async def _add_run_mcp_servers(registry: ToolRegistry, context: Context,
                               emit: Callable[[Event], None], folder: Path) -> None:
    """Add the tools of the run's MCP servers (stdio servers log to `folder`). A server
    that cannot be reached is waited for (`dependency_wait_seconds`: a
    `ToolSourceWaiting`, then `ToolSourceBack` when it joins); one that does not start is
    reported (`ToolSourceUnavailable`) and the run goes on without it."""
    def waiting(server: str, reason: str) -> None:
        emit(ToolSourceWaiting(source=f"mcp:{server}", reason=reason,
                               wait_seconds=context.dependency_wait_seconds))

    for status in await add_mcp_servers(registry, context, log_folder=folder, on_wait=waiting):
        if status.error:
            emit(ToolSourceUnavailable(source=f"mcp:{status.name}", error=status.error))
        elif status.waited:
            emit(ToolSourceBack(source=f"mcp:{status.name}",
                                waited_seconds=round(status.waited, 1)))


async def _drive(graph: Any, task: str | None, saved_task: str, config: dict[str, Any],
                 context: Context, decide: Decide | None,
                 emit: Callable[[Event], None], ledger: StepLedger,
                 retry: bool = False) -> FinalState:
    """Stream the run to its end or to an approval nobody answers; return its final state."""
    state = await graph.aget_state(config)
    if task is None and not state.values:
        # Stopped before its first checkpoint, so before any step: start it afresh.
        task = saved_task
    inputs: Any
    if task is not None:
        emit(RunStarted())
        inputs = {"task": task}
    elif retry:
        inputs = {"retry": True}  # the `retry` node says what it keeps and runs again
    elif not state.tasks:
        # `state.next` would not do: it leaves out tasks whose writes were saved, and a
        # process killed after a step's writes but before the next checkpoint has only those.
        emit(_ended(config["configurable"]["thread_id"], state.values.get("status")))
        inputs = _NO_ANSWER
    else:
        emit(Resumed())
        inputs = _answer(state.interrupts, decide, emit) if state.interrupts else None
    try:
        while inputs is not _NO_ANSWER:
            # "sync": each checkpoint is on disk before the next step starts, so a killed
            # process never resumes from before a step whose effects already happened.
            async for mode, chunk in graph.astream(
                inputs, config, context=context, stream_mode=["updates", "custom"],
                durability="sync",
            ):
                if mode == "custom":
                    emit(chunk)  # an event's JSON, or a chunk of a user's tool (skipped)
                    continue
                for node, update in chunk.items():
                    if isinstance(update, dict) and not node.startswith("__"):
                        emit(_summarize_update(node, update))
            state = await graph.aget_state(config)
            if isinstance(inputs, Command) and (refused := _refusal(state.interrupts)):
                # Not asked again: the same `decide` would give the same answer.
                emit(_requested(state.interrupts[0].value))
                thread_id = config["configurable"]["thread_id"]
                raise AnswerRefused(f"{refused}; the run still waits: `duet resume "
                                    f"{thread_id}` answers it again")
            inputs = _answer(state.interrupts, decide, emit) if state.interrupts else _NO_ANSWER
    except AnswerRefused:
        raise
    except Exception as exc:  # noqa: BLE001 - nodes never raise; what escapes is storage
        log.error("the run stopped: %s: %s", type(exc).__name__, exc)
        thread_id = config["configurable"]["thread_id"]
        emit(StorageFailed(error=f"{type(exc).__name__}: {exc}"))
        reason = (f"storage failed ({type(exc).__name__}: {exc}); once it is back, `duet "
                  f"resume {thread_id}` (or `duet retry`) continues from the last saved "
                  "checkpoint (journaled effects are not repeated)")
        return final_state({**state.values, "status": RunStatus.FAILED, "reason": reason})
    return final_state(state.values, list(state.interrupts), await ledger.results())


_NO_ANSWER = object()


def _ended(thread_id: str, status: str | None) -> Resumed:
    """The `resume` event of a run that had already ended: its status, and the command
    that continues it when a retry can."""
    retry = f"duet retry {thread_id}" if status in RETRYABLE else None
    note = f"the run had already ended ({status}); nothing was run"
    if retry:
        note += f": `{retry}` continues it once the cause is fixed"
    return Resumed(ended=str(status), retry=retry, note=note)


def _requested(request: dict[str, Any]) -> Event:
    """The event of a pending interrupt: a plan review, a hand-off, or steps waiting for
    approval."""
    if request.get("kind") == HANDOFF:
        return HandOffRequested(**{**request, "answers": [
            form["action"] for form in request["answers"]]})
    if request.get("kind") == PLAN_REVIEW:
        return PlanReviewRequested(plan_version=request["plan_version"], goal=request["goal"],
                                   steps=request["steps"], error=request.get("error"))
    return ApprovalRequested(steps=request.get("steps", []))


def _refusal(waiting: Any) -> str | None:
    """Why the graph refused the answer just sent (the request came back with an `error`)."""
    return next((pending.value["error"] for pending in waiting
                 if pending.value.get("error")), None)


def _answer(waiting: Any, decide: Decide | None, emit: Callable[[Event], None]) -> Any:
    """A resume command answering every pending interrupt with `decide`, each answer read
    as its request's kind takes it (`AnswerRefused` if it does not fit), or `_NO_ANSWER` to
    stop and wait (no `decide`, or it gave no answer)."""
    for pending in waiting:
        emit(_requested(pending.value))
    if decide is None:
        return _NO_ANSWER
    by = getattr(decide, "by", "the caller's decide function")
    answers: dict[str, Any] = {}
    for pending in waiting:
        answer = decide(pending.value)
        if answer is None:
            return _NO_ANSWER
        if pending.value.get("kind") == HANDOFF:
            person = read_hand_off_answer(answer, pending.value)
            # Sent as the model (never as JSON, which holds the mask): see `run_thread`.
            answers[pending.id] = person.model_copy(update={"by": person.by or by})
            continue
        if pending.value.get("kind") == PLAN_REVIEW:
            review = read_plan_review(answer)
            answer = review.model_copy(update={"by": review.by or by})
        else:
            ids = [step["step_id"] for step in pending.value.get("steps", [])]
            read_step_answers(answer, ids)
        answers[pending.id] = to_jsonable_python(answer, exclude_none=True)
    if approvals := [answers[p.id] for p in waiting
                     if p.value.get("kind") not in (PLAN_REVIEW, HANDOFF)]:
        emit(ApprovalAnswered(answers=approvals, by=by))
    return Command(resume=answers)


