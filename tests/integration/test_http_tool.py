"""`http_request` against the demo site: data, writes, the allowlist, caps and errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from demo_site.server import free_port
from tools import BlockedError, SandboxPolicy, StepContext, ToolError
from tools.http import http_request


def step_for(site: str, **kw) -> StepContext:
    return StepContext(policy=SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,), **kw))


async def test_reads_json_and_writes_persist(site):
    step = step_for(site)
    created = await http_request(f"{site}/api/notes", step, "POST",
                                 {"customer_id": 1, "text": "hello"})
    listed = await http_request(f"{site}/api/notes?customer_id=1", step)
    assert created["status_code"] == 201
    assert [n["text"] for n in listed["json"]] == ["hello"]


async def test_host_outside_the_allowlist_is_blocked_before_connecting(site):
    other = f"http://127.0.0.1:{free_port()}/"  # nothing listens: a connection would fail
    with pytest.raises(BlockedError, match="outside the allowlist"):
        await http_request(other, step_for(site))


async def test_redirect_off_the_allowlist_is_blocked(site):
    target = f"http://127.0.0.1:{free_port()}/steal"
    with pytest.raises(BlockedError):
        await http_request(f"{site}/redirect?to={target}", step_for(site))


async def test_response_is_capped(site):
    page = await http_request(f"{site}/customers", step_for(site, max_response_bytes=100))
    assert page["truncated"] is True and len(page["text"]) == 100


async def test_http_errors_are_tool_errors(site):
    with pytest.raises(ToolError) as raised:
        await http_request(f"{site}/api/customers/999", step_for(site))
    assert "404" in str(raised.value) and not raised.value.retryable
