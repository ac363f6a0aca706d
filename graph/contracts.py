"""The JSON contract between the reasoning agent and the execution agent.

These names are binding: tests outside this repository rely on them. `duet schema`
exports them as JSON Schema.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

from tools.errors import ErrorKind
from tools.people import HandOff
from tools.sandbox import SandboxPolicy

JsonValue = Any


class Step(BaseModel):
    """One tool call of a plan."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique in the plan, e.g. 's1'.", min_length=1, max_length=64)
    tool: str = Field(description="The name of a registered tool.")
    args: dict[str, JsonValue] = Field(
        default_factory=dict,
        description=(
            "Arguments matching the tool's schema. A string value of the form "
            "'${s1.output.path.to.value}' is replaced by that part of a dependency's output."
        ),
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Ids of earlier steps that must succeed first."
    )
    description: str = Field(default="", description="Why this step is in the plan.")
    needs_judgment: bool = Field(
        default=False,
        description="True when the reasoning agent must read this step's output before going on.",
    )
    side_effects: bool = Field(
        default=False,
        description="True when this step changes something, even if its tool usually does not.",
    )


class Plan(BaseModel):
    """A goal broken into steps; steps without a dependency between them run in parallel."""

    model_config = ConfigDict(extra="forbid")

    goal: str = Field(description="What the user asked for, in one sentence.")
    steps: list[Step] = Field(description="The steps, in an order that respects depends_on.")

    @model_validator(mode="after")
    def _check_dependencies(self) -> Plan:
        """Reject duplicate ids, unknown dependencies and cycles; the model gets this text back."""
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"duplicate step id {step.id!r}")
            seen.add(step.id)
        ids = {step.id for step in self.steps}
        for step in self.steps:
            unknown = [dep for dep in step.depends_on if dep not in ids]
            if unknown:
                raise ValueError(f"step {step.id!r} depends on unknown step ids {unknown}")
        cycle = _find_cycle({step.id: step.depends_on for step in self.steps})
        if cycle:
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
        return self

    def fingerprint(self) -> str:
        """A hash of what the plan does (tools, arguments, wiring), ignoring ids and prose.

        Two plans with the same fingerprint would do the same thing: repeating one is a loop.
        """
        position = {step.id: index for index, step in enumerate(self.steps)}
        canonical = [
            [step.tool, step.args, sorted(position[dep] for dep in step.depends_on)]
            for step in self.steps
        ]
        blob = json.dumps(canonical, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """Return one dependency cycle as a list of ids, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in edges.get(node, []):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return None


StepStatus = Literal["ok", "error", "rejected", "timeout", "blocked", "cancelled"]


class StepError(BaseModel):
    """Why a step did not succeed."""

    type: str = Field(description="The error class, e.g. 'UnknownTool' or 'ActTimeoutError'.")
    message: str
    retryable: bool = False

    @property
    def kind(self) -> ErrorKind:
        """The error's kind (an error class nova-duet does not name is a `TOOL_ERROR`)."""
        return ErrorKind.of(self.type)


class StepResult(BaseModel):
    """The typed record of one executed (or refused) step."""

    step_id: str
    tool: str = ""
    status: StepStatus
    output: JsonValue = None
    error: StepError | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_ms: float = 0.0
    attempts: int = 0
    plan_version: int = Field(default=1, description="Which plan (1 = first, 2 = first replan...).")
    escalated: str | None = Field(
        default=None,
        description="Why this step needed a human although the policy was 'auto' (it was "
                    "planned after reading tool output and carries values from it).")
    waited: str | None = Field(
        default=None,
        description="What the step waited for before it could run, and how long (a browser "
                    "slot, when more browser steps were ready than max_browser_sessions).")
    rejected_because: str | None = Field(
        default=None,
        description="Why the person who rejected this step rejected it ({'reject': 'why'}); "
                    "the planner reads it as theirs, not as tool output.")
    not_sent: bool = Field(
        default=False,
        description="It failed and no attempt reached its tool (refused before sending: a "
                    "server down, no browser slot): a retry may run it again even when it "
                    "changes things and takes no idempotency key.")
    nova_act_seconds: float = Field(
        default=0.0, description="The wall time its Nova Act calls (act, act_get) took, "
                                 "every attempt's: what Nova Act bills by the agent-hour.")
    nova_act_cost_usd: float | None = Field(
        default=None, description="That time at the run's Nova Act price (`nova_act_prices`) "
                                  "when the step ended; None without Nova Act time or "
                                  "without a price.")
    hand_off: HandOff | None = Field(
        default=None, description="What the step handed to a person (`tools.people`): not "
                                  "a result yet, the step is held until they answer.")

    @property
    def usage(self) -> Usage:
        """What the step adds to the run's usage: its Nova Act time and cost."""
        return Usage.of_nova_act(self.nova_act_seconds, self.nova_act_cost_usd)

    @classmethod
    def rejected(cls, step: Step, plan_version: int, kind: ErrorKind,
                 message: str) -> StepResult:
        """The result of a step that was refused and never ran."""
        return cls(step_id=step.id, tool=step.tool, status="rejected", plan_version=plan_version,
                   error=StepError(type=kind, message=message))


# The executor deployment's graph, as `langgraph.json` serves it (`graph.executor`).
EXECUTOR_GRAPH_ID = "nova-duet-executor"
# Its routes beside the graphs (`langgraph.json`'s `http.app`): one POST per attempt of a
# step (a StepRequest in, a StepAttempt out, no run queue), the end of a caller's run
# (`{"thread": ...}`: its named sessions close), and what the deployment serves (GET).
EXECUTOR_STEP_PATH = "/executor/step"
EXECUTOR_END_THREAD_PATH = "/executor/end-thread"
EXECUTOR_INFO_PATH = "/executor"


class StepRequest(BaseModel):
    """One attempt of one step, as the reasoning graph sends it to an executor deployment
    (`graph.executor`): the resolved arguments, the idempotency key, and the run's sandbox
    (which the deployment narrows to its own allowlist)."""

    tool: str
    args: dict[str, Any]
    step_id: str
    plan_version: int
    thread: str = Field(description="The caller's thread: named browser sessions live per "
                                    "thread.")
    idempotency_key: str | None = None
    timeout_seconds: float
    policy: SandboxPolicy
    screenshot: bool = True
    trace: dict[str, str] | None = Field(default=None, description="LangSmith headers of the "
                                         "step's run, so the executor's run nests under it.")


class StepAttempt(BaseModel):
    """What one attempt of a step came to, in-process or on an executor deployment."""

    status: StepStatus
    output: JsonValue = None
    error: StepError | None = None
    not_sent: bool = Field(default=False, description="The attempt failed before anything "
                                                      "was sent: safe to retry any step.")
    unreachable: bool = Field(default=False, description="The attempt failed because its "
                              "dependency could not be reached (refused, reset, gone): the "
                              "step waits for it (`dependency_wait_seconds`).")
    screenshot: str | None = Field(default=None, description="The page at the end of a "
                                   "remote browser step, a base64 PNG.")
    executor: str | None = Field(default=None, description="The executor deployment that "
                                 "ran it (remote attempts).")
    nova_act_seconds: float = Field(default=0.0, description="The wall time its Nova Act "
                                    "calls took (remote attempts: the step adds it to its own).")
    hand_off: HandOff | None = Field(default=None, description="What it handed to a person "
                                     "(`tools.people.PersonNeeded`).")


class Decision(BaseModel):
    """What the reasoning agent decides after reading new results."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["continue", "replan", "finish"] = Field(
        description=(
            "'continue' runs the rest of the plan, 'replan' writes a new plan, "
            "'finish' stops and writes the answer."
        )
    )
    reason: str = Field(description="One or two sentences: why.")
    answer: str | None = Field(
        default=None,
        description=(
            "With 'finish': the final answer for the user, citing step ids like [s2]; "
            "the run then ends without another reasoning call."
        ),
    )


class RunStatus(StrEnum):
    """How a run ended. Every run ends with exactly one of these."""

    COMPLETED = "completed"
    FAILED = "failed"
    BUDGET_EXHAUSTED = "budget_exhausted"
    LOOP_DETECTED = "loop_detected"
    NEEDS_APPROVAL = "needs_approval"
    NEEDS_PERSON = "needs_person"  # paused: a step handed its page to a person
    CANCELLED = "cancelled"


class TokenPrices(BaseModel):
    """A reasoning model's prices in USD per million tokens, and where they come from.

    Cache reads and writes are priced apart from the rest of the input: Bedrock bills a
    token read from the prompt cache at a discount and, for some models, one written to it
    at a premium."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, description="Input tokens neither read from nor written to "
                         "the cache.")
    output: float = Field(ge=0)
    cache_read: float = Field(ge=0, description="Input tokens read from the prompt cache.")
    cache_write: float = Field(ge=0, description="Input tokens written to the prompt cache.")
    source: str = ""
    as_of: str = ""

    def cost_usd(self, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                 cache_write_tokens: int = 0) -> float:
        """The cost of one call; `input_tokens` counts every input token, cached or not."""
        plain = input_tokens - cache_read_tokens - cache_write_tokens
        return round((plain * self.input + cache_read_tokens * self.cache_read
                      + cache_write_tokens * self.cache_write
                      + output_tokens * self.output) / 1e6, 6)


# Estimates only: a user sets their own with the `token_prices` setting.
NOVA_2_LITE_PRICES = TokenPrices(
    input=0.30, output=2.50, cache_read=0.075, cache_write=0.30,
    source="input and output: Nova 2 Lite's public on-demand list price as the project's notes "
           "give it (roughly); cache: Bedrock's prompt-caching terms for Amazon Nova (reads 75% "
           "off the input price, writes at no premium) applied to it",
    as_of="2026-12-01; not checked against the live Amazon Bedrock pricing page (no internet "
          "here): check it, and set token_prices",
)


class NovaActPrices(BaseModel):
    """Nova Act's price in USD per agent-hour (the time its agent works on a task), and
    where it comes from. `agent_hour` None: no price is known, so Nova Act time is reported
    unpriced, and a run with `max_cost_usd` refuses to start a Nova Act step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_hour: float | None = Field(default=None, ge=0)
    source: str = ""
    as_of: str = ""

    def cost_usd(self, seconds: float) -> float | None:
        """The price of `seconds` of agent time, or None without a price."""
        if self.agent_hour is None:
            return None
        return round(seconds / 3600 * self.agent_hour, 6)


# No number was found to put here: a user sets theirs with the `nova_act_prices` setting.
NOVA_ACT_PRICES = NovaActPrices(
    agent_hour=None,
    source="no public per-agent-hour price found: the project's search of the AWS docs (the "
           "Nova Act user guide, API reference and service pages) and of public pages "
           "returned none; read https://aws.amazon.com/nova/pricing/ and set nova_act_prices",
    as_of="2026-12-07 (searched offline)",
)


class Usage(BaseModel):
    """What one run (or one call, or one step) used: reasoning-model tokens and Nova Act time.

    `input_tokens` counts every input token; `cache_read_tokens` and `cache_write_tokens` are
    the parts of them read from and written to Bedrock's prompt cache. `estimated_cost_usd`
    is the tokens' cost, priced when a call is recorded at the prices in force then;
    `nova_act_cost_usd` that of the Nova Act time priced when each step ended, and
    `nova_act_unpriced_seconds` the part of that time that had no price. Every field adds
    up; `total_cost_usd` is both costs."""

    reasoning_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    estimated_cost_usd: float = 0.0
    nova_act_seconds: float = 0.0
    nova_act_cost_usd: float = 0.0
    nova_act_unpriced_seconds: float = 0.0

    @classmethod
    def of_call(cls, *, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
                cache_write_tokens: int = 0, prices: TokenPrices = NOVA_2_LITE_PRICES) -> Usage:
        """One reasoning call's usage, priced at `prices`."""
        counts = {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_read_tokens": cache_read_tokens,
                  "cache_write_tokens": cache_write_tokens}
        return cls(reasoning_calls=1, **counts, estimated_cost_usd=prices.cost_usd(**counts))

    @classmethod
    def of_metadata(cls, metadata: Mapping[str, Any],
                    prices: TokenPrices = NOVA_2_LITE_PRICES) -> Usage:
        """One call's usage from LangChain's `usage_metadata` (cache tokens from its
        `input_token_details`, where langchain-aws puts Bedrock's cacheRead/WriteInputTokens)."""
        details = metadata.get("input_token_details") or {}
        return cls.of_call(input_tokens=metadata.get("input_tokens", 0),
                           output_tokens=metadata.get("output_tokens", 0),
                           cache_read_tokens=details.get("cache_read", 0) or 0,
                           cache_write_tokens=details.get("cache_creation", 0) or 0,
                           prices=prices)

    @classmethod
    def of_nova_act(cls, seconds: float, cost_usd: float | None) -> Usage:
        """Nova Act time of one step, and its cost (None: it had no price)."""
        return cls(nova_act_seconds=seconds, nova_act_cost_usd=cost_usd or 0.0,
                   nova_act_unpriced_seconds=seconds if cost_usd is None else 0.0)

    @classmethod
    def of_steps(cls, results: list[StepResult]) -> Usage:
        """The Nova Act time and cost of `results`."""
        return sum((r.usage for r in results if r.nova_act_seconds), cls())

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_cost_usd(self) -> float:
        """The reasoning model's tokens and Nova Act's time, in USD (unpriced time: none)."""
        return round(self.estimated_cost_usd + self.nova_act_cost_usd, 6)

    def describe_cost(self) -> str:
        """`estimated cost $0.01234`, with its parts when Nova Act time is in it, and what
        of that time had no price."""
        text = f"estimated cost ${self.total_cost_usd:.5f}"
        if not self.nova_act_seconds:
            return text
        text += (f" (model ${self.estimated_cost_usd:.5f}, Nova Act "
                 f"{self.nova_act_seconds:.1f} s ${self.nova_act_cost_usd:.5f})")
        if self.nova_act_unpriced_seconds:
            text += (f"; {self.nova_act_unpriced_seconds:.1f} s of Nova Act time unpriced: "
                     "set nova_act_prices")
        return text

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            reasoning_calls=self.reasoning_calls + other.reasoning_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            estimated_cost_usd=round(self.estimated_cost_usd + other.estimated_cost_usd, 6),
            nova_act_seconds=round(self.nova_act_seconds + other.nova_act_seconds, 3),
            nova_act_cost_usd=round(self.nova_act_cost_usd + other.nova_act_cost_usd, 6),
            nova_act_unpriced_seconds=round(
                self.nova_act_unpriced_seconds + other.nova_act_unpriced_seconds, 3),
        )


class StepTally(BaseModel):
    """Counts over every result of a run so far: what the budgets check, kept in the state
    in place of the results themselves (those live in the step ledger)."""

    results: int = 0
    executed: int = 0  # results of steps that ran (not rejected)
    attempts: int = 0  # tool calls, retries included
    ok: int = 0

    @classmethod
    def of(cls, results: list[StepResult]) -> StepTally:
        """The tally of `results`."""
        return cls(results=len(results),
                   executed=sum(r.status != "rejected" for r in results),
                   attempts=sum(r.attempts for r in results),
                   ok=sum(r.status == "ok" for r in results))

    def __add__(self, other: StepTally) -> StepTally:
        return StepTally(results=self.results + other.results,
                         executed=self.executed + other.executed,
                         attempts=self.attempts + other.attempts, ok=self.ok + other.ok)


class FinalState(BaseModel):
    """What a finished run reports (`duet run --json`)."""

    status: RunStatus
    final_answer: str | None
    results: list[StepResult]
    reason: str = ""
    usage: Usage = Field(default_factory=Usage)


def tool_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema as the reasoning model receives it: one object with every field's
    name, type and whether it is required, without titles, descriptions or defaults (the
    prompt explains the fields once, in prose). Validation still uses the pydantic model."""
    return copy.deepcopy(_compact_schema(model))  # a copy: a caller may change its own


@functools.cache
def _compact_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`tool_schema`, made once a process (it is sent with every reasoning call)."""
    full = model.model_json_schema()
    definitions = full.pop("$defs", {})

    def compact(node: Any) -> Any:
        if isinstance(node, list):
            return [compact(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return compact(definitions[node["$ref"].rsplit("/", 1)[-1]])
        out = {key: compact(value) for key, value in node.items()
               if key not in ("title", "description", "default", "properties")}
        if "properties" in node:  # field names are kept, even one called "description"
            out["properties"] = {name: compact(spec) for name, spec in node["properties"].items()}
        return out

    schema = compact(full)
    return {"title": model.__name__, "description": (model.__doc__ or "").strip(), **schema}


def contract_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every contract, by name."""
    models: list[type[BaseModel]] = [Plan, Step, StepResult, StepError, Decision, FinalState]
    return {model.__name__: model.model_json_schema() for model in models}
