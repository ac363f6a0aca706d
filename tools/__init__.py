"""Executors the plans call, and the registry that lists them."""

import functools

from tools.browser import BrowserPool, PlaywrightExecutor
from tools.errors import BlockedError, ToolError, ToolUnavailableError
from tools.http import clients as http_clients
from tools.http import http_changes_things, http_request_tool
from tools.nova_act import NovaActExecutor, nova_act_unavailable
from tools.registry import RegisteredTool, StepRefused, ToolRegistry
from tools.sandbox import (
    SandboxPolicy,
    current_idempotency_key,
    current_policy,
    use_idempotency_key,
    use_policy,
)


def default_registry(idle_seconds: float | None = None) -> ToolRegistry:
    """A registry of the built-in executors: HTTP, the offline browser executor, Nova Act.

    Browser sessions start on first use, each run's browser steps bounded by its context's
    `max_browser_sessions`; `await registry.aclose()` stops them, and
    `registry.end_scope(thread)` the named sessions of one run. With `idle_seconds`, named
    sessions unused that long close too.
    """
    registry = ToolRegistry()
    builtin = functools.partial(registry.register, source="builtin")
    builtin(http_request_tool, side_effects=http_changes_things, takes_idempotency_key=True)
    registry.on_close(http_clients.aclose)
    pool = BrowserPool(idle_seconds)
    registry.on_close(pool.aclose)
    registry.on_scope_end(pool.close_scope)
    goto, click, fill, read = PlaywrightExecutor(pool).tools()
    builtin(goto, read_only=True)
    builtin(click, side_effects=True)
    builtin(fill, side_effects=True)
    builtin(read, read_only=True)
    act, extract = NovaActExecutor(pool).tools()
    builtin(act, side_effects=True, unavailable_reason=nova_act_unavailable)
    builtin(extract, read_only=True, unavailable_reason=nova_act_unavailable)
    return registry


__all__ = [
    "BlockedError", "BrowserPool", "NovaActExecutor", "PlaywrightExecutor", "RegisteredTool",
    "SandboxPolicy", "StepRefused", "ToolError",
    "ToolRegistry", "ToolUnavailableError", "current_idempotency_key", "current_policy",
    "default_registry", "http_request_tool", "use_idempotency_key", "use_policy",
]
