"""What an executor deployment does, for its graph (`graph.py`) and its step route (`app.py`)
alike: one attempt of one step (`StepRequest` in, `StepAttempt` out) with the same function
as in-process execution (`graph.runtime.execution.attempt_tool`), and the end of a caller's
run (its named browser sessions close).

The deployment enforces its own sandbox. Its allowlist (`DUET_EXECUTOR_ALLOWED_HOSTS`,
comma-separated; empty allows nothing) bounds every request: a caller can narrow it, never
widen it. It runs its own registry, so it executes only the tools it has; named browser
sessions live per caller thread and close when the caller's run ends or after
`DUET_EXECUTOR_IDLE_SECONDS` without use. It resolves the secrets a step names with its own
auth config (`DUET_AUTH_CONFIG`): a caller sends `${secret.NAME}`, never a value.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import os
import shutil
import tempfile
import uuid
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import langsmith

from graph.contracts import StepAttempt, StepRequest
from graph.runtime.attempts import attempt_tool
from graph.runtime.secrets import auth_of, load_config
from tools import default_registry
from tools.auth import NO_AUTH, Auth
from tools.registry import ToolRegistry
from tools.sandbox import SandboxPolicy
from tools.step import StepContext, StepFiles


def deployment_hosts() -> tuple[str, ...]:
    """The hosts this deployment may reach at most (`DUET_EXECUTOR_ALLOWED_HOSTS`)."""
    hosts = os.environ.get("DUET_EXECUTOR_ALLOWED_HOSTS", "")
    return tuple(host.strip() for host in hosts.split(",") if host.strip())


def bounded(policy: SandboxPolicy, hosts: tuple[str, ...]) -> SandboxPolicy:
    """The caller's sandbox, its allowlist cut to what the deployment allows."""
    return dataclasses.replace(
        policy, allowed_hosts=tuple(h for h in policy.allowed_hosts if h in hosts),
        denied_hint=f"this executor deployment allows only {list(hosts)} "
                    "(DUET_EXECUTOR_ALLOWED_HOSTS)")


def _traced(request: StepRequest) -> AbstractContextManager[Any]:
    """A run in the caller's trace, under the step's run (when the caller traces)."""
    if not request.trace:
        return nullcontext()
    return langsmith.trace(f"execute {request.tool}", run_type="tool", parent=request.trace,
                           inputs={"step_id": request.step_id, "tool": request.tool,
                                   "plan_version": request.plan_version})


@dataclass(frozen=True)
class _ReplyFiles(StepFiles):
    """A step's files on an executor deployment: its screenshot is held for the reply (the
    caller saves it in its run's folder), never written here; the folder (for Nova Act's
    logs) is made only when a tool asks for it, so most steps touch no disk."""

    held: dict[str, Any] = field(default_factory=dict)

    def save_screenshot(self, image: bytes) -> None:
        """Keep the page's PNG for the reply."""
        self.held["screenshot"] = image

    def save_hand_off_screenshot(self, image: bytes) -> None:
        """Dropped: hand-offs are for steps run in the caller's process."""

    def save_login_screenshot(self, image: bytes) -> None:
        """Dropped: the reply carries the step's own screenshot only."""

    @property
    def nova_act_logs(self) -> Path:
        """Nova Act's log folder (in the step's folder, removed when the step ends)."""
        self.held["folder"] = True
        return super().nova_act_logs


class StepService:
    """Attempts of steps over `registry`, bounded by the deployment's `allowed_hosts`, with
    the secrets of its own `auth`."""

    def __init__(self, registry: ToolRegistry, allowed_hosts: tuple[str, ...],
                 auth: Auth = NO_AUTH):
        self.registry = registry
        self.allowed_hosts = allowed_hosts
        self.auth = auth
        self._scratch = Path(tempfile.gettempdir())  # looked up once: it touches the disk

    async def attempt(self, request: StepRequest) -> StepAttempt:
        """One attempt of `request`'s step in the caller's scope (its thread's named
        sessions), with its idempotency key, under the bounded sandbox; the page at the end
        comes back in the attempt when the caller asked for it. Never raises for a tool's
        failure (the attempt says what went wrong)."""
        files = (_ReplyFiles(self._scratch / f"duet-step-{uuid.uuid4().hex}", "step")
                 if request.screenshot else None)
        step = StepContext(policy=bounded(request.policy, self.allowed_hosts),
                           scope=request.thread, idempotency_key=request.idempotency_key,
                           files=files, auth=self.auth)
        try:
            with _traced(request) as run:
                attempt = await attempt_tool(self.registry, request.tool, request.args, step,
                                             request.timeout_seconds)
                if run is not None:
                    run.end(outputs={"status": attempt.status})
        finally:
            if files is not None and files.held.get("folder"):
                # The server's event loop refuses blocking calls: removed off it.
                await asyncio.to_thread(shutil.rmtree, files.run_folder, True)
        if files is not None and (image := files.held.get("screenshot")):
            attempt.screenshot = base64.b64encode(image).decode()
        attempt.nova_act_seconds = round(step.agent_time.seconds, 3)
        return attempt

    async def end_thread(self, thread: str) -> None:
        """The caller's run `thread` ended: its named browser sessions close."""
        await self.registry.end_scope(thread)

    async def aclose(self) -> None:
        """Stop the deployment's browsers (it is shutting down)."""
        await self.registry.aclose()

    def info(self) -> dict[str, Any]:
        """What this deployment serves: its tools and the hosts it may reach."""
        return {"tools": sorted(self.registry.names()), "allowed_hosts": list(self.allowed_hosts)}


@functools.cache
def default_service() -> StepService:
    """The deployment's service over the built-in executors, bounded by the environment
    (`DUET_EXECUTOR_ALLOWED_HOSTS`, `DUET_EXECUTOR_IDLE_SECONDS`), with the secrets of
    `DUET_AUTH_CONFIG` (`AuthConfigError` when it is wrong): one per process, so the graph
    and the step route share its browsers and named sessions."""
    auth = auth_of(load_config(os.environ.get("DUET_AUTH_CONFIG") or None))
    registry = default_registry(
        idle_seconds=float(os.environ.get("DUET_EXECUTOR_IDLE_SECONDS", "600")))
    return StepService(registry, deployment_hosts(), auth)
