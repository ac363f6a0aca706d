"""The ticket tracker's SQLite store: schema, seed, queries and writes. Every write through
the store is logged in `writes` (which table, which row), even one that leaves a value as
it was, so an evaluation can count them; fixtures (`seed`) are not writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demo_site.db import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY, team TEXT NOT NULL, on_call INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, requester TEXT NOT NULL,
    assignee TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, priority TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    author TEXT NOT NULL DEFAULT 'agent', text TEXT NOT NULL,
    created_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT NOT NULL, row_id TEXT NOT NULL);
"""

# The tables fixtures may add rows to: key column, the columns a row may set, and the
# columns the tracker fills itself.
TABLES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "agents": ("name", ("name", "team", "on_call"), ()),
    "tickets": ("id", ("id", "title", "requester", "assignee", "status", "priority"), ()),
    "comments": ("id", ("ticket_id", "author", "text"), ("id", "created_at")),
}
STATUSES = ("open", "pending", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")

AGENTS = [("ana", "support", 0), ("ben", "engineering", 0), ("chen", "billing", 1),
          ("dita", "support", 1)]
TICKETS = [
    (101, "Cannot log in after the update", "mara@shop.example", "ana", "open", "high"),
    (102, "Invoice PDF is blank", "li@ledger.example", "", "open", "normal"),
    (103, "Export times out", "omar@data.example", "ben", "pending", "urgent"),
    (104, "Typo on the pricing page", "zoe@web.example", "", "open", "low"),
    (105, "Refund not received", "li@ledger.example", "chen", "open", "urgent"),
    (106, "Dark mode request", "mara@shop.example", "", "closed", "low"),
    (107, "API rate limit too low", "omar@data.example", "ben", "open", "normal"),
    (108, "Password reset mail missing", "zoe@web.example", "", "open", "urgent"),
]


class UnknownRecord(LookupError):
    """No ticket (or agent) with that id (or name)."""


class TicketStore(SqliteFile):
    """Access to one tracker database file."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        with self.connect() as db:
            db.executescript(SCHEMA)
            if not db.execute("SELECT 1 FROM tickets LIMIT 1").fetchone():
                db.executemany("INSERT INTO agents VALUES (?,?,?)", AGENTS)
                db.executemany("INSERT INTO tickets VALUES (?,?,?,?,?,?)", TICKETS)

    def seed(self, fixtures: dict[str, list[dict[str, Any]]]) -> None:
        """Add fixture rows on top of the default seed (checked against `TABLES` when the
        suite loads); not logged as writes."""
        with self.connect() as db:
            for table, rows in fixtures.items():
                for row in rows:
                    self.insert(db, table, row)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table of `TABLES`."""
        return {table: self.rows(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608
                for table in TABLES}

    def writes(self) -> list[dict[str, Any]]:
        """The write log, in order."""
        return self.rows("SELECT * FROM writes ORDER BY id")

    def tickets(self, **filters: str | None) -> list[dict[str, Any]]:
        """Tickets matching every filter given (status, assignee, priority, requester)."""
        given = {k: v for k, v in filters.items() if v is not None}
        where = " AND ".join(f"{column} = ?" for column in given) or "1=1"
        return self.rows(f"SELECT * FROM tickets WHERE {where} ORDER BY id",  # noqa: S608
                         *given.values())

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """One ticket with its comments; raises `UnknownRecord`."""
        found = self.rows("SELECT * FROM tickets WHERE id = ?", ticket_id)
        if not found:
            raise UnknownRecord(f"no ticket {ticket_id}")
        comments = self.rows("SELECT author, text FROM comments WHERE ticket_id = ? "
                             "ORDER BY id", ticket_id)
        return {**found[0], "comments": comments}

    def agents(self, team: str | None = None, on_call: bool | None = None) -> list[dict]:
        """Agents, of one team and on call or not."""
        sql, params = "SELECT * FROM agents WHERE 1=1", []
        if team is not None:
            sql, params = sql + " AND team = ?", [*params, team]
        if on_call is not None:
            sql, params = sql + " AND on_call = ?", [*params, int(on_call)]
        return [{**a, "on_call": bool(a["on_call"])} for a in self.rows(sql + " ORDER BY name",
                                                                         *params)]

    def update(self, ticket_id: int, column: str, value: str) -> dict[str, Any]:
        """Set one column of a ticket (logged as a write); raises `UnknownRecord`."""
        with self.connect() as db:
            if not db.execute(f"UPDATE tickets SET {column} = ? WHERE id = ?",  # noqa: S608
                              (value, ticket_id)).rowcount:
                raise UnknownRecord(f"no ticket {ticket_id}")
            db.execute("INSERT INTO writes (entity, row_id) VALUES ('tickets', ?)",
                       (str(ticket_id),))
        return self.ticket(ticket_id)

    def add_comment(self, ticket_id: int, text: str, author: str = "agent") -> dict[str, Any]:
        """Add a comment to a ticket (logged as a write); raises `UnknownRecord`."""
        with self.connect() as db:
            if not db.execute("SELECT 1 FROM tickets WHERE id = ?", (ticket_id,)).fetchone():
                raise UnknownRecord(f"no ticket {ticket_id}")
            cursor = db.execute("INSERT INTO comments (ticket_id, author, text) VALUES (?,?,?)",
                                (ticket_id, author, text))
            db.execute("INSERT INTO writes (entity, row_id) VALUES ('comments', ?)",
                       (str(cursor.lastrowid),))
        return {"comment": cursor.lastrowid, "ticket": ticket_id, "text": text}
