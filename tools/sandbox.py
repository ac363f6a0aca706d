"""The sandbox every executor runs under: which hosts it may reach and how much it may read.

The act node installs the run's policy with `use_policy`; executors read it with
`current_policy()`. Outside a run the policy allows no host at all, so a tool called
by hand cannot reach the network by accident.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from tools.errors import BlockedError


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits for one run: where executors may go, how much they may read, how long a
    browser agent may work.

    `allowed_hosts` entries are `host` (any port) or `host:port`; a loopback host (this
    machine: `localhost`, 127.0.0.0/8, ::1) only as `host:port`, since every local service
    (a database's admin port, a LangGraph server's own API) listens there. Empty: nothing.
    `cdp_endpoint_url` (with `cdp_headers`) points the browser executors at a remote browser
    instead of a local one. `max_browser_sessions` is how many browser steps of the run
    may run at once (the others wait for a slot, and say so).
    """

    allowed_hosts: tuple[str, ...] = ()
    max_response_bytes: int = 256_000
    browser_max_steps: int = 30
    browser_timeout_seconds: int = 240
    cdp_endpoint_url: str | None = None
    cdp_headers: tuple[tuple[str, str], ...] = ()
    max_browser_sessions: int = 4
    mcp_timeout_seconds: float = 30.0  # an MCP server's start, and the close of its session
    dependency_wait_seconds: float = 30.0  # how long an unreachable MCP server is started again
    denied_hint: str = ""  # said when a URL is refused: what else limits the allowlist

    def allows(self, url: str) -> bool:
        """True when `url` is http(s) and its host (and port, if the entry names one) is allowed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = parts.hostname.lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for entry in self.allowed_hosts:
            entry_host, _, entry_port = entry.lower().rpartition(":")
            if not entry_host or not entry_port.isdigit():
                entry_host, entry_port = entry.lower(), ""
            if entry_host.strip("[]") != host or (not entry_port and is_loopback(host)):
                continue
            if not entry_port or int(entry_port) == port:
                return True
        return False

    def check(self, url: str) -> None:
        """Raise `BlockedError`, saying what to set, unless `url` is allowed."""
        if self.allows(url):
            return
        parts = urlsplit(url)
        host = parts.hostname or url
        wanted = f"{host}:{parts.port}" if parts.port else host
        hint = (" (this machine's hosts need their port)" if parts.hostname
                and is_loopback(parts.hostname) else "")
        if self.denied_hint:
            raise BlockedError(f"{url!r} is outside the allowlist {list(self.allowed_hosts)}: "
                               f"{self.denied_hint}")
        raise BlockedError(
            f"{url!r} is outside the allowlist {list(self.allowed_hosts)}; to allow it, add "
            f"{wanted!r} with `duet run --allow-host {wanted}` or to `allowed_hosts` in the "
            f"run context{hint}")


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine (`localhost`, 127.0.0.0/8, ::1, 0.0.0.0)."""
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


T = TypeVar("T")


@contextmanager
def _setting(variable: ContextVar[T], value: T) -> Iterator[T]:
    """`variable` set to `value` for the enclosed block (each step's setting)."""
    token = variable.set(value)
    try:
        yield value
    finally:
        variable.reset(token)


DENY_ALL = SandboxPolicy()
_policy: ContextVar[SandboxPolicy | None] = ContextVar("duet_sandbox_policy", default=None)


def current_policy() -> SandboxPolicy:
    """The policy of the run this code executes in (deny-all outside a run)."""
    return _policy.get() or DENY_ALL


_idempotency_key: ContextVar[str | None] = ContextVar("duet_idempotency_key", default=None)


def current_idempotency_key() -> str | None:
    """The idempotency key of the step being executed, when it changes things; a tool that
    takes one (`RegisteredTool.takes_idempotency_key`) sends it so a repeat is a no-op."""
    return _idempotency_key.get()


def use_idempotency_key(key: str | None) -> AbstractContextManager[str | None]:
    """Run the enclosed block with `key` as the step's idempotency key."""
    return _setting(_idempotency_key, key)


_scope: ContextVar[str | None] = ContextVar("duet_scope", default=None)


def use_scope(scope: str) -> AbstractContextManager[str | None]:
    """Run the enclosed block as part of run `scope` (an executor deployment runs each
    step for its caller's thread)."""
    return _setting(_scope, scope)


def run_scope() -> str:
    """The id of the run this code executes in (its LangGraph thread), or 'default'."""
    if (scope := _scope.get()) is not None:
        return scope
    try:
        from langgraph.config import get_config

        return str(get_config()["configurable"].get("thread_id", "default"))
    except RuntimeError:
        return "default"


def use_policy(policy: SandboxPolicy) -> AbstractContextManager[SandboxPolicy | None]:
    """Run the enclosed block under `policy`."""
    return _setting(_policy, policy)


@dataclass(frozen=True)
class StepFiles:
    """Where the step being executed keeps its files (in its run's folder): a browser
    executor saves a screenshot of the page at the end of the step, Nova Act its run logs."""

    run_folder: Path
    name: str  # the step's plan version and id, `v1-s2`

    @property
    def screenshot(self) -> Path:
        """The PNG of the page at the end of the step."""
        return self.run_folder / "steps" / f"{self.name}.png"

    def save_screenshot(self, image: bytes) -> None:
        """Write the page's PNG, making the run's folder (blocking: off the event loop)."""
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.screenshot.write_bytes(image)

    @property
    def nova_act_logs(self) -> Path:
        """The folder of Nova Act's own run logs (one per run, shared by its steps)."""
        return self.run_folder / "nova_act"


_step_files: ContextVar[StepFiles | None] = ContextVar("duet_step_files", default=None)


def current_step_files() -> StepFiles | None:
    """Where the step being executed keeps its files; None when it keeps none."""
    return _step_files.get()


def use_step_files(files: StepFiles | None) -> AbstractContextManager[StepFiles | None]:
    """Run the enclosed block with `files` as the step's files."""
    return _setting(_step_files, files)


@dataclass
class StepWaits:
    """What the step being executed waited for before it could run (a browser slot, say):
    `began` is called as a wait starts (`on_wait` tells the step's listeners at once),
    `ended` with its length, and whether it got what it waited for. `describe` sums it up
    for the step's result; `gave_up` is True after a wait that was stopped (the step's
    timeout) before the tool could run, until `take_gave_up` reads it. `session_continues`
    says a later step of the plan uses the step's browser session next (so the slot it
    frees is kept a moment for that step)."""

    on_wait: Callable[[str], None] | None = None
    session_continues: bool = False
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gave_up: bool = False

    def began(self, reason: str) -> None:
        """A wait for `reason` starts."""
        if reason not in self.reasons:
            self.reasons.append(reason)
        if self.on_wait is not None:
            self.on_wait(reason)

    def ended(self, seconds: float, got_it: bool) -> None:
        """The wait that began last is over after `seconds`; `got_it` False: stopped."""
        self.seconds += seconds
        self.gave_up = not got_it

    def take_gave_up(self) -> bool:
        """True once after a wait was stopped before the tool ran."""
        gave_up, self.gave_up = self.gave_up, False
        return gave_up

    def describe(self) -> str | None:
        """`waited 1.2 s for <reason>`, or None when the step did not wait."""
        if not self.reasons:
            return None
        return f"waited {self.seconds:.1f} s for {'; '.join(self.reasons)}"


_step_waits: ContextVar[StepWaits | None] = ContextVar("duet_step_waits", default=None)


def current_step_waits() -> StepWaits | None:
    """Where the step being executed records its waits; None outside a step."""
    return _step_waits.get()


def use_step_waits(waits: StepWaits | None) -> AbstractContextManager[StepWaits | None]:
    """Run the enclosed block with `waits` recording the step's waits."""
    return _setting(_step_waits, waits)
