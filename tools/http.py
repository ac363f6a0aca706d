"""`http_request`: JSON or HTML over HTTP, to allowlisted hosts only."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tools.errors import ToolError
from tools.sandbox import current_idempotency_key, current_policy


class HttpRequestArgs(BaseModel):
    """Arguments of `http_request`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Absolute http(s) URL on an allowed host.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    json_body: dict[str, Any] | list[Any] | None = Field(
        default=None, description="JSON request body, for POST/PUT/PATCH."
    )
    headers: dict[str, str] = Field(default_factory=dict)


def http_changes_things(args: dict[str, Any]) -> bool:
    """Every method but GET may change something on the server."""
    return str(args.get("method", "GET")).upper() != "GET"


async def _check_host(request: httpx.Request) -> None:
    # Runs before every request, redirects included, so no socket opens to a host
    # outside the allowlist.
    current_policy().check(str(request.url))


async def http_request(
    url: str,
    method: str = "GET",
    json_body: dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send one HTTP request and return its status, content type and body (JSON or text)."""
    policy = current_policy()
    policy.check(url)
    limit = policy.max_response_bytes
    headers = dict(headers or {})
    if (key := current_idempotency_key()) and method.upper() != "GET":
        # The server sees the same key on every attempt of this step, so a repeat after a
        # crash or a retry is recognised instead of applied twice.
        headers.setdefault("Idempotency-Key", key)
    try:
        async with httpx.AsyncClient(
            follow_redirects=True, event_hooks={"request": [_check_host]}, timeout=30.0
        ) as client:
            async with client.stream(method, url, json=json_body, headers=headers) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > limit:
                        break
    except httpx.TransportError as exc:
        # A refused or timed-out connection sent nothing; any later failure may have.
        raise ToolError(f"{method} {url} failed: {exc}", retryable=True,
                        not_sent=isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                        ) from exc
    truncated = len(body) > limit
    text = bytes(body[:limit]).decode(response.encoding or "utf-8", errors="replace")
    content_type = response.headers.get("content-type", "")
    result: dict[str, Any] = {
        "status_code": response.status_code,
        "content_type": content_type,
        "truncated": truncated,
    }
    if "json" in content_type and not truncated:
        result["json"] = json.loads(text)
    else:
        result["text"] = text
    if response.status_code >= 500:
        raise ToolError(f"{method} {url} answered {response.status_code}: {text[:200]}",
                        retryable=True)
    if response.status_code >= 400:
        raise ToolError(f"{method} {url} answered {response.status_code}: {text[:500]}")
    return result


http_request_tool = StructuredTool.from_function(
    coroutine=http_request,
    name="http_request",
    description=(
        "Send an HTTP request to an allowed host and return status_code, content_type and "
        "the body as `json` (parsed) or `text`. Bodies are capped; `truncated` says so. "
        "Writes carry an Idempotency-Key header, the same on every attempt of a step."
    ),
    args_schema=HttpRequestArgs,
)
