"""Sending steps to executor deployments (`Context.executor_url`) over their step route.

One POST per attempt (`EXECUTOR_STEP_PATH`: a `StepRequest` in, a `StepAttempt` out) on a
pooled HTTP client, one per event loop: no run, so no run queue, and no connection opened
per step. A failure to reach a deployment is a step failure like any tool's, typed:
`ExecutorUnavailable` when no request reached it (safe to retry even for a write without an
idempotency key), `ExecutorTimeout` or `ExecutorError` when one may have; a deployment that
refuses the request (auth, a bad request, no step route) is an `ExecutorError` that is not
retried. A deployment that does not answer within the step's timeout (its tool's own:
`http_timeout_seconds`, `step_timeout_seconds`..., plus `GRACE_SECONDS`) ends the step with
`ExecutorTimeout`, not retried; one that cannot be reached or goes away is waited for
(`dependency_wait_seconds`, in `graph.runtime.execution`). Auth headers come from
`DUET_EXECUTOR_HEADERS` (a JSON object) at the moment of each request, so they are never
saved with a run nor kept by the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import weakref
import zlib

import httpx
from pydantic import ValidationError

from graph.contracts import (
    EXECUTOR_END_THREAD_PATH,
    EXECUTOR_STEP_PATH,
    StepAttempt,
    StepError,
    StepRequest,
    StepStatus,
)
from tools.errors import ErrorKind

GRACE_SECONDS = 5.0  # on top of the step's own timeout, which the executor applies
KEEPALIVE_SECONDS = 4.0  # how long an idle connection to a deployment is kept
# Statuses by which a deployment (or its auth) refused a request before running anything.
REFUSED = {401: "refused the credentials (set DUET_EXECUTOR_HEADERS)",
           403: "refused the request (set DUET_EXECUTOR_HEADERS)",
           404: "serves no step route (is its langgraph.json's http.app "
                "./graph/executor/app.py:app?)",
           422: "refused the request as malformed"}


def executor_headers() -> dict[str, str]:
    """Headers for the executor deployments (auth), read from the environment now."""
    raw = os.environ.get("DUET_EXECUTOR_HEADERS") or "{}"
    try:
        headers = json.loads(raw)
    except json.JSONDecodeError:
        headers = None
    if not (isinstance(headers, dict) and all(isinstance(v, str) for v in headers.values())):
        raise ValueError("DUET_EXECUTOR_HEADERS is not a JSON object of header names to "
                         "string values")
    return headers


def executor_urls(setting: str) -> list[str]:
    """The deployments an `executor_url` setting names (several separated by commas)."""
    return [url.strip().rstrip("/") for url in setting.split(",") if url.strip()]


class RemoteExecutor:
    """Steps go to the deployments in turn; a step with a named browser session always to
    the same one (its session lives there)."""

    def __init__(self, setting: str, client: httpx.AsyncClient):
        self.urls = executor_urls(setting)
        self._turn = itertools.cycle(range(len(self.urls)))
        self._client = client

    def url_for(self, request: StepRequest) -> str:
        """The deployment that executes `request`."""
        session = request.args.get("session")
        if session:
            key = f"{request.thread}/{session}".encode()
            return self.urls[zlib.crc32(key) % len(self.urls)]
        return self.urls[next(self._turn)]

    async def attempt(self, request: StepRequest) -> StepAttempt:
        """One attempt of the step on its deployment; never raises for a deployment's
        failure (the attempt says what went wrong)."""
        url = self.url_for(request)
        wait = request.timeout_seconds + GRACE_SECONDS
        try:
            headers = executor_headers()
        except ValueError as exc:
            return _failed(url, ErrorKind.EXECUTOR_ERROR, str(exc), not_sent=True, retryable=False)
        try:
            response = await asyncio.wait_for(self._client.post(
                url + EXECUTOR_STEP_PATH, content=request.model_dump_json(),
                headers={**headers, "content-type": "application/json"}), wait)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return _failed(url, ErrorKind.EXECUTOR_UNAVAILABLE, f"the executor at {url} cannot be "
                           f"reached ({type(exc).__name__}); nothing was sent", not_sent=True,
                           unreachable=True)
        except (TimeoutError, httpx.TimeoutException):
            # A deployment that stalled is not tried again: the step ends within its bound.
            return _failed(url, ErrorKind.EXECUTOR_TIMEOUT, f"the executor at {url} gave no answer "
                           f"within {wait:g}s (the step's {request.timeout_seconds:g}s "
                           f"+ {GRACE_SECONDS:g}s)", status="timeout", retryable=False)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # The deployment went away (closed, reset) while the step may have run.
            return _failed(url, ErrorKind.EXECUTOR_UNAVAILABLE, f"the executor at {url} went away: "
                           f"{type(exc).__name__}: {exc}", unreachable=True)
        except httpx.HTTPError as exc:
            return _failed(url, ErrorKind.EXECUTOR_ERROR, f"the executor at {url} failed: "
                           f"{type(exc).__name__}: {exc}")
        if response.status_code in REFUSED:
            return _failed(url, ErrorKind.EXECUTOR_ERROR, f"the executor at {url} "
                           f"{REFUSED[response.status_code]}: {response.status_code} "
                           f"{_detail(response)}", not_sent=True, retryable=False)
        if response.status_code != 200:
            return _failed(url, ErrorKind.EXECUTOR_ERROR, f"the executor at {url} failed: "
                           f"{response.status_code} {_detail(response)}")
        try:
            attempt = StepAttempt.model_validate_json(response.content)
        except ValidationError as exc:
            return _failed(url, ErrorKind.EXECUTOR_ERROR, f"the executor at {url} sent a "
                           f"reply that is not a step attempt: {exc.error_count()} errors")
        return attempt.model_copy(update={"executor": url})

    async def end_thread(self, thread: str) -> None:
        """Close the caller thread's named browser sessions on every deployment."""
        try:
            headers = executor_headers()
        except ValueError:
            return  # the steps said so already; the idle timeout closes the sessions

        async def end(url: str) -> None:
            await self._client.post(url + EXECUTOR_END_THREAD_PATH, json={"thread": thread},
                                    headers=headers)

        # Failures are let go: a deployment's idle timeout closes the sessions anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*map(end, self.urls), return_exceptions=True),
                                   GRACE_SECONDS)


def _detail(response: httpx.Response) -> str:
    """What a deployment said about a refused request, shortened."""
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = response.text
    return str(detail)[:300]


def _failed(url: str, kind: ErrorKind, message: str, *, status: StepStatus = "error",
            not_sent: bool = False, retryable: bool = True,
            unreachable: bool = False) -> StepAttempt:
    return StepAttempt(status=status, not_sent=not_sent, executor=url, unreachable=unreachable,
                       error=StepError(type=kind, message=message, retryable=retryable))


# Per event loop, since an HTTP client's connections belong to the loop that opened them;
# each goes with its loop.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary())
_executors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RemoteExecutor]] = (
    weakref.WeakKeyDictionary())


def _client(loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
    """The loop's pooled client. Its timeout bounds connecting (nothing sent after that);
    the whole attempt is bounded by the step's timeout plus the grace."""
    if loop not in _clients:
        _clients[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=GRACE_SECONDS),
            # Parallel steps each hold a connection; the scheduler bounds how many. An idle
            # one is dropped before the server drops it (uvicorn: after 5 s), so a step is
            # never sent on a connection the server is closing.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64,
                                keepalive_expiry=KEEPALIVE_SECONDS))
    return _clients[loop]


def remote_executor(setting: str) -> RemoteExecutor:
    """The `RemoteExecutor` for an `executor_url` setting on this event loop."""
    loop = asyncio.get_running_loop()
    executors = _executors.setdefault(loop, {})
    if setting not in executors:
        executors[setting] = RemoteExecutor(setting, _client(loop))
    return executors[setting]
