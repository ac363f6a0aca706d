"""What a run reports as it goes: one typed union of events (`Event`).

Nodes and steps send them on the run's `custom` stream as plain JSON (`emit`), so a
LangGraph server streams them to any client; `run_thread` reads them back as `Event`s
(`parse_event`), stamps each with its time and thread, writes them to the run's JSONL trace
and hands them to its `on_event`. The CLI's live view, the run report and `duet show` read
these classes, never the dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Event(BaseModel):
    """What every event has: when (`t`) and in which run, stamped as it is recorded."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    t: float | None = None
    thread_id: str | None = None

    def dump(self) -> dict[str, Any]:
        """The event as JSON (what the stream and the trace carry); unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class RunStarted(_Event):
    """A new run begins."""

    event: Literal["run_started"] = "run_started"


class Resumed(_Event):
    """A saved run is resumed; `ended` (with a `note`, and the `retry` command that would
    continue it) when it had already ended and nothing ran."""

    event: Literal["resume"] = "resume"
    ended: str | None = None
    retry: str | None = None
    note: str | None = None


class RunRetried(_Event):
    """A run that ended `after` is retried: the steps `kept`, those run `again`, and the
    writes that ask a human first (`uncertain`)."""

    event: Literal["run_retried"] = "run_retried"
    retry: int
    after: str
    reason: str = ""
    again: list[str] = []
    kept: list[str] = []
    uncertain: list[str] = []


class RunFinished(_Event):
    """The run's process is done with it (it ended, or it waits for a human)."""

    event: Literal["run_finished"] = "run_finished"
    status: str
    usage: dict[str, Any] = {}


class StorageFailed(_Event):
    """The checkpointer or the step ledger failed: the run stopped, resumable."""

    event: Literal["storage_failed"] = "storage_failed"
    error: str


class NodeUpdate(_Event):
    """What a node changed that is worth a line (never raw tool output)."""

    event: Literal["node"] = "node"
    node: str
    plan: list[dict[str, Any]] | None = None  # each step's id, tool, depends_on, args
    plan_version: int | None = None
    goal: str | None = None
    decision: dict[str, Any] | None = None
    status: str | None = None
    reason: str | None = None
    summarized_count: int | None = None
    usage: dict[str, Any] | None = None
    rejected: list[dict[str, Any]] | None = None  # step_id and error of each refused step

    def says_something(self) -> bool:
        """False for an update with nothing to show (act's results are step events, the
        Nova Act time they add to `usage` too)."""
        return bool(self.model_fields_set - {"t", "thread_id", "event", "node", "usage"})


class StepStarted(_Event):
    """A step starts."""

    event: Literal["step_started"] = "step_started"
    step_id: str
    tool: str


class StepReplayed(_Event):
    """A step the ledger already holds is replayed, not run (its checkpoint was lost)."""

    event: Literal["step_replayed"] = "step_replayed"
    step_id: str
    tool: str


class StepWaiting(_Event):
    """A step waits before it can run (a browser slot, a dependency that is down)."""

    event: Literal["step_waiting"] = "step_waiting"
    step_id: str
    tool: str
    reason: str


class StepSent(_Event):
    """An attempt of a step came back from an executor deployment."""

    event: Literal["step_sent"] = "step_sent"
    step_id: str
    status: str
    executor: str | None = None


class StepRetried(_Event):
    """A step is tried again after a retryable error of kind `error`."""

    event: Literal["step_retried"] = "step_retried"
    step_id: str
    attempt: int
    error: str


class Attempt(BaseModel):
    """One attempt of a step: when it began and ended (epoch seconds), how it ended, and
    its error's kind (`StepError.type`)."""

    model_config = ConfigDict(frozen=True)

    started: float
    ended: float
    status: str
    error: str | None = None


class StepFinished(_Event):
    """A step ended, with its status: when it `started` (epoch seconds), its plan version,
    its error's kind, and each of its attempts (none for a step refused before any); a Nova
    Act step with its agent time and that time's cost (None: no price)."""

    event: Literal["step_finished"] = "step_finished"
    step_id: str
    tool: str
    status: str
    duration_ms: float
    attempts: int
    started: float | None = None
    plan_version: int | None = None
    error: str | None = None
    attempt_log: list[Attempt] = []
    nova_act_seconds: float | None = None
    nova_act_cost_usd: float | None = None


class ReasoningCall(_Event):
    """One call of the reasoning model: its kind, when, its tokens and cost; the model's
    name and provider as LangChain names them (`ls_model_name`, `ls_provider`), and the
    error class of a call that failed."""

    event: Literal["reasoning"] = "reasoning"
    kind: str
    started: float
    ended: float
    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ok: bool = True
    error: str | None = None


class StructuredOutputSalvaged(_Event):
    """The model answered in text, and a valid `schema` object was read from it."""

    event: Literal["structured_output_salvaged"] = "structured_output_salvaged"
    schema_name: str = Field(alias="schema")


class ReplayHandedOver(_Event):
    """A self-healing replay met a failed step (`steps`; `reason` names each and its error):
    the model takes over from there."""

    event: Literal["replay_handed_over"] = "replay_handed_over"
    steps: list[str]
    reason: str


class ApprovalRequested(_Event):
    """Steps wait for a human's approval (each step's id, tool, args, description...)."""

    event: Literal["approval_requested"] = "approval_requested"
    steps: list[dict[str, Any]]


class ApprovalAnswered(_Event):
    """The approvals were answered, `by` whom."""

    event: Literal["approval_answered"] = "approval_answered"
    answers: list[dict[str, Any]]
    by: str


class PlanReviewRequested(_Event):
    """A plan waits for a person's review before any of its steps runs: each step's id,
    tool, args, whether it `writes`, the `hosts` it reaches and the `secrets` it uses (by
    name); `error` when the last answer was refused."""

    event: Literal["plan_review_requested"] = "plan_review_requested"
    plan_version: int
    goal: str
    steps: list[dict[str, Any]]
    error: str | None = None


class PlanReviewAnswered(_Event):
    """A person answered a plan review, `by` whom: `approve`, `edit` (the plan runs as
    `edited_version`) or `reject` (the planner reads `reason`)."""

    event: Literal["plan_review_answered"] = "plan_review_answered"
    plan_version: int
    action: str
    by: str = ""
    reason: str = ""
    edited_version: int | None = None


class HandOffRequested(_Event):
    """A step handed its page to a person (`tools.people`): what is `asked`, the page's
    `url`, its masked `screenshot`, the `devtools` link for a takeover, the `answers` that
    fit; `error` when the last answer was refused."""

    event: Literal["handoff_requested"] = "handoff_requested"
    step_id: str
    tool: str
    need: str  # `tools.people.HandOffKind`
    asked: str
    url: str = ""
    screenshot: str | None = None
    devtools: str | None = None
    answers: list[str] = []
    error: str | None = None


class HandOffAnswered(_Event):
    """A person answered a hand-off, `by` whom: `value` (never the value itself), `done`
    or `refuse`."""

    event: Literal["handoff_answered"] = "handoff_answered"
    step_id: str
    action: str
    by: str = ""


class ToolSourceWaiting(_Event):
    """A tool source (an MCP server) cannot be reached as the run starts: waited for."""

    event: Literal["tool_source_waiting"] = "tool_source_waiting"
    source: str
    reason: str
    wait_seconds: float


class ToolSourceBack(_Event):
    """A tool source that was waited for started."""

    event: Literal["tool_source_back"] = "tool_source_back"
    source: str
    waited_seconds: float


class ToolSourceUnavailable(_Event):
    """A tool source did not start: the run goes on without it."""

    event: Literal["tool_source_unavailable"] = "tool_source_unavailable"
    source: str
    error: str


Event = Annotated[
    RunStarted | Resumed | RunRetried | RunFinished | StorageFailed | NodeUpdate
    | StepStarted | StepReplayed | StepWaiting | StepSent | StepRetried | StepFinished
    | ReasoningCall | StructuredOutputSalvaged | ReplayHandedOver | ApprovalRequested
    | ApprovalAnswered | PlanReviewRequested | PlanReviewAnswered | HandOffRequested
    | HandOffAnswered | ToolSourceWaiting
    | ToolSourceBack | ToolSourceUnavailable,
    Field(discriminator="event")]
_EVENT: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: Any) -> Event | None:
    """`data` (a trace line, a chunk of the custom stream) as an `Event`; None for anything
    else (a user's tool may write its own chunks to the stream)."""
    try:
        return _EVENT.validate_python(data)
    except ValidationError:
        return None


def writer_of(runtime: Any) -> Callable[[Any], None] | None:
    """The run's stream writer, from a node's LangGraph `Runtime`; None without one (a node
    called outside a graph run, as tests do)."""
    return getattr(runtime, "stream_writer", None)


def emit(writer: Callable[[Any], None] | None, event: _Event) -> None:
    """Send `event` on a run's custom stream (`writer`: the runtime's stream writer)."""
    if writer is not None:
        writer(event.dump())


def emit_in_run(event: _Event) -> None:
    """Send `event` on the custom stream of the graph run this code runs in; outside one
    (a reasoner called on its own), nothing is sent."""
    # Imported here: `duet show` and `duet ls` read events without loading LangGraph.
    from langgraph.config import get_stream_writer

    try:
        writer = get_stream_writer()
    except RuntimeError:
        return
    emit(writer, event)
