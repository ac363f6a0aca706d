"""The CRM's SQLite store: schema, seed data and queries. Writes persist in the file.

Every write through the store is also logged in `writes` (which table, which row), so an
evaluation can tell a row written twice from one written once (`duet eval`'s state check).
`profiles` holds what only the customer's page shows (not the JSON API); the default seed
leaves it empty, and `Store.seed` adds a task's own rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, tier TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    item TEXT NOT NULL, amount REAL NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS invoices (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    amount REAL NOT NULL, due_date TEXT NOT NULL, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id INTEGER NOT NULL REFERENCES customers(id),
    text TEXT NOT NULL, idempotency_key TEXT UNIQUE, created_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE IF NOT EXISTS profiles (
    customer_id INTEGER PRIMARY KEY REFERENCES customers(id), account_manager TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '', remark TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT NOT NULL, row_id INTEGER NOT NULL);
"""

# The tables a task's fixtures may add rows to, with their columns in insert order.
TABLES = {
    "customers": ("id", "name", "email", "tier"),
    "orders": ("id", "customer_id", "item", "amount", "status"),
    "invoices": ("id", "customer_id", "amount", "due_date", "status"),
    "notes": ("customer_id", "text"),
    "profiles": ("customer_id", "account_manager", "phone", "remark"),
}

CUSTOMERS = [
    (1, "Acme Corp", "ap@acme.example", "gold"),
    (2, "Globex", "billing@globex.example", "silver"),
    (3, "Initech", "finance@initech.example", "bronze"),
    (4, "Umbrella", "accounts@umbrella.example", "gold"),
    (5, "Hooli", "pay@hooli.example", "silver"),
    (6, "Stark Industries", "ar@stark.example", "gold"),
]
ORDERS = [
    (501, 1, "Anvils", 1200.0, "shipped"), (502, 2, "Widgets", 300.0, "open"),
    (503, 3, "Staplers", 45.5, "shipped"), (504, 4, "Vaccines", 9800.0, "open"),
    (505, 5, "Servers", 15000.0, "cancelled"), (506, 6, "Armor", 250000.0, "shipped"),
]
INVOICES = [
    (1001, 1, 1200.0, "2026-10-01", "paid"), (1002, 2, 300.0, "2026-09-15", "overdue"),
    (1003, 3, 45.5, "2026-12-20", "open"), (1004, 4, 9800.0, "2026-11-30", "open"),
    (1005, 4, 640.0, "2026-08-31", "overdue"), (1006, 5, 15000.0, "2026-10-10", "paid"),
    (1007, 6, 250000.0, "2026-09-30", "overdue"), (1008, 1, 99.0, "2026-12-31", "open"),
]


class SqliteFile:
    """One SQLite file of a demo system: transactions and queries (the CRM's `Store`, the
    ticket tracker's `TicketStore`)."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction, committed on success."""
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def rows(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Run a query and return its rows as dicts."""
        with self.connect() as db:
            return [dict(row) for row in db.execute(sql, params)]

    @staticmethod
    def insert(db: sqlite3.Connection, table: str, row: dict[str, Any]) -> None:
        """Insert `row` (column -> value) into `table` (a name the caller checked)."""
        names, marks = ", ".join(row), ", ".join("?" for _ in row)
        db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                   tuple(row.values()))


class Store(SqliteFile):
    """Access to one CRM database file."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        with self.connect() as db:
            db.executescript(SCHEMA)
            if not db.execute("SELECT 1 FROM customers LIMIT 1").fetchone():
                db.executemany("INSERT INTO customers VALUES (?,?,?,?)", CUSTOMERS)
                db.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", ORDERS)
                db.executemany("INSERT INTO invoices VALUES (?,?,?,?,?)", INVOICES)

    def seed(self, fixtures: dict[str, list[dict[str, Any]]]) -> None:
        """Add rows to the tables (`TABLES`), on top of the default seed; not logged as writes.

        Raises `ValueError` for an unknown table or column."""
        with self.connect() as db:
            for table, rows in fixtures.items():
                if table not in TABLES:
                    raise ValueError(f"no table {table!r} to seed; tables: {list(TABLES)}")
                for row in rows:
                    unknown = set(row) - set(TABLES[table])
                    if unknown:
                        raise ValueError(f"{table}: unknown columns {sorted(unknown)}")
                    self.insert(db, table, row)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table (`TABLES` and `writes`), for comparing states."""
        return {table: self.rows(f"SELECT * FROM {table} ORDER BY rowid")  # noqa: S608
                for table in (*TABLES, "writes")}

    def profile(self, customer_id: int) -> dict[str, Any] | None:
        """What only the customer's page shows (account manager, phone, remark), or None."""
        found = self.rows("SELECT * FROM profiles WHERE customer_id = ?", customer_id)
        return found[0] if found else None

    def customers(self) -> list[dict[str, Any]]:
        """All customers."""
        return self.rows("SELECT * FROM customers ORDER BY id")

    def customer(self, customer_id: int) -> dict[str, Any] | None:
        """One customer, or None."""
        found = self.rows("SELECT * FROM customers WHERE id = ?", customer_id)
        return found[0] if found else None

    def orders(self, customer_id: int | None = None) -> list[dict[str, Any]]:
        """Orders, of one customer or all."""
        if customer_id is None:
            return self.rows("SELECT * FROM orders ORDER BY id")
        return self.rows("SELECT * FROM orders WHERE customer_id = ? ORDER BY id", customer_id)

    def invoices(self, status: str | None = None, customer_id: int | None = None) -> list[dict]:
        """Invoices, filtered by status and customer."""
        sql, params = "SELECT * FROM invoices WHERE 1=1", []
        if status:
            sql, params = sql + " AND status = ?", [*params, status]
        if customer_id is not None:
            sql, params = sql + " AND customer_id = ?", [*params, customer_id]
        return self.rows(sql + " ORDER BY id", *params)

    def set_invoice_status(self, invoice_id: int, status: str) -> dict[str, Any] | None:
        """Change an invoice's status; None when there is no such invoice."""
        with self.connect() as db:
            changed = db.execute("UPDATE invoices SET status = ? WHERE id = ?",
                                 (status, invoice_id)).rowcount
            if changed:
                db.execute("INSERT INTO writes (entity, row_id) VALUES ('invoices', ?)",
                           (invoice_id,))
        found = self.rows("SELECT * FROM invoices WHERE id = ?", invoice_id)
        return found[0] if found else None

    def notes(self, customer_id: int | None = None) -> list[dict[str, Any]]:
        """Notes, of one customer or all."""
        if customer_id is None:
            return self.rows("SELECT * FROM notes ORDER BY id")
        return self.rows("SELECT * FROM notes WHERE customer_id = ? ORDER BY id", customer_id)

    def add_note(
        self, customer_id: int, text: str, idempotency_key: str | None
    ) -> tuple[dict, bool]:
        """Add a note; with a key seen before, return the earlier note and False (not created)."""
        with self.connect() as db:
            if idempotency_key:
                row = db.execute("SELECT * FROM notes WHERE idempotency_key = ?",
                                 (idempotency_key,)).fetchone()
                if row:
                    return dict(row), False
            cursor = db.execute(
                "INSERT INTO notes (customer_id, text, idempotency_key) VALUES (?, ?, ?)",
                (customer_id, text, idempotency_key))
            row = db.execute("SELECT * FROM notes WHERE id = ?", (cursor.lastrowid,)).fetchone()
            db.execute("INSERT INTO writes (entity, row_id) VALUES ('notes', ?)",
                       (cursor.lastrowid,))
        return dict(row), True
