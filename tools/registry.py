"""The tool registry: the only tools a plan may name, with their argument schemas.

The planner's prompt lists exactly what is registered here, and every step is checked
against it before anything runs, so a hallucinated tool or a bad argument never executes.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

from jsonschema import Draft202012Validator
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.tracers.context import _tracing_v2_is_enabled
from langsmith.run_helpers import tracing_context
from pydantic import BaseModel, ValidationError

from tools.auth.references import secret_names
from tools.errors import ErrorKind, ToolError
from tools.step import StepContext, idempotency_key_set


class StepRefused(Exception):
    """A step names an unknown tool or gives arguments that do not fit its schema."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind


# `secret_args` of a tool any argument of which may hold a secret (an MCP tool's).
ALL_ARGS: Final = "*"

# The settings that can bound one call of a tool (`graph.context.Timeouts`, by name).
BoundBy = Literal["step_timeout_seconds", "http_timeout_seconds", "mcp_timeout_seconds",
                  "playwright_timeout_seconds"]


@dataclass(frozen=True)
class Dependency:
    """What a tool's calls wait on: `name` says it in errors and waits (a function of the
    call's arguments, or text), `bound_by` is the setting that bounds one call, and
    `in_process` says its session lives in this process (an MCP server's), so its steps
    never go to an executor deployment. `agent_time_bound_by` marks a tool billed by Nova
    Act's agent-hour: it records that time (`StepContext.agent_time`), and the setting
    named bounds one call's (a run's cost budget reserves it before the step starts)."""

    name: str | Callable[[dict[str, Any]], str]
    bound_by: BoundBy = "step_timeout_seconds"
    in_process: bool = False
    agent_time_bound_by: Literal["browser_timeout_seconds"] | None = None

    def named(self, args: dict[str, Any]) -> str:
        """What a call with `args` waits on."""
        return self.name(args) if callable(self.name) else self.name


@dataclass(frozen=True)
class RegisteredTool:
    """A LangChain tool plus what the graph must know about it.

    `side_effects` is a flag, or a function of the call's arguments (an HTTP GET reads,
    a POST writes). A tool changes things unless it says otherwise: such a step needs
    approval, is journaled, never starts while the plan streams, and is not retried after
    a failure that may have come after its effect.

    `idempotent` says a repeated call has no further effect (MCP's `idempotentHint`), so
    the step may be retried, or run again after a crash, without an idempotency key.
    `destructive` (MCP's `destructiveHint`) is shown in the approval request.
    `source` says where the tool comes from: `builtin`, `registered` or `mcp:<server>`.

    `unavailable_reason` returns why the tool cannot run here (missing credentials,
    say) or None; an unavailable tool is listed to the planner as such and refused.

    `takes_idempotency_key` says the tool sends `current_idempotency_key()` with its effect,
    so the target applies a repeated call once: after a crash such a step is run again with
    the same key; a step of any other tool that may have run is reported, not repeated.

    `output_schema` (a pydantic model) is what the tool promises to return; an output that
    does not match it becomes an `OutputSchemaMismatch` error instead of a result.

    `dependency` says what its calls wait on and which setting bounds one call (without
    one: the tool itself, under `step_timeout_seconds`). A tool whose arguments include an
    `InjectedStep` (`tools.step`) is handed its step's `StepContext` there.

    `secret_args` names the arguments a plan may write `${secret.NAME}` in (`ALL_ARGS`:
    every one, as an MCP tool's); a reference anywhere else is refused. A tool that takes
    its `InjectedStep` puts the values in itself (`step.auth`), checking each against where
    it sends it; for any other tool `ainvoke` puts them in, for the target `secret_target`,
    and runs that call untraced.
    """

    tool: BaseTool
    side_effects: bool | Callable[[dict[str, Any]], bool] = True
    unavailable_reason: Callable[[], str | None] | None = None
    takes_idempotency_key: bool = False
    output_schema: type[BaseModel] | None = None
    idempotent: bool = False
    destructive: bool = False
    source: str = "registered"
    dependency: Dependency | None = None
    secret_args: frozenset[str] | Literal["*"] = frozenset()

    @property
    def name(self) -> str:
        """The name plans use."""
        return self.tool.name

    def may_hold_secret(self, arg: str) -> bool:
        """Whether argument `arg` may hold a `${secret.NAME}` reference."""
        return self.secret_args == ALL_ARGS or arg in self.secret_args

    @property
    def secret_target(self) -> str:
        """Where a secret goes when the registry puts it in, as a secret's `hosts` name it:
        `mcp:<server>` for an MCP server's tool, `tool:<name>` for any other."""
        return self.source if self.source.startswith("mcp:") else f"tool:{self.name}"

    @property
    def bound_by(self) -> BoundBy:
        """The setting that bounds one call of the tool."""
        return self.dependency.bound_by if self.dependency else "step_timeout_seconds"

    @property
    def in_process(self) -> bool:
        """True when its steps must run in this process (never on an executor deployment)."""
        return self.dependency is not None and self.dependency.in_process

    def depends_on(self, args: dict[str, Any]) -> str:
        """What a call with `args` waits on, as errors and waits name it."""
        return self.dependency.named(args) if self.dependency else f"tool {self.name!r}"

    @functools.cached_property
    def step_arg(self) -> str | None:
        """The argument its `StepContext` is handed in (an `InjectedStep`), or None."""
        schema = self.tool.args_schema
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return None
        return next((name for name, spec in schema.model_fields.items()
                     if spec.annotation is StepContext), None)

    def changes_things(self, args: dict[str, Any]) -> bool:
        """True when a call with `args` has side effects (and so needs approval)."""
        return self.side_effects(args) if callable(self.side_effects) else self.side_effects

    @property
    def safe_to_repeat(self) -> bool:
        """True when running the tool again cannot repeat an effect: it sends the step's
        idempotency key, or it is idempotent."""
        return self.takes_idempotency_key or self.idempotent

    def check_output(self, output: Any) -> None:
        """Raise `ToolError` (OutputSchemaMismatch) when `output` breaks `output_schema`."""
        if self.output_schema is None:
            return
        try:
            self.output_schema.model_validate(output)
        except ValidationError as exc:
            problems = [f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}"
                        for e in exc.errors()]
            raise ToolError(f"{self.name} returned output that breaks its schema: {problems}",
                            type_name=ErrorKind.OUTPUT_SCHEMA_MISMATCH) from None

    async def ainvoke(self, args: dict[str, Any], step: StepContext) -> Any:
        """Call the tool with `args` for `step`: what `self.tool.ainvoke(args)` returns or
        raises, the step's context handed in when the tool asks for it. Users' tools that
        read `current_idempotency_key()` see the step's key.

        When nothing listens to LangChain callbacks (no tracing, no callback handler), a
        plain `StructuredTool` is called directly: its arguments validated by its schema as
        `BaseTool` does, then its coroutine awaited. `BaseTool.ainvoke` would also re-read
        the coroutine's type hints and the schema's annotations and set up a callback run
        on every call: a third of the graph's CPU per step in a fan-out of loopback GETs.
        When something listens, the tool takes LangChain's own path, so traces are the same.

        A tool without an `InjectedStep` whose arguments name secrets gets their values
        here, read for this call only, each checked against `secret_target`
        (`SecretNotAllowed`, `UnknownSecret`, `SecretUnavailable`); such a call is not
        traced, since LangChain traces a tool's inputs.
        """
        if self.step_arg is not None:
            return await self._call({**args, self.step_arg: step}, step)
        if not secret_names(args):
            return await self._call(args, step)
        with untraced():
            return await self._call(await self._filled_in(args, step), step)

    async def _call(self, payload: dict[str, Any], step: StepContext) -> Any:
        with idempotency_key_set(step.idempotency_key):
            direct = self._direct_call
            if direct is None or callbacks_listening():
                return await self.tool.ainvoke(payload)
            return await direct(payload)

    async def _filled_in(self, args: dict[str, Any], step: StepContext) -> dict[str, Any]:
        """`args` with the secrets' values put in; `StepRefused` for a reference in an
        argument that may hold none (the plan check refuses it first)."""
        for name, value in args.items():
            if secret_names(value) and not self.may_hold_secret(name):
                raise StepRefused(ErrorKind.SECRET_NOT_ALLOWED,
                                  f"argument {name!r} of {self.name!r} may not hold a secret")
        return {name: await step.auth.fill_in(value, self.secret_target)
                for name, value in args.items()}

    @functools.cached_property
    def _direct_call(self) -> Callable[[dict[str, Any]], Awaitable[Any]] | None:
        """The direct call of a tool `BaseTool.arun` would only validate and await, or None
        for any tool it does more for (injected arguments, a config or callbacks parameter,
        error handlers, artifacts, its own callbacks, a subclass)."""
        tool = self.tool
        if (type(tool) is not StructuredTool or tool.coroutine is None or tool.callbacks
                or tool.verbose or tool.handle_tool_error or tool.handle_validation_error
                or tool.response_format != "content"):
            return None
        parameters = inspect.signature(tool.coroutine).parameters
        if {"callbacks", "run_manager", "config"} & parameters.keys() or any(
                p.annotation in (RunnableConfig, "RunnableConfig")
                for p in parameters.values()):
            return None
        coroutine, schema = tool.coroutine, tool.args_schema
        if isinstance(schema, dict):  # a JSON Schema: `BaseTool` passes the arguments on
            return lambda args: coroutine(**args)
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            return None
        fields = schema.model_fields
        call_schema = tool.tool_call_schema
        assert isinstance(call_schema, type) and issubclass(call_schema, BaseModel)
        if not fields:  # `BaseTool` calls a tool without arguments with none
            return lambda args: coroutine()
        injected = {self.step_arg} if self.step_arg else set()
        if call_schema.model_fields.keys() | injected != fields.keys():
            return None  # some other argument is injected (InjectedToolArg)
        names = [*fields, *schema.model_computed_fields]
        defaulted = {name for name, field in fields.items()
                     if not field.is_required() and name not in ("args", "kwargs")}

        def direct(args: dict[str, Any]) -> Awaitable[Any]:
            # As `BaseTool._parse_input`: the validated values of the arguments given
            # (by name or alias) and of those with a default.
            valid = schema.model_validate(args)
            given = valid.model_fields_set
            return coroutine(**{name: getattr(valid, name) for name in names
                                if name in args or name in given or name in defaulted})
        return direct

    def why_unavailable(self) -> str | None:
        """None when the tool can run now, else the reason it cannot."""
        return self.unavailable_reason() if self.unavailable_reason else None

    @functools.cached_property
    def args_json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the tool's arguments as plans give them (no `InjectedStep`)."""
        schema = self.tool.args_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            return _model_json_schema(schema)
        return dict(schema) if isinstance(schema, dict) else {}

    def signature(self) -> str:
        """The tool as the planner sees it: `name(arg: type, opt?: type)`, every argument's
        name, type and whether it is required, the required ones first."""
        schema = self.args_json_schema
        required = set(schema.get("required", []))
        params = ", ".join(
            f"{name}{'' if name in required else '?'}: {_type_of(spec)}"
            for name, spec in sorted(schema.get("properties", {}).items(),
                                     key=lambda kv: kv[0] not in required))
        return f"{self.name}({params})"


class ToolRegistry:
    """Named tools available to plans."""

    def __init__(self, tools: Iterable[BaseTool | RegisteredTool] = (), *,
                 read_only: bool = False):
        """Register `tools` as `register` does: as tools that change things, unless
        `read_only` says they all only read."""
        self._tools: dict[str, RegisteredTool] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._scope_enders: list[Callable[[str], Awaitable[None]]] = []
        self._missing: dict[str, str] = {}
        for tool in tools:
            self.register(tool, read_only=read_only)

    def extended(self) -> ToolRegistry:
        """A new registry with this one's tools and release hooks, to which a run adds its
        own (MCP servers) without changing this one; its `aclose` releases both."""
        copy = ToolRegistry()
        copy._tools, copy._missing = dict(self._tools), dict(self._missing)
        copy._closers, copy._scope_enders = list(self._closers), list(self._scope_enders)
        return copy

    def mark_missing(self, source: str, reason: str) -> None:
        """Record a tool source that could not be loaded (an MCP server that did not start):
        the planner's listing says so, and so does the refusal of a tool nobody has."""
        self._missing[source] = reason

    def missing(self) -> dict[str, str]:
        """Tool sources that could not be loaded, with why."""
        return dict(self._missing)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Run `closer` on `aclose` (to stop browsers the tools started)."""
        self._closers.append(closer)

    async def aclose(self) -> None:
        """Release what the tools hold (browser sessions); the registry stays usable."""
        for closer in self._closers:
            await closer()

    def on_scope_end(self, ender: Callable[[str], Awaitable[None]]) -> None:
        """Run `ender(scope)` on `end_scope` (to close one run's named browser sessions)."""
        self._scope_enders.append(ender)

    async def end_scope(self, scope: str) -> None:
        """Release what the tools hold for run `scope` only."""
        for ender in self._scope_enders:
            await ender(scope)

    def register(
        self,
        tool: BaseTool | RegisteredTool,
        *,
        read_only: bool = False,
        side_effects: bool | Callable[[dict[str, Any]], bool] | None = None,
        unavailable_reason: Callable[[], str | None] | None = None,
        takes_idempotency_key: bool = False,
        output_schema: type[BaseModel] | None = None,
        idempotent: bool = False,
        destructive: bool = False,
        source: str = "registered",
        dependency: Dependency | None = None,
        secret_args: Collection[str] | Literal["*"] = (),
    ) -> RegisteredTool:
        """Add a tool; a second tool with the same name is an error.

        A tool registered without a declaration changes things (deny by default):
        `read_only=True` says it only reads, and `side_effects` (a flag, or a function of
        the call's arguments) says when it changes things. No argument may hold a secret
        unless `secret_args` names it (`ALL_ARGS`: every one).
        """
        if read_only and side_effects not in (None, False):
            raise ValueError(f"{tool.name!r}: read_only=True contradicts side_effects")
        changes = (not read_only) if side_effects is None else side_effects
        entry = (
            tool
            if isinstance(tool, RegisteredTool)
            else RegisteredTool(tool, changes, unavailable_reason, takes_idempotency_key,
                                output_schema, idempotent, destructive, source, dependency,
                                ALL_ARGS if secret_args == ALL_ARGS else frozenset(secret_args))
        )
        if entry.name in self._tools:
            raise ValueError(f"a tool named {entry.name!r} is already registered")
        self._tools[entry.name] = entry
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        """Registered tool names, in registration order."""
        return list(self._tools)

    def get(self, name: str) -> RegisteredTool:
        """The tool called `name`; raises `StepRefused` when there is none."""
        try:
            return self._tools[name]
        except KeyError:
            missing = "".join(f"; {source} is unavailable ({reason})"
                              for source, reason in self._missing.items())
            raise StepRefused(
                ErrorKind.UNKNOWN_TOOL, f"no tool named {name!r}; registered tools: {self.names()}"
                f"{missing}") from None

    def check(
        self, tool_name: str, args: dict[str, Any], deferred: frozenset[str] = frozenset()
    ) -> RegisteredTool:
        """Return the tool if `args` fit its schema and it can run; raise `StepRefused` if not.

        Arguments named in `deferred` are filled in later (from another step's output), so
        only their presence is known now; they are checked again when the step runs.
        """
        entry = self.get(tool_name)
        reason = entry.why_unavailable()
        if reason:
            raise StepRefused(ErrorKind.TOOL_UNAVAILABLE,
                              f"tool {tool_name!r} is unavailable: {reason}")
        schema = entry.tool.args_schema
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            # Unknown argument names are refused even where the schema would ignore them:
            # a hallucinated argument means the planner misread the tool. The step's
            # context is the executor's to hand in, never a plan's.
            injected = {entry.step_arg} if entry.step_arg else set()
            known = {alias for name, spec in schema.model_fields.items()
                     for alias in (name, spec.alias) if alias and name not in injected}
            problems = [f"{name}: not an argument of this tool"
                        for name in args if name not in known]
            try:
                schema.model_validate(args)
            except ValidationError as exc:
                problems += [
                    f"{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}"
                    for err in exc.errors()
                    if not (err["loc"] and err["loc"][0] in deferred | injected)
                ]
            if problems:
                raise StepRefused(ErrorKind.INVALID_ARGUMENTS,
                                  f"bad arguments for {tool_name!r}: {problems}") from None
        elif isinstance(schema, dict) and (problems := _json_schema_problems(schema, args,
                                                                              deferred)):
            # A JSON Schema (an MCP tool's inputSchema) is checked as strictly.
            raise StepRefused(ErrorKind.INVALID_ARGUMENTS,
                              f"bad arguments for {tool_name!r}: {problems}")
        return entry

    def catalog(self) -> list[dict[str, Any]]:
        """Every tool a plan may use, as `duet tools --json` prints it: `name`,
        `changes_things` (true unless the tool only reads; for a tool whose side effects
        depend on the call's arguments, true, with `changes_things_when` saying when),
        `takes_idempotency_key`, `signature` (as the planner sees it), `source`,
        `idempotent`, `destructive`, `unavailable` (why it cannot run, or null) and
        `secret_args` (the arguments that may hold a secret, or "*" for every one)."""
        return [{"name": entry.name, "changes_things": bool(entry.side_effects),
                 "changes_things_when": _first_line(entry.side_effects.__doc__)
                 if callable(entry.side_effects) else None,
                 "takes_idempotency_key": entry.takes_idempotency_key,
                 "signature": entry.signature(), "source": entry.source,
                 "idempotent": entry.idempotent, "destructive": entry.destructive,
                 "unavailable": entry.why_unavailable(),
                 "secret_args": entry.secret_args if entry.secret_args == ALL_ARGS
                 else sorted(entry.secret_args)} for entry in self]

    def describe(self) -> str:
        """The tool listing the planner sees, one compact signature a tool: every argument's
        name, type and whether it is required (`name?` is optional), what changes things,
        what is unavailable, then the description and the arguments' own notes."""
        blocks = []
        for entry in self:
            header = f"### {entry.signature()}"
            if entry.side_effects:
                header += " (may change things)"
            if reason := entry.why_unavailable():
                header += f" (UNAVAILABLE: {reason})"
            properties = entry.args_json_schema.get("properties", {})
            notes = [f"{name}: {spec['description']}" for name, spec in properties.items()
                     if spec.get("description")]
            blocks.append("\n".join([header, entry.tool.description.strip(), *notes]))
        blocks += [f"### ({source} is UNAVAILABLE: {reason}; none of its tools can be used)"
                   for source, reason in self._missing.items()]
        return "\n".join(blocks)


@functools.cache
def _model_json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON Schema, made once a process: every run's registry builds
    its tools anew, and making the schemas took most of a run's fixed cost."""
    return schema.model_json_schema()


@contextmanager
def untraced() -> Iterator[None]:
    """What runs in the block reaches no LangChain callback and no LangSmith trace (a call
    whose inputs hold a secret's value)."""
    config = var_child_runnable_config.get()
    token = var_child_runnable_config.set({**config, "callbacks": None} if config else None)
    try:
        with tracing_context(enabled=False):
            yield
    finally:
        var_child_runnable_config.reset(token)


def callbacks_listening() -> bool:
    """True when a LangChain run would reach someone: LangSmith tracing is on, or the
    caller listens through callbacks (`astream_events`, the `messages` stream mode)."""
    config = var_child_runnable_config.get() or {}
    callbacks = config.get("callbacks")
    handlers = getattr(callbacks, "handlers", callbacks)
    return bool(handlers) or bool(_tracing_v2_is_enabled())


def _first_line(text: str | None) -> str:
    """The first line of a docstring, or "depends on the call's arguments"."""
    return (text or "").strip().splitlines()[0] if (text or "").strip() \
        else "depends on the call's arguments"


def _json_schema_problems(schema: dict[str, Any], args: dict[str, Any],
                          deferred: frozenset[str]) -> list[str]:
    """What is wrong with `args` for a JSON Schema: unknown names (when it lists its
    properties) and validation errors, except those of arguments filled in later."""
    known = schema.get("properties")
    problems = [f"{name}: not an argument of this tool"
                for name in args if known is not None and name not in known]
    problems += [f"{'.'.join(map(str, error.path)) or '(root)'}: {error.message}"
                 for error in Draft202012Validator(schema).iter_errors(args)
                 if not (error.path and error.path[0] in deferred)]
    return problems


def _type_of(schema: dict[str, Any]) -> str:
    """A JSON Schema type as a short signature (`string`, `"GET"|"POST"`, `list[int]`...)."""
    if "enum" in schema:
        return "|".join(json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema:
        kinds = [_type_of(option) for option in schema["anyOf"] if option.get("type") != "null"]
        return "|".join(kinds) or "null"
    kind = schema.get("type", "any")
    if kind == "array":
        items = schema.get("items") or {}
        return f"list[{_type_of(items)}]" if items else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"{{str: {_type_of(schema['additionalProperties'])}}}"
    return {"integer": "int", "number": "float", "boolean": "bool", "string": "str",
            "object": "object"}.get(kind, kind)
