"""The executor deployment's step route: a Starlette app that `langgraph.json` mounts beside
the graphs (`http.app`), so `langgraph dev` and LangGraph Platform serve it on the same
replicas and, with `http.enable_custom_route_auth`, behind the same auth.

One POST per attempt of a step, answered as soon as the step ends: no run, so no run
queue (`langgraph dev`'s in-memory queue wakes every 0.5 s). It runs the same `StepService`
as the executor graph (`graph.py`), so both share the deployment's sandbox, browsers and
named sessions.

- `POST /executor/step`: a `StepRequest` in, a `StepAttempt` out (422 for a bad request).
- `POST /executor/end-thread`: `{"thread": ...}`, the caller's run ended; its named
  sessions close.
- `GET /executor`: the graph id, the tools and the allowlist this deployment serves.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graph.contracts import (
    EXECUTOR_END_THREAD_PATH,
    EXECUTOR_GRAPH_ID,
    EXECUTOR_INFO_PATH,
    EXECUTOR_STEP_PATH,
    StepRequest,
)
from graph.executor.service import StepService, default_service

Handler = Callable[[Request], Awaitable[Response]]
M = TypeVar("M", bound=BaseModel)


class ThreadEnd(BaseModel):
    """The body of `POST /executor/end-thread`."""

    thread: str


def server_has_auth() -> bool:
    """Whether the LangGraph server this app is mounted in authenticates requests: a custom
    handler (`langgraph.json`'s `auth`, which the server passes as `LANGGRAPH_AUTH`) or the
    platform's own (`LANGGRAPH_AUTH_TYPE`, `noop` on `langgraph dev`)."""
    return bool(os.environ.get("LANGGRAPH_AUTH")) or (
        os.environ.get("LANGGRAPH_AUTH_TYPE", "noop") != "noop")


def _guarded(handler: Handler, auth: bool) -> Handler:
    """`handler`, refusing every request when the server has auth but did not apply it here
    (`http.enable_custom_route_auth` is off): the route fails closed, never open."""
    if not auth:
        return handler

    async def guarded(request: Request) -> Response:
        if "user" not in request.scope:  # set by the server's auth middleware
            return JSONResponse({"detail": "this deployment has an auth handler but its step "
                                 "route is not behind it: set http.enable_custom_route_auth "
                                 "in langgraph.json"}, status_code=403)
        return await handler(request)

    return guarded


async def _body(request: Request, model: type[M]) -> M | Response:
    """The request's JSON body as `model`, or the 422 answer saying what is wrong with it."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False, include_input=False)},
                            status_code=422)


def build_executor_app(service: StepService | None = None,
                       auth: bool | None = None) -> Starlette:
    """The step route over `service` (the deployment's `default_service()` by default).
    `auth` (by default: whether the server has an auth handler) makes it refuse requests
    that did not pass through the server's auth."""
    steps = service or default_service()
    auth = server_has_auth() if auth is None else auth

    async def step(request: Request) -> Response:
        attempt_of = await _body(request, StepRequest)
        if isinstance(attempt_of, Response):
            return attempt_of
        attempt = await steps.attempt(attempt_of)
        return Response(attempt.model_dump_json(), media_type="application/json")

    async def end_thread(request: Request) -> Response:
        ended = await _body(request, ThreadEnd)
        if isinstance(ended, Response):
            return ended
        await steps.end_thread(ended.thread)
        return JSONResponse({"closed": ended.thread})

    async def info(request: Request) -> Response:
        return JSONResponse({"graph_id": EXECUTOR_GRAPH_ID, **steps.info()})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await steps.aclose()  # the server is stopping: so do the deployment's browsers

    return Starlette(routes=[
        Route(EXECUTOR_STEP_PATH, _guarded(step, auth), methods=["POST"]),
        Route(EXECUTOR_END_THREAD_PATH, _guarded(end_thread, auth), methods=["POST"]),
        Route(EXECUTOR_INFO_PATH, _guarded(info, auth), methods=["GET"]),
    ], lifespan=lifespan)


app = build_executor_app()  # what `langgraph.json` mounts as `http.app`
