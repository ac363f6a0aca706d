"""The ticket tracker as an MCP server (the `mcp` SDK's FastMCP) over streamable HTTP, in a
process of its own:

    python -m demo_site.tickets.server --db tickets.sqlite --port 8790 [--parent PID]

Its tools read tickets and agents (`readOnlyHint`) and change tickets: a status, an
assignee, a priority (`idempotentHint`: setting a value again changes nothing), or a new
comment (neither: a second call adds a second comment). With `--parent`, the server exits
when that process is gone, so an eval killed mid-run leaves no server behind.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from demo_site.tickets.store import PRIORITIES, STATUSES, TicketStore, UnknownRecord


def build_server(store: TicketStore, port: int) -> Any:
    """The FastMCP server of the tracker over `store`, on 127.0.0.1:`port`."""
    from mcp.server.fastmcp import FastMCP
    from mcp.types import ToolAnnotations

    server = FastMCP("tickets", host="127.0.0.1", port=port, log_level="WARNING")
    reads = ToolAnnotations(readOnlyHint=True)
    sets = ToolAnnotations(readOnlyHint=False, idempotentHint=True)

    def checked(name: str, value: str, allowed: tuple[str, ...]) -> str:
        if value not in allowed:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        return value

    @server.tool(annotations=reads)
    def list_tickets(status: str | None = None, assignee: str | None = None,
                     priority: str | None = None, requester: str | None = None) -> dict:
        """The tickets matching every filter given: status (open, pending or closed),
        assignee (an agent's name; '' for unassigned), priority (low, normal, high or
        urgent), requester (an e-mail address). Gives the count, the ids, then the tickets."""
        found = store.tickets(status=status, assignee=assignee, priority=priority,
                              requester=requester)
        return {"count": len(found), "ids": [t["id"] for t in found], "tickets": found}

    @server.tool(annotations=reads)
    def get_ticket(ticket: int) -> dict:
        """One ticket: id, title, requester, assignee, status, priority, and its comments."""
        return store.ticket(ticket)

    @server.tool(annotations=reads)
    def list_comments(ticket: int) -> dict:
        """A ticket's comments (author, text), oldest first, with their count."""
        found = store.ticket(ticket)["comments"]
        return {"count": len(found), "comments": found}

    @server.tool(annotations=reads)
    def list_agents(team: str | None = None, on_call: bool | None = None) -> dict:
        """The support agents (name, team: support, billing or engineering; on_call), of one
        team and on call or not when given. Gives the count, the names, then the agents."""
        found = store.agents(team, on_call)
        return {"count": len(found), "names": [a["name"] for a in found], "agents": found}

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False))
    def add_comment(ticket: int, text: str) -> dict:
        """Add a comment to a ticket."""
        return store.add_comment(ticket, text)

    @server.tool(annotations=sets)
    def set_status(ticket: int, status: str) -> dict:
        """Set a ticket's status: open, pending or closed."""
        return store.update(ticket, "status", checked("status", status, STATUSES))

    @server.tool(annotations=sets)
    def assign(ticket: int, assignee: str) -> dict:
        """Assign a ticket to an agent (by name)."""
        if assignee not in {a["name"] for a in store.agents()}:
            raise UnknownRecord(f"no agent {assignee!r}")
        return store.update(ticket, "assignee", assignee)

    @server.tool(annotations=sets)
    def set_priority(ticket: int, priority: str) -> dict:
        """Set a ticket's priority: low, normal, high or urgent."""
        return store.update(ticket, "priority", checked("priority", priority, PRIORITIES))

    return server


def _exit_with(parent: int) -> None:
    """Exit this process once `parent` is gone (it is then no longer our parent)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main() -> None:
    """Serve the tracker over streamable HTTP at http://127.0.0.1:PORT/mcp."""
    parser = argparse.ArgumentParser(description="Serve the ticket tracker as an MCP server.")
    parser.add_argument("--db", default="tickets.sqlite")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--parent", type=int, help="exit when this process is gone")
    args = parser.parse_args()
    if args.parent:
        _exit_with(args.parent)
    build_server(TicketStore(args.db), args.port).run("streamable-http")


if __name__ == "__main__":
    main()
