"""What one step may use, passed to the tools that ask for it: `StepContext`.

The step runtime (in-process) or an executor deployment (from its `StepRequest`) makes one
per attempt of a step and hands it to the tool. A tool that needs it declares an argument
typed `InjectedStep` (LangChain's `InjectedToolArg`, as LangGraph's `ToolRuntime`): the
planner never sees that argument, and a tool that declares none stays a plain LangChain
tool. `current_idempotency_key()` stays for tools written before this existed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from langchain_core.tools import InjectedToolArg
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticOmit, core_schema

from tools.auth.run import NO_AUTH, Auth
from tools.people import HandOff, PersonAnswer
from tools.sandbox import DENY_ALL, SandboxPolicy


@dataclass(frozen=True)
class StepFiles:
    """Where a step keeps its files (in its run's folder): a browser executor saves a
    screenshot of the page at the end of the step (and of a login form it filled in), Nova
    Act its run logs."""

    run_folder: Path
    name: str  # the step's plan version and id, `v1-s2`

    @property
    def screenshot(self) -> Path:
        """The PNG of the page at the end of the step."""
        return self.run_folder / "steps" / f"{self.name}.png"

    @property
    def hand_off_screenshot(self) -> Path:
        """The PNG of the page a step hands to a person (`tools.people`)."""
        return self.run_folder / "steps" / f"{self.name}-person.png"

    def save_screenshot(self, image: bytes) -> None:
        """Write the page's PNG, making the run's folder (blocking: off the event loop)."""
        self.screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.screenshot.write_bytes(image)

    def save_hand_off_screenshot(self, image: bytes) -> None:
        """Write the PNG of the page handed to a person (blocking: off the event loop)."""
        self.hand_off_screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.hand_off_screenshot.write_bytes(image)

    @property
    def login_screenshot(self) -> Path:
        """The PNG of a login page the step met, its form filled in just before it was sent
        (every field that holds a secret masked)."""
        return self.run_folder / "steps" / f"{self.name}-login.png"

    def save_login_screenshot(self, image: bytes) -> None:
        """Write the login page's PNG (blocking: off the event loop)."""
        self.login_screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.login_screenshot.write_bytes(image)

    @property
    def nova_act_logs(self) -> Path:
        """The folder of Nova Act's own run logs (one per run, shared by its steps)."""
        return self.run_folder / "nova_act"


@dataclass
class StepWaits:
    """What a step waited for before it could run (a browser slot, a dependency that was
    down): `began` is called as a wait starts (`on_wait` tells the step's listeners at
    once), `ended` with its length and whether it got what it waited for. `describe` sums
    it up for the step's result; `gave_up` is True after a wait that was stopped (the
    step's timeout) before the tool could run, until `take_gave_up` reads it.
    `session_continues` says a later step of the plan uses the step's browser session next
    (so the slot it frees is kept a moment for that step)."""

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


class AgentTime:
    """The time a step's tool spent in a service billed by the hour of agent time (Nova
    Act's `act` and `act_get`), over every attempt of the step: `measure` times one call
    (in whatever thread makes it), `add` counts one measured elsewhere (an executor
    deployment's). `seconds` includes the calls still running, up to now: a call that
    outlives its step's time limit is counted up to the step's end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended = 0.0
        self._running: dict[int, float] = {}  # start times of the calls in progress
        self._calls = itertools.count()

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Count the enclosed call's wall time."""
        began = time.monotonic()
        with self._lock:
            call = next(self._calls)
            self._running[call] = began
        try:
            yield
        finally:
            with self._lock:
                self._ended += time.monotonic() - self._running.pop(call)

    def add(self, seconds: float) -> None:
        """Count `seconds` measured elsewhere."""
        with self._lock:
            self._ended += seconds

    @property
    def seconds(self) -> float:
        """The time counted so far, the calls still running included."""
        now = time.monotonic()
        with self._lock:
            return self._ended + sum(now - began for began in self._running.values())


@dataclass(frozen=True)
class RemoteBrowser:
    """A browser reached over CDP instead of a local Chromium (`browser_cdp_url`), with the
    headers of its connection (auth: never saved with a run)."""

    cdp_url: str
    headers: tuple[tuple[str, str], ...] = ()


def _write_nowhere(chunk: Any) -> None:
    """The stream writer of a step nobody listens to."""


@dataclass(frozen=True)
class StepContext:
    """What one attempt of one step may use.

    `policy`: the sandbox (the hosts it may reach, how much it may read). `scope`: the run
    it belongs to (its LangGraph thread: named browser sessions live per run).
    `idempotency_key`: set when the step changes things; a tool that takes one sends it
    with its effect, so a repeat is applied once. `files`: where it keeps a screenshot and
    logs (None: it keeps none). `waits`: where it records what it waited for.
    `browser`: a remote browser to use instead of a local Chromium. `auth`: the run's
    secrets by name, login recipes and HTTP auth (`tools.auth`). `stream_writer` and
    `store`: the run's custom stream and its LangGraph store, for users' own tools (a step
    sent to an executor deployment has neither). `agent_time`: where a tool billed by
    agent time (Nova Act) records it. `hand_off` and `person`: the hand-off this step met
    before and the person's answer to it (`tools.people`), when it runs again after one;
    `hand_off_files`: where a hand-off's screenshot goes (kept whatever `files` is: a
    person must see the page)."""

    policy: SandboxPolicy = DENY_ALL
    scope: str = "default"
    idempotency_key: str | None = None
    files: StepFiles | None = None
    waits: StepWaits = field(default_factory=StepWaits)
    browser: RemoteBrowser | None = None
    auth: Auth = NO_AUTH
    stream_writer: Callable[[Any], None] = _write_nowhere
    store: Any = None  # a `langgraph.store.base.BaseStore`, when the run has one
    agent_time: AgentTime = field(default_factory=AgentTime)
    hand_off: HandOff | None = None
    person: PersonAnswer | None = None
    hand_off_files: StepFiles | None = None

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # An object handed to the tool, not data: checked for its type, never copied.
        return core_schema.is_instance_schema(cls)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Never an argument a plan gives: left out of every schema the planner sees.
        raise PydanticOmit


# The argument type of a tool that asks for its step's context.
InjectedStep = Annotated[StepContext, InjectedToolArg]

_idempotency_key: ContextVar[str | None] = ContextVar("duet_idempotency_key", default=None)


def current_idempotency_key() -> str | None:
    """The idempotency key of the step being executed, when it changes things. A tool that
    takes its `InjectedStep` reads `step.idempotency_key` instead."""
    return _idempotency_key.get()


@contextmanager
def idempotency_key_set(key: str | None) -> Iterator[None]:
    """`current_idempotency_key()` is `key` in the enclosed block (one tool call)."""
    token = _idempotency_key.set(key)
    try:
        yield
    finally:
        _idempotency_key.reset(token)
