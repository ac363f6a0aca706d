"""The demo CRM as a `duet eval` environment (`environment: demo_site.environment:make`):
each run gets its own SQLite database (the default seed plus the task's fixtures) and its
own CRM server on a free loopback port, reached over HTTP and in the browser.

Variables: `site`, the server's base URL. Hosts: that server only. Tools: the built-in ones
(`http_request`, the browser tools). Writes: the CRM's `writes` log.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo_site.db import TABLES, Store
from demo_site.server import serve
from graph.app.eval.environment import Rows, Table, Variations, Write

_KEYS = {"customers": "id", "orders": "id", "invoices": "id", "notes": "id",
         "profiles": "customer_id"}
# Columns the CRM fills itself: a note's id, idempotency key and time say nothing about a task.
_GENERATED = {"notes": ("id", "idempotency_key", "created_at")}

VARIATIONS = Variations(
    values={"status": ("open", "paid", "overdue", "reminded")},
    record_args=("customer_id",),
    id_ranges=((1, 6), (1001, 1008)),  # the default seed's customers and invoices
    stray_write={"id": "stray", "tool": "http_request", "side_effects": True,
                 "description": "A write the task did not ask for.",
                 "args": {"url": "{{ site }}/api/invoices/1008", "method": "PATCH",
                          "json_body": {"status": "paid"}}},
    # Invoice 1001 is paid in the seed, and no fixture adds to it.
    same_value_write={"id": "same_value", "tool": "http_request", "side_effects": True,
                      "description": "A write that leaves the invoice as it was.",
                      "args": {"url": "{{ site }}/api/invoices/1001", "method": "PATCH",
                               "json_body": {"status": "paid"}}},
)


class CRM:
    """The demo CRM: customers, orders, invoices, notes and profiles."""

    name = "crm"
    variables = ("site",)
    tables = {table: Table(_KEYS[table], columns, _GENERATED.get(table, ()))
              for table, columns in TABLES.items()}
    variations = VARIATIONS

    async def start(self, fixtures: Rows, folder: Path) -> CRMInstance:
        """A fresh database in `folder` and a server over it."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "crm.sqlite"
        path.unlink(missing_ok=True)

        def seeded() -> Store:
            store = Store(path)
            store.seed(fixtures)
            return store

        store = await asyncio.to_thread(seeded)
        site = serve(path)
        url = await asyncio.to_thread(site.__enter__)
        return CRMInstance(store, site, url)


class CRMInstance:
    """One run's CRM: its database and its server."""

    tools = None
    mcp_servers: dict[str, dict[str, Any]] = {}

    def __init__(self, store: Store, site: Any, url: str):
        self._store, self._site = store, site
        self.variables = {"site": url}
        self.allowed_hosts = [urlsplit(url).netloc]

    async def snapshot(self) -> Rows:
        """Every row of the CRM's tables."""
        rows = await asyncio.to_thread(self._store.snapshot)
        return {table: rows[table] for table in TABLES}

    async def writes(self) -> list[Write]:
        """The CRM's write log (every status change and note, in order)."""
        logged = await asyncio.to_thread(self._store.rows, "SELECT * FROM writes ORDER BY id")
        return [Write(table=w["entity"], row=str(w["row_id"])) for w in logged]

    async def stop(self) -> None:
        """Stop the server (the database stays)."""
        if self._site is not None:
            site, self._site = self._site, None
            await asyncio.to_thread(site.__exit__, None, None, None)


def make() -> CRM:
    """The CRM environment (what a suite's `environment:` names)."""
    return CRM()
