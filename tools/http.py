"""`http_request`: JSON or HTML over HTTP, to allowlisted hosts only, with the run's secrets
put in where the plan names them and its HTTP auth applied per host (`tools.auth`)."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tools.auth import Auth, secret_names
from tools.errors import ErrorKind, ToolError
from tools.registry import Dependency
from tools.sandbox import DENY_ALL, SandboxPolicy
from tools.step import InjectedStep, StepContext

CONNECT_TIMEOUT_SECONDS = 10.0
_POLICY = "duet_policy"  # the request extension that carries the calling step's sandbox
_SECRETS = "duet_secrets"  # and the one that carries what the call does with secrets
# The arguments a plan may write `${secret.NAME}` in (the URL never: it lands in logs).
SECRET_ARGS = ("headers", "json_body")


class HttpRequestArgs(BaseModel):
    """Arguments of `http_request`."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Absolute http(s) URL on an allowed host.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    json_body: dict[str, Any] | list[Any] | None = Field(
        default=None, description="JSON request body, for POST/PUT/PATCH."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description='Request headers; a secret by name only, as '
        '"Bearer ${secret.NAME}".')
    step: InjectedStep


def http_changes_things(args: dict[str, Any]) -> bool:
    """Every method but GET may change something on the server."""
    return str(args.get("method", "GET")).upper() != "GET"


def http_target(args: dict[str, Any]) -> str:
    """What a call waits on: its URL's host."""
    return f"the HTTP target {urlsplit(str(args.get('url', ''))).netloc or '(no host)'}"


# Its calls wait on their target, bounded by `http_timeout_seconds`.
HTTP_DEPENDENCY = Dependency(http_target, "http_timeout_seconds")


@dataclass
class _CallSecrets:
    """What one call does with secrets: those its headers and body carry (`carried`, put in
    by the tool), and the run's HTTP auth, applied per host. `applied` is the header the
    HTTP auth set on the last request sent."""

    auth: Auth
    carried: set[str]
    applied: str | None = None

    async def before(self, request: httpx.Request) -> None:
        """Before each request of the call, redirects included: every secret the call
        carries must allow the request's host (`SecretNotAllowed`: nothing is sent there);
        the HTTP auth of the last host comes off and that of this one goes on, so a
        redirect to another host carries none of it."""
        url = str(request.url)
        self.auth.check(self.carried, url)
        if self.applied:
            request.headers.pop(self.applied, None)
            self.applied = None
        for name, value in (await self.auth.http_headers(url)).items():
            request.headers[name] = value
            self.applied = name


async def _before_send(request: httpx.Request) -> None:
    # Runs before every request, redirects included (they keep the request's extensions),
    # so no socket opens to a host outside the allowlist, and no secret goes to a host it
    # does not allow. Policy and secrets are the calling step's own, so steps under
    # different policies can share one client.
    policy: SandboxPolicy = request.extensions.get(_POLICY, DENY_ALL)
    policy.check(str(request.url))
    secrets: _CallSecrets | None = request.extensions.get(_SECRETS)
    if secrets is not None:
        await secrets.before(request)


class _NoCookies(CookieJar):
    """A jar that keeps nothing: a shared client must not carry one step's (or one run's)
    cookies into another's requests, as a client of its own per call never did."""

    def set_cookie(self, cookie: Any) -> None:
        """Drop it."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep none."""


class HttpClients:
    """Pooled `httpx.AsyncClient`s, one per event loop (a client belongs to the loop that
    opened its connections), shared by every `http_request` on that loop.

    Building a client builds an SSL context (loading the CA bundle takes tens of
    milliseconds of CPU, blocking the loop), so that is done once: one SSL context for the
    process, one client per loop. Requests beyond the pool's connections wait on a
    semaphore in front of it, not in httpx's pool, whose waiting requests cost CPU that
    grows with their number (500 at once took 14 ms of CPU each, and timed out). `aclose`
    closes this loop's client; clients of loops that have ended are dropped when the next
    one is made.
    """

    def __init__(self, max_connections: int = 100) -> None:
        self.max_connections = max_connections
        self._pools: dict[asyncio.AbstractEventLoop,
                          tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        self._ssl: ssl.SSLContext | None = None
        self.created = 0  # clients made so far (a test counts them)

    def get(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """This event loop's client and the semaphore that admits requests to it."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None or pool[0].is_closed:
            for ended in [other for other in self._pools if other.is_closed()]:
                del self._pools[ended]
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            client = httpx.AsyncClient(
                # Connecting has its own bound (a target that drops the connection
                # attempt is down: the step waits for it); the whole call is bounded by the
                # step (`http_timeout_seconds`), whatever the server sends or withholds.
                verify=self._ssl, follow_redirects=True, cookies=_NoCookies(),
                timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_SECONDS),
                # httpx's default of 20 kept-alive connections: with as many kept alive as
                # open, finding a connection costs a check of each (measured: 10x the CPU).
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=20),
                event_hooks={"request": [_before_send]})
            pool = self._pools[loop] = (client, asyncio.Semaphore(self.max_connections))
            self.created += 1
        return pool

    async def aclose(self) -> None:
        """Close this event loop's client (the next request makes a new one)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool[0].aclose()


clients = HttpClients()


async def http_request(
    url: str,
    step: StepContext,
    method: str = "GET",
    json_body: dict[str, Any] | list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send one HTTP request and return its status, content type and body (JSON or text).

    `${secret.NAME}` in `headers` and `json_body` is replaced by the secret's value, each
    checked against the URL's host first; the run's HTTP auth of a host is applied to the
    requests sent there. The body that comes back from such a call is redacted
    (`step.auth.redact`), so an echoed secret reaches no record."""
    policy = step.policy
    policy.check(url)
    limit = policy.max_response_bytes
    carried = secret_names(headers) | secret_names(json_body)
    # Only a call that may send a secret pays for the checks and the redaction.
    secrets = _CallSecrets(step.auth, carried) if carried or step.auth.http else None
    headers = dict(await step.auth.fill_in(headers, url) if headers else {})
    json_body = await step.auth.fill_in(json_body, url)
    if step.idempotency_key and method.upper() != "GET":
        # The server sees the same key on every attempt of this step, so a repeat after a
        # crash or a retry is recognised instead of applied twice.
        headers.setdefault("Idempotency-Key", step.idempotency_key)
    client, admitted = clients.get()
    try:
        extensions = {_POLICY: policy, _SECRETS: secrets}
        async with admitted, client.stream(method, url, json=json_body, headers=headers,
                                           extensions=extensions) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    break
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # Refused, or no answer to connect: nothing was sent, and the target is down.
        raise ToolError(f"{method} {url}: the target cannot be reached "
                        f"({type(exc).__name__}: {exc}); nothing was sent", retryable=True,
                        not_sent=True, unreachable=True,
                        type_name=ErrorKind.TARGET_UNREACHABLE) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        # The connection broke (reset, closed without an answer): the target went away,
        # possibly after the request reached it.
        raise ToolError(f"{method} {url}: the connection broke ({type(exc).__name__}: "
                        f"{exc})", retryable=True, unreachable=True,
                        type_name=ErrorKind.TARGET_UNREACHABLE) from None
    except httpx.TransportError as exc:
        raise ToolError(f"{method} {url} failed: {type(exc).__name__}: {exc}",
                        retryable=True) from None
    truncated = len(body) > limit
    text = bytes(body[:limit]).decode(response.encoding or "utf-8", errors="replace")
    if secrets is not None:
        text = step.auth.redact(text)
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
