"""Run the CRM on 127.0.0.1, in a background thread or as its own process."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from demo_site.app import create_app
from demo_site.auth import SESSION_SECONDS


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(db_path: str | Path, port: int = 0, *, auth: bool = False,
          session_seconds: int = SESSION_SECONDS) -> Iterator[str]:
    """Serve the CRM in a thread for the duration of the block; yields its base URL.
    `auth` and `session_seconds` are `create_app`'s."""
    port = port or free_port()
    app = create_app(db_path, auth=auth, session_seconds=session_seconds)
    config = uvicorn.Config(app, host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-site", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo site did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def main() -> None:
    """`python -m demo_site.server --db crm.sqlite --port 8765 [--auth]
    [--session-seconds S]`."""
    parser = argparse.ArgumentParser(description="Serve the demo CRM on 127.0.0.1.")
    parser.add_argument("--db", default="crm.sqlite")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--auth", action="store_true",
                        help="require a login (make_credentials must have made the user)")
    parser.add_argument("--session-seconds", type=int, default=SESSION_SECONDS)
    args = parser.parse_args()
    app = create_app(args.db, auth=args.auth, session_seconds=args.session_seconds)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
