"""The ticket tracker as a `duet eval` environment (`environment:
demo_site.tickets.environment:make`): each run gets its own SQLite database (the default
seed plus the task's fixtures) and its own MCP server process over streamable HTTP on a
free loopback port.

Variables: `tracker`, the server's MCP URL. Hosts: that server only. Tools: the server's,
as MCP tools named `tickets_<tool>` (no registry of its own). Writes: the tracker's log.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo_site.server import free_port
from demo_site.tickets.store import PRIORITIES, STATUSES, TABLES, TicketStore
from graph.app.eval.environment import Rows, Table, Variations, Write

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 60.0  # a fresh Python importing the MCP SDK, on a busy machine
STOP_SECONDS = 5.0

VARIATIONS = Variations(
    values={"status": STATUSES, "assignee": ("ana", "ben", "chen", "dita"),
            "priority": PRIORITIES,
            # The seed's requesters: a read of another one's tickets is a `wrong_filter`.
            "requester": ("mara@shop.example", "li@ledger.example", "omar@data.example",
                          "zoe@web.example")},
    record_args=("ticket",),
    id_ranges=((101, 108),),  # the default seed's tickets
    stray_write={"id": "stray", "tool": "tickets_set_status", "side_effects": True,
                 "description": "A write the task did not ask for.",
                 "args": {"ticket": 106, "status": "open"}},
    # Ticket 106 is closed in the seed, and no fixture adds to it.
    same_value_write={"id": "same_value", "tool": "tickets_set_status", "side_effects": True,
                      "description": "A write that leaves the ticket as it was.",
                      "args": {"ticket": 106, "status": "closed"}},
)


class ServerDidNotStart(RuntimeError):
    """The tracker's server process exited or did not listen in time; says where its log is."""


class Tickets:
    """The ticket tracker: agents, tickets and comments."""

    name = "tickets"
    variables = ("tracker",)
    tables = {table: Table(key, columns, generated)
              for table, (key, columns, generated) in TABLES.items()}
    variations = VARIATIONS

    async def start(self, fixtures: Rows, folder: Path) -> TicketsInstance:
        """A fresh database in `folder` and a server process over it, once it listens."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tickets.sqlite"
        path.unlink(missing_ok=True)

        def seeded() -> TicketStore:
            store = TicketStore(path)
            store.seed(fixtures)
            return store

        store = await asyncio.to_thread(seeded)
        port = free_port()
        log = folder / "tickets-server.log"
        with log.open("w") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "demo_site.tickets.server", "--db", str(path),
                "--port", str(port), "--parent", str(os.getpid()), cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
        instance = TicketsInstance(store, process, f"http://127.0.0.1:{port}/mcp")
        try:
            await _listening(process, port, log)
        except BaseException:
            await instance.stop()
            raise
        return instance


async def _listening(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    """Return once the server accepts connections on `port`."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process.returncode is not None or time.monotonic() > deadline:
                raise ServerDidNotStart(f"the ticket tracker did not start on port {port} "
                                        f"(its log: {log})") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


class TicketsInstance:
    """One run's tracker: its database and its server process."""

    tools = None

    def __init__(self, store: TicketStore, process: asyncio.subprocess.Process, url: str):
        self._store, self._process = store, process
        self.variables = {"tracker": url}
        self.allowed_hosts = [urlsplit(url).netloc]
        self.mcp_servers: dict[str, dict[str, Any]] = {
            "tickets": {"transport": "http", "url": url}}

    async def snapshot(self) -> Rows:
        """Every row of the tracker's tables."""
        return await asyncio.to_thread(self._store.snapshot)

    async def writes(self) -> list[Write]:
        """The tracker's write log (every status, assignee and priority set, every comment)."""
        logged = await asyncio.to_thread(self._store.writes)
        return [Write(table=w["entity"], row=str(w["row_id"])) for w in logged]

    async def stop(self) -> None:
        """Stop the server process: SIGTERM, and SIGKILL after `STOP_SECONDS`."""
        process = self._process
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()


def make() -> Tickets:
    """The ticket tracker environment (what a suite's `environment:` names)."""
    return Tickets()
