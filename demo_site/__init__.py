"""A small CRM (customers, orders, invoices, notes) that the demo and the tests drive, and
`demo_site.tickets`, a ticket tracker served over MCP (the eval's second environment).

`create_app` and `serve` are imported on first use: the tracker's server process imports
this package without the CRM's web app, which would double its start-up time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from demo_site.app import create_app

        return create_app
    if name == "serve":
        from demo_site.server import serve

        return serve
    raise AttributeError(f"module 'demo_site' has no attribute {name!r}")
