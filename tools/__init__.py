"""Executors the plans call, and the registry that lists them.

Names are loaded on first use (PEP 562), so code that needs only the sandbox's policy or
an error type (the run settings, the contracts) does not load LangChain and the browsers.
"""

from __future__ import annotations

import functools
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tools.registry import ToolRegistry

_EXPORTS = {
    "BlockedError": "tools.errors", "ErrorKind": "tools.errors", "ToolError": "tools.errors",
    "ToolUnavailableError": "tools.errors",
    "BrowserPool": "tools.browser", "PlaywrightExecutor": "tools.browser",
    "NovaActExecutor": "tools.nova_act",
    "Dependency": "tools.registry", "RegisteredTool": "tools.registry",
    "StepRefused": "tools.registry", "ToolRegistry": "tools.registry",
    "SandboxPolicy": "tools.sandbox",
    "HandOff": "tools.people", "PersonAnswer": "tools.people", "PersonNeeded": "tools.people",
    "InjectedStep": "tools.step", "StepContext": "tools.step",
    "current_idempotency_key": "tools.step",
    "http_request_tool": "tools.http",
}


def default_registry(idle_seconds: float | None = None) -> ToolRegistry:
    """A registry of the built-in executors: HTTP, the offline browser executor, Nova Act.

    Browser sessions start on first use, each run's browser steps bounded by its context's
    `max_browser_sessions`; `await registry.aclose()` stops them, and
    `registry.end_scope(thread)` the named sessions of one run. With `idle_seconds`, named
    sessions unused that long close too.
    """
    from tools.browser import BrowserPool, PlaywrightExecutor, browser_dependency
    from tools.http import HTTP_DEPENDENCY, SECRET_ARGS, http_changes_things, http_request_tool
    from tools.http import clients as http_clients
    from tools.nova_act import NovaActExecutor, nova_act_dependency, nova_act_unavailable
    from tools.registry import ToolRegistry

    registry = ToolRegistry()
    builtin = functools.partial(registry.register, source="builtin")
    builtin(http_request_tool, side_effects=http_changes_things, takes_idempotency_key=True,
            dependency=HTTP_DEPENDENCY, secret_args=SECRET_ARGS)
    registry.on_close(http_clients.aclose)
    pool = BrowserPool(idle_seconds)
    registry.on_close(pool.aclose)
    registry.on_scope_end(pool.close_scope)
    goto, click, fill, read = PlaywrightExecutor(pool).tools()
    for tool, changes in ((goto, False), (click, True), (fill, True), (read, False)):
        builtin(tool, side_effects=changes,
                dependency=browser_dependency(tool.name, "playwright_timeout_seconds"),
                secret_args=("value",) if tool is fill else ())
    act, extract = NovaActExecutor(pool).tools()
    builtin(act, side_effects=True, unavailable_reason=nova_act_unavailable,
            dependency=nova_act_dependency(act.name), secret_args=("secret",))
    builtin(extract, read_only=True, unavailable_reason=nova_act_unavailable,
            dependency=nova_act_dependency(extract.name))
    return registry


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tools' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


__all__ = [*_EXPORTS, "default_registry"]
