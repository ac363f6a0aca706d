"""The pace of attempts at a dependency that cannot be reached (refused, reset, gone): one
place for every wait of `dependency_wait_seconds` (a step's, the reasoning model's, an MCP
server's start)."""

from __future__ import annotations

import random
from collections.abc import Iterator

WAIT_BACKOFF_SECONDS = (0.25, 5.0)  # first and longest pause while a dependency is down


def backoff_pauses() -> Iterator[float]:
    """The pauses between attempts: the first of `WAIT_BACKOFF_SECONDS`, doubling up to the
    longest, each with jitter (x0.5 to x1.5) so waits that began together do not stampede."""
    pause = WAIT_BACKOFF_SECONDS[0]
    while True:
        yield pause * (0.5 + random.random())
        pause = min(pause * 2, WAIT_BACKOFF_SECONDS[1])
