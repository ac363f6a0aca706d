"""The executor deployment's step route as an ASGI app (Starlette, in-process): what it
answers, the page it sends back, and that it fails closed when the server's auth is not
in front of it. The route on a real `langgraph dev` is tested in
tests/integration/test_remote_executor.py."""

from __future__ import annotations

import base64

import httpx
from langchain_core.tools import tool

from graph.contracts import (
    EXECUTOR_END_THREAD_PATH,
    EXECUTOR_GRAPH_ID,
    EXECUTOR_INFO_PATH,
    EXECUTOR_STEP_PATH,
    StepAttempt,
    StepRequest,
)
from graph.executor.app import build_executor_app
from graph.executor.service import StepService
from tools.errors import ErrorKind
from tools.registry import ToolRegistry
from tools.sandbox import SandboxPolicy
from tools.step import InjectedStep

PNG = b"\x89PNG not really"


@tool
async def look(url: str, step: InjectedStep) -> dict:
    """Report the sandbox the step runs under, and take a picture of the 'page'."""
    if step.files is not None:
        step.files.save_screenshot(PNG)
    return {"scope": step.scope, "allowed": step.policy.allows(url)}


def client(auth: bool = False) -> httpx.AsyncClient:
    service = StepService(ToolRegistry([look], read_only=True), allowed_hosts=("a.test",))
    app = build_executor_app(service, auth=auth)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://executor")


def request(url: str, **extra) -> str:
    return StepRequest(tool="look", args={"url": url}, step_id="s", plan_version=1,
                       thread="caller-thread", timeout_seconds=5,
                       policy=SandboxPolicy(allowed_hosts=("a.test", "b.test"),
                                            max_response_bytes=10_000, browser_max_steps=1,
                                            browser_timeout_seconds=1),
                       **extra).model_dump_json()


async def test_a_step_runs_in_the_callers_scope_bounded_by_the_deployment():
    async with client() as http:
        allowed = StepAttempt.model_validate_json(
            (await http.post(EXECUTOR_STEP_PATH, content=request("https://a.test/x"))).content)
        widened = StepAttempt.model_validate_json(
            (await http.post(EXECUTOR_STEP_PATH, content=request("https://b.test/x"))).content)
        bare = StepAttempt.model_validate_json((await http.post(
            EXECUTOR_STEP_PATH, content=request("https://a.test/x", screenshot=False))).content)
        info = (await http.get(EXECUTOR_INFO_PATH)).json()
        ended = (await http.post(EXECUTOR_END_THREAD_PATH, json={"thread": "t"})).json()
    assert allowed.output == {"scope": "caller-thread", "allowed": True}
    assert widened.output["allowed"] is False, "a caller cannot widen the deployment's list"
    assert base64.b64decode(allowed.screenshot) == PNG, "the page comes back in the reply"
    assert bare.screenshot is None
    assert info == {"graph_id": EXECUTOR_GRAPH_ID, "tools": ["look"],
                    "allowed_hosts": ["a.test"]}
    assert ended == {"closed": "t"}


async def test_a_malformed_request_is_refused_with_422():
    async with client() as http:
        answer = await http.post(EXECUTOR_STEP_PATH, content='{"tool": "look"}')
        unknown = StepAttempt.model_validate_json((await http.post(
            EXECUTOR_STEP_PATH, content=request("x").replace('"look"', '"nope"'))).content)
    assert answer.status_code == 422 and answer.json()["detail"]
    assert unknown.status == "error" and unknown.error.kind is ErrorKind.UNKNOWN_TOOL
    assert "nope" in unknown.error.message, "a tool the deployment lacks is named"


async def test_with_server_auth_not_in_front_the_route_fails_closed():
    async with client(auth=True) as http:
        answers = [await http.post(EXECUTOR_STEP_PATH, content=request("https://a.test/x")),
                   await http.get(EXECUTOR_INFO_PATH)]
    assert [a.status_code for a in answers] == [403, 403]
    assert "enable_custom_route_auth" in answers[0].json()["detail"]
