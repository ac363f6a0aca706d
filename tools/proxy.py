"""An allowlist HTTP proxy for the browser: the network-level half of the sandbox.

Chromium sends every request through it (page loads, redirects, sub-resources, fetches,
websockets, service workers, loopback included), so a page cannot lead the browser to a
host outside the allowlist: such a request is answered 403 before any connection to that
host opens, and recorded. Each browser session has a proxy of its own (its own port, policy
and record of refusals); all of them are served by one event loop thread, so a session's
proxy costs a listening socket, not a thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from urllib.parse import urlsplit

from tools.sandbox import SandboxPolicy

BLOCKED_RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    b"Content-Length: 31\r\n\r\nblocked by the nova-duet policy")


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _proxy_loop() -> asyncio.AbstractEventLoop:
    """The event loop every proxy of this process is served on, in a daemon thread of its
    own, so sync (Nova Act) and async (Playwright) callers can share it."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="duet-proxy", daemon=True).start()
        return _loop


class AllowlistProxy:
    """An HTTP/HTTPS (CONNECT) proxy on 127.0.0.1 that only reaches allowed hosts.

    `blocked` lists every refused URL, in order. `start` and `close` may be called from any
    thread (`astart` from a running event loop, without blocking it).
    """

    def __init__(self, policy: SandboxPolicy, on_block: Callable[[str], None] | None = None):
        self.policy = policy
        self.blocked: list[str] = []
        self._on_block = on_block
        self._loop = _proxy_loop()
        self._server: asyncio.Server | None = None
        self.port = 0

    def _listen(self) -> Future[asyncio.Server]:
        return asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop)

    def _listening(self, server: asyncio.Server) -> AllowlistProxy:
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    def start(self) -> AllowlistProxy:
        """Listen on a free loopback port."""
        return self._listening(self._listen().result(timeout=10))

    async def astart(self) -> AllowlistProxy:
        """`start`, awaited from an event loop."""
        return self._listening(await asyncio.wrap_future(self._listen()))

    @property
    def url(self) -> str:
        """The proxy's address, for Chromium's --proxy-server."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening (connections in flight end with their browser)."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._server = None

    def _refuse(self, url: str) -> None:
        self.blocked.append(url)
        if self._on_block:
            self._on_block(url)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, _, rest = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            url = f"https://{host}:{port}/"
        else:
            url = target
            parts = urlsplit(target)
            host, port = parts.hostname or "", str(parts.port or 80)
        if not self.policy.allows(url):
            self._refuse(url)
            writer.write(BLOCKED_RESPONSE)
            await writer.drain()
            writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            parts = urlsplit(target)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            upstream_writer.write(f"{method} {path} {version}\r\n".encode("latin-1")
                                  + _one_request_only(rest))
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


def _one_request_only(headers: bytes) -> bytes:
    """Headers with `Connection: close`, so every request (and its host) is checked anew."""
    kept = [line for line in headers.split(b"\r\n")
            if line and line.split(b":")[0].strip().lower()
            not in (b"connection", b"proxy-connection", b"keep-alive")]
    return b"\r\n".join([*kept, b"Connection: close", b"", b""])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
