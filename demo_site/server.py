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


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(db_path: str | Path, port: int = 0) -> Iterator[str]:
    """Serve the CRM in a thread for the duration of the block; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(create_app(db_path), host="127.0.0.1", port=port,
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
    """`python -m demo_site.server --db crm.sqlite --port 8765`."""
    parser = argparse.ArgumentParser(description="Serve the demo CRM on 127.0.0.1.")
    parser.add_argument("--db", default="crm.sqlite")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    uvicorn.run(create_app(args.db), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
