"""Run configuration: a typed LangGraph context schema, so LangGraph Studio renders it."""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from graph.settings import Budgets, Timeouts
from tools.errors import ConfigError
from tools.sandbox import SandboxPolicy

if TYPE_CHECKING:
    from graph.contracts import NovaActPrices, TokenPrices
    from tools.step import RemoteBrowser

DEFAULT_MODEL = "us.amazon.nova-2-lite-v1:0"
ReasoningEffort = Literal["low", "medium", "high"]  # Nova 2's extended thinking
# Each group's defaults, written once (in its class), are the settings' defaults below.
_BUDGETS, _TIMEOUTS, _SANDBOX = Budgets(), Timeouts(), SandboxPolicy()
Group = TypeVar("Group", Budgets, Timeouts)


@dataclass(kw_only=True)
class Context:
    """Settings of one run. Every field has a default; pass only what you change."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "description": (
                "Reasoning model: a Bedrock model id (Nova 2 Lite by default) or an "
                "init_chat_model string such as 'bedrock_converse:us.amazon.nova-2-lite-v1:0'."
            )
        },
    )
    region: str = field(
        default_factory=lambda: os.environ.get("AWS_REGION", "us-east-1"),
        metadata={"description": "AWS region of the Bedrock endpoint ($AWS_REGION)."},
    )
    reasoning_effort: ReasoningEffort | None = field(
        default=None,
        metadata={"description": "Nova 2 extended thinking: 'low', 'medium', 'high' or none."},
    )
    bedrock_endpoint_url: str | None = field(
        default=None,
        metadata={"description": "Override the Bedrock runtime endpoint (VPC endpoint, tests)."},
    )
    prompt_caching: bool = field(
        default=True,
        metadata={
            "description": (
                "Bedrock prompt caching: each reasoning call marks its stable prefix (the "
                "system prompt with the tool catalogue; for a decision, the plan too) with a "
                "cache point, where the prefix is long enough to be cached (Nova models). "
                "false sends none."
            )
        },
    )
    token_prices: str | None = field(
        default=None,
        metadata={
            "description": (
                "Prices the cost estimates use, USD per million tokens: a JSON object with "
                "input, output, cache_read, cache_write (and optionally source, as_of), or "
                "the path of a JSON file holding one. None: Nova 2 Lite list prices."
            )
        },
    )
    nova_act_prices: str | None = field(
        default=None,
        metadata={
            "description": (
                "Nova Act's price, USD per agent-hour: a JSON object with agent_hour (and "
                "optionally source, as_of), or the path of a JSON file holding one. None: "
                "no price is known (Nova Act time is reported unpriced, and max_cost_usd "
                "refuses Nova Act steps)."
            )
        },
    )
    max_output_tokens: int | None = field(
        default=None,
        metadata={"description": "Most tokens one reasoning call may write (Bedrock's "
                                 "maxTokens: a longer reply is cut, and asked again as "
                                 "invalid); max_cost_usd reserves that many for each call. "
                                 "None: the model's own limit (Nova 2 Lite: 65,535)."},
    )
    model_timeout_seconds: float = field(
        default=_TIMEOUTS.model_timeout_seconds,
        metadata={"description": "Time limit of one reasoning call (retries included)."},
    )
    plan_file: str | None = field(
        default=None,
        metadata={
            "description": (
                "Offline planner mode: run the plan in this JSON or YAML file instead of "
                "asking the model, and write a templated answer."
            )
        },
    )
    plan_variables: dict[str, str] = field(
        default_factory=dict,
        metadata={"description": "Values for `{{ name }}` placeholders in the plan file."},
    )
    plan_text: str | None = field(
        default=None,
        metadata={"description": "Offline planner mode with the plan file's text (YAML or "
                                 "JSON, e.g. from `duet export`) instead of its path: what a "
                                 "client of a LangGraph server sends, the server not seeing "
                                 "the client's files. Not with plan_file."},
    )
    self_healing: bool = field(
        default=False,
        metadata={"description": "With plan_file or plan_text: when a replayed step fails "
                                 "(the world changed), the model (`model`) takes over with "
                                 "the results so far and replans; the steps that succeeded "
                                 "are kept. false: the run ends failed, naming the step."},
    )
    approval: Literal["ask", "auto", "deny"] = field(
        default="ask",
        metadata={
            "description": (
                "Steps that change things: 'ask' pauses for a human (LangGraph interrupt), "
                "'auto' runs them, 'deny' rejects them."
            )
        },
    )
    review_plan: bool = field(
        default=False,
        metadata={
            "description": (
                "Pause once per plan the planner writes, before any of its steps runs (none "
                "starts while it streams), for a person to approve, edit or reject it (a "
                "rejection's reason goes to the planner). Steps that change things still "
                "follow 'approval'."
            )
        },
    )
    max_plan_attempts: int = field(
        default=3,
        metadata={"description": "Model outputs tried per plan before the run fails."},
    )
    max_replans: int = field(default=_BUDGETS.max_replans,
                             metadata={"description": "Replans allowed per run."})
    max_steps: int = field(default=_BUDGETS.max_steps,
                           metadata={"description": "Steps executed per run."})
    max_tool_calls: int = field(
        default=_BUDGETS.max_tool_calls,
        metadata={"description": "Tool calls per run, retries included."}
    )
    deadline_seconds: float = field(
        default=_BUDGETS.deadline_seconds,
        metadata={"description": "Wall-clock limit of a run, in seconds: steps still running "
                                 "when it passes are cancelled (a write among them is "
                                 "recorded as uncertain) and the run ends budget_exhausted."}
    )
    token_budget: int = field(
        default=_BUDGETS.token_budget,
        metadata={"description": "Reasoning-model tokens (input + output) per run."},
    )
    max_cost_usd: float | None = field(
        default=_BUDGETS.max_cost_usd,
        metadata={"description": "USD per run: reasoning tokens (token_prices) and Nova Act "
                                 "time (nova_act_prices). A reasoning call or a Nova Act step "
                                 "that could pass it is not made: the run ends "
                                 "budget_exhausted (`duet retry --set max_cost_usd=...` "
                                 "continues it). None: no cost limit."},
    )
    max_stalled_replans: int = field(
        default=_BUDGETS.max_stalled_replans,
        metadata={"description": "Replans in a row without a new successful step: a loop."},
    )
    summarize_threshold_tokens: int = field(
        default=6_000,
        metadata={
            "description": "Fold older results into the summary when a prompt would pass this."
        },
    )
    keep_recent_results: int = field(
        default=8, metadata={"description": "Results kept verbatim when folding."}
    )
    step_timeout_seconds: float = field(
        default=_TIMEOUTS.step_timeout_seconds,
        metadata={"description": "Time limit of one tool call of any tool; a tool whose "
                                 "dependency has its own (shorter) limit below gets that one. "
                                 "A call past this limit may be retried (max_retries)."},
    )
    http_timeout_seconds: float = field(
        default=_TIMEOUTS.http_timeout_seconds,
        metadata={"description": "Time limit of one http_request call (connect to last byte). "
                                 "A target that stalls past it ends the step, not retried."},
    )
    mcp_timeout_seconds: float = field(
        default=_TIMEOUTS.mcp_timeout_seconds,
        metadata={"description": "Time limit of an MCP server's start (its session opening) "
                                 "and of one call of its tools. A server that stalls past it "
                                 "ends the step, not retried."},
    )
    playwright_timeout_seconds: float = field(
        default=_TIMEOUTS.playwright_timeout_seconds,
        metadata={"description": "Time limit of one Playwright browser step (browser_goto, "
                                 "browser_click, browser_fill, browser_read), its browser's "
                                 "start included. A browser that stalls past it ends the "
                                 "step, not retried (Nova Act tasks: browser_timeout_seconds)."},
    )
    dependency_wait_seconds: float = field(
        default=_TIMEOUTS.dependency_wait_seconds,
        metadata={"description": "How long a step waits, trying again with backoff, for a "
                                 "dependency that cannot be reached (connection refused or "
                                 "reset, a server gone, an MCP session that died: it is "
                                 "reopened) before it fails. A write waits only when nothing "
                                 "was sent or it may be repeated; a `step_waiting` event says "
                                 "so. An MCP server that cannot be reached when the run "
                                 "starts is started again for as long (a "
                                 "`tool_source_waiting` event), then left out."},
    )
    checkpointer_timeout_seconds: float = field(
        default=_TIMEOUTS.checkpointer_timeout_seconds,
        metadata={"description": "Time limit of one operation on a Postgres checkpointer's "
                                 "database (a checkpoint or ledger write or read, its "
                                 "connecting): one takes milliseconds, so a database that "
                                 "accepts and stalls past it stops the run (resumable). A "
                                 "database that cannot be reached is waited for instead, up "
                                 "to `dependency_wait_seconds`. On SQLite, how long a "
                                 "write waits for another process's lock (the busy "
                                 "timeout) before it fails `database is locked`."},
    )
    max_retries: int = field(
        default=2, metadata={"description": "Retries of a step whose error is retryable."}
    )
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={
            "description": (
                "Hosts executors may reach: 'host' (any port) or 'host:port'; this machine "
                "(localhost, 127.0.0.1) only as 'host:port'. All else is blocked; none by "
                "default."
            )
        },
    )
    max_response_bytes: int = field(
        default=_SANDBOX.max_response_bytes,
        metadata={"description": "Largest tool response read, in bytes."}
    )
    browser_max_steps: int = field(
        default=_SANDBOX.browser_max_steps,
        metadata={"description": "Nova Act observe-act cycles per browser step."}
    )
    browser_timeout_seconds: int = field(
        default=_SANDBOX.browser_timeout_seconds,
        metadata={"description": "Time limit of one Nova Act task (a browser_act or "
                                 "browser_extract step)."}
    )
    max_browser_sessions: int = field(
        default=_SANDBOX.max_browser_sessions,
        metadata={"description": "Browser steps of a run that run at once; the others wait "
                                 "for a slot (a `step_waiting` event says so). A named session "
                                 "holds a slot only while one of its steps runs."},
    )
    executor_url: str | None = field(
        default_factory=lambda: os.environ.get("DUET_EXECUTOR_URL") or None,
        metadata={"description": "Run steps on executor deployments (LangGraph servers "
                                 "serving nova-duet-executor) instead of in-process; several "
                                 "URLs separated by commas. Auth headers: the "
                                 "DUET_EXECUTOR_HEADERS environment variable (JSON)."},
    )
    mcp_config: str | None = field(
        default=None,
        metadata={"description": "Path of an mcpServers JSON file: its MCP servers' tools join "
                                 "the run, named <server>_<tool>. Only the path is saved with a "
                                 "run, never the file's env or headers."},
    )
    auth_config: str | None = field(
        default_factory=lambda: os.environ.get("DUET_AUTH_CONFIG") or None,
        metadata={"description": "The auth config (a YAML or JSON file's path, or JSON text; "
                                 "default $DUET_AUTH_CONFIG): the secrets plans may use by "
                                 "name as ${secret.NAME}, where each value is read (env, a "
                                 "0600 file, AWS Secrets Manager) and the hosts it may go "
                                 "to, the executor's login recipes, the HTTP auth of each "
                                 "API host and the browser sessions kept as profiles. It "
                                 "never holds a value. See docs/auth.md."},
    )
    executor_tools: list[str] = field(
        default_factory=lambda: ["*"],
        metadata={"description": "With executor_url: the tools whose steps run on the "
                                 "executor deployments, as names or shell patterns; the "
                                 "others run in this process. Every tool by default; "
                                 "['browser_*'] (the browser and Nova Act tools) keeps "
                                 "HTTP steps here."},
    )
    step_screenshots: bool = field(
        default=True,
        metadata={"description": "Save the page at the end of each browser step, for the run "
                                 "report (in the run's folder)."},
    )
    browser_cdp_url: str | None = field(
        default=None,
        metadata={"description": "Use this remote browser over CDP instead of a local Chromium."},
    )
    browser_cdp_headers: dict[str, str] = field(
        default_factory=lambda: json.loads(os.environ.get("DUET_BROWSER_CDP_HEADERS") or "{}"),
        metadata={
            "description": (
                "Headers for the remote browser's CDP connection (auth); default from "
                "$DUET_BROWSER_CDP_HEADERS (JSON). Never saved with a run."
            )
        },
    )

    def runs_remotely(self, tool: str) -> bool:
        """Whether a step of `tool` goes to the executor deployments (`executor_url`,
        `executor_tools`)."""
        return bool(self.executor_url) and any(
            fnmatchcase(tool, pattern) for pattern in self.executor_tools)

    def prices(self) -> TokenPrices:
        """The token prices of this run's cost estimates (`token_prices`, or Nova 2 Lite's).

        Raises `ValueError` saying what is wrong with a given table."""
        return _price_table("token_prices", self.token_prices or "")

    def nova_act_price(self) -> NovaActPrices:
        """Nova Act's price for this run's costs (`nova_act_prices`; by default none).

        Raises `ValueError` saying what is wrong with a given table."""
        return _price_table("nova_act_prices", self.nova_act_prices or "")

    @property
    def budgets(self) -> Budgets:
        """What this run may spend."""
        return self._group(Budgets)

    @property
    def timeouts(self) -> Timeouts:
        """The bounds of this run's waits."""
        return self._group(Timeouts)

    def _group(self, kind: type[Group]) -> Group:
        """A group of settings, made from the same-named fields of this context."""
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

    def sandbox_policy(self) -> SandboxPolicy:
        """The sandbox executors run under for this run."""
        return SandboxPolicy(
            allowed_hosts=tuple(self.allowed_hosts), max_response_bytes=self.max_response_bytes,
            browser_max_steps=self.browser_max_steps,
            browser_timeout_seconds=self.browser_timeout_seconds,
            max_browser_sessions=self.max_browser_sessions)

    def remote_browser(self) -> RemoteBrowser | None:
        """The remote browser the browser executors use instead of a local Chromium."""
        if not self.browser_cdp_url:
            return None
        from tools.step import RemoteBrowser  # the executors' package: loaded for runs only

        return RemoteBrowser(self.browser_cdp_url, tuple(self.browser_cdp_headers.items()))


@lru_cache(maxsize=8)
def _price_table(name: Literal["token_prices", "nova_act_prices"], setting: str) -> Any:
    """The price setting `name` read once per value: a JSON object, or the path of a file
    holding one; its default table when unset."""
    from graph.contracts import NOVA_2_LITE_PRICES, NOVA_ACT_PRICES, NovaActPrices, TokenPrices

    default, kind = ((NOVA_2_LITE_PRICES, TokenPrices) if name == "token_prices"
                     else (NOVA_ACT_PRICES, NovaActPrices))
    if not setting:
        return default
    text = setting.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{name}: cannot read {setting!r}: {exc}") from None
    try:
        return kind.model_validate_json(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not a price table: {exc}") from None


class SettingError(ConfigError, ValueError):
    """A `NAME=VALUE` setting names no `Context` field, or its value does not fit the type."""


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs (`duet run --set`) as `Context` fields, each value parsed by its
    field's type: numbers, `true`/`false`, a choice, JSON for lists and maps (a list of
    strings may also be comma-separated). Raises `SettingError` saying what is wrong."""
    from pydantic import TypeAdapter, ValidationError  # loaded only when settings are given

    types = typing.get_type_hints(Context)
    names = [f.name for f in dataclasses.fields(Context)]
    parsed: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise SettingError(f"--set takes NAME=VALUE, not {pair!r}")
        if name not in types:
            raise SettingError(f"--set {name}: no such setting; settings: {', '.join(names)}")
        adapter = TypeAdapter(types[name])
        try:
            parsed[name] = adapter.validate_python(_candidate(text, types[name]))
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise SettingError(f"--set {name}={text}: {problem} (the setting is "
                               f"{_type_name(types[name])})") from None
    return parsed


def _candidate(text: str, kind: Any) -> Any:
    """The value to validate: JSON for a list or a map, a comma list for a list of strings,
    `none` for an optional setting left unset, else the text itself."""
    origin = typing.get_origin(kind)
    if text.lower() in ("none", "null") and type(None) in typing.get_args(kind):
        return None
    if origin in (list, dict):
        try:
            return json.loads(text)
        except ValueError:
            return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _type_name(kind: Any) -> str:
    """A setting's type as a person reads it: `int`, `one of 'ask', 'auto', 'deny'`..."""
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(kind))
    return getattr(kind, "__name__", None) or str(kind).replace("typing.", "")
