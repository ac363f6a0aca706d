"""The pace of attempts at a dependency that cannot be reached (refused, reset, gone): one
place for every wait of `dependency_wait_seconds` (a step's, the reasoning model's, an MCP
server's start)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

WAIT_BACKOFF_SECONDS = (0.25, 5.0)  # first and longest pause while a dependency is down


def backoff_pauses() -> Iterator[float]:
    """The pauses between attempts: the first of `WAIT_BACKOFF_SECONDS`, doubling up to the
    longest, each with jitter (x0.5 to x1.5) so waits that began together do not stampede."""
    pause = WAIT_BACKOFF_SECONDS[0]
    while True:
        yield pause * (0.5 + random.random())
        pause = min(pause * 2, WAIT_BACKOFF_SECONDS[1])


class OutageWait:
    """One wait for a dependency that cannot be reached: a pause (`backoff_pauses`) before
    each attempt again, until `limit` seconds have passed since its first failure."""

    def __init__(self, limit: float):
        self.limit = limit
        self.since: float | None = None  # when the dependency first failed; None: not waiting
        self._pauses = backoff_pauses()

    @property
    def waited(self) -> float:
        """Seconds since the wait began (0 when it did not)."""
        return 0.0 if self.since is None else time.monotonic() - self.since

    async def pause(self) -> bool:
        """Pause before the next attempt (the first call begins the wait); False, at once,
        when the wait is over."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        left = self.since + self.limit - now
        if left <= 0:
            return False
        await asyncio.sleep(min(next(self._pauses), left))
        return True

