"""Typed errors that executors raise; the act node turns each into a StepResult status."""


class ToolError(Exception):
    """A tool failed. `retryable` says whether running it again may succeed."""

    status = "error"

    def __init__(self, message: str, *, retryable: bool = False, type_name: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.type_name = type_name or type(self).__name__


class BlockedError(ToolError):
    """The sandbox refused the call (for example a host outside the allowlist)."""

    status = "blocked"


class ToolUnavailableError(ToolError):
    """The tool cannot run here (for example missing credentials); says what to set."""
