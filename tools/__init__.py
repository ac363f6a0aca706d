"""Executors the plans call, and the registry that lists them."""

from tools.errors import BlockedError, ToolError, ToolUnavailableError
from tools.http import http_changes_things, http_request_tool
from tools.registry import RegisteredTool, StepRefused, ToolRegistry
from tools.sandbox import SandboxPolicy, current_policy, use_policy


def default_registry() -> ToolRegistry:
    """A registry of the built-in executors."""
    registry = ToolRegistry()
    registry.register(http_request_tool, side_effects=http_changes_things)
    return registry


__all__ = [
    "BlockedError", "RegisteredTool", "SandboxPolicy", "StepRefused", "ToolError",
    "ToolRegistry", "ToolUnavailableError", "current_policy", "default_registry",
    "http_request_tool", "use_policy",
]
