"""Sending steps to executor deployments (`Context.executor_url`) through `RemoteGraph`.

A failure to reach a deployment is a step failure like any tool's, typed and retryable:
`ExecutorUnavailable` when no request reached it (safe to retry even for a write without
an idempotency key), `ExecutorTimeout` or `ExecutorError` when one may have. A deployment
that does not answer within the step's timeout (plus `GRACE_SECONDS`) never holds up the
run. Auth headers come from `DUET_EXECUTOR_HEADERS` (a JSON object) at the moment of use,
so they are never saved with a run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import zlib

import httpx
from langgraph.pregel.remote import RemoteGraph

from graph.contracts import EXECUTOR_GRAPH_ID, StepAttempt, StepError, StepRequest

GRACE_SECONDS = 5.0  # on top of the step's own timeout, which the executor applies


def executor_headers() -> dict[str, str]:
    """Headers for the executor deployments (auth), read from the environment."""
    return json.loads(os.environ.get("DUET_EXECUTOR_HEADERS") or "{}")


def executor_urls(setting: str) -> list[str]:
    """The deployments an `executor_url` setting names (several separated by commas)."""
    return [url.strip().rstrip("/") for url in setting.split(",") if url.strip()]


class RemoteExecutor:
    """Steps go to the deployments in turn; a step with a named browser session always to
    the same one (its session lives there)."""

    def __init__(self, setting: str):
        self.urls = executor_urls(setting)
        self._turn = itertools.cycle(range(len(self.urls)))
        self._graphs: dict[str, RemoteGraph] = {}

    def url_for(self, request: StepRequest) -> str:
        """The deployment that executes `request`."""
        session = request.args.get("session")
        if session:
            key = f"{request.thread}/{session}".encode()
            return self.urls[zlib.crc32(key) % len(self.urls)]
        return self.urls[next(self._turn)]

    def _graph(self, url: str) -> RemoteGraph:
        # One client per deployment, headers read now; traces continue on the executor.
        if url not in self._graphs:
            self._graphs[url] = RemoteGraph(EXECUTOR_GRAPH_ID, url=url, headers=executor_headers(),
                                            distributed_tracing=True)
        return self._graphs[url]

    async def attempt(self, request: StepRequest) -> StepAttempt:
        """One attempt of the step on its deployment; never raises for a deployment's
        failure (the attempt says what went wrong)."""
        url = self.url_for(request)
        wait = request.timeout_seconds + GRACE_SECONDS
        try:
            out = await asyncio.wait_for(
                self._graph(url).ainvoke({"request": request.model_dump(mode="json")}), wait)
            return StepAttempt.model_validate({**out["reply"], "executor": url})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return _failed(url, "ExecutorUnavailable", f"the executor at {url} cannot be "
                           f"reached ({type(exc).__name__}); nothing was sent", not_sent=True)
        except TimeoutError:
            return _failed(url, "ExecutorTimeout", f"the executor at {url} gave no answer "
                           f"within {wait:g}s", status="timeout")
        except Exception as exc:  # noqa: BLE001 - a dropped connection, a 5xx, a bad reply
            return _failed(url, "ExecutorError", f"the executor at {url} failed: "
                           f"{type(exc).__name__}: {exc}")

    async def end_thread(self, thread: str) -> None:
        """Close the caller thread's named browser sessions on every deployment."""
        for url in self.urls:
            try:
                await asyncio.wait_for(self._graph(url).ainvoke({"close_thread": thread}),
                                       GRACE_SECONDS)
            except Exception:  # noqa: BLE001 - its idle timeout closes them anyway
                continue


def _failed(url: str, kind: str, message: str, *, status: str = "error",
            not_sent: bool = False) -> StepAttempt:
    return StepAttempt(status=status, not_sent=not_sent, executor=url,
                       error=StepError(type=kind, message=message, retryable=True))


_executors: dict[tuple[str, int], RemoteExecutor] = {}


def remote_executor(setting: str) -> RemoteExecutor:
    """The `RemoteExecutor` for an `executor_url` setting: one per event loop, since its
    HTTP clients belong to the loop that opened them."""
    key = (setting, id(asyncio.get_running_loop()))
    if key not in _executors:
        _executors[key] = RemoteExecutor(setting)
    return _executors[key]
