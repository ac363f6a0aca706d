"""`http_request` against the demo site: data, writes, the allowlist, caps and errors."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from demo_site.server import free_port
from tools import BlockedError, SandboxPolicy, ToolError, use_policy
from tools.http import http_request


def policy_for(site: str, **kw) -> SandboxPolicy:
    return SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,), **kw)


async def test_reads_json_and_writes_persist(site):
    with use_policy(policy_for(site)):
        created = await http_request(f"{site}/api/notes", "POST",
                                     {"customer_id": 1, "text": "hello"})
        listed = await http_request(f"{site}/api/notes?customer_id=1")
    assert created["status_code"] == 201
    assert [n["text"] for n in listed["json"]] == ["hello"]


async def test_host_outside_the_allowlist_is_blocked_before_connecting(site):
    other = f"http://127.0.0.1:{free_port()}/"  # nothing listens: a connection would fail
    with use_policy(policy_for(site)), pytest.raises(BlockedError, match="outside the allowlist"):
        await http_request(other)


async def test_redirect_off_the_allowlist_is_blocked(site):
    target = f"http://127.0.0.1:{free_port()}/steal"
    with use_policy(policy_for(site)), pytest.raises(BlockedError):
        await http_request(f"{site}/redirect?to={target}")


async def test_response_is_capped(site):
    with use_policy(policy_for(site, max_response_bytes=100)):
        page = await http_request(f"{site}/customers")
    assert page["truncated"] is True and len(page["text"]) == 100


async def test_http_errors_are_tool_errors(site):
    with use_policy(policy_for(site)), pytest.raises(ToolError) as raised:
        await http_request(f"{site}/api/customers/999")
    assert "404" in str(raised.value) and not raised.value.retryable
