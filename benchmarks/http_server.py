"""A loopback HTTP server with per-request delays, in its own process, for the real-tool
figures: `GET /delay/{ms}` answers after `ms` milliseconds with a small JSON body.

A bare ASGI app under uvicorn (no framework on the request path), so the server costs every
contender the same little CPU. `python -m benchmarks.http_server --port P`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/delay/{ms}` sleeps, then answers `{"path": ..., "slept_ms": ms}`; `/ok` at once."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    milliseconds = float(path.rsplit("/", 1)[-1]) if path.startswith("/delay/") else 0.0
    await asyncio.sleep(milliseconds / 1000)
    body = json.dumps({"path": path, "slept_ms": milliseconds}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, lifespan="off", backlog=4096, limit_concurrency=None)


if __name__ == "__main__":
    main()
