"""MCP servers as tool sources: the standard `mcpServers` JSON, loaded with
`langchain-mcp-adapters`, each server's tools registered under `<server>_<tool>`.

The file is the one MCP clients share:

    {"mcpServers": {
        "crm":   {"command": "python", "args": ["crm_server.py"], "env": {"CRM_TOKEN": "..."}},
        "files": {"url": "https://files.example.com/mcp", "headers": {"Authorization": "..."}}}}

A server with `command` is a local process over stdio; one with `url` speaks streamable
HTTP (`"type"`/`"transport"` may say so: `stdio`, `http`, `streamable-http`). `${VAR}` in
`env` and `headers` values is read from this process's environment. A stdio server gets
only the variables of its `env` plus a few safe ones (`PATH`, `HOME`...: the `mcp` SDK's
default); its stderr goes to the run's folder (`mcp-<server>.log`).

A tool's MCP annotations decide its class (deny by default): `readOnlyHint: true` reads,
anything else changes things (approval, journal, no early start, no retry after an
ambiguous failure); `idempotentHint: true` lets it be retried and run again after a crash;
`destructiveHint: true` is shown in the approval request.

Each server's session opens in a task of its own (so a server dying cannot cancel the
run), within `mcp_timeout_seconds`, every server at once, and stays open
until the registry closes (`ToolRegistry.aclose`, at the end of the run). A server that
cannot be reached at its start (over HTTP refused or reset; over stdio its process exits
before it answers) is started again with backoff (`tools.backoff`, the pace of every outage
wait) for up to `dependency_wait_seconds`, as a step waits for a dependency
that is down. A server that does not start (past that wait; at once when the allowlist
refuses it, its executable does not exist, it answers with an error, or it gives no answer
within `mcp_timeout_seconds`) gives `MCPServerUnavailable` naming it, its reason saying
whether it waited; the run goes on with the tools that remain. A session that ends
mid-run (the server died, or a call to it stalled past the step's limit) is reopened by the
next call of one of its tools (a stdio server is started again); while it cannot be
reopened its calls fail `unreachable`, which the step waits out (`dependency_wait_seconds`,
in `graph.runtime.execution`) before it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import McpError
from mcp.types import CONNECTION_CLOSED

from tools.backoff import OutageWait
from tools.errors import BlockedError, ConfigError, ErrorKind, ToolError, ToolUnavailableError
from tools.lifetime import tethered
from tools.registry import ALL_ARGS, Dependency, ToolRegistry
from tools.sandbox import SandboxPolicy

log = logging.getLogger("duet")

START_TIMEOUT_SECONDS = 30.0
ENDED_CLOSE_SECONDS = 1.0  # to close the session of an HTTP server that died or stalled
PROBE_SECONDS = 2.0  # how often a call in flight checks that its HTTP server still answers
_HTTP_TRANSPORTS = {"http", "streamable-http", "streamable_http"}
_VARIABLE = re.compile(r"\$\{([^}]+)\}")  # `${VAR}`, as langchain-mcp-adapters reads env


def _expand(value: Any) -> str:
    """`value` with each `${VAR}` read from this process's environment."""
    return _VARIABLE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), str(value))


class MCPConfigError(ConfigError, ValueError):
    """The MCP config file cannot be read or describes a server this client cannot use."""


class MCPServerUnavailable(ToolUnavailableError):
    """An MCP server did not start, was refused by the allowlist, or died; names it."""

    kind = ErrorKind.MCP_SERVER_UNAVAILABLE

    def __init__(self, server: str, reason: str, *, unreachable: bool = False,
                 not_sent: bool = False):
        super().__init__(f"MCP server {server!r} is unavailable: {reason}",
                         unreachable=unreachable, not_sent=not_sent)
        self.server, self.reason = server, reason


@dataclass(frozen=True)
class ServerConfig:
    """One server of the config, as `langchain-mcp-adapters` connects to it."""

    name: str
    connection: dict[str, Any]

    @property
    def url(self) -> str | None:
        """The URL of an HTTP server; None for a stdio one."""
        return self.connection.get("url")

    def secrets(self) -> list[str]:
        """The values of its `env` and `headers` (after `${VAR}`): kept out of every record."""
        values = {**(self.connection.get("env") or {}), **(self.connection.get("headers") or {})}
        return [_expand(value) for value in values.values()]


def read_config(path: str | Path) -> list[ServerConfig]:
    """The servers of an `mcpServers` JSON file; raises `MCPConfigError` saying what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        servers = document["mcpServers"]
        if not isinstance(servers, dict):
            raise TypeError("mcpServers is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MCPConfigError(f"cannot read the MCP config {str(path)!r}: {exc}") from None
    return [_server(name, spec) for name, spec in servers.items()]


def _server(name: str, spec: Any) -> ServerConfig:
    if not isinstance(spec, dict):
        raise MCPConfigError(f"MCP server {name!r}: its entry is not an object")
    kind = spec.get("transport") or spec.get("type") or ("stdio" if "command" in spec else "http")
    if kind == "stdio":
        if not spec.get("command"):
            raise MCPConfigError(f"MCP server {name!r}: a stdio server needs a command")
        connection = {"transport": "stdio", "command": spec["command"],
                      "args": list(spec.get("args", [])), "env": spec.get("env"),
                      "cwd": spec.get("cwd")}
    elif kind in _HTTP_TRANSPORTS:
        if not spec.get("url"):
            raise MCPConfigError(f"MCP server {name!r}: an HTTP server needs a url")
        headers = spec.get("headers")
        connection = {"transport": "streamable_http", "url": spec["url"],
                      "headers": {k: _expand(v) for k, v in headers.items()} if headers else None}
    else:
        raise MCPConfigError(f"MCP server {name!r}: transport {kind!r} is not supported "
                             "(stdio and streamable HTTP are)")
    return ServerConfig(name, {k: v for k, v in connection.items() if v is not None})


def _innermost(exc: BaseException) -> BaseException:
    """The exception inside anyio's exception groups (the first of each)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _reason(exc: BaseException) -> str:
    """A short reason from an exception, looking inside anyio's exception groups."""
    exc = _innermost(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """True when a failed start says the server cannot be reached now: its connection was
    refused or reset (HTTP), or its process ended before it answered (stdio). Not for a
    missing executable or a server that answered with an error."""
    exc = _innermost(exc)
    if isinstance(exc, McpError):
        return exc.error.code == CONNECTION_CLOSED  # the SDK's word for a process that ended
    return isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError, ConnectionError,
                            anyio.ClosedResourceError, anyio.BrokenResourceError,
                            anyio.EndOfStream))


def _executable(command: str, env: dict[str, str] | None, cwd: str | None) -> str:
    """`command` as the server's process would find it (its PATH, its cwd); a missing one
    raises `FileNotFoundError` here, as spawning it directly would, rather than in the
    lifetime wrapper after the spawn."""
    found: str | None
    if os.sep in command:
        found = os.path.join(cwd or os.getcwd(), command)
        found = found if os.access(found, os.X_OK) else None
    else:
        found = shutil.which(command, path=(env or {}).get("PATH", os.environ.get("PATH")))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    return found


@dataclass
class _Session:
    """One server's session, held open by a task of its own until `close`; reopened by the
    next call after it died."""

    config: ServerConfig
    log: Path | None = None  # where a stdio server's stderr goes (None: this process's)
    timeout: float = START_TIMEOUT_SECONDS  # to open it, and to close it
    tools: list[BaseTool] = field(default_factory=list)
    failure: str | None = None  # why the open session ended
    gone: str | None = None  # why the last reopen failed: its tools are unavailable
    _client: MultiServerMCPClient | None = None
    _session: ClientSession | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _probes: set[asyncio.Task[None]] = field(default_factory=set)
    _reopening: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self, client: MultiServerMCPClient) -> None:
        """Open the session and list its tools, within `timeout`; raises
        `MCPServerUnavailable` if it fails."""
        self._client = client
        self._closing = asyncio.Event()
        self.failure = None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Read whatever it ends with, so a failure after the wait is never "not retrieved".
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._task = asyncio.create_task(self._hold(client, ready),
                                         name=f"mcp session {self.config.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.timeout)
        except TimeoutError:
            await self.close(grace=0)  # it never opened: nothing to end politely
            raise MCPServerUnavailable(self.config.name, f"no answer within {self.timeout:g}s "
                                       "(mcp_timeout_seconds)") from None
        except Exception as exc:  # noqa: BLE001 - any failure to start is the server's
            await self.close(grace=0)
            where = f" (its stderr: {self.log})" if self.log and self.config.url is None else ""
            raise MCPServerUnavailable(self.config.name, _reason(exc) + where,
                                       unreachable=_unreachable(exc)) from None

    async def reopen(self) -> None:
        """Open a new session if this one ended (the server died or stalled), as `start`
        does; one caller reopens, the others wait for it. Raises `MCPServerUnavailable`,
        unreachable and nothing sent, when the server does not come up."""
        async with self._reopening:
            if not self._ended() or self._client is None:
                return
            log.info("MCP server %r: reopening its session (%s)", self.config.name,
                     self.failure)
            await self.close()
            try:
                await self.start(self._client)
            except MCPServerUnavailable as exc:
                self.gone = exc.reason
                raise MCPServerUnavailable(self.config.name, exc.reason, unreachable=True,
                                           not_sent=True) from None
            self.gone = None

    @asynccontextmanager
    async def _connect(self, client: MultiServerMCPClient) -> AsyncIterator[ClientSession]:
        """An initialized session. A stdio server is started here rather than by the client,
        to give it a real file for its stderr (the client's default is `sys.stderr` as it
        was at import, which in a notebook has no file descriptor)."""
        spec = self.config.connection
        if spec["transport"] != "stdio":
            async with client.session(self.config.name) as session:
                yield session
            return
        env = {k: _expand(v) for k, v in spec["env"].items()} if "env" in spec else None
        # Through the lifetime wrapper: the server dies with this process even when it is
        # SIGKILLed or the server ignores the end of its stdin (tools.lifetime).
        found = await asyncio.to_thread(_executable, spec["command"], env, spec.get("cwd"))
        command, *args = tethered([found, *spec["args"]])
        params = StdioServerParameters(command=command, args=args, env=env, cwd=spec.get("cwd"))
        log: TextIO = (self.log.open("a", encoding="utf-8") if self.log
                       else sys.__stderr__ or sys.stderr)
        try:
            async with (stdio_client(params, errlog=log) as (read, write),
                        ClientSession(read, write) as session):
                await session.initialize()
                yield session
        finally:
            if self.log:
                log.close()

    async def _hold(self, client: MultiServerMCPClient, ready: asyncio.Future[None]) -> None:
        try:
            async with self._connect(client) as session:
                self._session = session
                self.tools = await load_mcp_tools(
                    session, server_name=self.config.name, tool_name_prefix=True,
                    handle_tool_errors=False)
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # noqa: BLE001 - the server's end is recorded, not raised
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else
                                    RuntimeError(_reason(exc)))
            elif not self._closing.is_set():
                self.failure = self.failure or _reason(exc)
                log.warning("MCP server %r stopped: %s", self.config.name, self.failure)

    async def close(self, grace: float | None = None) -> None:
        """End the session (and a stdio server's process); waits for it, within `grace`
        (default `timeout`): a session that does not end by then (a stalled server, its
        reader stuck on a read) is cancelled."""
        self._closing.set()
        if self._task is None:
            return
        if grace is None and self.config.url is not None and self._ended():
            # Its server died or stalled: the polite end over HTTP (a DELETE) would wait on
            # it for the whole grace; a short one, not none (cancelled at once, before its
            # end began, the session was seen to hang the run on the SDK's tasks). A stdio
            # session still ends its process (the SDK stops it within seconds).
            grace = ENDED_CLOSE_SECONDS
        if grace != 0:
            await asyncio.wait({self._task}, timeout=self.timeout if grace is None else grace)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def _ended(self) -> bool:
        """True when the open session ended (the server died, or a call to it stalled)."""
        if self.failure is None and self._task is not None and self._task.done():
            self.failure = "its session ended"
        return self.failure is not None

    def why_unavailable(self) -> str | None:
        """None while the server may answer (a session that ended is reopened by the next
        call), else why its tools cannot run: its last reopen failed."""
        return f"MCP server {self.config.name!r} is unavailable: {self.gone}" \
            if self.gone else None

    async def _watched(self, call: Awaitable[Any]) -> Any:
        """`call`'s result, unless the session ends first (`MCPServerUnavailable`). While it
        runs, an HTTP server is pinged every `PROBE_SECONDS`: the SDK leaves a request to an
        HTTP server that died waiting forever, but a ping to it fails and ends the session.
        A call stopped from outside (the step's time limit: the server stalled) marks the
        session ended, so the next call opens a new one."""
        task = asyncio.ensure_future(call)
        assert self._task is not None
        try:
            while True:
                done, _ = await asyncio.wait({task, self._task}, timeout=PROBE_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if task in done:
                    return task.result()
                if self._task in done:
                    self._ended()
                    raise MCPServerUnavailable(self.config.name, str(self.failure),
                                               unreachable=True)
                if self.config.url is not None and self._session is not None:
                    probe = asyncio.create_task(self._ping(self._session))
                    self._probes.add(probe)
                    probe.add_done_callback(self._probes.discard)
        except asyncio.CancelledError:
            self.failure = self.failure or "a call to it got no answer in time"
            raise
        finally:
            task.cancel()

    @staticmethod
    async def _ping(session: ClientSession) -> None:
        with contextlib.suppress(Exception):  # a dead server shows as the session ending
            await asyncio.wait_for(session.send_ping(), PROBE_SECONDS)

    def step_tool(self, inner: BaseTool) -> BaseTool:
        """`inner` as a step runs it: its output as plain JSON (the structured content when
        the server gives one, else its text), its failures as typed `ToolError`s; a session
        that ended is reopened first (the tool is then the new session's of that name)."""

        async def call(**args: Any) -> Any:
            if self._ended():
                await self.reopen()
            current = next((t for t in self.tools if t.name == inner.name), inner)
            try:
                message = await self._watched(current.ainvoke(
                    {"type": "tool_call", "id": "step", "name": inner.name, "args": args}))
            except ToolException as exc:  # the tool ran and said it failed (isError)
                raise ToolError(f"{inner.name}: {exc}",
                                type_name=ErrorKind.MCP_TOOL_ERROR) from None
            except (McpError, anyio.ClosedResourceError, anyio.BrokenResourceError,
                    anyio.EndOfStream, OSError) as exc:
                if isinstance(exc, McpError) and exc.error.code != CONNECTION_CLOSED:
                    raise ToolError(f"{inner.name}: {exc}",
                                    type_name=ErrorKind.MCP_ERROR) from None
                self.failure = self.failure or f"the connection closed ({_reason(exc)})"
                raise MCPServerUnavailable(self.config.name, self.failure,
                                           unreachable=True) from None
            return _output(message)

        # MCP tools always carry their inputSchema (a JSON Schema).
        assert inner.args_schema is not None
        return StructuredTool(name=inner.name, description=inner.description,
                              args_schema=inner.args_schema, coroutine=call,
                              metadata=inner.metadata)


def _output(message: Any) -> Any:
    """A tool message's result as JSON: structured content, else its text (parsed when it
    is JSON), else its content blocks."""
    artifact = getattr(message, "artifact", None) or {}
    if (structured := artifact.get("structured_content")) is not None:
        return structured
    content = message.content if hasattr(message, "content") else message
    if isinstance(content, str):
        return content
    texts = [block["text"] for block in content if isinstance(block, dict)
             and block.get("type") == "text"]
    if len(texts) == len(content) == 1:
        try:
            return json.loads(texts[0])
        except ValueError:
            return texts[0]
    return texts if len(texts) == len(content) else content


def hints_of(tool: BaseTool) -> dict[str, Any]:
    """The MCP annotations of a tool loaded by `langchain-mcp-adapters` (its metadata)."""
    return {k: v for k, v in (tool.metadata or {}).items() if k.endswith("Hint")}


@dataclass(frozen=True)
class ServerStatus:
    """How a server of the config came up: its tools, or why it is unavailable; `waited`:
    the seconds its start waited for it to be reachable."""

    name: str
    tools: list[str]
    error: str | None = None
    waited: float = 0.0


async def add_mcp_servers(registry: ToolRegistry, config_path: str | Path,
                          policy: SandboxPolicy, *, mcp_timeout_seconds: float,
                          dependency_wait_seconds: float,
                          remember_secret: Callable[[list[str]], None] = lambda values: None,
                          log_folder: Path | None = None,
                          on_wait: Callable[[str, str], None] = lambda server, reason: None,
                          ) -> list[ServerStatus]:
    """Open every server of the config, all at once, and register its tools in `registry`,
    named `<server>_<tool>`, their class from their annotations; `registry.aclose()` closes
    the sessions. An HTTP server outside `policy`'s allowlist is refused. Each start is
    bounded by `mcp_timeout_seconds`; a server that cannot be reached (refused, reset, its
    process ended before it answered) is started again with backoff for up to
    `dependency_wait_seconds`, and `on_wait(server, reason)` is told when that wait begins.
    A server that does not start (past that wait, or for any other reason) is recorded as
    missing (`registry.mark_missing`) and left out. Returns each server's status.
    `remember_secret` receives each server's `env` and `headers` values first (for the
    redaction of records). A stdio server's stderr goes to `log_folder/mcp-<server>.log`,
    or without one to this process's stderr. Raises `MCPConfigError` for a bad file.
    """
    configs = read_config(config_path)
    for config in configs:
        remember_secret(config.secrets())
    client = MultiServerMCPClient({c.name: c.connection for c in configs})  # type: ignore[misc]
    if log_folder is not None:
        log_folder.mkdir(parents=True, exist_ok=True)
    sessions = [_Session(config, log_folder / f"mcp-{config.name}.log" if log_folder else None,
                         timeout=mcp_timeout_seconds)
                for config in configs]

    async def close_all() -> None:
        await asyncio.gather(*(session.close() for session in sessions))

    # Before the starts: a run stopped while they wait closes the sessions already open.
    registry.on_close(close_all)
    outcomes = await asyncio.gather(*(_start(s, client, policy, dependency_wait_seconds, on_wait)
                                      for s in sessions))
    statuses = []
    for session, (error, waited) in zip(sessions, outcomes, strict=True):
        name = session.config.name
        if error is not None:
            registry.mark_missing(f"MCP server {name!r}", error)
            statuses.append(ServerStatus(name, [], error, waited))
            continue
        for tool in session.tools:
            hints = hints_of(tool)
            try:
                registry.register(
                    session.step_tool(tool), read_only=hints.get("readOnlyHint") is True,
                    idempotent=hints.get("idempotentHint") is True,
                    destructive=hints.get("destructiveHint") is True,
                    unavailable_reason=session.why_unavailable, source=f"mcp:{name}",
                    secret_args=ALL_ARGS,  # for a secret whose hosts name `mcp:<server>`
                    # Its session lives in this process: its steps never go remote.
                    dependency=Dependency(f"MCP server {name!r}", "mcp_timeout_seconds",
                                          in_process=True))
            except ValueError as exc:  # two tools of one name: rename a server
                await close_all()
                raise MCPConfigError(f"MCP server {name!r}: {exc}") from None
        statuses.append(ServerStatus(name, [tool.name for tool in session.tools],
                                     waited=waited))
    return statuses


async def _start(session: _Session, client: MultiServerMCPClient, policy: SandboxPolicy,
                 limit: float, on_wait: Callable[[str, str], None]) -> tuple[str | None, float]:
    """Start one server, again while it cannot be reached, within `limit` seconds
    (`dependency_wait_seconds`: the same wait and pace as a step's). Returns None
    when it is up, else why not (the allowlist's own message for a URL outside it), and
    the seconds it waited. Not waited for: a refusal of the allowlist, a missing
    executable, a server that answered with an error, or one that accepted and gave no
    answer within `mcp_timeout_seconds` (that bound is spent already)."""
    name = session.config.name
    wait = OutageWait(limit)
    try:
        if session.config.url is not None:
            try:
                policy.check(session.config.url)
            except BlockedError as exc:
                raise MCPServerUnavailable(name, str(exc)) from None
        while True:
            try:
                await session.start(client)
                return None, wait.waited
            except MCPServerUnavailable as exc:
                if not exc.unreachable or limit <= 0:
                    raise
                if wait.since is None:
                    log.info("MCP server %r cannot be reached (%s); waiting up to %gs "
                             "(dependency_wait_seconds)", name, exc.reason, limit)
                    on_wait(name, exc.reason)
                if not await wait.pause():
                    raise MCPServerUnavailable(
                        name, f"{exc.reason}; waited {wait.waited:.1f}s for it "
                        f"(dependency_wait_seconds={limit:g})") from None
    except MCPServerUnavailable as exc:
        # Said once: the run reports it (a `tool_source_unavailable` event), so does
        # `duet tools`; a warning here would say it twice on stderr.
        log.info("%s", exc)
        return exc.reason, wait.waited
