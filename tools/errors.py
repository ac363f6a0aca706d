"""Typed errors that executors raise; the act node turns each into a StepResult status."""


class ToolError(Exception):
    """A tool failed. `retryable` says whether running it again may succeed; `not_sent`
    that the call provably never reached its target (the connection was refused, the
    service refused it before acting), so even a step that changes things, whose tool
    takes no idempotency key, may be retried without risking a second effect; `unreachable`
    that its dependency could not be reached (refused, reset, gone), so the step waits for it
    to come back (`dependency_wait_seconds`)."""

    status = "error"

    def __init__(self, message: str, *, retryable: bool = False, type_name: str | None = None,
                 not_sent: bool = False, unreachable: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.type_name = type_name or type(self).__name__
        self.not_sent = not_sent
        self.unreachable = unreachable


class BlockedError(ToolError):
    """The sandbox refused the call (for example a host outside the allowlist)."""

    status = "blocked"


class ToolUnavailableError(ToolError):
    """The tool cannot run here (for example missing credentials); says what to set."""
