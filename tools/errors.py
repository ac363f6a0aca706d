"""Typed errors that executors raise, and the one enumeration of step error kinds.

A step's error (`graph.contracts.StepError`) names its kind by `ErrorKind`'s value, or by
the class of an error nova-duet does not know (an SDK's, a user's tool's): code that acts
on an error compares its `kind`, never its text.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Every kind of step error nova-duet names itself (the value is what results show)."""

    # Refused before it ran.
    UNKNOWN_TOOL = "UnknownTool"
    INVALID_ARGUMENTS = "InvalidArguments"
    INVALID_REFERENCE = "InvalidReference"
    TOOL_UNAVAILABLE = "ToolUnavailable"
    NOT_APPROVED = "NotApproved"
    BLOCKED = "BlockedError"  # the sandbox refused a host
    # Secrets by name (`tools.auth`).
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # not on its hosts, or not in that argument
    UNKNOWN_SECRET = "UnknownSecret"
    SECRET_UNAVAILABLE = "SecretUnavailable"
    SECRET_STEERED = "SecretSteered"  # tool output would choose a secret or where it goes
    # Ended without a result.
    REFERENCE_ERROR = "ReferenceError"  # a `${step.output...}` reference did not resolve
    STEP_TIMEOUT = "StepTimeout"
    DEPENDENCY_TIMEOUT = "DependencyTimeout"
    EFFECT_UNCERTAIN = "EffectUncertain"
    CANCELLED = "Cancelled"
    OUTPUT_SCHEMA_MISMATCH = "OutputSchemaMismatch"
    TOOL_ERROR = "ToolError"  # a tool failed (an error class nova-duet does not name)
    UNKNOWN_ERROR = "UnknownError"
    # Dependencies.
    TARGET_UNREACHABLE = "TargetUnreachable"
    BROWSER_CRASHED = "BrowserCrashed"
    BROWSER_STALLED = "BrowserStalled"
    BROWSER_UNREACHABLE = "BrowserUnreachable"
    BROWSER_TIMEOUT = "BrowserTimeout"
    ELEMENT_NOT_FOUND = "ElementNotFound"
    BAD_TARGET = "BadTarget"
    SESSION_KIND_MISMATCH = "SessionKindMismatch"
    SCHEMA_MISMATCH = "SchemaMismatch"  # Nova Act's extracted data
    # Logins.
    LOGIN_FAILED = "LoginFailed"  # a login recipe's check did not hold: never retried
    PERSON_NEEDED = "PersonNeeded"  # only a person can go on (`tools.people`)
    MCP_TOOL_ERROR = "MCPToolError"
    MCP_ERROR = "MCPError"
    MCP_SERVER_UNAVAILABLE = "MCPServerUnavailable"
    EXECUTOR_UNAVAILABLE = "ExecutorUnavailable"
    EXECUTOR_TIMEOUT = "ExecutorTimeout"
    EXECUTOR_ERROR = "ExecutorError"

    @classmethod
    def of(cls, name: str) -> ErrorKind:
        """The kind an error named `name` is: its own, or `TOOL_ERROR` for a name nova-duet
        does not know (an SDK's error class, say)."""
        try:
            return cls(name)
        except ValueError:
            return cls.TOOL_ERROR

    @property
    def of_executor(self) -> bool:
        """An executor deployment failed (not the step's own dependency)."""
        return self in (ErrorKind.EXECUTOR_UNAVAILABLE, ErrorKind.EXECUTOR_TIMEOUT,
                        ErrorKind.EXECUTOR_ERROR)


class ConfigError(Exception):
    """Something is set up wrongly (a setting, a file, a thread named): found before any
    work, its one-line message says what to fix; the `duet` command exits 2 on it."""


class ToolError(Exception):
    """A tool failed. `retryable` says whether running it again may succeed; `not_sent`
    that the call provably never reached its target (the connection was refused, the
    service refused it before acting), so even a step that changes things, whose tool
    takes no idempotency key, may be retried without risking a second effect; `unreachable`
    that its dependency could not be reached (refused, reset, gone), so the step waits for it
    to come back (`dependency_wait_seconds`). `type_name` is what the step's error is
    called: an `ErrorKind`, or an error class nova-duet does not know (an SDK's)."""

    status = "error"
    kind = ErrorKind.TOOL_ERROR

    def __init__(self, message: str, *, retryable: bool = False,
                 type_name: ErrorKind | str | None = None, not_sent: bool = False,
                 unreachable: bool = False):
        super().__init__(message)
        self.retryable = retryable
        # A class of nova-duet's is named by its kind; a user's subclass, by its own name.
        own_kind = "kind" in type(self).__dict__
        self.type_name = str(type_name or (self.kind if own_kind else type(self).__name__))
        self.not_sent = not_sent
        self.unreachable = unreachable


class BlockedError(ToolError):
    """The sandbox refused the call (for example a host outside the allowlist)."""

    status = "blocked"
    kind = ErrorKind.BLOCKED


class ToolUnavailableError(ToolError):
    """The tool cannot run here (for example missing credentials); says what to set."""

    kind = ErrorKind.TOOL_UNAVAILABLE
